//! Large receive offload (FreeBSD tcp_lro.c, Linux GRO): within one receive batch, in-order
//! data segments of a connection whose headers agree are merged into one segment before the
//! stack sees it, so a burst costs one stack call instead of one per packet.
//!
//! Merged: ACK (PSH only on the last) with payload, no other flags, timestamps as the only
//! option, not CE-marked, and the same ack, window, options and ECN codepoint as the
//! segment being built (Linux GRO's rule: the result reads exactly as its first packet with
//! the payload of all). Anything else first flushes what is pending, so the stack sees
//! every connection's segments in arrival order.

use plugtcp_framework::segment::{ecn, th, to, SegIn, TcpOpts};

use crate::wire::Parsed;

/// Largest merged payload: what one IP packet could carry.
pub const LRO_MAX_BYTES: usize = 65535 - 40 - 60;

/// The segment being built.
struct Pending {
    slot: usize,
    seq: u32,
    ack: u32,
    flags: u16,
    win: u16,
    ip_ecn: u8,
    opts: TcpOpts,
}

/// One worker's merge state: at most one segment is being built at a time.
#[derive(Default)]
pub struct Lro {
    pending: Option<Pending>,
    /// Payload of the pending segment (kept between batches for its capacity).
    buf: Vec<u8>,
}

impl Lro {
    /// Whether the packet may be merged at all.
    pub fn candidate(p: &Parsed<'_>) -> bool {
        p.flags & !th::PUSH == th::ACK
            && !p.payload.is_empty()
            && p.opts.flags & !to::TSTAMP == 0
            && p.ecn != ecn::CE
    }

    /// Appends a candidate to the pending segment if it continues it; false if it does not
    /// (the caller flushes and starts a new one).
    pub fn append(&mut self, slot: usize, p: &Parsed<'_>) -> bool {
        let Some(pd) = self.pending.as_mut() else {
            return false;
        };
        let fits = self.buf.len() + p.payload.len() <= LRO_MAX_BYTES;
        if pd.slot != slot
            || !fits
            || pd.flags & th::PUSH != 0
            || p.seq != pd.seq.wrapping_add(self.buf.len() as u32)
            || (p.ack, p.win, p.ecn) != (pd.ack, pd.win, pd.ip_ecn)
            || p.opts != pd.opts
        {
            return false;
        }
        pd.flags |= p.flags & th::PUSH;
        self.buf.extend_from_slice(p.payload);
        true
    }

    /// Starts a segment with a candidate; whatever was pending must have been taken.
    pub fn start(&mut self, slot: usize, p: &Parsed<'_>) {
        debug_assert!(self.pending.is_none());
        self.buf.clear();
        self.buf.extend_from_slice(p.payload);
        self.pending = Some(Pending {
            slot,
            seq: p.seq,
            ack: p.ack,
            flags: p.flags,
            win: p.win,
            ip_ecn: p.ecn,
            opts: p.opts,
        });
    }

    pub fn is_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// Hands the pending segment to `f` (with its connection's slot) and clears it.
    pub fn flush<R>(&mut self, f: impl FnOnce(usize, &SegIn<'_>) -> R) -> Option<R> {
        let pd = self.pending.take()?;
        let seg = SegIn {
            seq: pd.seq,
            ack: pd.ack,
            flags: pd.flags,
            win: pd.win,
            urp: 0,
            ip_ecn: pd.ip_ecn,
            opts: pd.opts,
            payload: self.buf.as_slice().into(),
        };
        Some(f(pd.slot, &seg))
    }
}
