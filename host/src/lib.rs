//! plugtcp-host: the process that owns packet I/O, the socket table, socket buffers and
//! timers, loads TCP stacks and CC modules as plugins, and drives them sans-IO.
//!
//! - [`registry`]: loaded plugins, names, defaults, user counts ([`registry::loader`] opens files)
//! - [`conn`]: one connection, its stack and CC, switching them live
//! - [`host`]: the host core and the kld operations
//! - [`socket`]: socket table (4-tuple demux), SYN cache and cookies, socket buffers
//! - [`secrets`]: where the host's randomness comes from (the OS, or a seed in simulation)
//! - [`sysctl`]: the `net.inet.tcp.*` tree; [`timer`]: the timer wheel
//! - [`io`]: packet I/O backends (`sim`) and pcap capture; [`lro`]: receive coalescing
//! - [`bench`]: `plugtcp bench ...`

pub mod attach;
pub mod bench;
pub mod ccsim;
pub mod conn;
pub mod control;
pub mod demo;
pub mod host;
pub mod icmp;
pub mod input;
pub mod io;
pub mod ipfrag;
pub mod lro;
pub mod metrics;
pub mod packetdrill;
pub mod plot;
pub mod posix;
pub mod registry;
pub mod runtime;
pub mod secrets;
pub mod serve;
pub mod services;
pub mod siftr;
pub mod socket;
pub mod sysctl;
pub mod timer;
pub mod timewait;
pub mod usrreq;
pub mod wire;

pub use host::Host;
