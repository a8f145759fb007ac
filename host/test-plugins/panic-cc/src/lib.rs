//! Test fixture: a CC module ("panicky") that panics in `ack_received` after `PANIC_AFTER`
//! calls, and in `cong_signal` always. Its file name does not match the autoload pattern, so
//! hosts only load it when a test asks.

use plugtcp_abi::cc::{CcAlgorithm, CcVar};
use plugtcp_abi::{Errno, Tcpcb};

pub const PANIC_AFTER: u32 = 3;

pub struct Panicky {
    acks: u32,
}

impl CcAlgorithm for Panicky {
    const NAME: &'static str = "panicky";

    fn cb_init(_ccv: &CcVar, _tp: &Tcpcb) -> Result<Self, Errno> {
        Ok(Panicky { acks: 0 })
    }

    fn ack_received(&mut self, _ccv: &mut CcVar, tp: &mut Tcpcb, _ack_type: u32) {
        self.acks += 1;
        if self.acks > PANIC_AFTER {
            panic!("panicky: deliberate panic in ack_received");
        }
        tp.snd_cwnd += tp.t_maxseg;
    }

    fn cong_signal(&mut self, _ccv: &mut CcVar, _tp: &mut Tcpcb, _sig: u32) {
        panic!("panicky: deliberate panic in cong_signal");
    }
}

plugtcp_abi::export_cc_module!(Panicky);
