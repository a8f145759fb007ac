//! FQ-CoDel (RFC 8290), following Linux's sch_fq_codel: packets hashed by 5-tuple into
//! buckets, each with its own CoDel state (shared parameters); deficit round robin over a
//! list of new flows (served first) and a list of old flows; on overlimit, packets are dropped
//! from the head of the flow with the largest backlog.
//!
//! Linux also bounds memory (`memory_limit`, on skb truesize); here [`QueueLimit`] plays that
//! role, and a byte limit makes fat-flow drops repeat until the queue fits.

use std::collections::VecDeque;

use super::codel::{codel_dequeue, CodelParams, CodelQueue, CodelVars};
use super::{count_dequeue, QPacket, Qdisc, QdiscStats, QueueLimit, DEFAULT_MTU, MS};

/// Parameters of [`super::QdiscConfig::FqCodel`]; the defaults are Linux's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FqCodelConfig {
    pub target_ns: u64,
    pub interval_ns: u64,
    /// See [`super::CodelConfig::mtu`]; the test looks at the whole qdisc's backlog, as Linux.
    pub mtu: usize,
    /// Number of hash buckets (1024); 0 is treated as 1.
    pub flows: usize,
    /// Bytes a flow may send per round (1514).
    pub quantum: usize,
    /// At most this many packets are dropped from the fattest flow per overlimit event (64);
    /// the batch stops once half of that flow's backlog is gone.
    pub drop_batch: usize,
}

impl Default for FqCodelConfig {
    fn default() -> Self {
        FqCodelConfig {
            target_ns: 5 * MS,
            interval_ns: 100 * MS,
            mtu: DEFAULT_MTU,
            flows: 1024,
            quantum: DEFAULT_MTU,
            drop_batch: 64,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum List {
    None,
    New,
    Old,
}

#[derive(Default)]
struct FlowQueue {
    q: VecDeque<QPacket>,
    backlog: usize,
}

struct Flow {
    queue: FlowQueue,
    deficit: i64,
    vars: CodelVars,
    list: List,
}

pub(crate) struct FqCodel {
    flows: Vec<Flow>,
    new_flows: VecDeque<usize>,
    old_flows: VecDeque<usize>,
    params: CodelParams,
    quantum: i64,
    drop_batch: usize,
    limit: QueueLimit,
    hash_keys: (u64, u64),
    qlen: usize,
    backlog: usize,
    dropped: Vec<Vec<u8>>,
    stats: QdiscStats,
}

/// The view CoDel gets of one flow: popping updates the flow's and the qdisc's counters.
struct FlowView<'a> {
    queue: &'a mut FlowQueue,
    qlen: &'a mut usize,
    backlog: &'a mut usize,
    dropped: &'a mut Vec<Vec<u8>>,
}

impl CodelQueue for FlowView<'_> {
    fn pop(&mut self) -> Option<QPacket> {
        let pkt = self.queue.q.pop_front()?;
        let len = pkt.data.len();
        self.queue.backlog -= len;
        *self.backlog -= len;
        *self.qlen -= 1;
        Some(pkt)
    }

    fn backlog(&self) -> usize {
        *self.backlog
    }

    fn drop_pkt(&mut self, pkt: QPacket) {
        self.dropped.push(pkt.data);
    }
}

impl FqCodel {
    pub(crate) fn new(cfg: &FqCodelConfig, limit: QueueLimit, ecn: bool, seed: u64) -> Self {
        let n = cfg.flows.max(1);
        let flows = (0..n)
            .map(|_| Flow {
                queue: FlowQueue::default(),
                deficit: 0,
                vars: CodelVars::default(),
                list: List::None,
            })
            .collect();
        let k0 = splitmix64(seed);
        let k1 = splitmix64(k0);
        FqCodel {
            flows,
            new_flows: VecDeque::new(),
            old_flows: VecDeque::new(),
            params: CodelParams {
                target: cfg.target_ns,
                interval: cfg.interval_ns,
                mtu: cfg.mtu,
                ecn,
            },
            quantum: i64::try_from(cfg.quantum.max(1)).unwrap_or(i64::MAX),
            drop_batch: cfg.drop_batch.max(1),
            limit,
            hash_keys: (k0, k1),
            qlen: 0,
            backlog: 0,
            dropped: Vec::new(),
            stats: QdiscStats::default(),
        }
    }

    fn classify(&self, pkt: &[u8]) -> usize {
        let h = flow_hash(pkt, self.hash_keys);
        // Linux's reciprocal_scale: the high bits pick the bucket without a division bias.
        ((u128::from(h >> 32) * self.flows.len() as u128) >> 32) as usize
    }

    /// Linux's `fq_codel_drop`: drops from the head of the fattest flow until half its
    /// backlog is gone or `drop_batch` packets were dropped, and tells its CoDel.
    fn drop_from_fattest(&mut self) {
        let Some((idx, fat)) = self
            .flows
            .iter()
            .enumerate()
            .map(|(i, f)| (i, f.queue.backlog))
            .filter(|&(i, b)| b > 0 || !self.flows[i].queue.q.is_empty())
            .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)))
        else {
            return;
        };
        let threshold = fat / 2;
        let flow = &mut self.flows[idx];
        let mut len = 0;
        let mut n = 0u32;
        while let Some(pkt) = flow.queue.q.pop_front() {
            len += pkt.data.len();
            n += 1;
            self.dropped.push(pkt.data);
            if n as usize >= self.drop_batch || len >= threshold {
                break;
            }
        }
        flow.vars.count = flow.vars.count.saturating_add(n);
        flow.queue.backlog -= len;
        self.backlog -= len;
        self.qlen -= n as usize;
        self.stats.dropped_overlimit += u64::from(n);
    }
}

impl Qdisc for FqCodel {
    fn enqueue(&mut self, now: u64, mut pkt: QPacket) -> Result<(), QPacket> {
        let idx = self.classify(&pkt.data);
        pkt.enqueued_at = now;
        let len = pkt.data.len();
        let flow = &mut self.flows[idx];
        flow.queue.q.push_back(pkt);
        flow.queue.backlog += len;
        if flow.list == List::None {
            flow.list = List::New;
            flow.deficit = self.quantum;
            self.new_flows.push_back(idx);
        }
        self.qlen += 1;
        self.backlog += len;
        self.stats.enqueued += 1;
        while self.qlen > 0 && self.limit.exceeded(self.qlen, self.backlog) {
            self.drop_from_fattest();
        }
        Ok(())
    }

    fn dequeue(&mut self, now: u64) -> Option<QPacket> {
        loop {
            let (idx, from_new) = match self.new_flows.front() {
                Some(&i) => (i, true),
                None => (*self.old_flows.front()?, false),
            };
            let flow = &mut self.flows[idx];
            if flow.deficit <= 0 {
                flow.deficit = flow.deficit.saturating_add(self.quantum);
                flow.list = List::Old;
                self.pop_front(from_new);
                self.old_flows.push_back(idx);
                continue;
            }
            let mut view = FlowView {
                queue: &mut flow.queue,
                qlen: &mut self.qlen,
                backlog: &mut self.backlog,
                dropped: &mut self.dropped,
            };
            let got = codel_dequeue(
                &mut view,
                &self.params,
                &mut flow.vars,
                &mut self.stats,
                now,
            );
            match got {
                None => {
                    // Empty: a new flow goes through the old list once (so a flow cannot stay
                    // "new" by sending one packet at a time), an old one leaves.
                    self.pop_front(from_new);
                    if from_new && !self.old_flows.is_empty() {
                        self.flows[idx].list = List::Old;
                        self.old_flows.push_back(idx);
                    } else {
                        self.flows[idx].list = List::None;
                    }
                }
                Some(pkt) => {
                    let len = i64::try_from(pkt.data.len()).unwrap_or(i64::MAX);
                    let flow = &mut self.flows[idx];
                    flow.deficit = flow.deficit.saturating_sub(len);
                    count_dequeue(&mut self.stats, &pkt);
                    return Some(pkt);
                }
            }
        }
    }

    fn backlog_bytes(&self) -> usize {
        self.backlog
    }

    fn backlog_packets(&self) -> usize {
        self.qlen
    }

    fn stats(&self) -> &QdiscStats {
        &self.stats
    }

    fn recycle(&mut self, pool: &mut Vec<Vec<u8>>) {
        pool.append(&mut self.dropped);
    }
}

impl FqCodel {
    fn pop_front(&mut self, from_new: bool) {
        if from_new {
            self.new_flows.pop_front();
        } else {
            self.old_flows.pop_front();
        }
    }
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A keyed hash of a packet's flow: addresses, protocol and, for TCP/UDP/SCTP/UDP-Lite
/// first fragments, ports. IPv6 extension headers are not walked (such packets hash on
/// addresses and the first next-header value). Malformed packets hash on what they have.
fn flow_hash(pkt: &[u8], (k0, k1): (u64, u64)) -> u64 {
    let mut h = k0;
    let mut feed = |bytes: &[u8]| {
        for chunk in bytes.chunks(8) {
            let mut w = [0u8; 8];
            w[..chunk.len()].copy_from_slice(chunk);
            h = splitmix64(h ^ u64::from_le_bytes(w)).wrapping_add(k1);
        }
    };
    let has_ports = |proto: u8| matches!(proto, 6 | 17 | 132 | 136);
    match pkt.first().map(|b| b >> 4) {
        Some(4) if pkt.len() >= 20 => {
            feed(&pkt[12..20]);
            let proto = pkt[9];
            let ihl = usize::from(pkt[0] & 0x0f) * 4;
            let frag_off = u16::from_be_bytes([pkt[6], pkt[7]]) & 0x1fff;
            let ports = match pkt.get(ihl..ihl + 4) {
                Some(p) if ihl >= 20 && frag_off == 0 && has_ports(proto) => p,
                _ => &[],
            };
            feed(&[4, proto]);
            feed(ports);
        }
        Some(6) if pkt.len() >= 40 => {
            feed(&pkt[8..40]);
            let nh = pkt[6];
            let ports = match pkt.get(40..44) {
                Some(p) if has_ports(nh) => p,
                _ => &[],
            };
            feed(&[6, nh]);
            feed(ports);
        }
        _ => feed(&pkt[..pkt.len().min(40)]),
    }
    splitmix64(h)
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::super::{build, QdiscConfig};
    use super::*;

    #[test]
    fn fq_codel_isolates_sparse_flow_from_bulk() {
        let cfg = QdiscConfig::FqCodel(FqCodelConfig::default());
        let mut q = build(&cfg, QueueLimit::packets(1000), false, 7);
        // Link: one 1500-byte packet per ms. Bulk: 1500 B every 0.5 ms (2x the link).
        // Sparse: 100 B every 10 ms.
        let run = open_loop(
            &mut *q,
            MS,
            &[(0, 1500, MS / 2), (1, 100, 10 * MS)],
            3000 * MS,
        );
        let late = |tag: u32| -> Vec<u64> {
            run.iter()
                .filter(|r| r.1 == tag && r.0 >= 1000 * MS)
                .map(|r| r.2)
                .collect()
        };
        let sparse = late(1);
        let mut bulk = late(0);
        assert!(sparse.len() >= 195, "sparse served {}", sparse.len());
        let worst = sparse.iter().copied().max().unwrap();
        assert!(worst < 5 * MS, "sparse flow waited {worst} ns");
        let bulk_median = median(&mut bulk);
        assert!(bulk_median >= 5 * MS, "bulk median sojourn {bulk_median}");
        // The bulk flow overflowed the limit: drops came from it, not from the sparse flow.
        assert!(q.stats().dropped_overlimit > 0);
    }

    #[test]
    fn fq_codel_drops_from_fattest_flow() {
        let cfg = FqCodelConfig::default();
        let mut q = FqCodel::new(&cfg, QueueLimit::packets(20), false, 1);
        for i in 0..16 {
            q.enqueue(0, qp(udp4(1000, 1, i, 0), 0)).unwrap();
        }
        for i in 0..4 {
            q.enqueue(0, qp(udp4(500, 2, 100 + i, 0), 1)).unwrap();
        }
        assert_ne!(
            q.classify(&udp4(1000, 1, 0, 0)),
            q.classify(&udp4(500, 2, 0, 0))
        );
        assert_eq!(q.stats().dropped_overlimit, 0);
        // The 21st packet (small flow) overflows: half of the fat flow (8 of 16) goes, head
        // first; the small flow keeps everything.
        q.enqueue(0, qp(udp4(500, 2, 104, 0), 1)).unwrap();
        assert_eq!(q.stats().dropped_overlimit, 8);
        assert_eq!(q.backlog_packets(), 13);
        assert_eq!(q.backlog_bytes(), 8 * 1000 + 5 * 500);
        let mut pool = Vec::new();
        q.recycle(&mut pool);
        assert_eq!(pool.len(), 8);
        let ids: Vec<u32> = std::iter::from_fn(|| q.dequeue(1))
            .map(|p| id_of(&p.data))
            .collect();
        assert_eq!(ids.len(), 13);
        let fat: Vec<u32> = ids.iter().copied().filter(|&i| i < 100).collect();
        assert_eq!(fat, (8..16).collect::<Vec<_>>());
    }

    #[test]
    fn fq_codel_round_robins_by_quantum() {
        let cfg = FqCodelConfig::default();
        let mut q = FqCodel::new(&cfg, QueueLimit::default(), false, 2);
        // Flow A: 1500-byte packets; flow B: 300-byte packets. Per round each gets ~1514
        // bytes, so B sends about five packets per packet of A.
        for i in 0..50 {
            q.enqueue(0, qp(udp4(1500, 10, i, 0), 0)).unwrap();
        }
        for i in 0..250 {
            q.enqueue(0, qp(udp4(300, 20, 1000 + i, 0), 1)).unwrap();
        }
        let mut bytes = [0usize; 2];
        for _ in 0..120 {
            let p = q.dequeue(0).unwrap();
            bytes[p.tag as usize] += p.data.len();
        }
        let ratio = bytes[0] as f64 / bytes[1] as f64;
        assert!((0.8..1.25).contains(&ratio), "bytes {bytes:?}");
    }

    #[test]
    fn flow_hash_is_seeded_and_uses_ports() {
        let a = udp4(100, 1, 0, 0);
        let b = udp4(100, 2, 0, 0);
        let k = (splitmix64(1), splitmix64(2));
        assert_eq!(flow_hash(&a, k), flow_hash(&udp4(900, 1, 55, 0b10), k));
        assert_ne!(flow_hash(&a, k), flow_hash(&b, k));
        assert_ne!(flow_hash(&a, k), flow_hash(&a, (k.0 ^ 1, k.1)));
        for junk in [&[][..], &[0x45, 0, 0], &[0x4f; 20], &[0x60; 41]] {
            let _ = flow_hash(junk, k);
        }
    }
}
