//! plugtcp-host: the sans-IO host. It owns the socket table, socket buffers, timers, the
//! SYN cache and the plugin registry, loads TCP stacks and CC modules as plugins and drives
//! them; packets come in through [`Host::input`] and go out through its transmit queue, time
//! through [`Host::advance`]. No I/O, no threads, no clock: `plugtcp-io` drives it on a
//! simulated link or a real device.
//!
//! - [`input`]: the receive path, and only it: parse, demux, LRO, the connection's stack;
//!   [`passive`]: a segment for a listener (SYN cache, cookies, the handshake's end);
//!   [`wire`]: IP and TCP headers and options; [`ipfrag`]: fragment reassembly; [`icmp`]:
//!   ICMP errors; [`lro`]: receive coalescing
//! - [`socket`]: socket table (4-tuple demux), SYN cache and cookies, socket buffers
//! - [`conn_table`]: the connections, by generation-checked handle ([`conn_table::ConnId`]);
//!   [`lifecycle`]: making, calling and freeing one; [`conn`]: one connection, its stack and
//!   CC, switching them live, the host interface it gives its stack
//! - [`usrreq`]: the application calls; [`ctloutput`]: socket options; [`attach`]: sockets
//!   before they have a 4-tuple; [`posix`]: all of it as POSIX calls on descriptors
//! - [`host`]: the host itself (its parts, time, batches); [`kld`]: kldload, kldstat,
//!   kldunload and the registry's sysctls; [`registry`]: loaded plugins
//!   ([`registry::loader`] opens files)
//! - [`timer`]: the timer wheel; [`timewait`]: TIME_WAIT; [`fastopen`]: TCP Fast Open keys
//!   and client cookie cache; [`tcpmd5`]: TCP-MD5 keys; [`hostcache`]: per-peer metrics
//! - [`sysctl`]: the `net.inet.tcp.*` tree; [`secrets`]: where randomness comes from
//! - [`metrics`]: publishing counters to the `metrics` facade; [`siftr`]: siftr(4) traces

pub mod attach;
pub mod conn;
pub mod conn_table;
pub mod ctloutput;
pub mod fastopen;
pub mod gauges;
pub mod host;
pub mod hostcache;
pub mod icmp;
pub mod input;
pub mod ipfrag;
pub mod kld;
pub mod lifecycle;
pub mod log;
pub mod lro;
pub mod metrics;
pub mod observe;
pub mod pacing;
pub mod passive;
pub mod posix;
pub mod registry;
pub mod secrets;
pub mod siftr;
pub mod socket;
pub mod steer;
pub mod sysctl;
pub mod tcpmd5;
pub mod timer;
pub mod timewait;
pub mod usrreq;
pub mod wire;

pub use host::Host;
