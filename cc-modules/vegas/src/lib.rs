//! Vegas, as FreeBSD's cc_vegas(4): L. S. Brakmo and L. L. Peterson, "TCP Vegas: End to End
//! Congestion Avoidance on a Global Internet", IEEE JSAC 13(8), 1995.
//!
//! Once per RTT Vegas compares the expected rate `cwnd / BaseRTT` with the actual rate
//! `(bytes sent in the RTT) / RTT` and turns the difference into segments queued in the
//! network: `diff = (expected - actual) * BaseRTT / MSS`. Below `alpha` it adds one segment
//! to cwnd, above `beta` it takes one away (a rate-based congestion signal), in between it
//! holds. Slow start grows only every other RTT (a toggle), so that the rates can be compared
//! on the RTTs in between, and ends at the first rate-based signal. Loss is NewReno's.
//!
//! Measurements come from the framework's [`ErttHelper`] (FreeBSD's h_ertt(4)), fed by the
//! stack's per-ACK `rttsample` and per-round `newround` through h_ertt's delayed-ACK guard:
//! BaseRTT is its `minrtt`, RTT its `markedpkt_rtt`, one sample per round as h_ertt's marked
//! packet (the latest guarded sample when the round ended). Not the round's smallest sample:
//! a flow with a larger window takes more samples per round, sees a lower minimum, hence a
//! smaller diff, and keeps its larger share (Jain's index 0.85 for two flows in the host's
//! 100 Mbit/s, 40 ms experiment).
//!
//! h_ertt's `bytes_tx_in_marked_rtt` (bytes sent from the marked packet until its ACK) is
//! here the data outstanding when the round began, which is what the round's ACKs
//! acknowledge, sent within one RTT. The ACKs' own sum (`Ertt::acked`) is not used: the ACKs
//! between two round ends cover the data outstanding at the first one minus the ACK that
//! ended it (the stack closes a round at the snd_max seen before that ACK's sends), so with
//! delayed ACKs the "actual" bytes would be two segments short and diff two segments high on
//! an empty queue. `marked_snd_cwnd` is the window at that same instant: cwnd, less the part
//! of a segment it cannot fill when the window is full ([`usable_cwnd`]). A sender holds
//! whole segments only, so up to a segment of cwnd (more as cwnd grows by t_maxseg and
//! segments carry t_maxseg less the options) is never outstanding; counted as queued data it
//! added up to one segment to diff, which with alpha = 1 and the one-packet bursts of an ACK
//! clock kept one flow at 45% of that link for good.
//!
//! Sysctls (`net.inet.tcp.cc.vegas.*`): `alpha` (default 1) and `beta` (default 3), in
//! segments, with FreeBSD's checks: both > 0 and alpha <= beta.

use std::sync::atomic::AtomicIsize;

use plugtcp_abi::cc::{param_value, CcAlgorithm, CcGlobals, CcParamDesc, CcVar};
use plugtcp_abi::{Errno, Tcpcb};
use plugtcp_tcpkit::cc::common::{self, max_cwnd};
use plugtcp_tcpkit::cc::ertt::ErttHelper;

/// Parameter indices in [`Vegas::PARAMS`].
pub const PARAM_ALPHA: usize = 0;
pub const PARAM_BETA: usize = 1;
pub const DEFAULT_ALPHA: i64 = 1;
pub const DEFAULT_BETA: i64 = 3;

/// The module's private congestion signal: the rates say the path is queueing (FreeBSD's
/// value, in the range `CC_SIGPRIVMASK` leaves to modules).
pub const CC_VEGAS_RATE: u32 = 0x0400_0000;

/// Segments queued in the network by the last measured RTT, FreeBSD's `ndiff`:
/// `(cwnd / minrtt - bytes / rtt) * minrtt / mss`, truncated towards zero as FreeBSD's integer
/// result. Computed as `(cwnd * rtt - bytes * minrtt) / (rtt * mss)` so that the rates, in
/// bytes per microsecond here (per tick in FreeBSD), are not truncated on the way.
pub fn vegas_ndiff(
    marked_snd_cwnd: u32,
    minrtt: u32,
    bytes_tx: u32,
    markedpkt_rtt: u32,
    mss: u32,
) -> i64 {
    let num = marked_snd_cwnd as i128 * markedpkt_rtt as i128 - bytes_tx as i128 * minrtt as i128;
    let den = markedpkt_rtt as i128 * mss.max(1) as i128;
    (num / den) as i64
}

/// The window a round could have outstanding: `cwnd`, or, when the data outstanding is
/// within a segment of it (the sender filled the window with whole segments), that data.
/// Further below cwnd (an application- or receiver-limited sender) it stays cwnd, as in
/// FreeBSD, and diff counts the unused window.
pub fn usable_cwnd(cwnd: u32, flight: u32, maxseg: u32) -> u32 {
    if flight.saturating_add(maxseg) > cwnd {
        flight.min(cwnd)
    } else {
        cwnd
    }
}

/// Per-connection state: FreeBSD's `struct vegas` and the h_ertt measurements it reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vegas {
    /// Set: NewReno's increase runs on every ACK (slow start on alternate RTTs).
    pub slow_start_toggle: bool,
    pub hertt: ErttHelper,
    /// The usable window and the data outstanding when the current round began (None: no
    /// round began yet).
    pub round_start: Option<(u32, u32)>,
    /// The same for the round that ended, until the ACK that ended it reaches
    /// `ack_received`, where the helper closes the round.
    pub ended_round: Option<(u32, u32)>,
    /// The usable window when the round of the last measurement began (h_ertt's
    /// marked_snd_cwnd).
    pub marked_snd_cwnd: u32,
}

impl Vegas {
    /// FreeBSD's per-RTT adjustment, on the ACK that completes a round's measurement.
    fn adjust(&mut self, ccv: &mut CcVar, tp: &mut Tcpcb) {
        let e = &self.hertt.ertt;
        if e.minrtt == 0 || e.markedpkt_rtt == 0 {
            return;
        }
        let ndiff = vegas_ndiff(
            self.marked_snd_cwnd,
            e.minrtt,
            e.bytes_tx_in_marked_rtt,
            e.markedpkt_rtt,
            tp.maxseg(),
        );
        let alpha = ccv.param(PARAM_ALPHA, DEFAULT_ALPHA);
        let beta = ccv.param(PARAM_BETA, DEFAULT_BETA);
        if ndiff < alpha {
            if tp.snd_cwnd <= tp.snd_ssthresh {
                // Slow start: grow on every other RTT only.
                self.slow_start_toggle = !self.slow_start_toggle;
            } else {
                self.slow_start_toggle = false;
                tp.snd_cwnd = tp.snd_cwnd.saturating_add(tp.maxseg()).min(max_cwnd(tp));
            }
        } else if ndiff > beta {
            self.cong_signal(ccv, tp, CC_VEGAS_RATE);
            self.slow_start_toggle = false;
        }
    }
}

impl CcAlgorithm for Vegas {
    const NAME: &'static str = "vegas";
    const PARAMS: &'static [CcParamDesc] = &[
        CcParamDesc::new(
            "alpha",
            "vegas alpha, specified as number of \"buffers\" (0 < alpha < beta)",
            DEFAULT_ALPHA,
            1,
            u32::MAX as i64,
        ),
        CcParamDesc::new(
            "beta",
            "vegas beta, specified as number of \"buffers\" (0 < alpha < beta)",
            DEFAULT_BETA,
            1,
            u32::MAX as i64,
        ),
    ];

    fn cb_init(_ccv: &CcVar, _tp: &Tcpcb) -> Result<Self, Errno> {
        Ok(Vegas {
            slow_start_toggle: true,
            hertt: ErttHelper::default(),
            round_start: None,
            ended_round: None,
            marked_snd_cwnd: 0,
        })
    }

    fn conn_init(&mut self, _ccv: &mut CcVar, _tp: &mut Tcpcb) {
        self.slow_start_toggle = true;
    }

    plugtcp_tcpkit::ertt_hooks!(hertt: rttsample);

    /// The stack calls this before it applies the ACK that ends the round: snd_una still
    /// marks the start of the data outstanding, and snd_max the end of the new round.
    fn newround(&mut self, _ccv: &mut CcVar, tp: &mut Tcpcb, _round_cnt: u32) {
        self.hertt.newround();
        // Several rounds may end before an ACK reaches ack_received (partial ACKs in
        // recovery): the one that ACK ends is the latest.
        self.ended_round = self.round_start;
        // Before the handshake has set cwnd (u32::MAX) a round measures nothing.
        self.round_start = (tp.snd_cwnd != u32::MAX).then(|| {
            let flight = tp.flight_size();
            (usable_cwnd(tp.snd_cwnd, flight, tp.maxseg()), flight)
        });
    }

    fn ack_received(&mut self, ccv: &mut CcVar, tp: &mut Tcpcb, ack_type: u32) {
        // Judges the ACK's RTT sample, then closes the round the ACK ended, if any: a new
        // measurement unless the round had no sample the guard accepted.
        self.hertt
            .ack_received(ack_type, ccv.bytes_this_ack, tp.maxseg());
        let ended_round = self.ended_round.take();
        if self.hertt.ertt.take_new_measurement() {
            // Nothing to compare for a round that began before this module was attached.
            if let Some((cwnd, outstanding)) = ended_round {
                self.marked_snd_cwnd = cwnd;
                self.hertt.ertt.bytes_tx_in_marked_rtt = outstanding;
                self.adjust(ccv, tp);
            }
        }
        if self.slow_start_toggle {
            common::newreno_cc_ack_received(ccv, tp, ack_type);
        }
    }

    fn cong_signal(&mut self, ccv: &mut CcVar, tp: &mut Tcpcb, sig: u32) {
        let presignalrecov = tp.in_recovery();
        match sig {
            CC_VEGAS_RATE => {
                if !tp.in_recovery() {
                    let mss = tp.maxseg();
                    tp.snd_cwnd = tp.snd_cwnd.saturating_sub(mss).max(2 * mss);
                    if tp.snd_cwnd < tp.snd_ssthresh {
                        // Leave slow start: the path is already queueing.
                        tp.snd_ssthresh = tp.snd_cwnd;
                    }
                }
            }
            _ => common::newreno_cc_cong_signal(ccv, tp, sig),
        }
        if tp.in_recovery() && !presignalrecov {
            self.slow_start_toggle = tp.snd_cwnd < tp.snd_ssthresh;
        }
    }

    plugtcp_tcpkit::newreno_hooks!(post_recovery, after_idle);

    /// FreeBSD vegas_alpha_handler / vegas_beta_handler: alpha <= beta against the value the
    /// other one has now (0 is the declared range's).
    fn param_check(
        idx: u32,
        value: i64,
        _globals: &CcGlobals,
        current: &[AtomicIsize],
    ) -> Result<(), Errno> {
        match idx as usize {
            PARAM_ALPHA if value > param_value(current, PARAM_BETA, DEFAULT_BETA) => {
                Err(Errno::EINVAL)
            }
            PARAM_BETA if value < param_value(current, PARAM_ALPHA, DEFAULT_ALPHA) => {
                Err(Errno::EINVAL)
            }
            _ => Ok(()),
        }
    }
}

plugtcp_abi::export_cc_module!(Vegas);

#[cfg(test)]
mod tests;
