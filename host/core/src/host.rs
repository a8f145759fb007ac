//! The host: one registry, one sysctl tree, the plugin search path, and the connections
//! it owns. kldload/kldstat/kldunload and the registry's dynamic sysctls live here because
//! they need all of these together.

use std::sync::Arc;

use plugtcp_abi::cc::CcGlobals;
use plugtcp_abi::Errno;

use crate::conn::{timer_token_parts, Conn, Worker};
use crate::conn_table::{ConnId, ConnTable};
use crate::lro;
use crate::registry::loader::SearchPath;
use crate::registry::Registry;
use crate::secrets::{sip_key, Entropy, HostRng};
use crate::socket::syncache::{SynCache, SynCacheConfig, SynCacheEvent, SynCookies};
use crate::socket::table::{ConnKey, SockTable};
use crate::sysctl::TcpTunables;
use crate::sysctl::{SysctlTree, SysctlValue};
use crate::timer::TimerId;
use crate::usrreq::Listener;
use plugtcp_abi::stack::StackTunables;
use rand::SeedableRng;
use siphasher::sip::SipHasher24;
use std::hash::Hasher;
use std::net::{IpAddr, SocketAddr};

/// A host's plugin-facing core.
pub struct Host {
    pub registry: Arc<Registry>,
    pub sysctl: Arc<SysctlTree>,
    pub search_path: SearchPath,
    /// The connections (see [`crate::conn_table`]).
    pub conns: ConnTable,
    /// Clock, timer wheel and buffer pool shared by the connections.
    pub worker: Worker,
    fired: Vec<(u64, TimerId)>,
    /// Plugin faults per plugin name (a panicking hook costs its connection, never the host).
    pub plugin_faults: std::collections::BTreeMap<String, u64>,
    /// 4-tuple demux, listeners, ports.
    pub table: SockTable,
    pub syncache: SynCache,
    /// IP fragment reassembly (see [`crate::ipfrag`]).
    pub frags: crate::ipfrag::Reassembler,
    pub cookies: SynCookies,
    pub listeners: Vec<Option<Listener>>,
    pub stats: TcpStat,
    /// What the Prometheus metrics need beyond `stats` (see `metrics.rs`).
    pub metrics: crate::metrics::HostMetrics,
    /// This host's addresses.
    pub addrs: Vec<IpAddr>,
    /// Messages for the operator (FreeBSD's log(9): `log_in_vain`), bounded (see
    /// [`Host::take_log`]).
    pub(crate) log: crate::log::MessageLog,
    /// TCP-MD5 keys, one store for all shards (see [`crate::tcpmd5`]).
    pub(crate) md5_keys: crate::tcpmd5::SharedMd5Keys,
    /// Counts the read-only sysctls report, shared by the shards (see [`crate::gauges`]).
    pub(crate) gauges: crate::gauges::SharedGauges,
    /// TCP Fast Open keys and client cookie cache, one store for all shards (see
    /// [`crate::fastopen`]).
    pub(crate) fastopen: crate::fastopen::SharedFastopen,
    /// The host cache, one for all shards (see [`crate::hostcache`]).
    pub(crate) hostcache: crate::hostcache::SharedHostCache,
    pub(crate) md5_stats: crate::tcpmd5::Md5Stats,
    /// Connections in TIME_WAIT, oldest first (see `timewait.rs`; may hold ones that left).
    pub(crate) time_wait: std::collections::VecDeque<crate::conn_table::ConnId>,
    /// Link MTU (the MSS we offer is derived from it).
    pub mtu: u32,
    /// The sysctl values in force (refreshed when the tree changes).
    pub tunables: Arc<TcpTunables>,
    /// Where every secret comes from (see [`crate::secrets`]).
    pub(crate) rng: HostRng,
    isn_key: (u64, u64),
    isn_reseeded: u64,
    ts_key: (u64, u64),
    pub(crate) sc_events: Vec<SynCacheEvent>,
    /// Inside `batch_begin`/`batch_end`: connections that got segments, for one output each.
    pub(crate) batch: Option<Vec<usize>>,
    batch_spare: Vec<usize>,
    /// The connection the last segment went to (see `input`).
    pub(crate) last_demux: Option<(ConnKey, usize)>,
    /// How the packet being received arrived, when the caller says
    /// ([`Host::input_with_port`]): over UDP from this port, or plain TCP (0).
    pub(crate) rx_port: Option<u16>,
    /// The packet being received has a checksum the device left partial and vouches for
    /// ([`Host::input_checksum_offloaded`]).
    pub(crate) rx_checksum_offloaded: bool,
    /// Connections held back by TCP_DEFER_ACCEPT.
    pub(crate) deferred: Vec<usize>,
    /// Connections and listeners that may have become ready since the runtime last asked
    /// ([`Host::take_ready`]); `None` until [`Host::track_readiness`] turns it on.
    pub(crate) ready: Option<Ready>,
    /// Merge in-order segments within a receive batch (an interface capability, as
    /// `ifconfig lro`; on by default).
    pub lro_enabled: bool,
    /// The segment LRO is building.
    pub(crate) lro: Option<lro::Pending>,
    /// `net.inet.siftr.*` as written, and the change count last applied (see `siftr.rs`).
    pub(crate) siftr_conf: Arc<crate::siftr::SiftrConf>,
    pub(crate) siftr_gen: u64,
}

/// What a host's shards share besides the registry and the sysctl tree (the first shard
/// makes them; `fastopen` needs the first shard's randomness).
#[derive(Default)]
struct Shared {
    siftr_conf: Arc<crate::siftr::SiftrConf>,
    md5_keys: crate::tcpmd5::SharedMd5Keys,
    gauges: crate::gauges::SharedGauges,
    fastopen: Option<crate::fastopen::SharedFastopen>,
    hostcache: Option<crate::hostcache::SharedHostCache>,
}

/// What [`Host::take_ready`] hands out: each entry once until taken.
#[derive(Default)]
pub(crate) struct Ready {
    conns: Vec<ConnId>,
    listeners: Vec<usize>,
}

impl Ready {
    /// Listener `lid` has a connection to accept.
    pub(crate) fn note_listener(&mut self, lid: usize) {
        if !self.listeners.contains(&lid) {
            self.listeners.push(lid);
        }
    }
}

/// Host-wide TCP counters (FreeBSD tcpstat; node_exporter's netstat names in comments).
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct TcpStat {
    /// TcpActiveOpens
    pub active_opens: u64,
    /// TcpPassiveOpens
    pub passive_opens: u64,
    /// TcpInSegs
    pub in_segs: u64,
    /// TcpInErrs, by wire::DropReason.
    pub in_errs: [u64; 9],
    /// TcpOutRsts
    pub out_rsts: u64,
    /// TcpExtListenOverflows
    pub listen_overflows: u64,
    /// TcpExtSyncookiesSent / Recv
    pub syncookies_sent: u64,
    pub syncookies_recvd: u64,
    /// ICMP errors that acted on a connection (FreeBSD tcp_ctlinput).
    pub icmp_errors: u64,
    /// ICMP packets dropped: not an error about one of our segments in flight, or
    /// malformed.
    pub icmp_ignored: u64,
    /// Segments to closed ports dropped without a RST (`net.inet.tcp.blackhole`).
    pub blackholed: u64,
    /// Connections closed early in TIME_WAIT to keep within `maxtcptw`.
    pub tw_recycled: u64,
}

impl Host {
    /// The connection in `slot`, if one lives there.
    pub(crate) fn conn_at(&self, slot: usize) -> Option<&Conn> {
        self.conns.get(slot)?.as_deref()
    }

    /// The listener with index `lid`, if it is open.
    pub(crate) fn listener_at(&self, lid: usize) -> Option<&Listener> {
        self.listeners.get(lid)?.as_ref()
    }

    /// A host with an empty registry whose secrets (ISN key, cookie secrets, hash keys,
    /// ports, timestamp offsets) come from the operating system's CSPRNG: a real host.
    pub fn empty(search_path: SearchPath) -> Self {
        Self::with_entropy(search_path, Entropy::Os)
    }

    /// A host with an empty registry whose randomness (ISNs, ports, cookies, timestamp
    /// offsets) comes from `seed`, so simulated runs are reproducible. For the simulator and
    /// tests only: anyone who knows the seed can compute this host's cookies and ISNs.
    pub fn with_seed(search_path: SearchPath, seed: u64) -> Self {
        Self::with_entropy(search_path, Entropy::Seed(seed))
    }

    /// A host with an empty registry and secrets from `entropy`.
    pub fn with_entropy(search_path: SearchPath, entropy: Entropy) -> Self {
        Self::with_sysctl(search_path, entropy, SysctlTree::new())
    }

    /// A host with an empty registry, secrets from `entropy` and the sysctl tree `tree`
    /// (built with [`SysctlTree::with_loader_tunables`] to set what FreeBSD only takes at
    /// boot, such as the SYN cache's size).
    pub fn with_sysctl(search_path: SearchPath, entropy: Entropy, tree: SysctlTree) -> Self {
        let globals: &'static CcGlobals = Box::leak(Box::default());
        let sysctl = Arc::new(tree);
        let registry = Arc::new(Registry::new(globals));
        let host = Self::assemble(search_path, entropy, registry, sysctl, Shared::default());
        host.register_registry_sysctls();
        host.register_gauge_sysctls();
        host.register_fastopen_sysctls();
        host.register_hostcache_sysctls();
        host.register_siftr_sysctls();
        host.refresh_cc_globals();
        host
    }

    /// Another shard of this host: the same registry, sysctl tree, plugin search path and
    /// siftr configuration (one snapshot for all shards: a kldload or sysctl through any
    /// shard is seen by every one), with its own socket table, timers, buffers and secrets
    /// (from `entropy`), and the same addresses and MTU. Shard `index` of `shards` takes
    /// only the ephemeral ports whose flows steer to it ([`crate::steer`]); call
    /// [`Host::set_shard`] on the first shard too.
    pub fn new_shard(&self, entropy: Entropy, shards: usize, index: usize) -> Host {
        let mut h = Self::assemble(
            self.search_path.clone(),
            entropy,
            self.registry.clone(),
            self.sysctl.clone(),
            Shared {
                siftr_conf: self.siftr_conf.clone(),
                md5_keys: self.md5_keys.clone(),
                gauges: self.gauges.clone(),
                fastopen: Some(self.fastopen.clone()),
                hostcache: Some(self.hostcache.clone()),
            },
        );
        for &a in &self.addrs {
            h.add_addr(a);
        }
        h.mtu = self.mtu;
        h.lro_enabled = self.lro_enabled;
        h.set_shard(shards, index);
        h
    }

    /// Makes this host shard `index` of `shards` (see [`Host::new_shard`]).
    pub fn set_shard(&mut self, shards: usize, index: usize) {
        self.table.set_shard(shards, index);
    }

    fn assemble(
        search_path: SearchPath,
        entropy: Entropy,
        registry: Arc<Registry>,
        sysctl: Arc<SysctlTree>,
        shared: Shared,
    ) -> Self {
        let Shared {
            siftr_conf,
            md5_keys,
            gauges,
            fastopen,
            hostcache,
        } = shared;
        let tunables = sysctl.load_full();
        let mut rng = entropy.rng();
        let hostcache = hostcache.unwrap_or_else(|| {
            let hc = crate::hostcache::HostCache::new(&tunables, &mut rng);
            std::sync::Arc::new(std::sync::Mutex::new(hc))
        });
        let fastopen = fastopen.unwrap_or_else(|| {
            let fo = crate::fastopen::Fastopen::new(&tunables, &mut rng);
            std::sync::Arc::new(std::sync::Mutex::new(fo))
        });
        let sc_cfg = SynCacheConfig {
            hashsize: tunables.syncache_hashsize as usize,
            bucketlimit: tunables.syncache_bucketlimit as usize,
            cachelimit: tunables.syncache_cachelimit as usize,
            rexmtlimit: tunables.syncache_rexmtlimit as u8,
        };
        let mut host = Host {
            registry,
            sysctl,
            search_path,
            conns: ConnTable::default(),
            worker: Worker::new(0),
            fired: Vec::new(),
            plugin_faults: Default::default(),
            table: SockTable::with_rng(HostRng::from_rng(&mut rng)),
            syncache: SynCache::with_key(sc_cfg, sip_key(&mut rng)),
            frags: crate::ipfrag::Reassembler::new(Default::default()),
            cookies: SynCookies::new(0, &mut rng),
            listeners: Vec::new(),
            stats: TcpStat::default(),
            metrics: Default::default(),
            addrs: Vec::new(),
            log: Default::default(),
            md5_keys,
            gauges,
            fastopen,
            hostcache,
            md5_stats: Default::default(),
            time_wait: Default::default(),
            mtu: 1500,
            tunables,
            isn_key: sip_key(&mut rng),
            isn_reseeded: 0,
            ts_key: sip_key(&mut rng),
            rng,
            sc_events: Vec::new(),
            batch: None,
            batch_spare: Vec::new(),
            last_demux: None,
            rx_port: None,
            rx_checksum_offloaded: false,
            lro_enabled: true,
            lro: None,
            deferred: Vec::new(),
            ready: None,
            siftr_conf,
            siftr_gen: 0,
        };
        let gauges = host.gauges.clone();
        host.worker.pool = crate::socket::buffer::ChunkPool::with_budget(gauges.clone());
        host.syncache.set_gauges(gauges);
        host.worker.tunables = Arc::new(stack_tunables(&host.tunables));
        host.worker.tso_segs = tso_segs(&host.tunables);
        host.syncache.set_rto(syn_rto(&host.tunables));
        host
    }

    /// Copies the sysctls CC modules read into the shared `CcGlobals`.
    fn refresh_cc_globals(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        let t = self.sysctl.snapshot();
        let g = self.registry.cc_globals;
        g.abe.store(t.cc_abe as isize, Relaxed);
        g.abe_frlossreduce
            .store(t.cc_abe_frlossreduce as isize, Relaxed);
        g.abc_l_var.store(t.abc_l_var as isize, Relaxed);
        g.initcwnd_segments
            .store(t.initcwnd_segments as isize, Relaxed);
        g.hystartplusplus_minrtt_thresh
            .store(t.cc_hystartplusplus_minrtt_thresh as isize, Relaxed);
        g.hystartplusplus_maxrtt_thresh
            .store(t.cc_hystartplusplus_maxrtt_thresh as isize, Relaxed);
        g.hystartplusplus_n_rttsamples
            .store(t.cc_hystartplusplus_n_rttsamples as isize, Relaxed);
        g.hystartplusplus_css_growth_div
            .store(t.cc_hystartplusplus_css_growth_div as isize, Relaxed);
        g.hystartplusplus_css_rounds
            .store(t.cc_hystartplusplus_css_rounds as isize, Relaxed);
    }

    /// A function block counter (FreeBSD tcpstat name, e.g. `sndrexmitpack`), summed over
    /// every registered stack.
    pub fn block_counter(&self, name: &str) -> u64 {
        self.registry
            .snapshot()
            .blocks
            .iter()
            .map(|b| {
                b.counter_names
                    .iter()
                    .position(|n| n == name)
                    .map_or(0, |i| {
                        b.counters[i].load(std::sync::atomic::Ordering::Relaxed) as u64
                    })
            })
            .sum()
    }

    /// `sysctl NAME=VALUE`: the tree's errno rules, and CC modules see the new value at once.
    pub fn sysctl_set(&mut self, name: &str, value: &str) -> Result<SysctlValue, Errno> {
        let old = self.sysctl.set(name, value)?;
        self.refresh_tunables();
        self.refresh_cc_globals();
        Ok(old)
    }

    /// Capacity hint: room for `n` more connections in the slot vector and the socket table
    /// (as a server sizes its socket limits up front), so growth neither copies nor rehashes.
    pub fn reserve(&mut self, n: usize) {
        self.conns.reserve(n);
        self.table.reserve(n);
    }

    /// Adds an address this host owns.
    pub fn add_addr(&mut self, ip: IpAddr) {
        if !self.addrs.contains(&ip) {
            self.addrs.push(ip);
            self.table.add_local_addr(ip);
        }
    }

    /// The MSS we offer on `local`: the MTU less IP and TCP headers.
    pub fn mss_for(&self, local: SocketAddr) -> u32 {
        let hdr = if local.is_ipv4() { 40 } else { 60 };
        self.mtu
            .saturating_sub(hdr)
            .max(self.tunables.minmss as u32)
    }

    /// RFC 6528 initial sequence number: a 4 µs clock plus SipHash of the 4-tuple under a
    /// secret key.
    pub(crate) fn isn(&mut self, key: &ConnKey) -> u32 {
        // isn_reseed_interval (seconds, 0 = never): a fresh secret now and then, as FreeBSD.
        let every = self.tunables.isn_reseed_interval as u64 * 1_000_000_000;
        if every > 0 && self.worker.now.saturating_sub(self.isn_reseeded) >= every {
            self.isn_key = sip_key(&mut self.rng);
            self.isn_reseeded = self.worker.now;
        }
        let h = keyed_hash(self.isn_key, key);
        ((self.worker.now / 4000) as u32).wrapping_add(h as u32)
    }

    /// RFC 7323 5.4: a per-connection random timestamp offset.
    pub(crate) fn ts_offset(&self, key: &ConnKey) -> u32 {
        if self.tunables.ts_offset_per_conn != 0 {
            keyed_hash(self.ts_key, key) as u32
        } else {
            0
        }
    }

    /// Picks up sysctl changes (a pointer compare when nothing changed).
    pub(crate) fn refresh_tunables(&mut self) {
        if self.siftr_conf.generation() != self.siftr_gen {
            self.refresh_siftr();
        }
        let cur = self.sysctl.snapshot();
        if !Arc::ptr_eq(&cur, &self.tunables) {
            self.tunables = Arc::clone(&cur);
            drop(cur);
            self.worker.tunables = Arc::new(stack_tunables(&self.tunables));
            self.worker.tso_segs = tso_segs(&self.tunables);
            self.worker.tx.no_df = self.tunables.path_mtu_discovery == 0;
            self.refresh_cc_globals();
            self.syncache.set_rto(syn_rto(&self.tunables));
            self.with_fastopen(|_| ());
        }
    }

    /// Starts a receive batch: packets given to `input` until `batch_end` arrived together
    /// (one link poll, one recvmmsg). Each connection's output, and so its ACK, waits for the
    /// end of the batch (as FreeBSD's LRO and Linux's GRO give a stack one coalesced segment).
    pub fn batch_begin(&mut self) {
        if self.batch.is_none() {
            self.refresh_tunables();
            self.batch = Some(std::mem::take(&mut self.batch_spare));
        }
    }

    /// Ends a receive batch: one output per connection that got segments in it.
    pub fn batch_end(&mut self) {
        self.lro_flush();
        let Some(mut slots) = self.batch.take() else {
            return;
        };
        for &slot in &slots {
            let Some(c) = self.conns.get_mut(slot).and_then(Option::as_mut) else {
                continue;
            };
            if !c.side.in_batch {
                continue;
            }
            c.side.in_batch = false;
            let _ = self.with_slot(slot, |c, w| c.output(w));
            self.after_call(slot);
        }
        slots.clear();
        // Keep the allocation for the next batch.
        self.batch_spare = slots;
    }

    /// Hands every queued outgoing packet to `f`, oldest first, and empties the transmit
    /// queue: what a driver does after `input`, `advance` or an application call.
    pub fn transmit(&mut self, f: impl FnMut(&[u8])) {
        self.worker.tx.drain(f);
    }

    /// As [`Host::transmit`], with each packet's UDP tunnel port (0: plain TCP).
    pub fn transmit_tagged(&mut self, f: impl FnMut(&[u8], u16)) {
        self.worker.tx.drain_tagged(f);
    }

    /// As [`Host::transmit_tagged`], with each packet's GSO segment size: nonzero for a
    /// super-packet the backend is to cut into packets of that many payload bytes (its TCP
    /// checksum partial, as virtio's NEEDS_CSUM). Only after [`Host::set_tx_gso`].
    pub fn transmit_gso(&mut self, f: impl FnMut(&[u8], u16, u16)) {
        self.worker.tx.drain_gso(f);
    }

    /// The backend computes the TCP checksum of every packet the connections send (a
    /// device's checksum offload): their checksum fields hold the pseudo-header sum. Only
    /// for such a backend (the in-memory link of `bench bulk`).
    pub fn set_tx_checksum_offload(&mut self, on: bool) {
        self.worker.tx_csum_offload = on;
    }

    /// The backend takes super-packets of up to `max_bytes` (IP header included) and cuts
    /// them itself, computing the TCP checksum (GSO and checksum offload on transmit); 0:
    /// it does not, the host cuts TSO segments into packets.
    pub fn set_tx_gso(&mut self, max_bytes: u32) {
        self.worker.tx_gso_max = max_bytes.min(u16::MAX as u32);
    }

    /// Outgoing packets waiting in the transmit queue.
    pub fn tx_len(&self) -> usize {
        self.worker.tx.len()
    }

    /// The host clock (ns): the time of the last [`Host::advance`] or [`Host::set_now`].
    pub fn now(&self) -> u64 {
        self.worker.now
    }

    /// Sets the clock for what comes next (packets that arrive now) without running the
    /// timers that are due: [`Host::advance`] runs those.
    pub fn set_now(&mut self, now: u64) {
        self.worker.now = now;
    }

    /// When connection `id`'s timer `which` (a `tt::*`) fires (ns, host clock), if armed.
    pub fn timer_deadline(&self, id: ConnId, which: u32) -> Option<u64> {
        let t = (*self.conns.get_by_id(id)?.side.timers.get(which as usize)?)?;
        self.worker.wheel.get(t).map(|(deadline, _)| deadline)
    }

    /// Timers armed in the wheel, every connection's.
    pub fn timers_armed(&self) -> usize {
        self.worker.wheel.len()
    }

    /// Socket-buffer chunks in use (the pool's count; 0 once every connection is freed).
    pub fn buffer_chunks_in_use(&self) -> usize {
        self.worker.pool.in_use()
    }

    /// What the transmit side's TSO and the receive side's LRO did so far.
    pub fn offload_stats(&self) -> crate::conn::OffloadStats {
        self.worker.offload
    }

    /// Starts (or stops) noting which connections and listeners may have become ready, for
    /// a runtime that wakes only the tasks waiting on those ([`Host::take_ready`]). Off by
    /// default: a caller that never takes the list pays nothing.
    pub fn track_readiness(&mut self, on: bool) {
        self.ready = on.then(Ready::default);
    }

    /// Moves into `conns` the connections a stack call touched (data, window, state), or
    /// that were freed (their handles are stale now), and into `listeners` those with a
    /// new connection to accept, since the last call; each once. Nothing unless
    /// [`Host::track_readiness`] is on.
    pub fn take_ready(&mut self, conns: &mut Vec<ConnId>, listeners: &mut Vec<usize>) {
        let Some(r) = self.ready.as_mut() else {
            return;
        };
        conns.append(&mut r.conns);
        listeners.append(&mut r.listeners);
        for &id in conns.iter() {
            if let Some(c) = self.conns.get_by_id_mut(id) {
                c.side.ready_marked = false;
            }
        }
    }

    /// Notes connection `slot` as possibly ready (see [`Host::take_ready`]).
    pub(crate) fn mark_ready(&mut self, slot: usize) {
        let (Some(r), Some(id)) = (self.ready.as_mut(), self.conns.id(slot)) else {
            return;
        };
        if let Some(c) = self.conns.get_mut(slot).and_then(Option::as_mut) {
            if !std::mem::replace(&mut c.side.ready_marked, true) {
                r.conns.push(id);
            }
        }
    }

    /// The earliest time something is due (a timer or a SYN cache event).
    pub fn next_timeout(&self) -> Option<u64> {
        let deferred = self
            .deferred
            .iter()
            .filter_map(|&s| self.conns.get(s)?.as_ref()?.side.deferred_until)
            .min();
        [
            self.worker.wheel.next_deadline(),
            self.syncache.next_timeout(),
            self.frags.next_timeout(),
            deferred,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Moves the clock to `now` and runs every connection timer that is due.
    pub fn advance(&mut self, now: u64) {
        self.refresh_tunables();
        self.worker.now = now;
        self.syncache_timers(now);
        self.frags.expire(now);
        self.defer_timers(now);
        let mut fired = std::mem::take(&mut self.fired);
        self.worker.wheel.expire_ids(now, &mut fired);
        for &(token, id) in &fired {
            let (slot, which) = timer_token_parts(token);
            // A connection in the slot is the one that armed the timer: closing a connection
            // cancels its timers. One delivered earlier in this pass may have stopped or
            // re-armed this one: then the connection no longer holds `id`, and it is skipped.
            let _ = self.with_slot(slot, |c, w| c.timer_fired(w, which, id));
            self.after_call(slot);
        }
        fired.clear();
        self.fired = fired;
    }
}

fn keyed_hash(key: (u64, u64), k: &ConnKey) -> u64 {
    let mut h = SipHasher24::new_with_keys(key.0, key.1);
    for a in [k.local, k.remote] {
        match a.ip() {
            IpAddr::V4(ip) => h.write(&ip.octets()),
            IpAddr::V6(ip) => h.write(&ip.octets()),
        }
        h.write_u16(a.port());
    }
    h.finish()
}

/// What stacks read, from the sysctl values.
/// `Tcpcb::t_tsomax_segs` for every connection: the host segments in software, so TSO is
/// there whenever the sysctl allows it.
fn tso_segs(t: &TcpTunables) -> u32 {
    if t.tso != 0 {
        crate::conn::TSO_MAX_SEGS
    } else {
        1
    }
}

fn stack_tunables(t: &TcpTunables) -> StackTunables {
    let u = |v: i64| v.clamp(0, u32::MAX as i64) as u32;
    StackTunables {
        mssdflt: u(t.mssdflt),
        v6mssdflt: u(t.v6mssdflt),
        minmss: u(t.minmss),
        rfc1323: u(t.rfc1323),
        sack_enable: u(t.sack_enable),
        sack_maxholes: u(t.sack_maxholes),
        delayed_ack: u(t.delayed_ack),
        delacktime: u(t.delacktime),
        rexmit_initial: u(t.rexmit_initial),
        rexmit_min: u(t.rexmit_min),
        rexmit_slop: u(t.rexmit_slop),
        persmin: u(t.persmin),
        persmax: u(t.persmax),
        keepinit: u(t.keepinit),
        keepidle: u(t.keepidle),
        keepintvl: u(t.keepintvl),
        keepcnt: u(t.keepcnt),
        always_keepalive: u(t.always_keepalive),
        msl: u(t.msl),
        nolocaltimewait: u(t.nolocaltimewait),
        initcwnd_segments: u(t.initcwnd_segments),
        ecn_enable: u(t.ecn_enable),
        ecn_maxretries: u(t.ecn_maxretries),
        do_prr: u(t.do_prr),
        do_prr_conservative: u(t.do_prr_conservative),
        do_lrd: u(t.do_lrd),
        insecure_rst: u(t.insecure_rst),
        insecure_syn: u(t.insecure_syn),
        drop_synfin: u(t.drop_synfin),
        tolerate_missing_ts: u(t.tolerate_missing_ts),
        abc_l_var: u(t.abc_l_var),
        recvbuf_auto: u(t.recvbuf_auto),
        recvbuf_max: u(t.recvbuf_max),
        sendbuf_auto: u(t.sendbuf_auto),
        sendbuf_inc: u(t.sendbuf_inc),
        sendbuf_max: u(t.sendbuf_max),
        ack_war_timewindow: u(t.ack_war_timewindow),
        ack_war_cnt: u(t.ack_war_cnt),
        finwait2_timeout: u(t.finwait2_timeout),
        fast_finwait2_recycle: u(t.fast_finwait2_recycle),
        rack_reorder_thresh: u(t.rack_reorder_thresh),
        rack_reorder_fade: u(t.rack_reorder_fade),
        rack_pktdelay: u(t.rack_pktdelay),
        rack_tlp_limit: u(t.rack_tlp_limit),
        rack_tlpminto: u(t.rack_timers_tlpminto),
        pmtud_blackhole_detection: u(t.pmtud_blackhole_detection),
        pmtud_blackhole_mss: u(t.pmtud_blackhole_mss),
        v6pmtud_blackhole_mss: u(t.v6pmtud_blackhole_mss),
        reass_maxqueuelen: u(t.reass_maxqueuelen),
    }
}

/// The SYN cache's retransmit timer from the rexmit sysctls (milliseconds).
fn syn_rto(t: &TcpTunables) -> crate::socket::syncache::SynRto {
    let ms = |v: i64| v.max(0) as u64 * 1_000_000;
    crate::socket::syncache::SynRto {
        initial: ms(t.rexmit_initial),
        min: ms(t.rexmit_min),
        slop: ms(t.rexmit_slop),
    }
}

impl Host {
    /// `mss` less udp_tunneling_overhead for a connection over UDP (`udp_port` not 0),
    /// never below minmss (FreeBSD syncache_respond, tcp_mss_update).
    pub(crate) fn tunneled_mss(&self, mss: u32, udp_port: u16) -> u32 {
        if udp_port == 0 {
            return mss;
        }
        let overhead = self.tunables.udp_tunneling_overhead.max(0) as u32;
        mss.saturating_sub(overhead)
            .max(self.tunables.minmss.max(0) as u32)
    }

    /// The MSS assumed for a peer that sent none (RFC 9293 3.7.1): `mssdflt` over IPv4,
    /// `v6mssdflt` over IPv6.
    pub(crate) fn default_peer_mss(&self, key: &ConnKey) -> u16 {
        let t = &self.tunables;
        let v = if key.remote.is_ipv4() {
            t.mssdflt
        } else {
            t.v6mssdflt
        };
        v.clamp(0, 65535) as u16
    }

    /// Our window-scale shift: enough for the largest receive buffer we may grow to
    /// (FreeBSD: TCP_MAXWIN << scale covers sb_max).
    pub(crate) fn rcv_wscale(&self) -> u8 {
        let t = &self.tunables;
        let max = (t.recvbuf_max as u64).max(t.recvspace as u64);
        let mut s = 0u8;
        while s < 14 && (65535u64 << s) < max {
            s += 1;
        }
        s
    }
}
