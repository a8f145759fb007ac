//! Hierarchical timer wheel over virtual time.
//!
//! One wheel per worker holds every connection's timers (retransmit, persist,
//! keepalive, 2MSL, delayed ACK, stack-private ones). Time is `u64`
//! nanoseconds on the caller's virtual clock.
//!
//! Design: `LEVELS` levels of 64 slots; a level-`L` slot spans `64^L` ticks.
//! Eleven levels cover the whole `u64` tick space, so there is no overflow
//! list and any deadline (past, 8 hours, `u64::MAX`) is placed directly.
//! Entries live in a slab with a free list and are threaded on intrusive
//! doubly linked lists per slot, so steady-state `schedule`/`cancel` never
//! allocate. A `u64` occupancy bitmap per level finds the earliest non-empty
//! slot with one `trailing_zeros` per level.
//!
//! Firing is exact: `advance(now)` fires precisely the timers whose deadline
//! is `<= now` (never early, never late relative to the `now` it is given), in
//! deadline order, ties in schedule order. The tick only bounds how coarse
//! the slots are, i.e. how much sorting happens at fire time; a host that
//! calls `advance` once per tick sees timers at most one tick late.

use plugtcp_abi::Errno;
use std::cell::Cell;
use std::fmt;

const LEVEL_BITS: u32 = 6;
const SLOTS: usize = 1 << LEVEL_BITS;
const SLOT_MASK: u64 = (SLOTS as u64) - 1;
/// 11 * 6 = 66 bits >= 64: every tick value has a level.
const LEVELS: usize = 11;
const NIL: u32 = u32::MAX;
/// `Entry::level` value marking a free slab entry.
const FREE: u8 = u8::MAX;

/// Handle to a scheduled timer. Carries the slab index and a generation so a
/// stale id (timer already fired or cancelled, entry reused) is recognised.
/// Generations wrap after 2^32 reuses of one entry.
#[derive(Copy, Clone, PartialEq, Eq, Hash, Debug)]
pub struct TimerId(u64);

impl TimerId {
    fn new(index: u32, generation: u32) -> Self {
        TimerId((u64::from(generation) << 32) | u64::from(index))
    }
    fn index(self) -> usize {
        (self.0 & 0xffff_ffff) as usize
    }
    fn generation(self) -> u32 {
        (self.0 >> 32) as u32
    }
    /// Opaque integer form, e.g. to hand across the plugin ABI.
    pub fn to_raw(self) -> u64 {
        self.0
    }
    /// Inverse of [`TimerId::to_raw`]. Any value is safe to pass to the wheel:
    /// a bogus id is simply not found.
    pub fn from_raw(raw: u64) -> Self {
        TimerId(raw)
    }
}

struct Entry {
    deadline: u64,
    token: u64,
    /// Schedule order, to break deadline ties FIFO.
    seq: u64,
    prev: u32,
    /// Next in slot list, or next free entry when free.
    next: u32,
    generation: u32,
    level: u8,
    slot: u8,
}

/// Hierarchical timer wheel; see the module docs.
pub struct TimerWheel {
    tick_ns: u64,
    /// Latest `now` seen; `advance` never moves backwards.
    now: u64,
    /// Current tick. Invariant: every entry at level `L > 0` shares the tick
    /// bits above `6(L+1)` with `elapsed` and has a level-`L` digit strictly
    /// greater than `elapsed`'s; level-0 entries share the bits above 6 and
    /// have a digit `>=`. Hence the lowest occupied slot of the lowest
    /// non-empty level holds the earliest deadlines.
    elapsed: u64,
    entries: Vec<Entry>,
    free_head: u32,
    len: usize,
    seq: u64,
    heads: [[u32; SLOTS]; LEVELS],
    occupied: [u64; LEVELS],
    /// Reused buffer of (deadline, seq, index) to sort one slot's expiries.
    scratch: Vec<(u64, u64, u32)>,
    /// Memoised earliest deadline (valid only while `len > 0`); `None` means
    /// unknown. Makes repeated `next_deadline` calls O(1).
    min_cache: Cell<Option<u64>>,
}

impl fmt::Debug for TimerWheel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TimerWheel")
            .field("tick_ns", &self.tick_ns)
            .field("now", &self.now)
            .field("len", &self.len)
            .field("slab", &self.entries.len())
            .finish()
    }
}

impl TimerWheel {
    /// A wheel whose clock starts at `now`. `tick_ns` is the slot width
    /// (the host uses 10 µs); `EINVAL` if it is zero.
    pub fn new(now: u64, tick_ns: u64) -> Result<Self, Errno> {
        if tick_ns == 0 {
            return Err(Errno::EINVAL);
        }
        Ok(TimerWheel {
            tick_ns,
            now,
            elapsed: now / tick_ns,
            entries: Vec::new(),
            free_head: NIL,
            len: 0,
            seq: 0,
            heads: [[NIL; SLOTS]; LEVELS],
            occupied: [0; LEVELS],
            scratch: Vec::new(),
            min_cache: Cell::new(None),
        })
    }

    /// Number of pending timers.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The latest `now` passed to `new`/`advance`/`expire`.
    pub fn now(&self) -> u64 {
        self.now
    }

    pub fn tick_ns(&self) -> u64 {
        self.tick_ns
    }

    /// Slab entries ever allocated (live + free); bounded by the peak number
    /// of simultaneously pending timers.
    pub fn slab_len(&self) -> usize {
        self.entries.len()
    }

    /// Schedule `token` to fire at `deadline`. A deadline `<= now` fires on
    /// the next `advance`. O(1); allocates only when the slab grows past its
    /// previous peak.
    pub fn schedule(&mut self, deadline: u64, token: u64) -> TimerId {
        let seq = self.seq;
        self.seq += 1;
        let idx = if self.free_head != NIL {
            let idx = self.free_head;
            let e = &mut self.entries[idx as usize];
            self.free_head = e.next;
            e.deadline = deadline;
            e.token = token;
            e.seq = seq;
            idx
        } else {
            // 2^32 entries would need > 150 GiB; the allocator fails first.
            let idx = self.entries.len() as u32;
            self.entries.push(Entry {
                deadline,
                token,
                seq,
                prev: NIL,
                next: NIL,
                generation: 0,
                level: FREE,
                slot: 0,
            });
            idx
        };
        self.link(idx);
        self.note_added(deadline);
        self.len += 1;
        TimerId::new(idx, self.entries[idx as usize].generation)
    }

    /// Cancel a pending timer. O(1). `false` if `id` already fired, was
    /// cancelled, or never existed.
    pub fn cancel(&mut self, id: TimerId) -> bool {
        let Some(idx) = self.live_index(id) else {
            return false;
        };
        let deadline = self.entries[idx as usize].deadline;
        self.unlink(idx);
        self.note_removed(deadline);
        self.release(idx);
        self.len -= 1;
        true
    }

    /// Move a pending timer to `deadline` in place; `id` stays valid. O(1).
    /// `false` (and nothing changes) if `id` is not pending.
    pub fn reschedule(&mut self, id: TimerId, deadline: u64) -> bool {
        let Some(idx) = self.live_index(id) else {
            return false;
        };
        let old = self.entries[idx as usize].deadline;
        self.unlink(idx);
        self.note_removed(old);
        let seq = self.seq;
        self.seq += 1;
        let e = &mut self.entries[idx as usize];
        e.deadline = deadline;
        e.seq = seq;
        self.link(idx);
        self.note_added(deadline);
        true
    }

    /// `(deadline, token)` of a pending timer.
    pub fn get(&self, id: TimerId) -> Option<(u64, u64)> {
        self.live_index(id).map(|i| {
            let e = &self.entries[i as usize];
            (e.deadline, e.token)
        })
    }

    /// Earliest pending deadline (may be `< now` for a timer scheduled in
    /// the past). Cost: a bitmap scan plus, on a cache miss, a walk of the one
    /// earliest slot; the result is memoised until it can change.
    pub fn next_deadline(&self) -> Option<u64> {
        if self.len == 0 {
            return None;
        }
        if let Some(d) = self.min_cache.get() {
            return Some(d);
        }
        let (level, slot, _) = self.earliest_slot()?;
        let mut i = self.heads[level][slot];
        let mut min = u64::MAX;
        while i != NIL {
            let e = &self.entries[i as usize];
            min = min.min(e.deadline);
            i = e.next;
        }
        self.min_cache.set(Some(min));
        Some(min)
    }

    /// Advance the clock to `now` (a smaller `now` than before is treated as
    /// the previous one) and call `fire(token, deadline)` for every timer with
    /// `deadline <= now`, in deadline order (ties: schedule order). Fired ids
    /// become stale before `fire` is called. The callback cannot touch the
    /// wheel (it is mutably borrowed); to schedule from a callback, collect
    /// first with [`TimerWheel::expire`].
    pub fn advance(&mut self, now: u64, mut fire: impl FnMut(u64, u64)) {
        self.advance_ids(now, |token, deadline, _| fire(token, deadline));
    }

    /// As [`TimerWheel::advance`], with the (now stale) id each timer had.
    fn advance_ids(&mut self, now: u64, mut fire: impl FnMut(u64, u64, TimerId)) {
        let now = now.max(self.now);
        self.now = now;
        let now_tick = now / self.tick_ns;
        while let Some((level, slot, start)) = self.earliest_slot() {
            if start > now_tick {
                break;
            }
            // `start >= elapsed` by the invariant, so this moves forward.
            self.elapsed = start;
            if level == 0 {
                self.fire_slot(slot, now, &mut fire);
                if start == now_tick {
                    // Entries left in this slot are due later in this tick.
                    break;
                }
            } else {
                self.cascade(level, slot);
            }
        }
        // All remaining slots start after `now_tick`, so the invariant holds
        // for the new `elapsed` (it keeps every slot's prefix and digit order).
        if now_tick > self.elapsed {
            self.elapsed = now_tick;
        }
    }

    /// Like [`TimerWheel::advance`], appending `(token, deadline)` to `out`.
    pub fn expire(&mut self, now: u64, out: &mut Vec<(u64, u64)>) {
        self.advance(now, |token, deadline| out.push((token, deadline)));
    }

    /// Like [`TimerWheel::expire`], appending `(token, id)`: the id the timer was scheduled
    /// under, so that a caller who delivers the timers one by one can tell whether an
    /// earlier delivery cancelled or re-armed a later one (its owner no longer holds the id).
    pub fn expire_ids(&mut self, now: u64, out: &mut Vec<(u64, TimerId)>) {
        self.advance_ids(now, |token, _, id| out.push((token, id)));
    }

    fn live_index(&self, id: TimerId) -> Option<u32> {
        let e = self.entries.get(id.index())?;
        (e.level != FREE && e.generation == id.generation()).then_some(id.index() as u32)
    }

    fn note_added(&self, deadline: u64) {
        if self.len == 0 {
            self.min_cache.set(Some(deadline));
        } else if let Some(m) = self.min_cache.get() {
            self.min_cache.set(Some(m.min(deadline)));
        }
    }

    fn note_removed(&self, deadline: u64) {
        if self.min_cache.get() == Some(deadline) {
            self.min_cache.set(None);
        }
    }

    /// Level and slot for a deadline tick relative to `elapsed`.
    fn place(&self, tick: u64) -> (usize, usize) {
        // Past deadlines go to the current slot: they fire on next advance.
        let t = tick.max(self.elapsed);
        let diff = t ^ self.elapsed;
        let level = if diff == 0 {
            0
        } else {
            (63 - diff.leading_zeros()) / LEVEL_BITS
        };
        let slot = (t >> (level * LEVEL_BITS)) & SLOT_MASK;
        (level as usize, slot as usize)
    }

    fn link(&mut self, idx: u32) {
        let (level, slot) = self.place(self.entries[idx as usize].deadline / self.tick_ns);
        let head = self.heads[level][slot];
        if head != NIL {
            self.entries[head as usize].prev = idx;
        }
        let e = &mut self.entries[idx as usize];
        e.prev = NIL;
        e.next = head;
        e.level = level as u8;
        e.slot = slot as u8;
        self.heads[level][slot] = idx;
        self.occupied[level] |= 1 << slot;
    }

    fn unlink(&mut self, idx: u32) {
        let e = &self.entries[idx as usize];
        let (prev, next, level, slot) = (e.prev, e.next, e.level as usize, e.slot as usize);
        if prev == NIL {
            self.heads[level][slot] = next;
            if next == NIL {
                self.occupied[level] &= !(1 << slot);
            }
        } else {
            self.entries[prev as usize].next = next;
        }
        if next != NIL {
            self.entries[next as usize].prev = prev;
        }
    }

    fn release(&mut self, idx: u32) {
        let e = &mut self.entries[idx as usize];
        e.level = FREE;
        e.generation = e.generation.wrapping_add(1);
        e.prev = NIL;
        e.next = self.free_head;
        self.free_head = idx;
    }

    /// Lowest non-empty level, its first occupied slot, and that slot's
    /// first tick.
    fn earliest_slot(&self) -> Option<(usize, usize, u64)> {
        let level = self.occupied.iter().position(|&o| o != 0)?;
        let slot = self.occupied[level].trailing_zeros();
        let shift = level as u32 * LEVEL_BITS;
        let above = shift + LEVEL_BITS;
        let prefix = if above >= 64 {
            0
        } else {
            (self.elapsed >> above) << above
        };
        Some((level, slot as usize, prefix | (u64::from(slot) << shift)))
    }

    /// Fire the level-0 slot's entries with `deadline <= now`, sorted.
    fn fire_slot(&mut self, slot: usize, now: u64, fire: &mut impl FnMut(u64, u64, TimerId)) {
        let mut due = std::mem::take(&mut self.scratch);
        let mut i = self.heads[0][slot];
        while i != NIL {
            let e = &self.entries[i as usize];
            let next = e.next;
            if e.deadline <= now {
                due.push((e.deadline, e.seq, i));
                self.unlink(i);
            }
            i = next;
        }
        if !due.is_empty() {
            self.min_cache.set(None);
        }
        due.sort_unstable();
        for &(deadline, _, idx) in &due {
            let e = &self.entries[idx as usize];
            let (token, id) = (e.token, TimerId::new(idx, e.generation));
            self.release(idx);
            self.len -= 1;
            fire(token, deadline, id);
        }
        due.clear();
        self.scratch = due;
    }

    /// Re-place every entry of a higher-level slot relative to the new
    /// `elapsed` (the slot's start); they land on lower levels.
    fn cascade(&mut self, level: usize, slot: usize) {
        let mut i = self.heads[level][slot];
        self.heads[level][slot] = NIL;
        self.occupied[level] &= !(1 << slot);
        while i != NIL {
            let next = self.entries[i as usize].next;
            self.link(i);
            i = next;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::{BTreeMap, HashMap};

    const TICK: u64 = 10_000;

    fn wheel(now: u64) -> TimerWheel {
        TimerWheel::new(now, TICK).unwrap()
    }

    #[test]
    fn zero_tick_is_einval() {
        assert_eq!(TimerWheel::new(0, 0).unwrap_err(), Errno::EINVAL);
    }

    #[test]
    fn fires_in_deadline_order_never_early() {
        let mut w = wheel(0);
        for (i, d) in [50_000u64, 5, 12_345, 12_345, 999_999_999, 10_000]
            .into_iter()
            .enumerate()
        {
            w.schedule(d, i as u64);
        }
        let mut out = Vec::new();
        w.expire(12_344, &mut out);
        assert_eq!(out, vec![(1, 5), (5, 10_000)]);
        out.clear();
        w.expire(12_345, &mut out);
        // Ties fire in schedule order.
        assert_eq!(out, vec![(2, 12_345), (3, 12_345)]);
        out.clear();
        w.expire(999_999_998, &mut out);
        assert_eq!(out, vec![(0, 50_000)]);
        out.clear();
        w.expire(999_999_999, &mut out);
        assert_eq!(out, vec![(4, 999_999_999)]);
        assert!(w.is_empty());
    }

    #[test]
    fn cancel_after_fire_and_stale_id_after_reuse() {
        let mut w = wheel(0);
        let a = w.schedule(100, 1);
        let mut out = Vec::new();
        w.expire(100, &mut out);
        assert_eq!(out, vec![(1, 100)]);
        assert!(!w.cancel(a));
        // The freed entry is reused; the old id must not reach the new timer.
        let b = w.schedule(500, 2);
        assert_eq!(a.index(), b.index());
        assert_ne!(a, b);
        assert!(!w.cancel(a));
        assert!(!w.reschedule(a, 1));
        assert_eq!(w.get(a), None);
        assert_eq!(w.get(b), Some((500, 2)));
        assert!(w.cancel(b));
        assert!(!w.cancel(b));
        assert!(!w.cancel(TimerId::from_raw(u64::MAX)));
        assert!(w.is_empty());
    }

    #[test]
    fn past_deadline_fires_on_next_advance() {
        let mut w = wheel(1_000_000);
        w.schedule(3, 7);
        assert_eq!(w.next_deadline(), Some(3));
        let mut out = Vec::new();
        // Even an advance with an older `now` fires it.
        w.expire(0, &mut out);
        assert_eq!(out, vec![(7, 3)]);
        assert_eq!(w.now(), 1_000_000);
    }

    #[test]
    fn far_future_cascades() {
        let hour = 3_600_000_000_000u64;
        let mut w = wheel(5);
        let ids: Vec<_> = [2 * hour, 8 * hour, 8 * hour + 1, u64::MAX, hour / 3]
            .into_iter()
            .map(|d| w.schedule(d, d))
            .collect();
        assert_eq!(w.next_deadline(), Some(hour / 3));
        let mut out = Vec::new();
        w.expire(2 * hour - 1, &mut out);
        assert_eq!(out, vec![(hour / 3, hour / 3)]);
        out.clear();
        assert_eq!(w.next_deadline(), Some(2 * hour));
        w.expire(2 * hour, &mut out);
        assert_eq!(out, vec![(2 * hour, 2 * hour)]);
        out.clear();
        w.expire(8 * hour, &mut out);
        assert_eq!(out, vec![(8 * hour, 8 * hour)]);
        out.clear();
        assert_eq!(w.next_deadline(), Some(8 * hour + 1));
        assert!(w.reschedule(ids[2], 9 * hour));
        assert_eq!(w.next_deadline(), Some(9 * hour));
        w.expire(u64::MAX - 1, &mut out);
        assert_eq!(out, vec![(8 * hour + 1, 9 * hour)]);
        out.clear();
        w.expire(u64::MAX, &mut out);
        assert_eq!(out, vec![(u64::MAX, u64::MAX)]);
        assert!(w.is_empty());
        assert_eq!(w.next_deadline(), None);
    }

    #[test]
    fn simulator_jumps_to_next_deadline() {
        let mut w = wheel(0);
        let ds = [7u64, 640_001, 41_000_000, 2_621_440_000, 5_000_000_000_000];
        for &d in ds.iter().rev() {
            w.schedule(d, d);
        }
        let mut out = Vec::new();
        for &d in &ds {
            let next = w.next_deadline().unwrap();
            assert_eq!(next, d);
            w.expire(next, &mut out);
            assert_eq!(out, vec![(d, d)]);
            out.clear();
        }
        assert_eq!(w.next_deadline(), None);
    }

    #[test]
    fn million_schedule_cancel_pairs_reuse_slab() {
        let mut w = wheel(0);
        let keep: Vec<_> = (0..10).map(|i| w.schedule(1_000_000 + i, i)).collect();
        for i in 0..1_000_000u64 {
            let id = w.schedule(i.wrapping_mul(7919) % 100_000_000_000, i);
            assert!(w.cancel(id));
        }
        assert_eq!(w.len(), 10);
        assert_eq!(w.slab_len(), 11);
        for id in keep {
            assert!(w.cancel(id));
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        Schedule { rel: i64 },
        Cancel(usize),
        Reschedule(usize, i64),
        Advance(u64),
        AdvanceToNext,
    }

    fn rel_strategy() -> impl Strategy<Value = i64> {
        prop_oneof![
            -50_000i64..50_000,
            0i64..5_000_000,
            0i64..10_000_000_000,
            0i64..40_000_000_000_000,
        ]
    }

    fn op_strategy() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => rel_strategy().prop_map(|rel| Op::Schedule { rel }),
            2 => any::<usize>().prop_map(Op::Cancel),
            1 => (any::<usize>(), rel_strategy()).prop_map(|(i, r)| Op::Reschedule(i, r)),
            2 => prop_oneof![0u64..30_000, 0u64..100_000_000, 0u64..20_000_000_000_000]
                .prop_map(Op::Advance),
            1 => Just(Op::AdvanceToNext),
        ]
    }

    proptest! {
        #[test]
        fn matches_btreemap_model(
            tick in prop_oneof![Just(1u64), Just(7), Just(10_000), Just(1_000_000)],
            start in 0u64..1_000_000_000,
            ops in proptest::collection::vec(op_strategy(), 1..200),
        ) {
            let mut w = TimerWheel::new(start, tick).unwrap();
            // (deadline, seq) -> token; ids issued, with their model key.
            let mut model: BTreeMap<(u64, u64), u64> = BTreeMap::new();
            let mut keys: HashMap<TimerId, (u64, u64)> = HashMap::new();
            let mut issued: Vec<TimerId> = Vec::new();
            let mut seq = 0u64;
            let mut now = start;
            let mut peak = 0usize;
            let mut out = Vec::new();
            for op in ops {
                match op {
                    Op::Schedule { rel } => {
                        let d = now.saturating_add_signed(rel);
                        let id = w.schedule(d, seq);
                        model.insert((d, seq), seq);
                        keys.insert(id, (d, seq));
                        issued.push(id);
                        seq += 1;
                    }
                    Op::Cancel(i) if !issued.is_empty() => {
                        let id = issued[i % issued.len()];
                        let expect = keys.remove(&id).map(|k| model.remove(&k)).is_some();
                        prop_assert_eq!(w.cancel(id), expect);
                    }
                    Op::Reschedule(i, rel) if !issued.is_empty() => {
                        let id = issued[i % issued.len()];
                        let d = now.saturating_add_signed(rel);
                        let pending = keys.contains_key(&id);
                        prop_assert_eq!(w.reschedule(id, d), pending);
                        if let Some(k) = keys.remove(&id) {
                            let token = model.remove(&k).unwrap();
                            model.insert((d, seq), token);
                            keys.insert(id, (d, seq));
                            seq += 1;
                        }
                    }
                    Op::Cancel(_) | Op::Reschedule(..) => {}
                    Op::Advance(_) | Op::AdvanceToNext => {
                        now = match op {
                            Op::Advance(dt) => now.saturating_add(dt),
                            _ => w.next_deadline().unwrap_or(now).max(now),
                        };
                        out.clear();
                        w.expire(now, &mut out);
                        let mut expect = Vec::new();
                        while let Some((&(d, s), &t)) = model.first_key_value() {
                            if d > now { break; }
                            model.remove(&(d, s));
                            expect.push((t, d));
                        }
                        keys.retain(|_, k| model.contains_key(k));
                        // Exact set, exact order: never early, never late.
                        prop_assert_eq!(&out, &expect);
                    }
                }
                prop_assert_eq!(w.len(), model.len());
                prop_assert_eq!(w.next_deadline(), model.keys().next().map(|k| k.0));
                // The slab grows only when no entry is free, so its size is
                // the peak number of pending timers.
                peak = peak.max(model.len());
                prop_assert_eq!(w.slab_len(), peak);
            }
        }
    }
}
