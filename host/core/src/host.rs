//! The host: one registry, one sysctl tree, the plugin search path, and the connections
//! it owns. kldload/kldstat/kldunload and the registry's dynamic sysctls live here because
//! they need all of these together.

use std::path::PathBuf;
use std::sync::Arc;

use plugtcp_abi::cc::CcGlobals;
use plugtcp_abi::stack::TcpFunctionBlockRef;
use plugtcp_abi::{Errno, PluginKind};

use crate::conn::{timer_token_parts, Conn, ConnFault, Culprit, Worker};
use crate::conn_table::{ConnId, ConnTable};
use crate::lro;
use crate::registry::loader::{open_plugin, LoadError, LoadFailure, SearchPath};
use crate::registry::{Deregistered, Origin, PluginInfo, Registry};
use crate::secrets::{sip_key, Entropy, HostRng};
use crate::socket::syncache::{SynCache, SynCacheConfig, SynCacheEvent, SynCookies};
use crate::socket::table::{ConnKey, SockTable};
use crate::sysctl::TcpTunables;
use crate::sysctl::{DynamicNode, SysctlTree, SysctlValue};
use crate::timer::TimerId;
use crate::usrreq::Listener;
use plugtcp_abi::stack::StackTunables;
use rand::SeedableRng;
use siphasher::sip::SipHasher24;
use std::hash::Hasher;
use std::net::{IpAddr, SocketAddr};

/// One row of `plugtcp kldstat`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct KldRow {
    pub id: u64,
    pub kind: &'static str,
    pub name: String,
    pub aliases: Vec<String>,
    pub version: String,
    pub pcbs: usize,
    pub file: String,
    pub being_removed: bool,
}

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
    /// Connections held back by TCP_DEFER_ACCEPT.
    pub(crate) deferred: Vec<usize>,
    /// Merge in-order segments within a receive batch (an interface capability, as
    /// `ifconfig lro`; on by default).
    pub lro_enabled: bool,
    /// The segment LRO is building.
    pub(crate) lro: Option<lro::Pending>,
    /// `net.inet.siftr.*` as written, and the change count last applied (see `siftr.rs`).
    pub(crate) siftr_conf: Arc<crate::siftr::SiftrConf>,
    pub(crate) siftr_gen: u64,
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
}

/// Plugins linked into the program (the `plugtcp` binary's built-in bundle, or what a test
/// links), registered through the same ABI as files, under [`Origin::Builtin`].
#[derive(Clone, Default)]
pub struct StaticPlugins {
    pub function_blocks: Vec<TcpFunctionBlockRef>,
    pub cc_modules: Vec<plugtcp_abi::cc::CcAlgoRef>,
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
        let tunables = sysctl.load_full();
        let mut rng = entropy.rng();
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
            lro_enabled: true,
            lro: None,
            deferred: Vec::new(),
            siftr_conf: Default::default(),
            siftr_gen: 0,
        };
        host.worker.tunables = Arc::new(stack_tunables(&host.tunables));
        host.worker.tso_segs = tso_segs(&host.tunables);
        host.syncache.set_rto(syn_rto(&host.tunables));
        host.register_registry_sysctls();
        host.register_siftr_sysctls();
        host.refresh_cc_globals();
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

    /// Loads every plugin file found on the host's search path, then registers the static
    /// plugins whose names no file took. Files that fail are reported, not fatal.
    pub fn autoload(mut self, statics: &StaticPlugins) -> (Self, Vec<LoadError>) {
        let mut errors = Vec::new();
        for f in self.search_path.autoload_files() {
            if let Err(e) = self.kldload_path(f) {
                errors.push(e);
            }
        }
        self.register_static(statics);
        (self, errors)
    }

    /// Registers the static plugins whose names are still free.
    pub fn register_static(&self, statics: &StaticPlugins) {
        let info = || PluginInfo {
            origin: Origin::Builtin,
            version: env!("CARGO_PKG_VERSION").into(),
        };
        for &b in &statics.function_blocks {
            if self.registry.kind_of(b.name().as_str()).is_none()
                && self.registry.register_block(b, info()).is_ok()
            {
                let kind = PluginKind::FunctionBlock;
                self.metrics.note_plugin(kind, b.name().as_str(), true);
            }
        }
        for &c in &statics.cc_modules {
            if self.registry.kind_of(c.name().as_str()).is_none() {
                if self.register_cc(c, info()).is_err() {
                    // A static module that fails to register is a bug in the build, not input.
                    debug_assert!(false, "static CC module {} refused", c.name());
                } else {
                    let kind = PluginKind::CcModule;
                    self.metrics.note_plugin(kind, c.name().as_str(), true);
                }
            }
        }
    }

    /// Reload (DESIGN.md: "loads a new file under a new version and switches users"): the
    /// new module takes the name, default role and parameter values; every connection on the
    /// old one switches to it as TCP_CONGESTION would (cwnd and ssthresh stay); a connection
    /// whose switch fails goes to the default module, or is dropped if that fails too.
    fn reload_cc(
        &mut self,
        algo: plugtcp_abi::cc::CcAlgoRef,
        info: PluginInfo,
    ) -> Result<(), Errno> {
        let (old, new) = self.registry.replace_cc(algo, info)?;
        for key in self.sysctl.list(&format!("net.inet.tcp.cc.{}", old.name)) {
            let _ = self.sysctl.unregister_dynamic(&key.0);
        }
        self.register_cc_sysctls(&new);
        let default = self.registry.snapshot().default_cc.clone();
        let (mut faults, mut dead) = (Vec::new(), Vec::new());
        for (slot, c) in self.conns.iter_mut().enumerate() {
            let Some(c) = c else { continue };
            if !c.cc().is_some_and(|m| Arc::ptr_eq(m, &old)) {
                continue;
            }
            if let Err(f) = c.set_cc(new.clone()) {
                faults.push(f);
                let fallback = default.clone().filter(|d| !Arc::ptr_eq(d, &new));
                if fallback.is_none_or(|d| c.set_cc(d).is_err()) {
                    dead.push(slot);
                }
            }
        }
        for slot in dead {
            self.free_conn(slot);
        }
        for f in faults {
            self.note_fault(&f);
        }
        self.registry.finish_cc_replacement(&old)
    }

    fn register_cc(&self, algo: plugtcp_abi::cc::CcAlgoRef, info: PluginInfo) -> Result<(), Errno> {
        let entry = self.registry.register_cc(algo, info)?;
        self.register_cc_sysctls(&entry);
        Ok(())
    }

    /// `net.inet.tcp.cc.<module>.<param>` nodes for a module's parameters.
    fn register_cc_sysctls(&self, entry: &crate::registry::CcEntry) {
        for d in &entry.param_descs {
            let name = format!("net.inet.tcp.cc.{}.{}", entry.name, d.name);
            let node = Arc::new(CcParamNode {
                registry: self.registry.clone(),
                module: entry.name.clone(),
                param: d.name.to_string(),
                description: d.description.to_string(),
            });
            let _ = self.sysctl.register_dynamic(&name, node);
        }
    }

    /// `kldload`: a path, or a bare name looked up on the search path. Returns the names
    /// registered.
    pub fn kldload(&mut self, what: &str) -> Result<(PluginKind, Vec<String>), LoadError> {
        let path = self.search_path.resolve(what);
        self.kldload_path(path)
    }

    pub fn kldload_path(&mut self, path: PathBuf) -> Result<(PluginKind, Vec<String>), LoadError> {
        let root = open_plugin(&path)?;
        let refused = |e: Errno| LoadError {
            path: path.clone(),
            failure: LoadFailure::Refused(e),
        };
        let info = PluginInfo {
            origin: Origin::File(path.clone()),
            version: root.version().to_string(),
        };
        let kind = root.kind();
        match kind {
            PluginKind::FunctionBlock => {
                let get = root.function_block().ok_or_else(|| LoadError {
                    path: path.clone(),
                    failure: LoadFailure::NotAPlugin(
                        "declares a function block but exports none".into(),
                    ),
                })?;
                let e = self.registry.register_block(get(), info).map_err(refused)?;
                self.metrics.note_plugin(kind, &e.name, true);
                Ok((kind, e.names().map(str::to_owned).collect()))
            }
            PluginKind::CcModule => {
                let get = root.cc_algo().ok_or_else(|| LoadError {
                    path: path.clone(),
                    failure: LoadFailure::NotAPlugin(
                        "declares a CC module but exports none".into(),
                    ),
                })?;
                let algo = get();
                let name = algo.name().to_string();
                let loaded = self.registry.snapshot().cc_any(&name).cloned();
                match loaded {
                    // A rebuilt module under a new version: reload.
                    Some(old) if old.info.version != info.version => {
                        self.reload_cc(algo, info).map_err(refused)?
                    }
                    _ => self.register_cc(algo, info).map_err(refused)?,
                }
                self.metrics.note_plugin(kind, &name, true);
                Ok((kind, vec![name]))
            }
        }
    }

    /// `kldstat`: every registered plugin.
    pub fn kldstat(&self) -> Vec<KldRow> {
        let s = self.registry.snapshot();
        let file = |o: &Origin| o.to_string();
        let blocks = s.blocks.iter().map(|b| KldRow {
            id: b.id,
            kind: PluginKind::FunctionBlock.name(),
            name: b.name.clone(),
            aliases: b.aliases.clone(),
            version: b.info.version.clone(),
            pcbs: b.users(),
            file: file(&b.info.origin),
            being_removed: b.being_removed(),
        });
        let ccs = s.ccs.iter().map(|c| KldRow {
            id: c.id,
            kind: PluginKind::CcModule.name(),
            name: c.name.clone(),
            aliases: Vec::new(),
            version: c.info.version.clone(),
            pcbs: c.users(),
            file: file(&c.info.origin),
            being_removed: c.being_removed(),
        });
        let mut rows: Vec<KldRow> = blocks.chain(ccs).collect();
        rows.sort_by_key(|r| r.id);
        rows
    }

    /// `kldunload NAME [-f]`: deregisters with FreeBSD semantics; forced, the users move to
    /// the default first.
    pub fn kldunload(&mut self, name: &str, force: bool) -> Result<(), Errno> {
        match self.registry.kind_of(name).ok_or(Errno::ENOENT)? {
            PluginKind::FunctionBlock => {
                let primary = self
                    .registry
                    .snapshot()
                    .block_any(name)
                    .map(|b| b.name.clone())
                    .ok_or(Errno::ENOENT)?;
                if let Deregistered::MoveUsers(_) =
                    self.registry.deregister_block(&primary, force)?
                {
                    self.move_stack_users(&primary)?;
                    self.registry.finish_block_removal(&primary)?;
                }
                self.metrics
                    .note_plugin(PluginKind::FunctionBlock, &primary, false);
            }
            PluginKind::CcModule => {
                if let Deregistered::MoveUsers(_) = self.registry.deregister_cc(name, force)? {
                    self.move_cc_users(name)?;
                    self.registry.finish_cc_removal(name)?;
                }
                self.metrics.note_plugin(PluginKind::CcModule, name, false);
                for key in self.sysctl.list(&format!("net.inet.tcp.cc.{name}")) {
                    let _ = self.sysctl.unregister_dynamic(&key.0);
                }
            }
        }
        Ok(())
    }

    /// Forced removal of block `name` (FreeBSD tcp_switch_back_to_default): each user moves
    /// to the default block; if the default refuses it (handoff_ok) or its init fails, to
    /// `base`, which never refuses; only if that fails too is the connection dropped (RST).
    fn move_stack_users(&mut self, name: &str) -> Result<(), Errno> {
        let snap = self.registry.load_full();
        let chain: Vec<Arc<crate::registry::BlockEntry>> = snap
            .default_block
            .iter()
            .cloned()
            .chain(snap.block("base").ok().cloned())
            .filter(|b| b.name != name)
            .collect();
        let users: Vec<usize> = self
            .conns
            .iter()
            .enumerate()
            .filter(|(_, c)| {
                c.as_ref()
                    .is_some_and(|c| c.stack().is_some_and(|b| b.name == name))
            })
            .map(|(i, _)| i)
            .collect();
        for slot in users {
            let mut moved = false;
            for (i, target) in chain.iter().enumerate() {
                if i > 0 && Arc::ptr_eq(target, &chain[0]) {
                    continue;
                }
                let Some(c) = self.conns.get_mut(slot).and_then(Option::as_mut) else {
                    break;
                };
                let r = c.switch_stack(&mut self.worker, target.clone());
                let result = r.as_ref().map_or_else(|f| f.errno().name(), |_| "ok");
                self.metrics.note_switch(name, &target.name, result);
                match r {
                    Ok(()) => {
                        moved = true;
                        break;
                    }
                    Err(f) => self.note_fault(&f),
                }
            }
            if moved {
                self.replay_sticky(slot);
            } else {
                // Nothing takes it: it cannot stay on a departing stack (tcp_drop).
                if let Some(id) = self.conns.id(slot) {
                    self.abort(id);
                }
            }
        }
        Ok(())
    }

    fn move_cc_users(&mut self, name: &str) -> Result<(), Errno> {
        let default = self
            .registry
            .snapshot()
            .default_cc
            .clone()
            .ok_or(Errno::EBUSY)?;
        let (mut faults, mut dead) = (Vec::new(), Vec::new());
        for (slot, c) in self.conns.iter_mut().enumerate() {
            let Some(c) = c else { continue };
            if c.cc().is_some_and(|m| m.name == name && m.being_removed()) {
                if let Err(f) = c.set_cc(default.clone()) {
                    faults.push(f);
                    dead.push(slot);
                }
            }
        }
        for slot in dead {
            self.free_conn(slot);
        }
        for f in faults {
            self.note_fault(&f);
        }
        Ok(())
    }

    /// Counts a plugin fault (only panics count; an errno is an answer, not a fault).
    pub fn note_fault(&mut self, f: &ConnFault) {
        if f.error == plugtcp_abi::HookError::Panicked {
            let name = match &f.culprit {
                Culprit::Stack(n) | Culprit::Cc(n) => n.clone(),
            };
            *self.plugin_faults.entry(name).or_default() += 1;
        }
    }

    /// A new connection on the default stack and CC.
    pub fn new_conn(&mut self) -> Result<ConnId, Errno> {
        let snap = self.registry.load_full();
        let t = self.sysctl.load_full();
        let slot = self.conns.vacant();
        let mut c = Conn::new(
            slot,
            t.mssdflt as u32,
            t.sendspace as usize,
            t.recvspace as usize,
            self.registry.cc_globals,
        );
        if let Some(cc) = &snap.default_cc {
            c.set_cc(cc.clone()).map_err(|f| f.errno())?;
        }
        if let Some(b) = &snap.default_block {
            if let Err(f) = c.switch_stack(&mut self.worker, b.clone()) {
                c.close(&mut self.worker);
                self.note_fault(&f);
                return Err(f.errno());
            }
        }
        Ok(self.conns.put(slot, Box::new(c)))
    }

    /// Frees connection `slot`: the stack's fini, the CC's cb_destroy, timers and buffers.
    pub(crate) fn close_conn(&mut self, slot: usize) {
        self.last_demux = None;
        if let Some(mut c) = self.conns.take(slot) {
            c.close(&mut self.worker);
        }
    }

    /// Runs `f` on connection `id`; a plugin panic resets (frees) that connection only,
    /// is counted, and comes back as ECONNABORTED. An errno is just returned; ENOTCONN when
    /// `id` names no connection.
    pub fn with_conn<R>(
        &mut self,
        id: ConnId,
        f: impl FnOnce(&mut Conn, &mut Worker) -> Result<R, ConnFault>,
    ) -> Result<R, Errno> {
        self.with_slot(self.conns.resolve(id), f)
    }

    /// [`Host::with_conn`] by slot, for the host's own paths.
    pub(crate) fn with_slot<R>(
        &mut self,
        slot: usize,
        f: impl FnOnce(&mut Conn, &mut Worker) -> Result<R, ConnFault>,
    ) -> Result<R, Errno> {
        let c = self
            .conns
            .get_mut(slot)
            .and_then(Option::as_mut)
            .ok_or(Errno::ENOTCONN)?;
        match f(c, &mut self.worker) {
            Ok(r) => Ok(r),
            Err(fault) => {
                if fault.error == plugtcp_abi::HookError::Panicked {
                    self.close_conn(slot);
                }
                self.note_fault(&fault);
                Err(fault.errno())
            }
        }
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
            self.refresh_cc_globals();
            self.syncache.set_rto(syn_rto(&self.tunables));
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
            if c.ctx.tp.t_flags2 & plugtcp_abi::tcpcb::tf2::INPUT_BATCH == 0 {
                continue;
            }
            c.ctx.tp.t_flags2 &= !plugtcp_abi::tcpcb::tf2::INPUT_BATCH;
            let _ = self.with_slot(slot, |c, w| c.output(w));
            self.after_call(slot);
        }
        slots.clear();
        // Keep the allocation for the next batch.
        self.batch_spare = slots;
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

    fn register_registry_sysctls(&self) {
        let r = || self.registry.clone();
        let (r1, r2, r3, r4, r5, r6) = (r(), r(), r(), r(), r(), r());
        let nodes = [
            (
                "net.inet.tcp.functions_default",
                HostNode {
                    get: Box::new(move || {
                        let s = r1.snapshot();
                        SysctlValue::Str(
                            s.default_block
                                .as_ref()
                                .map_or_else(String::new, |b| b.name.clone()),
                        )
                    }),
                    set: Some(Box::new(move |v| r2.set_default_block(v))),
                    description: "Set/get the default TCP functions",
                },
            ),
            (
                "net.inet.tcp.functions_available",
                HostNode {
                    get: Box::new(move || SysctlValue::Str(functions_available(&r3))),
                    set: None,
                    description: "list available TCP Function sets",
                },
            ),
            (
                "net.inet.tcp.cc.algorithm",
                HostNode {
                    get: Box::new(move || {
                        let s = r4.snapshot();
                        SysctlValue::Str(
                            s.default_cc
                                .as_ref()
                                .map_or_else(String::new, |c| c.name.clone()),
                        )
                    }),
                    set: Some(Box::new(move |v| r5.set_default_cc(v))),
                    description: "Default congestion control algorithm",
                },
            ),
            (
                "net.inet.tcp.cc.available",
                HostNode {
                    get: Box::new(move || SysctlValue::Str(cc_available(&r6))),
                    set: None,
                    description: "List available congestion control algorithms",
                },
            ),
        ];
        let sb_max = self.worker.sb_max.clone();
        let sb_max_w = self.worker.sb_max.clone();
        let nodes = nodes.into_iter().chain([(
            "kern.ipc.maxsockbuf",
            HostNode {
                get: Box::new(move || {
                    SysctlValue::Int(sb_max.load(std::sync::atomic::Ordering::Relaxed) as i64)
                }),
                // FreeBSD sysctl_handle_sb_max: at least an mbuf and a cluster.
                set: Some(Box::new(move |v| {
                    let n = crate::sysctl::parse_int(v)?;
                    if n < 256 + 2048 {
                        return Err(Errno::EINVAL);
                    }
                    sb_max_w.store(n as u64, std::sync::atomic::Ordering::Relaxed);
                    Ok(())
                })),
                description: "Maximum socket buffer size",
            },
        )]);
        for (name, node) in nodes {
            // These names are reserved for the host in the sysctl table; registering twice
            // would be a bug.
            let ok = self.sysctl.register_dynamic(name, Arc::new(node)).is_ok();
            debug_assert!(ok, "{name} registered twice");
        }
    }
}

type NodeSetter = Box<dyn Fn(&str) -> Result<(), Errno> + Send + Sync>;

/// A host-computed sysctl: a getter, an optional setter (read-only without one), and a
/// description.
struct HostNode {
    get: Box<dyn Fn() -> SysctlValue + Send + Sync>,
    set: Option<NodeSetter>,
    description: &'static str,
}

impl DynamicNode for HostNode {
    fn get(&self) -> SysctlValue {
        (self.get)()
    }
    fn set(&self, v: &str) -> Result<(), Errno> {
        self.set.as_ref().ok_or(Errno::EPERM)?(v.trim())
    }
    fn description(&self) -> String {
        self.description.into()
    }
    fn read_only(&self) -> bool {
        self.set.is_none()
    }
}

/// `functions_available` as FreeBSD prints it: stack, default mark, alias, PCB count; one
/// line per name.
fn functions_available(r: &Registry) -> String {
    let s = r.snapshot();
    let mut out = format!("\n{:<32} {} {:<32} {}", "Stack", "D", "Alias", "PCB count");
    for b in &s.blocks {
        let d = if s.default_block.as_ref().is_some_and(|d| Arc::ptr_eq(d, b)) {
            "*"
        } else {
            " "
        };
        for n in b.names() {
            out.push_str(&format!("\n{:<32} {} {:<32} {}", b.name, d, n, b.users()));
        }
    }
    out
}

/// `cc.available` as FreeBSD 14 prints it: module, default mark, PCB count.
fn cc_available(r: &Registry) -> String {
    let s = r.snapshot();
    let mut out = format!("\n{:<16} {} {}", "CCmod", "D", "PCB count");
    for c in &s.ccs {
        let d = if s.default_cc.as_ref().is_some_and(|d| Arc::ptr_eq(d, c)) {
            "*"
        } else {
            " "
        };
        out.push_str(&format!("\n{:<16} {} {}", c.name, d, c.users()));
    }
    out
}

/// `net.inet.tcp.cc.<module>.<param>`.
struct CcParamNode {
    registry: Arc<Registry>,
    module: String,
    param: String,
    description: String,
}
impl DynamicNode for CcParamNode {
    fn get(&self) -> SysctlValue {
        let s = self.registry.snapshot();
        let v = s
            .cc_any(&self.module)
            .and_then(|c| {
                c.param_index(&self.param)
                    .map(|i| c.params[i].load(std::sync::atomic::Ordering::Relaxed))
            })
            .unwrap_or(0);
        SysctlValue::Int(v as i64)
    }
    fn set(&self, v: &str) -> Result<(), Errno> {
        let v = crate::sysctl::parse_int(v)?;
        self.registry
            .set_cc_param(&self.module, &self.param, v)
            .map(|_| ())
    }
    fn description(&self) -> String {
        self.description.clone()
    }
    fn read_only(&self) -> bool {
        false
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
