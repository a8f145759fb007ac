//! Large receive offload (FreeBSD tcp_lro.c, Linux GRO) with direct data placement: within
//! one receive batch, in-order data segments of a connection whose headers agree are
//! merged into one segment before the stack sees it, so a burst costs one stack call
//! instead of one per packet. Their payloads are copied straight into the connection's
//! receive buffer, where they belong, while their checksums are verified (one pass over
//! the bytes); the merged segment's payload points there, and the stack's write of it
//! copies nothing.
//!
//! Merged: ACK (PSH only on the last) with payload, no other flags, timestamps as the only
//! option, not CE-marked, and the same ack, window, options and ECN codepoint as the
//! segment being built (Linux GRO's rule: the result reads exactly as its first packet with
//! the payload of all). Placed: in order (at rcv_nxt, or right after the segment being
//! built), with no out-of-order data held, inside the window. A merged payload must be
//! contiguous, so a segment ends at a buffer chunk's end: a packet that crosses it is
//! split there, its first part ending one segment and its rest starting the next.
//! Anything else first flushes what is pending, so the stack sees every connection's
//! segments in arrival order.

use plugtcp_abi::segment::{ecn, th, to, SegIn, TcpOpts};

use crate::wire::Parsed;

/// Largest merged payload: what one IP packet could carry.
pub const LRO_MAX_BYTES: usize = 65535 - 40 - 60;

/// The segment being built; its payload is `len` bytes placed at the connection's
/// `rcv_nxt` in its receive buffer.
#[derive(Clone, Copy)]
pub struct Pending {
    pub slot: usize,
    pub seq: u32,
    ack: u32,
    flags: u16,
    win: u16,
    ip_ecn: u8,
    opts: TcpOpts,
    pub len: usize,
}

impl Pending {
    /// A segment started by `p` (whose payload is placed).
    pub fn new(slot: usize, p: &Parsed<'_>) -> Self {
        Self::first_part(slot, p, p.payload.len())
    }

    /// A segment of the first `n` bytes of `p`'s payload (PSH only if that is all of it).
    pub fn first_part(slot: usize, p: &Parsed<'_>, n: usize) -> Self {
        let push = if n == p.payload.len() { th::PUSH } else { 0 };
        Pending {
            slot,
            seq: p.seq,
            ack: p.ack,
            flags: p.flags & (!th::PUSH | push),
            win: p.win,
            ip_ecn: p.ecn,
            opts: p.opts,
            len: n,
        }
    }

    /// Whether `p` (a candidate for the same connection) continues this segment.
    pub fn continued_by(&self, p: &Parsed<'_>) -> bool {
        self.flags & th::PUSH == 0
            && self.len + p.payload.len() <= LRO_MAX_BYTES
            && p.seq == self.seq.wrapping_add(self.len as u32)
            && (p.ack, p.win, p.ecn) == (self.ack, self.win, self.ip_ecn)
            && p.opts == self.opts
    }

    /// The first `n` bytes of `p`'s payload were placed after this segment's (all of them:
    /// PSH comes along).
    pub fn extend(&mut self, p: &Parsed<'_>, n: usize) {
        if n == p.payload.len() {
            self.flags |= p.flags & th::PUSH;
        }
        self.len += n;
    }

    /// A segment of `p`'s payload from byte `skip` on (the rest of a packet split at a
    /// chunk boundary).
    pub fn rest_of(slot: usize, p: &Parsed<'_>, skip: usize) -> Self {
        let mut pd = Pending::new(slot, p);
        pd.seq = p.seq.wrapping_add(skip as u32);
        pd.len -= skip;
        pd
    }

    /// The merged segment, with its payload.
    pub fn seg<'a>(&self, payload: &'a [u8]) -> SegIn<'a> {
        SegIn {
            seq: self.seq,
            ack: self.ack,
            flags: self.flags,
            win: self.win,
            urp: 0,
            ip_ecn: self.ip_ecn,
            opts: self.opts,
            payload: payload.into(),
        }
    }
}

/// Whether a packet may be merged at all.
pub fn candidate(p: &Parsed<'_>) -> bool {
    p.flags & !th::PUSH == th::ACK
        && !p.payload.is_empty()
        && p.opts.flags & !to::TSTAMP == 0
        && p.ecn != ecn::CE
}
