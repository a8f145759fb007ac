//! Packet I/O backends. `sim` is the simulated link with a virtual clock (the default for the
//! demo, tests and benchmarks); `tun` is a Linux TUN device (the kernel's TCP as a peer);
//! `udp` carries TCP over UDP (no privileges needed); `driver` runs a host on a real
//! backend with the wall clock and wraps any backend in fault injection; `pcap` writes
//! captures from any backend.

pub mod driver;
pub mod netns;
pub mod pcap;
pub mod sim;
pub mod simnet;
pub mod tun;
pub mod udp;
