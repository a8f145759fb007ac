//! What congestion control modules share (FreeBSD's cc.c, cc_newreno's helpers, h_ertt).

pub mod common;
pub mod delay;
pub mod ertt;
pub mod hystart;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
