//! Hooks the core calls for what observes it (siftr(4) traces today). The core knows only
//! these traits, so no core file imports an observer: [`crate::siftr`] implements them.
//!
//! An observer costs nothing while none is attached: the receive path tests two `Option`s
//! per segment and calls on only when one is set.

use std::any::Any;
use std::io;
use std::net::SocketAddr;

use plugtcp_abi::Tcpcb;

/// What an observer is shown after a connection's stack handled a segment.
pub struct SegmentSeen<'a> {
    /// The host clock (ns).
    pub now: u64,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// The control block after the stack's `do_segment`.
    pub tp: &'a Tcpcb,
    /// The segment's `th` flags.
    pub flags: u16,
    /// How far the segment moved snd_una (bytes acknowledged).
    pub acked: u32,
    /// Bytes in the send buffer after the call.
    pub snd_queued: usize,
    /// The connection's function block and CC module now (a live switch shows as a change).
    pub stack: &'a str,
    pub cc: &'a str,
}

/// An observer of one connection, kept with it (TCP_SIFTR's trace).
pub trait ConnObserver: Send {
    /// After each segment the connection's stack handled.
    fn segment(&mut self, seen: &SegmentSeen<'_>);
    /// Writes out what it holds; the first error it met, if any.
    fn flush(&mut self) -> io::Result<()>;
    /// What getsockopt reports for it (TCP_SIFTR: the file's path), "" for nothing.
    fn name(&self) -> &str {
        ""
    }
}

/// An observer of every connection, kept by the host (the siftr(4) log).
pub trait HostObserver: Send {
    /// Whether it observes the connection with these addresses.
    fn wants(&self, local: &SocketAddr, remote: &SocketAddr) -> bool;
    /// After each segment the stack of a wanted connection handled.
    fn segment(&mut self, seen: &SegmentSeen<'_>);
    /// Writes out what it holds.
    fn flush(&mut self) -> io::Result<()>;
    /// For the module that attached it, to reach its own type again.
    fn as_any_mut(&mut self) -> &mut dyn Any;
}
