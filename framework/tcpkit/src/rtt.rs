//! Retransmission timer (RFC 6298) with FreeBSD's knobs, Karn's rule, and RTTM (RFC 7323).
//!
//! All times are passed in by the caller: RTT samples and RTOs in microseconds (`u32`, so at
//! most ~71 minutes, far above the 64 s RTO ceiling), the segment clock in `u64` nanoseconds.

use plugtcp_abi::seq::{seq_gt, seq_leq, seq_lt};

/// FreeBSD `TCP_MAXRXTSHIFT`: the largest meaningful `t_rxtshift`.
pub const TCP_MAXRXTSHIFT: u32 = 12;
/// FreeBSD `tcp_backoff[]`: RTO multiplier indexed by `t_rxtshift`.
pub const TCP_BACKOFF: [u32; TCP_MAXRXTSHIFT as usize + 1] =
    [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 512, 512, 512];
/// FreeBSD `tcp_totbackoff`: the sum of [`TCP_BACKOFF`].
pub const TCP_TOTBACKOFF: u64 = 2559;

/// Initial RTO before any sample (RFC 6298 section 2.1; FreeBSD `TCPTV_RTOBASE`).
pub const TCPTV_RTOBASE_US: u32 = 1_000_000;
/// FreeBSD `net.inet.tcp.rexmit_min` default (30 ms).
pub const TCPTV_MIN_US: u32 = 30_000;
/// FreeBSD `net.inet.tcp.rexmit_slop` default (200 ms, `TCPTV_CPU_VAR`).
pub const TCPTV_CPU_VAR_US: u32 = 200_000;
/// FreeBSD `TCPTV_REXMTMAX` (64 s).
pub const TCPTV_REXMTMAX_US: u32 = 64_000_000;

/// Smoothed RTT estimator (FreeBSD `t_srtt`, `t_rttvar`, `t_rxtcur`), unscaled, in µs, with
/// FreeBSD's arithmetic:
///
/// - first sample R: `t_srtt = R`, `t_rttvar = R / 2`; later (RFC 6298 2.3, truncating)
///   `t_rttvar = (3 * t_rttvar + |t_srtt - R|) / 4`, then `t_srtt = (7 * t_srtt + R) / 8`;
/// - `TCP_REXMTVAL = max(rexmit_min, t_srtt + 4 * t_rttvar)` (before any sample: the initial
///   RTO, as FreeBSD's initial `t_rttvar` makes it);
/// - `TCPT_RANGESET`: every RTO is `value + rexmit_slop`, clamped to `[rexmit_min,
///   rexmit_max]`: after a sample `REXMTVAL + slop`, after `n` timeouts
///   `REXMTVAL * tcp_backoff[n] + slop`. Only the very first RTO, before any sample and any
///   timeout, is the initial RTO itself.
///
/// The slop (RFC 6298's clock granularity G, in FreeBSD 200 ms) keeps the RTO off the RTT
/// when the variance is tiny: delayed ACKs at the peer, scheduling jitter. If
/// `rexmit_min > rexmit_max`, `rexmit_max` wins (no panic).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct RttEstimator {
    t_srtt: u32,
    t_rttvar: u32,
    rto: u32,
    has_sample: bool,
    rexmit_initial: u32,
    rexmit_min: u32,
    rexmit_slop: u32,
    rexmit_max: u32,
}

impl Default for RttEstimator {
    /// FreeBSD defaults: 1 s initial, 30 ms min, 200 ms slop, 64 s max.
    fn default() -> Self {
        Self::new(
            TCPTV_RTOBASE_US,
            TCPTV_MIN_US,
            TCPTV_CPU_VAR_US,
            TCPTV_REXMTMAX_US,
        )
    }
}

impl RttEstimator {
    /// An estimator with no sample; `rto_us()` is `rexmit_initial_us` (capped at the max).
    pub fn new(
        rexmit_initial_us: u32,
        rexmit_min_us: u32,
        rexmit_slop_us: u32,
        rexmit_max_us: u32,
    ) -> Self {
        Self {
            t_srtt: 0,
            t_rttvar: 0,
            rto: rexmit_initial_us.min(rexmit_max_us),
            has_sample: false,
            rexmit_initial: rexmit_initial_us,
            rexmit_min: rexmit_min_us,
            rexmit_slop: rexmit_slop_us,
            rexmit_max: rexmit_max_us,
        }
    }

    /// Feeds one RTT measurement (µs) and recomputes the RTO.
    pub fn sample(&mut self, rtt_us: u32) {
        if self.has_sample {
            let delta = self.t_srtt.abs_diff(rtt_us) as u64;
            // u64 intermediates: 7 * srtt overflows u32 for srtt above ~10 minutes.
            self.t_rttvar = ((3 * self.t_rttvar as u64 + delta) / 4) as u32;
            self.t_srtt = ((7 * self.t_srtt as u64 + rtt_us as u64) / 8) as u32;
        } else {
            self.t_srtt = rtt_us;
            self.t_rttvar = rtt_us / 2;
            self.has_sample = true;
        }
        self.sample_rto();
    }

    fn sample_rto(&mut self) {
        self.rto = self.rangeset(self.rexmtval());
    }

    /// FreeBSD `TCP_REXMTVAL`: `max(rexmit_min, srtt + 4 * rttvar)`; the initial RTO before
    /// any sample.
    fn rexmtval(&self) -> u64 {
        if !self.has_sample {
            return self.rexmit_initial as u64;
        }
        (self.t_srtt as u64 + 4 * self.t_rttvar as u64).max(self.rexmit_min as u64)
    }

    /// FreeBSD `TCPT_RANGESET`: the slop added, then clamped to `[rexmit_min, rexmit_max]`.
    fn rangeset(&self, value: u64) -> u32 {
        let v = (value + self.rexmit_slop as u64).max(self.rexmit_min as u64);
        v.min(self.rexmit_max as u64) as u32
    }

    /// Starts from an estimate another stack made (a stack switch hands over t_srtt and
    /// t_rttvar in the tcpcb).
    pub fn seed(&mut self, srtt_us: u32, rttvar_us: u32) {
        self.sample(srtt_us);
        self.t_rttvar = rttvar_us;
        self.sample_rto();
    }

    /// Current RTO (FreeBSD `t_rxtcur` at `t_rxtshift == 0`), µs.
    pub fn rto_us(&self) -> u32 {
        self.rto
    }

    /// RTO after `shift` consecutive timeouts (`t_rxtshift`): FreeBSD tcp_timer_rexmt's
    /// `TCPT_RANGESET(REXMTVAL * tcp_backoff[shift])`; the current RTO at shift 0.
    pub fn backoff(&self, shift: u32) -> u32 {
        if shift == 0 {
            return self.rto;
        }
        let mult = TCP_BACKOFF[shift.min(TCP_MAXRXTSHIFT) as usize] as u64;
        self.rangeset(self.rexmtval() * mult)
    }

    /// RTO for a SYN or SYN-ACK after `shift` timeouts (FreeBSD tcp_timer_rexmt in
    /// SYN_SENT and SYN_RECEIVED): `TCPT_RANGESET(rexmit_initial * tcp_backoff[shift])`;
    /// the initial RTO for the first.
    pub fn syn_backoff(&self, shift: u32) -> u32 {
        if shift == 0 {
            return self.rexmit_initial.min(self.rexmit_max);
        }
        let mult = TCP_BACKOFF[shift.min(TCP_MAXRXTSHIFT) as usize] as u64;
        self.rangeset(self.rexmit_initial as u64 * mult)
    }

    /// FreeBSD `TCP_REXMTVAL` (µs): `max(rexmit_min, srtt + 4 * rttvar)`, the initial RTO
    /// before any sample.
    pub fn rexmtval_us(&self) -> u64 {
        self.rexmtval()
    }

    /// The base of FreeBSD's persist interval, `((t_srtt >> 2) + t_rttvar) >> 1` in its
    /// fixed point: `4 * srtt + 8 * rttvar` (µs); before any sample, with FreeBSD's initial
    /// `t_rttvar` of a quarter of the initial RTO, twice the initial RTO.
    pub fn persist_base_us(&self) -> u64 {
        if !self.has_sample {
            return 2 * self.rexmit_initial as u64;
        }
        4 * self.t_srtt as u64 + 8 * self.t_rttvar as u64
    }

    /// Smoothed RTT (µs); 0 before the first sample.
    pub fn srtt(&self) -> u32 {
        self.t_srtt
    }

    /// RTT variation (µs); 0 before the first sample.
    pub fn rttvar(&self) -> u32 {
        self.t_rttvar
    }

    /// Whether at least one sample has been taken.
    pub fn has_sample(&self) -> bool {
        self.has_sample
    }
}

/// Times one segment at a time (FreeBSD `t_rtseq`/`t_rtttime`), applying Karn's rule: a
/// retransmission invalidates the measurement because the ACK is ambiguous.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct RttTimer {
    t_rtseq: u32,
    /// Send time in ns; `None` when not timing (FreeBSD uses `t_rtttime == 0`).
    t_rtttime: Option<u64>,
}

impl RttTimer {
    pub const fn new() -> Self {
        Self {
            t_rtseq: 0,
            t_rtttime: None,
        }
    }

    /// Starts timing the segment beginning at `seq`, sent at `now` (ns), unless a segment is
    /// already being timed (as FreeBSD's `tcp_output`). Call it only for new data, never for a
    /// retransmission. Returns whether timing started.
    pub fn start(&mut self, seq: u32, now: u64) -> bool {
        if self.t_rtttime.is_some() {
            return false;
        }
        self.t_rtseq = seq;
        self.t_rtttime = Some(now);
        true
    }

    /// On an ACK: if it covers the timed segment's first byte (`ack > t_rtseq`), stops timing
    /// and returns the sample in µs (saturating at `u32::MAX`; 0 if `now` precedes the start).
    pub fn on_ack(&mut self, ack: u32, now: u64) -> Option<u32> {
        let sent = self.t_rtttime?;
        if !seq_gt(ack, self.t_rtseq) {
            return None;
        }
        self.t_rtttime = None;
        let us = now.saturating_sub(sent) / 1_000;
        Some(us.min(u32::MAX as u64) as u32)
    }

    /// Drops the measurement in progress (call on any retransmission: Karn's rule).
    pub fn invalidate(&mut self) {
        self.t_rtttime = None;
    }

    /// Whether a segment is being timed.
    pub fn is_running(&self) -> bool {
        self.t_rtttime.is_some()
    }

    /// The timed sequence number, if timing.
    pub fn t_rtseq(&self) -> Option<u32> {
        self.t_rtttime.map(|_| self.t_rtseq)
    }
}

/// Send times of the data in flight, for an RTT sample on every ACK (what FreeBSD's h_ertt
/// keeps as its txseginfo list). The RTO estimator keeps one timed segment per RTT; CC
/// modules (HyStart++, the delay-based ones) want a sample per ACK. Karn's rule holds: an
/// ACK that covers retransmitted data gives no sample.
#[derive(Clone, Debug, Default)]
pub struct SendTimes {
    /// Allocated on the first send: an idle connection keeps one pointer, not an empty
    /// deque's four words (the per-idle-endpoint memory budget counts them).
    #[allow(clippy::box_collection)]
    runs: Option<Box<std::collections::VecDeque<SentRun>>>,
}

#[derive(Clone, Copy, Debug)]
struct SentRun {
    start: u32,
    end: u32,
    /// Flight size when sent (bytes).
    fas: u32,
    sent: u64,
    retransmitted: bool,
}

impl SendTimes {
    /// Bound on tracked runs: beyond it new data joins the last run (fewer, coarser samples).
    pub const MAX_RUNS: usize = 4096;

    /// Data `[start, end)` left at `now` (ns) with `flight` bytes outstanding before it.
    /// `retransmit` marks the runs it overlaps instead.
    pub fn on_send(&mut self, start: u32, end: u32, now: u64, flight: u32, retransmit: bool) {
        if retransmit {
            for r in self.runs.iter_mut().flat_map(|q| q.iter_mut()) {
                if seq_lt(r.start, end) && seq_gt(r.end, start) {
                    r.retransmitted = true;
                }
            }
            return;
        }
        let runs = self.runs.get_or_insert_with(Default::default);
        let full = runs.len() >= Self::MAX_RUNS;
        if let Some(last) = runs.back_mut() {
            // Data sent in the same instant (one burst) shares one run.
            if last.end == start && !last.retransmitted && (last.sent == now || full) {
                last.end = end;
                return;
            }
        }
        runs.push_back(SentRun {
            start,
            end,
            fas: flight,
            sent: now,
            retransmitted: false,
        });
    }

    /// When the oldest data still tracked was first sent (ns).
    pub fn oldest_sent(&self) -> Option<u64> {
        self.runs.as_ref()?.front().map(|r| r.sent)
    }

    /// A cumulative ACK at `now` (ns): forgets what it covers and returns the RTT (us) and
    /// flight-at-send of the newest data it acknowledges (the run it ends in), unless
    /// retransmitted data is involved.
    pub fn on_ack(&mut self, ack: u32, now: u64) -> Option<(u32, u32)> {
        let mut newest = None;
        let mut ambiguous = false;
        let runs = self.runs.as_mut()?;
        while let Some(r) = runs.front() {
            if seq_leq(r.end, ack) {
                ambiguous |= r.retransmitted;
                newest = Some(*r);
                runs.pop_front();
            } else {
                if seq_gt(ack, r.start) {
                    // The ACK ends inside this run: the segment that triggered it is one of
                    // the run's, all sent at once, so the run's time is the exact one (an
                    // older completed run may have waited at a delaying receiver).
                    ambiguous |= r.retransmitted;
                    newest = Some(*r);
                    let f = runs.front_mut().expect("front exists");
                    f.start = ack;
                }
                break;
            }
        }
        let r = newest.filter(|_| !ambiguous)?;
        let us = now.saturating_sub(r.sent) / 1_000;
        Some((us.min(u32::MAX as u64) as u32, r.fas))
    }

    /// Forgets everything (after an RTO everything in flight will be sent again).
    pub fn clear(&mut self) {
        if let Some(runs) = self.runs.as_mut() {
            runs.clear();
        }
    }

    /// Runs tracked.
    pub fn len(&self) -> usize {
        self.runs.as_ref().map_or(0, |q| q.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// RTT sample from the timestamp option (RFC 7323 RTTM): `now_ts - tsecr`, in the units of
/// the local TS clock (FreeBSD uses 1 ms ticks; multiply by 1000 for µs). Returns `None` when
/// `tsecr` is 0 (FreeBSD treats it as "no echo") or lies in the future (a bogus echo).
/// Unlike [`RttTimer`], valid for retransmitted segments too; the caller should use it only on
/// ACKs that advance `snd_una` (RFC 7323 section 4.2). No +1 tick is added, unlike FreeBSD:
/// callers with a coarse TS clock may add one unit themselves.
pub fn ts_sample(now_ts: u32, tsecr: u32) -> Option<u32> {
    if tsecr == 0 {
        return None;
    }
    let d = now_ts.wrapping_sub(tsecr);
    if (d as i32) < 0 {
        None
    } else {
        Some(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn freebsd() -> RttEstimator {
        RttEstimator::new(1_000_000, 30_000, 200_000, 64_000_000)
    }

    #[test]
    fn initial_rto_before_sample() {
        let e = freebsd();
        assert!(!e.has_sample());
        assert_eq!(e.rto_us(), 1_000_000);
        assert_eq!((e.srtt(), e.rttvar()), (0, 0));
        // Initial above the ceiling is capped.
        assert_eq!(
            RttEstimator::new(90_000_000, 0, 0, 64_000_000).rto_us(),
            64_000_000
        );
    }

    #[test]
    fn rfc6298_sequence_by_hand() {
        let mut e = freebsd();
        // First: srtt = R = 100 ms, rttvar = 50 ms, rto = 100 + 4*50 + 200 (slop) ms.
        e.sample(100_000);
        assert!(e.has_sample());
        assert_eq!(
            (e.srtt(), e.rttvar(), e.rto_us()),
            (100_000, 50_000, 500_000)
        );
        // R = 200 ms: rttvar = (3*50 + 100)/4 = 62.5 ms; srtt = (7*100 + 200)/8 = 112.5 ms;
        // rto = 112.5 + 250 + 200 ms.
        e.sample(200_000);
        assert_eq!(
            (e.srtt(), e.rttvar(), e.rto_us()),
            (112_500, 62_500, 562_500)
        );
        // R = 100 ms: rttvar = (187.5 + 12.5)/4 = 50 ms; srtt = (787.5 + 100)/8 = 110.9375 ms
        // truncated to 110937 µs; rto = 110937 + 200000 + 200000.
        e.sample(100_000);
        assert_eq!(
            (e.srtt(), e.rttvar(), e.rto_us()),
            (110_937, 50_000, 510_937)
        );
    }

    #[test]
    fn without_slop_the_rto_is_the_rfc_s() {
        // RFC-pure parameters (G = 0, min 1 s): R = 3 s gives 3 + 4*1.5 = 9 s.
        let mut e = RttEstimator::new(1_000_000, 1_000_000, 0, 60_000_000);
        e.sample(3_000_000);
        assert_eq!(e.rto_us(), 9_000_000);
    }

    #[test]
    fn floor_and_ceiling() {
        let mut e = RttEstimator::new(1_000_000, 30_000, 0, 64_000_000);
        e.sample(1_000); // 1 ms + 4*0.5 ms = 3 ms < 30 ms floor
        assert_eq!(e.rto_us(), 30_000);
        // FreeBSD: the floor applies before the slop, so the smallest RTO is min + slop.
        let mut e = freebsd();
        e.sample(1_000);
        assert_eq!(e.rto_us(), 230_000);
        let mut e = freebsd();
        e.sample(40_000_000); // 40 s + 80 s, capped
        assert_eq!(e.rto_us(), 64_000_000);
        // Huge samples do not overflow.
        let mut e = freebsd();
        e.sample(u32::MAX);
        e.sample(u32::MAX);
        assert_eq!(e.rto_us(), 64_000_000);
        // min > max: max wins.
        let mut e = RttEstimator::new(1_000_000, 10_000_000, 0, 5_000_000);
        e.sample(1);
        assert_eq!(e.rto_us(), 5_000_000);
    }

    #[test]
    fn backoff_table_and_clamp() {
        let mut e = freebsd();
        e.sample(100_000); // REXMTVAL 300 ms, rto 500 ms
        assert_eq!(e.backoff(0), 500_000);
        let want = [1u64, 2, 4, 8, 16, 32, 64, 128, 256, 512, 512, 512, 512];
        for (shift, m) in want.iter().enumerate().skip(1) {
            let v = (300_000 * m + 200_000).min(64_000_000) as u32;
            assert_eq!(e.backoff(shift as u32), v, "shift {shift}");
        }
        assert_eq!(e.backoff(7), 38_600_000);
        assert_eq!(e.backoff(8), 64_000_000);
        assert_eq!(e.backoff(u32::MAX), 64_000_000);
        // No sample: 1 s, then 1 s * 2^n + slop.
        assert_eq!(freebsd().backoff(0), 1_000_000);
        assert_eq!(freebsd().backoff(1), 2_200_000);
        assert_eq!(freebsd().backoff(6), 64_000_000);
    }

    #[test]
    fn syn_backoff_table() {
        let e = freebsd();
        let got: Vec<u32> = (0..=12).map(|n| e.syn_backoff(n)).collect();
        assert_eq!(
            got,
            [
                1_000_000, 2_200_000, 4_200_000, 8_200_000, 16_200_000, 32_200_000, 64_000_000,
                64_000_000, 64_000_000, 64_000_000, 64_000_000, 64_000_000, 64_000_000
            ]
        );
    }

    #[test]
    fn karn_rule() {
        let mut t = RttTimer::new();
        assert_eq!(t.on_ack(100, 0), None);
        assert!(t.start(1000, 1_000_000));
        // Already timing: a later segment does not restart the clock.
        assert!(!t.start(2000, 2_000_000));
        assert_eq!(t.t_rtseq(), Some(1000));
        // Retransmission: the ACK would be ambiguous.
        t.invalidate();
        assert!(!t.is_running());
        assert_eq!(t.on_ack(3000, 9_000_000), None);

        assert!(t.start(5000, 10_000_000));
        // ack == t_rtseq does not cover the timed segment.
        assert_eq!(t.on_ack(5000, 12_000_000), None);
        assert!(t.is_running());
        assert_eq!(t.on_ack(5001, 15_000_000), Some(5_000));
        // One sample per timed segment.
        assert_eq!(t.on_ack(6000, 16_000_000), None);
    }

    #[test]
    fn timer_wraps_and_saturates() {
        let mut t = RttTimer::new();
        t.start(u32::MAX - 10, 0);
        assert_eq!(t.on_ack(u32::MAX - 20, 1_000), None); // old ack
        assert_eq!(t.on_ack(5, 7_000), Some(7));
        t.start(1, 5_000);
        assert_eq!(t.on_ack(2, 1_000), Some(0)); // clock went backwards: 0, no panic
        t.start(1, 0);
        assert_eq!(t.on_ack(2, u64::MAX), Some(u32::MAX));
    }

    #[test]
    fn timestamp_samples() {
        assert_eq!(ts_sample(1000, 900), Some(100));
        assert_eq!(ts_sample(5, u32::MAX - 4), Some(10)); // TS clock wrapped
        assert_eq!(ts_sample(1000, 0), None);
        assert_eq!(ts_sample(1000, 1001), None); // echo from the future
        assert_eq!(ts_sample(1000, 1000), Some(0));
    }

    #[test]
    fn send_times_sample_every_ack_and_follow_karn() {
        let mut st = SendTimes::default();
        // Two segments in one burst share a run; a third leaves 1 ms later.
        st.on_send(1000, 2000, 0, 0, false);
        st.on_send(2000, 3000, 0, 1000, false);
        st.on_send(3000, 4000, 1_000_000, 2000, false);
        assert_eq!(st.len(), 2);
        // Half the first run acked: sampled from that run.
        assert_eq!(st.on_ack(1500, 40_000_000), Some((40_000, 0)));
        assert_eq!(st.on_ack(3000, 40_000_000), Some((40_000, 0)));
        // Retransmitting part of the last run makes its ACK ambiguous.
        st.on_send(3000, 3500, 41_000_000, 1000, true);
        assert_eq!(st.on_ack(4000, 80_000_000), None);
        assert!(st.is_empty());
        // New data after that samples again.
        st.on_send(4000, 5000, 90_000_000, 0, false);
        assert_eq!(st.on_ack(5000, 120_000_000), Some((30_000, 0)));
        // An ACK covering a segment held by a delaying receiver and part of a later run
        // samples the later run: the held one's time would add the receiver's delay.
        st.on_send(5000, 6000, 150_000_000, 0, false);
        st.on_send(6000, 7000, 160_000_000, 1000, false);
        assert_eq!(st.on_ack(6500, 200_000_000), Some((40_000, 1000)));
        assert_eq!(st.on_ack(7000, 210_000_000), Some((50_000, 1000)));
    }

    #[test]
    fn send_times_bound_their_memory() {
        let mut st = SendTimes::default();
        for i in 0..10_000u32 {
            st.on_send(i * 100, i * 100 + 100, i as u64, 0, false);
        }
        assert_eq!(st.len(), SendTimes::MAX_RUNS);
        assert!(st.on_ack(1_000_000, 20_000).is_some());
        assert!(st.is_empty());
    }
}
