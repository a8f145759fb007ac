//! The host's socket table: O(1) demux of segments to connections by 4-tuple, listener lookup by
//! local address (exact, then wildcard), bind(2)-like conflict rules and RFC 6056 ephemeral ports.
//!
//! Families are kept apart: an IPv6 wildcard listener (`[::]:p`) does not accept IPv4 segments
//! and IPv4-mapped IPv6 addresses get no special treatment (FreeBSD with `IPV6_V6ONLY` set, its
//! default `net.inet6.ip6.v6only=1`).
//!
//! Bind rules implemented (FreeBSD `in_pcbbind_setup` without `SO_REUSEPORT`):
//! - the IP must be unspecified or one of the host's local addresses, else `EADDRNOTAVAIL`;
//! - the exact (IP, port) of another listener is always `EADDRINUSE`;
//! - without `SO_REUSEADDR`, a binding also conflicts with anything that overlaps it through a
//!   wildcard: a specific bind with a wildcard listener of the same family on that port, a
//!   wildcard bind with any listener of the family on that port, and either with connections
//!   whose local (IP, port) it covers (the classic TIME_WAIT restart case);
//! - with `SO_REUSEADDR`, only the exact-listener conflict remains, so a specific address can be
//!   bound beside a wildcard listener (and the reverse), as on BSD.

use std::collections::{HashMap, HashSet};
use std::hash::Hasher;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use rand::Rng;

use crate::secrets::{sip_key, Entropy, HostRng};
use siphasher::sip::SipHasher24;

use plugtcp_abi::Errno;

/// FreeBSD `net.inet.ip.portrange.first` default.
pub const PORTRANGE_FIRST_DEFAULT: u16 = 10000;
/// FreeBSD `net.inet.ip.portrange.last` default.
pub const PORTRANGE_LAST_DEFAULT: u16 = 65535;
/// Size of the RFC 6056 algorithm 4 table of per-destination-bucket counters.
const PORT_TABLE_SIZE: usize = 256;

pub use crate::conn_table::ConnId;

/// Identifier of a listening socket, allocated by [`SockTable::bind_listener`].
#[derive(Copy, Clone, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct ListenerId(pub u32);

/// A connection's 4-tuple as seen from this host.
///
/// Build it with [`ConnKey::new`] so that IPv6 flow labels, which vary per packet, never split a
/// connection; the IPv6 scope id is kept (link-local addresses on different links differ).
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
pub struct ConnKey {
    pub local: SocketAddr,
    pub remote: SocketAddr,
}

/// Hashes the 4-tuple in as few writes as possible (one for IPv4): demux hashes it for every
/// segment, and the derived impl made a dozen small SipHash writes. Equal keys still hash
/// equal (flow info is cleared by `ConnKey::new`; the scope id is included).
impl std::hash::Hash for ConnKey {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        let ports = (self.local.port() as u128) << 16 | self.remote.port() as u128;
        match (self.local, self.remote) {
            (SocketAddr::V4(l), SocketAddr::V4(r)) => {
                let ips = (u32::from(*l.ip()) as u128) << 32 | u32::from(*r.ip()) as u128;
                h.write_u128(ips << 32 | ports);
            }
            (l, r) => {
                let v6 = |a: SocketAddr| match a {
                    SocketAddr::V6(a) => (u128::from(*a.ip()), a.scope_id()),
                    SocketAddr::V4(a) => (u32::from(*a.ip()) as u128, u32::MAX),
                };
                let ((lip, lscope), (rip, rscope)) = (v6(l), v6(r));
                h.write_u128(lip);
                h.write_u128(rip);
                h.write_u128(ports << 64 | (lscope as u128) << 32 | rscope as u128);
            }
        }
    }
}

impl ConnKey {
    pub fn new(local: SocketAddr, remote: SocketAddr) -> Self {
        ConnKey {
            local: strip_flowinfo(local),
            remote: strip_flowinfo(remote),
        }
    }
}

fn strip_flowinfo(mut a: SocketAddr) -> SocketAddr {
    if let SocketAddr::V6(v6) = &mut a {
        v6.set_flowinfo(0);
    }
    a
}

fn wildcard_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    }
}

/// Feeds an address into a keyed hash in a fixed, endian-independent layout.
pub(crate) fn hash_ip<H: Hasher>(h: &mut H, ip: IpAddr) {
    match ip {
        IpAddr::V4(a) => {
            h.write_u8(4);
            h.write(&a.octets());
        }
        IpAddr::V6(a) => {
            h.write_u8(6);
            h.write(&a.octets());
        }
    }
}

/// A keyed SipHash-2-4 instance; keys come from the caller's seed.
pub(crate) fn sip(key: (u64, u64)) -> SipHasher24 {
    SipHasher24::new_with_keys(key.0, key.1)
}

/// Increments a use count.
fn count_up<K: std::hash::Hash + Eq>(m: &mut HashMap<K, u32>, k: K) {
    *m.entry(k).or_insert(0) += 1;
}

/// Decrements a use count, dropping the entry at zero so the map does not grow without bound.
fn count_down<K: std::hash::Hash + Eq>(m: &mut HashMap<K, u32>, k: K) {
    if let Some(n) = m.get_mut(&k) {
        *n -= 1;
        if *n == 0 {
            m.remove(&k);
        }
    }
}

fn count_of<K: std::hash::Hash + Eq>(m: &HashMap<K, u32>, k: &K) -> u32 {
    m.get(k).copied().unwrap_or(0)
}

/// The socket table. Maps keys to ids only; the host owns the connection and listener objects.
///
/// The maps use std's `RandomState` (SipHash with per-process keys) because the keys are chosen
/// by remote peers; no output of this table depends on map iteration order, so runs stay
/// reproducible from the seed.
pub struct SockTable {
    conns: HashMap<ConnKey, ConnId>,
    /// Listeners keyed by local (IP or the family's unspecified address, port).
    listeners: HashMap<(IpAddr, u16), ListenerId>,
    listener_addrs: HashMap<ListenerId, SocketAddr>,
    /// Listeners per (is IPv6, port), wildcard or specific.
    listener_ports: HashMap<(bool, u16), u32>,
    /// Addresses bound by sockets that have neither listened nor connected yet (bind(2)
    /// before listen or connect), with how many hold each.
    reserved: HashMap<(IpAddr, u16), u32>,
    local_addrs: HashSet<IpAddr>,
    next_listener: u32,
    portrange_first: u16,
    portrange_last: u16,
    /// RFC 6056 algorithm 4: F's key (offset) and G's key (table index), and the counters.
    port_key_f: (u64, u64),
    port_key_g: (u64, u64),
    port_table: [u32; PORT_TABLE_SIZE],
    /// bind(port 0) choices (a CSPRNG: the ports are seen by peers).
    rng: HostRng,
    /// (shards, this shard's index) when the host is one shard of several: active opens
    /// take only local ports whose flows this shard owns ([`crate::steer::shard_of`]).
    shard: Option<(usize, usize)>,
    /// Transparent listeners (IPv4, IPv6): they take SYNs to any address and port that
    /// no connection or other listener takes (a proxy catching what is routed to it).
    transparent: [Option<ListenerId>; 2],
}

impl SockTable {
    /// An empty table; `seed` drives the port-selection secrets and bind(port 0) choices.
    /// Room for `n` connections without rehashing (a capacity hint).
    pub fn reserve(&mut self, n: usize) {
        self.conns.reserve(n);
    }

    pub fn new(seed: u64) -> Self {
        Self::with_rng(Entropy::Seed(seed).rng())
    }

    /// An empty table whose port secrets and bind(port 0) choices come from `rng` (a real
    /// host's is seeded by the operating system, see [`crate::secrets`]).
    pub fn with_rng(mut rng: HostRng) -> Self {
        let port_key_f = sip_key(&mut rng);
        let port_key_g = sip_key(&mut rng);
        SockTable {
            conns: HashMap::new(),
            listeners: HashMap::new(),
            listener_addrs: HashMap::new(),
            listener_ports: HashMap::new(),
            reserved: HashMap::new(),
            local_addrs: HashSet::new(),
            next_listener: 0,
            portrange_first: PORTRANGE_FIRST_DEFAULT,
            portrange_last: PORTRANGE_LAST_DEFAULT,
            port_key_f,
            port_key_g,
            port_table: [0; PORT_TABLE_SIZE],
            rng,
            shard: None,
            transparent: [None; 2],
        }
    }

    /// Makes this the table of shard `index` of `shards`: ephemeral ports for active opens
    /// are only those whose flows steer to it.
    pub fn set_shard(&mut self, shards: usize, index: usize) {
        self.shard = (shards > 1).then_some((shards, index));
    }

    /// Adds one of the host's own addresses (bind and connect accept only these).
    pub fn add_local_addr(&mut self, ip: IpAddr) {
        self.local_addrs.insert(ip);
    }

    /// Removes a local address; existing listeners and connections are left alone.
    pub fn remove_local_addr(&mut self, ip: IpAddr) -> bool {
        self.local_addrs.remove(&ip)
    }

    pub fn is_local_addr(&self, ip: IpAddr) -> bool {
        self.local_addrs.contains(&ip)
    }

    /// Sets the ephemeral range (`net.inet.ip.portrange.first/last`); EINVAL if empty or port 0.
    pub fn set_portrange(&mut self, first: u16, last: u16) -> Result<(), Errno> {
        if first == 0 || first > last {
            return Err(Errno::EINVAL);
        }
        self.portrange_first = first;
        self.portrange_last = last;
        Ok(())
    }

    pub fn portrange(&self) -> (u16, u16) {
        (self.portrange_first, self.portrange_last)
    }

    /// Number of connections.
    pub fn len(&self) -> usize {
        self.conns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    pub fn listener_count(&self) -> usize {
        self.listener_addrs.len()
    }

    /// Demux of an incoming segment: one hash lookup, no allocation.
    pub fn lookup_conn(&self, key: &ConnKey) -> Option<ConnId> {
        self.conns.get(key).copied()
    }

    /// Listener for a segment to `local`: the exact address first, then the wildcard of the same
    /// family. At most two hash lookups, no allocation.
    pub fn lookup_listener(&self, local: SocketAddr) -> Option<ListenerId> {
        let port = local.port();
        self.listeners
            .get(&(local.ip(), port))
            .or_else(|| self.listeners.get(&(wildcard_of(local.ip()), port)))
            .copied()
            .or(self.transparent[usize::from(local.is_ipv6())])
    }

    /// Binds the family's transparent listener (see `transparent`); EADDRINUSE if it has
    /// one. Its address is the family's unspecified address with port 0.
    pub fn bind_transparent(&mut self, v6: bool) -> Result<ListenerId, Errno> {
        if self.transparent[usize::from(v6)].is_some() {
            return Err(Errno::EADDRINUSE);
        }
        let id = self.alloc_listener_id();
        let ip = if v6 {
            IpAddr::from(std::net::Ipv6Addr::UNSPECIFIED)
        } else {
            IpAddr::from(std::net::Ipv4Addr::UNSPECIFIED)
        };
        self.listener_addrs.insert(id, SocketAddr::new(ip, 0));
        self.transparent[usize::from(v6)] = Some(id);
        Ok(id)
    }

    /// The address a listener was bound to (with the chosen port if it asked for port 0).
    pub fn listener_addr(&self, id: ListenerId) -> Option<SocketAddr> {
        self.listener_addrs.get(&id).copied()
    }

    /// Binds a listener; see the module docs for the rules. Port 0 picks a free port in the
    /// ephemeral range at random (FreeBSD `in_pcb_lport`), EADDRNOTAVAIL if none is free.
    pub fn bind_listener(
        &mut self,
        local: SocketAddr,
        reuse_addr: bool,
    ) -> Result<ListenerId, Errno> {
        let ip = local.ip();
        if !ip.is_unspecified() && !self.local_addrs.contains(&ip) {
            return Err(Errno::EADDRNOTAVAIL);
        }
        let port = if local.port() == 0 {
            self.pick_bind_port(ip, reuse_addr)?
        } else {
            self.bind_conflict(ip, local.port(), reuse_addr)?;
            local.port()
        };
        let id = self.alloc_listener_id();
        let mut addr = strip_flowinfo(local);
        addr.set_port(port);
        self.listeners.insert((ip, port), id);
        self.listener_addrs.insert(id, addr);
        count_up(&mut self.listener_ports, (ip.is_ipv6(), port));
        Ok(id)
    }

    /// bind(2) for a socket that will listen or connect later: checks `local` as a listener
    /// bind would (EADDRNOTAVAIL, EADDRINUSE; port 0 picks one) and holds it until
    /// [`SockTable::release_addr`]. Returns the address with its port.
    pub fn reserve_addr(
        &mut self,
        local: SocketAddr,
        reuse_addr: bool,
    ) -> Result<SocketAddr, Errno> {
        let ip = local.ip();
        if !ip.is_unspecified() && !self.local_addrs.contains(&ip) {
            return Err(Errno::EADDRNOTAVAIL);
        }
        let port = if local.port() == 0 {
            self.pick_bind_port(ip, reuse_addr)?
        } else {
            self.bind_conflict(ip, local.port(), reuse_addr)?;
            local.port()
        };
        count_up(&mut self.reserved, (ip, port));
        let mut addr = strip_flowinfo(local);
        addr.set_port(port);
        Ok(addr)
    }

    /// Gives up an address held by [`SockTable::reserve_addr`].
    pub fn release_addr(&mut self, local: SocketAddr) {
        count_down(&mut self.reserved, (local.ip(), local.port()));
    }

    /// Whether a socket holds `port` on `ip` (exactly or through a wildcard) by bind(2).
    fn port_reserved(&self, ip: IpAddr, port: u16) -> bool {
        !self.reserved.is_empty()
            && (self.reserved.contains_key(&(ip, port))
                || self.reserved.contains_key(&(wildcard_of(ip), port))
                || (ip.is_unspecified()
                    && self
                        .reserved
                        .keys()
                        .any(|(i, p)| *p == port && i.is_ipv6() == ip.is_ipv6())))
    }

    /// Removes a listener, returning the address it held.
    pub fn remove_listener(&mut self, id: ListenerId) -> Option<SocketAddr> {
        let addr = self.listener_addrs.remove(&id)?;
        let family = usize::from(addr.is_ipv6());
        if self.transparent[family] == Some(id) {
            self.transparent[family] = None;
            return Some(addr);
        }
        self.listeners.remove(&(addr.ip(), addr.port()));
        count_down(&mut self.listener_ports, (addr.ip().is_ipv6(), addr.port()));
        Some(addr)
    }

    /// Registers a connection; EADDRINUSE if the 4-tuple is taken, EAFNOSUPPORT if the local and
    /// remote families differ.
    pub fn insert_conn(&mut self, key: ConnKey, id: ConnId) -> Result<(), Errno> {
        if key.local.is_ipv4() != key.remote.is_ipv4() {
            return Err(Errno::EAFNOSUPPORT);
        }
        // Out of memory for the table is this caller's ENOBUFS, not the host's abort.
        self.conns.try_reserve(1).map_err(|_| Errno::ENOBUFS)?;
        match self.conns.entry(key) {
            std::collections::hash_map::Entry::Occupied(_) => return Err(Errno::EADDRINUSE),
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(id);
            }
        }
        Ok(())
    }

    pub fn remove_conn(&mut self, key: &ConnKey) -> Option<ConnId> {
        self.conns.remove(key)
    }

    /// Ephemeral port for an active open from `local_ip` to `remote`, by RFC 6056 algorithm 4
    /// (double-hash): offset = F(local, remote, rport; key1), counter = table[G(...; key2)].
    /// Ports whose 4-tuple is in use, or that a listener holds on `local_ip` (exactly or through
    /// a wildcard), are skipped. The port is not reserved: the caller inserts the connection.
    ///
    /// Errors: EAFNOSUPPORT for mixed families; EADDRNOTAVAIL if `local_ip` is not local, the
    /// remote is unspecified or has port 0 (as FreeBSD `in_pcbconnect_setup`), or every port of
    /// the range is taken for this remote.
    pub fn connect_port(&mut self, local_ip: IpAddr, remote: SocketAddr) -> Result<u16, Errno> {
        if local_ip.is_ipv4() != remote.is_ipv4() {
            return Err(Errno::EAFNOSUPPORT);
        }
        if !self.local_addrs.contains(&local_ip)
            || remote.port() == 0
            || remote.ip().is_unspecified()
        {
            return Err(Errno::EADDRNOTAVAIL);
        }
        let remote = strip_flowinfo(remote);
        let three_tuple = |key: (u64, u64)| {
            let mut h = sip(key);
            hash_ip(&mut h, local_ip);
            hash_ip(&mut h, remote.ip());
            h.write(&remote.port().to_be_bytes());
            h.finish()
        };
        let offset = three_tuple(self.port_key_f);
        let index = (three_tuple(self.port_key_g) % PORT_TABLE_SIZE as u64) as usize;
        let first = self.portrange_first;
        let num = u64::from(self.portrange_last - first) + 1;
        let wild = wildcard_of(local_ip);
        for _ in 0..num {
            let ctr = self.port_table[index];
            self.port_table[index] = ctr.wrapping_add(1);
            // `% num` keeps the sum below 65536, so the cast cannot truncate.
            let port = first + (offset.wrapping_add(u64::from(ctr)) % num) as u16;
            if let Some((n, me)) = self.shard {
                if crate::steer::shard_of(port, remote.port(), n) != me {
                    continue;
                }
            }
            if self.listeners.contains_key(&(local_ip, port))
                || self.listeners.contains_key(&(wild, port))
                || self.port_reserved(local_ip, port)
            {
                continue;
            }
            let key = ConnKey {
                local: SocketAddr::new(local_ip, port),
                remote,
            };
            if !self.conns.contains_key(&key) {
                return Ok(port);
            }
        }
        Err(Errno::EADDRNOTAVAIL)
    }

    /// Checks a listener bind of (ip, port) against existing listeners and connections.
    fn bind_conflict(&self, ip: IpAddr, port: u16, reuse_addr: bool) -> Result<(), Errno> {
        if self.listeners.contains_key(&(ip, port)) {
            return Err(Errno::EADDRINUSE);
        }
        if reuse_addr {
            return Ok(());
        }
        if self.port_reserved(ip, port) {
            return Err(Errno::EADDRINUSE);
        }
        let v6 = ip.is_ipv6();
        // Connections are checked by a scan: binds are rare, and keeping per-port counts cost
        // two hash updates on every connection opened and closed.
        let conn_holds = |k: &ConnKey| {
            k.local.port() == port
                && if ip.is_unspecified() {
                    k.local.is_ipv6() == v6
                } else {
                    k.local.ip() == ip
                }
        };
        let overlap = if ip.is_unspecified() {
            count_of(&self.listener_ports, &(v6, port)) > 0 || self.conns.keys().any(conn_holds)
        } else {
            self.listeners.contains_key(&(wildcard_of(ip), port))
                || self.conns.keys().any(conn_holds)
        };
        if overlap {
            Err(Errno::EADDRINUSE)
        } else {
            Ok(())
        }
    }

    /// Random start in the range, then a linear scan (bounded by the range size).
    fn pick_bind_port(&mut self, ip: IpAddr, reuse_addr: bool) -> Result<u16, Errno> {
        let first = self.portrange_first;
        let num = u32::from(self.portrange_last - first) + 1;
        let start = self.rng.random_range(0..num);
        for i in 0..num {
            // Below 65536 after `% num`, so the cast cannot truncate.
            let port = first + ((start + i) % num) as u16;
            if self.bind_conflict(ip, port, reuse_addr).is_ok() {
                return Ok(port);
            }
        }
        Err(Errno::EADDRNOTAVAIL)
    }

    fn alloc_listener_id(&mut self) -> ListenerId {
        // Ids are not reused soon after removal, so a stale id held elsewhere (e.g. by a SYN
        // cache entry) does not silently name a new listener; skip ids still live after wrap.
        loop {
            let id = ListenerId(self.next_listener);
            self.next_listener = self.next_listener.wrapping_add(1);
            if !self.listener_addrs.contains_key(&id) {
                return id;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }
    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }
    fn key(l: &str, r: &str) -> ConnKey {
        ConnKey::new(sa(l), sa(r))
    }

    fn table() -> SockTable {
        let mut t = SockTable::new(7);
        for a in ["10.0.0.1", "10.0.0.2", "fd00::1", "fd00::2"] {
            t.add_local_addr(ip(a));
        }
        t
    }

    #[test]
    fn demux_is_exact_v4_and_v6() {
        let mut t = table();
        let locals = ["10.0.0.1", "10.0.0.2", "[fd00::1]", "[fd00::2]"];
        let mut next = 0u32;
        let mut all = Vec::new();
        for l in locals {
            let v6 = l.starts_with('[');
            for i in 0..200u32 {
                // Same local and remote ports everywhere; only the remote address differs, plus
                // a second port pair so ports alone cannot demux.
                let r = if v6 {
                    format!("[fd01::{:x}]", i + 1)
                } else {
                    format!("192.168.{}.{}", i / 250, i % 250 + 1)
                };
                for (lp, rp) in [(80, 5000), (5000, 80)] {
                    let k = key(&format!("{l}:{lp}"), &format!("{r}:{rp}"));
                    t.insert_conn(k, ConnId::from_parts(next as usize, 0))
                        .unwrap();
                    all.push((k, ConnId::from_parts(next as usize, 0)));
                    next += 1;
                }
            }
        }
        assert_eq!(t.len(), all.len());
        for (k, id) in &all {
            assert_eq!(t.lookup_conn(k), Some(*id));
            let swapped = ConnKey {
                local: k.remote,
                remote: k.local,
            };
            assert_eq!(t.lookup_conn(&swapped), None);
            let mut other = *k;
            other.remote.set_port(k.remote.port() + 1);
            assert_eq!(t.lookup_conn(&other), None);
        }
        // Same ports, local address of the other host address: not found.
        assert_eq!(t.lookup_conn(&key("10.0.0.3:80", "192.168.0.1:5000")), None);
        // Flow labels do not split a connection when keys are built with ConnKey::new.
        let mut l6: std::net::SocketAddrV6 = "[fd00::1]:80".parse().unwrap();
        l6.set_flowinfo(0xabcde);
        let k6 = ConnKey::new(SocketAddr::V6(l6), sa("[fd01::1]:5000"));
        assert!(t.lookup_conn(&k6).is_some());
        for (k, id) in &all {
            assert_eq!(t.remove_conn(k), Some(*id));
        }
        assert!(t.is_empty());
    }

    #[test]
    fn listener_wildcard_vs_specific() {
        let mut t = table();
        let wild = t.bind_listener(sa("0.0.0.0:80"), false).unwrap();
        let spec = t.bind_listener(sa("10.0.0.1:80"), true).unwrap();
        assert_eq!(t.lookup_listener(sa("10.0.0.1:80")), Some(spec));
        assert_eq!(t.lookup_listener(sa("10.0.0.2:80")), Some(wild));
        assert_eq!(t.lookup_listener(sa("10.0.0.2:81")), None);
        // Families are separate: no IPv6 listener yet.
        assert_eq!(t.lookup_listener(sa("[fd00::1]:80")), None);
        let wild6 = t.bind_listener(sa("[::]:80"), false).unwrap();
        assert_eq!(t.lookup_listener(sa("[fd00::1]:80")), Some(wild6));
        assert_eq!(t.lookup_listener(sa("10.0.0.2:80")), Some(wild));
        assert_eq!(t.listener_count(), 3);
        assert_eq!(t.remove_listener(spec), Some(sa("10.0.0.1:80")));
        assert_eq!(t.remove_listener(spec), None);
        assert_eq!(t.lookup_listener(sa("10.0.0.1:80")), Some(wild));
        assert_eq!(t.listener_count(), 2);
    }

    #[test]
    fn bind_errnos() {
        let mut t = table();
        assert_eq!(
            t.bind_listener(sa("10.9.9.9:80"), false),
            Err(Errno::EADDRNOTAVAIL)
        );
        assert_eq!(
            t.bind_listener(sa("[fd00::9]:80"), true),
            Err(Errno::EADDRNOTAVAIL)
        );
        t.bind_listener(sa("10.0.0.1:80"), false).unwrap();
        for reuse in [false, true] {
            assert_eq!(
                t.bind_listener(sa("10.0.0.1:80"), reuse),
                Err(Errno::EADDRINUSE)
            );
        }
        // Specific then wildcard: overlap needs SO_REUSEADDR.
        assert_eq!(
            t.bind_listener(sa("0.0.0.0:80"), false),
            Err(Errno::EADDRINUSE)
        );
        // Another family on the same port does not overlap.
        t.bind_listener(sa("[::]:80"), false).unwrap();
        let w = t.bind_listener(sa("0.0.0.0:80"), true).unwrap();
        assert_eq!(
            t.bind_listener(sa("0.0.0.0:80"), true),
            Err(Errno::EADDRINUSE)
        );
        // Wildcard then specific: also needs SO_REUSEADDR.
        assert_eq!(
            t.bind_listener(sa("10.0.0.2:80"), false),
            Err(Errno::EADDRINUSE)
        );
        t.bind_listener(sa("10.0.0.2:80"), true).unwrap();
        t.remove_listener(w).unwrap();
        t.bind_listener(sa("0.0.0.0:81"), false).unwrap();
    }

    #[test]
    fn bind_conflicts_with_connections_unless_reuseaddr() {
        let mut t = table();
        t.insert_conn(
            key("10.0.0.1:8080", "1.2.3.4:999"),
            ConnId::from_parts(1, 0),
        )
        .unwrap();
        assert_eq!(
            t.bind_listener(sa("10.0.0.1:8080"), false),
            Err(Errno::EADDRINUSE)
        );
        assert_eq!(
            t.bind_listener(sa("0.0.0.0:8080"), false),
            Err(Errno::EADDRINUSE)
        );
        t.bind_listener(sa("10.0.0.2:8080"), false).unwrap();
        t.bind_listener(sa("10.0.0.1:8080"), true).unwrap();
        t.remove_conn(&key("10.0.0.1:8080", "1.2.3.4:999")).unwrap();
        t.bind_listener(sa("[::]:8080"), false).unwrap();
    }

    #[test]
    fn bind_port_zero_picks_free_ephemeral_port() {
        let mut t = table();
        t.set_portrange(40000, 40002).unwrap();
        let mut ports = HashSet::new();
        for _ in 0..3 {
            let id = t.bind_listener(sa("10.0.0.1:0"), false).unwrap();
            let p = t.listener_addr(id).unwrap().port();
            assert!((40000..=40002).contains(&p));
            assert_eq!(t.lookup_listener(sa(&format!("10.0.0.1:{p}"))), Some(id));
            ports.insert(p);
        }
        assert_eq!(ports.len(), 3);
        assert_eq!(
            t.bind_listener(sa("10.0.0.1:0"), false),
            Err(Errno::EADDRNOTAVAIL)
        );
    }

    #[test]
    fn duplicate_four_tuple_and_family_mismatch() {
        let mut t = table();
        let k = key("10.0.0.1:1000", "1.1.1.1:80");
        t.insert_conn(k, ConnId::from_parts(1, 0)).unwrap();
        assert_eq!(
            t.insert_conn(k, ConnId::from_parts(2, 0)),
            Err(Errno::EADDRINUSE)
        );
        assert_eq!(t.lookup_conn(&k), Some(ConnId::from_parts(1, 0)));
        assert_eq!(
            t.insert_conn(
                key("10.0.0.1:1000", "[fd01::1]:80"),
                ConnId::from_parts(3, 0)
            ),
            Err(Errno::EAFNOSUPPORT)
        );
        assert_eq!(
            t.connect_port(ip("10.0.0.1"), sa("[fd01::1]:80")),
            Err(Errno::EAFNOSUPPORT)
        );
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn set_portrange_validates() {
        let mut t = table();
        assert_eq!(t.set_portrange(0, 10), Err(Errno::EINVAL));
        assert_eq!(t.set_portrange(20, 10), Err(Errno::EINVAL));
        assert_eq!(t.portrange(), (10000, 65535));
        t.set_portrange(65535, 65535).unwrap();
        assert_eq!(t.portrange(), (65535, 65535));
    }

    #[test]
    fn connect_ports_distinct_in_range() {
        let mut t = table();
        let remote = sa("203.0.113.5:443");
        let mut seen = HashSet::new();
        for i in 0..300 {
            let p = t.connect_port(ip("10.0.0.1"), remote).unwrap();
            assert!((10000..=65535).contains(&p));
            assert!(seen.insert(p), "port {p} handed out twice");
            t.insert_conn(
                ConnKey::new(SocketAddr::new(ip("10.0.0.1"), p), remote),
                ConnId::from_parts(i as usize, 0),
            )
            .unwrap();
        }
    }

    #[test]
    fn connect_port_errnos_and_exhaustion() {
        let mut t = table();
        t.set_portrange(20000, 20004).unwrap();
        let remote = sa("203.0.113.5:443");
        assert_eq!(
            t.connect_port(ip("10.9.9.9"), remote),
            Err(Errno::EADDRNOTAVAIL)
        );
        assert_eq!(
            t.connect_port(ip("10.0.0.1"), sa("203.0.113.5:0")),
            Err(Errno::EADDRNOTAVAIL)
        );
        let mut seen = HashSet::new();
        for i in 0..5 {
            let p = t.connect_port(ip("10.0.0.1"), remote).unwrap();
            assert!((20000..=20004).contains(&p));
            assert!(seen.insert(p));
            t.insert_conn(
                ConnKey::new(SocketAddr::new(ip("10.0.0.1"), p), remote),
                ConnId::from_parts(i as usize, 0),
            )
            .unwrap();
        }
        assert_eq!(
            t.connect_port(ip("10.0.0.1"), remote),
            Err(Errno::EADDRNOTAVAIL)
        );
        // Another local IP, or another remote, can reuse the ports.
        let p = t.connect_port(ip("10.0.0.2"), remote).unwrap();
        assert!(seen.contains(&p));
        let p = t
            .connect_port(ip("10.0.0.1"), sa("203.0.113.6:443"))
            .unwrap();
        assert!(seen.contains(&p));
        let p = t
            .connect_port(ip("10.0.0.1"), sa("203.0.113.5:444"))
            .unwrap();
        assert!(seen.contains(&p));
        // Freeing one 4-tuple makes exactly that port available again.
        let freed = *seen.iter().next().unwrap();
        t.remove_conn(&ConnKey::new(
            SocketAddr::new(ip("10.0.0.1"), freed),
            remote,
        ))
        .unwrap();
        assert_eq!(t.connect_port(ip("10.0.0.1"), remote), Ok(freed));
    }

    #[test]
    fn connect_port_skips_listener_ports() {
        let mut t = table();
        t.set_portrange(20000, 20004).unwrap();
        t.bind_listener(sa("10.0.0.1:20001"), false).unwrap();
        t.bind_listener(sa("0.0.0.0:20003"), true).unwrap();
        // A listener on another IP does not hold the port on 10.0.0.1.
        t.bind_listener(sa("10.0.0.2:20004"), true).unwrap();
        let remote = sa("203.0.113.5:443");
        let mut got = HashSet::new();
        for i in 0..3 {
            let p = t.connect_port(ip("10.0.0.1"), remote).unwrap();
            got.insert(p);
            t.insert_conn(
                ConnKey::new(SocketAddr::new(ip("10.0.0.1"), p), remote),
                ConnId::from_parts(i as usize, 0),
            )
            .unwrap();
        }
        assert_eq!(got, HashSet::from([20000, 20002, 20004]));
        assert_eq!(
            t.connect_port(ip("10.0.0.1"), remote),
            Err(Errno::EADDRNOTAVAIL)
        );
    }

    #[test]
    fn connect_port_is_reproducible_from_seed() {
        let run = |seed| {
            let mut t = SockTable::new(seed);
            t.add_local_addr(ip("fd00::1"));
            (0..20)
                .map(|i| {
                    t.connect_port(ip("fd00::1"), sa(&format!("[fd01::{i}]:80")))
                        .unwrap()
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(run(1), run(1));
        assert_ne!(run(1), run(2));
    }
}
