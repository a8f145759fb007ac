//! Out-of-order receive tracking (the bookkeeping half of FreeBSD's `tcp_reass`).
//!
//! The host owns the receive bytes (`RecvBuf::write_at(off)` with `off` relative to
//! `rcv_nxt`); this queue only remembers which sequence ranges above `rcv_nxt` are filled, so
//! the stack can advance `rcv_nxt` and build SACK blocks (RFC 2018).
//!
//! Ranges are kept sorted, disjoint and non-adjacent (touching ranges merge). They are stored
//! as absolute sequence numbers and compared by their offset from `rcv_nxt`, which handles
//! wraparound as long as everything lies within 2^31 above `rcv_nxt` (the window is far less).

use plugtcp_abi::segment::SackBlock;
use plugtcp_abi::seq::{seq_leq, seq_lt};

/// Default range bound (like FreeBSD's `net.inet.tcp.reass.maxqueuelen`, counted in ranges).
pub const REASS_MAXQUEUELEN_DEFAULT: usize = 64;
/// Upper bound accepted by [`ReassQueue::new`], so a bad setting cannot exhaust memory.
pub const REASS_MAXQUEUELEN_LIMIT: usize = 65_536;

/// Outcome of [`ReassQueue::insert`].
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Insert {
    /// At least one new byte is now tracked.
    Stored,
    /// Nothing new: empty, entirely below `rcv_nxt`, or already covered. The covering range
    /// still becomes the most recent one for SACK (RFC 2018: the first block holds the segment
    /// that triggered the ACK).
    Duplicate,
    /// Not stored: it would need a new range and the queue is full, or it ends more than
    /// 2^31 - 1 bytes past `rcv_nxt` (the caller trims to the receive window first). The
    /// caller drops the data, as FreeBSD does when `t_segqlen` reaches the limit.
    Overflow,
}

#[derive(Copy, Clone, Debug)]
struct Range {
    start: u32,
    end: u32,
    /// Arrival order of the newest segment in this range; unique across ranges.
    stamp: u64,
}

/// Filled ranges above `rcv_nxt`, bounded to `maxqueuelen` ranges (plus one for a range
/// starting exactly at `rcv_nxt`, which FreeBSD also accepts when full because it is
/// delivered at once). Storage grows on first use and is kept, so an idle connection costs
/// nothing and steady state does not allocate.
#[derive(Clone, Debug)]
pub struct ReassQueue {
    ranges: Vec<Range>,
    maxqueuelen: usize,
    stamp: u64,
}

impl Default for ReassQueue {
    fn default() -> Self {
        Self::new(REASS_MAXQUEUELEN_DEFAULT)
    }
}

impl ReassQueue {
    /// A queue holding at most `maxqueuelen` ranges (capped at [`REASS_MAXQUEUELEN_LIMIT`]).
    pub fn new(maxqueuelen: usize) -> Self {
        let maxqueuelen = maxqueuelen.min(REASS_MAXQUEUELEN_LIMIT);
        Self {
            ranges: Vec::new(),
            maxqueuelen,
            stamp: 0,
        }
    }

    /// Records that `[seq, seq + len)` has been written by the host. Bytes below `rcv_nxt` are
    /// ignored; overlapping and adjacent ranges merge. Inserting at `rcv_nxt` is fine: a later
    /// [`take_contiguous`](Self::take_contiguous) hands those bytes back.
    pub fn insert(&mut self, rcv_nxt: u32, seq: u32, len: u32) -> Insert {
        self.prune(rcv_nxt);
        let off = seq.wrapping_sub(rcv_nxt) as i32 as i64;
        let end_off = off + len as i64;
        if len == 0 || end_off <= 0 {
            return Insert::Duplicate;
        }
        if end_off > i32::MAX as i64 {
            return Insert::Overflow;
        }
        let (s, e) = (off.max(0) as u32, end_off as u32);
        let rel = |x: u32| x.wrapping_sub(rcv_nxt);
        // Ranges i..j overlap or touch [s, e].
        let i = self
            .ranges
            .iter()
            .position(|r| rel(r.end) >= s)
            .unwrap_or(self.ranges.len());
        let j = i + self.ranges[i..]
            .iter()
            .take_while(|r| rel(r.start) <= e)
            .count();
        if i == j {
            let limit = if s == 0 {
                self.maxqueuelen + 1
            } else {
                self.maxqueuelen
            };
            if self.ranges.len() >= limit {
                return Insert::Overflow;
            }
            let stamp = self.next_stamp();
            self.ranges.insert(
                i,
                Range {
                    start: rcv_nxt.wrapping_add(s),
                    end: rcv_nxt.wrapping_add(e),
                    stamp,
                },
            );
            return Insert::Stored;
        }
        let stamp = self.next_stamp();
        let (first, last) = (self.ranges[i], self.ranges[j - 1]);
        if j == i + 1 && rel(first.start) <= s && rel(first.end) >= e {
            self.ranges[i].stamp = stamp;
            return Insert::Duplicate;
        }
        self.ranges[i] = Range {
            start: rcv_nxt.wrapping_add(s.min(rel(first.start))),
            end: rcv_nxt.wrapping_add(e.max(rel(last.end))),
            stamp,
        };
        self.ranges.drain(i + 1..j);
        Insert::Stored
    }

    /// Bytes starting at `rcv_nxt` that are now available (0 if none); forgets them. The
    /// caller advances `rcv_nxt` by the result. Ranges already below `rcv_nxt` (delivered in
    /// order without going through the queue) are dropped too.
    pub fn take_contiguous(&mut self, rcv_nxt: u32) -> u32 {
        self.prune(rcv_nxt);
        match self.ranges.first() {
            Some(r) if r.start == rcv_nxt => {
                let n = r.end.wrapping_sub(r.start);
                self.ranges.remove(0);
                n
            }
            _ => 0,
        }
    }

    /// SACK blocks for an outgoing ACK (RFC 2018 section 4): the range holding the most recently
    /// received segment first, then the others from most to least recently updated, up to
    /// `out.len()`. Returns how many were written. Call after `take_contiguous`, so no block
    /// starts at `rcv_nxt`. A D-SACK block (RFC 2883), if any, is the caller's to prepend.
    pub fn sack_blocks(&self, out: &mut [SackBlock]) -> usize {
        let mut n = 0;
        let mut bound = u64::MAX;
        while n < out.len() {
            // Selection by descending stamp: O(out.len() * ranges), no sorting buffer needed.
            let Some(r) = self
                .ranges
                .iter()
                .filter(|r| r.stamp < bound)
                .max_by_key(|r| r.stamp)
            else {
                break;
            };
            out[n] = SackBlock {
                start: r.start,
                end: r.end,
            };
            bound = r.stamp;
            n += 1;
        }
        n
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Changes the bound (capped at [`REASS_MAXQUEUELEN_LIMIT`]); ranges held stay.
    pub fn set_maxqueuelen(&mut self, maxqueuelen: usize) {
        self.maxqueuelen = maxqueuelen.min(REASS_MAXQUEUELEN_LIMIT);
    }

    /// Total bytes tracked.
    pub fn len_bytes(&self) -> u32 {
        self.ranges
            .iter()
            .fold(0u32, |a, r| a.wrapping_add(r.end.wrapping_sub(r.start)))
    }

    /// Number of ranges held.
    pub fn num_ranges(&self) -> usize {
        self.ranges.len()
    }

    /// The ranges in sequence order, as `[start, end)` blocks.
    pub fn iter(&self) -> impl Iterator<Item = SackBlock> + '_ {
        self.ranges.iter().map(|r| SackBlock {
            start: r.start,
            end: r.end,
        })
    }

    pub fn clear(&mut self) {
        self.ranges.clear();
    }

    fn next_stamp(&mut self) -> u64 {
        self.stamp += 1;
        self.stamp
    }

    /// Drops what lies below `rcv_nxt` (a prefix, since ranges are sorted).
    fn prune(&mut self, rcv_nxt: u32) {
        let k = self
            .ranges
            .iter()
            .take_while(|r| seq_leq(r.end, rcv_nxt))
            .count();
        self.ranges.drain(..k);
        if let Some(r) = self.ranges.first_mut() {
            if seq_lt(r.start, rcv_nxt) {
                r.start = rcv_nxt;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn blocks(q: &ReassQueue, k: usize) -> Vec<(u32, u32)> {
        let mut out = [SackBlock::default(); 8];
        let n = q.sack_blocks(&mut out[..k]);
        out[..n].iter().map(|b| (b.start, b.end)).collect()
    }

    #[test]
    fn merge_and_take() {
        let mut q = ReassQueue::new(4);
        assert_eq!(q.insert(1000, 1500, 100), Insert::Stored);
        assert_eq!(q.insert(1000, 1700, 100), Insert::Stored);
        assert_eq!(q.insert(1000, 1600, 100), Insert::Stored); // bridges both
        assert_eq!(q.num_ranges(), 1);
        assert_eq!(q.insert(1000, 1550, 200), Insert::Duplicate);
        assert_eq!(q.len_bytes(), 300);
        assert_eq!(q.take_contiguous(1000), 0);
        assert_eq!(q.insert(1000, 900, 600), Insert::Stored); // starts below rcv_nxt
        assert_eq!(q.take_contiguous(1000), 800);
        assert!(q.is_empty());
        assert_eq!(q.insert(1800, 1000, 800), Insert::Duplicate);
        assert_eq!(q.insert(1800, 1900, 0), Insert::Duplicate);
        // Ends past rcv_nxt + 2^31 - 1: unorderable, refused.
        assert_eq!(q.insert(1800, 1800 + (1 << 31) - 1, 1), Insert::Overflow);
        // Exactly 2^31 ahead reads as behind in sequence arithmetic.
        assert_eq!(q.insert(1800, 1800 + (1 << 31), 1), Insert::Duplicate);
    }

    #[test]
    fn overflow_keeps_room_for_rcv_nxt() {
        let mut q = ReassQueue::new(2);
        assert_eq!(q.insert(0, 100, 10), Insert::Stored);
        assert_eq!(q.insert(0, 200, 10), Insert::Stored);
        assert_eq!(q.insert(0, 300, 10), Insert::Overflow);
        assert_eq!(q.insert(0, 110, 10), Insert::Stored); // merges: no new range
        assert_eq!(q.insert(0, 0, 10), Insert::Stored); // at rcv_nxt: allowed
        assert_eq!(q.num_ranges(), 3);
        assert_eq!(q.insert(0, 50, 10), Insert::Overflow);
        assert_eq!(q.take_contiguous(0), 10);
        assert_eq!(q.num_ranges(), 2);
    }

    #[test]
    fn in_order_delivery_bypassing_queue_prunes() {
        let mut q = ReassQueue::new(8);
        q.insert(0, 100, 50);
        q.insert(0, 300, 50);
        // Host delivered [0, 120) directly; rcv_nxt = 120 cuts into the first range.
        assert_eq!(q.take_contiguous(120), 30);
        assert_eq!(
            q.iter().map(|b| (b.start, b.end)).collect::<Vec<_>>(),
            [(300, 350)]
        );
        assert_eq!(q.take_contiguous(400), 0);
        assert!(q.is_empty());
    }

    #[test]
    fn wraparound() {
        let base = u32::MAX - 99;
        let mut q = ReassQueue::new(8);
        assert_eq!(q.insert(base, base.wrapping_add(150), 100), Insert::Stored);
        assert_eq!(q.insert(base, base.wrapping_add(50), 50), Insert::Stored);
        assert_eq!(q.num_ranges(), 2);
        assert_eq!(q.insert(base, base.wrapping_add(100), 50), Insert::Stored);
        assert_eq!(blocks(&q, 4), [(base.wrapping_add(50), 250 - 100)]);
        assert_eq!(q.insert(base, base, 50), Insert::Stored);
        assert_eq!(q.take_contiguous(base), 250);
    }

    /// RFC 2018 section 8-style sequence: 500-byte segments from 5000; 5000 acked, then every
    /// other segment is lost.
    #[test]
    fn sack_order_most_recent_first() {
        let mut q = ReassQueue::default();
        let rcv_nxt = 5500;
        q.insert(rcv_nxt, 6000, 500);
        assert_eq!(blocks(&q, 4), [(6000, 6500)]);
        q.insert(rcv_nxt, 7000, 500);
        assert_eq!(blocks(&q, 4), [(7000, 7500), (6000, 6500)]);
        q.insert(rcv_nxt, 8000, 500);
        assert_eq!(blocks(&q, 4), [(8000, 8500), (7000, 7500), (6000, 6500)]);
        q.insert(rcv_nxt, 9000, 500);
        q.insert(rcv_nxt, 10000, 500);
        // Only 3 fit (with timestamps): the oldest, 6000-6500, is left out.
        assert_eq!(blocks(&q, 3), [(10000, 10500), (9000, 9500), (8000, 8500)]);
        // 6500 fills a hole: the merged range holding it goes first.
        q.insert(rcv_nxt, 6500, 500);
        assert_eq!(
            blocks(&q, 4),
            [(6000, 7500), (10000, 10500), (9000, 9500), (8000, 8500)]
        );
        // A duplicate of 9000 triggers the next ACK: its range goes first.
        assert_eq!(q.insert(rcv_nxt, 9000, 500), Insert::Duplicate);
        assert_eq!(blocks(&q, 2), [(9000, 9500), (6000, 7500)]);
        assert_eq!(blocks(&q, 0), []);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(i64, u32),
        Take,
        /// In-order delivery of `n` bytes without the queue, then `take_contiguous`.
        Advance(u32),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (-60i64..400, 0u32..80).prop_map(|(o, l)| Op::Insert(o, l)),
            1 => Just(Op::Take),
            1 => (1u32..60).prop_map(Op::Advance),
        ]
    }

    fn runs(m: &BTreeSet<u64>) -> Vec<(u64, u64)> {
        let mut v: Vec<(u64, u64)> = Vec::new();
        for &x in m {
            match v.last_mut() {
                Some(r) if r.1 == x => r.1 += 1,
                _ => v.push((x, x + 1)),
            }
        }
        v
    }

    fn take_model(m: &mut BTreeSet<u64>, cur: &mut u64) -> u32 {
        let mut n = 0;
        while m.remove(cur) {
            *cur += 1;
            n += 1;
        }
        n
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]
        #[test]
        fn matches_byte_model(
            base in prop_oneof![Just(u32::MAX - 300), any::<u32>(), Just(0u32)],
            cap in 1usize..6,
            ops in proptest::collection::vec(op(), 1..60),
        ) {
            let mut q = ReassQueue::new(cap);
            let mut m = BTreeSet::new();
            let mut cur: u64 = 0; // model rcv_nxt, as offset from base
            let seq = |x: u64| base.wrapping_add(x as u32);
            for op in ops {
                match op {
                    Op::Insert(o, len) => {
                        let s = (cur as i64 + o).max(0) as u64;
                        let e = (cur as i64 + o + len as i64).max(0) as u64;
                        let (s, e) = (s.max(cur), e.max(cur));
                        let touches = s < e && m.range(s.saturating_sub(1).max(cur)..=e).next().is_some();
                        let limit = if s == cur { cap + 1 } else { cap };
                        let want = if s >= e || (s..e).all(|x| m.contains(&x)) {
                            Insert::Duplicate
                        } else if !touches && runs(&m).len() >= limit {
                            Insert::Overflow
                        } else {
                            m.extend(s..e);
                            Insert::Stored
                        };
                        let got = q.insert(seq(cur), seq((cur as i64 + o) as u64), len);
                        prop_assert_eq!(got, want);
                    }
                    Op::Take => {
                        let want = take_model(&mut m, &mut cur);
                        prop_assert_eq!(q.take_contiguous(seq(cur - want as u64)), want);
                    }
                    Op::Advance(n) => {
                        cur += n as u64;
                        m = m.split_off(&cur);
                        let want = take_model(&mut m, &mut cur);
                        let from = cur - want as u64;
                        prop_assert_eq!(q.take_contiguous(seq(from)), want);
                    }
                }
                let have: Vec<(u32, u32)> = q.iter().map(|b| (b.start, b.end)).collect();
                let want: Vec<(u32, u32)> = runs(&m).iter().map(|&(a, b)| (seq(a), seq(b))).collect();
                prop_assert_eq!(have, want);
                prop_assert_eq!(q.len_bytes() as usize, m.len());
                prop_assert!(q.num_ranges() <= cap + 1);
                let mut out = [SackBlock::default(); 4];
                let n = q.sack_blocks(&mut out);
                prop_assert_eq!(n, q.num_ranges().min(4));
                for i in 0..n {
                    for k in i + 1..n {
                        prop_assert_ne!(out[i], out[k]);
                    }
                }
            }
        }
    }
}
