//! H-TCP, as FreeBSD's cc_htcp(4): D. Leith and R. Shorten, "H-TCP: TCP for high-speed and
//! long-distance networks", PFLDnet 2004 (and draft-leith-tcp-htcp-06).
//!
//! The additive increase grows with the time since the last congestion event:
//! `alpha(delta) = 1 + 10 (delta - delta_L) + ((delta - delta_L) / 2)^2` segments per RTT for
//! `delta > delta_L` (delta_L = 1 s), 1 otherwise (so H-TCP is NewReno for the first second
//! after a loss). On loss ssthresh = beta * cwnd, with beta = 0.5, or with adaptive backoff
//! beta = minRTT / maxRTT clamped to [0.5, 0.8]. Adaptive backoff also scales alpha by
//! `2 (1 - beta)`, and RTT scaling by `RTT / RTT_ref` (RTT_ref = 100 ms, factor clamped to
//! [0.1, 2]), both as in the paper's section on fairness.
//!
//! Sysctls (`net.inet.tcp.cc.htcp.*`): `adaptive_backoff` (default 0) and `rtt_scaling`
//! (default 0), non-zero meaning enabled as FreeBSD's SYSCTL_UINTs.
//!
//! Time: plugins never read a clock. The base stack stores the arrival time of the segment
//! being processed in `tp.t_rcvtime` (ns, host clock) before it runs any CC hook for that
//! segment (stacks/base/src/input.rs, `do_segment`), so on an ACK `t_rcvtime` is "now", where
//! FreeBSD reads `ticks`. The one hook that does not run on a segment is the RTO's
//! `cong_signal`: there `t_rcvtime` is the last arrival, possibly seconds old, so the time of
//! that congestion event is taken from the next ACK instead (see [`Htcp::t_last_cong`]).

use plugtcp_abi::cc::{ccf, CcAlgorithm, CcParamDesc, CcVar, CC_ECN, CC_NDUPACK, CC_RTO};
use plugtcp_abi::tcpcb::tf;
use plugtcp_abi::{Errno, Tcpcb};
use plugtcp_tcpkit::cc::common::{self, max_cwnd, may_grow, TCP_MAXWIN};

/// Parameter indices in [`Htcp::PARAMS`].
pub const PARAM_ADAPTIVE_BACKOFF: usize = 0;
pub const PARAM_RTT_SCALING: usize = 1;

/// Fixed-point shift of beta and of the RTT-scaling factor (FreeBSD HTCP_SHIFT).
pub const HTCP_SHIFT: u32 = 8;
/// alpha right after a congestion event.
pub const HTCP_INIT_ALPHA: u32 = 1;
/// delta_L: the NewReno-like period after a congestion event (1 s, in ns).
pub const HTCP_DELTA_L: u64 = 1_000_000_000;
/// beta bounds, << HTCP_SHIFT: 0.5 and ~0.8.
pub const HTCP_MINBETA: u32 = 128;
pub const HTCP_MAXBETA: u32 = 204;
/// RTT-scaling factor bounds, << HTCP_SHIFT: ~0.1 and 2.
pub const HTCP_MINROWE: u64 = 26;
pub const HTCP_MAXROWE: u64 = 512;
/// RTT_ref of RTT scaling (100 ms, in us as `t_srtt`).
pub const HTCP_RTT_REF: u64 = 100_000;
/// SRTT is not trusted for minRTT/maxRTT before this many RTT updates.
pub const HTCP_MIN_RTT_SAMPLES: u32 = 8;
/// The largest delta - delta_L for which alpha is recomputed; past it alpha stays put.
/// FreeBSD's INT_MAX / 160 ticks at its default hz = 1000 (about 3.7 hours), in ns.
pub const HTCP_MAX_DIFF: u64 = (i32::MAX as u64 / 160) * 1_000_000;
/// FreeBSD's initial ssthresh (TCP_MAXWIN << TCP_MAX_WINSHIFT); plugtcp starts at u32::MAX.
const FREEBSD_INITIAL_SSTHRESH: u32 = TCP_MAXWIN << 14;

/// alpha(delta) of the paper, `floor(1 + 10 d + (d / 2)^2)` with `d = diff` seconds past
/// delta_L, computed exactly in integers: `(4 S^2 + 40 S D + D^2) / (4 S^2)` with D in ns and
/// S = 10^9. `diff_ns == 0` is alpha = 1.
pub fn htcp_calc_alpha(diff_ns: u64) -> u32 {
    const S: u128 = 1_000_000_000;
    let d = diff_ns as u128;
    let alpha = (4 * S * S + 40 * S * d + d * d) / (4 * S * S);
    alpha.min(u32::MAX as u128) as u32
}

/// Per-connection state, FreeBSD `struct htcp`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Htcp {
    /// cwnd when the last congestion event started (for the post-recovery window).
    pub prev_cwnd: u32,
    /// Additive increase, segments per RTT.
    pub alpha: u32,
    /// Multiplicative decrease, << HTCP_SHIFT.
    pub beta: u32,
    /// Largest and smallest SRTT seen (us; 0 = none yet, FreeBSD's TCPTV_SRTTBASE).
    pub maxrtt: u32,
    pub minrtt: u32,
    /// Host time (ns) of the last congestion event, or of the start of the connection. None
    /// when it happened where no current time was known (cb_init before any segment, an
    /// RTO): the arrival of the next ACK stands in for it.
    pub t_last_cong: Option<u64>,
    /// RTT updates seen (FreeBSD t_rttupdated): one per `rttsample` call.
    pub t_rttupdated: u32,
}

impl Htcp {
    fn adaptive_backoff(ccv: &CcVar) -> bool {
        ccv.param(PARAM_ADAPTIVE_BACKOFF, 0) != 0
    }

    fn rtt_scaling(ccv: &CcVar) -> bool {
        ccv.param(PARAM_RTT_SCALING, 0) != 0
    }

    /// FreeBSD htcp_recalc_beta(): minRTT / maxRTT within [0.5, 0.8] with adaptive backoff
    /// once both are known, 0.5 otherwise.
    pub fn recalc_beta(&mut self, ccv: &CcVar) {
        self.beta = if Self::adaptive_backoff(ccv) && self.minrtt != 0 && self.maxrtt != 0 {
            let ratio = ((self.minrtt as u64) << HTCP_SHIFT) / self.maxrtt as u64;
            ratio.clamp(HTCP_MINBETA as u64, HTCP_MAXBETA as u64) as u32
        } else {
            HTCP_MINBETA
        };
    }

    /// FreeBSD htcp_recalc_alpha(): alpha from the time since the last congestion event,
    /// then the adaptive-backoff and RTT-scaling adjustments.
    pub fn recalc_alpha(&mut self, ccv: &CcVar, tp: &Tcpcb, now: u64) {
        let last = *self.t_last_cong.get_or_insert(now);
        // A clock that went backwards restarts alpha from 1, as FreeBSD on a ticks wrap.
        let last = if now < last {
            let restarted = now.saturating_sub(HTCP_DELTA_L);
            self.t_last_cong = Some(restarted);
            restarted
        } else {
            last
        };
        let since = now - last;
        if since <= HTCP_DELTA_L {
            self.alpha = HTCP_INIT_ALPHA;
            return;
        }
        let diff = since - HTCP_DELTA_L;
        if diff >= HTCP_MAX_DIFF {
            return;
        }
        let mut alpha = htcp_calc_alpha(diff) as u64;
        if Self::adaptive_backoff(ccv) {
            // Keeps the average throughput of flows with different betas fair: 2 (1 - beta).
            alpha = ((2 * ((1u64 << HTCP_SHIFT) - self.beta as u64) * alpha) >> HTCP_SHIFT).max(1);
        }
        if Self::rtt_scaling(ccv) {
            // Makes the increase per second, not per RTT, independent of the RTT.
            let factor = (((tp.t_srtt as u64) << HTCP_SHIFT) / HTCP_RTT_REF)
                .clamp(HTCP_MINROWE, HTCP_MAXROWE);
            alpha = ((factor * alpha) >> HTCP_SHIFT).max(1);
        }
        self.alpha = alpha.min(u32::MAX as u64) as u32;
    }

    /// FreeBSD htcp_record_rtt(): SRTT extremes, once SRTT has had a few samples.
    pub fn record_rtt(&mut self, tp: &Tcpcb) {
        let srtt = tp.t_srtt;
        if srtt == 0 || self.t_rttupdated < HTCP_MIN_RTT_SAMPLES {
            return;
        }
        if srtt < self.minrtt || self.minrtt == 0 {
            self.minrtt = srtt;
        }
        if srtt > self.maxrtt {
            self.maxrtt = srtt;
        }
    }

    /// FreeBSD htcp_ssthresh_update(): cwnd * 0.5 on the first congestion event, cwnd * beta
    /// afterwards.
    pub fn ssthresh_update(&mut self, ccv: &CcVar, tp: &mut Tcpcb) {
        let beta = if tp.snd_ssthresh == u32::MAX || tp.snd_ssthresh == FREEBSD_INITIAL_SSTHRESH {
            HTCP_MINBETA
        } else {
            self.recalc_beta(ccv);
            self.beta
        };
        tp.snd_ssthresh = ((tp.snd_cwnd as u64 * beta as u64) >> HTCP_SHIFT) as u32;
    }

    /// The bookkeeping of a congestion event: maxRTT decays towards minRTT so that a path
    /// whose RTT went down is noticed (maxRTT = minRTT + 0.95 (maxRTT - minRTT)), ssthresh,
    /// and the new start of the alpha clock. (FreeBSD 14 parenthesises the decay as
    /// `(minrtt + (maxrtt - minrtt) * 95) / 100`, which drops maxRTT below minRTT; this is the
    /// decay its comment and Linux's tcp_htcp describe.)
    fn congestion_event(&mut self, ccv: &CcVar, tp: &mut Tcpcb) {
        if self.maxrtt > self.minrtt {
            self.maxrtt = self.minrtt + ((self.maxrtt - self.minrtt) as u64 * 95 / 100) as u32;
        }
        self.ssthresh_update(ccv, tp);
        self.t_last_cong = Some(tp.t_rcvtime);
    }
}

impl CcAlgorithm for Htcp {
    const NAME: &'static str = "htcp";
    const PARAMS: &'static [CcParamDesc] = &[
        CcParamDesc::new(
            "adaptive_backoff",
            "enable H-TCP adaptive backoff",
            0,
            0,
            u32::MAX as i64,
        ),
        CcParamDesc::new(
            "rtt_scaling",
            "enable H-TCP RTT scaling",
            0,
            0,
            u32::MAX as i64,
        ),
    ];

    fn cb_init(_ccv: &CcVar, tp: &Tcpcb) -> Result<Self, Errno> {
        Ok(Htcp {
            prev_cwnd: 0,
            alpha: HTCP_INIT_ALPHA,
            beta: HTCP_MINBETA,
            maxrtt: 0,
            minrtt: 0,
            // A connection that has not received anything yet starts its clock at its first ACK.
            t_last_cong: (tp.t_rcvtime != 0).then_some(tp.t_rcvtime),
            t_rttupdated: 0,
        })
    }

    fn rttsample(
        &mut self,
        _ccv: &mut CcVar,
        tp: &mut Tcpcb,
        _usec_rtt: u32,
        _rxtcnt: u32,
        _fas: u32,
    ) {
        self.t_rttupdated = self.t_rttupdated.saturating_add(1);
        self.record_rtt(tp);
    }

    fn ack_received(&mut self, ccv: &mut CcVar, tp: &mut Tcpcb, ack_type: u32) {
        let now = tp.t_rcvtime;
        if self.t_last_cong.is_none() {
            self.t_last_cong = Some(now);
        }
        // A plain ACK outside recovery while cwnd-limited, in slow start or once a cwnd's
        // worth of bytes has been acknowledged (the stack always does RFC 3465 ABC).
        let grows = may_grow(ccv, tp, ack_type)
            && (tp.snd_cwnd <= tp.snd_ssthresh || ccv.flags & ccf::ABC_SENTAWND != 0);
        if !grows {
            return;
        }
        self.recalc_beta(ccv);
        self.recalc_alpha(ccv, tp, now);
        if self.alpha == 1 || tp.snd_cwnd <= tp.snd_ssthresh {
            // Slow start, and the first delta_L after a congestion event: NewReno.
            common::newreno_cc_ack_received(ccv, tp, ack_type);
        } else {
            // alpha segments per cwnd of acknowledged bytes, i.e. per RTT.
            let incr = self.alpha as u64 * tp.maxseg() as u64;
            let cwnd = (tp.snd_cwnd as u64 + incr).min(max_cwnd(tp) as u64);
            tp.snd_cwnd = tp.snd_cwnd.max(cwnd as u32);
            ccv.flags &= !ccf::ABC_SENTAWND;
        }
    }

    fn cong_signal(&mut self, ccv: &mut CcVar, tp: &mut Tcpcb, sig: u32) {
        match sig {
            CC_NDUPACK if !tp.in_fastrecovery() => {
                if !tp.in_congrecovery() {
                    self.congestion_event(ccv, tp);
                    self.prev_cwnd = tp.snd_cwnd;
                }
                tp.t_flags |= tf::FASTRECOVERY | tf::CONGRECOVERY;
            }
            CC_ECN if !tp.in_congrecovery() => {
                self.congestion_event(ccv, tp);
                tp.snd_cwnd = tp.snd_ssthresh;
                self.prev_cwnd = tp.snd_cwnd;
                tp.t_flags |= tf::CONGRECOVERY;
            }
            CC_RTO => {
                // RFC 5681 (4): ssthresh only on the first timeout of a segment; cwnd = 1 SMSS.
                if tp.t_rxtshift == 1 {
                    common::rto_backoff(tp);
                } else {
                    tp.snd_cwnd = tp.maxseg();
                }
                // A single timeout is often spurious; from the second on it is congestion.
                // Its time is the next ACK's arrival (t_rcvtime is stale in a timer).
                if tp.t_rxtshift >= 2 {
                    self.t_last_cong = None;
                }
            }
            _ => {}
        }
    }

    fn post_recovery(&mut self, ccv: &mut CcVar, tp: &mut Tcpcb) {
        if !tp.in_fastrecovery() {
            return;
        }
        let mss = tp.maxseg().max(1);
        let pipe = ccv.pipe;
        tp.snd_cwnd = if pipe < tp.snd_ssthresh {
            // RFC 6582: little in flight, no burst (and never below 2 SMSS).
            pipe.max(mss) + mss
        } else {
            // H-TCP: beta times the window before the congestion event, whole segments.
            let segs =
                ((self.beta as u64 * self.prev_cwnd as u64 / mss as u64) >> HTCP_SHIFT).max(1);
            (segs * mss as u64).min(u32::MAX as u64) as u32
        };
    }

    plugtcp_tcpkit::newreno_hooks!(after_idle);
}

plugtcp_abi::export_cc_module!(Htcp);

#[cfg(test)]
mod tests;
