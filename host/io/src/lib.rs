//! plugtcp-io: packet I/O for the sans-IO host, and the drivers that run it.
//!
//! Backends: [`sim`] is the simulated link with a virtual clock (the default for the demo,
//! tests and benchmarks; [`simnet`] puts two hosts on it); [`tun`] is a Linux TUN device
//! (the kernel's TCP as a peer, [`netns`] makes the namespaces); [`udp`] carries TCP over
//! UDP (no privileges needed); [`pcap`] writes captures from any backend. [`driver`] runs a
//! host on a real backend with the wall clock and wraps any backend in fault injection;
//! [`runtime`] gives applications blocking and tokio sockets on a host running in threads of
//! its own (one per shard); [`control`] is its control socket and [`exporter`] its Prometheus
//! endpoint.

pub mod control;
pub mod driver;
pub mod exporter;
pub mod netns;
pub mod pcap;
pub mod runtime;
pub mod sim;
pub mod simnet;
pub mod tun;
pub mod udp;
