//! Sockets: the table that demultiplexes segments to connections and listeners, the SYN
//! cache with SYN cookies, the host-owned socket buffers (chunks from a pool), and the
//! options the host keeps for a connection across stack switches (sticky).

pub mod buffer;
pub mod sticky;
pub mod syncache;
pub mod table;
