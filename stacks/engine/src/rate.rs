//! Rate-based congestion control: the engine's side of `cong_control` (Linux's
//! tcp_cong_control with a rate sample) and of the host's pacer.
//!
//! While the connection's CC module is rate-based (the host hands out its `cong_control`),
//! or the block brings its own (the `bbr` block), the engine keeps a delivery-rate
//! estimator (`plugtcp_tcpkit::rate`), gives the module a sample at the end of every ACK
//! that delivered data, and hands the pacing rate and quantum it sets to the host. The
//! engine's own cwnd rules for loss recovery (PRR, RFC 6675's cwnd = ssthresh, NewReno's
//! inflation) stand aside for such a module: it owns cwnd, as in Linux.

use plugtcp_abi::cc::{rs_flags, CcPacing, CongControlFn, RateSample};
use plugtcp_abi::segment::{th, SegIn};
use plugtcp_abi::stack::StackCtx;
use plugtcp_abi::tcpcb::{tf, tf2};
use plugtcp_tcpkit::rate::DeliveryRate;

use crate::Engine;

/// What the engine keeps for a rate-based CC (boxed: most connections have none).
#[derive(Default)]
pub(crate) struct RateState {
    pub(crate) est: DeliveryRate,
    /// What the module last set (bytes/s, bytes).
    pub(crate) pacing_rate: u64,
    pub(crate) quantum: u32,
    /// The ACK being processed: its RTT sample and the pipe before it.
    ack_rtt_us: u32,
    prior_in_flight: u32,
    /// The smallest RTT seen (us; 0: none): shorter sample intervals are not rates.
    min_rtt_us: u32,
}

impl Engine {
    /// The `cong_control` in force: the block's own, else the CC module's if rate-based.
    /// Read once per ACK and per output call (the host may switch the module between).
    pub(crate) fn refresh_rate_hook(&mut self, cx: &StackCtx) -> Option<CongControlFn> {
        let hook = self.own_rate_hook.or_else(|| cx.host.cc_cong_control());
        if hook.map(|h| h as usize) != self.rate_hook.map(|h| h as usize) {
            // Another module: what the last one set says nothing of what this one will; a
            // rate-based one attached mid-connection gets its INIT call before its first
            // sample (see `init_if_due`).
            if let Some(r) = self.rate.as_deref_mut() {
                r.pacing_rate = 0;
                r.quantum = 0;
            }
            self.rate_init_due = hook.is_some() && self.cc_inited;
        }
        self.rate_hook = hook;
        if hook.is_some() && self.rate.is_none() {
            self.rate = Some(Box::default());
        }
        hook
    }

    /// A rate-based module the host attached to the running connection (TCP_CONGESTION)
    /// starts with its INIT call, as one attached at the handshake does.
    pub(crate) fn init_if_due(&mut self, cx: &mut StackCtx) {
        if std::mem::take(&mut self.rate_init_due) {
            on_conn_init(self, cx);
        }
    }

    /// Whether a rate-based CC owns cwnd (the engine's recovery rules stand aside).
    pub(crate) fn rate_based(&self) -> bool {
        self.rate_hook.is_some()
    }
}

/// Data `[start, end)` went out at `now` (a retransmission when `retrans`).
pub(crate) fn on_send(
    eng: &mut Engine,
    start: u32,
    end: u32,
    now: u64,
    in_flight: u32,
    retrans: bool,
) {
    if eng.rate_hook.is_none() {
        return;
    }
    if let Some(r) = eng.rate.as_deref_mut() {
        r.est.on_send(start, end, now, in_flight, retrans);
        if retrans && !eng.probing {
            // Data sent again was given up on (loss recovery, a timeout): lost, as
            // Linux's tcp_rate counts lost_out.
            r.est.mark_lost(end.wrapping_sub(start));
        }
    }
}

/// An acceptable ACK arrives (before the engine acts on it): what it delivers.
pub(crate) fn on_ack_begin(eng: &mut Engine, cx: &mut StackCtx, seg: &SegIn<'_>, now: u64) {
    if eng.refresh_rate_hook(cx).is_none() {
        return;
    }
    eng.init_if_due(cx);
    let pipe = crate::compute_pipe(eng, &cx.tp);
    let tp = &cx.tp;
    let sacks = if tp.t_flags & tf::SACK_PERMIT != 0 {
        seg.opts.sack_blocks()
    } else {
        &[]
    };
    let ece = seg.flags & th::ECE != 0 && tp.t_flags2 & tf2::ECN_PERMIT != 0;
    if let Some(r) = eng.rate.as_deref_mut() {
        r.prior_in_flight = pipe;
        r.ack_rtt_us = 0;
        r.est.on_ack(seg.ack, sacks, now, ece);
    }
}

/// The ACK gave an RTT sample (us).
pub(crate) fn on_rtt(eng: &mut Engine, rtt_us: u32) {
    if let Some(r) = eng.rate.as_deref_mut() {
        r.ack_rtt_us = rtt_us;
        if rtt_us > 0 && (r.min_rtt_us == 0 || rtt_us < r.min_rtt_us) {
            r.min_rtt_us = rtt_us;
        }
    }
}

/// The ACK is processed: the module gets its sample and sets cwnd and pacing.
pub(crate) fn on_ack_end(eng: &mut Engine, cx: &mut StackCtx) {
    let Some(hook) = eng.rate_hook else {
        rack_pacing(eng, cx);
        return;
    };
    let in_flight = crate::compute_pipe(eng, &cx.tp);
    let now = cx.host.now();
    let Some(r) = eng.rate.as_deref_mut() else {
        return;
    };
    let Some(rs) = r.est.sample(
        now,
        r.min_rtt_us,
        r.ack_rtt_us,
        r.prior_in_flight,
        in_flight,
    ) else {
        return;
    };
    call(eng, cx, hook, &rs);
}

/// The CC was initialised (handshake done): a rate-based module sets its first pacing.
pub(crate) fn on_conn_init(eng: &mut Engine, cx: &mut StackCtx) {
    let Some(hook) = eng.refresh_rate_hook(cx) else {
        return;
    };
    eng.rate_init_due = false;
    let flight = cx.tp.flight_size();
    let rs = RateSample {
        now_ns: cx.host.now(),
        flags: rs_flags::INIT,
        prior_in_flight: flight,
        in_flight: flight,
        ..RateSample::default()
    };
    call(eng, cx, hook, &rs);
}

/// A retransmission timeout (after the module's `cong_signal(CC_RTO)`): everything in
/// flight is lost.
pub(crate) fn on_rto(eng: &mut Engine, cx: &mut StackCtx) {
    let Some(hook) = eng.refresh_rate_hook(cx) else {
        return;
    };
    let flight = cx.tp.flight_size();
    let now = cx.host.now();
    let Some(r) = eng.rate.as_deref_mut() else {
        return;
    };
    r.est.clear_runs();
    let rs = RateSample {
        now_ns: now,
        flags: rs_flags::RTO,
        prior_in_flight: flight,
        in_flight: 0,
        tot_delivered: r.est.delivered(),
        tot_lost: r.est.lost(),
        ..RateSample::default()
    };
    call(eng, cx, hook, &rs);
}

/// Nothing (more) to send with room in cwnd: the application limits the rate.
pub(crate) fn check_app_limited(eng: &mut Engine, cx: &StackCtx, unsent: u32) {
    if eng.rate_hook.is_none() {
        return;
    }
    let tp = &cx.tp;
    let pipe = crate::compute_pipe(eng, tp);
    if unsent < tp.maxseg() && pipe < tp.snd_cwnd && !tp.in_fastrecovery() {
        if let Some(r) = eng.rate.as_deref_mut() {
            r.est.on_app_limited(pipe);
        }
    }
}

fn call(eng: &mut Engine, cx: &mut StackCtx, hook: CongControlFn, rs: &RateSample) {
    let Some(r) = eng.rate.as_deref_mut() else {
        return;
    };
    let mut pacing = CcPacing {
        pacing_rate: r.pacing_rate,
        send_quantum: r.quantum,
        max_pacing_rate: cx.host.pacing().max_rate,
    };
    cx.cc.cong_control(hook, &mut cx.tp, rs, &mut pacing);
    r.pacing_rate = pacing.pacing_rate;
    r.quantum = pacing.send_quantum;
    // Set every time (two stores in the host): whatever else touched the pacer since (a
    // module switch on the host side) is overridden by the model in force.
    cx.host.pacing_set(pacing.pacing_rate, pacing.send_quantum);
}

/// How much the next burst may carry under the host's pacing: `None` to wait (the host
/// calls `output` again when the time comes), else the quantum (u32::MAX: not paced).
pub(crate) fn burst_budget(cx: &StackCtx) -> Option<u32> {
    let p = cx.host.pacing();
    if p.rate == 0 {
        Some(u32::MAX)
    } else if p.wait_ns > 0 {
        None
    } else {
        Some(p.quantum.max(1))
    }
}

/// FreeBSD rack's pacing (`net.inet.tcp.rack.use_pacing`), for a connection whose CC is
/// window-based: a percentage of cwnd/srtt (250 in slow start, 200 otherwise), bursts of
/// `pace_max_seg` segments, an absolute cap.
pub(crate) fn rack_pacing(eng: &mut Engine, cx: &mut StackCtx) {
    use crate::rack_param::*;
    if eng.rack.is_none() {
        return;
    }
    let on = cx.host.stack_param(USE_PACING, 0) != 0;
    let state = eng.rack_pacing.get_or_insert((0, 0));
    if !on {
        if *state != (0, 0) {
            *state = (0, 0);
            cx.host.pacing_set(0, 0);
        }
        return;
    }
    let tp = &cx.tp;
    let srtt_us = tp.t_srtt.max(1) as u64;
    let pct = if tp.in_recovery() {
        cx.host.stack_param(GP_PER_REC, 200)
    } else if tp.snd_cwnd < tp.snd_ssthresh {
        cx.host.stack_param(GP_PER_SS, 250)
    } else {
        cx.host.stack_param(GP_PER_CA, 200)
    }
    .max(1) as u64;
    // cwnd per srtt in payload bytes/s, to IP packets (headers included).
    let mss = tp.maxseg().max(1) as u64;
    let wire = mss + 40 + if crate::output::ts_on(tp) { 12 } else { 0 };
    let bw = tp.snd_cwnd as u64 * 1_000_000 / srtt_us * wire / mss;
    let mut rate = bw.saturating_mul(pct) / 100;
    let cap = cx.host.stack_param(RATE_CAP, 0);
    if cap > 0 {
        rate = rate.min(cap as u64);
    }
    let quantum =
        (cx.host.stack_param(PACE_MAX_SEG, 40).max(1) as u64 * mss).min(u32::MAX as u64) as u32;
    if *state != (rate, quantum) {
        *state = (rate, quantum);
        cx.host.pacing_set(rate, quantum);
    }
}
