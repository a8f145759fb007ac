// Shared by the reload-cc-v1 and reload-cc-v2 fixtures: one module ("reloadcc") built twice
// under two versions, as a rebuilt plugin would be. TCP_CCALGOOPT get answers the version of
// the code that runs, so a test can see which build a live connection is on.

use plugtcp_framework::cc::common;
use plugtcp_framework::cc::{CcAlgorithm, CcParamDesc, CcVar};
use plugtcp_framework::sockopt::SockOpt;
use plugtcp_framework::{Errno, Tcpcb};

pub struct ReloadCc;

impl CcAlgorithm for ReloadCc {
    const NAME: &'static str = "reloadcc";
    const PARAMS: &'static [CcParamDesc] = &[CcParamDesc::new(
        "knob",
        "a parameter whose value must survive a reload",
        1,
        0,
        100,
    )];
    const HAS_CTL_OUTPUT: bool = true;

    fn cb_init(_ccv: &CcVar, _tp: &Tcpcb) -> Result<Self, Errno> {
        Ok(ReloadCc)
    }

    fn ack_received(&mut self, ccv: &mut CcVar, tp: &mut Tcpcb, ack_type: u32) {
        common::newreno_cc_ack_received(ccv, tp, ack_type);
    }

    fn cong_signal(&mut self, ccv: &mut CcVar, tp: &mut Tcpcb, sig: u32) {
        common::newreno_cc_cong_signal(ccv, tp, sig);
    }

    fn post_recovery(&mut self, ccv: &mut CcVar, tp: &mut Tcpcb) {
        common::newreno_cc_post_recovery(ccv, tp);
    }

    fn ctl_output(
        &mut self,
        _ccv: &mut CcVar,
        _tp: &mut Tcpcb,
        opt: &mut SockOpt<'_>,
    ) -> Result<(), Errno> {
        opt.reply(env!("CARGO_PKG_VERSION").as_bytes())
    }
}

plugtcp_framework::export_cc_module!(ReloadCc);
