//! Congestion control modules, after FreeBSD's mod_cc(4) `struct cc_algo` and `struct cc_var`.
//!
//! A module implements [`CcAlgorithm`]; [`crate::export_cc_module!`] turns it into the ABI
//! descriptor [`CcAlgo`] (every hook wrapped so that a panic becomes an error) and exports it
//! from the shared library.

use std::ffi::c_void;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};

use abi_stable::{
    prefix_type::WithMetadata,
    std_types::{RSlice, RStr},
    StableAbi,
};

use crate::errno::{guard, Errno, HookStatus};
use crate::sockopt::SockOpt;
use crate::tcpcb::Tcpcb;

/// ACK types passed to `ack_received` (FreeBSD ccsignal values).
pub const CC_ACK: u32 = 0x0001;
pub const CC_DUPACK: u32 = 0x0002;
pub const CC_PARTIALACK: u32 = 0x0004;
pub const CC_SACK: u32 = 0x0008;
/// Congestion signals passed to `cong_signal`.
pub const CC_ECN: u32 = 0x0000_0001;
pub const CC_RTO: u32 = 0x0000_0002;
pub const CC_RTO_ERR: u32 = 0x0000_0004;
pub const CC_NDUPACK: u32 = 0x0000_0008;
/// Signals at or above this are private to a module.
pub const CC_SIGPRIVMASK: u32 = 0xFF00_0000;

/// `cc_var.flags`, FreeBSD values.
pub mod ccf {
    pub const ABC_SENTAWND: u32 = 0x0001;
    pub const CWND_LIMITED: u32 = 0x0002;
    pub const USE_LOCAL_ABC: u32 = 0x0004;
    pub const ACKNOW: u32 = 0x0008;
    pub const IPHDR_CE: u32 = 0x0010;
    pub const TCPHDR_CWR: u32 = 0x0020;
    pub const MAX_CWND: u32 = 0x0040;
    pub const CHG_MAX_CWND: u32 = 0x0080;
    pub const USR_IWND: u32 = 0x0100;
    pub const USR_IWND_INIT_NSEG: u32 = 0x0200;
    pub const HYSTART_ALLOWED: u32 = 0x0400;
    pub const HYSTART_CAN_SH_CWND: u32 = 0x0800;
    pub const HYSTART_CONS_SSTH: u32 = 0x1000;
}

/// Host-wide CC tunables a module may read (`net.inet.tcp.cc.*`, `net.inet.tcp.abc_l_var`,
/// `net.inet.tcp.initcwnd_segments`). The host updates them when the sysctl changes.
#[repr(C)]
#[derive(StableAbi, Default)]
pub struct CcGlobals {
    pub abe: AtomicIsize,
    pub abe_frlossreduce: AtomicIsize,
    pub abc_l_var: AtomicIsize,
    pub initcwnd_segments: AtomicIsize,
    pub hystartplusplus_minrtt_thresh: AtomicIsize,
    pub hystartplusplus_maxrtt_thresh: AtomicIsize,
    pub hystartplusplus_n_rttsamples: AtomicIsize,
    pub hystartplusplus_css_growth_div: AtomicIsize,
    pub hystartplusplus_css_rounds: AtomicIsize,
}

impl CcGlobals {
    #[inline]
    pub fn get(v: &AtomicIsize) -> i64 {
        v.load(Ordering::Relaxed) as i64
    }
}

/// A module parameter, exposed by the host as `net.inet.tcp.cc.<module>.<name>`.
#[repr(C)]
#[derive(StableAbi, Clone, Copy, Debug)]
pub struct CcParamDesc {
    pub name: RStr<'static>,
    pub description: RStr<'static>,
    pub default: i64,
    pub min: i64,
    pub max: i64,
}

impl CcParamDesc {
    pub const fn new(
        name: &'static str,
        description: &'static str,
        default: i64,
        min: i64,
        max: i64,
    ) -> Self {
        CcParamDesc {
            name: RStr::from_str(name),
            description: RStr::from_str(description),
            default,
            min,
            max,
        }
    }
}

/// Parameter `idx` of a module's values (a connection's `CcVar::params`, or the `current`
/// values `param_check` gets), or `default` when there is none at `idx`.
#[inline]
pub fn param_value(values: &[AtomicIsize], idx: usize, default: i64) -> i64 {
    values
        .get(idx)
        .map_or(default, |v| v.load(Ordering::Relaxed) as i64)
}

/// Per-connection CC variables (FreeBSD `struct cc_var`). Lives in the host's connection slot.
#[repr(C)]
#[derive(StableAbi)]
pub struct CcVar {
    /// The module's private per-connection state (set by `cb_init`, freed by `cb_destroy`).
    pub cc_data: *mut c_void,
    /// Bytes acknowledged by the ACK being processed.
    pub bytes_this_ack: u32,
    /// The ACK being processed.
    pub curack: u32,
    pub flags: u32,
    /// Bytes in flight as FreeBSD's tcp_compute_pipe() counts them when recovery ends
    /// (snd_max - snd_una before this ACK, plus bytes retransmitted into SACK holes, less
    /// bytes SACKed); set for `post_recovery`.
    pub pipe: u32,
    /// Segments coalesced into this ACK.
    pub nsegs: u16,
    /// Per-connection ABC limit when `ccf::USE_LOCAL_ABC` is set.
    pub labc: u8,
    /// The module's parameters, in the order of [`CcAlgo::params`]; host-owned.
    pub params: RSlice<'static, AtomicIsize>,
    /// The module's counters, in the order of [`CcAlgo::counters`]; the host exports them.
    pub counters: RSlice<'static, AtomicUsize>,
    pub globals: &'static CcGlobals,
}

impl CcVar {
    pub fn new(globals: &'static CcGlobals) -> Self {
        CcVar {
            cc_data: std::ptr::null_mut(),
            bytes_this_ack: 0,
            curack: 0,
            flags: 0,
            pipe: 0,
            nsegs: 1,
            labc: 0,
            params: RSlice::from_slice(&[]),
            counters: RSlice::from_slice(&[]),
            globals,
        }
    }

    /// Parameter `idx` (host sysctl value), or `default` when the module has none there.
    #[inline]
    pub fn param(&self, idx: usize, default: i64) -> i64 {
        param_value(self.params.as_slice(), idx, default)
    }

    /// Adds to counter `idx` of this module.
    #[inline]
    pub fn count(&self, idx: usize, n: usize) {
        if let Some(c) = self.counters.get(idx) {
            c.fetch_add(n, Ordering::Relaxed);
        }
    }
}

pub type CcHook = extern "C" fn(&mut CcVar, &mut Tcpcb) -> HookStatus;
pub type CcSignalHook = extern "C" fn(&mut CcVar, &mut Tcpcb, u32) -> HookStatus;
pub type CcRttHook = extern "C" fn(&mut CcVar, &mut Tcpcb, u32, u32, u32) -> HookStatus;
pub type CcCtlHook = extern "C" fn(&mut CcVar, &mut Tcpcb, &mut SockOpt<'_>) -> HookStatus;
/// `param_check(idx, value, globals, current)`: `current` holds the module's parameter values
/// as they are now, in the order of [`CcAlgo::params`], for checks across parameters.
pub type CcParamCheck = extern "C" fn(u32, i64, &CcGlobals, RSlice<'_, AtomicIsize>) -> HookStatus;

/// The module descriptor (FreeBSD `struct cc_algo`). A prefix type: fields may be appended in
/// later ABI versions and older plugins keep loading.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = CcAlgoRef)))]
#[sabi(missing_field(option))]
pub struct CcAlgo {
    pub name: RStr<'static>,
    pub params: RSlice<'static, CcParamDesc>,
    pub counters: RSlice<'static, RStr<'static>>,
    pub mod_init: Option<extern "C" fn() -> HookStatus>,
    pub mod_destroy: Option<extern "C" fn() -> HookStatus>,
    pub cb_init: Option<extern "C" fn(&mut CcVar, &mut Tcpcb) -> HookStatus>,
    pub cb_destroy: Option<extern "C" fn(&mut CcVar) -> HookStatus>,
    pub conn_init: Option<extern "C" fn(&mut CcVar, &mut Tcpcb) -> HookStatus>,
    pub ack_received: Option<extern "C" fn(&mut CcVar, &mut Tcpcb, u32) -> HookStatus>,
    pub cong_signal: Option<extern "C" fn(&mut CcVar, &mut Tcpcb, u32) -> HookStatus>,
    pub post_recovery: Option<extern "C" fn(&mut CcVar, &mut Tcpcb) -> HookStatus>,
    pub after_idle: Option<extern "C" fn(&mut CcVar, &mut Tcpcb) -> HookStatus>,
    pub ecnpkt_handler: Option<extern "C" fn(&mut CcVar, &mut Tcpcb) -> HookStatus>,
    pub newround: Option<extern "C" fn(&mut CcVar, &mut Tcpcb, u32) -> HookStatus>,
    pub rttsample: Option<extern "C" fn(&mut CcVar, &mut Tcpcb, u32, u32, u32) -> HookStatus>,
    pub ctl_output: Option<extern "C" fn(&mut CcVar, &mut Tcpcb, &mut SockOpt<'_>) -> HookStatus>,
    /// Validates a new value of parameter `idx` (e.g. newreno's beta_ecn needs cc.abe=1),
    /// given the module's current values (in the order of `params`) for checks across
    /// parameters (e.g. vegas's alpha <= beta).
    /// (The type is spelled out: abi_stable describes a function pointer from its syntax.)
    #[sabi(last_prefix_field)]
    pub param_check:
        Option<extern "C" fn(u32, i64, &CcGlobals, RSlice<'_, AtomicIsize>) -> HookStatus>,
}

/// The hooks of one module, copied out of its descriptor once so that per-ACK calls are one
/// indirect call with no prefix-field checks. Kept in each connection beside its `CcVar`.
#[repr(C)]
#[derive(StableAbi, Clone, Copy)]
pub struct CcHooks {
    pub cb_init: Option<extern "C" fn(&mut CcVar, &mut Tcpcb) -> HookStatus>,
    pub cb_destroy: Option<extern "C" fn(&mut CcVar) -> HookStatus>,
    pub conn_init: Option<extern "C" fn(&mut CcVar, &mut Tcpcb) -> HookStatus>,
    pub ack_received: Option<extern "C" fn(&mut CcVar, &mut Tcpcb, u32) -> HookStatus>,
    pub cong_signal: Option<extern "C" fn(&mut CcVar, &mut Tcpcb, u32) -> HookStatus>,
    pub post_recovery: Option<extern "C" fn(&mut CcVar, &mut Tcpcb) -> HookStatus>,
    pub after_idle: Option<extern "C" fn(&mut CcVar, &mut Tcpcb) -> HookStatus>,
    pub ecnpkt_handler: Option<extern "C" fn(&mut CcVar, &mut Tcpcb) -> HookStatus>,
    pub newround: Option<extern "C" fn(&mut CcVar, &mut Tcpcb, u32) -> HookStatus>,
    pub rttsample: Option<extern "C" fn(&mut CcVar, &mut Tcpcb, u32, u32, u32) -> HookStatus>,
    pub ctl_output: Option<extern "C" fn(&mut CcVar, &mut Tcpcb, &mut SockOpt<'_>) -> HookStatus>,
}

impl CcHooks {
    pub fn of(algo: CcAlgoRef) -> Self {
        CcHooks {
            cb_init: algo.cb_init(),
            cb_destroy: algo.cb_destroy(),
            conn_init: algo.conn_init(),
            ack_received: algo.ack_received(),
            cong_signal: algo.cong_signal(),
            post_recovery: algo.post_recovery(),
            after_idle: algo.after_idle(),
            ecnpkt_handler: algo.ecnpkt_handler(),
            newround: algo.newround(),
            rttsample: algo.rttsample(),
            ctl_output: algo.ctl_output(),
        }
    }
}

/// A connection's CC: the module's hooks and the connection's `cc_var`. Stacks call the
/// methods where FreeBSD's tcp_input/tcp_output call `CC_ALGO(tp)->...`. A hook that panics
/// sets `faulted`, which the host checks after every stack call.
#[repr(C)]
#[derive(StableAbi)]
pub struct CcConn {
    pub hooks: CcHooks,
    pub ccv: CcVar,
    pub faulted: bool,
}

macro_rules! cc_call {
    ($self:ident, $hook:ident, $tp:ident $(, $arg:expr)*) => {
        if let Some(h) = $self.hooks.$hook {
            if h(&mut $self.ccv, $tp $(, $arg)*) == HookStatus::PANICKED {
                $self.faulted = true;
            }
        }
    };
}

impl CcConn {
    pub fn new(globals: &'static CcGlobals) -> Self {
        CcConn {
            hooks: CcHooks {
                cb_init: None,
                cb_destroy: None,
                conn_init: None,
                ack_received: None,
                cong_signal: None,
                post_recovery: None,
                after_idle: None,
                ecnpkt_handler: None,
                newround: None,
                rttsample: None,
                ctl_output: None,
            },
            ccv: CcVar::new(globals),
            faulted: false,
        }
    }

    #[inline]
    pub fn conn_init(&mut self, tp: &mut Tcpcb) {
        cc_call!(self, conn_init, tp);
    }
    #[inline]
    pub fn ack_received(&mut self, tp: &mut Tcpcb, ack_type: u32) {
        cc_call!(self, ack_received, tp, ack_type);
    }
    #[inline]
    pub fn cong_signal(&mut self, tp: &mut Tcpcb, sig: u32) {
        cc_call!(self, cong_signal, tp, sig);
    }
    #[inline]
    pub fn post_recovery(&mut self, tp: &mut Tcpcb) {
        cc_call!(self, post_recovery, tp);
    }
    #[inline]
    pub fn after_idle(&mut self, tp: &mut Tcpcb) {
        cc_call!(self, after_idle, tp);
    }
    #[inline]
    pub fn ecnpkt_handler(&mut self, tp: &mut Tcpcb) {
        cc_call!(self, ecnpkt_handler, tp);
    }
    #[inline]
    pub fn newround(&mut self, tp: &mut Tcpcb, round_cnt: u32) {
        cc_call!(self, newround, tp, round_cnt);
    }
    #[inline]
    pub fn rttsample(&mut self, tp: &mut Tcpcb, usec_rtt: u32, rxtcnt: u32, fas: u32) {
        cc_call!(self, rttsample, tp, usec_rtt, rxtcnt, fas);
    }
}

/// What a CC module implements. Hooks that a module does not need keep the default, and the
/// `HAS_*` constants say which optional hooks the module really has (FreeBSD leaves those
/// NULL: the host then answers ENOENT for TCP_CCALGOOPT, for instance).
pub trait CcAlgorithm: Sized + Send + 'static {
    const NAME: &'static str;
    const PARAMS: &'static [CcParamDesc] = &[];
    const COUNTERS: &'static [RStr<'static>] = &[];
    const HAS_CTL_OUTPUT: bool = false;
    const HAS_ECNPKT_HANDLER: bool = false;

    fn mod_init() -> Result<(), Errno> {
        Ok(())
    }
    fn mod_destroy() -> Result<(), Errno> {
        Ok(())
    }
    /// Builds the per-connection state (FreeBSD `cb_init`).
    fn cb_init(ccv: &CcVar, tp: &Tcpcb) -> Result<Self, Errno>;
    fn conn_init(&mut self, _ccv: &mut CcVar, _tp: &mut Tcpcb) {}
    fn ack_received(&mut self, ccv: &mut CcVar, tp: &mut Tcpcb, ack_type: u32);
    fn cong_signal(&mut self, ccv: &mut CcVar, tp: &mut Tcpcb, sig: u32);
    fn post_recovery(&mut self, _ccv: &mut CcVar, _tp: &mut Tcpcb) {}
    fn after_idle(&mut self, _ccv: &mut CcVar, _tp: &mut Tcpcb) {}
    fn ecnpkt_handler(&mut self, _ccv: &mut CcVar, _tp: &mut Tcpcb) {}
    fn newround(&mut self, _ccv: &mut CcVar, _tp: &mut Tcpcb, _round_cnt: u32) {}
    fn rttsample(
        &mut self,
        _ccv: &mut CcVar,
        _tp: &mut Tcpcb,
        _usec_rtt: u32,
        _rxtcnt: u32,
        _fas: u32,
    ) {
    }
    fn ctl_output(
        &mut self,
        _ccv: &mut CcVar,
        _tp: &mut Tcpcb,
        _opt: &mut SockOpt<'_>,
    ) -> Result<(), Errno> {
        Err(Errno::ENOENT)
    }
    /// Validates a new value for parameter `idx` beyond its declared range. `current` holds
    /// the module's parameters as they are now, in the order of `PARAMS` (read them with
    /// [`param_value`]), so that a check may compare the new value with the others.
    fn param_check(
        _idx: u32,
        _value: i64,
        _globals: &CcGlobals,
        _current: &[AtomicIsize],
    ) -> Result<(), Errno> {
        Ok(())
    }
}

/// The module's private state behind `cc_var.cc_data`.
///
/// # Safety
/// `cc_data` is either null or a `Box<T>` made by `cb_init::<T>`; the module's hooks are only
/// called with the `CcVar` its own `cb_init` filled in (the host swaps both together).
#[inline]
unsafe fn state<'a, T>(ccv: &CcVar) -> Option<&'a mut T> {
    // SAFETY: see the function's contract; the box is a separate allocation from `ccv`.
    unsafe { (ccv.cc_data as *mut T).as_mut() }
}

macro_rules! state_hook {
    ($fn:ident, $method:ident $(, $arg:ident : $ty:ty)*) => {
        extern "C" fn $fn<T: CcAlgorithm>(ccv: &mut CcVar, tp: &mut Tcpcb $(, $arg: $ty)*) -> HookStatus {
            guard(|| {
                // SAFETY: `cc_data` was set by `cb_init::<T>` (see `state`).
                let st = unsafe { state::<T>(ccv) }.ok_or(Errno::EINVAL)?;
                st.$method(ccv, tp $(, $arg)*);
                Ok(())
            })
        }
    };
}

extern "C" fn mod_init<T: CcAlgorithm>() -> HookStatus {
    guard(T::mod_init)
}
extern "C" fn mod_destroy<T: CcAlgorithm>() -> HookStatus {
    guard(T::mod_destroy)
}
extern "C" fn cb_init<T: CcAlgorithm>(ccv: &mut CcVar, tp: &mut Tcpcb) -> HookStatus {
    guard(|| {
        let st = T::cb_init(ccv, tp)?;
        ccv.cc_data = Box::into_raw(Box::new(st)) as *mut c_void;
        Ok(())
    })
}
extern "C" fn cb_destroy<T: CcAlgorithm>(ccv: &mut CcVar) -> HookStatus {
    guard(|| {
        let p = std::mem::replace(&mut ccv.cc_data, std::ptr::null_mut()) as *mut T;
        if !p.is_null() {
            // SAFETY: made by Box::into_raw in cb_init::<T>, taken out of ccv exactly once.
            drop(unsafe { Box::from_raw(p) });
        }
        Ok(())
    })
}
state_hook!(conn_init, conn_init);
state_hook!(ack_received, ack_received, ack_type: u32);
state_hook!(cong_signal, cong_signal, sig: u32);
state_hook!(post_recovery, post_recovery);
state_hook!(after_idle, after_idle);
state_hook!(ecnpkt_handler, ecnpkt_handler);
state_hook!(newround, newround, round_cnt: u32);
state_hook!(rttsample, rttsample, usec_rtt: u32, rxtcnt: u32, fas: u32);
extern "C" fn ctl_output<T: CcAlgorithm>(
    ccv: &mut CcVar,
    tp: &mut Tcpcb,
    opt: &mut SockOpt<'_>,
) -> HookStatus {
    guard(|| {
        // SAFETY: as in `state`.
        let st = unsafe { state::<T>(ccv) }.ok_or(Errno::EINVAL)?;
        st.ctl_output(ccv, tp, opt)
    })
}
extern "C" fn param_check<T: CcAlgorithm>(
    idx: u32,
    value: i64,
    globals: &CcGlobals,
    current: RSlice<'_, AtomicIsize>,
) -> HookStatus {
    guard(|| T::param_check(idx, value, globals, current.as_slice()))
}

/// Builds the ABI descriptor of `T`. Used by [`crate::export_cc_module!`].
pub struct CcVtable<T>(PhantomData<T>);

impl<T: CcAlgorithm> CcVtable<T> {
    abi_stable::staticref! {
        const WM: WithMetadata<CcAlgo> = WithMetadata::new(CcAlgo {
            name: RStr::from_str(T::NAME),
            params: RSlice::from_slice(T::PARAMS),
            counters: RSlice::from_slice(T::COUNTERS),
            mod_init: Some(mod_init::<T>),
            mod_destroy: Some(mod_destroy::<T>),
            cb_init: Some(cb_init::<T>),
            cb_destroy: Some(cb_destroy::<T>),
            conn_init: Some(conn_init::<T>),
            ack_received: Some(ack_received::<T>),
            cong_signal: Some(cong_signal::<T>),
            post_recovery: Some(post_recovery::<T>),
            after_idle: Some(after_idle::<T>),
            ecnpkt_handler: if T::HAS_ECNPKT_HANDLER { Some(ecnpkt_handler::<T>) } else { None },
            newround: Some(newround::<T>),
            rttsample: Some(rttsample::<T>),
            ctl_output: if T::HAS_CTL_OUTPUT { Some(ctl_output::<T>) } else { None },
            param_check: Some(param_check::<T>),
        })
    }

    pub const ALGO: CcAlgoRef = CcAlgoRef(Self::WM.as_prefix());
}

/// The stack side of mod_cc that FreeBSD keeps in tcp_input.c (cc_ack_received,
/// cc_cong_signal, cc_post_recovery, cc_conn_init): bookkeeping every stack does around the
/// module's hooks, shared here so that each stack does it the same way.
impl CcConn {
    /// FreeBSD cc_ack_received(): marks whether we are cwnd-limited, runs RFC 3465 byte
    /// counting in congestion avoidance, then calls the module.
    pub fn on_ack(
        &mut self,
        tp: &mut Tcpcb,
        ack_type: u32,
        bytes_acked: u32,
        nsegs: u16,
        abc_l_var: u32,
    ) {
        let ccv = &mut self.ccv;
        ccv.nsegs = nsegs.max(1);
        ccv.bytes_this_ack = bytes_acked;
        ccv.curack = tp.snd_una;
        if tp.snd_cwnd <= tp.snd_wnd {
            ccv.flags |= ccf::CWND_LIMITED;
        } else {
            ccv.flags &= !ccf::CWND_LIMITED;
        }
        if ack_type == CC_ACK {
            if tp.snd_cwnd > tp.snd_ssthresh {
                let limit = (ccv.nsegs as u32)
                    .saturating_mul(abc_l_var)
                    .saturating_mul(tp.maxseg());
                tp.t_bytes_acked = tp.t_bytes_acked.saturating_add(bytes_acked.min(limit));
                if tp.t_bytes_acked >= tp.snd_cwnd {
                    tp.t_bytes_acked -= tp.snd_cwnd;
                    ccv.flags |= ccf::ABC_SENTAWND;
                }
            } else {
                ccv.flags &= !ccf::ABC_SENTAWND;
                tp.t_bytes_acked = 0;
            }
        }
        self.ack_received(tp, ack_type);
    }

    /// FreeBSD cc_cong_signal(): the stack's part of entering recovery or an RTO, then the
    /// module's.
    pub fn on_cong_signal(&mut self, tp: &mut Tcpcb, sig: u32) {
        match sig {
            CC_NDUPACK if !tp.in_fastrecovery() => {
                tp.snd_recover = tp.snd_max;
                // RFC 3168 6.1.2: a window reduced for loss is announced too (CWR on the
                // next new data segment), as FreeBSD's cc_cong_signal does.
                if tp.t_flags2 & crate::tcpcb::tf2::ECN_PERMIT != 0 {
                    tp.t_flags2 |= crate::tcpcb::tf2::ECN_SND_CWR;
                }
            }
            CC_ECN if !tp.in_congrecovery() => {
                tp.snd_recover = tp.snd_max;
            }
            CC_RTO => {
                tp.t_dupacks = 0;
                tp.t_bytes_acked = 0;
                tp.t_flags &= !crate::tcpcb::tf::INRECOVERY;
                if tp.t_flags2 & crate::tcpcb::tf2::ECN_PERMIT != 0 {
                    tp.t_flags2 |= crate::tcpcb::tf2::ECN_SND_CWR;
                }
            }
            _ => {}
        }
        self.cong_signal(tp, sig);
    }

    /// FreeBSD cc_cong_signal(CC_ECN) for an ACK with ECE acknowledging `th_ack`: a new
    /// episode begins outside congestion recovery, or when the ACK reaches snd_recover (the
    /// data after our CWR was marked too): the stack's part (snd_recover, CWR) then. The
    /// module sees every ECE and guards repeats itself. Returns whether an episode began.
    pub fn on_ecn_signal(&mut self, tp: &mut Tcpcb, th_ack: u32) -> bool {
        use crate::tcpcb::{tf, tf2};
        let begins = !tp.in_congrecovery() || crate::seq::seq_geq(th_ack, tp.snd_recover);
        if begins {
            tp.t_flags &= !tf::CONGRECOVERY;
            tp.snd_recover = tp.snd_max.wrapping_add(1);
            if tp.t_flags2 & tf2::ECN_PERMIT != 0 {
                tp.t_flags2 |= tf2::ECN_SND_CWR;
            }
        }
        self.cong_signal(tp, CC_ECN);
        begins
    }

    /// FreeBSD cc_post_recovery(): the ACK `th_ack` ends recovery (called before snd_una
    /// moves to it) with `pipe` bytes in flight; the module deflates cwnd, then recovery
    /// ends.
    pub fn on_post_recovery(&mut self, tp: &mut Tcpcb, th_ack: u32, pipe: u32) {
        self.ccv.curack = th_ack;
        self.ccv.pipe = pipe;
        self.post_recovery(tp);
        tp.t_bytes_acked = 0;
        tp.t_flags &= !crate::tcpcb::tf::INRECOVERY;
    }

    /// FreeBSD cc_conn_init(): the initial window (RFC 6928) once the handshake is done, and
    /// the module's conn_init.
    pub fn on_conn_init(&mut self, tp: &mut Tcpcb, initcwnd_segments: u32) {
        let maxseg = tp.maxseg().max(1);
        // RFC 5681 3.1: a lost SYN or SYN-ACK means a 1-segment initial window. As FreeBSD,
        // the timeout (or the SYN cache, for a retransmitted SYN-ACK) leaves snd_cwnd at 1
        // to say so.
        if tp.snd_cwnd == 1 || tp.t_rxtshift > 0 {
            tp.snd_cwnd = maxseg;
        } else if tp.snd_cwnd == u32::MAX || tp.snd_cwnd == 0 {
            tp.snd_cwnd = initial_window(maxseg, initcwnd_segments);
        }
        self.conn_init(tp);
    }
}

/// RFC 6928 initial window as FreeBSD's tcp_compute_initwnd().
pub fn initial_window(maxseg: u32, initcwnd_segments: u32) -> u32 {
    if initcwnd_segments > 0 {
        (initcwnd_segments * maxseg).min((2 * maxseg).max(initcwnd_segments * 1460))
    } else {
        (4 * maxseg).min((2 * maxseg).max(4380))
    }
}
