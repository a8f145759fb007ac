//! `bbr`: the function block after FreeBSD's tcp_bbr(4): a paced, rate-based stack that
//! runs its own BBR model and does not use the connection's CC module. It is the shared
//! engine (stacks/engine) with RACK-TLP loss detection (RFC 8985), driving the BBRv3 model
//! of `cc-modules/bbr` (the same code, linked in) through the engine's rate-based path:
//! delivery-rate samples on every ACK, cwnd and the pacing rate from the model, pacing by
//! the host.
//!
//! - **Tunables**: the model's parameters, as the block's own sysctls
//!   `net.inet.tcp.bbr.<param>` (FreeBSD's bbr registers its tunables there too; the names
//!   and meanings are the BBRv3 module's, documented in `plugtcp_cc_bbr`, not FreeBSD's
//!   BBRv1 ones). The `net.inet.tcp.cc.bbr.*` sysctls tune the module, not this block.
//! - **The CC module**: as in FreeBSD, the connection keeps one (TCP_CONGESTION sets and
//!   reads it as on any stack, and switching back to another block uses it again), but
//!   this block never calls it: during each of its hooks the connection's `CcConn` is
//!   swapped for the block's own, whose hooks are the BBR model's.
//! - **Handoff** (FreeBSD bbr_handoff_ok): CLOSED and LISTEN fine; SYN_SENT and SYN_RCVD
//!   EAGAIN; a connection without SACK EINVAL (FreeBSD's `bbr.sack_not_required` is not
//!   offered: the engine's RACK needs SACK).
//! - **Leaving**: switching away turns the pacing this block set off; the next block starts
//!   from the cwnd the model left.

use std::sync::atomic::AtomicIsize;

use abi_stable::std_types::{RSlice, RStr};
use plugtcp_abi::cc::{CcAlgorithm, CcConn, CcHooks, CcParamDesc};
use plugtcp_abi::segment::SegIn;
use plugtcp_abi::sockopt::SockOpt;
use plugtcp_abi::stack::{InitMode, OldStack, StackCtx, TcpInfo, TcpStack};
use plugtcp_abi::tcpcb::tf;
use plugtcp_abi::{Errno, TcpState};
use plugtcp_cc_bbr::Bbr;
use plugtcp_tcp_engine::{LossDetection, Personality, Stack};

pub struct BbrPersonality;

impl Personality for BbrPersonality {
    const NAME: &'static str = "bbr";
    const LOSS: LossDetection = LossDetection::RackTlp;
    const PARAMS: &'static [CcParamDesc] = Bbr::PARAMS;

    fn handoff_ok(cx: &StackCtx) -> Result<(), Errno> {
        match cx.tp.t_state {
            TcpState::Closed | TcpState::Listen => Ok(()),
            TcpState::SynSent | TcpState::SynReceived => Err(Errno::EAGAIN),
            _ if cx.tp.t_flags & tf::SACK_PERMIT == 0 => Err(Errno::EINVAL),
            _ => Ok(()),
        }
    }
}

/// The `bbr` function block.
pub struct BbrStack {
    inner: Stack<BbrPersonality>,
    /// The BBR model: the bbr module's hooks on this connection's own cc_var.
    model: CcConn,
    /// The model's parameter values (its cc_var points here), refreshed from the block's
    /// sysctls at every hook.
    params: Box<[AtomicIsize]>,
}

// SAFETY: the model's cc_var holds raw pointers (its state, made by the bbr module's
// cb_init; the host's globals) that only this connection's hooks use, on whichever thread
// drives the connection, one call at a time: the same contract as the connection's own
// CcConn, which the host moves between threads with the connection.
unsafe impl Send for BbrStack {}

/// The engine's counters, then the model's (the model counts into the block's tail).
const fn counters() -> [RStr<'static>; ENGINE_COUNTERS + MODEL_COUNTERS] {
    let mut out = [RStr::from_str(""); ENGINE_COUNTERS + MODEL_COUNTERS];
    let mut i = 0;
    while i < ENGINE_COUNTERS {
        out[i] = plugtcp_tcp_engine::COUNTERS[i];
        i += 1;
    }
    while i < ENGINE_COUNTERS + MODEL_COUNTERS {
        out[i] = Bbr::COUNTERS[i - ENGINE_COUNTERS];
        i += 1;
    }
    out
}
const ENGINE_COUNTERS: usize = plugtcp_tcp_engine::COUNTERS.len();
const MODEL_COUNTERS: usize = Bbr::COUNTERS.len();
const COUNTERS: [RStr<'static>; ENGINE_COUNTERS + MODEL_COUNTERS] = counters();

/// While alive, the connection's `cx.cc` is the block's model (swapped back on drop, also
/// when a hook unwinds, so the host never sees the model in the connection's CC slot).
struct ModelIn<'a> {
    cx: &'a mut StackCtx,
    model: &'a mut CcConn,
}

impl<'a> ModelIn<'a> {
    fn new(cx: &'a mut StackCtx, model: &'a mut CcConn) -> Self {
        std::mem::swap(&mut cx.cc, model);
        ModelIn { cx, model }
    }
}

impl Drop for ModelIn<'_> {
    fn drop(&mut self) {
        std::mem::swap(&mut self.cx.cc, self.model);
    }
}

impl BbrStack {
    /// Runs `f` on the engine with the model in the connection's CC slot.
    fn with_model<R>(
        &mut self,
        cx: &mut StackCtx,
        f: impl FnOnce(&mut Stack<BbrPersonality>, &mut StackCtx) -> R,
    ) -> R {
        self.refresh_params(cx);
        let r = {
            let g = ModelIn::new(cx, &mut self.model);
            f(&mut self.inner, g.cx)
        };
        if std::mem::take(&mut self.model.faulted) {
            // The model is this block's code: its panic costs the connection, as the
            // block's own would.
            panic!("bbr: the BBR model panicked");
        }
        r
    }

    fn refresh_params(&self, cx: &StackCtx) {
        for (i, (v, d)) in self.params.iter().zip(Bbr::PARAMS).enumerate() {
            let now = cx.host.stack_param(i as u32, d.default);
            v.store(now as isize, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

impl TcpStack for BbrStack {
    const NAME: &'static str = "bbr";
    const COUNTERS: &'static [RStr<'static>] = &COUNTERS;
    const PARAMS: &'static [CcParamDesc] = Bbr::PARAMS;

    fn init(cx: &mut StackCtx, mode: InitMode, old: OldStack) -> Result<Self, Errno> {
        let algo = plugtcp_cc_bbr::cc_algo();
        let params: Box<[AtomicIsize]> = Bbr::PARAMS
            .iter()
            .enumerate()
            .map(|(i, d)| AtomicIsize::new(cx.host.stack_param(i as u32, d.default) as isize))
            .collect();
        let mut model = CcConn::new(cx.cc.ccv.globals);
        model.hooks = CcHooks::of(algo);
        // SAFETY: the slice lives in `params`' heap allocation, which the block keeps (and
        // never reallocates) for as long as the model that points at it: both are fields
        // of the same BbrStack, and the model's state is destroyed in `fini` first.
        model.ccv.params = RSlice::from_slice(unsafe {
            std::mem::transmute::<&[AtomicIsize], &'static [AtomicIsize]>(&params[..])
        });
        model.ccv.counters = cx
            .counters
            .as_slice()
            .get(ENGINE_COUNTERS..)
            .unwrap_or(&[])
            .into();
        if let Some(cb_init) = model.hooks.cb_init {
            cb_init(&mut model.ccv, &mut cx.tp)
                .into_result()
                .map_err(|e| e.errno())?;
        }
        let mut me = BbrStack {
            inner: {
                let g = ModelIn::new(cx, &mut model);
                <Stack<BbrPersonality> as TcpStack>::init(g.cx, mode, old)?
            },
            model,
            params,
        };
        me.inner.set_own_rate_hook(algo.cong_control().flatten());
        if cx.tp.t_state.have_established() {
            // Switched to mid-connection: the model starts from the window the last stack
            // left, and sets its first pacing rate.
            me.with_model(cx, |s, cx| {
                cx.cc.conn_init(&mut cx.tp);
                s.start_rate_control(cx);
            });
        }
        Ok(me)
    }

    fn fini(mut self, cx: &mut StackCtx, purged: bool) {
        if !purged {
            // The next block paces as it likes: this block's rate goes with it.
            cx.host.pacing_set(0, 0);
        }
        if let Some(d) = self.model.hooks.cb_destroy {
            let _ = d(&mut self.model.ccv);
        }
        self.model.ccv.cc_data = std::ptr::null_mut();
    }

    fn do_segment(&mut self, cx: &mut StackCtx, seg: &SegIn<'_>) -> Result<(), Errno> {
        self.with_model(cx, |s, cx| s.do_segment(cx, seg))
    }

    fn output(&mut self, cx: &mut StackCtx) -> Result<(), Errno> {
        self.with_model(cx, |s, cx| s.output(cx))
    }

    fn timer(&mut self, cx: &mut StackCtx, which: u32) -> Result<(), Errno> {
        self.with_model(cx, |s, cx| s.timer(cx, which))
    }

    fn ctloutput(&mut self, cx: &mut StackCtx, opt: &mut SockOpt<'_>) -> Result<(), Errno> {
        self.with_model(cx, |s, cx| s.ctloutput(cx, opt))
    }

    fn handoff_ok(cx: &StackCtx) -> Result<(), Errno> {
        BbrPersonality::handoff_ok(cx)
    }

    fn mtu_chg(&mut self, cx: &mut StackCtx, mtu: u32) -> Result<(), Errno> {
        self.with_model(cx, |s, cx| s.mtu_chg(cx, mtu))
    }

    fn info(&self, cx: &StackCtx, out: &mut TcpInfo) -> Result<(), Errno> {
        self.inner.info(cx, out)
    }
}

plugtcp_abi::export_function_block!(BbrStack);
