//! Queue disciplines that decide at dequeue time, modelled on Linux's.
//!
//! [`crate::sim::SimPipe`] computes a packet's departure when it is offered, which is exact for
//! a drop-tail FIFO but cannot express an AQM that drops at dequeue (CoDel) or a scheduler
//! that reorders flows (FQ-CoDel). These qdiscs are driven by a serializer instead
//! ([`crate::shaped::ShapedLink`]): it calls [`Qdisc::enqueue`] when a packet arrives and
//! [`Qdisc::dequeue`] at the exact instant the link is free again.
//!
//! Conventions shared by every qdisc here:
//! - times are `u64` nanoseconds of a virtual clock, non-decreasing across calls;
//! - the backlog counts packets waiting in the qdisc, not the one being serialized (as in
//!   Linux, where that one has left the qdisc);
//! - [`QueueLimit`] is honoured in both packets and bytes;
//! - randomness comes from a `Xoshiro256PlusPlus` seeded by [`build`]'s `seed`; nothing reads a
//!   real clock or OS entropy;
//! - packets are untrusted bytes: short or malformed packets are queued and scheduled like any
//!   other, never cause a panic, and are never ECN-marked.

mod codel;
mod droptail;
mod fq_codel;
mod pie;
mod red;
mod step;

pub use codel::CodelConfig;
pub use fq_codel::FqCodelConfig;
pub use pie::PieConfig;
pub use red::RedConfig;
pub use step::StepConfig;

use crate::sim::mark_ce;

/// One millisecond in nanoseconds.
pub(crate) const MS: u64 = 1_000_000;

/// Linux's `psched_mtu` for Ethernet (1500 + 14): the default "one packet" of CoDel and PIE.
pub const DEFAULT_MTU: usize = 1514;

/// A queued packet.
#[derive(Clone, Debug, Default)]
pub struct QPacket {
    /// A raw IPv4 or IPv6 packet (no link-layer header); may be malformed.
    pub data: Vec<u8>,
    /// The caller's label (e.g. a flow group), carried through unchanged.
    pub tag: u32,
    /// When the packet entered the qdisc; [`Qdisc::enqueue`] sets it to `now`.
    pub enqueued_at: u64,
}

/// A queue discipline. `now` must not decrease from one call to the next.
pub trait Qdisc: Send {
    /// Offers `pkt` at `now`. `Err(pkt)` means it was dropped at enqueue (counted in
    /// [`QdiscStats`]). The qdisc may CE-mark it. A qdisc that makes room by dropping *other*
    /// packets (FQ-CoDel) returns `Ok` even when the arriving packet was among them.
    fn enqueue(&mut self, now: u64, pkt: QPacket) -> Result<(), QPacket>;
    /// The next packet to serialize at `now`. May drop packets on the way (CoDel), counting
    /// them; their buffers are handed out by [`Qdisc::recycle`].
    fn dequeue(&mut self, now: u64) -> Option<QPacket>;
    fn backlog_bytes(&self) -> usize;
    fn backlog_packets(&self) -> usize;
    fn stats(&self) -> &QdiscStats;
    /// Moves the buffers of packets this qdisc dropped by itself (not returned through
    /// `Err`) into `pool` for reuse. Callers that do not care may never call it: a qdisc keeps
    /// at most one buffer per packet it dropped since the last call.
    fn recycle(&mut self, pool: &mut Vec<Vec<u8>>) {
        let _ = pool;
    }
}

/// Counters of a qdisc.
#[derive(Clone, Default, Debug, PartialEq, Eq, serde::Serialize)]
pub struct QdiscStats {
    /// Packets accepted into the queue (the `Ok` results of `enqueue`).
    pub enqueued: u64,
    /// Drops because a limit was reached: the arriving packet (tail drop) or, for FQ-CoDel,
    /// queued packets of the fattest flow.
    pub dropped_overlimit: u64,
    /// Early/AQM drops: RED and PIE at enqueue, CoDel and FQ-CoDel at dequeue.
    pub dropped_aqm: u64,
    /// Packets signalled with CE instead of being dropped (packets that arrived already CE
    /// count too, as in Linux's `INET_ECN_set_ce`).
    pub ce_marked: u64,
    pub dequeued: u64,
    pub bytes_dequeued: u64,
}

/// Size limit of a qdisc; `None` is unlimited. A packet that would make the queue exceed
/// either limit is an overlimit drop. `Some(0)` admits nothing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueLimit {
    pub packets: Option<usize>,
    pub bytes: Option<usize>,
}

impl QueueLimit {
    pub fn packets(n: usize) -> Self {
        QueueLimit {
            packets: Some(n),
            bytes: None,
        }
    }

    pub fn bytes(n: usize) -> Self {
        QueueLimit {
            packets: None,
            bytes: Some(n),
        }
    }

    /// Whether a queue of `qlen` packets and `bytes` bytes can take one more of `len` bytes.
    pub fn admits(&self, qlen: usize, bytes: usize, len: usize) -> bool {
        self.packets.is_none_or_le(qlen.saturating_add(1))
            && self.bytes.is_none_or_le(bytes.saturating_add(len))
    }

    /// Whether a queue of `qlen` packets and `bytes` bytes is over either limit.
    pub fn exceeded(&self, qlen: usize, bytes: usize) -> bool {
        !(self.packets.is_none_or_le(qlen) && self.bytes.is_none_or_le(bytes))
    }
}

/// `Option::is_none_or` is newer than the crate's MSRV.
trait NoneOrLe {
    fn is_none_or_le(&self, v: usize) -> bool;
}

impl NoneOrLe for Option<usize> {
    fn is_none_or_le(&self, v: usize) -> bool {
        match *self {
            None => true,
            Some(limit) => v <= limit,
        }
    }
}

/// Which qdisc to build, with its parameters (defaults are Linux's unless documented).
#[derive(Clone, Debug, Default, PartialEq)]
pub enum QdiscConfig {
    /// A FIFO dropping arrivals that exceed the limit (pfifo/bfifo).
    #[default]
    DropTail,
    Red(RedConfig),
    Codel(CodelConfig),
    FqCodel(FqCodelConfig),
    Pie(PieConfig),
    Step(StepConfig),
}

/// Builds a qdisc. `ecn` makes the AQMs (RED, CoDel, FQ-CoDel, PIE) CE-mark ECN-capable
/// packets instead of dropping them, as Linux's `ecn` option; drop-tail ignores it and Step
/// always marks (marking is its purpose). `seed` feeds the random draws (RED, PIE) and the
/// flow hash (FQ-CoDel).
pub fn build(cfg: &QdiscConfig, limit: QueueLimit, ecn: bool, seed: u64) -> Box<dyn Qdisc> {
    match cfg {
        QdiscConfig::DropTail => Box::new(droptail::DropTail::new(limit)),
        QdiscConfig::Red(c) => Box::new(red::Red::new(c, limit, ecn, seed)),
        QdiscConfig::Codel(c) => Box::new(codel::Codel::new(c, limit, ecn)),
        QdiscConfig::FqCodel(c) => Box::new(fq_codel::FqCodel::new(c, limit, ecn, seed)),
        QdiscConfig::Pie(c) => Box::new(pie::Pie::new(c, limit, ecn, seed)),
        QdiscConfig::Step(c) => {
            Box::new(droptail::DropTail::marking_above(limit, c.threshold_bytes))
        }
    }
}

/// ECN codepoint (0..=3) of an IPv4/IPv6 packet long enough to hold its fixed header.
pub(crate) fn ecn_codepoint(pkt: &[u8]) -> Option<u8> {
    match pkt.first().map(|b| b >> 4) {
        Some(4) if pkt.len() >= 20 => Some(pkt[1] & 0b11),
        Some(6) if pkt.len() >= 40 => Some((pkt[1] >> 4) & 0b11),
        _ => None,
    }
}

/// Linux's `INET_ECN_set_ce`: an ECT packet becomes CE (checksum fixed), a CE packet stays
/// CE; both return true, meaning "congestion signalled without a drop". Not-ECT and
/// malformed packets return false.
pub(crate) fn set_ce(pkt: &mut [u8]) -> bool {
    mark_ce(pkt) || ecn_codepoint(pkt) == Some(0b11)
}

/// A FIFO of packets with its byte count, the building block of every qdisc here.
#[derive(Default)]
pub(crate) struct Fifo {
    q: std::collections::VecDeque<QPacket>,
    bytes: usize,
}

impl Fifo {
    pub(crate) fn push(&mut self, pkt: QPacket) {
        self.bytes += pkt.data.len();
        self.q.push_back(pkt);
    }

    pub(crate) fn pop(&mut self) -> Option<QPacket> {
        let pkt = self.q.pop_front()?;
        self.bytes -= pkt.data.len();
        Some(pkt)
    }

    pub(crate) fn len(&self) -> usize {
        self.q.len()
    }

    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }
}

/// Counts a dequeued packet.
pub(crate) fn count_dequeue(stats: &mut QdiscStats, pkt: &QPacket) {
    stats.dequeued += 1;
    stats.bytes_dequeued += pkt.data.len() as u64;
}

#[cfg(test)]
pub(crate) mod testutil {
    //! Packet builders and small closed-loop traffic models shared by the qdisc tests.
    pub(crate) use super::MS;
    use super::*;

    /// The folded one's-complement sum of the IPv4 header, computed afresh.
    fn header_sum(pkt: &[u8]) -> u16 {
        let ihl = usize::from(pkt[0] & 0x0f) * 4;
        let mut sum: u32 = 0;
        for w in pkt[..ihl].chunks(2) {
            sum += u32::from(u16::from_be_bytes([w[0], w[1]]));
        }
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        sum as u16
    }

    /// Full IPv4 header checksum check, independent of the incremental update.
    pub fn ipv4_checksum_ok(pkt: &[u8]) -> bool {
        header_sum(pkt) == 0xffff
    }

    pub fn set_ipv4_checksum(pkt: &mut [u8]) {
        pkt[10] = 0;
        pkt[11] = 0;
        let sum = header_sum(pkt);
        pkt[10..12].copy_from_slice(&(!sum).to_be_bytes());
    }

    /// An IPv4/UDP packet of `len` bytes (>= 28) from port `sport`, carrying `id` right after
    /// the UDP header (bytes 28..32).
    pub fn udp4(len: usize, sport: u16, id: u32, ecn: u8) -> Vec<u8> {
        let len = len.max(32);
        let mut p = vec![0u8; len];
        p[0] = 0x45;
        p[1] = 0xb8 | ecn;
        p[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        p[4..6].copy_from_slice(&(id as u16).to_be_bytes());
        p[8] = 64;
        p[9] = 17;
        p[12..16].copy_from_slice(&[10, 0, 0, 1]);
        p[16..20].copy_from_slice(&[10, 0, 0, 2]);
        p[20..22].copy_from_slice(&sport.to_be_bytes());
        p[22..24].copy_from_slice(&5201u16.to_be_bytes());
        p[28..32].copy_from_slice(&id.to_be_bytes());
        set_ipv4_checksum(&mut p);
        p
    }

    pub fn id_of(pkt: &[u8]) -> u32 {
        u32::from_be_bytes([pkt[28], pkt[29], pkt[30], pkt[31]])
    }

    pub fn qp(data: Vec<u8>, tag: u32) -> QPacket {
        QPacket {
            data,
            tag,
            enqueued_at: 0,
        }
    }

    pub fn median(v: &mut [u64]) -> u64 {
        if v.is_empty() {
            return 0;
        }
        v.sort_unstable();
        v[v.len() / 2]
    }

    /// Serves `q` at one 1500-byte packet per `service_ns` while an unresponsive source offers
    /// packets of `flows` (tag, size, interval) for `duration`. Returns (dequeue time, tag,
    /// sojourn) of every dequeued packet.
    pub fn open_loop(
        q: &mut dyn Qdisc,
        service_ns: u64,
        flows: &[(u32, usize, u64)],
        duration: u64,
    ) -> Vec<(u64, u32, u64)> {
        let mut next_arrival: Vec<u64> = flows.iter().map(|_| 0).collect();
        let mut busy_until: Option<u64> = None;
        let mut out = Vec::new();
        let mut seq = 0u32;
        loop {
            let (fi, ta) = next_arrival
                .iter()
                .copied()
                .enumerate()
                .min_by_key(|&(_, t)| t)
                .unwrap();
            let ts = busy_until.unwrap_or(u64::MAX);
            let t = ta.min(ts);
            if t >= duration {
                break;
            }
            if ts <= ta {
                busy_until = None;
            } else {
                let (tag, size, ival) = flows[fi];
                let _ = q.enqueue(t, qp(udp4(size, tag as u16 + 1000, seq, 0), tag));
                seq += 1;
                next_arrival[fi] += ival;
            }
            if busy_until.is_none() {
                if let Some(p) = q.dequeue(t) {
                    out.push((t, p.tag, t - p.enqueued_at));
                    let tx = service_ns * p.data.len() as u64 / 1500;
                    busy_until = Some(t + tx.max(1));
                }
            }
        }
        out
    }

    /// One Reno-like flow through `q`: the bottleneck serves 1500-byte packets in `service_ns`,
    /// ACKs return `base_rtt` after a packet's serialization ends, and a drop (or a CE mark,
    /// with `ect`) learnt one base RTT after it happened halves the window, at most once per
    /// round trip. Returns (dequeue time, sojourn) of every dequeued packet.
    pub fn reno(
        q: &mut dyn Qdisc,
        service_ns: u64,
        base_rtt: u64,
        duration: u64,
        ect: bool,
    ) -> Vec<(u64, u64)> {
        use std::collections::VecDeque;
        struct Cc {
            cwnd: f64,
            ssthresh: f64,
            recover_until: u64,
        }
        impl Cc {
            fn signal(&mut self, now: u64, rtt: u64) {
                if now >= self.recover_until {
                    self.cwnd = (self.cwnd / 2.0).max(2.0);
                    self.ssthresh = self.cwnd;
                    self.recover_until = now + rtt;
                }
            }
        }
        let mut cc = Cc {
            cwnd: 10.0,
            ssthresh: f64::INFINITY,
            recover_until: 0,
        };
        let mut inflight = 0usize;
        let mut acks: VecDeque<(u64, bool)> = VecDeque::new();
        let mut losses: VecDeque<u64> = VecDeque::new();
        let mut in_service: Option<(u64, bool)> = None; // (done at, CE)
        let mut out = Vec::new();
        let mut seq = 0u32;
        let mut t = 0u64;
        let ecn = if ect { 0b10 } else { 0 };
        let mut seen_drops = 0u64;
        let mut last_sojourn = 0u64;
        while t < duration {
            let rtt = base_rtt + last_sojourn + service_ns;
            while let Some(&(at, ce)) = acks.front() {
                if at > t {
                    break;
                }
                acks.pop_front();
                inflight -= 1;
                if ce {
                    cc.signal(at, rtt);
                } else if cc.cwnd < cc.ssthresh {
                    cc.cwnd += 1.0;
                } else {
                    cc.cwnd += 1.0 / cc.cwnd;
                }
            }
            while let Some(&at) = losses.front() {
                if at > t {
                    break;
                }
                losses.pop_front();
                inflight -= 1;
                cc.signal(at, rtt);
            }
            if let Some((done, ce)) = in_service {
                if done <= t {
                    acks.push_back((done + base_rtt, ce));
                    in_service = None;
                }
            }
            while (inflight as f64) < cc.cwnd.floor() {
                inflight += 1;
                let _ = q.enqueue(t, qp(udp4(1500, 1, seq, ecn), 0));
                seq += 1;
            }
            if in_service.is_none() {
                if let Some(p) = q.dequeue(t) {
                    last_sojourn = t - p.enqueued_at;
                    out.push((t, last_sojourn));
                    let ce = ecn_codepoint(&p.data) == Some(0b11);
                    in_service = Some((t + service_ns, ce));
                }
            }
            // Every drop, at enqueue or by the qdisc itself, is a loss the sender learns of.
            let s = q.stats();
            let drops = s.dropped_aqm + s.dropped_overlimit;
            for _ in seen_drops..drops {
                losses.push_back(t + base_rtt);
            }
            seen_drops = drops;
            t = [
                acks.front().map(|a| a.0),
                losses.front().copied(),
                in_service.map(|s| s.0),
            ]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(duration);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::testutil::*;
    use super::*;

    fn all_configs() -> Vec<QdiscConfig> {
        vec![
            QdiscConfig::DropTail,
            QdiscConfig::Red(RedConfig::default()),
            QdiscConfig::Codel(CodelConfig::default()),
            QdiscConfig::FqCodel(FqCodelConfig::default()),
            QdiscConfig::Pie(PieConfig::default()),
            QdiscConfig::Step(StepConfig::default()),
        ]
    }

    #[test]
    fn malformed_packets_never_panic() {
        let junk: Vec<Vec<u8>> = vec![
            vec![],
            vec![0x45],
            vec![0x45, 0x03, 0, 0],
            vec![0x60; 39],
            vec![0x4f; 60],
            vec![
                0x46, 0x02, 0, 0, 0, 0, 0, 0, 64, 6, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9,
            ],
            vec![0x60, 0x20, 0, 0, 0, 0, 17, 64],
            vec![0xff; 2000],
        ];
        for cfg in all_configs() {
            for ecn in [false, true] {
                let mut q = build(&cfg, QueueLimit::packets(5), ecn, 1);
                let mut t = 0;
                for round in 0..200 {
                    for j in &junk {
                        t += 37_000;
                        let _ = q.enqueue(t, qp(j.clone(), round));
                    }
                    t += 500 * MS;
                    while q.dequeue(t).is_some() {}
                }
                assert_eq!(q.backlog_packets(), 0);
                assert_eq!(q.backlog_bytes(), 0);
            }
        }
    }

    #[test]
    fn backlog_accounting_is_consistent() {
        for cfg in all_configs() {
            let mut q = build(&cfg, QueueLimit::bytes(60_000), true, 3);
            let mut pool = Vec::new();
            let mut offered = 0u64;
            let mut refused = 0u64;
            let mut t = 0;
            for i in 0..20_000u32 {
                t += 400_000;
                let len = 40 + (i as usize * 7919) % 1460;
                offered += 1;
                if q.enqueue(t, qp(udp4(len, (i % 7) as u16, i, (i % 3) as u8), 0))
                    .is_err()
                {
                    refused += 1;
                }
                if i % 2 == 0 {
                    q.dequeue(t);
                }
                q.recycle(&mut pool);
                assert!(q.backlog_bytes() <= 60_000, "{cfg:?}");
            }
            let s = q.stats().clone();
            assert_eq!(s.enqueued + refused, offered, "{cfg:?}");
            assert!(s.dequeued + q.backlog_packets() as u64 <= s.enqueued);
            let mut n = 0;
            while q.dequeue(t).is_some() {
                n += 1;
            }
            assert_eq!(q.backlog_bytes(), 0, "{cfg:?}");
            assert!(n > 0 || s.dequeued > 0);
        }
    }

    #[test]
    fn set_ce_follows_linux() {
        let mut p = udp4(100, 1, 1, 0b10);
        assert!(set_ce(&mut p));
        assert_eq!(ecn_codepoint(&p), Some(0b11));
        assert!(ipv4_checksum_ok(&p));
        // Already CE: signalled, unchanged.
        let before = p.clone();
        assert!(set_ce(&mut p));
        assert_eq!(p, before);
        let mut n = udp4(100, 1, 1, 0);
        assert!(!set_ce(&mut n));
        assert!(!set_ce(&mut []));
        assert_eq!(ecn_codepoint(&[0x45, 3]), None);
    }

    #[test]
    fn queue_limit_admits() {
        let l = QueueLimit {
            packets: Some(2),
            bytes: Some(100),
        };
        assert!(l.admits(0, 0, 100));
        assert!(!l.admits(0, 0, 101));
        assert!(l.admits(1, 50, 50));
        assert!(!l.admits(2, 0, 1));
        assert!(QueueLimit::default().admits(usize::MAX, usize::MAX, usize::MAX));
        assert!(!QueueLimit::packets(0).admits(0, 0, 0));
        assert!(l.exceeded(3, 0) && l.exceeded(0, 101) && !l.exceeded(2, 100));
    }
}
