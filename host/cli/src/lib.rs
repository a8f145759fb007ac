//! The `plugtcp` program: what runs on top of the host (`plugtcp-host`) and its I/O
//! (`plugtcp-io`).
//!
//! - [`builtins`]: the plugin bundle linked into the binary
//! - [`serve`]: `plugtcp serve` and `get`; [`services`]: echo, discard, chargen, http, ...
//! - [`demo`]: the demo on the simulated link; [`ccsim`]: CC experiments; [`plot`]: plots
//! - [`bench`]: `plugtcp bench ...`; [`packetdrill`]: the packetdrill runner
//! - [`control`]: the control socket (kld*, sysctl, sockstat, tcpsso); [`exporter`]: the
//!   Prometheus endpoint

pub mod bench;
pub mod builtins;
pub mod ccsim;
pub mod demo;
pub mod lab;
pub mod packetdrill;
pub mod plot;
pub mod serve;
pub mod services;

/// The control socket and the Prometheus exporter live with the runtime in `plugtcp-io`.
pub use plugtcp_io::{control, exporter};
