//! plugtcp-host: the sans-IO host. It owns the socket table, socket buffers, timers, the
//! SYN cache and the plugin registry, loads TCP stacks and CC modules as plugins and drives
//! them; packets come in through [`Host::input`] and go out through its transmit queue, time
//! through [`Host::advance`]. No I/O, no threads, no clock: `plugtcp-io` drives it on a
//! simulated link or a real device.
//!
//! - [`input`]: the receive path (parse, demux, LRO, SYN cache, stack); [`wire`]: IP and TCP
//!   headers and options; [`ipfrag`]: fragment reassembly; [`icmp`]: ICMP errors;
//!   [`lro`]: receive coalescing
//! - [`socket`]: socket table (4-tuple demux), SYN cache and cookies, socket buffers
//! - [`conn`]: one connection, its stack and CC, switching them live; [`attach`]: making one
//! - [`usrreq`]: the application API; [`posix`]: the same as POSIX calls on descriptors
//! - [`host`]: the host itself and the kld operations; [`registry`]: loaded plugins
//!   ([`registry::loader`] opens files)
//! - [`timer`]: the timer wheel; [`timewait`]: TIME_WAIT
//! - [`sysctl`]: the `net.inet.tcp.*` tree; [`secrets`]: where randomness comes from
//! - [`metrics`]: publishing counters to the `metrics` facade; [`siftr`]: siftr(4) traces

pub mod attach;
pub mod conn;
pub mod conn_table;
pub mod host;
pub mod icmp;
pub mod input;
pub mod ipfrag;
pub mod lro;
pub mod metrics;
pub mod posix;
pub mod registry;
pub mod secrets;
pub mod siftr;
pub mod socket;
pub mod sysctl;
pub mod timer;
pub mod timewait;
pub mod usrreq;
pub mod wire;

pub use host::Host;
