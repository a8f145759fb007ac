//! plugtcp-io: packet I/O for the sans-IO host, and the drivers that run it.
//!
//! Backends: [`sim`] is the simulated link with a virtual clock (the default for the demo,
//! tests and benchmarks; [`simnet`] puts two hosts on it); [`tun`] is a Linux TUN device
//! (the kernel's TCP as a peer, [`netns`] makes the namespaces); [`udp`] carries TCP over
//! UDP (no privileges needed); [`pcap`] writes captures from any backend. [`driver`] runs a
//! host on a real backend with the wall clock and wraps any backend in fault injection;
//! [`runtime`] gives applications blocking and tokio sockets on a host running in threads of
//! its own (one per shard); [`control`] is its control socket and [`exporter`] its Prometheus
//! endpoint. [`shaped`] is a bottleneck with a real queue, dequeued when the link is free, so
//! the AQMs in [`qdisc`] act as in a kernel; its capacity can follow a [`mahimahi`] trace.

pub mod control;
pub mod driver;
pub mod exporter;
pub mod mahimahi;
pub mod netns;
pub mod pcap;
pub mod qdisc;
pub mod runtime;
pub mod shaped;
pub mod sim;
pub mod simnet;
pub mod tun;
pub mod udp;
