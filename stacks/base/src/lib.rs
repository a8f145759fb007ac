//! `base`: plugtcp's default TCP function block (aliases `default` and `freebsd`, the name
//! FreeBSD gives its own default stack): the shared engine
//! (stacks/engine) with RFC 6675 loss recovery. Like FreeBSD's default stack it takes over a
//! connection in any state.

use abi_stable::std_types::RStr;
use plugtcp_abi::stack::StackCtx;
use plugtcp_abi::Errno;
use plugtcp_tcp_engine::{LossDetection, Personality, Stack};

pub use plugtcp_tcp_engine::ctr;

pub struct BasePersonality;

impl Personality for BasePersonality {
    const NAME: &'static str = "base";
    const ALIASES: &'static [RStr<'static>] =
        &[RStr::from_str("default"), RStr::from_str("freebsd")];
    const LOSS: LossDetection = LossDetection::Rfc6675;

    fn handoff_ok(_cx: &StackCtx) -> Result<(), Errno> {
        // FreeBSD's default stack never refuses a connection.
        Ok(())
    }
}

/// The `base` function block.
pub type Base = Stack<BasePersonality>;

plugtcp_abi::export_function_block!(Base);
