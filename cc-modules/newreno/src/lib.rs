//! NewReno, as FreeBSD's cc_newreno(4): RFC 5681 slow start and congestion avoidance with
//! RFC 3465 appropriate byte counting, RFC 6582 recovery exit, RFC 8511 (ABE) backoff on ECN,
//! and the `beta`/`beta_ecn` knobs as sysctls and through TCP_CCALGOOPT.

use plugtcp_framework::cc::{
    ccf, CcAlgorithm, CcGlobals, CcParamDesc, CcVar, CC_ACK, CC_ECN, CC_NDUPACK, CC_RTO, CC_RTO_ERR,
};
use plugtcp_framework::sockopt::{SockOpt, SockOptDir};
use plugtcp_framework::tcpcb::tf;
use plugtcp_framework::{Errno, Tcpcb};

/// TCP_CCALGOOPT option names (FreeBSD cc_newreno.h).
pub const CC_NEWRENO_BETA: u32 = 1;
pub const CC_NEWRENO_BETA_ECN: u32 = 2;

/// Parameter indices in [`NewReno::PARAMS`].
pub const PARAM_BETA: usize = 0;
pub const PARAM_BETA_ECN: usize = 1;

/// TCP_MAXWIN: the largest unscaled window.
const TCP_MAXWIN: u32 = 65535;

/// The TCP_CCALGOOPT value for newreno: FreeBSD `struct cc_newreno_opts`.
#[repr(C)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct CcNewrenoOpts {
    pub name: u32,
    pub val: u32,
}

impl CcNewrenoOpts {
    pub fn to_bytes(self) -> [u8; 8] {
        let mut b = [0; 8];
        b[..4].copy_from_slice(&self.name.to_ne_bytes());
        b[4..].copy_from_slice(&self.val.to_ne_bytes());
        b
    }

    pub fn from_bytes(b: &[u8]) -> Option<Self> {
        let b: &[u8; 8] = b.try_into().ok()?;
        Some(CcNewrenoOpts {
            name: u32::from_ne_bytes([b[0], b[1], b[2], b[3]]),
            val: u32::from_ne_bytes([b[4], b[5], b[6], b[7]]),
        })
    }
}

/// Per-connection state: the backoff factors in percent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewReno {
    pub beta: u32,
    pub beta_ecn: u32,
    /// Set when the connection chose its own beta_ecn: use it even without cc.abe.
    pub beta_ecn_enabled: bool,
}

pub use plugtcp_framework::cc::initial_window;

impl NewReno {
    fn factor(&self, ccv: &CcVar, sig: u32) -> u32 {
        let abe = CcGlobals::get(&ccv.globals.abe) != 0;
        if sig == CC_ECN && (abe || self.beta_ecn_enabled) {
            self.beta_ecn
        } else {
            self.beta
        }
    }
}

impl CcAlgorithm for NewReno {
    const NAME: &'static str = "newreno";
    const PARAMS: &'static [CcParamDesc] = &[
        CcParamDesc::new(
            "beta",
            "New Reno beta, in percent of cwnd kept on loss",
            50,
            1,
            100,
        ),
        CcParamDesc::new(
            "beta_ecn",
            "New Reno beta for ECN (ABE, RFC 8511); needs cc.abe=1",
            80,
            1,
            100,
        ),
    ];
    const HAS_CTL_OUTPUT: bool = true;

    fn cb_init(ccv: &CcVar, _tp: &Tcpcb) -> Result<Self, Errno> {
        Ok(NewReno {
            beta: ccv.param(PARAM_BETA, 50) as u32,
            beta_ecn: ccv.param(PARAM_BETA_ECN, 80) as u32,
            beta_ecn_enabled: false,
        })
    }

    fn ack_received(&mut self, ccv: &mut CcVar, tp: &mut Tcpcb, ack_type: u32) {
        if ack_type != CC_ACK || tp.in_recovery() || ccv.flags & ccf::CWND_LIMITED == 0 {
            return;
        }
        let cw = tp.snd_cwnd;
        let maxseg = tp.t_maxseg;
        let incr = if cw > tp.snd_ssthresh {
            // Congestion avoidance with ABC: one MSS per cwnd of acknowledged bytes; the
            // stack sets ABC_SENTAWND when a whole cwnd has been acknowledged.
            if ccv.flags & ccf::ABC_SENTAWND != 0 {
                ccv.flags &= !ccf::ABC_SENTAWND;
                maxseg
            } else {
                0
            }
        } else {
            // Slow start with ABC, at most L*SMSS per ACK; L=1 after an RTO (snd_nxt below
            // snd_max means we are retransmitting).
            let l = if ccv.flags & ccf::USE_LOCAL_ABC != 0 {
                ccv.labc as u32
            } else {
                CcGlobals::get(&ccv.globals.abc_l_var).max(1) as u32
            };
            if tp.snd_nxt == tp.snd_max {
                ccv.bytes_this_ack.min(ccv.nsegs as u32 * l * maxseg)
            } else {
                ccv.bytes_this_ack.min(maxseg)
            }
        };
        if incr > 0 {
            let max = TCP_MAXWIN << tp.snd_scale;
            tp.snd_cwnd = cw.saturating_add(incr).min(max);
        }
    }

    fn cong_signal(&mut self, ccv: &mut CcVar, tp: &mut Tcpcb, sig: u32) {
        let mss = tp.t_maxseg.max(1);
        let factor = self.factor(ccv, sig) as u64;
        let cwin = ((tp.snd_cwnd as u64 * factor / (100 * mss as u64)).max(2) * mss as u64) as u32;
        match sig {
            // A second signal within the same recovery changes nothing.
            CC_NDUPACK if !tp.in_fastrecovery() => {
                let abe = CcGlobals::get(&ccv.globals.abe) != 0;
                let frloss = CcGlobals::get(&ccv.globals.abe_frlossreduce) != 0;
                if tp.in_congrecovery() && abe && frloss {
                    // ABE: a loss during ECN recovery takes ssthresh down to the loss
                    // backoff instead of the gentler ECN one.
                    let beta_ecn = self.beta_ecn.max(1) as u64;
                    tp.snd_ssthresh = (tp.snd_ssthresh as u64 * self.beta as u64 / beta_ecn) as u32;
                }
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
            CC_RTO => {
                // RFC 5681 (4): ssthresh = max(FlightSize / 2, 2 * SMSS), cwnd = 1 SMSS.
                let flight = tp.snd_wnd.min(tp.snd_cwnd);
                tp.snd_ssthresh = (flight / 2 / mss).max(2) * mss;
                tp.snd_cwnd = mss;
            }
            CC_RTO_ERR => {
                // The stack restores cwnd and ssthresh from its saved values (FreeBSD's
                // cc_cong_signal does it for every module); nothing of ours to undo.
            }
            _ => {}
        }
    }

    fn post_recovery(&mut self, ccv: &mut CcVar, tp: &mut Tcpcb) {
        if tp.in_fastrecovery() {
            // RFC 6582 section 3.2 step 6: deflate to ssthresh, or to pipe + 1 MSS when less
            // is in flight, so that leaving recovery never sends a burst.
            let pipe = tp.snd_max.wrapping_sub(ccv.curack);
            tp.snd_cwnd = if pipe < tp.snd_ssthresh {
                pipe.max(tp.t_maxseg) + tp.t_maxseg
            } else {
                tp.snd_ssthresh
            };
        }
    }

    fn after_idle(&mut self, ccv: &mut CcVar, tp: &mut Tcpcb) {
        // RFC 5681 4.1 restart window, and RFC 2861's ssthresh of at least 3/4 of cwnd.
        let iw_segs = CcGlobals::get(&ccv.globals.initcwnd_segments).max(0) as u32;
        let rw = initial_window(tp.t_maxseg, iw_segs);
        tp.snd_ssthresh = tp.snd_ssthresh.max(tp.snd_cwnd - (tp.snd_cwnd >> 2));
        tp.snd_cwnd = rw.min(tp.snd_cwnd);
    }

    fn ctl_output(
        &mut self,
        _ccv: &mut CcVar,
        _tp: &mut Tcpcb,
        opt: &mut SockOpt<'_>,
    ) -> Result<(), Errno> {
        let req = CcNewrenoOpts::from_bytes(opt.value()).ok_or(Errno::EINVAL)?;
        match opt.dir {
            SockOptDir::Set => {
                if !(1..=100).contains(&req.val) {
                    return Err(Errno::EINVAL);
                }
                match req.name {
                    CC_NEWRENO_BETA => self.beta = req.val,
                    CC_NEWRENO_BETA_ECN => {
                        self.beta_ecn = req.val;
                        self.beta_ecn_enabled = true;
                    }
                    _ => return Err(Errno::ENOPROTOOPT),
                }
                Ok(())
            }
            SockOptDir::Get => {
                let val = match req.name {
                    CC_NEWRENO_BETA => self.beta,
                    CC_NEWRENO_BETA_ECN => self.beta_ecn,
                    _ => return Err(Errno::ENOPROTOOPT),
                };
                opt.reply(
                    &CcNewrenoOpts {
                        name: req.name,
                        val,
                    }
                    .to_bytes(),
                )
            }
        }
    }

    fn param_check(idx: u32, _value: i64, globals: &CcGlobals) -> Result<(), Errno> {
        // FreeBSD: beta_ecn only means something with ABE on, so setting it otherwise is EACCES.
        if idx as usize == PARAM_BETA_ECN && CcGlobals::get(&globals.abe) == 0 {
            return Err(Errno::EACCES);
        }
        Ok(())
    }
}

plugtcp_framework::export_cc_module!(NewReno);

#[cfg(test)]
mod tests;
