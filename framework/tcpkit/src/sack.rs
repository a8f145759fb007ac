//! Sender SACK scoreboard and the RFC 6675 loss-recovery helpers (IsLost, SetPipe, NextSeg).
//!
//! The scoreboard stores the SACKed ranges (sorted, disjoint, non-adjacent, within
//! `[snd_una, snd_max]`); holes are the gaps between `snd_una` and the highest SACKed byte.
//! FreeBSD stores holes instead, but both bound each other: with at most `maxholes` SACKed
//! ranges there are at most `maxholes` holes. Storage is preallocated at construction.
//!
//! `high_rxt` (RFC 6675 HighRxt) is taken as an *exclusive* bound: one past the last
//! retransmitted byte (what a sender naturally keeps, like FreeBSD's hole `rxmit`). At the start
//! of recovery pass `snd_una`. Octet S counts as retransmitted iff `S < high_rxt`, and NextSeg
//! rules 1 and 3 look at `S >= high_rxt`.
//!
//! IsLost is constant over a hole: every octet in a hole sees the same SACKed data above it.
//! So pipe and NextSeg cost O(ranges), not O(bytes).

use plugtcp_abi::segment::SackBlock;
use plugtcp_abi::seq::{seq_geq, seq_gt, seq_leq, seq_lt, seq_max, seq_min};

/// FreeBSD `net.inet.tcp.sack.maxholes` default.
pub const SACK_MAXHOLES_DEFAULT: usize = 128;
/// Upper bound accepted by [`SackScoreboard::new`], so a bad setting cannot exhaust memory.
pub const SACK_MAXHOLES_LIMIT: usize = 65_536;
/// RFC 6675 DupThresh (FreeBSD `tcprexmtthresh`).
pub const DUPTHRESH: u32 = 3;

/// Outcome of [`SackScoreboard::update`].
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct UpdateResult {
    /// Bytes SACKed by this ACK that were not SACKed before.
    pub new_sacked_bytes: u32,
    /// The first block, if it is a D-SACK (RFC 2883): below `snd_una`, or inside another block
    /// of the same option. It is not entered into the scoreboard.
    pub dsack: Option<SackBlock>,
}

/// Sender-side SACK scoreboard, bounded to `maxholes` SACKed ranges.
#[derive(Clone, Debug)]
pub struct SackScoreboard {
    /// SACKed ranges, sorted by sequence, disjoint and non-adjacent.
    sacked: Vec<SackBlock>,
    maxholes: usize,
    sacked_bytes: u32,
    snd_una: u32,
    dupthresh: u32,
}

impl Default for SackScoreboard {
    fn default() -> Self {
        Self::new(SACK_MAXHOLES_DEFAULT)
    }
}

impl SackScoreboard {
    /// An empty scoreboard for at most `maxholes` ranges (capped at [`SACK_MAXHOLES_LIMIT`]).
    /// DupThresh for [`pipe`](Self::pipe) and [`next_seg`](Self::next_seg) starts at
    /// [`DUPTHRESH`].
    pub fn new(maxholes: usize) -> Self {
        let maxholes = maxholes.min(SACK_MAXHOLES_LIMIT);
        Self {
            sacked: Vec::new(),
            maxholes,
            sacked_bytes: 0,
            snd_una: 0,
            dupthresh: DUPTHRESH,
        }
    }

    /// Changes the bound (capped at [`SACK_MAXHOLES_LIMIT`]); ranges held stay.
    pub fn set_maxholes(&mut self, maxholes: usize) {
        self.maxholes = maxholes.min(SACK_MAXHOLES_LIMIT);
    }

    /// Number of SACKed ranges held (holes are as many, or one fewer).
    pub fn num_ranges(&self) -> usize {
        self.sacked.len()
    }

    /// DupThresh used by `pipe` and `next_seg` (e.g. after reordering is detected).
    pub fn set_dupthresh(&mut self, dupthresh: u32) {
        self.dupthresh = dupthresh;
    }

    pub fn dupthresh(&self) -> u32 {
        self.dupthresh
    }

    /// Processes the SACK blocks of one ACK. `snd_una` is the value after this ACK's cumulative
    /// acknowledgment (the scoreboard is trimmed to it first). Blocks with `start >= end` or
    /// outside `[snd_una, snd_max]` are ignored. A block that would need a new range when
    /// `maxholes` ranges exist is dropped (like FreeBSD's `sack_sboverflow`): the data it
    /// covers is then merely treated as un-SACKed, which is safe.
    pub fn update(&mut self, snd_una: u32, snd_max: u32, blocks: &[SackBlock]) -> UpdateResult {
        self.on_cumack(snd_una);
        let mut res = UpdateResult::default();
        let mut rest = blocks;
        if let Some((first, others)) = blocks.split_first() {
            let inside_other = others.iter().any(|b| {
                seq_lt(b.start, b.end) && seq_leq(b.start, first.start) && seq_geq(b.end, first.end)
            });
            if seq_lt(first.start, first.end)
                && seq_leq(first.end, snd_max)
                && (seq_lt(first.start, snd_una) || inside_other)
            {
                res.dsack = Some(*first);
                rest = others;
            }
        }
        for b in rest {
            if seq_lt(b.start, b.end) && seq_geq(b.start, snd_una) && seq_leq(b.end, snd_max) {
                res.new_sacked_bytes = res.new_sacked_bytes.wrapping_add(self.add(snd_una, *b));
            }
        }
        res
    }

    /// Forgets everything below `snd_una` (cumulative ACK).
    pub fn on_cumack(&mut self, snd_una: u32) {
        self.snd_una = snd_una;
        let k = self
            .sacked
            .iter()
            .take_while(|b| seq_leq(b.end, snd_una))
            .count();
        for b in self.sacked.drain(..k) {
            self.sacked_bytes = self.sacked_bytes.wrapping_sub(b.end.wrapping_sub(b.start));
        }
        if let Some(b) = self.sacked.first_mut() {
            if seq_lt(b.start, snd_una) {
                self.sacked_bytes = self
                    .sacked_bytes
                    .wrapping_sub(snd_una.wrapping_sub(b.start));
                b.start = snd_una;
            }
        }
    }

    /// RFC 6675 IsLost(seq): true when at least `dupthresh` discontiguous SACKed ranges, or
    /// more than `(dupthresh - 1) * smss` SACKed bytes, lie above `seq` (octets `> seq`).
    pub fn is_lost(&self, seq: u32, dupthresh: u32, smss: u32) -> bool {
        let above = seq.wrapping_add(1);
        let mut n = 0u32;
        let mut bytes = 0u64;
        for b in self.sacked.iter().rev() {
            let lo = seq_max(b.start, above);
            if !seq_lt(lo, b.end) {
                break; // sorted: nothing lower has octets above seq either
            }
            n += 1;
            bytes += b.end.wrapping_sub(lo) as u64;
        }
        lost(n, bytes, dupthresh, smss)
    }

    /// RFC 6675 SetPipe: over un-SACKed octets in `[snd_una, snd_max)`, one for each octet not
    /// IsLost, plus one for each octet below `high_rxt` (retransmitted). Uses the scoreboard's
    /// DupThresh.
    pub fn pipe(&self, snd_una: u32, snd_max: u32, high_rxt: u32, smss: u32) -> u32 {
        let hr = clamp(high_rxt, snd_una, snd_max);
        let mut pipe = 0u64;
        self.walk(snd_una, snd_max, smss, |hs, he, is_lost, _| {
            if !is_lost {
                pipe += he.wrapping_sub(hs) as u64;
            }
            if seq_lt(hs, hr) {
                pipe += seq_min(he, hr).wrapping_sub(hs) as u64;
            }
            false
        });
        pipe.min(u32::MAX as u64) as u32
    }

    /// RFC 6675 NextSeg, retransmission part. Returns `(seq, len, only_if_no_new_data)`, with
    /// `len <= smss` and never reaching into SACKed data:
    /// - rule (1): the first un-SACKed octet `>= high_rxt`, below the highest SACKed octet, that
    ///   IsLost: `(S2, len, false)`. Send it.
    /// - rule (2) is new data, which the scoreboard cannot see: if the flag is `true`, the
    ///   caller sends new data from `snd_max` instead when the send buffer and the peer's
    ///   window allow.
    /// - rule (3): otherwise the first un-SACKed octet `>= high_rxt` below the highest SACKed
    ///   octet, lost or not: `(S3, len, true)`.
    /// - rule (4), the rescue retransmission, is [`rescue_seg`](Self::rescue_seg), because it
    ///   needs per-recovery state (RescueRxt) that the caller keeps.
    ///
    /// `None` when there is no candidate (or `smss == 0`).
    pub fn next_seg(
        &self,
        snd_una: u32,
        snd_max: u32,
        high_rxt: u32,
        smss: u32,
    ) -> Option<(u32, u32, bool)> {
        if smss == 0 {
            return None;
        }
        let hr = clamp(high_rxt, snd_una, snd_max);
        let mut rule1 = None;
        let mut rule3 = None;
        self.walk(snd_una, snd_max, smss, |hs, he, is_lost, below_sack| {
            if !below_sack {
                return true;
            }
            let s = seq_max(hs, hr);
            if seq_lt(s, he) {
                let seg = (s, he.wrapping_sub(s).min(smss));
                if is_lost {
                    rule1 = Some(seg);
                    return true;
                }
                rule3 = rule3.or(Some(seg));
            }
            false
        });
        rule1
            .map(|(s, l)| (s, l, false))
            .or(rule3.map(|(s, l)| (s, l, true)))
    }

    /// RFC 6675 NextSeg rule (4): one segment of up to `smss` octets ending at (and including)
    /// the highest outstanding un-SACKed octet, not reaching into SACKed data. `None` if all
    /// of `[snd_una, snd_max)` is SACKed. The caller sends it at most once per recovery: only
    /// when rules 1-3 give nothing and `snd_una > RescueRxt` (or RescueRxt is unset), then sets
    /// RescueRxt = RecoveryPoint and leaves HighRxt alone.
    pub fn rescue_seg(&self, snd_una: u32, snd_max: u32, smss: u32) -> Option<(u32, u32)> {
        if smss == 0 {
            return None;
        }
        let mut last = None;
        self.walk(snd_una, snd_max, smss, |hs, he, _, _| {
            last = Some((hs, he));
            false
        });
        let (hs, he) = last?;
        let len = he.wrapping_sub(hs).min(smss);
        Some((he.wrapping_sub(len), len))
    }

    /// Total SACKed bytes in the scoreboard.
    pub fn sacked_bytes(&self) -> u32 {
        self.sacked_bytes
    }

    /// One past the highest SACKed byte, if any (the end of the highest SACKed range).
    pub fn highest_sack(&self) -> Option<u32> {
        self.sacked.last().map(|b| b.end)
    }

    /// Holes `[start, end)`, ascending, between the last `snd_una` given and the highest
    /// SACKed byte.
    pub fn holes(&self) -> impl Iterator<Item = SackBlock> + '_ {
        let mut cursor = self.snd_una;
        self.sacked.iter().filter_map(move |b| {
            let hole = seq_lt(cursor, b.start).then_some(SackBlock {
                start: cursor,
                end: b.start,
            });
            cursor = seq_max(cursor, b.end);
            hole
        })
    }

    /// SACKed ranges, ascending.
    pub fn sacked(&self) -> impl Iterator<Item = SackBlock> + '_ {
        self.sacked.iter().copied()
    }

    /// Empties the scoreboard (e.g. on RTO, where FreeBSD discards SACK state).
    pub fn clear(&mut self) {
        self.sacked.clear();
        self.sacked_bytes = 0;
    }

    /// Merges `b` (already validated against `[snd_una, snd_max]`); returns newly SACKed bytes.
    fn add(&mut self, snd_una: u32, b: SackBlock) -> u32 {
        let rel = |x: u32| x.wrapping_sub(snd_una);
        let (s, e) = (rel(b.start), rel(b.end));
        // Ranges i..j overlap or touch [s, e].
        let i = self
            .sacked
            .iter()
            .position(|r| rel(r.end) >= s)
            .unwrap_or(self.sacked.len());
        let j = i + self.sacked[i..]
            .iter()
            .take_while(|r| rel(r.start) <= e)
            .count();
        let new = if i == j {
            if self.sacked.len() >= self.maxholes {
                return 0;
            }
            self.sacked.insert(i, b);
            e - s
        } else {
            let old: u32 = self.sacked[i..j]
                .iter()
                .map(|r| r.end.wrapping_sub(r.start))
                .sum();
            let ns = s.min(rel(self.sacked[i].start));
            let ne = e.max(rel(self.sacked[j - 1].end));
            self.sacked[i] = SackBlock {
                start: snd_una.wrapping_add(ns),
                end: snd_una.wrapping_add(ne),
            };
            self.sacked.drain(i + 1..j);
            (ne - ns) - old
        };
        self.sacked_bytes = self.sacked_bytes.wrapping_add(new);
        new
    }

    /// Calls `f(start, end, is_lost, below_highest_sack)` for each un-SACKed region of
    /// `[snd_una, snd_max)`, ascending, until `f` returns true. Ranges are clipped to
    /// `[snd_una, snd_max]`, so a stale scoreboard cannot produce regions outside it.
    fn walk(
        &self,
        snd_una: u32,
        snd_max: u32,
        smss: u32,
        mut f: impl FnMut(u32, u32, bool, bool) -> bool,
    ) {
        if !seq_lt(snd_una, snd_max) {
            return;
        }
        let clip = |b: &SackBlock| {
            (
                clamp(b.start, snd_una, snd_max),
                clamp(b.end, snd_una, snd_max),
            )
        };
        let (mut n, mut bytes) = (0u32, 0u64);
        for b in &self.sacked {
            let (s, e) = clip(b);
            if seq_lt(s, e) {
                n += 1;
                bytes += e.wrapping_sub(s) as u64;
            }
        }
        let mut cursor = snd_una;
        for b in &self.sacked {
            let (s, e) = clip(b);
            if !seq_lt(s, e) {
                continue;
            }
            if seq_lt(cursor, s) && f(cursor, s, lost(n, bytes, self.dupthresh, smss), true) {
                return;
            }
            n -= 1;
            bytes -= e.wrapping_sub(s) as u64;
            cursor = e;
        }
        if seq_lt(cursor, snd_max) {
            f(cursor, snd_max, lost(n, bytes, self.dupthresh, smss), false);
        }
    }
}

fn lost(n: u32, bytes: u64, dupthresh: u32, smss: u32) -> bool {
    n >= dupthresh || bytes > dupthresh.saturating_sub(1) as u64 * smss as u64
}

fn clamp(x: u32, lo: u32, hi: u32) -> u32 {
    if seq_lt(x, lo) {
        lo
    } else if seq_gt(x, hi) {
        hi
    } else {
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn sb(start: u32, end: u32) -> SackBlock {
        SackBlock { start, end }
    }

    fn holes(s: &SackScoreboard) -> Vec<(u32, u32)> {
        s.holes().map(|b| (b.start, b.end)).collect()
    }

    /// Ten 1000-byte segments at [B, B + 10000); segments 2 and 5 (1-based) are lost.
    /// B sits just below 2^32 so the scenario also crosses the wrap.
    #[test]
    fn rfc6675_two_losses() {
        const B: u32 = u32::MAX - 4499;
        let at = |k: u32| B.wrapping_add(k * 1000); // start of segment k + 1
        let smss = 1000;
        let snd_max = at(10);
        let mut s = SackScoreboard::default();
        let mut una = at(1); // segment 1 cumulatively acked

        // Segment 3 arrives: 1 range, 1000 bytes above segment 2: not lost.
        let r = s.update(una, snd_max, &[sb(at(2), at(3))]);
        assert_eq!(
            r,
            UpdateResult {
                new_sacked_bytes: 1000,
                dsack: None
            }
        );
        assert!(!s.is_lost(at(1), 3, smss));
        assert_eq!(s.pipe(una, snd_max, una, smss), 8000);
        assert_eq!(
            s.next_seg(una, snd_max, una, smss),
            Some((at(1), 1000, true))
        );

        // Segment 4: 2000 bytes above, still not more than 2 * SMSS.
        s.update(una, snd_max, &[sb(at(2), at(4))]);
        assert!(!s.is_lost(at(1), 3, smss));
        assert_eq!(s.pipe(una, snd_max, una, smss), 7000);

        // Segment 6: 3000 bytes above segment 2: lost. Segment 5 has 1000 above: not lost.
        let r = s.update(una, snd_max, &[sb(at(5), at(6)), sb(at(2), at(4))]);
        assert_eq!(r.new_sacked_bytes, 1000);
        assert!(s.is_lost(at(1), 3, smss));
        assert!(!s.is_lost(at(4), 3, smss));
        assert_eq!(holes(&s), [(at(1), at(2)), (at(4), at(5))]);
        // Segment 2 no longer counts; segment 5 and 7..10 do.
        assert_eq!(s.pipe(una, snd_max, una, smss), 5000);
        assert_eq!(
            s.next_seg(una, snd_max, una, smss),
            Some((at(1), 1000, false))
        );

        // Retransmit segment 2: HighRxt = end of segment 2, pipe counts it again.
        let mut high_rxt = at(2);
        assert_eq!(s.pipe(una, snd_max, high_rxt, smss), 6000);
        // Segment 5 is not lost yet: rule 3 candidate, new data preferred.
        assert_eq!(
            s.next_seg(una, snd_max, high_rxt, smss),
            Some((at(4), 1000, true))
        );

        // Segments 7 and 8 arrive: 3000 bytes above segment 5 now.
        s.update(una, snd_max, &[sb(at(5), at(7)), sb(at(2), at(4))]);
        assert!(!s.is_lost(at(4), 3, smss));
        let r = s.update(una, snd_max, &[sb(at(5), at(8)), sb(at(2), at(4))]);
        assert_eq!(r.new_sacked_bytes, 1000);
        assert!(s.is_lost(at(4), 3, smss));
        assert_eq!(s.pipe(una, snd_max, high_rxt, smss), 1000 + 2000);
        assert_eq!(
            s.next_seg(una, snd_max, high_rxt, smss),
            Some((at(4), 1000, false))
        );
        high_rxt = at(5);
        assert_eq!(s.pipe(una, snd_max, high_rxt, smss), 1000 + 1000 + 2000);
        assert_eq!(s.next_seg(una, snd_max, high_rxt, smss), None);
        assert_eq!(s.rescue_seg(una, snd_max, smss), Some((at(9), 1000)));

        // Retransmitted segment 2 arrives: cumulative ACK to segment 5.
        una = at(4);
        let r = s.update(una, snd_max, &[sb(at(5), at(8))]);
        assert_eq!(r.new_sacked_bytes, 0);
        assert_eq!(s.sacked_bytes(), 3000);
        assert_eq!(holes(&s), [(at(4), at(5))]);
        assert_eq!(s.pipe(una, snd_max, high_rxt, smss), 1000 + 2000);

        // Retransmitted segment 5 arrives: everything up to segment 8 acked.
        una = at(8);
        s.update(una, snd_max, &[]);
        assert_eq!((s.sacked_bytes(), s.highest_sack()), (0, None));
        assert_eq!(s.pipe(una, snd_max, high_rxt, smss), 2000);
        assert_eq!(s.next_seg(una, snd_max, high_rxt, smss), None);
    }

    #[test]
    fn dupthresh_discontiguous_ranges() {
        let mut s = SackScoreboard::new(8);
        // Three 100-byte ranges above 0: only 300 bytes, but 3 discontiguous ranges.
        s.update(0, 10_000, &[sb(1000, 1100), sb(2000, 2100), sb(3000, 3100)]);
        assert!(s.is_lost(0, 3, 1460));
        assert!(!s.is_lost(1500, 3, 1460));
        assert!(!s.is_lost(0, 4, 1460));
        assert_eq!(s.next_seg(0, 10_000, 0, 1460), Some((0, 1000, false)));
        s.set_dupthresh(4);
        assert_eq!(s.next_seg(0, 10_000, 0, 1460), Some((0, 1000, true)));
    }

    #[test]
    fn dsack_detection() {
        let mut s = SackScoreboard::new(8);
        // Below snd_una.
        let r = s.update(5000, 9000, &[sb(3000, 3500)]);
        assert_eq!(r.dsack, Some(sb(3000, 3500)));
        assert_eq!(s.sacked_bytes(), 0);
        // Inside the second block (RFC 2883 section 4.2 example shape).
        let r = s.update(5000, 9000, &[sb(6000, 6500), sb(6000, 7000)]);
        assert_eq!(
            r,
            UpdateResult {
                new_sacked_bytes: 1000,
                dsack: Some(sb(6000, 6500))
            }
        );
        // Inside a later block too.
        let r = s.update(
            5000,
            9000,
            &[sb(8100, 8200), sb(6000, 7000), sb(8000, 8500)],
        );
        assert_eq!(r.dsack, Some(sb(8100, 8200)));
        assert_eq!(r.new_sacked_bytes, 500);
        // A normal first block is not a D-SACK; only the first block can be one.
        let r = s.update(5000, 9000, &[sb(7500, 7600), sb(4000, 4500)]);
        assert_eq!(
            r,
            UpdateResult {
                new_sacked_bytes: 100,
                dsack: None
            }
        );
    }

    #[test]
    fn invalid_blocks_ignored() {
        let mut s = SackScoreboard::new(8);
        let bad = [
            sb(6000, 6000),               // empty
            sb(7000, 6000),               // reversed
            sb(8500, 9500),               // beyond snd_max
            sb(4000, 6000),               // straddles snd_una (not first: not a D-SACK)
            sb(0x9000_0000, 0x9000_0100), // far away
        ];
        let r = s.update(
            5000,
            9000,
            &[sb(6000, 6100)]
                .iter()
                .chain(&bad)
                .copied()
                .collect::<Vec<_>>(),
        );
        assert_eq!(
            r,
            UpdateResult {
                new_sacked_bytes: 100,
                dsack: None
            }
        );
        assert_eq!(s.sacked().collect::<Vec<_>>(), [sb(6000, 6100)]);
        // Edges are inclusive: [snd_una, snd_max] itself is valid.
        let r = s.update(5000, 9000, &[sb(8000, 9000)]);
        assert_eq!(r.new_sacked_bytes, 1000);
    }

    #[test]
    fn maxholes_bound() {
        let mut s = SackScoreboard::new(2);
        s.update(0, 1000, &[sb(100, 200), sb(300, 400), sb(500, 600)]);
        assert_eq!(s.sacked().count(), 2);
        assert_eq!(s.sacked_bytes(), 200);
        // Merging needs no new range.
        let r = s.update(0, 1000, &[sb(200, 300)]);
        assert_eq!(r.new_sacked_bytes, 100);
        let r = s.update(0, 1000, &[sb(500, 600)]);
        assert_eq!(r.new_sacked_bytes, 100);
        assert_eq!(holes(&s), [(0, 100), (400, 500)]);
        s.clear();
        assert_eq!(
            (s.sacked_bytes(), s.highest_sack(), s.holes().count()),
            (0, None, 0)
        );
    }

    #[test]
    fn rescue_segment_shape() {
        let mut s = SackScoreboard::new(8);
        // Tail un-SACKed: rescue the last smss bytes before snd_max.
        s.update(0, 5000, &[sb(1000, 2000)]);
        assert_eq!(s.rescue_seg(0, 5000, 1000), Some((4000, 1000)));
        // Everything above the hole SACKed: rescue the end of the highest hole only.
        s.update(0, 5000, &[sb(2500, 5000)]);
        assert_eq!(s.rescue_seg(0, 5000, 1000), Some((2000, 500)));
        s.update(0, 5000, &[sb(0, 1000), sb(2000, 2500)]);
        assert_eq!(s.rescue_seg(0, 5000, 1000), None);
        assert_eq!(s.next_seg(0, 5000, 0, 0), None);
    }

    // Brute-force RFC 6675 over a byte set (offsets from snd_una).
    fn bf_lost(m: &BTreeSet<u32>, x: u32, dt: u32, smss: u32) -> bool {
        let above: Vec<u32> = m.range(x + 1..).copied().collect();
        let runs = above
            .iter()
            .enumerate()
            .filter(|&(i, &v)| i == 0 || above[i - 1] + 1 != v)
            .count();
        runs as u32 >= dt || above.len() as u64 > (dt.saturating_sub(1) as u64) * smss as u64
    }

    fn unsacked_run(m: &BTreeSet<u32>, from: u32, smss: u32) -> u32 {
        (from..)
            .take_while(|x| !m.contains(x))
            .take(smss as usize)
            .count() as u32
    }

    #[derive(Debug, Clone)]
    enum Op {
        Sack(Vec<(i64, u32)>),
        Ack(u32),
        Send(u32),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            5 => proptest::collection::vec((-50i64..350, 0u32..80), 0..5).prop_map(Op::Sack),
            1 => (0u32..120).prop_map(Op::Ack),
            1 => (0u32..150).prop_map(Op::Send),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]
        #[test]
        fn invariants_and_model(
            base in prop_oneof![Just(u32::MAX - 200), any::<u32>()],
            maxholes in prop_oneof![Just(1000usize), 1usize..4],
            ops in proptest::collection::vec(op(), 1..40),
            high_rxt_off in 0u32..300,
            smss in 1u32..40,
        ) {
            let mut s = SackScoreboard::new(maxholes);
            let (mut una, mut max) = (0u64, 200u64); // offsets from base
            let mut m: BTreeSet<u64> = BTreeSet::new();
            let seq = |x: u64| base.wrapping_add(x as u32);
            for op in ops {
                match op {
                    Op::Ack(k) => {
                        una = (una + k as u64).min(max);
                        m = m.split_off(&una);
                        s.on_cumack(seq(una));
                    }
                    Op::Send(k) => max += k as u64,
                    Op::Sack(v) => {
                        let blocks: Vec<SackBlock> = v.iter().map(|&(o, l)| {
                            let st = una as i64 + o;
                            sb(seq(st as u64), seq((st + l as i64) as u64))
                        }).collect();
                        let before = m.len();
                        let r = s.update(seq(una), seq(max), &blocks);
                        let mut rest = &v[..];
                        if r.dsack.is_some() {
                            prop_assert_eq!(r.dsack, blocks.first().copied());
                            rest = &v[1..];
                        }
                        if maxholes == 1000 {
                            for &(o, l) in rest {
                                let st = una as i64 + o;
                                if l > 0 && o >= 0 && st + l as i64 <= max as i64 {
                                    m.extend(st as u64..(st + l as i64) as u64);
                                }
                            }
                            prop_assert_eq!(r.new_sacked_bytes as usize, m.len() - before);
                        }
                    }
                }
                // Invariants.
                let ranges: Vec<SackBlock> = s.sacked().collect();
                prop_assert!(ranges.len() <= maxholes);
                let mut prev_end: Option<u32> = None;
                let mut sum = 0u32;
                for b in &ranges {
                    prop_assert!(seq_lt(b.start, b.end));
                    prop_assert!(seq_geq(b.start, seq(una)) && seq_leq(b.end, seq(max)));
                    if let Some(pe) = prev_end {
                        prop_assert!(seq_lt(pe, b.start), "ranges must be disjoint, non-adjacent");
                    }
                    prev_end = Some(b.end);
                    sum += b.end.wrapping_sub(b.start);
                }
                prop_assert_eq!(s.sacked_bytes(), sum);
                prop_assert_eq!(s.highest_sack(), prev_end);
                if maxholes == 1000 {
                    let got: BTreeSet<u64> = ranges.iter()
                        .flat_map(|b| { let o = b.start.wrapping_sub(base) as u64; o..o + b.end.wrapping_sub(b.start) as u64 })
                        .collect();
                    prop_assert_eq!(&got, &m);
                }
            }

            // RFC 6675 functions against a brute-force octet model of the final state.
            let (u, mx) = (seq(una), seq(max));
            let set: BTreeSet<u32> = s.sacked()
                .flat_map(|b| { let o = b.start.wrapping_sub(u); o..o + b.end.wrapping_sub(b.start) })
                .collect();
            let n = (max - una) as u32;
            let hr = high_rxt_off.min(n);
            let hi = set.iter().next_back().map_or(0, |x| x + 1);
            let mut pipe = 0;
            for x in (0..n).filter(|x| !set.contains(x)) {
                let lost = bf_lost(&set, x, DUPTHRESH, smss);
                prop_assert_eq!(s.is_lost(u.wrapping_add(x), DUPTHRESH, smss), lost);
                pipe += (!lost) as u32 + (x < hr) as u32;
            }
            prop_assert_eq!(s.pipe(u, mx, u.wrapping_add(high_rxt_off), smss), pipe);
            let cands = || (hr..hi).filter(|x| !set.contains(x));
            let want = cands().find(|&x| bf_lost(&set, x, DUPTHRESH, smss)).map(|x| (x, false))
                .or(cands().next().map(|x| (x, true)))
                .map(|(x, f)| (u.wrapping_add(x), unsacked_run(&set, x, smss), f));
            prop_assert_eq!(s.next_seg(u, mx, u.wrapping_add(high_rxt_off), smss), want);
            let want = (0..n).rev().find(|x| !set.contains(x)).map(|h| {
                let len = (0..=h).rev().take_while(|x| !set.contains(x)).take(smss as usize).count() as u32;
                (u.wrapping_add(h + 1 - len), len)
            });
            prop_assert_eq!(s.rescue_seg(u, mx, smss), want);
        }
    }
}
