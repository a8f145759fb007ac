//! IP fragment reassembly (RFC 791 for IPv4, RFC 8200 4.5 for IPv6), sans-IO.
//!
//! The receive path hands every packet that `wire` refuses as a fragment to
//! [`Reassembler::input`]; a datagram whose fragments have all arrived comes back whole, its
//! header rebuilt as if it had never been fragmented, and goes through the receive path
//! again. Everything a peer sends here is hostile, so:
//!
//! - memory is bounded: at most [`FragLimits::max_datagrams`] datagrams in reassembly, at
//!   most [`FragLimits::max_frags`] fragments each, [`FragLimits::max_bytes`] bytes held in
//!   all; a new datagram beyond the limit evicts the oldest (FreeBSD's ipq reuse);
//! - time is bounded: a datagram not complete within [`FragLimits::v4_timeout`] (IPv4, 30 s as
//!   FreeBSD's IPFRAGTTL) or [`FragLimits::v6_timeout`] (IPv6, 60 s as RFC 8200) is dropped;
//! - overlapping fragments make the whole datagram, and any fragment of it still to come,
//!   dropped silently until its timer runs out (RFC 5722; applied to IPv4 as well). An exact
//!   duplicate of a fragment already held is just dropped (RFC 8200 4.5 allows it; links
//!   duplicate packets);
//! - an IPv6 "atomic fragment" (offset 0, M clear) is processed at once, apart from any
//!   other fragments with its identification (RFC 6946);
//! - a non-final fragment whose length is not a multiple of 8, a datagram longer than
//!   65,535 bytes, and an IPv6 first fragment without the whole header chain (RFC 7112) are
//!   dropped.
//!
//! No ICMP time-exceeded is sent when reassembly gives up (RFC 8200 says "should"; the host
//! sends no ICMP yet).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

const SEC: u64 = 1_000_000_000;
const IPV6_HLEN: usize = 40;
const FRAG_HLEN: usize = 8;
const IPPROTO_HOPOPTS: u8 = 0;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_ROUTING: u8 = 43;
const IPPROTO_FRAGMENT: u8 = 44;
const IPPROTO_DSTOPTS: u8 = 60;

/// How much reassembly may hold.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct FragLimits {
    pub max_datagrams: usize,
    /// Fragments per datagram (FreeBSD net.inet.ip.maxfragsperpacket).
    pub max_frags: usize,
    /// Payload bytes held over all datagrams.
    pub max_bytes: usize,
    pub v4_timeout: u64,
    pub v6_timeout: u64,
}

impl Default for FragLimits {
    fn default() -> Self {
        FragLimits {
            max_datagrams: 256,
            max_frags: 16,
            max_bytes: 4 << 20,
            v4_timeout: 30 * SEC,
            v6_timeout: 60 * SEC,
        }
    }
}

/// What happened to fragments (FreeBSD ipstat / ip6stat names).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct FragStats {
    /// Fragments received (ips_fragments).
    pub fragments: u64,
    /// Datagrams reassembled (ips_reassembled), atomic fragments included.
    pub reassembled: u64,
    /// Fragments dropped: malformed, duplicates, over a limit, or of a poisoned datagram
    /// (ips_fragdropped).
    pub dropped: u64,
    /// Datagrams given up when their timer ran out (ips_fragtimeout).
    pub timeouts: u64,
    /// Datagrams dropped for overlapping fragments (RFC 5722).
    pub overlaps: u64,
    /// Datagrams evicted to make room for a new one.
    pub evicted: u64,
}

/// What [`Reassembler::input`] did with a packet.
#[derive(Debug, PartialEq, Eq)]
pub enum FragOutcome {
    /// Held until the rest arrives.
    Held,
    /// The datagram is whole: an IP packet with no fragmentation left in it.
    Complete(Vec<u8>),
    /// Dropped (counted in [`FragStats`]).
    Dropped,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
struct FragKey {
    src: IpAddr,
    dst: IpAddr,
    /// IPv4's protocol (part of its key); 0 for IPv6, whose key is the addresses and id.
    proto: u8,
    id: u32,
}

/// One fragment, as the IP header describes it.
struct Fragment<'a> {
    key: FragKey,
    /// Byte offset of `data` in the datagram's fragmentable part.
    offset: usize,
    more: bool,
    data: &'a [u8],
    /// The unfragmentable part (IPv4 header; IPv6 base and extension headers before the
    /// fragment header), taken from the first fragment.
    head: &'a [u8],
    /// IPv6: where in `head` the next-header byte that named the fragment header is, and
    /// the fragment header's own next header.
    v6: Option<(usize, u8)>,
}

struct Datagram {
    deadline: u64,
    /// The rebuilt header, once the first fragment came.
    head: Option<Vec<u8>>,
    v6: Option<(usize, u8)>,
    /// Received ranges (start, end), sorted, disjoint.
    ranges: Vec<(usize, usize)>,
    data: Vec<u8>,
    /// The datagram's length, once the last fragment came.
    total: Option<usize>,
    /// Fragments taken so far.
    frags: usize,
    /// Overlap seen: everything of it is dropped until `deadline`.
    poisoned: bool,
}

impl Datagram {
    /// Nothing received yet; dropped at `deadline`.
    fn new(deadline: u64) -> Self {
        Datagram {
            deadline,
            head: None,
            v6: None,
            ranges: Vec::new(),
            data: Vec::new(),
            total: None,
            frags: 0,
            poisoned: false,
        }
    }

    fn held(&self) -> usize {
        self.data.len() + self.head.as_ref().map_or(0, Vec::len)
    }

    fn complete(&self) -> bool {
        matches!(self.total, Some(t) if self.head.is_some()
            && self.ranges.len() == 1
            && self.ranges[0] == (0, t))
    }
}

/// Reassembly state for one host.
#[derive(Default)]
pub struct Reassembler {
    limits: FragLimits,
    queues: HashMap<FragKey, Datagram>,
    bytes: usize,
    /// Earliest deadline of any datagram (u64::MAX: none), so expiry costs nothing when
    /// nothing is due.
    next_deadline: u64,
    pub stats: FragStats,
}

impl Reassembler {
    pub fn new(limits: FragLimits) -> Self {
        Reassembler {
            limits,
            queues: HashMap::new(),
            bytes: 0,
            next_deadline: u64::MAX,
            stats: FragStats::default(),
        }
    }

    /// Datagrams in reassembly.
    pub fn len(&self) -> usize {
        self.queues.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queues.is_empty()
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// When [`Reassembler::expire`] next has work.
    pub fn next_timeout(&self) -> Option<u64> {
        (self.next_deadline != u64::MAX).then_some(self.next_deadline)
    }

    /// Drops datagrams whose time ran out.
    pub fn expire(&mut self, now: u64) {
        if now < self.next_deadline {
            return;
        }
        let mut freed = 0;
        let mut timeouts = 0;
        self.queues.retain(|_, d| {
            if d.deadline > now {
                return true;
            }
            freed += d.held();
            timeouts += u64::from(!d.poisoned);
            false
        });
        self.bytes -= freed;
        self.stats.timeouts += timeouts;
        self.recompute_deadline();
    }

    fn recompute_deadline(&mut self) {
        self.next_deadline = self
            .queues
            .values()
            .map(|d| d.deadline)
            .min()
            .unwrap_or(u64::MAX);
    }

    /// One packet that `wire` found to be a fragment (or that carries an IPv6 fragment
    /// header).
    pub fn input(&mut self, now: u64, pkt: &[u8]) -> FragOutcome {
        self.stats.fragments += 1;
        let Some(f) = parse(pkt) else {
            self.stats.dropped += 1;
            return FragOutcome::Dropped;
        };
        if f.v6.is_some() && f.offset == 0 && !f.more {
            // RFC 6946: an atomic fragment is a whole datagram.
            self.stats.reassembled += 1;
            return FragOutcome::Complete(rebuild(f.head, f.v6, f.data));
        }
        if f.more && f.data.len() % 8 != 0 || f.offset + f.data.len() > max_len(&f) {
            self.stats.dropped += 1;
            return FragOutcome::Dropped;
        }
        let timeout = if f.v6.is_some() {
            self.limits.v6_timeout
        } else {
            self.limits.v4_timeout
        };
        if !self.queues.contains_key(&f.key) {
            self.make_room(f.data.len() + f.head.len());
            self.queues
                .insert(f.key, Datagram::new(now.saturating_add(timeout)));
            self.next_deadline = self.next_deadline.min(now.saturating_add(timeout));
        }
        let limits = self.limits;
        let Some(d) = self.queues.get_mut(&f.key) else {
            self.stats.dropped += 1;
            return FragOutcome::Dropped;
        };
        if d.poisoned {
            self.stats.dropped += 1;
            return FragOutcome::Dropped;
        }
        let (start, end) = (f.offset, f.offset + f.data.len());
        if d.ranges.contains(&(start, end)) {
            // An exact duplicate (the link copied it): nothing new.
            self.stats.dropped += 1;
            return FragOutcome::Dropped;
        }
        let overlaps = d.ranges.iter().any(|&(s, e)| start < e && s < end)
            // A second "last" fragment that disagrees, or data past the known end.
            || (!f.more && d.total.is_some_and(|t| t != end))
            || d.total.is_some_and(|t| end > t)
            || (!f.more && d.ranges.iter().any(|&(_, e)| e > end));
        if overlaps || d.frags >= limits.max_frags {
            if overlaps {
                self.stats.overlaps += 1;
            }
            // Keep the key, poisoned, so the rest of it is dropped too; free its bytes.
            self.bytes -= d.held();
            *d = Datagram {
                poisoned: true,
                ..Datagram::new(d.deadline)
            };
            self.stats.dropped += 1;
            return FragOutcome::Dropped;
        }
        if self.bytes + f.data.len() + f.head.len() > limits.max_bytes {
            self.stats.dropped += 1;
            return FragOutcome::Dropped;
        }
        let before = d.held();
        d.frags += 1;
        if d.data.len() < end {
            d.data.resize(end, 0);
        }
        d.data[start..end].copy_from_slice(f.data);
        let at = d.ranges.partition_point(|&(s, _)| s < start);
        d.ranges.insert(at, (start, end));
        // Merge neighbours that touch.
        let mut merged: Vec<(usize, usize)> = Vec::with_capacity(d.ranges.len());
        for &(s, e) in &d.ranges {
            match merged.last_mut() {
                Some(last) if last.1 == s => last.1 = e,
                _ => merged.push((s, e)),
            }
        }
        d.ranges = merged;
        if !f.more {
            d.total = Some(end);
        }
        if f.offset == 0 {
            d.head = Some(f.head.to_vec());
            d.v6 = f.v6;
        }
        self.bytes += d.held() - before;
        if !d.complete() {
            return FragOutcome::Held;
        }
        let Some(d) = self.queues.remove(&f.key) else {
            return FragOutcome::Held;
        };
        self.bytes -= d.held();
        if d.deadline == self.next_deadline {
            self.recompute_deadline();
        }
        self.stats.reassembled += 1;
        let head = d.head.unwrap_or_default();
        FragOutcome::Complete(rebuild(&head, d.v6, &d.data))
    }

    /// Evicts the datagrams closest to their deadline until one more (of `need` bytes)
    /// fits.
    fn make_room(&mut self, need: usize) {
        while !self.queues.is_empty()
            && (self.queues.len() >= self.limits.max_datagrams
                || self.bytes + need > self.limits.max_bytes)
        {
            let Some(oldest) = self
                .queues
                .iter()
                .min_by_key(|(_, d)| d.deadline)
                .map(|(k, _)| *k)
            else {
                break;
            };
            if let Some(d) = self.queues.remove(&oldest) {
                self.bytes -= d.held();
                self.stats.evicted += 1;
            }
        }
        self.recompute_deadline();
    }
}

/// The largest fragmentable part a datagram may have: 65,535 bytes in all for IPv4, a
/// 65,535-byte payload for IPv6 (no jumbograms).
fn max_len(f: &Fragment<'_>) -> usize {
    match f.v6 {
        Some(_) => 65_535usize.saturating_sub(f.head.len() - IPV6_HLEN),
        None => 65_535usize.saturating_sub(f.head.len()),
    }
}

fn parse(pkt: &[u8]) -> Option<Fragment<'_>> {
    match pkt.first()? >> 4 {
        4 => parse_v4(pkt),
        6 => parse_v6(pkt),
        _ => None,
    }
}

fn parse_v4(pkt: &[u8]) -> Option<Fragment<'_>> {
    let hlen = usize::from(pkt.first()? & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([*pkt.get(2)?, *pkt.get(3)?]));
    if hlen < 20 || total < hlen || total > pkt.len() {
        return None;
    }
    // The header checksum: a corrupted header must not poison another datagram.
    if !crate::wire::ip_header_sum_ok(&pkt[..hlen]) {
        return None;
    }
    let frag = u16::from_be_bytes([pkt[6], pkt[7]]);
    let src: [u8; 4] = pkt[12..16].try_into().ok()?;
    let dst: [u8; 4] = pkt[16..20].try_into().ok()?;
    Some(Fragment {
        key: FragKey {
            src: IpAddr::V4(Ipv4Addr::from(src)),
            dst: IpAddr::V4(Ipv4Addr::from(dst)),
            proto: pkt[9],
            id: u32::from(u16::from_be_bytes([pkt[4], pkt[5]])),
        },
        offset: usize::from(frag & 0x1fff) * 8,
        more: frag & 0x2000 != 0,
        data: &pkt[hlen..total],
        head: &pkt[..hlen],
        v6: None,
    })
}

fn parse_v6(pkt: &[u8]) -> Option<Fragment<'_>> {
    if pkt.len() < IPV6_HLEN {
        return None;
    }
    let end = IPV6_HLEN + usize::from(u16::from_be_bytes([pkt[4], pkt[5]]));
    if end > pkt.len() {
        return None;
    }
    let mut next = pkt[6];
    let mut nh_pos = 6;
    let mut off = IPV6_HLEN;
    // The unfragmentable headers, up to the fragment header.
    while next != IPPROTO_FRAGMENT {
        match next {
            IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS => {
                let hdr = pkt.get(off..off + 2).filter(|_| off + 2 <= end)?;
                let len = (usize::from(hdr[1]) + 1) * 8;
                if off + len > end {
                    return None;
                }
                next = hdr[0];
                nh_pos = off;
                off += len;
            }
            _ => return None,
        }
    }
    let fh = pkt
        .get(off..off + FRAG_HLEN)
        .filter(|_| off + FRAG_HLEN <= end)?;
    let frag = u16::from_be_bytes([fh[2], fh[3]]);
    let offset = usize::from(frag >> 3) * 8;
    let data = &pkt[off + FRAG_HLEN..end];
    // RFC 7112: the first fragment carries the whole header chain; for TCP, the 20-byte
    // header at least.
    if offset == 0 && !first_has_header_chain(fh[0], data) {
        return None;
    }
    let src: [u8; 16] = pkt[8..24].try_into().ok()?;
    let dst: [u8; 16] = pkt[24..40].try_into().ok()?;
    Some(Fragment {
        key: FragKey {
            src: IpAddr::V6(Ipv6Addr::from(src)),
            dst: IpAddr::V6(Ipv6Addr::from(dst)),
            proto: 0,
            id: u32::from_be_bytes([fh[4], fh[5], fh[6], fh[7]]),
        },
        offset,
        more: frag & 1 != 0,
        data,
        head: &pkt[..off],
        v6: Some((nh_pos, fh[0])),
    })
}

fn first_has_header_chain(mut next: u8, data: &[u8]) -> bool {
    let mut off = 0;
    loop {
        match next {
            IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS => {
                let Some(hdr) = data.get(off..off + 2) else {
                    return false;
                };
                next = hdr[0];
                off += (usize::from(hdr[1]) + 1) * 8;
            }
            IPPROTO_TCP => return data.len() >= off + 20,
            IPPROTO_FRAGMENT => return false,
            // Not TCP: the receive path drops it anyway; nothing to check.
            _ => return true,
        }
    }
}

/// The datagram as if never fragmented: the first fragment's header with the lengths set
/// and the fragmentation gone (IPv4: MF and offset cleared, checksum redone; IPv6: the
/// fragment header left out and the next-header byte that named it pointing past it).
fn rebuild(head: &[u8], v6: Option<(usize, u8)>, data: &[u8]) -> Vec<u8> {
    let mut pkt = Vec::with_capacity(head.len() + data.len());
    pkt.extend_from_slice(head);
    pkt.extend_from_slice(data);
    match v6 {
        Some((nh_pos, next)) => {
            pkt[nh_pos] = next;
            // The caller checked the length fits (max_len).
            let plen = (pkt.len() - IPV6_HLEN) as u16;
            pkt[4..6].copy_from_slice(&plen.to_be_bytes());
        }
        None => {
            let total = pkt.len() as u16;
            pkt[2..4].copy_from_slice(&total.to_be_bytes());
            pkt[6] &= 0x40; // keep DF, clear MF and the offset
            pkt[7] = 0;
            pkt[10] = 0;
            pkt[11] = 0;
            let sum = crate::wire::ip_header_checksum(&pkt[..head.len()]);
            pkt[10..12].copy_from_slice(&sum);
        }
    }
    pkt
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4_fragments(payload: &[u8], sizes: &[usize], id: u16) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut off = 0;
        for (i, &n) in sizes.iter().enumerate() {
            let more = i + 1 < sizes.len();
            let mut p = vec![0u8; 20];
            p[0] = 0x45;
            let total = (20 + n) as u16;
            p[2..4].copy_from_slice(&total.to_be_bytes());
            p[4..6].copy_from_slice(&id.to_be_bytes());
            let frag = ((off / 8) as u16) | if more { 0x2000 } else { 0 };
            p[6..8].copy_from_slice(&frag.to_be_bytes());
            p[8] = 64;
            p[9] = 6;
            p[12..16].copy_from_slice(&[10, 0, 0, 1]);
            p[16..20].copy_from_slice(&[10, 0, 0, 2]);
            let sum = crate::wire::ip_header_checksum(&p);
            p[10..12].copy_from_slice(&sum);
            p.extend_from_slice(&payload[off..off + n]);
            out.push(p);
            off += n;
        }
        out
    }

    fn v6_fragment(payload: &[u8], off: usize, n: usize, more: bool, id: u32) -> Vec<u8> {
        let mut p = vec![0u8; 48];
        p[0] = 0x60;
        p[4..6].copy_from_slice(&((8 + n) as u16).to_be_bytes());
        p[6] = IPPROTO_FRAGMENT;
        p[7] = 64;
        p[8] = 0xfd;
        p[23] = 1;
        p[24] = 0xfd;
        p[39] = 2;
        p[40] = IPPROTO_TCP;
        let frag = ((off / 8) as u16) << 3 | u16::from(more);
        p[42..44].copy_from_slice(&frag.to_be_bytes());
        p[44..48].copy_from_slice(&id.to_be_bytes());
        p.extend_from_slice(&payload[off..off + n]);
        p
    }

    fn payload(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 + 3) as u8).collect()
    }

    #[test]
    fn v4_in_any_order() {
        let data = payload(40);
        let frags = v4_fragments(&data, &[16, 16, 8], 9);
        for order in [[0, 1, 2], [2, 1, 0], [1, 2, 0]] {
            let mut r = Reassembler::new(FragLimits::default());
            let mut done = None;
            for &i in &order {
                match r.input(0, &frags[i]) {
                    FragOutcome::Complete(p) => done = Some(p),
                    FragOutcome::Held => {}
                    FragOutcome::Dropped => panic!("dropped"),
                }
            }
            let p = done.expect("complete");
            assert_eq!(&p[20..], &data[..]);
            assert_eq!(u16::from_be_bytes([p[2], p[3]]), 60);
            assert_eq!(p[6] & 0x3f, 0);
            assert_eq!(p[7], 0);
            assert!(crate::wire::ip_header_sum_ok(&p[..20]));
            assert!(r.is_empty());
            assert_eq!(r.bytes(), 0);
        }
    }

    #[test]
    fn overlap_poisons_the_datagram() {
        let data = payload(48);
        let mut r = Reassembler::new(FragLimits::default());
        let a = v4_fragments(&data, &[24, 24], 1);
        // A second fragment that overlaps the first one's end.
        let b = v4_fragments(&data, &[16, 32], 1);
        assert_eq!(r.input(0, &a[0]), FragOutcome::Held);
        assert_eq!(r.input(0, &b[1]), FragOutcome::Dropped);
        // The rest of it is dropped too, even the fragment that would have completed it.
        assert_eq!(r.input(0, &a[1]), FragOutcome::Dropped);
        assert_eq!(r.stats.overlaps, 1);
        assert_eq!(r.bytes(), 0);
        // Until its time runs out.
        r.expire(31 * SEC);
        assert!(r.is_empty());
        assert_eq!(r.input(31 * SEC, &a[0]), FragOutcome::Held);
        assert!(matches!(r.input(31 * SEC, &a[1]), FragOutcome::Complete(_)));
    }

    #[test]
    fn exact_duplicates_are_harmless() {
        let data = payload(32);
        let f = v4_fragments(&data, &[16, 16], 3);
        let mut r = Reassembler::new(FragLimits::default());
        assert_eq!(r.input(0, &f[0]), FragOutcome::Held);
        assert_eq!(r.input(0, &f[0]), FragOutcome::Dropped);
        assert!(matches!(r.input(0, &f[1]), FragOutcome::Complete(_)));
    }

    #[test]
    fn timeout_frees_everything() {
        let data = payload(32);
        let f = v4_fragments(&data, &[16, 16], 4);
        let mut r = Reassembler::new(FragLimits::default());
        r.input(5, &f[0]);
        assert_eq!(r.next_timeout(), Some(5 + 30 * SEC));
        r.expire(5 + 30 * SEC - 1);
        assert_eq!(r.len(), 1);
        r.expire(5 + 30 * SEC);
        assert!(r.is_empty());
        assert_eq!(
            (r.stats.timeouts, r.bytes(), r.next_timeout()),
            (1, 0, None)
        );
    }

    #[test]
    fn limits_bound_memory() {
        let limits = FragLimits {
            max_datagrams: 8,
            max_frags: 4,
            max_bytes: 1000,
            ..Default::default()
        };
        let mut r = Reassembler::new(limits);
        let data = payload(400);
        for id in 0..100u16 {
            let f = v4_fragments(&data, &[200, 200], id);
            r.input(u64::from(id), &f[0]);
            assert!(r.len() <= 8);
            assert!(r.bytes() <= 1000);
        }
        // Too many fragments for one datagram.
        let mut r = Reassembler::new(limits);
        let f = v4_fragments(&data, &[8; 50], 1);
        let held = f
            .iter()
            .map(|p| r.input(0, p))
            .filter(|o| *o == FragOutcome::Held)
            .count();
        assert_eq!(held, 4);
        // Odd-sized middle fragments and oversize datagrams are refused.
        let mut bad = v4_fragments(&data, &[13, 387], 2);
        assert_eq!(r.input(0, &bad[0]), FragOutcome::Dropped);
        bad[1][6] = 0x1f; // offset 8184*8: past 65,535
        bad[1][7] = 0xff;
        bad[1][10] = 0;
        bad[1][11] = 0;
        let sum = crate::wire::ip_header_checksum(&bad[1][..20]);
        bad[1][10..12].copy_from_slice(&sum);
        assert_eq!(r.input(0, &bad[1]), FragOutcome::Dropped);
    }

    #[test]
    fn v6_fragments_and_atomic() {
        let mut tcp = payload(48);
        tcp[12] = 0x50;
        let mut r = Reassembler::new(FragLimits::default());
        assert_eq!(
            r.input(0, &v6_fragment(&tcp, 24, 24, false, 77)),
            FragOutcome::Held
        );
        let FragOutcome::Complete(p) = r.input(0, &v6_fragment(&tcp, 0, 24, true, 77)) else {
            panic!("not complete")
        };
        assert_eq!(p[6], IPPROTO_TCP);
        assert_eq!(u16::from_be_bytes([p[4], p[5]]), 48);
        assert_eq!(&p[40..], &tcp[..]);
        // An atomic fragment with the id of a datagram in reassembly is processed alone.
        r.input(0, &v6_fragment(&tcp, 24, 24, false, 78));
        let FragOutcome::Complete(p) = r.input(0, &v6_fragment(&tcp, 0, 48, false, 78)) else {
            panic!("atomic fragment held")
        };
        assert_eq!(&p[40..], &tcp[..]);
        assert_eq!(r.len(), 1);
        // A first fragment without the whole TCP header (RFC 7112).
        assert_eq!(
            r.input(0, &v6_fragment(&tcp, 0, 8, true, 79)),
            FragOutcome::Dropped
        );
    }

    #[test]
    fn garbage_never_panics() {
        let mut r = Reassembler::new(FragLimits::default());
        let mut x: u64 = 0x1234_5678;
        for len in 0..200 {
            let mut p = vec![0u8; len];
            for b in p.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
            if let Some(b) = p.first_mut() {
                *b = if len % 2 == 0 { 0x45 } else { 0x60 };
            }
            let _ = r.input(len as u64, &p);
        }
    }
}
