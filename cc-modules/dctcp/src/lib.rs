//! DCTCP, as FreeBSD's cc_dctcp(4): Data Center TCP (M. Alizadeh et al., "Data Center TCP
//! (DCTCP)", ACM SIGCOMM 2010; RFC 8257).
//!
//! The sender estimates the fraction of bytes the network marked with CE over each observation
//! window (about one RTT: until the ACK passes the snd_nxt saved when the window began) and
//! keeps a moving average of it, `alpha = (1 - g) * alpha + g * F` (RFC 8257 3.3), in fixed
//! point with 1024 = 1.0 as FreeBSD. On ECE it cuts cwnd by `alpha / 2` once per window, so
//! light marking costs little and full marking halves cwnd like RFC 3168. Window growth and
//! loss are handled like NewReno (RFC 8257 3.4, 3.5).
//!
//! The receiver (RFC 8257 3.2) echoes the CE state of the last packet in ECE instead of
//! latching it until CWR, and acknowledges at once when that state changes, so that the sender
//! can count marked bytes exactly even with delayed ACKs.
//!
//! Only connections that negotiated ECN behave as DCTCP; the others run NewReno (as FreeBSD).
//!
//! Sysctls (`net.inet.tcp.cc.dctcp.*`, FreeBSD's names and defaults): `alpha` (alpha at the
//! start of a session and after idle, 0..=1024, default 1024 = RFC 8257's "initialized to
//! 1"), `shift_g` (g = 1/2^shift_g, 0..=10, default 4 = RFC 8257's g = 1/16), `slowstart`
//! (0/1, default 0: when 1, the first ECN reduction halves cwnd, and alpha restarts at 1).

use plugtcp_abi::cc::{
    ccf, CcAlgorithm, CcParamDesc, CcVar, CC_ACK, CC_DUPACK, CC_ECN, CC_NDUPACK, CC_RTO,
};
use plugtcp_abi::seq::seq_gt;
use plugtcp_abi::tcpcb::{tf, tf2};
use plugtcp_abi::{Errno, Tcpcb};
use plugtcp_tcpkit::cc::common::{self, newreno_cc_ack_received};

/// Fixed-point shift of alpha: 1.0 is `1 << DCTCP_SHIFT`.
pub const DCTCP_SHIFT: u32 = 10;
/// alpha = 1.0 (every byte marked).
pub const MAX_ALPHA_VALUE: u32 = 1 << DCTCP_SHIFT;

/// Parameter indices in [`Dctcp::PARAMS`].
pub const PARAM_ALPHA: usize = 0;
pub const PARAM_SHIFT_G: usize = 1;
pub const PARAM_SLOWSTART: usize = 2;

pub const DEFAULT_ALPHA: u32 = MAX_ALPHA_VALUE;
pub const DEFAULT_SHIFT_G: u32 = 4;

/// One observation window's alpha update (RFC 8257 3.3):
/// `alpha = (1 - g) * alpha + g * bytes_ecn / bytes_total` with `g = 2^-shift_g`, in
/// FreeBSD's fixed point (scale 1024, the fraction truncated, the result at most 1024).
pub fn dctcp_update_alpha(alpha_prev: u32, bytes_ecn: u32, bytes_total: u32, shift_g: u32) -> u32 {
    let shift_g = shift_g.min(DCTCP_SHIFT);
    let alpha_prev = alpha_prev.min(MAX_ALPHA_VALUE);
    let kept = alpha_prev - (alpha_prev >> shift_g);
    // g * F scaled by 1024: bytes_ecn * 2^(10 - shift_g) / bytes_total.
    let marked = ((bytes_ecn as u64) << (DCTCP_SHIFT - shift_g)) / bytes_total.max(1) as u64;
    (kept as u64 + marked).min(MAX_ALPHA_VALUE as u64) as u32
}

/// The window after an ECN reduction: `cwnd * (1 - alpha / 2)` (RFC 8257 3.3), at
/// least two segments.
pub fn dctcp_ecn_window(cwnd: u32, alpha: u32, mss: u32) -> u32 {
    let cut = (cwnd as u64 * alpha.min(MAX_ALPHA_VALUE) as u64) >> (DCTCP_SHIFT + 1);
    (cwnd - cut as u32).max(2 * mss)
}

/// Per-connection state (FreeBSD `struct dctcp`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dctcp {
    /// Bytes acknowledged with ECE in the current observation window.
    pub bytes_ecn: u32,
    /// Bytes acknowledged in the current observation window.
    pub bytes_total: u32,
    /// The estimated fraction of marked bytes, 0..=1024.
    pub alpha: u32,
    /// Receiver: whether the last data packet received carried CE.
    pub ce_prev: bool,
    /// The window ends when an ACK passes this (snd_nxt when it began).
    pub save_sndnxt: u32,
    /// The ACK being processed carried ECE (set by CC_ECN, consumed by ack_received).
    pub ece_curr: bool,
    /// The previous ACK carried ECE.
    pub ece_prev: bool,
    pub num_cong_events: u32,
    /// cwnd before the last ECE, to recompute ssthresh when a loss follows an ECN reduction.
    /// FreeBSD keeps this in the tcpcb (snd_cwnd_prev); ours has no such field. 0 = unset.
    pub snd_cwnd_prev: u32,
}

fn ecn_permit(tp: &Tcpcb) -> bool {
    tp.t_flags2 & tf2::ECN_PERMIT != 0
}

fn param_u32(ccv: &CcVar, idx: usize, default: u32, max: u32) -> u32 {
    ccv.param(idx, default as i64).clamp(0, max as i64) as u32
}

impl Dctcp {
    fn initial_alpha(ccv: &CcVar) -> u32 {
        param_u32(ccv, PARAM_ALPHA, DEFAULT_ALPHA, MAX_ALPHA_VALUE)
    }

    /// Closes the observation window: folds its marked fraction into alpha and starts the
    /// next one at the current snd_nxt.
    fn update_alpha(&mut self, ccv: &CcVar, tp: &Tcpcb) {
        let shift_g = param_u32(ccv, PARAM_SHIFT_G, DEFAULT_SHIFT_G, DCTCP_SHIFT);
        self.alpha = dctcp_update_alpha(self.alpha, self.bytes_ecn, self.bytes_total, shift_g);
        self.bytes_ecn = 0;
        self.bytes_total = 0;
        self.save_sndnxt = tp.snd_nxt;
    }

    /// Counts this ACK's bytes, and its marked bytes. The receiver acknowledges at once when
    /// its CE state changes, so an ACK covering more than one segment at a change of ECE
    /// holds one segment in the old state: that one is counted as the previous ACK was.
    fn count_bytes(&mut self, bytes_acked: u32, mss: u32) {
        self.bytes_total = self.bytes_total.saturating_add(bytes_acked);
        let marked = match (self.ece_prev, self.ece_curr) {
            (false, true) if bytes_acked > mss => bytes_acked - mss,
            (_, true) => bytes_acked,
            (true, false) if bytes_acked > mss => mss,
            (_, false) => 0,
        };
        self.bytes_ecn = self.bytes_ecn.saturating_add(marked);
        self.ece_prev = self.ece_curr;
        self.ece_curr = false;
    }
}

impl CcAlgorithm for Dctcp {
    const NAME: &'static str = "dctcp";
    const PARAMS: &'static [CcParamDesc] = &[
        CcParamDesc::new(
            "alpha",
            "dctcp alpha parameter at start of session",
            DEFAULT_ALPHA as i64,
            0,
            MAX_ALPHA_VALUE as i64,
        ),
        CcParamDesc::new(
            "shift_g",
            "dctcp shift parameter",
            DEFAULT_SHIFT_G as i64,
            0,
            DCTCP_SHIFT as i64,
        ),
        CcParamDesc::new(
            "slowstart",
            "half CWND reduction after the first slow start",
            0,
            0,
            1,
        ),
    ];
    const HAS_ECNPKT_HANDLER: bool = true;

    fn cb_init(ccv: &CcVar, _tp: &Tcpcb) -> Result<Self, Errno> {
        Ok(Dctcp {
            bytes_ecn: 0,
            bytes_total: 0,
            alpha: Self::initial_alpha(ccv),
            ce_prev: false,
            save_sndnxt: 0,
            ece_curr: false,
            ece_prev: false,
            num_cong_events: 0,
            snd_cwnd_prev: 0,
        })
    }

    fn conn_init(&mut self, _ccv: &mut CcVar, tp: &mut Tcpcb) {
        if ecn_permit(tp) {
            self.save_sndnxt = tp.snd_nxt;
        }
    }

    fn ack_received(&mut self, ccv: &mut CcVar, tp: &mut Tcpcb, ack_type: u32) {
        if !ecn_permit(tp) {
            newreno_cc_ack_received(ccv, tp, ack_type);
            return;
        }
        // An ECN reduction is not a congestion episode for DCTCP: cwnd keeps growing as it
        // would outside recovery (RFC 8257 3.4). CONGRECOVERY stays set so that the next
        // reduction still waits for the end of the window.
        if tp.in_congrecovery() {
            tp.t_flags &= !tf::CONGRECOVERY;
            newreno_cc_ack_received(ccv, tp, ack_type);
            tp.t_flags |= tf::CONGRECOVERY;
        } else {
            newreno_cc_ack_received(ccv, tp, ack_type);
        }

        let mss = tp.maxseg();
        let bytes_acked = match ack_type {
            CC_DUPACK => ccv.bytes_this_ack.min(mss),
            CC_ACK => ccv.bytes_this_ack,
            _ => 0,
        };
        self.count_bytes(bytes_acked, mss);

        // In fast recovery the window closes in post_recovery instead.
        if !tp.in_fastrecovery() && seq_gt(ccv.curack, self.save_sndnxt) {
            self.update_alpha(ccv, tp);
        }
    }

    fn cong_signal(&mut self, ccv: &mut CcVar, tp: &mut Tcpcb, sig: u32) {
        if !ecn_permit(tp) {
            common::newreno_cc_cong_signal(ccv, tp, sig);
            return;
        }
        let cwin = tp.snd_cwnd;
        let mss = tp.maxseg();
        match sig {
            // Loss: halve as NewReno (RFC 8257 3.5).
            CC_NDUPACK if !tp.in_fastrecovery() => {
                if !tp.in_congrecovery() {
                    tp.snd_ssthresh = (cwin / 2).max(2 * mss);
                    self.num_cong_events = self.num_cong_events.wrapping_add(1);
                } else {
                    // An ECN reduction already lowered cwnd in this window: halve the
                    // window from before it, not the reduced one.
                    let before = if self.snd_cwnd_prev != 0 {
                        self.snd_cwnd_prev
                    } else {
                        cwin
                    };
                    tp.snd_ssthresh = (before / 2).max(2 * mss);
                }
                tp.t_flags |= tf::FASTRECOVERY | tf::CONGRECOVERY;
            }
            CC_ECN => {
                // The stack signals every ECE ACK: reduce once per window, but mark the ACK
                // for the byte count in any case.
                self.snd_cwnd_prev = cwin;
                if !tp.in_congrecovery() {
                    let slowstart = param_u32(ccv, PARAM_SLOWSTART, 0, 1) != 0;
                    if slowstart && self.num_cong_events == 0 {
                        // The first mark ends slow start with a plain halving, and alpha
                        // restarts at 1 with a fresh window.
                        self.num_cong_events = self.num_cong_events.wrapping_add(1);
                        tp.snd_ssthresh = (cwin / 2).max(2 * mss);
                        self.alpha = MAX_ALPHA_VALUE;
                        self.bytes_ecn = 0;
                        self.bytes_total = 0;
                        self.save_sndnxt = tp.snd_nxt;
                    } else {
                        if slowstart {
                            self.num_cong_events = self.num_cong_events.wrapping_add(1);
                        }
                        tp.snd_ssthresh = dctcp_ecn_window(cwin, self.alpha, mss);
                    }
                    tp.snd_cwnd = tp.snd_ssthresh;
                    tp.t_flags |= tf::CONGRECOVERY;
                }
                self.ece_curr = true;
            }
            CC_RTO => {
                common::rto_backoff(tp);
                // RFC 3168 6.1.2: after a timeout the next new segment carries CWR. FreeBSD's
                // cc_cong_signal sets this for every module; the framework's does not.
                tp.t_flags2 |= tf2::ECN_SND_CWR;
                self.update_alpha(ccv, tp);
                self.save_sndnxt = self.save_sndnxt.wrapping_add(tp.maxseg());
                self.num_cong_events = self.num_cong_events.wrapping_add(1);
            }
            _ => {}
        }
    }

    fn post_recovery(&mut self, ccv: &mut CcVar, tp: &mut Tcpcb) {
        common::newreno_cc_post_recovery(ccv, tp);
        if ecn_permit(tp) {
            self.update_alpha(ccv, tp);
        }
    }

    fn after_idle(&mut self, ccv: &mut CcVar, tp: &mut Tcpcb) {
        if ecn_permit(tp) {
            // Marks from before the idle period say nothing about the path now.
            self.bytes_ecn = 0;
            self.bytes_total = 0;
            self.save_sndnxt = tp.snd_nxt;
            self.alpha = Self::initial_alpha(ccv);
            self.ece_curr = false;
            self.ece_prev = false;
            self.num_cong_events = 0;
        }
        common::newreno_cc_after_idle(ccv, tp);
    }

    /// RFC 8257 3.2: ECE echoes the CE state of the last data packet, and a change of that
    /// state is acknowledged at once, so that each ACK covers packets of one state (apart
    /// from the one segment [`Dctcp::count_bytes`] corrects for). A CWR is acknowledged at
    /// once too, as FreeBSD does.
    fn ecnpkt_handler(&mut self, ccv: &mut CcVar, tp: &mut Tcpcb) {
        if !ecn_permit(tp) {
            return;
        }
        let ce = ccv.flags & ccf::IPHDR_CE != 0;
        let changed = ce != self.ce_prev;
        self.ce_prev = ce;
        // Also undoes the stack's RFC 3168 latching (ECE until CWR) and its clearing on CWR.
        if ce {
            tp.t_flags2 |= tf2::ECN_SND_ECE;
        } else {
            tp.t_flags2 &= !tf2::ECN_SND_ECE;
        }
        if changed || ccv.flags & ccf::TCPHDR_CWR != 0 {
            ccv.flags |= ccf::ACKNOW;
        } else {
            ccv.flags &= !ccf::ACKNOW;
        }
    }
}

plugtcp_abi::export_cc_module!(Dctcp);

#[cfg(test)]
mod tests;
