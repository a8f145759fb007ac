//! A simulated network link driven by a virtual clock.
//!
//! Packets are raw IP packets (IPv4 or IPv6, no link-layer header). A [`SimLink`] has two
//! independent directions, each a [`SimPipe`]. A pipe models, in order:
//!
//! 1. Bernoulli loss (a lost packet takes no queue space),
//! 2. a FIFO bottleneck queue with optional tail-drop byte limit and ECN CE marking,
//! 3. a serializer at `bandwidth_bps`,
//! 4. propagation delay plus non-reordering jitter, optional reordering extra delay,
//! 5. duplication and single-byte corruption.
//!
//! Queue occupancy at time `now` counts every accepted packet whose serialization has not
//! *finished* by `now` (its departure time is `> now`), including the one on the wire. This
//! matches how a byte-limited pfifo counts backlog and makes a queue limit of one BDP hold exactly
//! one BDP of data including the packet in service.
//!
//! Everything is deterministic given the seed: the module never reads a real clock or OS entropy.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

/// Added to the seed for the b→a pipe so the two directions draw independent streams.
const REVERSE_SEED_XOR: u64 = 0x9e37_79b9_7f4a_7c15;

const NS_PER_SEC: u128 = 1_000_000_000;

/// Parameters of one direction of a simulated link. The default is a perfect link: infinite
/// bandwidth, zero delay, no loss, no impairments.
#[derive(Clone, Debug)]
pub struct SimLinkConfig {
    /// Bottleneck rate in bits per second; 0 means infinite (no serialization delay).
    pub bandwidth_bps: u64,
    /// One-way propagation delay.
    pub delay_ns: u64,
    /// Extra delay drawn uniformly from `[0, jitter_ns]`. Jitter never reorders packets: a
    /// packet is never delivered before the previous one of the same pipe.
    pub jitter_ns: u64,
    /// Probability that a packet is dropped before it reaches the queue.
    pub loss: f64,
    /// Probability that a packet is delivered twice. The copy arrives one serialization time
    /// after the original; it takes no queue space or serializer time of its own.
    pub duplicate: f64,
    /// Probability that one random byte of a packet is changed.
    pub corrupt: f64,
    /// Probability that a packet gets an extra delay in `[reorder_min_ns, reorder_max_ns]`, so
    /// that later packets overtake it.
    pub reorder: f64,
    pub reorder_min_ns: u64,
    pub reorder_max_ns: u64,
    /// Byte limit of the bottleneck queue; 0 means unlimited. A packet that would make the
    /// queue exceed the limit is tail-dropped.
    pub queue_limit_bytes: usize,
    /// When set, an ECN-capable packet (ECT(0) or ECT(1)) arriving while the queue holds more
    /// than this many bytes is marked CE.
    pub ecn_threshold_bytes: Option<usize>,
    /// Seed of the pipe's random number generator.
    pub seed: u64,
}

impl Default for SimLinkConfig {
    fn default() -> Self {
        SimLinkConfig {
            bandwidth_bps: 0,
            delay_ns: 0,
            jitter_ns: 0,
            loss: 0.0,
            duplicate: 0.0,
            corrupt: 0.0,
            reorder: 0.0,
            reorder_min_ns: 0,
            reorder_max_ns: 0,
            queue_limit_bytes: 0,
            ecn_threshold_bytes: None,
            seed: 0,
        }
    }
}

/// Bandwidth-delay product in bytes for `bandwidth_bps` and a round-trip time `rtt_ns`
/// (saturating at `usize::MAX`). Returns 0 for infinite (0) bandwidth.
pub fn bdp_bytes(bandwidth_bps: u64, rtt_ns: u64) -> usize {
    let bytes = bandwidth_bps as u128 * rtt_ns as u128 / (8 * NS_PER_SEC);
    usize::try_from(bytes).unwrap_or(usize::MAX)
}

impl SimLinkConfig {
    /// A link that delivers every packet at once, unchanged and in order: no bandwidth
    /// limit, delay, jitter, loss, duplication, corruption, reordering, queue or marking.
    pub fn is_perfect(&self) -> bool {
        self.bandwidth_bps == 0
            && self.delay_ns == 0
            && self.jitter_ns == 0
            && self.loss <= 0.0
            && self.duplicate <= 0.0
            && self.corrupt <= 0.0
            && self.reorder <= 0.0
            && self.ecn_threshold_bytes.is_none()
    }
}

impl SimLinkConfig {
    /// A classic bottleneck: rate `bandwidth_bps`, one-way delay `rtt_ns / 2` (so a link used
    /// in both directions has base RTT `rtt_ns`), and a tail-drop queue of one bandwidth-delay
    /// product ([`bdp_bytes`]). Everything else is as in [`Default`]. With `bandwidth_bps == 0`
    /// the BDP is 0, which means an unlimited queue.
    pub fn bdp_queue(bandwidth_bps: u64, rtt_ns: u64) -> Self {
        SimLinkConfig {
            bandwidth_bps,
            delay_ns: rtt_ns / 2,
            queue_limit_bytes: bdp_bytes(bandwidth_bps, rtt_ns),
            ..SimLinkConfig::default()
        }
    }
}

/// What happened to a packet given to [`SimPipe::send`]. Duplication, corruption, reordering
/// and CE marking of a queued packet are counted in [`PipeStats`].
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
pub enum SendOutcome {
    Queued,
    DroppedLoss,
    DroppedQueueFull,
}

/// Counters of one pipe.
#[derive(Clone, Default, Debug, PartialEq, Eq)]
pub struct PipeStats {
    /// Packets given to `send`, whatever happened to them.
    pub sent: u64,
    /// Packets handed out by `poll`, duplicates included.
    pub delivered: u64,
    pub bytes_delivered: u64,
    pub dropped_loss: u64,
    pub dropped_queue: u64,
    pub duplicated: u64,
    pub corrupted: u64,
    pub reordered: u64,
    pub ce_marked: u64,
    /// Largest queue occupancy seen, in bytes, right after accepting a packet.
    pub max_queue_bytes: usize,
    /// Sum over accepted packets of the time each waited in the queue before its
    /// serialization began (ns), and of the bytes queued ahead of it: their means are the
    /// queueing delay and occupancy packets met.
    pub queue_wait_ns_sum: u64,
    pub queue_ahead_bytes_sum: u64,
    /// Accepted packets (the denominator of the sums above).
    pub accepted: u64,
}

impl PipeStats {
    /// Mean queueing delay an accepted packet met (ns).
    pub fn mean_queue_wait_ns(&self) -> u64 {
        self.queue_wait_ns_sum
            .checked_div(self.accepted)
            .unwrap_or(0)
    }

    /// Mean bytes queued ahead of an accepted packet.
    pub fn mean_queue_ahead_bytes(&self) -> u64 {
        self.queue_ahead_bytes_sum
            .checked_div(self.accepted)
            .unwrap_or(0)
    }
}

/// One direction of a simulated link.
pub struct SimPipe {
    cfg: SimLinkConfig,
    rng: Xoshiro256PlusPlus,
    /// Packet buffers, indexed by slot; slots in `free` are reusable, so steady state does not
    /// allocate.
    bufs: Vec<Vec<u8>>,
    free: Vec<usize>,
    /// Pending deliveries keyed by (delivery time, sequence number); the sequence number breaks
    /// ties in send order.
    pending: BinaryHeap<Reverse<(u64, u64, usize)>>,
    seq: u64,
    /// Packets in the bottleneck whose serialization ends after some `now`: (departure, bytes),
    /// in departure order.
    in_queue: VecDeque<(u64, usize)>,
    in_queue_bytes: usize,
    /// Departure time of the last accepted packet (end of its serialization).
    last_departure: u64,
    /// Delivery time of the last packet before reordering extra delay; jitter never goes
    /// below it, which keeps jittered packets in order.
    last_delivery: u64,
    stats: PipeStats,
}

impl SimPipe {
    /// A pipe seeded with `cfg.seed`.
    pub fn new(cfg: SimLinkConfig) -> Self {
        let seed = cfg.seed;
        SimPipe::with_seed(cfg, seed)
    }

    /// A pipe using `seed` instead of `cfg.seed`.
    pub fn with_seed(cfg: SimLinkConfig, seed: u64) -> Self {
        SimPipe {
            cfg,
            rng: Xoshiro256PlusPlus::seed_from_u64(seed),
            bufs: Vec::new(),
            free: Vec::new(),
            pending: BinaryHeap::new(),
            seq: 0,
            in_queue: VecDeque::new(),
            in_queue_bytes: 0,
            last_departure: 0,
            last_delivery: 0,
            stats: PipeStats::default(),
        }
    }

    pub fn config(&self) -> &SimLinkConfig {
        &self.cfg
    }

    /// Changes the parameters from now on. Packets already queued or in flight keep their
    /// computed times; the random stream continues (a changed `cfg.seed` is ignored).
    pub fn set_config(&mut self, cfg: SimLinkConfig) {
        self.cfg = cfg;
    }

    pub fn stats(&self) -> &PipeStats {
        &self.stats
    }

    /// Starts a new span for `max_queue_bytes` (experiments measure after a warm-up).
    pub fn reset_max_queue(&mut self) {
        self.stats.max_queue_bytes = 0;
    }

    /// Bytes in the bottleneck at `now`: accepted packets whose serialization has not finished.
    pub fn queue_bytes(&self, now: u64) -> usize {
        let departed: usize = self
            .in_queue
            .iter()
            .take_while(|&&(dep, _)| dep <= now)
            .map(|&(_, len)| len)
            .sum();
        self.in_queue_bytes - departed
    }

    /// Number of packets waiting for delivery (queued or propagating).
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Earliest pending delivery time, if any.
    pub fn next_delivery(&self) -> Option<u64> {
        self.pending.peek().map(|Reverse((t, _, _))| *t)
    }

    /// Offers a packet to the pipe at time `now`.
    pub fn send(&mut self, now: u64, pkt: &[u8]) -> SendOutcome {
        self.stats.sent += 1;
        if chance(&mut self.rng, self.cfg.loss) {
            self.stats.dropped_loss += 1;
            return SendOutcome::DroppedLoss;
        }

        // Forget packets whose serialization finished; the rest is the queue occupancy.
        while let Some(&(dep, len)) = self.in_queue.front() {
            if dep > now {
                break;
            }
            self.in_queue.pop_front();
            self.in_queue_bytes -= len;
        }
        let backlog = self.in_queue_bytes;
        let limit = self.cfg.queue_limit_bytes;
        if limit != 0 && backlog.saturating_add(pkt.len()) > limit {
            self.stats.dropped_queue += 1;
            return SendOutcome::DroppedQueueFull;
        }

        let slot = self.alloc(pkt);
        let above = self.cfg.ecn_threshold_bytes.is_some_and(|th| backlog > th);
        if above && mark_ce(&mut self.bufs[slot]) {
            self.stats.ce_marked += 1;
        }

        let tx = tx_time_ns(self.cfg.bandwidth_bps, pkt.len());
        let start = now.max(self.last_departure);
        self.stats.queue_wait_ns_sum += start - now;
        self.stats.queue_ahead_bytes_sum += backlog as u64;
        self.stats.accepted += 1;
        let departure = start.saturating_add(tx);
        self.last_departure = departure;
        if departure > now {
            self.in_queue.push_back((departure, pkt.len()));
            self.in_queue_bytes += pkt.len();
        }
        let occupancy = self.queue_bytes(now);
        self.stats.max_queue_bytes = self.stats.max_queue_bytes.max(occupancy);

        let jitter = if self.cfg.jitter_ns > 0 {
            self.rng.random_range(0..=self.cfg.jitter_ns)
        } else {
            0
        };
        let computed = departure
            .saturating_add(self.cfg.delay_ns)
            .saturating_add(jitter);
        let base = computed.max(self.last_delivery);
        self.last_delivery = base;

        let mut deliver_at = base;
        if chance(&mut self.rng, self.cfg.reorder) {
            let lo = self.cfg.reorder_min_ns.min(self.cfg.reorder_max_ns);
            let hi = self.cfg.reorder_min_ns.max(self.cfg.reorder_max_ns);
            deliver_at = base.saturating_add(self.rng.random_range(lo..=hi));
            self.stats.reordered += 1;
        }

        if chance(&mut self.rng, self.cfg.duplicate) {
            // The copy is taken before corruption: like netem, each copy is corrupted
            // independently, and only the original is subject to it here.
            let dup = self.alloc(&[]);
            let mut copy = std::mem::take(&mut self.bufs[dup]);
            copy.extend_from_slice(&self.bufs[slot]);
            self.bufs[dup] = copy;
            let dup_at = deliver_at.saturating_add(tx);
            // Later packets must not overtake the copy through jitter alone (but may overtake
            // it when the original was chosen for reordering).
            self.last_delivery = self.last_delivery.max(base.saturating_add(tx));
            self.stats.duplicated += 1;
            self.schedule(deliver_at, slot);
            self.schedule(dup_at, dup);
        } else {
            self.schedule(deliver_at, slot);
        }

        if !pkt.is_empty() && chance(&mut self.rng, self.cfg.corrupt) {
            let buf = &mut self.bufs[slot];
            let i = self.rng.random_range(0..buf.len());
            // A non-zero XOR guarantees the byte really changes.
            buf[i] ^= self.rng.random_range(1..=255u8);
            self.stats.corrupted += 1;
        }
        SendOutcome::Queued
    }

    /// Delivers every packet due at or before `now`, in delivery-time order (ties in send
    /// order), calling `f` for each. Returns how many were delivered.
    pub fn poll(&mut self, now: u64, mut f: impl FnMut(&[u8])) -> usize {
        let mut n = 0;
        while self.poll_one(now, &mut f) {
            n += 1;
        }
        n
    }

    /// Delivers the earliest packet if it is due at or before `now`. Returns whether one was.
    pub fn poll_one(&mut self, now: u64, f: impl FnOnce(&[u8])) -> bool {
        match self.pending.peek() {
            Some(&Reverse((t, _, slot))) if t <= now => {
                self.pending.pop();
                let buf = &self.bufs[slot];
                self.stats.delivered += 1;
                self.stats.bytes_delivered += buf.len() as u64;
                f(buf);
                self.free.push(slot);
                true
            }
            _ => false,
        }
    }

    /// Takes a free buffer slot (or makes one) and fills it with `pkt`.
    fn alloc(&mut self, pkt: &[u8]) -> usize {
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                self.bufs.push(Vec::new());
                self.bufs.len() - 1
            }
        };
        let buf = &mut self.bufs[slot];
        buf.clear();
        buf.extend_from_slice(pkt);
        slot
    }

    fn schedule(&mut self, at: u64, slot: usize) {
        self.pending.push(Reverse((at, self.seq, slot)));
        self.seq += 1;
    }
}

/// Both directions of a link, sharing one configuration but drawing independent randomness.
pub struct SimLink {
    pub a_to_b: SimPipe,
    pub b_to_a: SimPipe,
}

impl SimLink {
    /// `a_to_b` is seeded with `cfg.seed`, `b_to_a` with `cfg.seed ^ 0x9e37_79b9_7f4a_7c15`.
    pub fn new(cfg: SimLinkConfig) -> Self {
        let seed = cfg.seed;
        SimLink {
            a_to_b: SimPipe::with_seed(cfg.clone(), seed),
            b_to_a: SimPipe::with_seed(cfg, seed ^ REVERSE_SEED_XOR),
        }
    }

    /// Applies `cfg` to both directions (see [`SimPipe::set_config`]).
    pub fn set_config(&mut self, cfg: SimLinkConfig) {
        self.a_to_b.set_config(cfg.clone());
        self.b_to_a.set_config(cfg);
    }

    /// Earliest pending delivery in either direction.
    pub fn next_delivery(&self) -> Option<u64> {
        match (self.a_to_b.next_delivery(), self.b_to_a.next_delivery()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// Serialization time of `len` bytes, rounded up so the link never exceeds its rate.
pub(crate) fn tx_time_ns(bandwidth_bps: u64, len: usize) -> u64 {
    if bandwidth_bps == 0 {
        return 0;
    }
    let bits = len as u128 * 8 * NS_PER_SEC;
    let ns = bits.div_ceil(bandwidth_bps as u128);
    u64::try_from(ns).unwrap_or(u64::MAX)
}

/// A Bernoulli draw that tolerates out-of-range and NaN probabilities instead of panicking.
pub(crate) fn chance(rng: &mut Xoshiro256PlusPlus, p: f64) -> bool {
    if p.is_nan() || p <= 0.0 {
        false
    } else if p >= 1.0 {
        true
    } else {
        rng.random::<f64>() < p
    }
}

const ECN_MASK: u8 = 0b11;
const ECN_CE: u8 = 0b11;

/// Sets the ECN field of an ECT(0)/ECT(1) IP packet to CE, fixing the IPv4 header checksum.
/// Returns whether the packet was marked; non-ECT, already-CE and malformed packets are left
/// alone.
pub(crate) fn mark_ce(pkt: &mut [u8]) -> bool {
    match pkt.first().map(|b| b >> 4) {
        Some(4) => {
            if pkt.len() < 20 {
                return false;
            }
            let ecn = pkt[1] & ECN_MASK;
            if ecn == 0 || ecn == ECN_CE {
                return false;
            }
            let old = u16::from_be_bytes([pkt[0], pkt[1]]);
            pkt[1] |= ECN_CE;
            let new = u16::from_be_bytes([pkt[0], pkt[1]]);
            let hc = u16::from_be_bytes([pkt[10], pkt[11]]);
            // Incremental update as routers do it (RFC 1624 eqn. 3): HC' = ~(~HC + ~m + m').
            let mut sum = u32::from(!hc) + u32::from(!old) + u32::from(new);
            sum = (sum & 0xffff) + (sum >> 16);
            sum = (sum & 0xffff) + (sum >> 16);
            pkt[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
            true
        }
        Some(6) => {
            if pkt.len() < 40 {
                return false;
            }
            // Traffic class spans the low nibble of byte 0 and the high nibble of byte 1;
            // its ECN bits are bits 4..6 of byte 1.
            let ecn = (pkt[1] >> 4) & ECN_MASK;
            if ecn == 0 || ecn == ECN_CE {
                return false;
            }
            pkt[1] |= ECN_CE << 4;
            true
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;
    const US: u64 = 1_000;

    use crate::qdisc::testutil::{ipv4_checksum_ok, set_ipv4_checksum};

    /// An IPv4/UDP-ish packet of `len` bytes (>= 28) carrying `id` in its first payload bytes.
    fn ipv4_pkt(len: usize, id: u32, ecn: u8) -> Vec<u8> {
        let mut p = vec![0u8; len];
        p[0] = 0x45;
        p[1] = 0xb8 | ecn; // DSCP EF, so marking must preserve the DSCP bits.
        p[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        p[4..6].copy_from_slice(&(id as u16).to_be_bytes());
        p[8] = 64;
        p[9] = 17;
        p[12..16].copy_from_slice(&[10, 0, 0, 1]);
        p[16..20].copy_from_slice(&[10, 0, 0, 2]);
        p[20..24].copy_from_slice(&id.to_be_bytes());
        for (i, b) in p[24..].iter_mut().enumerate() {
            *b = i as u8;
        }
        set_ipv4_checksum(&mut p);
        p
    }

    fn ipv6_pkt(len: usize, id: u32, ecn: u8) -> Vec<u8> {
        let mut p = vec![0u8; len];
        // Traffic class 0xb8 | ecn: high nibble in byte 0, low nibble in byte 1's high nibble.
        let tc = 0xb8 | ecn;
        p[0] = 0x60 | (tc >> 4);
        p[1] = (tc << 4) | 0x0a; // Flow label bits that must survive marking.
        p[4..6].copy_from_slice(&((len - 40) as u16).to_be_bytes());
        p[6] = 17;
        p[7] = 64;
        p[40..44].copy_from_slice(&id.to_be_bytes());
        p
    }

    fn id_of(pkt: &[u8]) -> u32 {
        u32::from_be_bytes([pkt[20], pkt[21], pkt[22], pkt[23]])
    }

    /// Runs the pipe to completion, returning (delivery time, packet) in delivery order.
    fn drain(pipe: &mut SimPipe) -> Vec<(u64, Vec<u8>)> {
        let mut out = Vec::new();
        while let Some(t) = pipe.next_delivery() {
            pipe.poll(t, |p| out.push((t, p.to_vec())));
        }
        out
    }

    #[test]
    fn zero_config_delivers_instantly_in_order() {
        let mut pipe = SimPipe::new(SimLinkConfig::default());
        for i in 0..10 {
            assert_eq!(pipe.send(5, &ipv4_pkt(100, i, 0)), SendOutcome::Queued);
        }
        assert_eq!(pipe.next_delivery(), Some(5));
        assert_eq!(pipe.poll(4, |_| panic!("early")), 0);
        let mut ids = Vec::new();
        assert_eq!(pipe.poll(5, |p| ids.push(id_of(p))), 10);
        assert_eq!(ids, (0..10).collect::<Vec<_>>());
        assert_eq!(pipe.next_delivery(), None);
        assert_eq!(pipe.stats().delivered, 10);
        assert_eq!(pipe.stats().bytes_delivered, 1000);
        assert_eq!(pipe.queue_bytes(5), 0);
    }

    #[test]
    fn bandwidth_paces_exactly() {
        let cfg = SimLinkConfig {
            bandwidth_bps: 10_000_000,
            ..Default::default()
        };
        let mut pipe = SimPipe::new(cfg);
        for i in 0..100 {
            assert_eq!(pipe.send(0, &ipv4_pkt(1250, i, 0)), SendOutcome::Queued);
        }
        assert_eq!(pipe.queue_bytes(0), 125_000);
        assert_eq!(pipe.stats().max_queue_bytes, 125_000);
        // After 10.5 ms, ten packets finished serialization.
        assert_eq!(pipe.queue_bytes(10 * MS + MS / 2), 90 * 1250);
        let out = drain(&mut pipe);
        assert_eq!(out.len(), 100);
        for (i, (t, p)) in out.iter().enumerate() {
            assert_eq!(*t, (i as u64 + 1) * MS);
            assert_eq!(id_of(p), i as u32);
        }
    }

    #[test]
    fn idle_link_restarts_pacing_from_now() {
        let cfg = SimLinkConfig {
            bandwidth_bps: 10_000_000,
            delay_ns: 5 * MS,
            ..Default::default()
        };
        let mut pipe = SimPipe::new(cfg);
        pipe.send(0, &ipv4_pkt(1250, 0, 0));
        pipe.send(50 * MS, &ipv4_pkt(1250, 1, 0));
        let times: Vec<u64> = drain(&mut pipe).iter().map(|x| x.0).collect();
        assert_eq!(times, vec![6 * MS, 56 * MS]);
    }

    #[test]
    fn delay_is_applied() {
        let cfg = SimLinkConfig {
            delay_ns: 20 * MS,
            ..Default::default()
        };
        let mut pipe = SimPipe::new(cfg);
        pipe.send(3 * MS, &ipv4_pkt(60, 7, 0));
        assert_eq!(pipe.next_delivery(), Some(23 * MS));
        assert_eq!(pipe.poll(23 * MS - 1, |_| {}), 0);
        assert!(pipe.poll_one(23 * MS, |p| assert_eq!(id_of(p), 7)));
        assert!(!pipe.poll_one(u64::MAX, |_| {}));
    }

    #[test]
    fn queue_limit_tail_drops_exactly() {
        let cfg = SimLinkConfig {
            bandwidth_bps: 10_000_000, // 1 ms per 1250 B packet
            queue_limit_bytes: 5000,
            ..Default::default()
        };
        let mut pipe = SimPipe::new(cfg);
        let outcomes: Vec<_> = (0..10)
            .map(|i| pipe.send(0, &ipv4_pkt(1250, i, 0)))
            .collect();
        assert!(outcomes[..4].iter().all(|o| *o == SendOutcome::Queued));
        assert!(outcomes[4..]
            .iter()
            .all(|o| *o == SendOutcome::DroppedQueueFull));
        assert_eq!(pipe.stats().dropped_queue, 6);
        assert_eq!(pipe.stats().max_queue_bytes, 5000);
        // At 1 ms the first packet has finished serialization: exactly one slot frees up.
        assert_eq!(pipe.send(MS, &ipv4_pkt(1250, 10, 0)), SendOutcome::Queued);
        assert_eq!(
            pipe.send(MS, &ipv4_pkt(1250, 11, 0)),
            SendOutcome::DroppedQueueFull
        );
        // At 2 ms the queue holds 3750 B: a 1250 B packet no longer fits after a 625 B one,
        // so the limit counts bytes, not packets.
        assert_eq!(
            pipe.send(2 * MS, &ipv4_pkt(625, 12, 0)),
            SendOutcome::Queued
        );
        assert_eq!(pipe.queue_bytes(2 * MS), 4375);
        assert_eq!(
            pipe.send(2 * MS, &ipv4_pkt(1250, 13, 0)),
            SendOutcome::DroppedQueueFull
        );
        assert_eq!(pipe.stats().dropped_queue, 8);
        let ids: Vec<u32> = drain(&mut pipe).iter().map(|x| id_of(&x.1)).collect();
        assert_eq!(ids, vec![0, 1, 2, 3, 10, 12]);
    }

    #[test]
    fn bdp_queue_helper() {
        let cfg = SimLinkConfig::bdp_queue(10_000_000, 40 * MS);
        assert_eq!(cfg.queue_limit_bytes, 50_000);
        assert_eq!(cfg.delay_ns, 20 * MS);
        assert_eq!(cfg.bandwidth_bps, 10_000_000);
        assert_eq!(bdp_bytes(u64::MAX, u64::MAX), usize::MAX);
        assert_eq!(SimLinkConfig::bdp_queue(0, 40 * MS).queue_limit_bytes, 0);
    }

    fn loss_pattern(seed: u64, n: usize) -> (Vec<bool>, u64) {
        let cfg = SimLinkConfig {
            loss: 0.1,
            seed,
            ..Default::default()
        };
        let mut pipe = SimPipe::new(cfg);
        let pkt = ipv4_pkt(40, 0, 0);
        let mut pattern = Vec::with_capacity(n);
        for i in 0..n as u64 {
            pattern.push(pipe.send(i, &pkt) == SendOutcome::DroppedLoss);
            pipe.poll(i, |_| {});
        }
        assert_eq!(pipe.stats().sent, n as u64);
        assert_eq!(pipe.stats().delivered + pipe.stats().dropped_loss, n as u64);
        (pattern, pipe.stats().dropped_loss)
    }

    #[test]
    fn loss_rate_and_determinism() {
        let (p1, lost) = loss_pattern(42, 100_000);
        // Binomial(100k, 0.1): sd ~ 95, so +-1000 is > 10 sd.
        assert!((9_000..=11_000).contains(&lost), "lost {lost}");
        let (p2, lost2) = loss_pattern(42, 100_000);
        assert_eq!(p1, p2);
        assert_eq!(lost, lost2);
        let (p3, _) = loss_pattern(43, 100_000);
        assert_ne!(p1, p3);
    }

    #[test]
    fn link_directions_draw_independently() {
        let mut link = SimLink::new(SimLinkConfig {
            loss: 0.5,
            seed: 9,
            ..Default::default()
        });
        let pkt = ipv4_pkt(40, 0, 0);
        let a: Vec<_> = (0..200).map(|t| link.a_to_b.send(t, &pkt)).collect();
        let b: Vec<_> = (0..200).map(|t| link.b_to_a.send(t, &pkt)).collect();
        assert_ne!(a, b);
        assert_eq!(link.next_delivery(), Some(0));
    }

    #[test]
    fn duplication() {
        let cfg = SimLinkConfig {
            duplicate: 1.0,
            bandwidth_bps: 10_000_000,
            ..Default::default()
        };
        let mut pipe = SimPipe::new(cfg);
        for i in 0..5 {
            pipe.send(0, &ipv4_pkt(1250, i, 0));
        }
        let out = drain(&mut pipe);
        assert_eq!(out.len(), 10);
        assert_eq!(pipe.stats().duplicated, 5);
        assert_eq!(pipe.stats().delivered, 10);
        // Copy arrives one serialization time (1 ms) after the original, with equal bytes.
        for i in 0..5u32 {
            let orig = out.iter().position(|x| id_of(&x.1) == i).unwrap();
            let copy = out.iter().rposition(|x| id_of(&x.1) == i).unwrap();
            assert_ne!(orig, copy);
            assert_eq!(out[orig].1, out[copy].1);
            assert_eq!(out[copy].0, out[orig].0 + MS);
        }

        let mut pipe = SimPipe::new(SimLinkConfig {
            duplicate: 0.25,
            seed: 3,
            ..Default::default()
        });
        for i in 0..10_000 {
            pipe.send(i, &ipv4_pkt(40, 0, 0));
            pipe.poll(i, |_| {});
        }
        let d = pipe.stats().duplicated;
        assert!((2_200..=2_800).contains(&d), "duplicated {d}");
        assert_eq!(pipe.stats().delivered, 10_000 + d);
    }

    #[test]
    fn reordering_reorders() {
        let cfg = SimLinkConfig {
            delay_ns: 10 * MS,
            reorder: 0.3,
            reorder_min_ns: 5 * MS,
            reorder_max_ns: 10 * MS,
            seed: 1,
            ..Default::default()
        };
        let mut pipe = SimPipe::new(cfg);
        for i in 0..200u32 {
            pipe.send(u64::from(i) * MS, &ipv4_pkt(100, i, 0));
        }
        let ids: Vec<u32> = drain(&mut pipe).iter().map(|x| id_of(&x.1)).collect();
        assert_eq!(ids.len(), 200);
        let inversions = ids.windows(2).filter(|w| w[0] > w[1]).count();
        assert!(inversions > 10, "inversions {inversions}");
        let r = pipe.stats().reordered;
        assert!((30..=90).contains(&r), "reordered {r}");
    }

    #[test]
    fn jitter_alone_never_reorders() {
        let cfg = SimLinkConfig {
            delay_ns: 10 * MS,
            jitter_ns: 5 * MS,
            bandwidth_bps: 100_000_000,
            duplicate: 0.1,
            seed: 5,
            ..Default::default()
        };
        let mut pipe = SimPipe::new(cfg);
        let mut out = Vec::new();
        for i in 0..2000u32 {
            let now = u64::from(i) * 100 * US;
            pipe.send(now, &ipv4_pkt(500, i, 0));
            pipe.poll(now, |p| out.push(id_of(p)));
        }
        out.extend(drain(&mut pipe).iter().map(|x| id_of(&x.1)));
        assert!(pipe.stats().duplicated > 0);
        assert_eq!(out.len() as u64, 2000 + pipe.stats().duplicated);
        assert!(out.windows(2).all(|w| w[0] <= w[1]), "jitter reordered");
    }

    #[test]
    fn jitter_delays_within_bounds() {
        let cfg = SimLinkConfig {
            delay_ns: 10 * MS,
            jitter_ns: 5 * MS,
            seed: 11,
            ..Default::default()
        };
        let mut pipe = SimPipe::new(cfg);
        // Widely spaced packets so the no-reorder clamp never applies.
        let mut delays = Vec::new();
        for i in 0..200u64 {
            let now = i * 100 * MS;
            pipe.send(now, &ipv4_pkt(100, 0, 0));
            let t = pipe.next_delivery().unwrap();
            assert_eq!(pipe.poll(t, |_| {}), 1);
            delays.push(t - now);
        }
        assert!(delays.iter().all(|d| (10 * MS..=15 * MS).contains(d)));
        assert!(delays.iter().any(|d| *d > 12 * MS) && delays.iter().any(|d| *d < 13 * MS));
    }

    #[test]
    fn ecn_marks_only_ect_ipv4_with_valid_checksum() {
        let cfg = SimLinkConfig {
            bandwidth_bps: 10_000_000,
            ecn_threshold_bytes: Some(2000),
            ..Default::default()
        };
        let mut pipe = SimPipe::new(cfg);
        // Queue before each arrival: 0, 1250, 2500, 3750, ... Marking starts with the third.
        let ecns = [0b10u8, 0b01, 0b10, 0b01, 0b00, 0b11, 0b10];
        for (i, &e) in ecns.iter().enumerate() {
            pipe.send(0, &ipv4_pkt(1250, i as u32, e));
        }
        let out = drain(&mut pipe);
        let got: Vec<u8> = out.iter().map(|x| x.1[1] & 0b11).collect();
        assert_eq!(got, vec![0b10, 0b01, 0b11, 0b11, 0b00, 0b11, 0b11]);
        assert_eq!(pipe.stats().ce_marked, 3);
        for (_, p) in &out {
            assert_eq!(p[1] & 0xfc, 0xb8, "DSCP changed");
            assert!(ipv4_checksum_ok(p), "bad checksum");
            let h = etherparse::Ipv4HeaderSlice::from_slice(p).unwrap();
            assert_eq!(h.header_checksum(), h.to_header().calc_header_checksum());
            assert_eq!(h.ecn().value(), p[1] & 0b11);
        }
    }

    #[test]
    fn ecn_checksum_survives_many_headers() {
        // Exercise the incremental checksum over varied headers, including carries.
        let cfg = SimLinkConfig {
            bandwidth_bps: 1_000_000,
            ecn_threshold_bytes: Some(0),
            ..Default::default()
        };
        let mut pipe = SimPipe::new(cfg);
        for i in 0..3000u32 {
            let mut p = ipv4_pkt(28, i, 0b10);
            p[4..6].copy_from_slice(&(i.wrapping_mul(40_503) as u16).to_be_bytes());
            p[12..16].copy_from_slice(&i.wrapping_mul(2_654_435_761).to_be_bytes());
            p[8] = (i % 256) as u8;
            set_ipv4_checksum(&mut p);
            pipe.send(0, &p);
        }
        let out = drain(&mut pipe);
        assert_eq!(pipe.stats().ce_marked, 2999);
        assert!(out.iter().all(|(_, p)| ipv4_checksum_ok(p)));
    }

    #[test]
    fn ecn_marks_ipv6_traffic_class() {
        let cfg = SimLinkConfig {
            bandwidth_bps: 10_000_000,
            ecn_threshold_bytes: Some(0),
            ..Default::default()
        };
        let mut pipe = SimPipe::new(cfg);
        let ecns = [0b10u8, 0b10, 0b01, 0b00];
        for (i, &e) in ecns.iter().enumerate() {
            pipe.send(0, &ipv6_pkt(1250, i as u32, e));
        }
        let out = drain(&mut pipe);
        let tcs: Vec<u8> = out.iter().map(|(_, p)| (p[0] << 4) | (p[1] >> 4)).collect();
        // The first packet found an empty queue (0 is not > 0).
        assert_eq!(tcs, vec![0xba, 0xbb, 0xbb, 0xb8]);
        assert_eq!(pipe.stats().ce_marked, 2);
        for (_, p) in &out {
            assert_eq!(p[0] >> 4, 6);
            assert_eq!(p[1] & 0x0f, 0x0a, "flow label changed");
            let h = etherparse::Ipv6HeaderSlice::from_slice(p).unwrap();
            assert_eq!(h.traffic_class(), (p[0] << 4) | (p[1] >> 4));
        }
    }

    #[test]
    fn ecn_ignores_malformed_packets() {
        let mut short4 = [0x45u8, 0x02, 0, 0];
        assert!(!mark_ce(&mut short4));
        let mut short6 = [0x60u8, 0x20, 0, 0];
        assert!(!mark_ce(&mut short6));
        assert!(!mark_ce(&mut []));
        let mut junk = [0xffu8; 64];
        assert!(!mark_ce(&mut junk));
    }

    #[test]
    fn corruption_flips_exactly_one_byte() {
        let cfg = SimLinkConfig {
            corrupt: 1.0,
            seed: 7,
            ..Default::default()
        };
        let mut pipe = SimPipe::new(cfg);
        for i in 0..1000u32 {
            let pkt = ipv4_pkt(64 + (i as usize % 100), i, 0);
            pipe.send(u64::from(i), &pkt);
            let mut got = Vec::new();
            assert_eq!(pipe.poll(u64::from(i), |p| got = p.to_vec()), 1);
            assert_eq!(got.len(), pkt.len());
            let diff = got.iter().zip(&pkt).filter(|(a, b)| a != b).count();
            assert_eq!(diff, 1);
        }
        assert_eq!(pipe.stats().corrupted, 1000);
        // An empty packet cannot be corrupted and must not panic.
        assert_eq!(pipe.send(2000, &[]), SendOutcome::Queued);
        assert_eq!(pipe.stats().corrupted, 1000);
    }

    #[test]
    fn odd_probabilities_do_not_panic() {
        let cfg = SimLinkConfig {
            loss: f64::NAN,
            duplicate: -1.0,
            corrupt: 7.0,
            reorder: 1.0,
            reorder_min_ns: 9,
            reorder_max_ns: 3,
            ..Default::default()
        };
        let mut pipe = SimPipe::new(cfg);
        assert_eq!(pipe.send(u64::MAX - 1, &[1, 2, 3]), SendOutcome::Queued);
        assert_eq!(pipe.next_delivery(), Some(u64::MAX));
        assert_eq!(pipe.stats().reordered, 1);
        assert_eq!(pipe.stats().corrupted, 1);
    }

    #[test]
    fn set_config_keeps_queued_packets() {
        let mut pipe = SimPipe::new(SimLinkConfig {
            bandwidth_bps: 10_000_000,
            ..Default::default()
        });
        for i in 0..3 {
            pipe.send(0, &ipv4_pkt(1250, i, 0));
        }
        pipe.set_config(SimLinkConfig {
            loss: 1.0,
            ..Default::default()
        });
        assert_eq!(
            pipe.send(0, &ipv4_pkt(1250, 9, 0)),
            SendOutcome::DroppedLoss
        );
        let times: Vec<u64> = drain(&mut pipe).iter().map(|x| x.0).collect();
        assert_eq!(times, vec![MS, 2 * MS, 3 * MS]);
    }

    #[test]
    fn buffers_are_recycled() {
        let mut pipe = SimPipe::new(SimLinkConfig {
            delay_ns: 10,
            ..Default::default()
        });
        for i in 0..1000u64 {
            pipe.send(i * 100, &ipv4_pkt(1500, 0, 0));
            pipe.poll(i * 100, |_| {});
        }
        // One packet in flight at a time plus the one arriving: two buffers suffice.
        assert!(pipe.bufs.len() <= 2, "{} buffers", pipe.bufs.len());
    }
}
