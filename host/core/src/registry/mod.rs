//! The plugin registry: TCP function blocks and CC modules, their names, defaults and user
//! counts, with FreeBSD's register/deregister semantics (tcp_functions(9), mod_cc(9)).
//!
//! Readers (every new connection, every stack or CC switch) take an immutable
//! [`RegistrySnapshot`] from an `ArcSwap` without locking; the control plane (kldload,
//! kldunload, sysctl) serialises on a mutex, builds a new snapshot and swaps it in. User
//! counts ("PCB count") are atomics on the entries, so taking a user never rebuilds anything.

pub mod loader;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicIsize, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use plugtcp_abi::cc::{CcAlgoRef, CcGlobals, CcHooks, CcParamDesc};
use plugtcp_abi::sockopt::{TCP_CA_NAME_MAX, TCP_FUNCTION_NAME_LEN_MAX};
use plugtcp_abi::stack::{tcp_func, TcpFunctionBlockRef};
use plugtcp_abi::{Errno, HookStatus, PluginKind};

/// At most this many names per function block, primary name included (FreeBSD
/// TCP_FUNCTION_NAME_NUM_MAX).
pub const TCP_FUNCTION_NAME_NUM_MAX: usize = 8;

/// Where a registered plugin came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Linked into the host binary and registered through the same ABI.
    Builtin,
    /// Loaded from a shared library.
    File(PathBuf),
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Builtin => f.write_str("(builtin)"),
            Origin::File(p) => write!(f, "{}", p.display()),
        }
    }
}

/// A plugin's identity as kldstat shows it.
#[derive(Clone, Debug)]
pub struct PluginInfo {
    pub origin: Origin,
    pub version: String,
}

/// Hooks of a function block, copied once at registration (see `CcHooks` for why).
#[derive(Clone, Copy)]
pub struct StackHooks {
    pub init: Option<plugtcp_abi::stack::InitHook>,
    pub fini: Option<plugtcp_abi::stack::FiniHook>,
    pub do_segment: plugtcp_abi::stack::SegmentHook,
    pub output: plugtcp_abi::stack::StateHook,
    pub timer: Option<plugtcp_abi::stack::U32Hook>,
    pub ctloutput: plugtcp_abi::stack::CtlHook,
    pub handoff_ok: plugtcp_abi::stack::HandoffHook,
    pub mtu_chg: Option<plugtcp_abi::stack::U32Hook>,
    pub switch_failed: Option<plugtcp_abi::stack::StateHook>,
    pub chg_query: Option<plugtcp_abi::stack::ChgQueryHook>,
    pub info: Option<plugtcp_abi::stack::InfoHook>,
    pub inherit: Option<plugtcp_abi::stack::InheritHook>,
}

/// A registered function block.
pub struct BlockEntry {
    pub id: u64,
    pub name: String,
    /// Names besides `name`, in registration order.
    pub aliases: Vec<String>,
    pub flags: u32,
    pub block: TcpFunctionBlockRef,
    pub hooks: StackHooks,
    pub info: PluginInfo,
    pub counter_names: Vec<String>,
    pub counters: &'static [AtomicUsize],
    /// The block's tunables (`net.inet.tcp.<name>.<param>`, ABI 0.9.1) and their current
    /// values, shared with every connection on it (`HostOps::stack_param`).
    pub param_descs: Vec<CcParamDesc>,
    pub params: &'static [AtomicIsize],
    refcnt: AtomicUsize,
    being_removed: AtomicBool,
}

/// A registered CC module.
pub struct CcEntry {
    pub id: u64,
    pub name: String,
    pub algo: CcAlgoRef,
    pub hooks: CcHooks,
    pub info: PluginInfo,
    pub param_descs: Vec<CcParamDesc>,
    /// Current values of `net.inet.tcp.cc.<name>.*`, shared with every connection's cc_var.
    pub params: &'static [AtomicIsize],
    pub counter_names: Vec<String>,
    pub counters: &'static [AtomicUsize],
    refcnt: AtomicUsize,
    being_removed: AtomicBool,
}

macro_rules! user_counting {
    ($t:ty) => {
        impl $t {
            /// Number of connections using it (FreeBSD's PCB count).
            pub fn users(&self) -> usize {
                self.refcnt.load(Ordering::Acquire)
            }
            /// Deregistration has begun: no new users.
            pub fn being_removed(&self) -> bool {
                self.being_removed.load(Ordering::Acquire)
            }
            /// Counts one more user; fails once deregistration has begun.
            pub fn acquire(&self) -> Result<(), Errno> {
                self.refcnt.fetch_add(1, Ordering::AcqRel);
                if self.being_removed() {
                    self.refcnt.fetch_sub(1, Ordering::AcqRel);
                    return Err(Errno::ENOENT);
                }
                Ok(())
            }
            pub fn release(&self) {
                let prev = self.refcnt.fetch_sub(1, Ordering::AcqRel);
                debug_assert!(prev > 0, "user count underflow");
            }
        }
    };
}
user_counting!(BlockEntry);
user_counting!(CcEntry);

impl BlockEntry {
    /// Every name: primary first, then aliases.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.name.as_str()).chain(self.aliases.iter().map(String::as_str))
    }
}

impl CcEntry {
    /// Index of parameter `name`.
    pub fn param_index(&self, name: &str) -> Option<usize> {
        self.param_descs
            .iter()
            .position(|d| d.name.as_str() == name)
    }
}

/// An immutable view of the registry.
#[derive(Default, Clone)]
pub struct RegistrySnapshot {
    /// Function blocks in registration order.
    pub blocks: Vec<Arc<BlockEntry>>,
    /// CC modules in registration order.
    pub ccs: Vec<Arc<CcEntry>>,
    block_names: BTreeMap<String, usize>,
    cc_names: BTreeMap<String, usize>,
    pub default_block: Option<Arc<BlockEntry>>,
    pub default_cc: Option<Arc<CcEntry>>,
}

impl RegistrySnapshot {
    /// The block registered under `name` (primary or alias), if not being removed.
    pub fn block(&self, name: &str) -> Result<&Arc<BlockEntry>, Errno> {
        let b = self
            .block_names
            .get(name)
            .map(|&i| &self.blocks[i])
            .ok_or(Errno::ENOENT)?;
        if b.being_removed() {
            return Err(Errno::ENOENT);
        }
        Ok(b)
    }

    /// The block under `name` even while it is being removed (for kldstat and kldunload).
    pub fn block_any(&self, name: &str) -> Option<&Arc<BlockEntry>> {
        self.block_names.get(name).map(|&i| &self.blocks[i])
    }

    pub fn cc(&self, name: &str) -> Result<&Arc<CcEntry>, Errno> {
        let c = self.cc_any(name).ok_or(Errno::ENOENT)?;
        if c.being_removed() {
            return Err(Errno::ENOENT);
        }
        Ok(c)
    }

    pub fn cc_any(&self, name: &str) -> Option<&Arc<CcEntry>> {
        self.cc_names.get(name).map(|&i| &self.ccs[i])
    }

    fn rebuild_names(&mut self) {
        self.block_names = self
            .blocks
            .iter()
            .enumerate()
            .flat_map(|(i, b)| {
                b.names()
                    .map(move |n| (n.to_owned(), i))
                    .collect::<Vec<_>>()
            })
            .collect();
        self.cc_names = self
            .ccs
            .iter()
            .enumerate()
            .map(|(i, c)| (c.name.clone(), i))
            .collect();
    }
}

/// What a forced deregistration leaves for the host to do.
#[derive(Debug, PartialEq, Eq)]
pub enum Deregistered {
    /// Gone; it had no users.
    Done,
    /// Marked BEING_REMOVED; the host must move this many users to the default, then call
    /// `finish_*_removal`.
    MoveUsers(usize),
}

/// The registry (one per host).
pub struct Registry {
    snapshot: ArcSwap<RegistrySnapshot>,
    control: Mutex<()>,
    next_id: AtomicUsize,
    /// Host-wide CC tunables shared with every cc_var (net.inet.tcp.cc.abe, ...).
    pub cc_globals: &'static CcGlobals,
    /// Preferred default CC when the first modules register: newreno, as tcp(4) documents
    /// (FreeBSD 14 switched its kernel to cubic; here that is `cc.algorithm=cubic` away).
    preferred_cc: Vec<String>,
    /// Set once an operator chose `cc.algorithm`: later registrations do not override it.
    cc_default_pinned: AtomicBool,
}

fn check_name(name: &str, max: usize) -> Result<(), Errno> {
    if name.is_empty() || name.contains(|c: char| c.is_whitespace() || c == ',') {
        return Err(Errno::EINVAL);
    }
    if name.len() >= max {
        return Err(Errno::ENAMETOOLONG);
    }
    Ok(())
}

/// Counters and parameters live as long as the process: plugins are never unloaded (see
/// DESIGN.md) and connections keep `'static` slices into them in their cc_var/StackCtx.
fn leak_counters(n: usize) -> &'static [AtomicUsize] {
    Box::leak(
        (0..n)
            .map(|_| AtomicUsize::new(0))
            .collect::<Vec<_>>()
            .into_boxed_slice(),
    )
}

impl Registry {
    pub fn new(cc_globals: &'static CcGlobals) -> Self {
        Registry {
            snapshot: ArcSwap::from_pointee(RegistrySnapshot::default()),
            control: Mutex::new(()),
            next_id: AtomicUsize::new(1),
            cc_globals,
            preferred_cc: vec!["newreno".into(), "cubic".into()],
            cc_default_pinned: AtomicBool::new(false),
        }
    }

    /// The current snapshot (lock-free).
    #[inline]
    pub fn snapshot(&self) -> arc_swap::Guard<Arc<RegistrySnapshot>> {
        self.snapshot.load()
    }

    pub fn load_full(&self) -> Arc<RegistrySnapshot> {
        self.snapshot.load_full()
    }

    fn update<R>(
        &self,
        f: impl FnOnce(&mut RegistrySnapshot) -> Result<R, Errno>,
    ) -> Result<R, Errno> {
        let _g = self.control.lock().unwrap_or_else(|e| e.into_inner());
        let mut next = RegistrySnapshot::clone(&self.snapshot.load());
        let r = f(&mut next)?;
        next.rebuild_names();
        self.snapshot.store(Arc::new(next));
        Ok(r)
    }

    fn id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed) as u64
    }

    /// Registers a function block under its name and aliases (FreeBSD
    /// register_tcp_function_block_alias): EINVAL without the required hooks or with a bad
    /// name, E2BIG past 8 names, EALREADY when a name is taken, ENAMETOOLONG for long names.
    pub fn register_block(
        &self,
        block: TcpFunctionBlockRef,
        info: PluginInfo,
    ) -> Result<Arc<BlockEntry>, Errno> {
        let (Some(do_segment), Some(output), Some(ctloutput), Some(handoff_ok)) = (
            block.do_segment(),
            block.output(),
            block.ctloutput(),
            block.handoff_ok(),
        ) else {
            return Err(Errno::EINVAL);
        };
        let name = block.name().as_str().to_owned();
        let aliases: Vec<String> = block
            .aliases()
            .iter()
            .map(|a| a.as_str().to_owned())
            .collect();
        if 1 + aliases.len() > TCP_FUNCTION_NAME_NUM_MAX {
            return Err(Errno::E2BIG);
        }
        for n in std::iter::once(&name).chain(&aliases) {
            check_name(n, TCP_FUNCTION_NAME_LEN_MAX)?;
        }
        let mut all: Vec<&String> = std::iter::once(&name).chain(&aliases).collect();
        all.sort();
        if all.windows(2).any(|w| w[0] == w[1]) {
            return Err(Errno::EALREADY);
        }
        let counter_names: Vec<String> = block
            .counters()
            .iter()
            .map(|c| c.as_str().to_owned())
            .collect();
        // A block built before ABI 0.9.1 has no parameter table.
        let param_descs: Vec<CcParamDesc> = block
            .params()
            .map(|p| p.iter().copied().collect())
            .unwrap_or_default();
        for d in &param_descs {
            check_name(d.name.as_str(), 64)?;
            if d.min > d.max || !(d.min..=d.max).contains(&d.default) {
                return Err(Errno::EINVAL);
            }
        }
        let params: &'static [AtomicIsize] = Box::leak(
            param_descs
                .iter()
                .map(|d| AtomicIsize::new(d.default as isize))
                .collect::<Vec<_>>()
                .into_boxed_slice(),
        );
        let entry = Arc::new(BlockEntry {
            id: self.id(),
            name,
            aliases,
            flags: block.flags() & !tcp_func::BEING_REMOVED,
            block,
            hooks: StackHooks {
                init: block.init(),
                fini: block.fini(),
                do_segment,
                output,
                timer: block.timer(),
                ctloutput,
                handoff_ok,
                mtu_chg: block.mtu_chg(),
                switch_failed: block.switch_failed(),
                chg_query: block.chg_query(),
                info: block.info(),
                inherit: block.inherit(),
            },
            info,
            counters: leak_counters(counter_names.len()),
            counter_names,
            param_descs,
            params,
            refcnt: AtomicUsize::new(0),
            being_removed: AtomicBool::new(false),
        });
        self.update(|s| {
            if entry.names().any(|n| s.block_names.contains_key(n)) {
                return Err(Errno::EALREADY);
            }
            // The first block that may be the default becomes it (FreeBSD starts with its
            // built-in stack as the default; plugtcp registers `base` first).
            if s.default_block.is_none() && entry.flags & tcp_func::DEFAULT_OK != 0 {
                s.default_block = Some(entry.clone());
            }
            s.blocks.push(entry.clone());
            Ok(())
        })?;
        Ok(entry)
    }

    /// Registers a CC module (FreeBSD cc_register_algo): EEXIST when the name is taken,
    /// EINVAL for a bad name or a module without `ack_received`/`cong_signal` or with only
    /// one of `cb_init`/`cb_destroy`; `mod_init` runs first and its errno is returned.
    pub fn register_cc(&self, algo: CcAlgoRef, info: PluginInfo) -> Result<Arc<CcEntry>, Errno> {
        if self.snapshot().cc_any(algo.name().as_str()).is_some() {
            return Err(Errno::EEXIST);
        }
        let entry = self.make_cc_entry(algo, info, None)?;
        let preferred = &self.preferred_cc;
        self.update(|s| {
            if s.cc_names.contains_key(&entry.name) {
                return Err(Errno::EEXIST);
            }
            s.ccs.push(entry.clone());
            // Default: the most preferred module present, else the first one registered.
            let rank = |n: &str| preferred.iter().position(|p| p == n).unwrap_or(usize::MAX);
            let replace = match &s.default_cc {
                None => true,
                Some(cur) => {
                    rank(&entry.name) < rank(&cur.name)
                        && cur.users() == 0
                        && !self.default_cc_pinned()
                }
            };
            if replace {
                s.default_cc = Some(entry.clone());
            }
            Ok(())
        })
        .inspect_err(|_| {
            if let Some(d) = algo.mod_destroy() {
                let _ = d();
            }
        })?;
        Ok(entry)
    }

    /// Checks a module's descriptor, runs its `mod_init` and builds its entry. Parameters
    /// start at their defaults, or at `carry`'s values for parameters of the same name.
    fn make_cc_entry(
        &self,
        algo: CcAlgoRef,
        info: PluginInfo,
        carry: Option<&CcEntry>,
    ) -> Result<Arc<CcEntry>, Errno> {
        let hooks = CcHooks::of(algo);
        if hooks.ack_received.is_none()
            || hooks.cong_signal.is_none()
            || hooks.cb_init.is_some() != hooks.cb_destroy.is_some()
        {
            return Err(Errno::EINVAL);
        }
        let name = algo.name().as_str().to_owned();
        check_name(&name, TCP_CA_NAME_MAX)?;
        let param_descs: Vec<CcParamDesc> = algo.params().iter().copied().collect();
        for d in &param_descs {
            check_name(d.name.as_str(), 64)?;
            if d.min > d.max || !(d.min..=d.max).contains(&d.default) {
                return Err(Errno::EINVAL);
            }
        }
        if let Some(init) = algo.mod_init() {
            init().into_result().map_err(|e| e.errno())?;
        }
        let carried = |d: &CcParamDesc| -> i64 {
            let old = carry.and_then(|c| {
                let i = c.param_descs.iter().position(|o| o.name == d.name)?;
                Some(c.params[i].load(Ordering::Relaxed) as i64)
            });
            old.filter(|v| (d.min..=d.max).contains(v))
                .unwrap_or(d.default)
        };
        let params: &'static [AtomicIsize] = Box::leak(
            param_descs
                .iter()
                .map(|d| AtomicIsize::new(carried(d) as isize))
                .collect::<Vec<_>>()
                .into_boxed_slice(),
        );
        let counter_names: Vec<String> = algo
            .counters()
            .iter()
            .map(|c| c.as_str().to_owned())
            .collect();
        Ok(Arc::new(CcEntry {
            id: self.id(),
            name,
            algo,
            hooks,
            info,
            param_descs,
            params,
            counters: leak_counters(counter_names.len()),
            counter_names,
            refcnt: AtomicUsize::new(0),
            being_removed: AtomicBool::new(false),
        }))
    }

    /// Reload: a module of a name already registered, from a plugin of another version,
    /// takes the old one's place (and its default role and parameter values). The old entry
    /// is marked departing and returned; the host moves its users over, then calls
    /// [`Registry::finish_cc_replacement`]. EEXIST when the version is the same (that is a
    /// duplicate load, not a rebuild), ENOENT when nothing of that name is registered.
    pub fn replace_cc(
        &self,
        algo: CcAlgoRef,
        info: PluginInfo,
    ) -> Result<(Arc<CcEntry>, Arc<CcEntry>), Errno> {
        let old = self
            .snapshot()
            .cc_any(algo.name().as_str())
            .ok_or(Errno::ENOENT)?
            .clone();
        if old.info.version == info.version || old.being_removed() {
            return Err(Errno::EEXIST);
        }
        let new = self.make_cc_entry(algo, info, Some(&old))?;
        let r = self.update(|s| {
            let i = s
                .ccs
                .iter()
                .position(|c| Arc::ptr_eq(c, &old))
                .ok_or(Errno::ENOENT)?;
            s.ccs[i] = new.clone();
            if s.default_cc.as_ref().is_some_and(|d| Arc::ptr_eq(d, &old)) {
                s.default_cc = Some(new.clone());
            }
            old.being_removed.store(true, Ordering::Release);
            Ok(())
        });
        if let Err(e) = r {
            Self::destroy_cc(&new);
            return Err(e);
        }
        Ok((old, new))
    }

    /// The old module of a reload has no users left: its `mod_destroy` runs. EBUSY while
    /// connections still use it.
    pub fn finish_cc_replacement(&self, old: &CcEntry) -> Result<(), Errno> {
        if old.users() > 0 {
            return Err(Errno::EBUSY);
        }
        Self::destroy_cc(old);
        Ok(())
    }

    fn default_cc_pinned(&self) -> bool {
        self.cc_default_pinned.load(Ordering::Relaxed)
    }

    /// `net.inet.tcp.functions_default`: ENOENT for an unknown or departing block, EINVAL
    /// for one without DEFAULT_OK.
    pub fn set_default_block(&self, name: &str) -> Result<(), Errno> {
        self.update(|s| {
            let b = s.block(name)?.clone();
            if b.flags & tcp_func::DEFAULT_OK == 0 {
                return Err(Errno::EINVAL);
            }
            s.default_block = Some(b);
            Ok(())
        })
    }

    /// `net.inet.tcp.cc.algorithm`: ESRCH for an unknown or departing module (FreeBSD).
    pub fn set_default_cc(&self, name: &str) -> Result<(), Errno> {
        self.update(|s| {
            let c = s.cc(name).map_err(|_| Errno::ESRCH)?.clone();
            s.default_cc = Some(c);
            self.cc_default_pinned.store(true, Ordering::Relaxed);
            Ok(())
        })
    }

    /// Begins removing a function block (FreeBSD deregister_tcp_functions): EBUSY while it is
    /// the default; otherwise it is marked BEING_REMOVED (no new users, and it stays marked);
    /// with users, EBUSY unless `force`, in which case the host must move them (see
    /// [`Deregistered::MoveUsers`]) and then call [`Registry::finish_block_removal`].
    pub fn deregister_block(&self, name: &str, force: bool) -> Result<Deregistered, Errno> {
        self.update(|s| {
            let b = s.block_any(name).ok_or(Errno::ENOENT)?.clone();
            if s.default_block.as_ref().is_some_and(|d| Arc::ptr_eq(d, &b)) {
                return Err(Errno::EBUSY);
            }
            b.being_removed.store(true, Ordering::Release);
            match b.users() {
                0 => {
                    s.blocks.retain(|x| !Arc::ptr_eq(x, &b));
                    Ok(Deregistered::Done)
                }
                _ if !force => Err(Errno::EBUSY),
                n => Ok(Deregistered::MoveUsers(n)),
            }
        })
    }

    /// Completes a forced removal once every user has moved; EBUSY if some remain.
    pub fn finish_block_removal(&self, name: &str) -> Result<(), Errno> {
        self.update(|s| {
            let b = s.block_any(name).ok_or(Errno::ENOENT)?.clone();
            if b.users() > 0 {
                return Err(Errno::EBUSY);
            }
            s.blocks.retain(|x| !Arc::ptr_eq(x, &b));
            Ok(())
        })
    }

    /// Begins removing a CC module (FreeBSD cc_deregister_algo), same rules as blocks.
    /// `mod_destroy` runs when the module is finally removed.
    pub fn deregister_cc(&self, name: &str, force: bool) -> Result<Deregistered, Errno> {
        let r = self.update(|s| {
            let c = s.cc_any(name).ok_or(Errno::ENOENT)?.clone();
            if s.default_cc.as_ref().is_some_and(|d| Arc::ptr_eq(d, &c)) {
                return Err(Errno::EBUSY);
            }
            c.being_removed.store(true, Ordering::Release);
            match c.users() {
                0 => {
                    s.ccs.retain(|x| !Arc::ptr_eq(x, &c));
                    Ok((Deregistered::Done, Some(c)))
                }
                _ if !force => Err(Errno::EBUSY),
                n => Ok((Deregistered::MoveUsers(n), None)),
            }
        })?;
        if let (_, Some(c)) = &r {
            Self::destroy_cc(c);
        }
        Ok(r.0)
    }

    pub fn finish_cc_removal(&self, name: &str) -> Result<(), Errno> {
        let c = self.update(|s| {
            let c = s.cc_any(name).ok_or(Errno::ENOENT)?.clone();
            if c.users() > 0 {
                return Err(Errno::EBUSY);
            }
            s.ccs.retain(|x| !Arc::ptr_eq(x, &c));
            Ok(c)
        })?;
        Self::destroy_cc(&c);
        Ok(())
    }

    fn destroy_cc(c: &CcEntry) {
        if let Some(d) = c.algo.mod_destroy() {
            // A failing or panicking mod_destroy cannot stop a removal that is already done.
            let _ = d() == HookStatus::OK;
        }
    }

    /// Sets a CC module parameter (`net.inet.tcp.cc.<module>.<param>`): ENOENT unknown,
    /// EINVAL outside the declared range, or the module's own check (EACCES for newreno's
    /// beta_ecn without cc.abe).
    pub fn set_cc_param(&self, module: &str, param: &str, value: i64) -> Result<i64, Errno> {
        let snap = self.snapshot();
        let c = snap.cc_any(module).ok_or(Errno::ENOENT)?;
        let i = c.param_index(param).ok_or(Errno::ENOENT)?;
        let d = &c.param_descs[i];
        if !(d.min..=d.max).contains(&value) {
            return Err(Errno::EINVAL);
        }
        if let Some(check) = c.algo.param_check() {
            // The module's current values, for checks across its parameters.
            check(i as u32, value, self.cc_globals, c.params.into())
                .into_result()
                .map_err(|e| e.errno())?;
        }
        Ok(c.params[i].swap(value as isize, Ordering::Relaxed) as i64)
    }

    /// Sets a function block's parameter (`net.inet.tcp.<block>.<param>`): ENOENT unknown,
    /// EINVAL outside the declared range. Returns the old value.
    pub fn set_stack_param(&self, block: &str, param: &str, value: i64) -> Result<i64, Errno> {
        let snap = self.snapshot();
        let b = snap.block_any(block).ok_or(Errno::ENOENT)?;
        let i = b
            .param_descs
            .iter()
            .position(|d| d.name.as_str() == param)
            .ok_or(Errno::ENOENT)?;
        let d = &b.param_descs[i];
        if !(d.min..=d.max).contains(&value) {
            return Err(Errno::EINVAL);
        }
        Ok(b.params[i].swap(value as isize, Ordering::Relaxed) as i64)
    }

    /// Which plugin `name` means, and its name within its kind: a block's or a CC
    /// module's name (function blocks and CC modules have separate namespaces, as in
    /// FreeBSD, so `bbr` may be both), or FreeBSD's kld module names `tcp_<block>` and
    /// `cc_<module>`. ENOENT for none; EEXIST when a bare name is both a block and a CC
    /// module (the kld name says which).
    pub fn resolve_kld_name(&self, name: &str) -> Result<(PluginKind, String), Errno> {
        let s = self.snapshot();
        let block = s.block_any(name).is_some();
        let cc = s.cc_any(name).is_some();
        match (block, cc) {
            (true, true) => return Err(Errno::EEXIST),
            (true, false) => return Ok((PluginKind::FunctionBlock, name.to_owned())),
            (false, true) => return Ok((PluginKind::CcModule, name.to_owned())),
            (false, false) => {}
        }
        if let Some(b) = name
            .strip_prefix("tcp_")
            .filter(|b| s.block_any(b).is_some())
        {
            return Ok((PluginKind::FunctionBlock, b.to_owned()));
        }
        if let Some(c) = name.strip_prefix("cc_").filter(|c| s.cc_any(c).is_some()) {
            return Ok((PluginKind::CcModule, c.to_owned()));
        }
        Err(Errno::ENOENT)
    }
}
