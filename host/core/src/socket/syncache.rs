//! SYN cache and SYN cookies with FreeBSD syncache(4) semantics, sans-IO.
//!
//! The [`SynCache`] holds half-open connections (SYN received, SYN-ACK sent) in a hash table of
//! small buckets chosen by a keyed hash of the 4-tuple, so a flood can fill at most a bucket per
//! hash value. The SYN-ACK is retransmitted FreeBSD's way (syncache_timeout): the first after
//! `rexmit_initial` (1 s), the n-th after `rexmit_initial * tcp_backoff[n]` plus `rexmit_slop`
//! (2.2 s, 4.2 s, ...), i.e. at 1 s, 3.2 s, 7.4 s after creation for the default `rexmtlimit`
//! of 3; the entry expires one more interval after the last retransmit (15.6 s), counted as
//! `stale`.
//!
//! When the cache is full the caller answers with a [`SynCookies`] ISS instead, and rebuilds the
//! connection from the cookie when the handshake's ACK arrives.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::hash::Hasher;

use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

use super::table::{hash_ip, sip, ConnKey, ListenerId};

const SEC: u64 = 1_000_000_000;
/// Base retransmit timeout (FreeBSD TCPTV_RTOBASE).
pub const TCPTV_RTOBASE: u64 = SEC;
/// Retransmit interval cap (FreeBSD TCPTV_REXMTMAX).
pub const TCPTV_REXMTMAX: u64 = 64 * SEC;
/// Secret rotation period of the SYN cookies (FreeBSD SYNCOOKIE_LIFETIME).
pub const SYNCOOKIE_LIFETIME: u64 = 15 * SEC;

/// A half-open connection. `Copy` and compact (about 110 bytes); the TCP stack reads it when the
/// third segment of the handshake arrives.
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
pub struct SynCacheEntry {
    pub key: ConnKey,
    /// Peer's initial sequence number.
    pub irs: u32,
    /// Our initial sequence number (sent in the SYN-ACK).
    pub iss: u32,
    /// Peer's TSval to reflect; `None` if timestamps are not in use.
    pub ts_recent: Option<u32>,
    /// Offset added to our timestamp clock for this connection.
    pub ts_offset: u32,
    /// Creation time (set by [`SynCache::insert`]).
    pub created: u64,
    /// When the SYN-ACK is next retransmitted, or the entry expires (set by the cache).
    pub next_rexmt: u64,
    pub listener: ListenerId,
    pub peer_mss: u16,
    /// Shift the peer requested in its SYN; `None` means no window scaling.
    pub snd_wscale: Option<u8>,
    /// Shift we announced in the SYN-ACK (meaningful only if `snd_wscale` is set).
    pub rcv_wscale: u8,
    /// SYN-ACK retransmits done so far (maintained by the cache).
    pub rexmits: u8,
    pub sack_ok: bool,
    pub ecn: bool,
    /// The listener has TCP_NOOPT: the SYN-ACK carries no options (not even an MSS).
    pub noopt: bool,
    /// The peer's UDP port when the SYN came over UDP (FreeBSD sc_port; 0: plain TCP).
    pub port: u16,
    /// The SYN carried the TCP Fast Open option to a TFO listener: the connection reports
    /// TCP_FASTOPEN although it fell back (tcp(4)).
    pub tfo: bool,
    /// The cookie the SYN-ACK hands out (FreeBSD sc_tfo_cookie): the SYN asked for one or
    /// carried an invalid one.
    pub tfo_cookie: Option<[u8; crate::fastopen::COOKIE_LEN]>,
}

impl SynCacheEntry {
    /// An entry with no options negotiated and MSS 536 (RFC 9293 default); set the option fields
    /// from the SYN before inserting.
    pub fn new(key: ConnKey, irs: u32, iss: u32, listener: ListenerId) -> Self {
        SynCacheEntry {
            key,
            irs,
            iss,
            ts_recent: None,
            ts_offset: 0,
            created: 0,
            next_rexmt: 0,
            listener,
            peer_mss: 536,
            snd_wscale: None,
            rcv_wscale: 0,
            rexmits: 0,
            sack_ok: false,
            ecn: false,
            noopt: false,
            port: 0,
            tfo: false,
            tfo_cookie: None,
        }
    }
}

/// Tunables (`net.inet.tcp.syncache.*`), FreeBSD defaults via `Default`.
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
pub struct SynCacheConfig {
    /// Number of buckets (`hashsize`, 512). Values below 1 are raised to 1.
    pub hashsize: usize,
    /// Entries per bucket (`bucketlimit`, 30). Values below 1 are raised to 1.
    pub bucketlimit: usize,
    /// Entries in total (`cachelimit`, hashsize * bucketlimit).
    pub cachelimit: usize,
    /// SYN-ACK retransmits before the entry expires (`rexmtlimit`, 3).
    pub rexmtlimit: u8,
}

impl Default for SynCacheConfig {
    fn default() -> Self {
        SynCacheConfig {
            hashsize: 512,
            bucketlimit: 30,
            cachelimit: 512 * 30,
            rexmtlimit: 3,
        }
    }
}

/// The syncache counters of FreeBSD's `struct tcpstat` (`tcps_sc_*`, plus `tcps_sndacks`).
/// The cache bumps added, retransmitted, dupsyn, completed, bucketoverflow, cacheoverflow, stale
/// and sndacks itself; the caller bumps the rest through [`SynCache::stats_mut`] (they depend on
/// packet processing: RSTs, bad ACKs, ICMP, socket creation failures, cookies).
#[derive(Copy, Clone, PartialEq, Eq, Debug, Default)]
pub struct SynCacheStats {
    pub added: u64,
    pub retransmitted: u64,
    pub dupsyn: u64,
    pub dropped: u64,
    pub completed: u64,
    pub bucketoverflow: u64,
    pub cacheoverflow: u64,
    pub reset: u64,
    pub stale: u64,
    pub aborted: u64,
    pub badack: u64,
    pub unreach: u64,
    pub zonefail: u64,
    pub sndacks: u64,
    pub cookiessent: u64,
    pub cookiesrecvd: u64,
}

/// Result of [`SynCache::insert`].
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
pub enum InsertOutcome {
    Inserted,
    /// A retransmitted SYN for a known 4-tuple: the existing entry keeps its ISS/IRS, its
    /// timestamp and retransmit timer are refreshed, and the caller should resend the SYN-ACK
    /// built from [`SynCache::get`].
    ReplacedDuplicate,
    /// Inserted after dropping the oldest entry of the full bucket.
    BucketOverflow {
        evicted: ConnKey,
    },
    /// Nothing inserted: the cache is at `cachelimit`; answer with a SYN cookie.
    CacheFull,
}

/// What [`SynCache::expire`] asks the caller to do.
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
pub enum SynCacheEvent {
    /// Resend the SYN-ACK for this entry (still in the cache).
    Retransmit(ConnKey),
    /// The entry ran out of retransmits and was removed.
    Expired(ConnKey),
}

struct Bucket {
    /// Oldest first: entries are appended and never reordered, so index 0 is the oldest.
    entries: Vec<SynCacheEntry>,
    /// Earliest `next_rexmt` in the bucket, `u64::MAX` when empty.
    deadline: u64,
    /// When the bucket last overflowed (FreeBSD sch_last_overflow): a cookie is honoured
    /// only for a bucket that lost entries recently, so a forged or replayed ACK cannot
    /// open a connection while the cache is keeping up.
    last_overflow: Option<u64>,
}

/// The retransmit timer's parameters (net.inet.tcp.rexmit_initial, rexmit_min,
/// rexmit_slop), in ns.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct SynRto {
    pub initial: u64,
    pub min: u64,
    pub slop: u64,
}

impl Default for SynRto {
    fn default() -> Self {
        SynRto {
            initial: TCPTV_RTOBASE,
            min: 30_000_000,
            slop: 200_000_000,
        }
    }
}

impl SynRto {
    /// FreeBSD syncache_timeout: the interval after `rexmits` retransmits.
    fn interval(&self, rexmits: u8) -> u64 {
        if rexmits == 0 {
            return self.initial.min(TCPTV_REXMTMAX);
        }
        const BACKOFF: [u64; 13] = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 512, 512, 512];
        let mult = BACKOFF[usize::from(rexmits).min(12)];
        (self.initial.saturating_mul(mult) + self.slop).clamp(self.min, TCPTV_REXMTMAX)
    }
}

/// The SYN cache.
///
/// Timers: each bucket keeps its earliest deadline, and a min-heap holds (deadline, bucket)
/// pairs; a pair whose deadline no longer matches its bucket is stale and skipped. Every
/// deadline change pushes the new pair, so the heap always holds each non-empty bucket's
/// current deadline, and stale pairs are popped from the top after every operation, which
/// keeps [`SynCache::next_timeout`] exact. `expire` touches only buckets that are due.
pub struct SynCache {
    cfg: SynCacheConfig,
    buckets: Vec<Bucket>,
    hash_key: (u64, u64),
    count: usize,
    timers: BinaryHeap<Reverse<(u64, usize)>>,
    stats: SynCacheStats,
    rto: SynRto,
    /// Where the host's shards add up their entries (`net.inet.tcp.syncache.count`).
    gauges: Option<crate::gauges::SharedGauges>,
}

impl SynCache {
    /// Counts this cache's entries in `gauges` from now on.
    pub fn set_gauges(&mut self, gauges: crate::gauges::SharedGauges) {
        gauges
            .syncache
            .fetch_add(self.count as i64, std::sync::atomic::Ordering::Relaxed);
        self.gauges = Some(gauges);
    }

    /// `count` changed by `delta`.
    fn counted(&self, delta: i64) {
        if let Some(g) = &self.gauges {
            g.syncache
                .fetch_add(delta, std::sync::atomic::Ordering::Relaxed);
        }
    }
    /// An empty cache; `seed` keys the bucket hash (tests; a host uses [`SynCache::with_key`]).
    pub fn new(cfg: SynCacheConfig, seed: u64) -> Self {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        Self::with_key(cfg, (rng.random(), rng.random()))
    }

    /// An empty cache whose bucket hash is keyed by `hash_key` (secret from peers, or a flood
    /// can aim at one bucket).
    pub fn with_key(cfg: SynCacheConfig, hash_key: (u64, u64)) -> Self {
        let cfg = SynCacheConfig {
            hashsize: cfg.hashsize.max(1),
            bucketlimit: cfg.bucketlimit.max(1),
            ..cfg
        };
        let buckets = (0..cfg.hashsize)
            .map(|_| Bucket {
                entries: Vec::new(),
                deadline: u64::MAX,
                last_overflow: None,
            })
            .collect();
        SynCache {
            cfg,
            buckets,
            hash_key,
            count: 0,
            timers: BinaryHeap::new(),
            stats: SynCacheStats::default(),
            rto: SynRto::default(),
            gauges: None,
        }
    }

    pub fn config(&self) -> &SynCacheConfig {
        &self.cfg
    }

    /// The retransmit timer's parameters from now on (the sysctls changed).
    pub fn set_rto(&mut self, rto: SynRto) {
        self.rto = rto;
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn stats(&self) -> &SynCacheStats {
        &self.stats
    }

    pub fn stats_mut(&mut self) -> &mut SynCacheStats {
        &mut self.stats
    }

    fn bucket_of(&self, key: &ConnKey) -> usize {
        let mut h = sip(self.hash_key);
        hash_ip(&mut h, key.local.ip());
        hash_ip(&mut h, key.remote.ip());
        h.write(&key.local.port().to_be_bytes());
        h.write(&key.remote.port().to_be_bytes());
        (h.finish() % self.buckets.len() as u64) as usize
    }

    /// Adds the entry for a received SYN. The cache sets `created`, `rexmits` and `next_rexmt`
    /// (first SYN-ACK retransmit at `now` + 1 s); see [`InsertOutcome`] for the cases.
    pub fn insert(&mut self, now: u64, mut entry: SynCacheEntry) -> InsertOutcome {
        let b = self.bucket_of(&entry.key);
        let bucket = &mut self.buckets[b];
        if let Some(e) = bucket.entries.iter_mut().find(|e| e.key == entry.key) {
            // FreeBSD syncache_add on a duplicate SYN: keep ISS/IRS so a SYN-ACK already in
            // flight stays valid; refresh TSval, or stop using timestamps if this SYN lacks it.
            e.ts_recent = e.ts_recent.and(entry.ts_recent);
            e.rexmits = 0;
            e.next_rexmt = now.saturating_add(self.rto.interval(0));
            self.stats.dupsyn += 1;
            self.stats.sndacks += 1;
            self.update_deadline(b);
            self.prune_timers();
            return InsertOutcome::ReplacedDuplicate;
        }
        let outcome = if bucket.entries.len() >= self.cfg.bucketlimit {
            // FreeBSD syncache_insert: toss the oldest element of a full bucket.
            let old = bucket.entries.remove(0);
            bucket.last_overflow = Some(now);
            self.count -= 1;
            self.counted(-1);
            self.stats.bucketoverflow += 1;
            InsertOutcome::BucketOverflow { evicted: old.key }
        } else if self.count >= self.cfg.cachelimit {
            bucket.last_overflow = Some(now);
            self.stats.cacheoverflow += 1;
            return InsertOutcome::CacheFull;
        } else {
            InsertOutcome::Inserted
        };
        entry.created = now;
        entry.rexmits = 0;
        entry.next_rexmt = now.saturating_add(self.rto.interval(0));
        self.buckets[b].entries.push(entry);
        self.count += 1;
        self.counted(1);
        self.stats.added += 1;
        self.update_deadline(b);
        self.prune_timers();
        outcome
    }

    /// Whether the bucket of `key` overflowed (lost or refused an entry) at or after `since`:
    /// only then may an ACK without an entry be a returning SYN cookie (FreeBSD
    /// syncache_expand).
    pub fn overflowed_since(&self, key: &ConnKey, since: u64) -> bool {
        self.buckets[self.bucket_of(key)]
            .last_overflow
            .is_some_and(|t| t >= since)
    }

    pub fn get(&self, key: &ConnKey) -> Option<&SynCacheEntry> {
        self.buckets[self.bucket_of(key)]
            .entries
            .iter()
            .find(|e| e.key == *key)
    }

    /// Removes and returns the entry when the handshake's ACK arrives; counts `completed`.
    pub fn take(&mut self, key: &ConnKey) -> Option<SynCacheEntry> {
        let e = self.remove(key)?;
        self.stats.completed += 1;
        Some(e)
    }

    /// Removes an entry without counting anything (the caller counts reset/unreach/aborted).
    pub fn remove(&mut self, key: &ConnKey) -> Option<SynCacheEntry> {
        let b = self.bucket_of(key);
        let bucket = &mut self.buckets[b];
        let i = bucket.entries.iter().position(|e| e.key == *key)?;
        let e = bucket.entries.remove(i);
        self.count -= 1;
        self.counted(-1);
        self.update_deadline(b);
        self.prune_timers();
        Some(e)
    }

    /// Earliest time at which [`SynCache::expire`] has work, if any entry exists.
    pub fn next_timeout(&self) -> Option<u64> {
        self.timers.peek().map(|Reverse((d, _))| *d)
    }

    /// Runs due retransmit timers, appending what to do to `out` (which the caller reuses, so
    /// this does not allocate in steady state). Only buckets with a due deadline are visited.
    pub fn expire(&mut self, now: u64, out: &mut Vec<SynCacheEvent>) {
        while let Some(&Reverse((d, b))) = self.timers.peek() {
            if d > now {
                break;
            }
            self.timers.pop();
            if self.buckets[b].deadline != d {
                continue;
            }
            let limit = self.cfg.rexmtlimit;
            let rto = self.rto;
            let stats = &mut self.stats;
            let before = self.buckets[b].entries.len();
            self.buckets[b].entries.retain_mut(|e| {
                if e.next_rexmt > now {
                    return true;
                }
                if e.rexmits >= limit {
                    stats.stale += 1;
                    out.push(SynCacheEvent::Expired(e.key));
                    return false;
                }
                // FreeBSD syncache_timer: the next interval is counted from when the timer ran.
                e.rexmits += 1;
                e.next_rexmt = now.saturating_add(rto.interval(e.rexmits));
                stats.retransmitted += 1;
                out.push(SynCacheEvent::Retransmit(e.key));
                true
            });
            let gone = before - self.buckets[b].entries.len();
            self.count -= gone;
            self.counted(-(gone as i64));
            self.update_deadline(b);
        }
        self.prune_timers();
    }

    /// Recomputes bucket `b`'s deadline and records a change in the heap.
    fn update_deadline(&mut self, b: usize) {
        let bucket = &mut self.buckets[b];
        let d = bucket
            .entries
            .iter()
            .map(|e| e.next_rexmt)
            .min()
            .unwrap_or(u64::MAX);
        if d == bucket.deadline {
            return;
        }
        bucket.deadline = d;
        if d != u64::MAX {
            self.timers.push(Reverse((d, b)));
        }
    }

    /// Drops stale pairs from the top of the heap; rebuilds it if stale pairs pile up below.
    fn prune_timers(&mut self) {
        while let Some(&Reverse((d, b))) = self.timers.peek() {
            if self.buckets[b].deadline == d {
                break;
            }
            self.timers.pop();
        }
        if self.timers.len() > 2 * self.buckets.len() + 64 {
            self.timers.clear();
            for (i, bucket) in self.buckets.iter().enumerate() {
                if bucket.deadline != u64::MAX {
                    self.timers.push(Reverse((bucket.deadline, i)));
                }
            }
        }
    }
}

/// MSS values a cookie can carry (FreeBSD `tcp_sc_msstab`).
pub const SYNCOOKIE_MSSTAB: [u16; 8] = [216, 536, 1200, 1360, 1400, 1440, 1452, 1460];
/// Window shifts a cookie can carry (FreeBSD `tcp_sc_wstab`); index 0 means no window scaling.
pub const SYNCOOKIE_WSTAB: [u8; 8] = [0, 0, 1, 2, 4, 6, 7, 8];

/// TCP options recovered from a valid cookie.
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
pub struct CookieInfo {
    pub mss: u16,
    /// Peer's window shift; `None` if it did not send the option.
    pub wscale: Option<u8>,
    pub sack_ok: bool,
}

/// SYN cookies (FreeBSD `syncookie_generate`/`syncookie_lookup` layout). The ISS is
/// `MAC:24 | secret index:1 | MSS index:3 | wscale index:3 | SACK:1`, where the MAC is
/// SipHash-2-4 over irs, local address, remote address, local port, remote port and the 7 flag
/// bits, truncated to 24 bits. MSS and window shift are rounded down to the tables, which is the
/// safe direction (smaller segments, smaller assumed peer window).
///
/// Call [`SynCookies::maybe_rotate`] before `generate` and `check`: that bounds a cookie's life
/// to one or two rotation periods.
pub struct SynCookies {
    keys: [(u64, u64); 2],
    /// Index of the secret new cookies use; the other one is the previous secret.
    current: usize,
    last_rotate: u64,
}

impl SynCookies {
    /// Fresh random secrets from the caller's RNG.
    pub fn new<R: Rng + ?Sized>(now: u64, rng: &mut R) -> Self {
        SynCookies {
            keys: [(rng.random(), rng.random()), (rng.random(), rng.random())],
            current: 0,
            last_rotate: now,
        }
    }

    /// Rotates the secret if SYNCOOKIE_LIFETIME has passed since the last rotation; returns
    /// whether it did. After a gap of two lifetimes or more both secrets are replaced, so a
    /// cookie never outlives its secret just because no SYN arrived for a while.
    pub fn maybe_rotate<R: Rng + ?Sized>(&mut self, now: u64, rng: &mut R) -> bool {
        let elapsed = now.saturating_sub(self.last_rotate);
        if elapsed < SYNCOOKIE_LIFETIME {
            return false;
        }
        if elapsed >= 2 * SYNCOOKIE_LIFETIME {
            self.keys[self.current] = (rng.random(), rng.random());
        }
        self.current ^= 1;
        self.keys[self.current] = (rng.random(), rng.random());
        self.last_rotate = now;
        true
    }

    fn mac(&self, idx: usize, key: &ConnKey, irs: u32, flags: u8) -> u32 {
        let mut h = sip(self.keys[idx]);
        h.write(&irs.to_be_bytes());
        hash_ip(&mut h, key.local.ip());
        hash_ip(&mut h, key.remote.ip());
        h.write(&key.local.port().to_be_bytes());
        h.write(&key.remote.port().to_be_bytes());
        h.write_u8(flags);
        (h.finish() & 0x00ff_ffff) as u32
    }

    /// The ISS to send in a SYN-ACK instead of caching the connection. An MSS below the
    /// smallest table value is sent as index 0 (216), like FreeBSD.
    pub fn generate(
        &self,
        key: &ConnKey,
        irs: u32,
        peer_mss: u16,
        wscale: Option<u8>,
        sack_ok: bool,
    ) -> u32 {
        let mss_idx = SYNCOOKIE_MSSTAB
            .iter()
            .rposition(|&m| m <= peer_mss)
            .unwrap_or(0);
        let ws_idx = match wscale {
            None => 0,
            // Index 1 holds shift 0, so a match always exists.
            Some(w) => (1..SYNCOOKIE_WSTAB.len())
                .rev()
                .find(|&i| SYNCOOKIE_WSTAB[i] <= w.min(14))
                .unwrap_or(1),
        };
        let flags = ((self.current as u8) << 7)
            | ((mss_idx as u8) << 4)
            | ((ws_idx as u8) << 1)
            | u8::from(sack_ok);
        (self.mac(self.current, key, irs, flags) << 8) | u32::from(flags)
    }

    /// Validates the ACK of a cookie SYN-ACK: `irs` is the ACK's SEG.SEQ - 1, `iss` its
    /// SEG.ACK - 1. Returns the options encoded at generation, or `None` if forged, for another
    /// connection, or made with a secret that has been rotated out.
    pub fn check(&self, key: &ConnKey, irs: u32, iss: u32) -> Option<CookieInfo> {
        let flags = (iss & 0xff) as u8;
        let idx = usize::from(flags >> 7);
        if self.mac(idx, key, irs, flags) != iss >> 8 {
            return None;
        }
        let ws_idx = usize::from((flags >> 1) & 7);
        Some(CookieInfo {
            mss: SYNCOOKIE_MSSTAB[usize::from((flags >> 4) & 7)],
            wscale: (ws_idx != 0).then(|| SYNCOOKIE_WSTAB[ws_idx]),
            sack_ok: flags & 1 == 1,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

    fn key(i: u32) -> ConnKey {
        ConnKey::new(
            SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 80),
            SocketAddr::new(IpAddr::V4(Ipv4Addr::from(0xc000_0000 + i)), 40000),
        )
    }

    fn entry(k: ConnKey) -> SynCacheEntry {
        let mut e = SynCacheEntry::new(k, 1000, 2000, ListenerId(1));
        e.ts_recent = Some(77);
        e
    }

    fn small(hashsize: usize, bucketlimit: usize, cachelimit: usize) -> SynCache {
        SynCache::new(
            SynCacheConfig {
                hashsize,
                bucketlimit,
                cachelimit,
                rexmtlimit: 3,
            },
            42,
        )
    }

    #[test]
    fn insert_get_take_remove() {
        let mut c = SynCache::new(SynCacheConfig::default(), 1);
        assert_eq!(c.insert(5, entry(key(1))), InsertOutcome::Inserted);
        assert_eq!(c.insert(5, entry(key(2))), InsertOutcome::Inserted);
        assert_eq!(c.len(), 2);
        let g = c.get(&key(1)).unwrap();
        assert_eq!(
            (g.irs, g.iss, g.created, g.next_rexmt),
            (1000, 2000, 5, 5 + SEC)
        );
        assert!(c.get(&key(3)).is_none());
        assert_eq!(c.take(&key(1)).unwrap().key, key(1));
        assert!(c.take(&key(1)).is_none());
        assert_eq!(c.remove(&key(2)).unwrap().key, key(2));
        assert!(c.is_empty());
        assert_eq!(c.next_timeout(), None);
        let s = c.stats();
        assert_eq!((s.added, s.completed), (2, 1));
    }

    #[test]
    fn duplicate_syn_refreshes_entry() {
        let mut c = SynCache::new(SynCacheConfig::default(), 1);
        c.insert(0, entry(key(1)));
        let mut out = Vec::new();
        c.expire(SEC, &mut out);
        assert_eq!(c.get(&key(1)).unwrap().rexmits, 1);
        let mut dup = entry(key(1));
        dup.iss = 9999;
        dup.ts_recent = Some(88);
        assert_eq!(c.insert(SEC + 5, dup), InsertOutcome::ReplacedDuplicate);
        let e = c.get(&key(1)).unwrap();
        assert_eq!((e.iss, e.ts_recent, e.rexmits), (2000, Some(88), 0));
        assert_eq!((e.created, e.next_rexmt), (0, 2 * SEC + 5));
        assert_eq!(c.next_timeout(), Some(2 * SEC + 5));
        // A duplicate without timestamps turns them off.
        dup.ts_recent = None;
        c.insert(SEC + 6, dup);
        assert_eq!(c.get(&key(1)).unwrap().ts_recent, None);
        assert_eq!(c.len(), 1);
        assert_eq!(
            (c.stats().dupsyn, c.stats().sndacks, c.stats().added),
            (2, 2, 1)
        );
    }

    #[test]
    fn bucket_overflow_evicts_oldest() {
        let mut c = small(1, 3, 100);
        for i in 0..3 {
            assert_eq!(c.insert(i, entry(key(i as u32))), InsertOutcome::Inserted);
        }
        assert_eq!(
            c.insert(10, entry(key(10))),
            InsertOutcome::BucketOverflow { evicted: key(0) }
        );
        assert!(c.get(&key(0)).is_none());
        assert!(c.get(&key(10)).is_some());
        assert_eq!(
            c.insert(11, entry(key(11))),
            InsertOutcome::BucketOverflow { evicted: key(1) }
        );
        assert_eq!(c.len(), 3);
        assert_eq!(c.stats().bucketoverflow, 2);
        // The evicted entries' timers are gone: the earliest is key(2)'s.
        assert_eq!(c.next_timeout(), Some(2 + SEC));
    }

    #[test]
    fn cache_full_inserts_nothing() {
        let mut c = small(64, 30, 4);
        for i in 0..4 {
            assert_eq!(c.insert(0, entry(key(i))), InsertOutcome::Inserted);
        }
        assert_eq!(c.insert(0, entry(key(99))), InsertOutcome::CacheFull);
        assert!(c.get(&key(99)).is_none());
        assert_eq!(c.len(), 4);
        assert_eq!(c.stats().cacheoverflow, 1);
        // A duplicate of a cached entry is still answered.
        assert_eq!(c.insert(1, entry(key(2))), InsertOutcome::ReplacedDuplicate);
        c.take(&key(0));
        assert_eq!(c.insert(0, entry(key(99))), InsertOutcome::Inserted);
    }

    #[test]
    fn retransmit_schedule_then_expiry() {
        let mut c = SynCache::new(SynCacheConfig::default(), 3);
        let t0 = 1_000;
        c.insert(t0, entry(key(1)));
        let mut out = Vec::new();
        // Intervals 1 s, 2.2 s, 4.2 s: retransmits at +1 s, +3.2 s, +7.4 s; expiry 8.2 s
        // later.
        let ms = SEC / 1000;
        let mut t = t0;
        for (n, interval) in [(1u8, SEC), (2, 2200 * ms), (3, 4200 * ms)] {
            assert_eq!(c.next_timeout(), Some(t + interval));
            c.expire(t + interval - 1, &mut out);
            assert!(out.is_empty(), "fired early");
            t += interval;
            c.expire(t, &mut out);
            assert_eq!(out, vec![SynCacheEvent::Retransmit(key(1))]);
            out.clear();
            assert_eq!(c.get(&key(1)).unwrap().rexmits, n);
        }
        assert_eq!(t, t0 + 7400 * ms);
        assert_eq!(c.next_timeout(), Some(t0 + 15600 * ms));
        c.expire(t0 + 15600 * ms - 1, &mut out);
        assert!(out.is_empty());
        c.expire(t0 + 15600 * ms, &mut out);
        assert_eq!(out, vec![SynCacheEvent::Expired(key(1))]);
        assert!(c.is_empty());
        assert_eq!(c.next_timeout(), None);
        assert_eq!((c.stats().retransmitted, c.stats().stale), (3, 1));
    }

    #[test]
    fn next_timeout_tracks_removals_across_buckets() {
        let mut c = small(4, 30, 100);
        for i in 0..20u32 {
            c.insert(u64::from(i) * 10, entry(key(i)));
        }
        for i in 0..20u32 {
            assert_eq!(c.next_timeout(), Some(u64::from(i) * 10 + SEC));
            c.take(&key(i));
        }
        assert_eq!(c.next_timeout(), None);
        // Many inserts/removals keep the heap bounded.
        for round in 0..50u64 {
            for i in 0..20u32 {
                c.insert(round * 1000 + u64::from(i), entry(key(i)));
            }
            for i in (0..20u32).rev() {
                c.remove(&key(i));
            }
        }
        assert!(c.timers.len() <= 2 * 4 + 64);
        assert_eq!(c.next_timeout(), None);
    }

    #[test]
    fn expire_handles_many_entries() {
        let mut c = small(8, 30, 1000);
        for i in 0..100u32 {
            c.insert(u64::from(i % 3), entry(key(i)));
        }
        let mut out = Vec::new();
        c.expire(SEC + 2, &mut out);
        assert_eq!(out.len(), 100);
        assert!(out
            .iter()
            .all(|e| matches!(e, SynCacheEvent::Retransmit(_))));
        out.clear();
        c.expire(100 * SEC, &mut out);
        // One more retransmit is due (its time passed), none expire yet: the timer runs once.
        assert_eq!(out.len(), 100);
        out.clear();
        c.expire(200 * SEC, &mut out);
        c.expire(300 * SEC, &mut out);
        assert_eq!(
            out.iter()
                .filter(|e| matches!(e, SynCacheEvent::Expired(_)))
                .count(),
            100
        );
        assert!(c.is_empty());
    }

    fn cookies() -> (SynCookies, Xoshiro256PlusPlus) {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(9);
        (SynCookies::new(0, &mut rng), rng)
    }

    fn key6() -> ConnKey {
        ConnKey::new(
            "[fd00::1]:443".parse().unwrap(),
            "[2001:db8::7]:51000".parse().unwrap(),
        )
    }

    #[test]
    fn cookie_round_trips_all_combinations() {
        let (ck, _) = cookies();
        for k in [key(1), key6()] {
            for &mss in &SYNCOOKIE_MSSTAB {
                for ws in std::iter::once(None).chain(SYNCOOKIE_WSTAB[1..].iter().map(|&w| Some(w)))
                {
                    for sack in [false, true] {
                        let irs = 0xdead_beef ^ u32::from(mss);
                        let iss = ck.generate(&k, irs, mss, ws, sack);
                        let info = ck.check(&k, irs, iss).expect("valid cookie");
                        assert_eq!(
                            info,
                            CookieInfo {
                                mss,
                                wscale: ws,
                                sack_ok: sack
                            }
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn cookie_rounds_down() {
        let (ck, _) = cookies();
        let k = key(1);
        let iss = ck.generate(&k, 1, 1459, Some(14), true);
        assert_eq!(
            ck.check(&k, 1, iss),
            Some(CookieInfo {
                mss: 1452,
                wscale: Some(8),
                sack_ok: true
            })
        );
        let iss = ck.generate(&k, 1, 9000, Some(5), false);
        assert_eq!(
            ck.check(&k, 1, iss),
            Some(CookieInfo {
                mss: 1460,
                wscale: Some(4),
                sack_ok: false
            })
        );
        let iss = ck.generate(&k, 1, 100, Some(3), false);
        assert_eq!(ck.check(&k, 1, iss).unwrap().mss, 216);
        assert_eq!(ck.check(&k, 1, iss).unwrap().wscale, Some(2));
    }

    #[test]
    fn cookie_bound_to_tuple_and_irs() {
        let (ck, _) = cookies();
        let k = key(1);
        let iss = ck.generate(&k, 5000, 1460, Some(7), true);
        assert!(ck.check(&k, 5000, iss).is_some());
        assert!(ck.check(&k, 5001, iss).is_none());
        assert!(ck.check(&key(2), 5000, iss).is_none());
        let mut other_port = k;
        other_port.remote.set_port(40001);
        assert!(ck.check(&other_port, 5000, iss).is_none());
        let mut other_local = k;
        other_local.local.set_port(81);
        assert!(ck.check(&other_local, 5000, iss).is_none());
    }

    #[test]
    fn cookie_survives_one_rotation_not_two() {
        let (mut ck, mut rng) = cookies();
        let k = key6();
        let iss = ck.generate(&k, 1, 1460, None, false);
        assert!(!ck.maybe_rotate(SYNCOOKIE_LIFETIME - 1, &mut rng));
        assert!(ck.maybe_rotate(SYNCOOKIE_LIFETIME, &mut rng));
        assert!(ck.check(&k, 1, iss).is_some());
        // A cookie made with the new secret is valid too.
        let iss2 = ck.generate(&k, 1, 1460, None, false);
        assert_ne!(iss & 0x80, iss2 & 0x80);
        assert!(ck.check(&k, 1, iss2).is_some());
        assert!(!ck.maybe_rotate(2 * SYNCOOKIE_LIFETIME - 1, &mut rng));
        assert!(ck.maybe_rotate(2 * SYNCOOKIE_LIFETIME, &mut rng));
        assert!(ck.check(&k, 1, iss).is_none());
        assert!(ck.check(&k, 1, iss2).is_some());
    }

    #[test]
    fn cookie_dies_after_long_idle_gap() {
        let (mut ck, mut rng) = cookies();
        let k = key(3);
        let iss = ck.generate(&k, 1, 1460, None, false);
        assert!(ck.maybe_rotate(100 * SEC, &mut rng));
        assert!(ck.check(&k, 1, iss).is_none());
    }

    fn arb_key() -> impl Strategy<Value = ConnKey> {
        let v4 =
            (any::<u32>(), any::<u32>(), any::<u16>(), any::<u16>()).prop_map(|(a, b, p, q)| {
                ConnKey::new(
                    SocketAddr::new(IpAddr::V4(Ipv4Addr::from(a)), p),
                    SocketAddr::new(IpAddr::V4(Ipv4Addr::from(b)), q),
                )
            });
        let v6 =
            (any::<u128>(), any::<u128>(), any::<u16>(), any::<u16>()).prop_map(|(a, b, p, q)| {
                ConnKey::new(
                    SocketAddr::new(IpAddr::V6(Ipv6Addr::from(a)), p),
                    SocketAddr::new(IpAddr::V6(Ipv6Addr::from(b)), q),
                )
            });
        prop_oneof![v4, v6]
    }

    proptest! {
        // A false accept needs a 24-bit MAC collision (probability 2^-24 per case).
        #[test]
        fn cookie_bit_flips_rejected(
            k in arb_key(),
            irs in any::<u32>(),
            mss in any::<u16>(),
            ws in proptest::option::of(0u8..=14),
            sack in any::<bool>(),
            bit in 0u32..32,
            seed in any::<u64>(),
        ) {
            let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
            let ck = SynCookies::new(0, &mut rng);
            let iss = ck.generate(&k, irs, mss, ws, sack);
            prop_assert!(ck.check(&k, irs, iss).is_some());
            prop_assert!(ck.check(&k, irs, iss ^ (1 << bit)).is_none());
            prop_assert!(ck.check(&k, irs ^ (1 << bit), iss).is_none());
        }
    }
}
