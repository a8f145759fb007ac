//! Sockets: the table that demultiplexes segments to connections and listeners, the SYN
//! cache with SYN cookies, and the host-owned socket buffers (chunks from a pool).

pub mod buffer;
pub mod syncache;
pub mod table;
