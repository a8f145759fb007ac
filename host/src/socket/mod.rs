//! Sockets: the table that demultiplexes segments to connections and listeners, the SYN
//! cache with SYN cookies, and the host-owned socket buffers.

pub mod syncache;
pub mod table;
