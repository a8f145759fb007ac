//! Congestion control modules, after FreeBSD's mod_cc(4) `struct cc_algo` and `struct cc_var`.
//!
//! A module implements [`CcAlgorithm`]; [`crate::export_cc_module!`] turns it into the ABI
//! descriptor [`CcAlgo`] (every hook wrapped so that a panic becomes an error) and exports it
//! from the shared library.
//!
//! # The host<->module contract
//!
//! As in FreeBSD, a CC module never talks to the network: it is called, with the
//! connection's [`CcVar`] and [`Tcpcb`], at the points where the TCP stack makes congestion
//! decisions, and answers by changing the congestion state in place. Who calls what:
//!
//! | hook | called by | when |
//! | --- | --- | --- |
//! | `mod_init` / `mod_destroy` | host registry | module registered / removed (no users left) |
//! | `cb_init` / `cb_destroy` | host | a connection attaches to / leaves the module |
//! | `conn_init` | stack ([`CcConn::on_conn_init`]); host | handshake done; attach to an established connection |
//! | `ack_received` | stack ([`CcConn::on_ack`]) | an ACK of new data, a duplicate ACK |
//! | `cong_signal` | stack ([`CcConn::on_cong_signal`], [`CcConn::on_ecn_signal`]) | loss, ECE, RTO, spurious RTO |
//! | `post_recovery` | stack ([`CcConn::on_post_recovery`]) | the ACK that ends loss recovery |
//! | `after_idle` | stack | sending again after an idle period of at least one RTO |
//! | `ecnpkt_handler` | stack | every ACK-bearing segment of an ECN connection |
//! | `newround`, `rttsample` | stack | a new round trip begins; an ACK gives an RTT sample |
//! | `ctl_output` | host | getsockopt/setsockopt(TCP_CCALGOOPT) |
//! | `param_check` | host | `sysctl net.inet.tcp.cc.<module>.<param>=...` |
//!
//! "Stack" means the connection's function block: the framework provides the calls (the
//! [`CcConn`] methods), and which of them a stack makes, and when, is the stack's business;
//! the "when" column describes plugtcp's own stacks (`stacks/engine`), which follow
//! FreeBSD's tcp_input/tcp_output. A third-party stack may call fewer.
//!
//! What a module may change: `tp.snd_cwnd`, `tp.snd_ssthresh`, the recovery bits of
//! `tp.t_flags` (`tf::FASTRECOVERY`, `tf::CONGRECOVERY`: a module enters recovery in
//! `cong_signal`, as FreeBSD's ENTER_RECOVERY), the [`ccf`] flags documented as the module's
//! to change, and its own state. Everything else in the [`Tcpcb`] (sequence numbers,
//! state, timers' inputs, counters) belongs to the stack and the host: read it, do not
//! write it. A module sees no host interface: it cannot send, arm timers or read the
//! clock (time comes from `tp.t_rcvtime` and the `usec_rtt` of `rttsample`).
//!
//! Errors and panics: hooks called by the stack return nothing the stack looks at (the
//! [`CcConn`] wrappers ignore an errno); a panic is caught at the boundary, marks the
//! connection's [`CcConn::faulted`], and once the stack's hook returns the host blames the
//! module, counts a fault against it and frees the connection (no RST is sent). Errors of
//! `cb_init`, `ctl_output`, `param_check` and `mod_init` go back to whoever asked (the
//! application, the sysctl, kldload).

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

/// ACK type for `ack_received` (FreeBSD ccsignal CC_ACK): an ACK of new data outside loss
/// recovery; `ccv.bytes_this_ack` holds the bytes it acknowledged.
pub const CC_ACK: u32 = 0x0001;
/// ACK type CC_DUPACK: a duplicate ACK (before or during recovery); `bytes_this_ack` is 0.
pub const CC_DUPACK: u32 = 0x0002;
/// ACK type CC_PARTIALACK: a partial ACK during recovery (FreeBSD value; plugtcp's
/// stacks do not pass it).
pub const CC_PARTIALACK: u32 = 0x0004;
/// ACK type CC_SACK: an ACK with new SACK information (FreeBSD value; plugtcp's stacks do
/// not pass it).
pub const CC_SACK: u32 = 0x0008;
/// Congestion signal CC_ECN for `cong_signal`: an ACK with ECE. Passed for every such ACK
/// (see [`CcConn::on_ecn_signal`]): a module reduces once per window itself (outside
/// `tf::CONGRECOVERY`).
pub const CC_ECN: u32 = 0x0000_0001;
/// Congestion signal CC_RTO: a retransmission timeout (established states only; before
/// that a stack sets `snd_cwnd = 1` instead).
pub const CC_RTO: u32 = 0x0000_0002;
/// Congestion signal CC_RTO_ERR: the last RTO was spurious. plugtcp's stacks have already
/// put back `snd_cwnd`, `snd_ssthresh`, `snd_recover` and the recovery flags from before
/// the timeout when they signal it (FreeBSD's cc_cong_signal does the same for every
/// module); a module undoes only its own state.
pub const CC_RTO_ERR: u32 = 0x0000_0004;
/// Congestion signal CC_NDUPACK: loss detected (DupThresh duplicate ACKs, SACK, or RACK's
/// time-based marking), entering loss recovery; also after a RACK tail loss probe repaired
/// a loss, immediately followed by `post_recovery`.
pub const CC_NDUPACK: u32 = 0x0000_0008;
/// Signals at or above this are private to a module.
pub const CC_SIGPRIVMASK: u32 = 0xFF00_0000;

/// `cc_var.flags`, FreeBSD values (CCF_*). The flags live in the connection's [`CcVar`] and
/// carry over to the next module when the connection switches CC. "Unused in-tree": defined
/// for FreeBSD compatibility, set and read by nobody in plugtcp.
pub mod ccf {
    /// CCF_ABC_SENTAWND: ABC counted a whole cwnd of acknowledged bytes in congestion
    /// avoidance. Set by [`super::CcConn::on_ack`]; a module consumes (clears) it when it
    /// grows cwnd by a segment.
    pub const ABC_SENTAWND: u32 = 0x0001;
    /// CCF_CWND_LIMITED: cwnd limits sending (`snd_cwnd <= snd_wnd`); set or cleared by
    /// `on_ack` on every ACK. FreeBSD's modules (and plugtcp's) grow cwnd only while it is
    /// set.
    pub const CWND_LIMITED: u32 = 0x0002;
    /// CCF_USE_LOCAL_ABC: use `CcVar::labc` instead of `abc_l_var` (no in-tree stack sets it).
    pub const USE_LOCAL_ABC: u32 = 0x0004;
    /// CCF_ACKNOW: set by a module in `ecnpkt_handler` to have this segment acknowledged at
    /// once (DCTCP); the stack clears it and sends the ACK.
    pub const ACKNOW: u32 = 0x0008;
    /// CCF_IPHDR_CE: the segment being handled was CE-marked (set by the stack before
    /// `ecnpkt_handler`).
    pub const IPHDR_CE: u32 = 0x0010;
    /// CCF_TCPHDR_CWR: the segment being handled carried CWR (set by the stack before
    /// `ecnpkt_handler`).
    pub const TCPHDR_CWR: u32 = 0x0020;
    /// CCF_MAX_CWND: a cwnd ceiling is set (unused in-tree).
    pub const MAX_CWND: u32 = 0x0040;
    /// CCF_CHG_MAX_CWND: the cwnd ceiling changed (unused in-tree).
    pub const CHG_MAX_CWND: u32 = 0x0080;
    /// CCF_USR_IWND: the user set an initial window (unused in-tree).
    pub const USR_IWND: u32 = 0x0100;
    /// CCF_USR_IWND_INIT_NSEG: the user's initial window is in segments (unused in-tree).
    pub const USR_IWND_INIT_NSEG: u32 = 0x0200;
    /// CCF_HYSTART_ALLOWED: the stack allows HyStart++ (RFC 9406) on this connection; set
    /// by plugtcp's stacks when the handshake completes, before `conn_init`.
    pub const HYSTART_ALLOWED: u32 = 0x0400;
    /// CCF_HYSTART_CAN_SH_CWND: HyStart++ may shrink cwnd (unused in-tree).
    pub const HYSTART_CAN_SH_CWND: u32 = 0x0800;
    /// CCF_HYSTART_CONS_SSTH: HyStart++ conservative ssthresh; set by plugtcp's stacks with
    /// `HYSTART_ALLOWED`.
    pub const HYSTART_CONS_SSTH: u32 = 0x1000;
}

/// Host-wide CC tunables a module may read (`net.inet.tcp.cc.*`, `net.inet.tcp.abc_l_var`,
/// `net.inet.tcp.initcwnd_segments`). The host updates them when the sysctl changes.
#[repr(C)]
#[derive(StableAbi, Default)]
pub struct CcGlobals {
    /// `net.inet.tcp.cc.abe`: Alternative Backoff with ECN (RFC 8511), 0 or 1.
    pub abe: AtomicIsize,
    /// `net.inet.tcp.cc.abe_frlossreduce`: with ABE, the loss backoff for a loss during an
    /// ECN recovery, 0 or 1.
    pub abe_frlossreduce: AtomicIsize,
    /// `net.inet.tcp.abc_l_var`: RFC 3465's L, the slow-start limit per ACK in segments.
    pub abc_l_var: AtomicIsize,
    /// `net.inet.tcp.initcwnd_segments`: the initial window in segments (0: RFC 3390).
    pub initcwnd_segments: AtomicIsize,
    /// `net.inet.tcp.cc.hystartplusplus.minrtt_thresh`: RFC 9406 MIN_RTT_THRESH, usecs.
    pub hystartplusplus_minrtt_thresh: AtomicIsize,
    /// `net.inet.tcp.cc.hystartplusplus.maxrtt_thresh`: RFC 9406 MAX_RTT_THRESH, usecs.
    pub hystartplusplus_maxrtt_thresh: AtomicIsize,
    /// `net.inet.tcp.cc.hystartplusplus.n_rttsamples`: RFC 9406 N_RTT_SAMPLE.
    pub hystartplusplus_n_rttsamples: AtomicIsize,
    /// `net.inet.tcp.cc.hystartplusplus.css_growth_div`: RFC 9406 CSS_GROWTH_DIVISOR.
    pub hystartplusplus_css_growth_div: AtomicIsize,
    /// `net.inet.tcp.cc.hystartplusplus.css_rounds`: RFC 9406 CSS_ROUNDS.
    pub hystartplusplus_css_rounds: AtomicIsize,
}

impl CcGlobals {
    /// Reads one of the values (relaxed: each is independent).
    #[inline]
    pub fn get(v: &AtomicIsize) -> i64 {
        v.load(Ordering::Relaxed) as i64
    }
}

/// A module parameter, exposed by the host as `net.inet.tcp.cc.<module>.<name>`.
#[repr(C)]
#[derive(StableAbi, Clone, Copy, Debug)]
pub struct CcParamDesc {
    /// The sysctl leaf name (no whitespace or commas, under 64 bytes).
    pub name: RStr<'static>,
    /// The sysctl's description.
    pub description: RStr<'static>,
    /// Initial value (kept across a reload of the module when the name stays).
    pub default: i64,
    /// Smallest accepted value (the host answers EINVAL below it).
    pub min: i64,
    /// Largest accepted value (EINVAL above it).
    pub max: i64,
}

impl CcParamDesc {
    /// A descriptor (for a `const PARAMS` table).
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
    /// Bytes acknowledged by the ACK being processed (set by [`CcConn::on_ack`]; 0 for a
    /// duplicate ACK).
    pub bytes_this_ack: u32,
    /// The ACK being processed: `tp.snd_una` when [`CcConn::on_ack`] ran (plugtcp's stacks
    /// call it after moving `snd_una` to an ACK of new data), the ACK that ends recovery for
    /// `post_recovery`.
    pub curack: u32,
    /// [`ccf`] flags.
    pub flags: u32,
    /// Bytes in flight as FreeBSD's tcp_compute_pipe() counts them when recovery ends
    /// (snd_max - snd_una before this ACK, plus bytes retransmitted into SACK holes, less
    /// bytes SACKed); set for `post_recovery`.
    pub pipe: u32,
    /// Segments coalesced into this ACK (at least 1; plugtcp's stacks pass 1).
    pub nsegs: u16,
    /// Per-connection ABC limit when `ccf::USE_LOCAL_ABC` is set.
    pub labc: u8,
    /// The module's parameters, in the order of [`CcAlgo::params`]; host-owned.
    pub params: RSlice<'static, AtomicIsize>,
    /// The module's counters, in the order of [`CcAlgo::counters`]; the host exports them.
    pub counters: RSlice<'static, AtomicUsize>,
    /// The host-wide CC tunables.
    pub globals: &'static CcGlobals,
}

impl CcVar {
    /// An empty cc_var: no module state, no parameters or counters, `nsegs` 1.
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

/// The module descriptor (FreeBSD `struct cc_algo`). A prefix type: fields may be appended in
/// later ABI versions and older plugins keep loading.
///
/// The host refuses (EINVAL) a module without `ack_received` or `cong_signal`, or with only
/// one of `cb_init`/`cb_destroy`; a missing optional hook is simply not called (for
/// `ctl_output`: TCP_CCALGOOPT answers ENOENT). Each hook's contract is on the matching
/// [`CcAlgorithm`] method; the hooks here return [`HookStatus`].
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = CcAlgoRef)))]
#[sabi(missing_field(option))]
pub struct CcAlgo {
    /// The module's name (TCP_CONGESTION, `cc.algorithm`): 1 to 15 bytes, no whitespace or
    /// commas.
    pub name: RStr<'static>,
    /// The module's parameters, exposed as `net.inet.tcp.cc.<name>.<param>`.
    pub params: RSlice<'static, CcParamDesc>,
    /// Names of the module's counters (see [`CcVar::count`]).
    pub counters: RSlice<'static, RStr<'static>>,
    /// [`CcAlgorithm::mod_init`].
    pub mod_init: Option<extern "C" fn() -> HookStatus>,
    /// [`CcAlgorithm::mod_destroy`].
    pub mod_destroy: Option<extern "C" fn() -> HookStatus>,
    /// [`CcAlgorithm::cb_init`]: fills `ccv.cc_data`.
    pub cb_init: Option<extern "C" fn(&mut CcVar, &mut Tcpcb) -> HookStatus>,
    /// `cb_destroy`: frees `ccv.cc_data` (the trait's state is dropped).
    pub cb_destroy: Option<extern "C" fn(&mut CcVar) -> HookStatus>,
    /// [`CcAlgorithm::conn_init`].
    pub conn_init: Option<extern "C" fn(&mut CcVar, &mut Tcpcb) -> HookStatus>,
    /// [`CcAlgorithm::ack_received`] (required).
    pub ack_received: Option<extern "C" fn(&mut CcVar, &mut Tcpcb, u32) -> HookStatus>,
    /// [`CcAlgorithm::cong_signal`] (required).
    pub cong_signal: Option<extern "C" fn(&mut CcVar, &mut Tcpcb, u32) -> HookStatus>,
    /// [`CcAlgorithm::post_recovery`].
    pub post_recovery: Option<extern "C" fn(&mut CcVar, &mut Tcpcb) -> HookStatus>,
    /// [`CcAlgorithm::after_idle`].
    pub after_idle: Option<extern "C" fn(&mut CcVar, &mut Tcpcb) -> HookStatus>,
    /// [`CcAlgorithm::ecnpkt_handler`]; `None` unless `HAS_ECNPKT_HANDLER`.
    pub ecnpkt_handler: Option<extern "C" fn(&mut CcVar, &mut Tcpcb) -> HookStatus>,
    /// [`CcAlgorithm::newround`].
    pub newround: Option<extern "C" fn(&mut CcVar, &mut Tcpcb, u32) -> HookStatus>,
    /// [`CcAlgorithm::rttsample`].
    pub rttsample: Option<extern "C" fn(&mut CcVar, &mut Tcpcb, u32, u32, u32) -> HookStatus>,
    /// [`CcAlgorithm::ctl_output`]; `None` unless `HAS_CTL_OUTPUT`.
    pub ctl_output: Option<extern "C" fn(&mut CcVar, &mut Tcpcb, &mut SockOpt<'_>) -> HookStatus>,
    /// Validates a new value of parameter `idx` (e.g. newreno's beta_ecn needs cc.abe=1),
    /// given the module's current values (in the order of `params`) for checks across
    /// parameters (e.g. vegas's alpha <= beta).
    /// (The type is spelled out: abi_stable describes a function pointer from its syntax.)
    #[sabi(last_prefix_field)]
    pub param_check:
        Option<extern "C" fn(u32, i64, &CcGlobals, RSlice<'_, AtomicIsize>) -> HookStatus>,
}

/// The per-connection hooks a stack calls on the module's state, written once: this table
/// makes [`CcHooks`]' fields and [`CcHooks::of`], the `extern "C"` shim of each (the
/// [`CcAlgorithm`] method behind a panic guard, on the state `cb_init` made) and
/// [`CcConn`]'s raw call of each. Each hook's contract is on its [`CcAlgorithm`] method.
macro_rules! per_connection_hooks {
    ($( $(#[$raw_doc:meta])* $hook:ident ( $($arg:ident : $ty:ty),* ); )*) => {
        /// The hooks of one module, copied out of its descriptor once so that per-ACK calls
        /// are one indirect call with no prefix-field checks. Kept in each connection beside
        /// its `CcVar`.
        #[repr(C)]
        #[derive(StableAbi, Clone, Copy)]
        pub struct CcHooks {
            /// [`CcAlgo::cb_init`].
            pub cb_init: Option<extern "C" fn(&mut CcVar, &mut Tcpcb) -> HookStatus>,
            /// [`CcAlgo::cb_destroy`].
            pub cb_destroy: Option<extern "C" fn(&mut CcVar) -> HookStatus>,
            $(
                #[doc = concat!("[`CcAlgo::", stringify!($hook), "`].")]
                pub $hook: Option<extern "C" fn(&mut CcVar, &mut Tcpcb $(, $ty)*) -> HookStatus>,
            )*
            /// [`CcAlgo::ctl_output`].
            pub ctl_output:
                Option<extern "C" fn(&mut CcVar, &mut Tcpcb, &mut SockOpt<'_>) -> HookStatus>,
        }

        impl CcHooks {
            /// No module: every hook `None`.
            pub const NONE: CcHooks = CcHooks {
                cb_init: None,
                cb_destroy: None,
                $($hook: None,)*
                ctl_output: None,
            };

            /// The hooks of `algo` (read once, at registration).
            pub fn of(algo: CcAlgoRef) -> Self {
                CcHooks {
                    cb_init: algo.cb_init(),
                    cb_destroy: algo.cb_destroy(),
                    $($hook: algo.$hook(),)*
                    ctl_output: algo.ctl_output(),
                }
            }
        }

        // The raw calls: the module's hook alone, if it has one; an errno it returns is
        // ignored, a panic sets `faulted`. Stacks mostly want the `on_*` helpers, which do
        // FreeBSD's bookkeeping around the hook.
        impl CcConn {
            $(
                $(#[$raw_doc])*
                #[inline]
                pub fn $hook(&mut self, tp: &mut Tcpcb $(, $arg: $ty)*) {
                    if let Some(h) = self.hooks.$hook {
                        if h(&mut self.ccv, tp $(, $arg)*) == HookStatus::PANICKED {
                            self.faulted = true;
                        }
                    }
                }
            )*
        }

        /// The shims the descriptor points at: the module's method on its state, behind a
        /// panic guard.
        mod shim {
            use super::*;
            $(
                pub(super) extern "C" fn $hook<T: CcAlgorithm>(
                    ccv: &mut CcVar,
                    tp: &mut Tcpcb
                    $(, $arg: $ty)*
                ) -> HookStatus {
                    guard(|| {
                        // SAFETY: `cc_data` was set by `cb_init::<T>` (see `state`).
                        let st = unsafe { state::<T>(ccv) }.ok_or(Errno::EINVAL)?;
                        st.$hook(ccv, tp $(, $arg)*);
                        Ok(())
                    })
                }
            )*
        }
    };
}

per_connection_hooks! {
    /// The module's `conn_init` (no initial window computed: see [`Self::on_conn_init`]).
    conn_init();
    /// The module's `ack_received` (no ABC bookkeeping: see [`Self::on_ack`]).
    ack_received(ack_type: u32);
    /// The module's `cong_signal` (no stack bookkeeping: see [`Self::on_cong_signal`],
    /// [`Self::on_ecn_signal`]).
    cong_signal(sig: u32);
    /// The module's `post_recovery` (see [`Self::on_post_recovery`]).
    post_recovery();
    /// The module's `after_idle`: call before sending after an idle period of at least one
    /// RTO (FreeBSD tcp_output: nothing in flight and `now - t_rcvtime >= t_rxtcur`).
    after_idle();
    /// The module's `ecnpkt_handler`: call for a segment of an ECN connection after setting
    /// `ccf::IPHDR_CE`/`ccf::TCPHDR_CWR` in `ccv.flags` for it; afterwards, a `ccf::ACKNOW`
    /// the module set asks for an immediate ACK (clear it). A stack may test
    /// `hooks.ecnpkt_handler` for `Some` to skip the per-packet bookkeeping for modules
    /// without one (plugtcp's stacks do).
    ecnpkt_handler();
    /// The module's `newround`: a new round trip begins (RFC 9406: the ACK passed the
    /// `snd_max` of when the last round began); `round_cnt` counts rounds so far.
    newround(round_cnt: u32);
    /// The module's `rttsample`: see [`CcAlgorithm::rttsample`] for the arguments.
    rttsample(usec_rtt: u32, rxtcnt: u32, fas: u32);
}

/// A connection's CC: the module's hooks and the connection's `cc_var`. Stacks call the
/// methods where FreeBSD's tcp_input/tcp_output call `CC_ALGO(tp)->...`. A hook that panics
/// sets `faulted`, which the host checks after every stack call.
#[repr(C)]
#[derive(StableAbi)]
pub struct CcConn {
    /// The module's hooks (host-written when the connection attaches a module; all `None`
    /// before).
    pub hooks: CcHooks,
    /// The connection's cc_var.
    pub ccv: CcVar,
    /// Set when a module hook called through these methods panicked; the host checks (and
    /// clears) it after every stack call and frees the connection. A stack need not look
    /// at it, and must not clear it.
    pub faulted: bool,
}

impl CcConn {
    /// No module attached: every call below does nothing until the host attaches one.
    pub fn new(globals: &'static CcGlobals) -> Self {
        CcConn {
            hooks: CcHooks::NONE,
            ccv: CcVar::new(globals),
            faulted: false,
        }
    }
}

/// What a CC module implements. Hooks that a module does not need keep the default, and the
/// `HAS_*` constants say which optional hooks the module really has (FreeBSD leaves those
/// NULL: the host then answers ENOENT for TCP_CCALGOOPT, for instance).
///
/// The state `Self` is per connection: built by `cb_init`, dropped when the connection
/// leaves the module. Every per-connection hook gets the connection's [`CcVar`] and
/// [`Tcpcb`]; see the module docs for what a hook may change. Per-connection hooks run on
/// the thread that drives the connection, one at a time per connection (`mod_init`,
/// `mod_destroy` and `param_check` run wherever the host's control plane does). None of
/// the hooks a stack calls returns an error the stack looks at (a panic is a fault: the
/// host frees the connection).
pub trait CcAlgorithm: Sized + Send + 'static {
    /// The module's name (FreeBSD `cc_algo.name`): 1 to 15 bytes, no whitespace or commas.
    const NAME: &'static str;
    /// The module's parameters (`net.inet.tcp.cc.<NAME>.<param>`); a connection reads the
    /// current values with [`CcVar::param`], by index in this table.
    const PARAMS: &'static [CcParamDesc] = &[];
    /// Names of the module's counters ([`CcVar::count`] by index in this table), exported
    /// by the host.
    const COUNTERS: &'static [RStr<'static>] = &[];
    /// Whether `ctl_output` is implemented (else TCP_CCALGOOPT answers ENOENT).
    const HAS_CTL_OUTPUT: bool = false;
    /// Whether `ecnpkt_handler` is implemented (else the stack skips the per-packet call).
    const HAS_ECNPKT_HANDLER: bool = false;

    /// FreeBSD `mod_init`: the module is being registered (kldload, static registration,
    /// or a reload under a new version), before any connection can use it. An error
    /// refuses the registration with that errno (kldload reports it).
    fn mod_init() -> Result<(), Errno> {
        Ok(())
    }
    /// FreeBSD `mod_destroy`: the module was removed and has no users left (kldunload, the
    /// old version after a reload once its connections moved over), or its registration
    /// failed after `mod_init`. The result is ignored: the removal is done.
    fn mod_destroy() -> Result<(), Errno> {
        Ok(())
    }
    /// Builds the per-connection state (FreeBSD `cb_init`). Called by the host when a
    /// connection attaches to the module: a new socket or an accepted connection (before
    /// its stack is attached), TCP_CONGESTION, a reload, or a forced unload moving the
    /// connection here. Make-before-break: it runs on a fresh [`CcVar`] (parameters,
    /// counters, and the `ccv.flags` of the module being left) while the old module is
    /// still attached; only if it succeeds does the old module's state go (its
    /// `cb_destroy`), and `snd_cwnd`/`snd_ssthresh` stay as the old module left them.
    /// Read what is needed from `tp`; change nothing (the state is not attached yet). An
    /// error keeps the old module and goes back to the application (setsockopt), or fails
    /// the new connection.
    fn cb_init(ccv: &CcVar, tp: &Tcpcb) -> Result<Self, Errno>;
    /// FreeBSD `conn_init`: the connection is established. Called by the stack when the
    /// handshake completes, after [`CcConn::on_conn_init`] set the initial window
    /// (`snd_cwnd`); and by the host right after `cb_init` when the module is attached to an
    /// already established connection (then `snd_cwnd` is whatever the previous module
    /// left). May set `snd_cwnd`, `snd_ssthresh`, and its own state.
    fn conn_init(&mut self, _ccv: &mut CcVar, _tp: &mut Tcpcb) {}
    /// FreeBSD `ack_received`: an ACK arrived. Called by the stack through
    /// [`CcConn::on_ack`], which first set `ccv.bytes_this_ack`, `ccv.nsegs`, `ccv.curack`,
    /// `ccf::CWND_LIMITED` and (RFC 3465 byte counting in congestion avoidance)
    /// `ccf::ABC_SENTAWND`. `ack_type`: [`CC_ACK`] for an ACK of new data outside loss
    /// recovery (`snd_una` already advanced), [`CC_DUPACK`] for a duplicate ACK (before
    /// recovery, and in recovery). Grows `snd_cwnd` (slow start below `snd_ssthresh`,
    /// congestion avoidance above, conventionally only while `ccf::CWND_LIMITED` and not in
    /// recovery); may consume `ccf::ABC_SENTAWND`. Must not enter or leave recovery here.
    fn ack_received(&mut self, ccv: &mut CcVar, tp: &mut Tcpcb, ack_type: u32);
    /// FreeBSD `cong_signal`: congestion. Called by the stack through
    /// [`CcConn::on_cong_signal`] (after its own part: `snd_recover`, CWR, and for
    /// [`CC_RTO`] clearing `t_dupacks`, `t_bytes_acked` and the recovery bits) or
    /// [`CcConn::on_ecn_signal`]. `sig`: [`CC_NDUPACK`] (loss: set `snd_ssthresh`, and
    /// enter recovery with `tf::FASTRECOVERY | tf::CONGRECOVERY` unless already in fast
    /// recovery; the stack then sets cwnd for recovery itself), [`CC_ECN`] (ECE: outside
    /// `tf::CONGRECOVERY` reduce `snd_ssthresh` and `snd_cwnd` and set
    /// `tf::CONGRECOVERY`; repeats within the episode arrive too and should change nothing),
    /// [`CC_RTO`] (timeout: `snd_ssthresh` from the flight, `snd_cwnd` to one segment),
    /// [`CC_RTO_ERR`] (the RTO was spurious: undo the module's own state; the stack put cwnd
    /// and ssthresh back). Signals from [`CC_SIGPRIVMASK`] up are a module's own.
    fn cong_signal(&mut self, ccv: &mut CcVar, tp: &mut Tcpcb, sig: u32);
    /// FreeBSD `post_recovery`: the ACK `ccv.curack` ends loss recovery. Called by the
    /// stack through [`CcConn::on_post_recovery`] before `snd_una` moves to that ACK, with
    /// `ccv.pipe` the bytes in flight; the helper clears the recovery bits and
    /// `t_bytes_acked` after it. Sets `snd_cwnd` for leaving recovery (NewReno: ssthresh,
    /// or pipe plus a segment when less is in flight).
    fn post_recovery(&mut self, _ccv: &mut CcVar, _tp: &mut Tcpcb) {}
    /// FreeBSD `after_idle`: the connection is about to send after being idle (nothing in
    /// flight, nothing received for at least `t_rxtcur`). Called by the stack before it
    /// sends. Typically restarts from the restart window (RFC 5681 4.1), keeping
    /// `snd_ssthresh` at least 3/4 of the old cwnd (RFC 2861).
    fn after_idle(&mut self, _ccv: &mut CcVar, _tp: &mut Tcpcb) {}
    /// FreeBSD `ecnpkt_handler`: one segment of an ECN connection (each acceptable segment
    /// with ACK, whether it carries data or not). Called by the stack, only if
    /// `HAS_ECNPKT_HANDLER`, with `ccf::IPHDR_CE` and `ccf::TCPHDR_CWR` in `ccv.flags`
    /// describing this segment. May set `ccf::ACKNOW` to have the segment acknowledged at
    /// once (DCTCP does when the CE state changes); may change its own state, `snd_cwnd`,
    /// `snd_ssthresh`.
    fn ecnpkt_handler(&mut self, _ccv: &mut CcVar, _tp: &mut Tcpcb) {}
    /// FreeBSD `newround`: a new round trip begins (an ACK passed the `snd_max` recorded when
    /// the previous round began); `round_cnt` is the number of rounds so far. Called by the
    /// stack on ACKs of new data, after `rttsample` for the same ACK. HyStart++ (RFC 9406)
    /// uses it to end a round's RTT sampling.
    fn newround(&mut self, _ccv: &mut CcVar, _tp: &mut Tcpcb, _round_cnt: u32) {}
    /// FreeBSD `rttsample`: an RTT measurement from this ACK. Called by the stack for an ACK
    /// of new data that gives an unambiguous sample (Karn: none when retransmitted data is
    /// involved), before the ACK's `ack_received`. `usec_rtt`: the sample in microseconds;
    /// `rxtcnt`: plugtcp's stacks pass `t_rxtshift` (FreeBSD's rack passes the segment's
    /// transmission count); `fas`: bytes in flight when the measured data was sent.
    /// `tp.t_srtt` is already updated when plugtcp's stacks call it from the same ACK.
    fn rttsample(
        &mut self,
        _ccv: &mut CcVar,
        _tp: &mut Tcpcb,
        _usec_rtt: u32,
        _rxtcnt: u32,
        _fas: u32,
    ) {
    }
    /// FreeBSD `ctl_output`: getsockopt/setsockopt(TCP_CCALGOOPT) on a connection using
    /// this module, called by the host (not through the stack), only if `HAS_CTL_OUTPUT`.
    /// The value is the module's own structure (at most
    /// [`crate::sockopt::TCP_CCALGOOPT_MAX`] bytes). The errno goes back to the application
    /// as is.
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
    /// Called by the host on `sysctl net.inet.tcp.cc.<NAME>.<param>=value`, after the range
    /// check; an error refuses the value with that errno. Connections see an accepted value
    /// at once through [`CcVar::param`].
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
            conn_init: Some(shim::conn_init::<T>),
            ack_received: Some(shim::ack_received::<T>),
            cong_signal: Some(shim::cong_signal::<T>),
            post_recovery: Some(shim::post_recovery::<T>),
            after_idle: Some(shim::after_idle::<T>),
            ecnpkt_handler: if T::HAS_ECNPKT_HANDLER { Some(shim::ecnpkt_handler::<T>) } else { None },
            newround: Some(shim::newround::<T>),
            rttsample: Some(shim::rttsample::<T>),
            ctl_output: if T::HAS_CTL_OUTPUT { Some(ctl_output::<T>) } else { None },
            param_check: Some(param_check::<T>),
        })
    }

    /// The module's descriptor.
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
