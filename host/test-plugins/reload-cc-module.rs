// Shared by the reload-cc-v1 and reload-cc-v2 fixtures: one module ("reloadcc") built twice
// under two versions, as a rebuilt plugin would be. TCP_CCALGOOPT get answers the version of
// the code that runs, so a test can see which build a live connection is on.

use plugtcp_abi::cc::{CcAlgorithm, CcParamDesc, CcVar};
use plugtcp_abi::sockopt::SockOpt;
use plugtcp_abi::{Errno, Tcpcb};

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

    plugtcp_tcpkit::newreno_hooks!(ack_received, cong_signal, post_recovery);

    fn ctl_output(
        &mut self,
        _ccv: &mut CcVar,
        _tp: &mut Tcpcb,
        opt: &mut SockOpt<'_>,
    ) -> Result<(), Errno> {
        opt.reply(env!("CARGO_PKG_VERSION").as_bytes())
    }
}

plugtcp_abi::export_cc_module!(ReloadCc);
