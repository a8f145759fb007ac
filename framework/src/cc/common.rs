//! The NewReno behaviour FreeBSD's cc.c shares with every module (`newreno_cc_ack_received`,
//! `newreno_cc_cong_signal`, `newreno_cc_post_recovery`, `newreno_cc_after_idle`): H-TCP,
//! Vegas, DCTCP, CDG, CHD and HD fall back on these where they have nothing of their own.

use super::{ccf, initial_window, CcGlobals, CcVar, CC_ACK, CC_ECN, CC_NDUPACK, CC_RTO};
use crate::tcpcb::{tf, Tcpcb};

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
            .min((ccv.nsegs as u32).max(1) * l * tp.t_maxseg)
    } else {
        ccv.bytes_this_ack.min(tp.t_maxseg)
    }
}

/// Whether this ACK may grow cwnd at all: a plain ACK, outside recovery, while cwnd limits us.
#[inline]
pub fn may_grow(ccv: &CcVar, tp: &Tcpcb, ack_type: u32) -> bool {
    ack_type == CC_ACK && !tp.in_recovery() && ccv.flags & ccf::CWND_LIMITED != 0
}

/// FreeBSD newreno_cc_ack_received(): slow start with ABC, then one SMSS per cwnd of
/// acknowledged bytes (the stack sets ABC_SENTAWND).
pub fn newreno_cc_ack_received(ccv: &mut CcVar, tp: &mut Tcpcb, ack_type: u32) {
    if !may_grow(ccv, tp, ack_type) {
        return;
    }
    let incr = if tp.snd_cwnd > tp.snd_ssthresh {
        if ccv.flags & ccf::ABC_SENTAWND != 0 {
            ccv.flags &= !ccf::ABC_SENTAWND;
            tp.t_maxseg
        } else {
            0
        }
    } else {
        slow_start_increase(ccv, tp)
    };
    if incr > 0 {
        tp.snd_cwnd = tp.snd_cwnd.saturating_add(incr).min(max_cwnd(tp));
    }
}

/// `cwnd * percent / 100`, in whole segments, at least two (FreeBSD's cwin computation).
#[inline]
pub fn scaled_window(cwnd: u32, percent: u64, mss: u32) -> u32 {
    let mss = mss.max(1) as u64;
    ((cwnd as u64 * percent / (100 * mss)).max(2) * mss).min(u32::MAX as u64) as u32
}

/// RFC 5681 (4) after an RTO: ssthresh = max(FlightSize / 2, 2 SMSS), cwnd = 1 SMSS.
pub fn rto_backoff(tp: &mut Tcpcb) {
    let mss = tp.t_maxseg.max(1);
    let flight = tp.snd_wnd.min(tp.snd_cwnd);
    tp.snd_ssthresh = (flight / 2 / mss).max(2) * mss;
    tp.snd_cwnd = mss;
}

/// FreeBSD newreno_cc_cong_signal(): halve on loss (entering recovery) and on ECN (once per
/// window), RFC 5681 on an RTO.
pub fn newreno_cc_cong_signal(_ccv: &mut CcVar, tp: &mut Tcpcb, sig: u32) {
    let cwin = scaled_window(tp.snd_cwnd, 50, tp.t_maxseg);
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
        let pipe = tp.snd_max.wrapping_sub(ccv.curack);
        tp.snd_cwnd = if pipe < tp.snd_ssthresh {
            pipe.max(tp.t_maxseg) + tp.t_maxseg
        } else {
            tp.snd_ssthresh
        };
    }
}

/// FreeBSD newreno_cc_after_idle(): RFC 5681 4.1's restart window, keeping at least 3/4 of
/// the old cwnd as ssthresh (RFC 2861).
pub fn newreno_cc_after_idle(ccv: &mut CcVar, tp: &mut Tcpcb) {
    let iw_segs = CcGlobals::get(&ccv.globals.initcwnd_segments).max(0) as u32;
    let rw = initial_window(tp.t_maxseg, iw_segs);
    tp.snd_ssthresh = tp.snd_ssthresh.max(tp.snd_cwnd - (tp.snd_cwnd >> 2));
    tp.snd_cwnd = rw.min(tp.snd_cwnd);
}
