//! CUBIC, as FreeBSD's cc_cubic(4) in its RFC 9438 form ("CUBIC for Fast and Long-Distance
//! Networks"): the window follows W_cubic(t) = C*(t-K)^3 + W_max (RFC 9438 4.1) in time since
//! the start of the congestion-avoidance stage, never below the Reno-friendly estimate W_est
//! (4.3); a congestion event multiplies the window by beta_cubic = 0.7 (4.6) with fast
//! convergence (4.7); an RTO follows 4.8 and a spurious one is undone (4.9, FreeBSD's
//! CC_RTO_ERR). Slow start uses RFC 3465 byte counting and HyStart++ (RFC 9406).
//!
//! Windows in the RFC formulas are in segments and t, K and RTT in seconds; the public
//! functions [`cubic_k`], [`w_cubic`], [`w_est`], [`alpha_cubic`] and [`cubic_target`] are
//! those formulas in f64. The module keeps windows in bytes and converts with t_maxseg.
//!
//! # The clock
//! Plugins never read a clock. The stack stamps `tp.t_rcvtime` (ns, host clock) with the
//! arrival time of every segment before it runs the CC hooks for it (stacks/base
//! `do_segment`), so in `ack_received` it is "now", and CUBIC's t is `t_rcvtime` minus the
//! `t_rcvtime` of the ACK that began the epoch. Hooks that run off a timer or on output
//! (`cong_signal(CC_RTO)`, `after_idle`) do not know the time; they only mark the epoch to be
//! restarted, and the next congestion-avoidance ACK starts it. That is also what RFC 9438 4.2
//! asks for (t counts from the beginning of the current congestion-avoidance stage) and what
//! FreeBSD does since its RFC 9438 update (cong_signal flags the event, ack_received starts the
//! epoch).
//!
//! FreeBSD's cc_cubic has no sysctls and no TCP_CCALGOOPT; neither has this module.

use plugtcp_abi::cc::{ccf, CcAlgorithm, CcVar, CC_ACK, CC_ECN, CC_NDUPACK, CC_RTO, CC_RTO_ERR};
use plugtcp_abi::tcpcb::tf;
use plugtcp_abi::{Errno, Tcpcb};
use plugtcp_tcpkit::cc::common::{self, grow_cwnd, slow_start_increase};
use plugtcp_tcpkit::cc::hystart::{HyStart, Phase};

/// RFC 9438 section 5 (Table 1): C, in segments per second cubed.
pub const CUBIC_C: f64 = 0.4;
/// RFC 9438 4.6: the multiplicative decrease factor.
pub const CUBIC_BETA: f64 = 0.7;
/// RFC 9438 4.3, equation 5: alpha_cubic = 3 * (1 - beta_cubic) / (1 + beta_cubic).
pub const ALPHA_CUBIC: f64 = 3.0 * (1.0 - CUBIC_BETA) / (1.0 + CUBIC_BETA);

/// beta_cubic and the fast-convergence factor (1 + beta_cubic) / 2 as exact fractions, so
/// that byte windows are reduced without rounding surprises.
const BETA_NUM: u64 = 7;
const BETA_DEN: u64 = 10;
const FC_NUM: u64 = 17;
const FC_DEN: u64 = 20;

/// FreeBSD CUBIC_MIN_RTT_SAMPLES: srtt is not trusted before this many RTT samples.
pub const CUBIC_MIN_RTT_SAMPLES: u32 = 8;

/// FreeBSD limits cwnd to INT_MAX in congestion avoidance.
const CUBIC_CWND_MAX: u32 = i32::MAX as u32;

/// `cubic.flags`, FreeBSD's CUBICFLAG_* (HyStart++'s two flags live in [`HyStart`]).
pub mod cubicflag {
    /// A congestion event has happened: W_max is a real maximum, not a placeholder.
    pub const CONG_EVENT: u32 = 0x0000_0001;
    /// Slow start ran since the epoch began: the next congestion-avoidance ACK starts one.
    pub const IN_SLOWSTART: u32 = 0x0000_0002;
    /// An ACK found us application-limited: restart the epoch when cwnd limits us again.
    pub const IN_APPLIMIT: u32 = 0x0000_0004;
    /// An RTO happened: the next congestion-avoidance stage uses RFC 9438 4.8.
    pub const RTO_EVENT: u32 = 0x0000_0008;
}
use cubicflag::*;

/// RFC 9438 4.1, equation 2: K = cbrt((W_max - cwnd_epoch) / C), the time (seconds) the
/// cubic function takes to grow from cwnd_epoch to W_max (windows in segments). With
/// cwnd_epoch = beta_cubic * W_max this is cbrt(W_max * (1 - beta_cubic) / C). When
/// cwnd_epoch is above W_max, K is negative (the real cube root): the curve still starts at
/// cwnd_epoch, already in its convex part.
pub fn cubic_k(w_max: f64, cwnd_epoch: f64) -> f64 {
    ((w_max - cwnd_epoch) / CUBIC_C).cbrt()
}

/// RFC 9438 4.1, equation 1: W_cubic(t) = C * (t - K)^3 + W_max (segments; t and K in
/// seconds).
pub fn w_cubic(t: f64, k: f64, w_max: f64) -> f64 {
    let d = t - k;
    CUBIC_C * d * d * d + w_max
}

/// RFC 9438 4.3: alpha_cubic, or 1 once W_est has reached cwnd_prior (the window before the
/// last reduction), from where Reno's own increase is the fair one.
pub fn alpha_cubic(w_est: f64, cwnd_prior: f64) -> f64 {
    if w_est >= cwnd_prior {
        1.0
    } else {
        ALPHA_CUBIC
    }
}

/// RFC 9438 4.3, equation 4: W_est after an ACK for `segments_acked` segments,
/// W_est + alpha_cubic * segments_acked / cwnd (segments).
pub fn w_est(w_est: f64, segments_acked: f64, cwnd: f64, cwnd_prior: f64) -> f64 {
    w_est + alpha_cubic(w_est, cwnd_prior) * segments_acked / cwnd
}

/// RFC 9438 4.2: the window to aim at one RTT ahead, W_cubic(t + RTT) kept within
/// [cwnd, 1.5 * cwnd] (segments).
pub fn cubic_target(w_cubic_next: f64, cwnd: f64) -> f64 {
    if w_cubic_next < cwnd {
        cwnd
    } else if w_cubic_next > 1.5 * cwnd {
        1.5 * cwnd
    } else {
        w_cubic_next
    }
}

/// What CC_RTO_ERR (a spurious RTO) restores: the state at the first RTO (RFC 9438 4.9).
#[derive(Clone, Debug, PartialEq)]
pub struct CubicUndo {
    pub snd_cwnd: u32,
    pub snd_ssthresh: u32,
    pub w_max: u32,
    pub k: f64,
    pub w_est: f64,
    pub cwnd_epoch: u32,
    pub cwnd_prior: u32,
    pub t_epoch: Option<u64>,
    pub cong_event: bool,
}

/// Per-connection state (FreeBSD `struct cubic`). Windows in bytes.
#[derive(Clone, Debug, PartialEq)]
pub struct Cubic {
    /// RFC 9438 W_max: the window before the last reduction (after fast convergence).
    pub w_max: u32,
    /// RFC 9438 K (seconds).
    pub k: f64,
    /// RFC 9438 W_est (bytes, fractional).
    pub w_est: f64,
    /// cwnd when the current congestion-avoidance stage began.
    pub cwnd_epoch: u32,
    /// cwnd when ssthresh was last set (before a reduction, or at leaving slow start).
    pub cwnd_prior: u32,
    /// `t_rcvtime` (ns) of the ACK that began the current epoch; `None`: the next
    /// congestion-avoidance ACK begins one.
    pub t_epoch: Option<u64>,
    pub flags: u32,
    /// Smallest srtt seen (us); 0 until srtt is trusted (FreeBSD's TCPTV_SRTTBASE).
    pub min_rtt_usecs: u32,
    /// Mean srtt over the last congestion epoch (us): the RTT of W_cubic(t + RTT).
    pub mean_rtt_usecs: u32,
    pub sum_rtt_usecs: u64,
    pub epoch_ack_count: u32,
    /// RTT samples seen, standing in for FreeBSD's t_rttupdated.
    pub rtt_samples: u32,
    /// Sub-byte remainder of the cubic increase, so that tiny per-ACK steps near the
    /// plateau add up.
    pub cwnd_carry: f64,
    /// Boxed: only an RTO needs it, and an idle connection keeps its state small.
    pub undo: Option<Box<CubicUndo>>,
    pub hystart: HyStart,
}

impl Cubic {
    /// FreeBSD cubic_record_rtt(): once srtt is trusted, track its minimum (which also
    /// primes the mean in the first epoch) and sum it for the epoch's mean.
    fn record_rtt(&mut self, tp: &Tcpcb) {
        let srtt = tp.t_srtt;
        if self.rtt_samples < CUBIC_MIN_RTT_SAMPLES || srtt == 0 {
            return;
        }
        if self.min_rtt_usecs == 0 || srtt < self.min_rtt_usecs {
            self.min_rtt_usecs = srtt;
            self.mean_rtt_usecs = self.mean_rtt_usecs.max(srtt);
        }
        self.sum_rtt_usecs += srtt as u64;
        self.epoch_ack_count = self.epoch_ack_count.saturating_add(1);
    }

    /// Begins a congestion-avoidance stage at `now` with the current window.
    fn start_epoch(&mut self, now: u64, cwnd: u32, mss: u32) {
        self.t_epoch = Some(now);
        self.cwnd_epoch = cwnd;
        self.w_est = cwnd as f64;
        self.cwnd_carry = 0.0;
        if self.flags & CONG_EVENT == 0 {
            // RFC 9438 4.10: left slow start without a congestion event, so W_max is
            // undefined: probe from here (K = 0, W_max = cwnd), with cwnd_prior = cwnd.
            self.w_max = cwnd;
            self.cwnd_prior = cwnd;
            self.k = 0.0;
        } else {
            let mss = mss as f64;
            self.k = cubic_k(self.w_max as f64 / mss, cwnd as f64 / mss);
        }
    }

    /// FreeBSD cubic_ssthresh_update() as RFC 9438 4.6 and 4.7 have it: remember cwnd,
    /// lower W_max by fast convergence when the last maximum was not reached again, and set
    /// ssthresh to beta_cubic * cwnd (at least two segments). The new epoch starts with the
    /// next congestion-avoidance ACK.
    fn ssthresh_update(&mut self, tp: &mut Tcpcb, mss: u32) {
        let cwnd = tp.snd_cwnd as u64;
        self.cwnd_prior = tp.snd_cwnd;
        self.w_max = if cwnd < self.w_max as u64 {
            (cwnd * FC_NUM / FC_DEN) as u32
        } else {
            tp.snd_cwnd
        };
        tp.snd_ssthresh = ((cwnd * BETA_NUM / BETA_DEN) as u32).max(2 * mss);
        self.flags |= CONG_EVENT;
        self.t_epoch = None;
    }

    /// RFC 9438 4.2-4.5 for one ACK in congestion avoidance.
    fn congestion_avoidance(&mut self, ccv: &mut CcVar, tp: &mut Tcpcb) {
        let now = tp.t_rcvtime;
        let mss = tp.maxseg().max(1);
        let cwnd = tp.snd_cwnd;
        if self.hystart.phase == Phase::Css {
            // Slipped into congestion avoidance while in CSS: HyStart++ is over.
            self.hystart.phase = Phase::Done;
        }
        if self.flags & (RTO_EVENT | IN_SLOWSTART) == RTO_EVENT | IN_SLOWSTART {
            // RFC 9438 4.8: the first stage after an RTO probes from where it is:
            // K = 0, W_max = W_est = cwnd at its start.
            self.flags &= !(RTO_EVENT | IN_SLOWSTART);
            self.start_epoch(now, cwnd, mss);
            self.w_max = cwnd;
            self.k = 0.0;
        } else if self.flags & (IN_SLOWSTART | IN_APPLIMIT) != 0 || self.t_epoch.is_none() {
            // A new stage: after slow start, after a reduction, or after being limited by
            // the application (RFC 9438 5.8: that time must not count).
            self.flags &= !(IN_SLOWSTART | IN_APPLIMIT);
            self.start_epoch(now, cwnd, mss);
        }
        let t = now.saturating_sub(self.t_epoch.unwrap_or(now)) as f64 / 1e9;
        let rtt = self.mean_rtt_usecs.max(1) as f64 / 1e6;
        let mss_f = mss as f64;
        let cwnd_f = cwnd as f64;
        // An ACK never counts for more than a window (a cumulative ACK after recovery).
        let acked = (ccv.bytes_this_ack as f64).min(cwnd_f);
        let w_max_segs = self.w_max as f64 / mss_f;

        self.w_est = mss_f
            * w_est(
                self.w_est / mss_f,
                acked / mss_f,
                cwnd_f / mss_f,
                self.cwnd_prior as f64 / mss_f,
            );
        ccv.flags &= !ccf::ABC_SENTAWND;

        let (new_cwnd, carry) = if mss_f * w_cubic(t, self.k, w_max_segs) < self.w_est {
            // Reno-friendly region (4.3): cwnd = W_est.
            (self.w_est.max(cwnd_f), 0.0)
        } else {
            // Concave (4.4) or convex (4.5) region: (target - cwnd) / cwnd per segment
            // acknowledged, so a window of ACKs reaches the target one RTT ahead.
            let target = mss_f * cubic_target(w_cubic(t + rtt, self.k, w_max_segs), cwnd_f / mss_f);
            let grown = cwnd_f + (target - cwnd_f) * acked / cwnd_f + self.cwnd_carry;
            (grown, grown - grown.floor())
        };
        let whole = new_cwnd.floor().min(CUBIC_CWND_MAX as f64);
        self.cwnd_carry = if whole < CUBIC_CWND_MAX as f64 {
            carry
        } else {
            0.0
        };
        tp.snd_cwnd = tp.snd_cwnd.max(whole as u32);
    }
}

impl CcAlgorithm for Cubic {
    const NAME: &'static str = "cubic";

    fn cb_init(_ccv: &CcVar, tp: &Tcpcb) -> Result<Self, Errno> {
        // Switched in on a live connection, the stack's srtt already holds what FreeBSD's
        // t_rttupdated would vouch for: trust it at once rather than slow-starting a large
        // window for eight more samples.
        let srtt_known = tp.t_srtt > 0;
        Ok(Cubic {
            w_max: if tp.snd_cwnd == u32::MAX {
                0
            } else {
                tp.snd_cwnd
            },
            k: 0.0,
            w_est: 0.0,
            cwnd_epoch: 0,
            cwnd_prior: 0,
            t_epoch: None,
            flags: 0,
            min_rtt_usecs: if srtt_known { tp.t_srtt } else { 0 },
            mean_rtt_usecs: if srtt_known { tp.t_srtt } else { 1 },
            sum_rtt_usecs: 0,
            epoch_ack_count: 0,
            rtt_samples: if srtt_known { CUBIC_MIN_RTT_SAMPLES } else { 0 },
            cwnd_carry: 0.0,
            undo: None,
            hystart: HyStart::default(),
        })
    }

    /// FreeBSD cubic_conn_init(): a sane W_max from the initial (or inherited) window.
    fn conn_init(&mut self, _ccv: &mut CcVar, tp: &mut Tcpcb) {
        self.w_max = tp.snd_cwnd;
    }

    fn ack_received(&mut self, ccv: &mut CcVar, tp: &mut Tcpcb, ack_type: u32) {
        self.record_rtt(tp);
        if ack_type != CC_ACK || tp.in_recovery() {
            return;
        }
        if ccv.flags & ccf::CWND_LIMITED == 0 {
            self.flags |= IN_APPLIMIT;
            return;
        }
        if tp.snd_cwnd <= tp.snd_ssthresh || self.min_rtt_usecs == 0 {
            // Slow start with ABC (RFC 3465), slowed down in HyStart++'s CSS; also while
            // the RTT is not yet known, since W_cubic(t + RTT) needs it.
            self.flags |= IN_SLOWSTART;
            let incr = self.hystart.ss_increase(ccv, slow_start_increase(ccv, tp));
            grow_cwnd(tp, incr);
        } else {
            self.congestion_avoidance(ccv, tp);
        }
    }

    fn cong_signal(&mut self, _ccv: &mut CcVar, tp: &mut Tcpcb, sig: u32) {
        let mss = tp.maxseg().max(1);
        match sig {
            CC_NDUPACK => {
                self.hystart.on_congestion();
                if !tp.in_fastrecovery() {
                    // An ECN reduction in this window already counted for this loss.
                    if !tp.in_congrecovery() {
                        self.ssthresh_update(tp, mss);
                    }
                    tp.t_flags |= tf::FASTRECOVERY | tf::CONGRECOVERY;
                }
            }
            CC_ECN => {
                self.hystart.on_congestion();
                // The stack calls this on every ECE; reduce once per window.
                if !tp.in_congrecovery() {
                    self.ssthresh_update(tp, mss);
                    tp.snd_cwnd = tp.snd_ssthresh;
                    tp.t_flags |= tf::CONGRECOVERY;
                }
            }
            CC_RTO => {
                if tp.t_rxtshift <= 1 {
                    // First RTO of this episode: remember the state for CC_RTO_ERR and set
                    // ssthresh by beta_cubic (RFC 9438 4.8), in whole segments as FreeBSD.
                    self.undo = Some(Box::new(CubicUndo {
                        snd_cwnd: tp.snd_cwnd,
                        snd_ssthresh: tp.snd_ssthresh,
                        w_max: self.w_max,
                        k: self.k,
                        w_est: self.w_est,
                        cwnd_epoch: self.cwnd_epoch,
                        cwnd_prior: self.cwnd_prior,
                        t_epoch: self.t_epoch,
                        cong_event: self.flags & CONG_EVENT != 0,
                    }));
                    let pipe = tp.snd_wnd.min(tp.flight_size()) as u64;
                    let segs = (pipe * BETA_NUM / BETA_DEN / mss as u64).max(2);
                    tp.snd_ssthresh = (segs * mss as u64).min(u32::MAX as u64) as u32;
                }
                self.flags |= CONG_EVENT | RTO_EVENT;
                tp.snd_cwnd = mss;
            }
            CC_RTO_ERR => {
                // The RTO was spurious: back to the state before it. FreeBSD's stack restores
                // cwnd and ssthresh (snd_cwnd_prev) and the module the rest; this Tcpcb keeps
                // no previous values, so the module restores all of it (the same values a
                // stack would restore).
                if let Some(u) = self.undo.take() {
                    self.flags &= !(RTO_EVENT | CONG_EVENT);
                    if u.cong_event {
                        self.flags |= CONG_EVENT;
                    }
                    tp.snd_cwnd = u.snd_cwnd;
                    tp.snd_ssthresh = u.snd_ssthresh;
                    self.w_max = u.w_max;
                    self.k = u.k;
                    self.w_est = u.w_est;
                    self.cwnd_epoch = u.cwnd_epoch;
                    self.cwnd_prior = u.cwnd_prior;
                    self.t_epoch = u.t_epoch;
                }
            }
            _ => {}
        }
    }

    /// FreeBSD cubic_post_recovery(): leave fast recovery at pipe + 1 SMSS when little is in
    /// flight (RFC 6582), else at ssthresh = beta_cubic * cwnd_prior (RFC 9438 4.6); and take
    /// the epoch's mean RTT.
    fn post_recovery(&mut self, ccv: &mut CcVar, tp: &mut Tcpcb) {
        let mss = tp.maxseg().max(1);
        if tp.in_fastrecovery() {
            let pipe = ccv.pipe;
            tp.snd_cwnd = if pipe < tp.snd_ssthresh {
                pipe.max(mss) + mss
            } else {
                tp.snd_ssthresh.max(2 * mss)
            };
        }
        if self.epoch_ack_count > 0 && self.sum_rtt_usecs >= self.epoch_ack_count as u64 {
            self.mean_rtt_usecs = (self.sum_rtt_usecs / self.epoch_ack_count as u64) as u32;
        }
        self.epoch_ack_count = 0;
        self.sum_rtt_usecs = 0;
    }

    /// FreeBSD cubic_after_idle(): keep the old window as W_max, give HyStart++ another
    /// chance, restart from RFC 5681's restart window (newreno_cc_after_idle), and do not
    /// count the idle time in t: the epoch restarts with the next congestion-avoidance ACK.
    fn after_idle(&mut self, ccv: &mut CcVar, tp: &mut Tcpcb) {
        self.w_max = self.w_max.max(tp.snd_cwnd);
        if self.hystart.phase == Phase::Done {
            self.hystart.phase = Phase::SlowStart;
            self.hystart.css_baseline_min_rtt = u32::MAX;
        }
        common::newreno_cc_after_idle(ccv, tp);
        self.flags |= IN_APPLIMIT;
    }

    fn rttsample(
        &mut self,
        ccv: &mut CcVar,
        tp: &mut Tcpcb,
        usec_rtt: u32,
        rxtcnt: u32,
        _fas: u32,
    ) {
        self.rtt_samples = self.rtt_samples.saturating_add(1);
        // HyStart++ only looks at unambiguous samples (FreeBSD cubic_rttsample).
        if rxtcnt > 1 {
            return;
        }
        self.hystart.rttsample(ccv, tp, usec_rtt);
    }

    fn newround(&mut self, ccv: &mut CcVar, tp: &mut Tcpcb, _round_cnt: u32) {
        self.hystart.newround(ccv, tp);
    }
}

plugtcp_abi::export_cc_module!(Cubic);

#[cfg(test)]
mod tests;
