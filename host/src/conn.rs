//! One connection as the host keeps it: the shared [`StackCtx`] that its stack and CC work
//! on, which stack and CC it uses, and the host side that the stack reaches through
//! [`HostOps`]. Attaching, switching (make-before-break) and detaching stacks and CC modules
//! happen here, with the user counts kept in the registry entries.

use std::ffi::c_void;
use std::sync::Arc;

use abi_stable::prefix_type::WithMetadata;
use abi_stable::std_types::{RSlice, RSliceMut};
use plugtcp_framework::cc::{CcConn, CcGlobals, CcVar};
use plugtcp_framework::segment::{SegIn, SegOut};
use plugtcp_framework::sockopt::SockOpt;
use plugtcp_framework::stack::{
    tt, ConnEvent, HostIf, HostOps, HostOpsRef, InitMode, OldStack, StackCtx, TcpInfo,
};
use plugtcp_framework::{Errno, HookError, HookStatus, TcpState, Tcpcb};

use crate::registry::{BlockEntry, CcEntry};

/// Which plugin a failed call is blamed on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Culprit {
    Stack(String),
    Cc(String),
}

/// A failed call into a plugin on behalf of one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnFault {
    pub culprit: Culprit,
    pub error: HookError,
}

impl ConnFault {
    pub fn errno(&self) -> Errno {
        self.error.errno()
    }
}

/// What the host keeps for a connection besides the shared context: for now the output
/// queue, connection events and timer deadlines that the stack asks for. (Socket buffers
/// and the timer wheel join when the packet path lands.)
#[derive(Default)]
pub struct HostSide {
    pub now: u64,
    pub out: Vec<SegOut>,
    pub events: Vec<ConnEvent>,
    /// Absolute deadline per timer (`u64::MAX` = stopped).
    pub timers: [u64; tt::COUNT as usize],
    pub snd: Vec<u8>,
    pub rcv: Vec<u8>,
    pub rcv_ooo: Vec<(u32, Vec<u8>)>,
    pub rcv_hiwat: u32,
}

impl HostSide {
    pub fn new() -> Self {
        HostSide {
            timers: [u64::MAX; tt::COUNT as usize],
            rcv_hiwat: 65536,
            ..Default::default()
        }
    }
}

fn side<'a>(host: *mut c_void) -> &'a mut HostSide {
    // SAFETY: the host sets `ctx.host.host` to the connection's own HostSide right before
    // every stack call (`Conn::call`), and HostSide is a separate field from the StackCtx the
    // stack borrows, so this is the only live reference to it.
    unsafe { &mut *(host as *mut HostSide) }
}

extern "C" fn op_output(host: *mut c_void, seg: &SegOut) -> HookStatus {
    side(host).out.push(*seg);
    HookStatus::OK
}
extern "C" fn op_snd_len(host: *mut c_void) -> u32 {
    side(host).snd.len() as u32
}
extern "C" fn op_snd_read(host: *mut c_void, off: u32, mut dst: RSliceMut<'_, u8>) -> u32 {
    let s = side(host);
    let src = s.snd.get(off as usize..).unwrap_or(&[]);
    let n = src.len().min(dst.len());
    dst[..n].copy_from_slice(&src[..n]);
    n as u32
}
extern "C" fn op_snd_drop(host: *mut c_void, n: u32) {
    let s = side(host);
    let n = (n as usize).min(s.snd.len());
    s.snd.drain(..n);
}
extern "C" fn op_rcv_space(host: *mut c_void) -> u32 {
    let s = side(host);
    s.rcv_hiwat.saturating_sub(s.rcv.len() as u32)
}
extern "C" fn op_rcv_write(host: *mut c_void, off: u32, data: RSlice<'_, u8>) -> u32 {
    let s = side(host);
    let room = op_rcv_space(host).saturating_sub(off) as usize;
    let n = data.len().min(room);
    s.rcv_ooo.push((off, data[..n].to_vec()));
    n as u32
}
extern "C" fn op_rcv_commit(host: *mut c_void, n: u32) {
    let s = side(host);
    let mut staged = vec![0u8; n as usize];
    for (off, bytes) in s.rcv_ooo.drain(..) {
        let off = off as usize;
        if off < staged.len() {
            let end = (off + bytes.len()).min(staged.len());
            staged[off..end].copy_from_slice(&bytes[..end - off]);
        }
    }
    s.rcv.extend_from_slice(&staged);
}
extern "C" fn op_timer_start(host: *mut c_void, which: u32, delay_ns: u64) {
    let s = side(host);
    if let Some(t) = s.timers.get_mut(which as usize) {
        *t = s.now.saturating_add(delay_ns);
    }
}
extern "C" fn op_timer_stop(host: *mut c_void, which: u32) {
    if let Some(t) = side(host).timers.get_mut(which as usize) {
        *t = u64::MAX;
    }
}
extern "C" fn op_timer_remaining(host: *mut c_void, which: u32) -> u64 {
    let s = side(host);
    match s.timers.get(which as usize) {
        Some(&d) if d != u64::MAX => d.saturating_sub(s.now),
        _ => u64::MAX,
    }
}
extern "C" fn op_now(host: *mut c_void) -> u64 {
    side(host).now
}
extern "C" fn op_event(host: *mut c_void, ev: ConnEvent) {
    side(host).events.push(ev);
}

const HOST_OPS_WM: &WithMetadata<HostOps> = &WithMetadata::new(HostOps {
    output: op_output,
    snd_len: op_snd_len,
    snd_read: op_snd_read,
    snd_drop: op_snd_drop,
    rcv_space: op_rcv_space,
    rcv_write: op_rcv_write,
    rcv_commit: op_rcv_commit,
    timer_start: op_timer_start,
    timer_stop: op_timer_stop,
    timer_remaining: op_timer_remaining,
    now: op_now,
    event: op_event,
});

/// The host operations every connection's stack sees.
pub const HOST_OPS: HostOpsRef = HostOpsRef(HOST_OPS_WM.static_as_prefix());

struct AttachedStack {
    entry: Arc<BlockEntry>,
    state: *mut c_void,
}

/// A connection.
pub struct Conn {
    pub ctx: StackCtx,
    pub side: Box<HostSide>,
    stack: Option<AttachedStack>,
    cc: Option<Arc<CcEntry>>,
}

fn hook(st: HookStatus) -> Result<(), HookError> {
    st.into_result()
}

impl Conn {
    /// A connection with no stack or CC attached yet.
    pub fn new(maxseg: u32, globals: &'static CcGlobals) -> Self {
        Conn {
            ctx: StackCtx {
                tp: Tcpcb::new(maxseg),
                cc: CcConn::new(globals),
                host: HostIf {
                    ops: HOST_OPS,
                    host: std::ptr::null_mut(),
                },
                counters: RSlice::from_slice(&[]),
            },
            side: Box::new(HostSide::new()),
            stack: None,
            cc: None,
        }
    }

    pub fn stack(&self) -> Option<&Arc<BlockEntry>> {
        self.stack.as_ref().map(|s| &s.entry)
    }

    pub fn cc(&self) -> Option<&Arc<CcEntry>> {
        self.cc.as_ref()
    }

    fn bind_host(&mut self) {
        self.ctx.host.host = &mut *self.side as *mut HostSide as *mut c_void;
    }

    fn stack_name(&self) -> String {
        self.stack
            .as_ref()
            .map_or_else(String::new, |s| s.entry.name.clone())
    }

    /// Blames a failed stack call on the CC when a CC hook panicked inside it.
    fn check(&mut self, st: HookStatus) -> Result<(), ConnFault> {
        if std::mem::take(&mut self.ctx.cc.faulted) {
            let name = self
                .cc
                .as_ref()
                .map_or_else(String::new, |c| c.name.clone());
            return Err(ConnFault {
                culprit: Culprit::Cc(name),
                error: HookError::Panicked,
            });
        }
        hook(st).map_err(|error| ConnFault {
            culprit: Culprit::Stack(self.stack_name()),
            error,
        })
    }

    /// Attaches the first CC module (FreeBSD cc_attach + cb_init).
    pub fn attach_cc(&mut self, entry: Arc<CcEntry>) -> Result<(), ConnFault> {
        self.set_cc(entry)
    }

    /// Switches the connection's CC (TCP_CONGESTION), make-before-break: the new module's
    /// cb_init runs on a fresh cc_var first; only if it succeeds does the old module's
    /// cb_destroy run. cwnd and ssthresh stay in the tcpcb. conn_init runs if established.
    pub fn set_cc(&mut self, entry: Arc<CcEntry>) -> Result<(), ConnFault> {
        let fault = |error| ConnFault {
            culprit: Culprit::Cc(entry.name.clone()),
            error,
        };
        entry.acquire().map_err(|e| fault(HookError::Errno(e)))?;
        let mut ccv = CcVar::new(self.ctx.cc.ccv.globals);
        ccv.params = entry.params.into();
        ccv.counters = entry.counters.into();
        ccv.flags = self.ctx.cc.ccv.flags;
        if let Some(init) = entry.hooks.cb_init {
            if let Err(e) = hook(init(&mut ccv, &mut self.ctx.tp)) {
                entry.release();
                return Err(fault(e));
            }
        }
        self.detach_cc();
        self.ctx.cc.hooks = entry.hooks;
        self.ctx.cc.ccv = ccv;
        self.cc = Some(entry);
        if self.ctx.tp.t_state.have_established() {
            self.ctx.cc.conn_init(&mut self.ctx.tp);
            self.check(HookStatus::OK)?;
        }
        Ok(())
    }

    /// Runs the CC's cb_destroy and drops the user count (a panic there is ignored: the
    /// module is being left anyway, and the private state is lost either way).
    fn detach_cc(&mut self) {
        if let Some(old) = self.cc.take() {
            if let Some(d) = self.ctx.cc.hooks.cb_destroy {
                let _ = d(&mut self.ctx.cc.ccv);
            }
            self.ctx.cc.ccv.cc_data = std::ptr::null_mut();
            old.release();
        }
    }

    /// Attaches the first stack (fresh connection or listener).
    pub fn attach_stack(&mut self, entry: Arc<BlockEntry>) -> Result<(), ConnFault> {
        let fault = |error| ConnFault {
            culprit: Culprit::Stack(entry.name.clone()),
            error,
        };
        entry.acquire().map_err(|e| fault(HookError::Errno(e)))?;
        self.bind_host();
        let mut state = std::ptr::null_mut();
        if let Some(init) = entry.hooks.init {
            if let Err(e) = hook(init(
                &mut self.ctx,
                InitMode::Fresh,
                OldStack::NONE,
                &mut state,
            )) {
                entry.release();
                return Err(fault(e));
            }
        }
        self.ctx.counters = entry.counters.into();
        self.stack = Some(AttachedStack { entry, state });
        Ok(())
    }

    /// Switches a live connection to another stack (TCP_FUNCTION_BLK), make-before-break as
    /// FreeBSD does: the target's handoff_ok (its errno returned as is), the old stack's
    /// timers stopped, the new stack's init in switch mode with a query handle on the old
    /// one; on failure the old stack's switch_failed and its timers back; else its fini.
    pub fn switch_stack(&mut self, entry: Arc<BlockEntry>) -> Result<(), ConnFault> {
        let fault = |error| ConnFault {
            culprit: Culprit::Stack(entry.name.clone()),
            error,
        };
        let Some(old) = self.stack.take() else {
            return self.attach_stack(entry);
        };
        if Arc::ptr_eq(&old.entry, &entry) {
            self.stack = Some(old);
            return Ok(());
        }
        if let Err(e) = entry.acquire() {
            self.stack = Some(old);
            return Err(fault(HookError::Errno(e)));
        }
        self.bind_host();
        if let Err(e) = hook((entry.hooks.handoff_ok)(&self.ctx)) {
            entry.release();
            self.stack = Some(old);
            return Err(fault(e));
        }
        let saved_timers = self.side.timers;
        self.side.timers = [u64::MAX; tt::COUNT as usize];
        let mut state = std::ptr::null_mut();
        let oldq = OldStack {
            state: old.state,
            chg_query: old.entry.hooks.chg_query,
        };
        let r = match entry.hooks.init {
            Some(init) => hook(init(&mut self.ctx, InitMode::Switch, oldq, &mut state)),
            None => Ok(()),
        };
        if let Err(e) = r {
            entry.release();
            self.side.timers = saved_timers;
            if let Some(sf) = old.entry.hooks.switch_failed {
                let _ = sf(old.state, &mut self.ctx);
            }
            self.stack = Some(old);
            return Err(fault(e));
        }
        if let Some(fini) = old.entry.hooks.fini {
            let _ = fini(old.state, &mut self.ctx, false);
        }
        old.entry.release();
        self.ctx.counters = entry.counters.into();
        self.stack = Some(AttachedStack { entry, state });
        Ok(())
    }

    /// Detaches stack and CC (the connection is being freed): fini(purged), cb_destroy.
    pub fn detach(&mut self) {
        if let Some(s) = self.stack.take() {
            self.bind_host();
            if let Some(fini) = s.entry.hooks.fini {
                let _ = fini(s.state, &mut self.ctx, true);
            }
            s.entry.release();
        }
        self.detach_cc();
    }

    fn with_stack(
        &mut self,
        f: impl FnOnce(&AttachedStack, &mut StackCtx) -> HookStatus,
    ) -> Result<(), ConnFault> {
        self.bind_host();
        let Some(s) = self.stack.as_ref() else {
            return Err(ConnFault {
                culprit: Culprit::Stack(String::new()),
                error: HookError::Errno(Errno::ENOTCONN),
            });
        };
        let st = f(s, &mut self.ctx);
        self.check(st)
    }

    /// Hands an incoming segment to the stack.
    pub fn do_segment(&mut self, now: u64, seg: &SegIn<'_>) -> Result<(), ConnFault> {
        self.side.now = now;
        self.with_stack(|s, cx| (s.entry.hooks.do_segment)(s.state, cx, seg))
    }

    /// Lets the stack send what it can (tcp_output).
    pub fn output(&mut self, now: u64) -> Result<(), ConnFault> {
        self.side.now = now;
        self.with_stack(|s, cx| (s.entry.hooks.output)(s.state, cx))
    }

    /// Fires timer `which`.
    pub fn timer(&mut self, now: u64, which: u32) -> Result<(), ConnFault> {
        self.side.now = now;
        if let Some(t) = self.side.timers.get_mut(which as usize) {
            *t = u64::MAX;
        }
        self.with_stack(|s, cx| match s.entry.hooks.timer {
            Some(t) => t(s.state, cx, which),
            None => HookStatus::OK,
        })
    }

    /// A socket option for the stack (get or set).
    pub fn ctloutput(&mut self, opt: &mut SockOpt<'_>) -> Result<(), ConnFault> {
        self.with_stack(|s, cx| (s.entry.hooks.ctloutput)(s.state, cx, opt))
    }

    /// TCP_CCALGOOPT to the CC module: ENOENT when it has no ctl_output.
    pub fn cc_ctl(&mut self, opt: &mut SockOpt<'_>) -> Result<(), ConnFault> {
        let name = self
            .cc
            .as_ref()
            .map_or_else(String::new, |c| c.name.clone());
        let fault = |error| ConnFault {
            culprit: Culprit::Cc(name.clone()),
            error,
        };
        let ctl = self
            .ctx
            .cc
            .hooks
            .ctl_output
            .ok_or(fault(HookError::Errno(Errno::ENOENT)))?;
        hook(ctl(&mut self.ctx.cc.ccv, &mut self.ctx.tp, opt)).map_err(fault)
    }

    /// TCP_INFO from the stack (or from the tcpcb when the stack has no info hook).
    pub fn info(&mut self) -> Result<TcpInfo, ConnFault> {
        let mut out = TcpInfo::from_tcpcb(&self.ctx.tp);
        self.with_stack(|s, cx| match s.entry.hooks.info {
            Some(i) => i(s.state, cx, &mut out),
            None => HookStatus::OK,
        })?;
        Ok(out)
    }

    pub fn state(&self) -> TcpState {
        self.ctx.tp.t_state
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.detach();
    }
}
