//! The measurements FreeBSD's h_ertt(4) Khelp module gives the delay-based modules (Vegas,
//! CDG, CHD, HD), built from the stack's per-ACK `rttsample` and per-round `newround` calls:
//! [`Ertt`], the measurements, and [`ErttHelper`], which feeds them through h_ertt's
//! delayed-ACK guard.
//!
//! h_ertt guesses from the bytes each ACK covers whether the receiver delays its ACKs; while
//! it does, only ACKs covering more than one segment give RTT samples, because the ACK of a
//! lone segment may have waited for the receiver's delayed-ACK timer and would inflate the
//! RTT by up to that timer (40 ms or more: a false queueing delay, or a false delay
//! gradient). The stack calls `rttsample` before the module learns what the ACK covers
//! (`ack_received`), so the sample, and a round that ended with it, wait until then.
//!
//! One difference from h_ertt: there a multi-segment ACK raises the guess by one and a
//! single-segment ACK lowers it by one. A receiver that alternates two- and one-segment
//! ACKs (plugtcp's base stack acknowledges at the end of each input batch) keeps that count
//! near 0 and lets the delayed-ACK timer's samples through, which made CDG back off several
//! times in a row; here a multi-segment ACK sets the guess to its maximum, and it takes
//! [`DLYACK_SMOOTH`] single-segment ACKs in a row to believe again that every segment is
//! acknowledged.

use plugtcp_abi::cc::CC_ACK;

/// Enhanced RTT state, FreeBSD `struct ertt` field names.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ertt {
    /// The latest per-ACK RTT sample (us; 0 before the first).
    pub rtt: u32,
    /// The smallest sample seen (us; 0 before the first).
    pub minrtt: u32,
    /// The largest sample seen (us).
    pub maxrtt: u32,
    /// One sample per RTT (us), h_ertt's marked packet: the latest sample when the last round
    /// ended, normally that of the ACK which ended it, i.e. of the data that was the newest
    /// when the round began (through [`ErttHelper`]: the latest one its guard accepted).
    /// Not the round's smallest sample: a flow with a larger window takes more samples per
    /// round, and their minimum would make its RTT look shorter than a smaller flow's.
    pub markedpkt_rtt: u32,
    /// Bytes acknowledged during the last completed round (what was sent in that RTT).
    pub bytes_tx_in_marked_rtt: u32,
    /// Set when a round completed and `markedpkt_rtt` is new; modules clear it once used.
    pub new_measurement: bool,
    /// Whether the current round has had a sample.
    round_sampled: bool,
    round_bytes: u32,
}

impl Ertt {
    /// A per-ACK RTT sample.
    pub fn sample(&mut self, usec_rtt: u32) {
        if usec_rtt == 0 {
            return;
        }
        self.rtt = usec_rtt;
        self.minrtt = if self.minrtt == 0 {
            usec_rtt
        } else {
            self.minrtt.min(usec_rtt)
        };
        self.maxrtt = self.maxrtt.max(usec_rtt);
        self.round_sampled = true;
    }

    /// Bytes acknowledged by an ACK.
    pub fn acked(&mut self, bytes: u32) {
        self.round_bytes = self.round_bytes.saturating_add(bytes);
    }

    /// A round ended: publish its measurement (none for a round without samples).
    pub fn newround(&mut self) {
        if std::mem::take(&mut self.round_sampled) {
            self.markedpkt_rtt = self.rtt;
            self.bytes_tx_in_marked_rtt = self.round_bytes;
            self.new_measurement = true;
        }
        self.round_bytes = 0;
    }

    /// Takes the new-measurement flag (once per RTT).
    pub fn take_new_measurement(&mut self) -> bool {
        std::mem::take(&mut self.new_measurement)
    }
}

/// h_ertt's DLYACK_SMOOTH: this many single-segment ACKs in a row make the guard believe
/// again that every segment is acknowledged.
pub const DLYACK_SMOOTH: u32 = 5;

/// An [`Ertt`] fed through h_ertt's delayed-ACK guard. A module calls [`Self::rttsample`] and
/// [`Self::newround`] from its hooks of the same name ([`crate::ertt_hooks!`] writes them)
/// and [`Self::ack_received`] from its `ack_received`, then reads `ertt`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErttHelper {
    pub ertt: Ertt,
    /// h_ertt's dlyack_rx: 0 when the receiver seems to acknowledge every segment.
    pub dlyack_rx: u32,
    pending_rtt: Option<u32>,
    round_ended: bool,
}

impl ErttHelper {
    /// The stack's per-ACK RTT sample (us); judged when the ACK reaches the module.
    pub fn rttsample(&mut self, usec_rtt: u32) {
        if usec_rtt != 0 {
            self.pending_rtt = Some(usec_rtt);
        }
    }

    /// The stack's end of a round; closed when the ACK reaches the module.
    pub fn newround(&mut self) {
        self.round_ended = true;
    }

    /// An ACK reaches the module (`ack_received`): updates the delayed-ACK guess from the
    /// bytes it covers, takes the waiting sample unless the guard refuses it, then closes the
    /// round if one ended (so the measurement includes this ACK's sample, as in FreeBSD,
    /// where h_ertt runs before the CC module). Returns the sample taken.
    pub fn ack_received(&mut self, ack_type: u32, bytes_acked: u32, maxseg: u32) -> Option<u32> {
        let pending = self.pending_rtt.take();
        let mut taken = None;
        if ack_type == CC_ACK && bytes_acked > 0 {
            let multiack = bytes_acked > maxseg;
            self.dlyack_rx = if multiack {
                DLYACK_SMOOTH
            } else {
                self.dlyack_rx.saturating_sub(1)
            };
            if self.dlyack_rx == 0 || multiack {
                taken = pending;
            }
        }
        if let Some(rtt) = taken {
            self.ertt.sample(rtt);
        }
        if std::mem::take(&mut self.round_ended) {
            self.ertt.newround();
        }
        if ack_type == CC_ACK {
            self.ertt.acked(bytes_acked);
        }
        taken
    }
}

/// Inside `impl CcAlgorithm for ...`: hooks that only feed the module's [`ErttHelper`] in
/// field `$field`, as FreeBSD's h_ertt is fed: `ertt_hooks!(hertt: rttsample, newround);`
/// writes `rttsample` calling [`ErttHelper::rttsample`] and `newround` calling
/// [`ErttHelper::newround`]. A module that does more in one of them writes that one itself.
#[macro_export]
macro_rules! ertt_hooks {
    ($field:ident: $($hook:ident),+ $(,)?) => {
        $($crate::__ertt_hook!($field, $hook);)+
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __ertt_hook {
    ($field:ident, rttsample) => {
        fn rttsample(
            &mut self,
            _ccv: &mut $crate::__abi::cc::CcVar,
            _tp: &mut $crate::__abi::Tcpcb,
            usec_rtt: u32,
            _rxtcnt: u32,
            _fas: u32,
        ) {
            self.$field.rttsample(usec_rtt);
        }
    };
    ($field:ident, newround) => {
        fn newround(
            &mut self,
            _ccv: &mut $crate::__abi::cc::CcVar,
            _tp: &mut $crate::__abi::Tcpcb,
            _round_cnt: u32,
        ) {
            self.$field.newround();
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use plugtcp_abi::cc::CC_DUPACK;

    const MSS: u32 = 1460;

    #[test]
    fn every_segment_acked_every_sample_taken() {
        let mut h = ErttHelper::default();
        for rtt in [40_000, 41_000, 39_000] {
            h.rttsample(rtt);
            assert_eq!(h.ack_received(CC_ACK, MSS, MSS), Some(rtt));
        }
        assert_eq!(
            (h.ertt.rtt, h.ertt.minrtt, h.ertt.maxrtt),
            (39_000, 39_000, 41_000)
        );
    }

    #[test]
    fn with_delayed_acks_only_multi_segment_acks_give_samples() {
        let mut h = ErttHelper::default();
        h.rttsample(40_000);
        assert_eq!(h.ack_received(CC_ACK, 2 * MSS, MSS), Some(40_000));
        assert_eq!(h.dlyack_rx, DLYACK_SMOOTH);
        // A lone segment's ACK (maybe the delayed-ACK timer's): refused, and forgotten.
        h.rttsample(80_000);
        assert_eq!(h.ack_received(CC_ACK, MSS, MSS), None);
        assert_eq!(h.ertt.maxrtt, 40_000);
        // Alternating two- and one-segment ACKs keep the guard up.
        for _ in 0..10 {
            h.rttsample(40_000);
            assert_eq!(h.ack_received(CC_ACK, 2 * MSS, MSS), Some(40_000));
            h.rttsample(80_000);
            assert_eq!(h.ack_received(CC_ACK, MSS, MSS), None);
        }
        // DLYACK_SMOOTH single-segment ACKs in a row: every segment is acknowledged again.
        h.ack_received(CC_ACK, 2 * MSS, MSS);
        for i in 0..DLYACK_SMOOTH {
            h.rttsample(41_000);
            let taken = h.ack_received(CC_ACK, MSS, MSS);
            assert_eq!(taken.is_some(), i + 1 == DLYACK_SMOOTH, "{i}");
        }
        assert_eq!((h.dlyack_rx, h.ertt.maxrtt), (0, 41_000));
        // Duplicate ACKs cover nothing: no sample, no change to the guess.
        h.rttsample(70_000);
        assert_eq!(h.ack_received(CC_DUPACK, 0, MSS), None);
        h.rttsample(42_000);
        assert_eq!(h.ack_received(CC_ACK, MSS, MSS), Some(42_000));
        h.rttsample(0);
        assert_eq!(h.ack_received(CC_ACK, MSS, MSS), None);
    }

    #[test]
    fn ertt_publishes_one_measurement_per_sampled_round() {
        let mut e = Ertt::default();
        for (rtt, bytes) in [(41_000, 2 * MSS), (40_000, MSS), (45_000, 2 * MSS)] {
            e.sample(rtt);
            e.acked(bytes);
        }
        assert!(!e.new_measurement);
        e.newround();
        // The latest sample, not the round's smallest (40 ms).
        assert_eq!(
            (e.markedpkt_rtt, e.bytes_tx_in_marked_rtt),
            (45_000, 5 * MSS)
        );
        assert_eq!((e.minrtt, e.maxrtt, e.rtt), (40_000, 45_000, 45_000));
        assert!(e.take_new_measurement());
        assert!(!e.take_new_measurement(), "once per RTT");
        // A round without samples publishes nothing; its bytes are not carried over.
        e.acked(3 * MSS);
        e.newround();
        assert!(!e.new_measurement);
        assert_eq!(e.bytes_tx_in_marked_rtt, 5 * MSS);
        e.sample(0);
        e.newround();
        assert!(!e.new_measurement, "0 is no sample");
        e.sample(42_000);
        e.acked(MSS);
        e.newround();
        assert!(e.take_new_measurement());
        assert_eq!((e.markedpkt_rtt, e.bytes_tx_in_marked_rtt), (42_000, MSS));
    }

    #[test]
    fn marked_sample_is_the_latest_the_guard_accepted() {
        let mut h = ErttHelper::default();
        h.rttsample(40_000);
        h.ack_received(CC_ACK, 2 * MSS, MSS);
        h.rttsample(41_000);
        h.ack_received(CC_ACK, 2 * MSS, MSS);
        // The round ends with a lone segment's ACK that waited for the delayed-ACK timer.
        h.rttsample(80_000);
        h.newround();
        assert_eq!(h.ack_received(CC_ACK, MSS, MSS), None);
        assert!(h.ertt.take_new_measurement());
        assert_eq!(h.ertt.markedpkt_rtt, 41_000);
        // The ACK that ended the round counts towards the next one.
        assert_eq!(h.ertt.bytes_tx_in_marked_rtt, 4 * MSS);
        // The next round ends with an accepted sample: that one, though not the smallest.
        h.rttsample(40_500);
        h.ack_received(CC_ACK, 2 * MSS, MSS);
        h.rttsample(42_000);
        h.newround();
        assert_eq!(h.ack_received(CC_ACK, 2 * MSS, MSS), Some(42_000));
        assert!(h.ertt.take_new_measurement());
        assert_eq!(h.ertt.markedpkt_rtt, 42_000);
        assert_eq!(h.ertt.minrtt, 40_000);
    }

    #[test]
    fn a_round_closes_after_its_last_sample() {
        let mut h = ErttHelper::default();
        h.rttsample(50_000);
        h.ack_received(CC_ACK, MSS, MSS);
        h.rttsample(45_000);
        h.newround();
        assert!(!h.ertt.new_measurement, "waits for the ACK");
        h.ack_received(CC_ACK, MSS, MSS);
        assert!(h.ertt.take_new_measurement());
        assert_eq!(h.ertt.markedpkt_rtt, 45_000);
        assert_eq!(h.ertt.bytes_tx_in_marked_rtt, MSS);
    }
}
