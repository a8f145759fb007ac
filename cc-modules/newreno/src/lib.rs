//! NewReno, as FreeBSD's cc_newreno(4): RFC 5681 slow start and congestion avoidance with
//! RFC 3465 appropriate byte counting, RFC 6582 recovery exit, RFC 8511 (ABE) backoff on ECN,
//! HyStart++ (RFC 9406) in the initial slow start, and the `beta`/`beta_ecn` knobs as sysctls
//! and through TCP_CCALGOOPT.

use std::sync::atomic::AtomicIsize;

use plugtcp_abi::cc::{CcAlgorithm, CcGlobals, CcParamDesc, CcVar, CC_ECN, CC_NDUPACK, CC_RTO};
use plugtcp_abi::sockopt::{SockOpt, SockOptDir};
use plugtcp_abi::{Errno, Tcpcb};
use plugtcp_tcpkit::cc::common;
use plugtcp_tcpkit::cc::hystart::HyStart;

/// TCP_CCALGOOPT option names (FreeBSD cc_newreno.h).
pub const CC_NEWRENO_BETA: u32 = 1;
pub const CC_NEWRENO_BETA_ECN: u32 = 2;

/// Parameter indices in [`NewReno::PARAMS`].
pub const PARAM_BETA: usize = 0;
pub const PARAM_BETA_ECN: usize = 1;

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
    pub hystart: HyStart,
}

pub use plugtcp_abi::cc::initial_window;

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
            hystart: HyStart::default(),
        })
    }

    /// Congestion avoidance with ABC (one MSS per cwnd of acknowledged bytes) and slow start
    /// with ABC (at most L*SMSS per ACK), slowed down in HyStart++'s CSS.
    fn ack_received(&mut self, ccv: &mut CcVar, tp: &mut Tcpcb, ack_type: u32) {
        common::newreno_cc_ack_received_with(ccv, tp, ack_type, |ccv, incr| {
            self.hystart.ss_increase(ccv, incr)
        });
    }

    fn rttsample(
        &mut self,
        ccv: &mut CcVar,
        tp: &mut Tcpcb,
        usec_rtt: u32,
        _rxtcnt: u32,
        _fas: u32,
    ) {
        self.hystart.rttsample(ccv, tp, usec_rtt);
    }

    fn newround(&mut self, ccv: &mut CcVar, tp: &mut Tcpcb, _round_cnt: u32) {
        self.hystart.newround(ccv, tp);
    }

    /// cc.c's NewReno response with `beta` (or `beta_ecn` for ECN) instead of half, and
    /// ABE's correction of a loss during ECN recovery. A second signal within the same
    /// recovery changes nothing. On CC_RTO_ERR the stack restores cwnd and ssthresh from its
    /// saved values (FreeBSD's cc_cong_signal does it for every module): nothing of ours to
    /// undo.
    fn cong_signal(&mut self, ccv: &mut CcVar, tp: &mut Tcpcb, sig: u32) {
        if matches!(sig, CC_NDUPACK | CC_ECN | CC_RTO) {
            self.hystart.on_congestion();
        }
        if sig == CC_NDUPACK && !tp.in_fastrecovery() && tp.in_congrecovery() {
            let abe = CcGlobals::get(&ccv.globals.abe) != 0;
            let frloss = CcGlobals::get(&ccv.globals.abe_frlossreduce) != 0;
            if abe && frloss {
                // ABE: a loss during ECN recovery takes ssthresh down to the loss backoff
                // instead of the gentler ECN one.
                let beta_ecn = self.beta_ecn.max(1) as u64;
                tp.snd_ssthresh = (tp.snd_ssthresh as u64 * self.beta as u64 / beta_ecn) as u32;
            }
        }
        common::newreno_cc_cong_signal_beta(tp, sig, self.factor(ccv, sig) as u64);
    }

    plugtcp_tcpkit::newreno_hooks!(post_recovery, after_idle);

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

    fn param_check(
        idx: u32,
        _value: i64,
        globals: &CcGlobals,
        _current: &[AtomicIsize],
    ) -> Result<(), Errno> {
        // FreeBSD: beta_ecn only means something with ABE on, so setting it otherwise is EACCES.
        if idx as usize == PARAM_BETA_ECN && CcGlobals::get(&globals.abe) == 0 {
            return Err(Errno::EACCES);
        }
        Ok(())
    }
}

plugtcp_abi::export_cc_module!(NewReno);

#[cfg(test)]
mod tests;
