//! plugtcp-tcpkit: sans-IO building blocks that plugtcp's stacks and CC modules share, on top
//! of the contract in `plugtcp-abi`. Nothing here is part of the ABI: a plugin links what it
//! uses, and two plugins may link different versions.
//!
//! - [`rtt`]: the RFC 6298 estimator with FreeBSD's fixed point; [`reass`]: out-of-order
//!   tracking and the SACK blocks we send; [`sack`]: the RFC 6675 scoreboard; [`rack`]:
//!   RACK-TLP's send map (RFC 8985); [`rate`]: delivery-rate samples for rate-based CC.
//! - [`cc`]: what mod_cc modules share: cc.c's NewReno functions ([`cc::common`]), HyStart++
//!   ([`cc::hystart`]), h_ertt ([`cc::ertt`]), delay helpers ([`cc::delay`]), and with the
//!   `testing` feature a fake host for unit tests of a module (`cc::testing`).
//! - [`stack`]: for function blocks; with the `testing` feature a fake host for unit tests of
//!   a whole stack (`stack::testing`).

pub mod cc;
pub mod rack;
pub mod rate;
pub mod reass;
pub mod rtt;
pub mod sack;
pub mod stack;

/// The contract, for the forwarding macros ([`newreno_hooks!`], [`ertt_hooks!`]).
#[doc(hidden)]
pub use plugtcp_abi as __abi;
