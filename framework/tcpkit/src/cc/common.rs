//! The NewReno behaviour FreeBSD's cc.c shares with every module (`newreno_cc_ack_received`,
//! `newreno_cc_cong_signal`, `newreno_cc_post_recovery`, `newreno_cc_after_idle`): H-TCP,
//! Vegas, DCTCP, CDG, CHD and HD fall back on these where they have nothing of their own.

use plugtcp_abi::cc::{ccf, initial_window, CcGlobals, CcVar, CC_ACK, CC_ECN, CC_NDUPACK, CC_RTO};
use plugtcp_abi::tcpcb::{tf, Tcpcb};

/// TCP_MAXWIN: the largest unscaled window.
pub const TCP_MAXWIN: u32 = 65535;

/// The largest cwnd this connection can use (TCP_MAXWIN << snd_scale).
#[inline]
pub fn max_cwnd(tp: &Tcpcb) -> u32 {
    TCP_MAXWIN << tp.snd_scale.min(14)
}

/// The slow-start increase FreeBSD's ABC allows for this ACK: bytes acked, at most
/// `nsegs * L * SMSS`, with L = 1 while retransmitting after an RTO.
#[inline]
pub fn slow_start_increase(ccv: &CcVar, tp: &Tcpcb) -> u32 {
    let l = if ccv.flags & ccf::USE_LOCAL_ABC != 0 {
        ccv.labc as u32
    } else {
        CcGlobals::get(&ccv.globals.abc_l_var).max(1) as u32
    };
    if tp.snd_nxt == tp.snd_max {
        ccv.bytes_this_ack
            .min((ccv.nsegs as u32).max(1) * l * tp.maxseg())
    } else {
        ccv.bytes_this_ack.min(tp.maxseg())
    }
}

/// Whether this ACK may grow cwnd at all: a plain ACK, outside recovery, while cwnd limits us.
#[inline]
pub fn may_grow(ccv: &CcVar, tp: &Tcpcb, ack_type: u32) -> bool {
    ack_type == CC_ACK && !tp.in_recovery() && ccv.flags & ccf::CWND_LIMITED != 0
}

/// The congestion-avoidance increase with ABC: one SMSS once the stack has counted a cwnd of
/// acknowledged bytes (it sets ABC_SENTAWND, consumed here), else nothing.
#[inline]
pub fn congestion_avoidance_increase(ccv: &mut CcVar, tp: &Tcpcb) -> u32 {
    if ccv.flags & ccf::ABC_SENTAWND != 0 {
        ccv.flags &= !ccf::ABC_SENTAWND;
        tp.maxseg()
    } else {
        0
    }
}

/// Adds `incr` to cwnd, up to [`max_cwnd`] (no change for 0).
#[inline]
pub fn grow_cwnd(tp: &mut Tcpcb, incr: u32) {
    if incr > 0 {
        tp.snd_cwnd = tp.snd_cwnd.saturating_add(incr).min(max_cwnd(tp));
    }
}

/// FreeBSD newreno_cc_ack_received(): slow start with ABC, then one SMSS per cwnd of
/// acknowledged bytes (the stack sets ABC_SENTAWND).
pub fn newreno_cc_ack_received(ccv: &mut CcVar, tp: &mut Tcpcb, ack_type: u32) {
    newreno_cc_ack_received_with(ccv, tp, ack_type, |_, incr| incr);
}

/// [`newreno_cc_ack_received`] with the slow-start increase passed through `ss_increase`,
/// which gets the increase ABC allows and returns the one to apply: newreno slows it down in
/// HyStart++'s CSS (`|ccv, incr| hystart.ss_increase(ccv, incr)`).
pub fn newreno_cc_ack_received_with(
    ccv: &mut CcVar,
    tp: &mut Tcpcb,
    ack_type: u32,
    ss_increase: impl FnOnce(&CcVar, u32) -> u32,
) {
    if !may_grow(ccv, tp, ack_type) {
        return;
    }
    let incr = if tp.snd_cwnd > tp.snd_ssthresh {
        congestion_avoidance_increase(ccv, tp)
    } else {
        ss_increase(ccv, slow_start_increase(ccv, tp))
    };
    grow_cwnd(tp, incr);
}

/// `cwnd * percent / 100`, in whole segments, at least two (FreeBSD's cwin computation).
#[inline]
pub fn scaled_window(cwnd: u32, percent: u64, mss: u32) -> u32 {
    let mss = mss.max(1) as u64;
    ((cwnd as u64 * percent / (100 * mss)).max(2) * mss).min(u32::MAX as u64) as u32
}

/// RFC 5681 (4) after an RTO: ssthresh = max(FlightSize / 2, 2 SMSS), cwnd = 1 SMSS.
pub fn rto_backoff(tp: &mut Tcpcb) {
    let mss = tp.maxseg().max(1);
    let flight = tp.snd_wnd.min(tp.snd_cwnd);
    tp.snd_ssthresh = (flight / 2 / mss).max(2) * mss;
    tp.snd_cwnd = mss;
}

/// FreeBSD newreno_cc_cong_signal(): halve on loss (entering recovery) and on ECN (once per
/// window), RFC 5681 on an RTO.
pub fn newreno_cc_cong_signal(_ccv: &mut CcVar, tp: &mut Tcpcb, sig: u32) {
    newreno_cc_cong_signal_beta(tp, sig, 50);
}

/// [`newreno_cc_cong_signal`] keeping `beta` percent of cwnd (in whole segments, at least
/// two) instead of half: cc_newreno's `beta` and `beta_ecn`.
pub fn newreno_cc_cong_signal_beta(tp: &mut Tcpcb, sig: u32, beta: u64) {
    let cwin = scaled_window(tp.snd_cwnd, beta, tp.maxseg());
    match sig {
        CC_NDUPACK if !tp.in_fastrecovery() => {
            if !tp.in_congrecovery() {
                tp.snd_ssthresh = cwin;
            }
            tp.t_flags |= tf::FASTRECOVERY | tf::CONGRECOVERY;
        }
        CC_ECN if !tp.in_congrecovery() => {
            tp.snd_ssthresh = cwin;
            tp.snd_cwnd = cwin;
            tp.t_flags |= tf::CONGRECOVERY;
        }
        CC_RTO => rto_backoff(tp),
        _ => {}
    }
}

/// FreeBSD newreno_cc_post_recovery() (RFC 6582 3.2 step 6): leave fast recovery at
/// ssthresh, or at pipe + 1 SMSS when less is in flight, so that no burst follows.
pub fn newreno_cc_post_recovery(ccv: &mut CcVar, tp: &mut Tcpcb) {
    if tp.in_fastrecovery() {
        let pipe = ccv.pipe;
        tp.snd_cwnd = if pipe < tp.snd_ssthresh {
            pipe.max(tp.maxseg()) + tp.maxseg()
        } else {
            tp.snd_ssthresh
        };
    }
}

/// FreeBSD newreno_cc_after_idle(): RFC 5681 4.1's restart window, keeping at least 3/4 of
/// the old cwnd as ssthresh (RFC 2861).
pub fn newreno_cc_after_idle(ccv: &mut CcVar, tp: &mut Tcpcb) {
    let iw_segs = CcGlobals::get(&ccv.globals.initcwnd_segments).max(0) as u32;
    let rw = initial_window(tp.maxseg(), iw_segs);
    tp.snd_ssthresh = tp.snd_ssthresh.max(tp.snd_cwnd - (tp.snd_cwnd >> 2));
    tp.snd_cwnd = rw.min(tp.snd_cwnd);
}

/// Inside `impl CcAlgorithm for ...`: hooks that are NewReno's, for a module with nothing of
/// its own there (FreeBSD's modules point them at cc.c's `newreno_cc_*` functions):
/// `newreno_hooks!(post_recovery, after_idle);` writes `post_recovery` calling
/// [`newreno_cc_post_recovery`] and `after_idle` calling [`newreno_cc_after_idle`]. Also
/// `ack_received` ([`newreno_cc_ack_received`]) and `cong_signal` ([`newreno_cc_cong_signal`]).
#[macro_export]
macro_rules! newreno_hooks {
    ($($hook:ident),+ $(,)?) => {
        $($crate::__newreno_hook!($hook);)+
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __newreno_hook {
    (ack_received) => {
        fn ack_received(
            &mut self,
            ccv: &mut $crate::__abi::cc::CcVar,
            tp: &mut $crate::__abi::Tcpcb,
            ack_type: u32,
        ) {
            $crate::cc::common::newreno_cc_ack_received(ccv, tp, ack_type);
        }
    };
    (cong_signal) => {
        fn cong_signal(
            &mut self,
            ccv: &mut $crate::__abi::cc::CcVar,
            tp: &mut $crate::__abi::Tcpcb,
            sig: u32,
        ) {
            $crate::cc::common::newreno_cc_cong_signal(ccv, tp, sig);
        }
    };
    (post_recovery) => {
        fn post_recovery(
            &mut self,
            ccv: &mut $crate::__abi::cc::CcVar,
            tp: &mut $crate::__abi::Tcpcb,
        ) {
            $crate::cc::common::newreno_cc_post_recovery(ccv, tp);
        }
    };
    (after_idle) => {
        fn after_idle(
            &mut self,
            ccv: &mut $crate::__abi::cc::CcVar,
            tp: &mut $crate::__abi::Tcpcb,
        ) {
            $crate::cc::common::newreno_cc_after_idle(ccv, tp);
        }
    };
}
