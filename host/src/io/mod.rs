//! Packet I/O backends. `sim` is the simulated link with a virtual clock (the default for the
//! demo, tests and benchmarks); `pcap` writes captures from any backend.

pub mod pcap;
pub mod sim;
pub mod simnet;
