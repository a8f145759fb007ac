//! TCP Fast Open (RFC 7413) state of a host, after FreeBSD's tcp_fastopen.c: the server's
//! cookie keys and pre-shared keys, cookies from SipHash-2-4 over the client's address, and
//! the client's cookie cache with its disabled paths. One store for all shards.
//!
//! - Server: a cookie is SipHash24(key, client IP address), 8 bytes; up to
//!   `fastopen.maxkeys` keys are valid at once (newest first), a new one every
//!   `fastopen.autokey` seconds or written to `fastopen.setkey`. In pre-shared-key mode
//!   (`fastopen.psk_enable`) the server still hands out those cookies, but accepts only
//!   SipHash24(psk, cookie) for one of its `fastopen.maxpsks` PSKs (`fastopen.setpsk`).
//! - Client: per (local address, server address, server port) the server's MSS and cookie,
//!   or the time the path was disabled (a SYN-ACK without the option, a SYN with data that
//!   went unanswered, an ICMP error in SYN_SENT): no TFO on it for
//!   `fastopen.path_disable_time` seconds.
//!
//! The sysctls change this state on their transitions as FreeBSD's handlers do; the host
//! applies them ([`Fastopen::sync`]) before it uses the store.

use std::collections::VecDeque;
use std::hash::Hasher;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use plugtcp_abi::segment::to;
use plugtcp_abi::seq::{seq_gt, seq_leq};
use plugtcp_abi::tcpcb::tf;
use plugtcp_abi::{Errno, TcpState};

use crate::conn_table::ConnId;
use rand::RngCore;
use siphasher::sip::SipHasher24;

use crate::secrets::HostRng;
use crate::sysctl::TcpTunables;

/// `fastopen.keylen`: SipHash's key length.
pub const KEY_LEN: usize = 16;
/// `fastopen.maxkeys` (FreeBSD TCP_RFC7413_MAX_KEYS).
pub const MAX_KEYS: usize = 2;
/// `fastopen.maxpsks` (FreeBSD TCP_RFC7413_MAX_PSKS).
pub const MAX_PSKS: usize = 2;
/// The cookies this server makes (FreeBSD TCP_FASTOPEN_COOKIE_LEN).
pub const COOKIE_LEN: usize = 8;
/// Longest cookie a client caches (RFC 7413 4.1.1).
pub const MAX_COOKIE_LEN: usize = 16;
/// Shortest cookie a client caches.
pub const MIN_COOKIE_LEN: usize = 4;

/// What a server makes of the cookie in a SYN (FreeBSD tcp_fastopen_check_cookie).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CookieCheck {
    /// Valid: the connection opens with the SYN's data; its SYN-ACK hands out the newest
    /// cookie (FreeBSD: zeros with `acceptany` and no key).
    Valid([u8; COOKIE_LEN]),
    /// Missing or invalid: the SYN-ACK carries this cookie, the newest.
    Invalid([u8; COOKIE_LEN]),
    /// No key installed: no cookie to give.
    NoKey,
}

/// A ring of keys, newest first.
#[derive(Default)]
struct KeyRing {
    keys: VecDeque<[u8; KEY_LEN]>,
}

impl KeyRing {
    fn add(&mut self, key: [u8; KEY_LEN], max: usize) {
        self.keys.push_front(key);
        self.keys.truncate(max);
    }
}

/// One client cookie cache entry (FreeBSD tcp_fastopen_ccache_entry).
#[derive(Clone, Debug)]
struct CcacheEntry {
    local: IpAddr,
    server: SocketAddr,
    server_mss: u16,
    cookie: Vec<u8>,
    /// When the path was disabled (host clock, ns); `None`: enabled.
    disabled_at: Option<u64>,
}

/// What a client connect takes from the cache (FreeBSD tcp_fastopen_connect).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientPath {
    /// Send this cookie and SYN data; the server's MSS when it said one.
    Cookie { cookie: Vec<u8>, server_mss: u16 },
    /// No cookie yet: the SYN asks for one.
    Request,
    /// TFO is off on this path for now.
    Disabled,
}

/// The host's TCP Fast Open state.
pub struct Fastopen {
    keys: KeyRing,
    psks: KeyRing,
    /// The sysctl values last applied, to act on their transitions.
    server_enabled: bool,
    psk_enabled: bool,
    client_enabled: bool,
    autokey_secs: i64,
    /// When the next automatic key is due (host clock, ns).
    next_autokey: Option<u64>,
    buckets: Vec<VecDeque<CcacheEntry>>,
    bucket_limit: usize,
    path_disable_ns: u64,
    hash_key: (u64, u64),
    /// Counters (the `plugtcp_tcp_fastopen_total{event}` metric).
    pub stats: FastopenStats,
    /// The host clock when a shard last used the store (for `ccache_list`).
    last_now: u64,
}

/// TFO events, host-wide.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct FastopenStats {
    /// Passive connections opened with data in the SYN (valid cookie).
    pub passive: u64,
    /// SYNs with an invalid or no cookie (answered with one).
    pub passive_fail: u64,
    /// TFO SYNs served as plain ones because the listener's queue of pending TFO
    /// connections was full.
    pub passive_overflow: u64,
    /// Client SYNs that carried a cookie (and data, when there was some).
    pub active: u64,
    /// Client paths disabled (`fastopen.path_disable_time`).
    pub paths_disabled: u64,
}

/// The store shared by a host's shards.
pub type SharedFastopen = Arc<Mutex<Fastopen>>;

impl Fastopen {
    pub fn new(t: &TcpTunables, rng: &mut HostRng) -> Self {
        Fastopen {
            keys: KeyRing::default(),
            psks: KeyRing::default(),
            server_enabled: false,
            psk_enabled: false,
            client_enabled: false,
            autokey_secs: t.fastopen_autokey,
            next_autokey: None,
            buckets: Vec::new(),
            bucket_limit: t.fastopen_ccache_bucket_limit.max(1) as usize,
            path_disable_ns: 0,
            hash_key: crate::secrets::sip_key(rng),
            stats: FastopenStats::default(),
            last_now: 0,
        }
    }

    /// Applies the `net.inet.tcp.fastopen.*` sysctls as FreeBSD's handlers do on their
    /// transitions, and the automatic key when due. `now` is the host clock (ns).
    pub fn sync(&mut self, t: &TcpTunables, now: u64, rng: &mut HostRng) {
        let server = t.fastopen_server_enable != 0;
        if self.server_enabled && !server {
            // Enabled -> disabled: all keys and pre-shared keys go.
            self.keys = KeyRing::default();
            self.psks = KeyRing::default();
            self.next_autokey = None;
        } else if !self.server_enabled && server {
            // Disabled -> enabled: a key at once, if autokey is on and there is none.
            if t.fastopen_autokey > 0 && self.keys.keys.is_empty() {
                self.add_random_key(rng);
            }
            self.next_autokey =
                (t.fastopen_autokey > 0).then(|| now + t.fastopen_autokey as u64 * 1_000_000_000);
        }
        self.server_enabled = server;
        if self.autokey_secs != t.fastopen_autokey {
            self.autokey_secs = t.fastopen_autokey;
            self.next_autokey = (server && t.fastopen_autokey > 0)
                .then(|| now + t.fastopen_autokey as u64 * 1_000_000_000);
        }
        if let Some(due) = self.next_autokey {
            if now >= due && self.autokey_secs > 0 {
                let period = self.autokey_secs as u64 * 1_000_000_000;
                // Each period that passed made a key; more than MAX_KEYS of them leave
                // only fresh ones either way.
                let missed = ((now - due) / period + 1).min(MAX_KEYS as u64);
                for _ in 0..missed {
                    self.add_random_key(rng);
                }
                self.next_autokey = Some(due + ((now - due) / period + 1) * period);
            }
        }
        let psk = t.fastopen_psk_enable != 0;
        if self.psk_enabled && !psk {
            self.psks = KeyRing::default();
        }
        self.psk_enabled = psk;
        let client = t.fastopen_client_enable != 0;
        if self.client_enabled && !client {
            self.buckets.clear();
        } else if !self.client_enabled && client {
            let n = t.fastopen_ccache_buckets.max(1) as usize;
            self.buckets = (0..n).map(|_| VecDeque::new()).collect();
        }
        self.client_enabled = client;
        let limit = t.fastopen_ccache_bucket_limit.max(1) as usize;
        if limit < self.bucket_limit {
            for b in &mut self.buckets {
                b.truncate(limit);
            }
        }
        self.bucket_limit = limit;
        self.path_disable_ns = t.fastopen_path_disable_time.max(0) as u64 * 1_000_000_000;
    }

    fn add_random_key(&mut self, rng: &mut HostRng) {
        let mut k = [0u8; KEY_LEN];
        rng.fill_bytes(&mut k);
        self.keys.add(k, MAX_KEYS);
    }

    /// `fastopen.setkey`.
    pub fn add_key(&mut self, key: [u8; KEY_LEN]) {
        self.keys.add(key, MAX_KEYS);
    }

    /// `fastopen.setpsk`.
    pub fn add_psk(&mut self, psk: [u8; KEY_LEN]) {
        self.psks.add(psk, MAX_PSKS);
    }

    /// `fastopen.numkeys`.
    pub fn num_keys(&self) -> usize {
        self.keys.keys.len()
    }

    /// `fastopen.numpsks`.
    pub fn num_psks(&self) -> usize {
        self.psks.keys.len()
    }

    /// The server's check of a SYN's cookie from `client` (`acceptany`: every cookie is
    /// valid, FreeBSD's testing aid).
    pub fn check_cookie(&self, client: IpAddr, cookie: &[u8], acceptany: bool) -> CookieCheck {
        let latest = self.keys.keys.front().map(|k| make_cookie(k, client));
        if acceptany {
            return CookieCheck::Valid(latest.unwrap_or_default());
        }
        let Some(latest) = latest else {
            return CookieCheck::NoKey;
        };
        if cookie.len() != COOKIE_LEN {
            return CookieCheck::Invalid(latest);
        }
        for key in &self.keys.keys {
            let ours = make_cookie(key, client);
            let ok = if self.psk_enabled {
                self.psks
                    .keys
                    .iter()
                    .any(|psk| constant_time_eq(&psk_cookie(psk, &ours), cookie))
            } else {
                constant_time_eq(&ours, cookie)
            };
            if ok {
                return CookieCheck::Valid(latest);
            }
        }
        CookieCheck::Invalid(latest)
    }

    fn bucket_of(&self, local: IpAddr, server: SocketAddr) -> Option<usize> {
        if self.buckets.is_empty() {
            return None;
        }
        let mut h = SipHasher24::new_with_keys(self.hash_key.0, self.hash_key.1);
        h.write(&ip_bytes(local));
        h.write(&ip_bytes(server.ip()));
        h.write_u16(server.port());
        Some(h.finish() as usize & (self.buckets.len() - 1))
    }

    fn entry_mut(&mut self, local: IpAddr, server: SocketAddr) -> Option<&mut CcacheEntry> {
        let b = self.bucket_of(local, server)?;
        self.buckets[b]
            .iter_mut()
            .find(|e| e.local == local && e.server == server)
    }

    /// What a client connecting from `local` to `server` may do (FreeBSD
    /// tcp_fastopen_connect): a disabled path whose time ran out is enabled again, its
    /// cookie and MSS forgotten. The caller checks `fastopen.client_enable` first.
    pub fn client_path(&mut self, local: IpAddr, server: SocketAddr, now: u64) -> ClientPath {
        let disable_ns = self.path_disable_ns;
        let Some(e) = self.entry_mut(local, server) else {
            return ClientPath::Request;
        };
        if let Some(at) = e.disabled_at {
            if now.saturating_sub(at) > disable_ns {
                e.disabled_at = None;
                e.server_mss = 0;
                e.cookie.clear();
                return ClientPath::Request;
            }
            return ClientPath::Disabled;
        }
        if e.cookie.is_empty() {
            return ClientPath::Request;
        }
        ClientPath::Cookie {
            cookie: e.cookie.clone(),
            server_mss: e.server_mss,
        }
    }

    /// A SYN-ACK with the FO option (FreeBSD tcp_fastopen_update_cache): a cookie of a
    /// valid length is remembered with the server's MSS; any other disables the path.
    pub fn update_cache(
        &mut self,
        local: IpAddr,
        server: SocketAddr,
        mss: u16,
        cookie: &[u8],
        now: u64,
    ) {
        let valid = (MIN_COOKIE_LEN..=MAX_COOKIE_LEN).contains(&cookie.len())
            && cookie.len().is_multiple_of(2);
        if !valid {
            self.disable_path(local, server, now);
            return;
        }
        let Some(e) = self.entry_or_new(local, server) else {
            return;
        };
        e.server_mss = mss;
        e.cookie = cookie.to_vec();
        e.disabled_at = None;
    }

    /// No TFO from `local` to `server` for `path_disable_time` (FreeBSD
    /// tcp_fastopen_disable_path): a disabled path keeps its first disable time.
    pub fn disable_path(&mut self, local: IpAddr, server: SocketAddr, now: u64) {
        let Some(e) = self.entry_or_new(local, server) else {
            return;
        };
        e.server_mss = 0;
        e.cookie.clear();
        e.disabled_at.get_or_insert(now);
        self.stats.paths_disabled += 1;
    }

    /// The entry for the path, made if there is none: at the bucket's limit the oldest
    /// entry makes room (FreeBSD reclaims the tail). `None` while client TFO is off.
    fn entry_or_new(&mut self, local: IpAddr, server: SocketAddr) -> Option<&mut CcacheEntry> {
        let b = self.bucket_of(local, server)?;
        let limit = self.bucket_limit;
        let bucket = &mut self.buckets[b];
        match bucket
            .iter()
            .position(|e| e.local == local && e.server == server)
        {
            Some(i) => bucket.get_mut(i),
            None => {
                if bucket.len() >= limit {
                    bucket.pop_back();
                }
                bucket.push_front(CcacheEntry {
                    local,
                    server,
                    server_mss: 0,
                    cookie: Vec::new(),
                    disabled_at: None,
                });
                bucket.front_mut()
            }
        }
    }

    /// `fastopen.ccache_list`, as FreeBSD prints it: the seconds a disabled path has left,
    /// the cookie in hex.
    pub fn ccache_list(&self, now: u64) -> String {
        let mut out = String::from(
            "\nLocal IP address     Remote IP address     Port   MSS Disabled Cookie\n",
        );
        for e in self.buckets.iter().flatten() {
            out.push_str(&format!(
                "{:<20} {:<20} {:>5} {:>5} ",
                e.local.to_string(),
                e.server.ip().to_string(),
                e.server.port(),
                e.server_mss
            ));
            let left = e.disabled_at.map_or(0, |at| {
                self.path_disable_ns.saturating_sub(now.saturating_sub(at)) / 1_000_000_000
            });
            if left > 0 {
                out.push_str(&format!("{left:>7}s "));
            } else {
                out.push_str(&format!("{:>8} ", "No"));
            }
            for b in &e.cookie {
                out.push_str(&format!("{b:02x}"));
            }
            out.push('\n');
        }
        out
    }
}

fn lock(s: &SharedFastopen) -> std::sync::MutexGuard<'_, Fastopen> {
    s.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl crate::Host {
    /// The TCP Fast Open store, brought up to date with the sysctls and the clock.
    pub(crate) fn with_fastopen<R>(&mut self, f: impl FnOnce(&mut Fastopen) -> R) -> R {
        let store = Arc::clone(&self.fastopen);
        let mut fo = lock(&store);
        fo.sync(&self.tunables, self.worker.now, &mut self.rng);
        fo.last_now = self.worker.now;
        f(&mut fo)
    }

    /// TFO counters (for the metrics).
    pub fn fastopen_stats(&self) -> FastopenStats {
        lock(&self.fastopen).stats
    }

    /// `fastopen.numkeys`, `numpsks`, `setkey`, `setpsk` and `ccache_list`.
    pub(crate) fn register_fastopen_sysctls(&self) {
        use crate::kld::HostNode;
        use crate::sysctl::SysctlValue;
        type Read = fn(&Fastopen) -> SysctlValue;
        type Write = fn(&mut Fastopen, [u8; KEY_LEN]);
        let reads: [(&str, &'static str, Read); 3] = [
            (
                "net.inet.tcp.fastopen.numkeys",
                "Number of keys installed",
                |f| SysctlValue::Int(f.num_keys() as i64),
            ),
            (
                "net.inet.tcp.fastopen.numpsks",
                "Number of pre-shared keys installed",
                |f| SysctlValue::Int(f.num_psks() as i64),
            ),
            (
                "net.inet.tcp.fastopen.ccache_list",
                "List of all client cookie cache entries",
                |f| SysctlValue::Str(f.ccache_list(f.last_now)),
            ),
        ];
        let writes: [(&str, &'static str, Write); 2] = [
            (
                "net.inet.tcp.fastopen.setkey",
                "Install a new key",
                |f, k| f.add_key(k),
            ),
            (
                "net.inet.tcp.fastopen.setpsk",
                "Install a new pre-shared key",
                |f, k| f.add_psk(k),
            ),
        ];
        for (name, description, read) in reads {
            let store = Arc::clone(&self.fastopen);
            let node = HostNode {
                get: Box::new(move || read(&lock(&store))),
                set: None,
                description,
            };
            self.register_host_node(name, node);
        }
        for (name, description, write) in writes {
            let store = Arc::clone(&self.fastopen);
            let node = HostNode {
                get: Box::new(|| SysctlValue::Str(String::new())),
                set: Some(Box::new(move |v| {
                    let key = parse_key(v)?;
                    write(&mut lock(&store), key);
                    Ok(())
                })),
                description,
            };
            self.register_host_node(name, node);
        }
    }
}

/// TCP_FASTOPEN's value: an int (Linux: the queue length; FreeBSD: enable), or FreeBSD's
/// `struct tcp_fastopen { int enable; uint8_t psk[16]; }`.
fn parse_fastopen_opt(val: &[u8]) -> Result<(i32, Option<[u8; KEY_LEN]>), Errno> {
    let head: [u8; 4] = val
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .ok_or(Errno::EINVAL)?;
    let enable = i32::from_ne_bytes(head);
    let psk = val
        .get(4..4 + KEY_LEN)
        .and_then(|b| <[u8; KEY_LEN]>::try_from(b).ok());
    Ok((enable, psk))
}

impl crate::Host {
    /// TCP_FASTOPEN's value, checked as FreeBSD's tcp_ctloutput does first: EPERM while TFO
    /// is off both ways, EINVAL for a negative value.
    fn fastopen_opt(&self, val: &[u8]) -> Result<(i32, Option<[u8; KEY_LEN]>), Errno> {
        let (enable, psk) = parse_fastopen_opt(val)?;
        let t = &self.tunables;
        if t.fastopen_client_enable == 0 && t.fastopen_server_enable == 0 {
            return Err(Errno::EPERM);
        }
        if enable < 0 {
            return Err(Errno::EINVAL);
        }
        Ok((enable, psk))
    }

    /// TCP_FASTOPEN on a listener (FreeBSD tcp_ctloutput): EPERM unless
    /// `fastopen.server_enable`; an int is the most connections opened by TFO SYNs that may
    /// be pending at once (Linux's queue length), FreeBSD's struct asks for half the
    /// backlog. 0 turns TFO off for new SYNs.
    pub(crate) fn set_listener_fastopen(&mut self, lid: usize, val: &[u8]) -> Result<(), Errno> {
        let (enable, _) = self.fastopen_opt(val)?;
        if enable != 0 && self.tunables.fastopen_server_enable == 0 {
            return Err(Errno::EPERM);
        }
        let l = self
            .listeners
            .get_mut(lid)
            .and_then(Option::as_mut)
            .ok_or(Errno::EBADF)?;
        let qlen = if val.len() == 4 {
            enable as u32
        } else {
            (l.backlog / 2).max(1) as u32
        };
        l.tfo_qlen = if enable != 0 { qlen } else { 0 };
        if enable != 0 {
            l.tcpcb.t_flags |= tf::FASTOPEN;
        } else {
            l.tcpcb.t_flags &= !tf::FASTOPEN;
        }
        Ok(())
    }

    /// TCP_FASTOPEN on a socket not yet connected or listening (FreeBSD tcp_ctloutput):
    /// EPERM while TFO is off both ways, EINVAL once connecting; FreeBSD's struct may carry
    /// a pre-shared key for PSK mode.
    pub(crate) fn set_conn_fastopen(&mut self, slot: usize, val: &[u8]) -> Result<(), Errno> {
        let (enable, psk) = self.fastopen_opt(val)?;
        let int_form = val.len() == 4;
        let c = self.conn_mut(slot)?;
        if c.ctx.tp.t_state != TcpState::Closed || c.ctx.tp.iss != 0 {
            return Err(Errno::EINVAL);
        }
        if enable != 0 {
            c.ctx.tp.t_flags |= tf::FASTOPEN;
            c.side.tfo_qlen = int_form.then_some(enable as u32);
            c.side.tfo_psk = psk;
        } else {
            c.ctx.tp.t_flags &= !tf::FASTOPEN;
            c.side.tfo_psk = None;
        }
        Ok(())
    }

    /// TCP_FASTOPEN_CONNECT (Linux): EOPNOTSUPP while client TFO is off, EINVAL on a
    /// socket already connecting or for a value other than 0 or 1.
    pub(crate) fn set_fastopen_connect(&mut self, slot: usize, val: &[u8]) -> Result<(), Errno> {
        let (v, _) = parse_fastopen_opt(val)?;
        if !(0..=1).contains(&v) {
            return Err(Errno::EINVAL);
        }
        if self.tunables.fastopen_client_enable == 0 {
            return Err(Errno::EOPNOTSUPP);
        }
        let c = self.conn_mut(slot)?;
        if c.ctx.tp.t_state != TcpState::Closed || c.ctx.tp.iss != 0 {
            return Err(Errno::EINVAL);
        }
        c.side.tfo_connect = v != 0;
        Ok(())
    }

    /// The TFO part of connect (FreeBSD tcp_fastopen_connect), for a connection about to
    /// send its SYN: the cookie from the cache (made with the PSK in PSK mode), or a
    /// cookie request, or no TFO on a disabled path. Returns whether the SYN waits for
    /// the first write (TCP_FASTOPEN_CONNECT with a cookie: the data goes with it).
    pub(crate) fn tfo_prepare_connect(&mut self, slot: usize, msg_fastopen: bool) -> bool {
        let client_on = self.tunables.fastopen_client_enable != 0;
        let now = self.worker.now;
        let Some(c) = self.conns.get(slot).and_then(|c| c.as_deref()) else {
            return false;
        };
        let wanted = c.ctx.tp.t_flags & tf::FASTOPEN != 0 || c.side.tfo_connect || msg_fastopen;
        let (local, remote, psk) = (c.side.local.ip(), c.side.remote, c.side.tfo_psk);
        if !wanted || !client_on {
            if let Some(c) = self.conns[slot].as_mut() {
                c.ctx.tp.t_flags &= !tf::FASTOPEN;
            }
            return false;
        }
        let path = self.with_fastopen(|f| f.client_path(local, remote, now));
        let Some(c) = self.conns[slot].as_mut() else {
            return false;
        };
        let tp = &mut c.ctx.tp;
        match path {
            ClientPath::Disabled => {
                tp.t_flags &= !tf::FASTOPEN;
                false
            }
            ClientPath::Request => {
                tp.t_flags |= tf::FASTOPEN;
                tp.t_tfo_client_cookie_len = 0;
                c.side.tfo_active = true;
                false
            }
            ClientPath::Cookie { cookie, server_mss } => {
                tp.t_flags |= tf::FASTOPEN;
                let cookie = match psk {
                    Some(psk) => psk_cookie(&psk, &cookie).to_vec(),
                    None => cookie,
                };
                tp.t_tfo_client_cookie_len = cookie.len() as u8;
                tp.t_tfo_cookie = [0; 16];
                tp.t_tfo_cookie[..cookie.len()].copy_from_slice(&cookie);
                // The SYN's data fits the MSS the server offered last time (FreeBSD
                // tcp_mss with the cached MSS); the SYN still offers ours.
                tp.t_peer_mss = u32::from(server_mss);
                c.side.tfo_active = true;
                let defer = c.side.tfo_connect || msg_fastopen;
                self.with_fastopen(|f| f.stats.active += 1);
                defer
            }
        }
    }

    /// Whether the connection still waits for data to send its SYN with
    /// (TCP_FASTOPEN_CONNECT).
    pub fn tfo_deferred(&self, id: ConnId) -> bool {
        let slot = self.conns.resolve(id);
        self.conn_at(slot).is_some_and(|c| c.side.tfo_defer)
    }

    /// An implied connect that carries data (sendto(2) with an address on a fresh socket;
    /// Linux's MSG_FASTOPEN): with a TFO cookie the SYN carries what fits of `data`.
    /// Without a cookie, a MSG_FASTOPEN send on a non-blocking socket queues nothing and
    /// says EINPROGRESS (Linux: the data goes after the handshake, sent again by the
    /// application); otherwise the data is queued and follows the handshake.
    pub fn connect_with_data(
        &mut self,
        id: ConnId,
        remote: SocketAddr,
        local: Option<SocketAddr>,
        data: &[u8],
        msg_fastopen: bool,
        nonblocking: bool,
    ) -> Result<usize, Errno> {
        let slot = self.conns.resolve(id);
        self.conn_mut(slot)?.side.tfo_defer = true;
        let r = self.connect_from_inner(id, remote, local, msg_fastopen);
        if let Ok(c) = self.conn_mut(slot) {
            c.side.tfo_defer = false;
        }
        r?;
        let has_cookie = self
            .conn_at(slot)
            .is_some_and(|c| c.side.tfo_active && c.ctx.tp.t_tfo_client_cookie_len > 0);
        let queue = has_cookie || !msg_fastopen || !nonblocking;
        let n = if queue && !data.is_empty() {
            let c = self
                .conns
                .get_mut(slot)
                .and_then(Option::as_mut)
                .ok_or(Errno::EBADF)?;
            c.side.snd.append(&mut self.worker.pool, data)
        } else {
            0
        };
        let _ = self.with_slot(slot, |c, w| c.output(w));
        self.after_call(slot);
        if !queue {
            return Err(Errno::EINPROGRESS);
        }
        Ok(n)
    }

    /// A SYN-ACK for a TFO client (FreeBSD tcp_input in SYN_SENT): its cookie and MSS go
    /// to the cache; without the option the server does not do TFO and the path is
    /// disabled.
    pub(crate) fn tfo_synack(
        &mut self,
        slot: usize,
        ack: u32,
        opts: &plugtcp_abi::segment::TcpOpts,
    ) {
        let Some(c) = self.conns.get(slot).and_then(|c| c.as_deref()) else {
            return;
        };
        let tp = &c.ctx.tp;
        // Only a SYN-ACK the stack will take: it acknowledges our SYN (RFC 9293 3.10.7.3).
        let acceptable = seq_gt(ack, tp.iss) && seq_leq(ack, tp.snd_max);
        if !c.side.tfo_active || tp.t_state != TcpState::SynSent || !acceptable {
            return;
        }
        let (local, remote, tp_iss) = (c.side.local.ip(), c.side.remote, tp.iss);
        let now = self.worker.now;
        let mss = if opts.has(to::MSS) {
            opts.mss
        } else if remote.is_ipv4() {
            536
        } else {
            1220
        };
        if opts.has(to::FASTOPEN) {
            let cookie = opts.tfo_cookie().to_vec();
            self.with_fastopen(|f| f.update_cache(local, remote, mss, &cookie, now));
        } else if seq_leq(ack, tp_iss.wrapping_add(1)) {
            // FreeBSD disables the path on any SYN-ACK without the option; Linux servers
            // leave it out when they took the SYN's data, so a SYN-ACK that acknowledges
            // data keeps the cookie (as Linux's client does).
            self.with_fastopen(|f| f.disable_path(local, remote, now));
        }
        if let Some(c) = self.conns[slot].as_mut() {
            c.side.tfo_active = false;
        }
    }

    /// A TFO client's SYN timed out, or an ICMP error came back for it: the path may drop
    /// SYNs with data or options it does not know, so no TFO on it for
    /// `fastopen.path_disable_time` (RFC 7413 4.1.3). Its retransmissions go without the
    /// option and without data.
    pub(crate) fn tfo_syn_failed(&mut self, slot: usize) {
        let Some(c) = self.conns.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        if !c.side.tfo_active || c.ctx.tp.t_state != TcpState::SynSent {
            return;
        }
        c.side.tfo_active = false;
        let (local, remote) = (c.side.local.ip(), c.side.remote);
        let now = self.worker.now;
        self.with_fastopen(|f| f.disable_path(local, remote, now));
    }
}

/// The 16 address bytes SipHash reads (an IPv4 address as its 4 bytes, as FreeBSD hashes
/// `inc_faddr`).
fn ip_bytes(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(v) => v.octets().to_vec(),
        IpAddr::V6(v) => v.octets().to_vec(),
    }
}

fn siphash24(key: &[u8; KEY_LEN], msg: &[u8]) -> [u8; COOKIE_LEN] {
    let mut h = SipHasher24::new_with_key(key);
    h.write(msg);
    // FreeBSD's SipHash_Final stores the result little-endian.
    h.finish().to_le_bytes()
}

/// The server's cookie for `client` under `key`.
pub fn make_cookie(key: &[u8; KEY_LEN], client: IpAddr) -> [u8; COOKIE_LEN] {
    siphash24(key, &ip_bytes(client))
}

/// The cookie a client in PSK mode sends: SipHash24(psk, cookie the server gave).
pub fn psk_cookie(psk: &[u8; KEY_LEN], cookie: &[u8]) -> [u8; COOKIE_LEN] {
    siphash24(psk, cookie)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A key as `fastopen.setkey` and `fastopen.setpsk` take it: 32 hex digits, optionally in
/// groups separated by `-` or `:` (FreeBSD takes the 16 raw bytes; sysctl values here are
/// text). EINVAL otherwise.
pub fn parse_key(s: &str) -> Result<[u8; KEY_LEN], Errno> {
    let hex: Vec<u8> = s
        .trim()
        .bytes()
        .filter(|b| !matches!(b, b'-' | b':'))
        .collect();
    if hex.len() != 2 * KEY_LEN {
        return Err(Errno::EINVAL);
    }
    let mut k = [0u8; KEY_LEN];
    for (i, pair) in hex.chunks_exact(2).enumerate() {
        let s = std::str::from_utf8(pair).map_err(|_| Errno::EINVAL)?;
        k[i] = u8::from_str_radix(s, 16).map_err(|_| Errno::EINVAL)?;
    }
    Ok(k)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn tun(f: impl FnOnce(&mut TcpTunables)) -> TcpTunables {
        let mut t = TcpTunables::default();
        f(&mut t);
        t
    }

    #[test]
    fn siphash_matches_the_reference_vector() {
        // SipHash-2-4 paper, appendix A: key 00..0f, message 00..0e.
        let key: [u8; 16] = std::array::from_fn(|i| i as u8);
        let msg: Vec<u8> = (0..15).collect();
        assert_eq!(
            u64::from_le_bytes(siphash24(&key, &msg)),
            0xa129ca6149be45e5
        );
    }

    #[test]
    fn cookies_check_against_every_key_and_psk_mode_wants_the_psk_cookie() {
        let mut rng = HostRng::seed_from_u64(1);
        let t = tun(|t| t.fastopen_server_enable = 1);
        let mut fo = Fastopen::new(&t, &mut rng);
        fo.sync(&t, 0, &mut rng);
        assert_eq!(
            fo.num_keys(),
            1,
            "autokey makes a key when the server is enabled"
        );
        let client: IpAddr = "192.0.2.1".parse().unwrap();
        let CookieCheck::Invalid(c1) = fo.check_cookie(client, &[], false) else {
            panic!("no cookie given")
        };
        assert_eq!(fo.check_cookie(client, &c1, false), CookieCheck::Valid(c1));
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        assert!(matches!(
            fo.check_cookie(other, &c1, false),
            CookieCheck::Invalid(_)
        ));
        // A new key: the old cookie stays valid (two keys), a third key retires it.
        fo.add_key([7; 16]);
        assert_eq!(
            fo.check_cookie(client, &c1, false),
            CookieCheck::Valid(make_cookie(&[7; 16], client)),
            "valid, and the SYN-ACK gives the newest cookie"
        );
        fo.add_key([8; 16]);
        assert_eq!(fo.num_keys(), 2);
        assert!(matches!(
            fo.check_cookie(client, &c1, false),
            CookieCheck::Invalid(_)
        ));
        // PSK mode: the plain cookie no longer opens, SipHash24(psk, cookie) does.
        let t = tun(|t| {
            t.fastopen_server_enable = 1;
            t.fastopen_psk_enable = 1;
        });
        fo.sync(&t, 0, &mut rng);
        fo.add_psk([9; 16]);
        let plain = make_cookie(&[8; 16], client);
        assert!(matches!(
            fo.check_cookie(client, &plain, false),
            CookieCheck::Invalid(_)
        ));
        let with_psk = psk_cookie(&[9; 16], &plain);
        assert_eq!(
            fo.check_cookie(client, &with_psk, false),
            CookieCheck::Valid(plain)
        );
        // Disabling the server removes keys and PSKs.
        fo.sync(&TcpTunables::default(), 0, &mut rng);
        assert_eq!((fo.num_keys(), fo.num_psks()), (0, 0));
        assert_eq!(
            fo.check_cookie(client, &with_psk, false),
            CookieCheck::NoKey
        );
    }

    #[test]
    fn autokey_rotates_on_the_host_clock() {
        let mut rng = HostRng::seed_from_u64(2);
        let t = tun(|t| {
            t.fastopen_server_enable = 1;
            t.fastopen_autokey = 10;
        });
        let mut fo = Fastopen::new(&t, &mut rng);
        fo.sync(&t, 0, &mut rng);
        let client: IpAddr = "192.0.2.1".parse().unwrap();
        let CookieCheck::Invalid(first) = fo.check_cookie(client, &[], false) else {
            panic!()
        };
        fo.sync(&t, 9_000_000_000, &mut rng);
        assert_eq!(fo.num_keys(), 1);
        fo.sync(&t, 10_000_000_000, &mut rng);
        assert_eq!(fo.num_keys(), 2);
        let CookieCheck::Invalid(second) = fo.check_cookie(client, &[], false) else {
            panic!()
        };
        assert_ne!(first, second);
        assert_eq!(
            fo.check_cookie(client, &first, false),
            CookieCheck::Valid(second)
        );
        fo.sync(&t, 20_000_000_000, &mut rng);
        assert!(matches!(
            fo.check_cookie(client, &first, false),
            CookieCheck::Invalid(_)
        ));
    }

    #[test]
    fn client_cache_remembers_disables_and_reenables_paths() {
        let mut rng = HostRng::seed_from_u64(3);
        let t = tun(|t| {
            t.fastopen_client_enable = 1;
            t.fastopen_path_disable_time = 60;
            t.fastopen_ccache_buckets = 4;
            t.fastopen_ccache_bucket_limit = 2;
        });
        let mut fo = Fastopen::new(&t, &mut rng);
        fo.sync(&t, 0, &mut rng);
        let local: IpAddr = "10.0.0.1".parse().unwrap();
        let server: SocketAddr = "10.0.0.2:80".parse().unwrap();
        assert_eq!(fo.client_path(local, server, 0), ClientPath::Request);
        fo.update_cache(local, server, 1400, &[1, 2, 3, 4, 5, 6, 7, 8], 0);
        assert_eq!(
            fo.client_path(local, server, 0),
            ClientPath::Cookie {
                cookie: vec![1, 2, 3, 4, 5, 6, 7, 8],
                server_mss: 1400
            }
        );
        assert!(fo.ccache_list(0).contains("0102030405060708"));
        // An odd-length cookie disables the path.
        fo.update_cache(local, server, 1400, &[1, 2, 3, 4, 5], 1_000_000_000);
        assert_eq!(
            fo.client_path(local, server, 2_000_000_000),
            ClientPath::Disabled
        );
        assert!(fo.ccache_list(2_000_000_000).contains("59s"));
        assert_eq!(
            fo.client_path(local, server, 62_000_000_000),
            ClientPath::Request
        );
        // Many servers: each bucket holds at most bucket_limit entries.
        for p in 0..100u16 {
            let s = SocketAddr::new(server.ip(), 1000 + p);
            fo.update_cache(local, s, 1400, &[0; 8], 0);
        }
        assert!(fo.buckets.iter().all(|b| b.len() <= 2));
        // Client TFO off: the cache is emptied.
        fo.sync(&TcpTunables::default(), 0, &mut rng);
        assert_eq!(fo.ccache_list(0).lines().count(), 2);
    }

    #[test]
    fn keys_parse_as_hex() {
        assert_eq!(
            parse_key("00010203-04050607-08090a0b-0c0d0e0f"),
            Ok(std::array::from_fn(|i| i as u8))
        );
        assert_eq!(parse_key("0001"), Err(Errno::EINVAL));
        assert_eq!(parse_key("zz".repeat(16).as_str()), Err(Errno::EINVAL));
    }
}
