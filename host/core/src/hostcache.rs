//! The TCP host cache (`net.inet.tcp.hostcache.*`, FreeBSD tcp_hostcache.c): what a
//! connection learned about a peer (path MTU, RTT and its variance, ssthresh, cwnd),
//! remembered by peer address when it closes and handed to the next connection with that
//! peer. One cache for all shards, bounded per bucket (`bucketlimit`) and in all
//! (`cachelimit`): a full bucket reuses its least recently used entry. Entries expire
//! `expire` seconds after their last use; the expired ones go every `prune` seconds, all of
//! them with `purge` or at once with `purgenow` (2: with a new hash key too).
//!
//! What a new connection takes (FreeBSD tcp_mss_update and cc_conn_init): the smaller MSS
//! of a remembered MTU, and, through the tcpcb's `t_hc_*` hints, the RTT when its own
//! handshake gave none and the ssthresh.

use std::collections::VecDeque;
use std::hash::Hasher;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use siphasher::sip::SipHasher24;

use crate::secrets::HostRng;
use crate::sysctl::TcpTunables;

/// One peer's metrics (FreeBSD struct hc_metrics). Zero: not known.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HcMetrics {
    /// Path MTU, bytes (from ICMP "fragmentation needed" / "packet too big").
    pub mtu: u32,
    /// Slow-start threshold, bytes.
    pub ssthresh: u32,
    /// Smoothed RTT and its variance, microseconds.
    pub rtt_us: u32,
    pub rttvar_us: u32,
    /// Congestion window at the end of the last connection, bytes.
    pub cwnd: u32,
}

#[derive(Clone, Debug)]
struct HcEntry {
    ip: IpAddr,
    m: HcMetrics,
    hits: u64,
    updates: u64,
    /// When it expires (host clock, ns): `expire` seconds after its last use.
    expires: u64,
}

/// The host cache.
pub struct HostCache {
    buckets: Vec<VecDeque<HcEntry>>,
    count: usize,
    bucket_limit: usize,
    cache_limit: usize,
    hash_key: (u64, u64),
    next_prune: u64,
    /// The host clock when a shard last used the cache (for `list`'s EXP column).
    last_now: u64,
}

/// The cache shared by a host's shards.
pub type SharedHostCache = Arc<Mutex<HostCache>>;

/// Lock, also after a panic elsewhere (the cache stays consistent between calls).
pub(crate) fn lock(c: &SharedHostCache) -> MutexGuard<'_, HostCache> {
    c.lock().unwrap_or_else(PoisonError::into_inner)
}

fn avg(old: u32, new: u32) -> u32 {
    if old == 0 {
        new
    } else {
        ((u64::from(old) + u64::from(new)) / 2) as u32
    }
}

impl HostCache {
    /// Sized from the loader tunables (`hashsize`, `bucketlimit`, `cachelimit`).
    pub fn new(t: &TcpTunables, rng: &mut HostRng) -> Self {
        let n = t.hostcache_hashsize.max(1) as usize;
        HostCache {
            buckets: (0..n).map(|_| VecDeque::new()).collect(),
            count: 0,
            bucket_limit: t.hostcache_bucketlimit.max(1) as usize,
            cache_limit: t.hostcache_cachelimit.max(1) as usize,
            hash_key: crate::secrets::sip_key(rng),
            next_prune: 0,
            last_now: 0,
        }
    }

    fn bucket_of(&self, ip: IpAddr) -> usize {
        let mut h = SipHasher24::new_with_keys(self.hash_key.0, self.hash_key.1);
        match ip {
            IpAddr::V4(v) => h.write(&v.octets()),
            IpAddr::V6(v) => h.write(&v.octets()),
        }
        h.finish() as usize % self.buckets.len()
    }

    /// `hostcache.count`.
    pub fn count(&self) -> usize {
        self.count
    }

    /// The metrics remembered for `ip` (a hit renews the entry and moves it to the front
    /// of its bucket, FreeBSD tcp_hc_get).
    pub fn get(&mut self, ip: IpAddr, now: u64, expire_ns: u64) -> Option<HcMetrics> {
        let b = self.bucket_of(ip);
        let bucket = &mut self.buckets[b];
        let i = bucket.iter().position(|e| e.ip == ip)?;
        let mut e = bucket.remove(i)?;
        e.hits += 1;
        e.expires = now + expire_ns;
        let m = e.m;
        bucket.push_front(e);
        Some(m)
    }

    /// The entry for `ip`, made if there is none: a full bucket or cache reuses the least
    /// recently used entry of the bucket; `None` when the cache is full and the bucket
    /// empty (FreeBSD tcp_hc_insert).
    fn entry(&mut self, ip: IpAddr, now: u64, expire_ns: u64) -> Option<&mut HcEntry> {
        let b = self.bucket_of(ip);
        if let Some(i) = self.buckets[b].iter().position(|e| e.ip == ip) {
            let e = self.buckets[b].remove(i)?;
            self.buckets[b].push_front(e);
        } else {
            if self.buckets[b].len() >= self.bucket_limit || self.count >= self.cache_limit {
                self.buckets[b].pop_back()?;
                self.count -= 1;
            }
            self.buckets[b].push_front(HcEntry {
                ip,
                m: HcMetrics::default(),
                hits: 0,
                updates: 0,
                expires: 0,
            });
            self.count += 1;
        }
        let e = self.buckets[b].front_mut()?;
        e.expires = now + expire_ns;
        e.updates += 1;
        Some(e)
    }

    /// A path MTU learned from ICMP (FreeBSD tcp_hc_updatemtu).
    pub fn update_mtu(&mut self, ip: IpAddr, mtu: u32, now: u64, expire_ns: u64) {
        if let Some(e) = self.entry(ip, now, expire_ns) {
            e.m.mtu = mtu;
        }
    }

    /// What a closing connection learned (FreeBSD tcp_hc_update): each metric averaged
    /// with what was remembered.
    pub fn update(&mut self, ip: IpAddr, m: HcMetrics, now: u64, expire_ns: u64) {
        if let Some(e) = self.entry(ip, now, expire_ns) {
            if m.rtt_us > 0 {
                e.m.rtt_us = avg(e.m.rtt_us, m.rtt_us);
                e.m.rttvar_us = avg(e.m.rttvar_us, m.rttvar_us);
            }
            if m.ssthresh > 0 {
                e.m.ssthresh = avg(e.m.ssthresh, m.ssthresh);
            }
            if m.cwnd > 0 {
                e.m.cwnd = avg(e.m.cwnd, m.cwnd);
            }
        }
    }

    /// Every `prune` seconds: the expired entries go, or all of them with `purge` (FreeBSD
    /// tcp_hc_purge; `purge` 2 also draws a new hash key). Returns whether it purged.
    pub fn prune(&mut self, t: &TcpTunables, now: u64, rng: &mut HostRng) -> bool {
        if now < self.next_prune {
            return false;
        }
        self.next_prune = now + t.hostcache_prune.max(1) as u64 * 1_000_000_000;
        let all = t.hostcache_purge != 0;
        self.purge(all, now);
        if t.hostcache_purge == 2 {
            self.hash_key = crate::secrets::sip_key(rng);
        }
        all
    }

    /// Removes the expired entries, or all.
    pub fn purge(&mut self, all: bool, now: u64) {
        for b in &mut self.buckets {
            let before = b.len();
            b.retain(|e| !all && e.expires > now);
            self.count -= before - b.len();
        }
    }

    /// A new hash key (`purgenow=2`); the cache must be empty.
    pub fn reseed(&mut self, rng: &mut HostRng) {
        debug_assert_eq!(self.count, 0);
        self.hash_key = crate::secrets::sip_key(rng);
    }

    /// `hostcache.list`, FreeBSD's columns: RTT and RTTVAR in milliseconds, EXP the seconds
    /// left.
    pub fn list(&self, now: u64) -> String {
        let mut out = String::from(
            "\nIP address        MTU SSTRESH      RTT   RTTVAR     CWND SENDPIPE RECVPIPE HITS  UPD  EXP\n",
        );
        for e in self.buckets.iter().flatten() {
            out.push_str(&format!(
                "{:<15} {:>5} {:>8} {:>4}ms {:>4}ms {:>8} {:>8} {:>8} {:>4} {:>4} {:>4}\n",
                e.ip.to_string(),
                e.m.mtu,
                e.m.ssthresh,
                e.m.rtt_us / 1000,
                e.m.rttvar_us / 1000,
                e.m.cwnd,
                0,
                0,
                e.hits,
                e.updates,
                e.expires.saturating_sub(now) / 1_000_000_000,
            ));
        }
        out
    }

    /// `hostcache.histo`: how many buckets hold each number of entries.
    pub fn histo(&self) -> String {
        let max = self.buckets.iter().map(VecDeque::len).max().unwrap_or(0);
        let mut counts = vec![0usize; max + 1];
        for b in &self.buckets {
            counts[b.len()] += 1;
        }
        let mut out = String::from("\nLength\tCount\n");
        for (len, n) in counts.iter().enumerate() {
            out.push_str(&format!("{len}\t{n}\n"));
        }
        out
    }
}

impl crate::Host {
    fn hc_expire_ns(&self) -> u64 {
        self.tunables.hostcache_expire.max(0) as u64 * 1_000_000_000
    }

    /// The host cache, pruned when its time has come.
    pub(crate) fn with_hostcache<R>(&mut self, f: impl FnOnce(&mut HostCache, u64) -> R) -> R {
        let store = Arc::clone(&self.hostcache);
        let mut hc = lock(&store);
        let now = self.worker.now;
        hc.last_now = now;
        hc.prune(&self.tunables, now, &mut self.rng);
        f(&mut hc, self.hc_expire_ns())
    }

    /// A new connection with `peer` takes what the cache remembers (FreeBSD tcp_mss_update
    /// and cc_conn_init): a smaller MSS for a remembered path MTU now, the RTT and ssthresh
    /// as hints its stack applies when the handshake ends.
    pub(crate) fn hostcache_apply(&mut self, slot: usize) {
        if self.tunables.hostcache_enable == 0 {
            return;
        }
        let Some(peer) = self.conn_at(slot).map(|c| c.side.remote.ip()) else {
            return;
        };
        let now = self.worker.now;
        let Some(m) = self.with_hostcache(|hc, exp| hc.get(peer, now, exp)) else {
            return;
        };
        let minmss = self.tunables.minmss.max(0) as u32;
        let Some(c) = self.conns.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        let tp = &mut c.ctx.tp;
        if m.mtu > 0 {
            let hdr = if peer.is_ipv4() { 40 } else { 60 };
            let mss = m.mtu.saturating_sub(hdr).max(minmss);
            tp.t_maxseg = tp.t_maxseg.min(mss);
        }
        tp.t_hc_rtt = m.rtt_us;
        tp.t_hc_rttvar = m.rttvar_us;
        tp.t_hc_ssthresh = m.ssthresh;
    }

    /// A connection leaving: what it learned goes to the cache (FreeBSD tcp_update_metrics,
    /// for connections that got as far as ESTABLISHED and timed their RTT).
    pub(crate) fn hostcache_learn(&mut self, slot: usize) {
        let Some(c) = self.conn_at(slot) else {
            return;
        };
        let (tp, peer) = (&c.ctx.tp, c.side.remote.ip());
        if self.tunables.hostcache_enable == 0 || tp.t_srtt == 0 || peer.is_unspecified() {
            return;
        }
        let maxseg = tp.t_maxseg.max(1);
        // An ssthresh never lowered says nothing about the path.
        let ssthresh = if tp.snd_ssthresh < plugtcp_abi::tcpcb::TCP_INITIAL_SSTHRESH {
            tp.snd_ssthresh.max(2 * maxseg)
        } else {
            0
        };
        let m = HcMetrics {
            mtu: 0,
            ssthresh,
            rtt_us: tp.t_srtt,
            rttvar_us: tp.t_rttvar,
            cwnd: tp.snd_cwnd,
        };
        let now = self.worker.now;
        self.with_hostcache(|hc, exp| hc.update(peer, m, now, exp));
    }

    /// The path MTU remembered for `peer`, if any.
    pub(crate) fn hostcache_mtu_of(&mut self, peer: IpAddr) -> Option<u32> {
        if self.tunables.hostcache_enable == 0 {
            return None;
        }
        let now = self.worker.now;
        self.with_hostcache(|hc, exp| hc.get(peer, now, exp))
            .map(|m| m.mtu)
            .filter(|&mtu| mtu > 0)
    }

    /// An ICMP-learned path MTU.
    pub(crate) fn hostcache_mtu(&mut self, peer: IpAddr, mtu: u32) {
        if self.tunables.hostcache_enable == 0 {
            return;
        }
        let now = self.worker.now;
        self.with_hostcache(|hc, exp| hc.update_mtu(peer, mtu, now, exp));
    }

    /// `hostcache.count`, `list`, `histo` and `purgenow`.
    pub(crate) fn register_hostcache_sysctls(&self) {
        use crate::kld::HostNode;
        use crate::sysctl::SysctlValue;
        type Read = Box<dyn Fn(&HostCache) -> SysctlValue + Send + Sync>;
        let reads: [(&str, &'static str, Read); 3] = [
            (
                "net.inet.tcp.hostcache.count",
                "Current number of entries in hostcache",
                Box::new(|hc| SysctlValue::Int(hc.count() as i64)),
            ),
            (
                "net.inet.tcp.hostcache.list",
                "List of all hostcache entries",
                Box::new(|hc| SysctlValue::Str(hc.list(hc.last_now))),
            ),
            (
                "net.inet.tcp.hostcache.histo",
                "Print a histogram of hostcache hashbucket utilization",
                Box::new(|hc| SysctlValue::Str(hc.histo())),
            ),
        ];
        for (name, description, read) in reads {
            let store = Arc::clone(&self.hostcache);
            let node = HostNode {
                get: Box::new(move || read(&lock(&store))),
                set: None,
                description,
            };
            self.register_host_node(name, node);
        }
        let store = Arc::clone(&self.hostcache);
        // The key for `purgenow=2` comes from the OS: the node outlives any one shard's
        // generator.
        let node = HostNode {
            get: Box::new(|| SysctlValue::Int(0)),
            set: Some(Box::new(move |v| {
                let v = crate::sysctl::parse_int(v)?;
                if !(0..=2).contains(&v) {
                    return Err(plugtcp_abi::Errno::EINVAL);
                }
                let mut hc = lock(&store);
                hc.purge(true, 0);
                if v == 2 {
                    hc.reseed(&mut crate::secrets::Entropy::Os.rng());
                }
                Ok(())
            })),
            description: "Immediately purge all entries",
        };
        self.register_host_node("net.inet.tcp.hostcache.purgenow", node);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn small() -> TcpTunables {
        TcpTunables {
            hostcache_hashsize: 2,
            hostcache_bucketlimit: 2,
            hostcache_cachelimit: 3,
            ..TcpTunables::default()
        }
    }

    #[test]
    fn remembers_averages_and_stays_within_its_limits() {
        let mut rng = HostRng::seed_from_u64(1);
        let mut hc = HostCache::new(&small(), &mut rng);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let m = HcMetrics {
            rtt_us: 100_000,
            rttvar_us: 10_000,
            ssthresh: 20_000,
            cwnd: 30_000,
            mtu: 0,
        };
        hc.update(a, m, 0, 3600);
        hc.update(
            a,
            HcMetrics {
                rtt_us: 200_000,
                ..m
            },
            0,
            3600,
        );
        hc.update_mtu(a, 1400, 0, 3600);
        let got = hc.get(a, 0, 3600).unwrap();
        assert_eq!((got.rtt_us, got.mtu, got.ssthresh), (150_000, 1400, 20_000));
        assert!(hc.list(0).contains("192.0.2.1        1400    20000  150ms"));
        // Ten peers: never more than cachelimit entries, nor bucketlimit per bucket.
        for i in 0..10u8 {
            hc.update(IpAddr::from([198, 51, 100, i]), m, 0, 3600);
        }
        assert!(hc.count() <= 3);
        assert!(hc.buckets.iter().all(|b| b.len() <= 2));
        assert_eq!(
            hc.histo()
                .lines()
                .skip(2)
                .map(|l| l.split('\t').nth(1).unwrap().parse::<usize>().unwrap())
                .sum::<usize>(),
            2,
            "every bucket counted once: {}",
            hc.histo()
        );
    }

    #[test]
    fn entries_expire_and_purge() {
        let mut rng = HostRng::seed_from_u64(2);
        let t = TcpTunables {
            hostcache_prune: 300,
            ..TcpTunables::default()
        };
        let mut hc = HostCache::new(&t, &mut rng);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        hc.update_mtu(a, 1400, 0, 100 * 1_000_000_000);
        assert!(!hc.prune(&t, 0, &mut rng));
        assert_eq!(hc.count(), 1, "not expired yet");
        hc.prune(&t, 301 * 1_000_000_000, &mut rng);
        assert_eq!(
            hc.count(),
            0,
            "expired 100 s after its last use, pruned at 300 s"
        );
        hc.update_mtu(a, 1400, 0, u64::MAX / 2);
        let purge = TcpTunables {
            hostcache_purge: 1,
            ..t
        };
        assert!(hc.prune(&purge, 700 * 1_000_000_000, &mut rng));
        assert_eq!(hc.count(), 0);
    }
}
