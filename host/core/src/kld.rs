//! The kld operations (FreeBSD kldload(8), kldstat(8), kldunload(8) for TCP function
//! blocks and CC modules), static plugins, reloads, moving a departing plugin's
//! connections, and the registry's sysctls (functions_default, functions_available,
//! cc.algorithm, cc.available, each module's parameters).

use std::path::PathBuf;
use std::sync::Arc;

use plugtcp_abi::{Errno, PluginKind};

use crate::registry::loader::{open_plugin, LoadError, LoadFailure, SearchPath};
use crate::registry::{Deregistered, Origin, PluginInfo, Registry};
use crate::sysctl::{DynamicNode, SysctlValue};
use crate::Host;
use plugtcp_abi::stack::TcpFunctionBlockRef;

impl Host {
    /// A host as `plugtcp serve` builds one: `sysctls` (names without `net.` are under
    /// `net.inet.tcp.`) that FreeBSD takes only from the loader (syncache.hashsize, ...)
    /// are set before the host exists, the plugins on `search_path` are loaded and the
    /// static ones registered, then the other sysctls are set (those a plugin registers,
    /// cc.algorithm and cc.<module>.*, need it loaded). An error names the variable, or
    /// the plugin file, and why.
    pub fn configured(
        search_path: SearchPath,
        entropy: crate::secrets::Entropy,
        statics: &StaticPlugins,
        sysctls: &[(String, String)],
    ) -> Result<Host, String> {
        let full = |name: &str| {
            if name.starts_with("net.") || name.starts_with("kern.") {
                name.to_owned()
            } else {
                format!("net.inet.tcp.{name}")
            }
        };
        let (boot, later): (Vec<_>, Vec<_>) = sysctls
            .iter()
            .map(|(n, v)| (full(n), v.as_str()))
            .partition(|(n, _)| crate::sysctl::tunable_entry(n).is_some());
        for (name, value) in &boot {
            crate::sysctl::SysctlTree::with_loader_tunables(&[(name, value)])
                .map_err(|e| format!("sysctl {name}={value}: {e}"))?;
        }
        let boot: Vec<(&str, &str)> = boot.iter().map(|(n, v)| (n.as_str(), *v)).collect();
        let tree = crate::sysctl::SysctlTree::with_loader_tunables(&boot)
            .map_err(|e| format!("sysctl: {e}"))?;
        let host = Host::with_sysctl(search_path, entropy, tree);
        let (mut host, errors) = host.autoload(statics);
        if let Some(e) = errors.first() {
            return Err(e.to_string());
        }
        for (name, value) in &later {
            host.sysctl_set(name, value)
                .map_err(|e| format!("sysctl {name}={value}: {e}"))?;
        }
        Ok(host)
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
            if self
                .registry
                .snapshot()
                .block_any(b.name().as_str())
                .is_none()
                && self.register_block(b, info()).is_ok()
            {
                let kind = PluginKind::FunctionBlock;
                self.metrics.note_plugin(kind, b.name().as_str(), true);
            }
        }
        for &c in &statics.cc_modules {
            if self.registry.snapshot().cc_any(c.name().as_str()).is_none() {
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

    fn register_block(
        &self,
        block: plugtcp_abi::stack::TcpFunctionBlockRef,
        info: PluginInfo,
    ) -> Result<Arc<crate::registry::BlockEntry>, Errno> {
        let entry = self.registry.register_block(block, info)?;
        for d in &entry.param_descs {
            let name = format!("net.inet.tcp.{}.{}", entry.name, d.name);
            let node = Arc::new(ParamNode {
                registry: self.registry.clone(),
                owner: ParamOwner::Stack(entry.name.clone()),
                param: d.name.to_string(),
                description: d.description.to_string(),
            });
            let _ = self.sysctl.register_dynamic(&name, node);
        }
        Ok(entry)
    }

    /// `net.inet.tcp.cc.<module>.<param>` nodes for a module's parameters.
    fn register_cc_sysctls(&self, entry: &crate::registry::CcEntry) {
        for d in &entry.param_descs {
            let name = format!("net.inet.tcp.cc.{}.{}", entry.name, d.name);
            let node = Arc::new(ParamNode {
                registry: self.registry.clone(),
                owner: ParamOwner::Cc(entry.name.clone()),
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
                let e = self.register_block(get(), info).map_err(refused)?;
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
    /// the default first. NAME is a block's or a CC module's name, or FreeBSD's kld names
    /// `tcp_<block>` and `cc_<module>` (needed when a name is both, as `bbr` is).
    pub fn kldunload(&mut self, name: &str, force: bool) -> Result<(), Errno> {
        Self::kldunload_sharded(&mut [self], name, force)
    }

    /// [`Host::kldunload`] for a host split into shards that share one registry: the
    /// plugin is deregistered once, and with `force` its users move in every shard before
    /// it is removed.
    pub fn kldunload_sharded(
        hosts: &mut [&mut Host],
        name: &str,
        force: bool,
    ) -> Result<(), Errno> {
        let registry = hosts.first().ok_or(Errno::ENOENT)?.registry.clone();
        let (kind, name) = registry.resolve_kld_name(name)?;
        let name = name.as_str();
        match kind {
            PluginKind::FunctionBlock => {
                let primary = registry
                    .snapshot()
                    .block_any(name)
                    .map(|b| b.name.clone())
                    .ok_or(Errno::ENOENT)?;
                if let Deregistered::MoveUsers(_) = registry.deregister_block(&primary, force)? {
                    for h in hosts.iter_mut() {
                        h.move_stack_users(&primary)?;
                    }
                    registry.finish_block_removal(&primary)?;
                }
                hosts[0]
                    .metrics
                    .note_plugin(PluginKind::FunctionBlock, &primary, false);
            }
            PluginKind::CcModule => {
                if let Deregistered::MoveUsers(_) = registry.deregister_cc(name, force)? {
                    for h in hosts.iter_mut() {
                        h.move_cc_users(name)?;
                    }
                    registry.finish_cc_removal(name)?;
                }
                let h = &hosts[0];
                h.metrics.note_plugin(PluginKind::CcModule, name, false);
                for key in h.sysctl.list(&format!("net.inet.tcp.cc.{name}")) {
                    let _ = h.sysctl.unregister_dynamic(&key.0);
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

    pub(crate) fn register_registry_sysctls(&self) {
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
            self.register_host_node(name, node);
        }
    }

    /// Puts a host-computed sysctl under `name` (a name reserved for the host in the sysctl
    /// table: registering it twice would be a bug).
    pub(crate) fn register_host_node(&self, name: &str, node: HostNode) {
        let ok = self.sysctl.register_dynamic(name, Arc::new(node)).is_ok();
        debug_assert!(ok, "{name} registered twice");
    }
}

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

/// Plugins linked into the program (the `plugtcp` binary's built-in bundle, or what a test
/// links), registered through the same ABI as files, under [`Origin::Builtin`].
#[derive(Clone, Default)]
pub struct StaticPlugins {
    pub function_blocks: Vec<TcpFunctionBlockRef>,
    pub cc_modules: Vec<plugtcp_abi::cc::CcAlgoRef>,
}

/// A host-computed sysctl: a getter, an optional setter (read-only without one), and a
/// description.
pub(crate) struct HostNode {
    pub(crate) get: Box<dyn Fn() -> SysctlValue + Send + Sync>,
    pub(crate) set: Option<NodeSetter>,
    pub(crate) description: &'static str,
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

/// Whose parameter a [`ParamNode`] is.
enum ParamOwner {
    /// A CC module's: `net.inet.tcp.cc.<module>.<param>`.
    Cc(String),
    /// A function block's: `net.inet.tcp.<block>.<param>` (FreeBSD's bbr and rack stacks
    /// register theirs under their names).
    Stack(String),
}

/// A plugin's parameter as a sysctl node; the value lives in the registry entry.
struct ParamNode {
    registry: Arc<Registry>,
    owner: ParamOwner,
    param: String,
    description: String,
}

impl DynamicNode for ParamNode {
    fn get(&self) -> SysctlValue {
        let s = self.registry.snapshot();
        let (descs, values) = match &self.owner {
            ParamOwner::Cc(m) => match s.cc_any(m) {
                Some(c) => (&c.param_descs, c.params),
                None => return SysctlValue::Int(0),
            },
            ParamOwner::Stack(b) => match s.block_any(b) {
                Some(b) => (&b.param_descs, b.params),
                None => return SysctlValue::Int(0),
            },
        };
        let v = descs
            .iter()
            .position(|d| d.name.as_str() == self.param)
            .map_or(0, |i| values[i].load(std::sync::atomic::Ordering::Relaxed));
        SysctlValue::Int(v as i64)
    }
    fn set(&self, v: &str) -> Result<(), Errno> {
        let v = crate::sysctl::parse_int(v)?;
        match &self.owner {
            ParamOwner::Cc(m) => self.registry.set_cc_param(m, &self.param, v),
            ParamOwner::Stack(b) => self.registry.set_stack_param(b, &self.param, v),
        }
        .map(|_| ())
    }
    fn description(&self) -> String {
        self.description.clone()
    }
    fn read_only(&self) -> bool {
        false
    }
    fn range(&self) -> Option<(i64, i64)> {
        let s = self.registry.snapshot();
        let descs = match &self.owner {
            ParamOwner::Cc(m) => &s.cc_any(m)?.param_descs,
            ParamOwner::Stack(b) => &s.block_any(b)?.param_descs,
        };
        let d = descs.iter().find(|d| d.name.as_str() == self.param)?;
        Some((d.min, d.max))
    }
}

pub(crate) type NodeSetter = Box<dyn Fn(&str) -> Result<(), Errno> + Send + Sync>;
