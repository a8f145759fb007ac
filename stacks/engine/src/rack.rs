//! RACK-TLP mode (RFC 8985; FreeBSD's rack stack): the engine's glue to the framework's
//! [`RackTlp`] send map. Losses are found by time, not by counting duplicate ACKs; recovery is
//! paced by PRR (always on); a tail loss probe replaces the RTO for a lost tail. Timers:
//! `tt::PRIV0` is RACK's reordering timer, `tt::PRIV0 + 1` the probe timeout (PTO).

use plugtcp_abi::cc::CC_NDUPACK;
use plugtcp_abi::segment::{th, to, SegIn};
use plugtcp_abi::stack::{tt, InitMode, StackCtx};
use plugtcp_abi::tcpcb::tf;
use plugtcp_tcpkit::rack::{RackConfig, RackTlp, TlpAction};

use crate::output::{self, data_start, send_seg};
use crate::{ctr, Engine};

/// RACK's reordering timer.
pub(crate) const TT_RACK: u32 = tt::PRIV0;
/// The tail loss probe timer.
pub(crate) const TT_TLP: u32 = tt::PRIV0 + 1;

fn now_us(cx: &StackCtx) -> u64 {
    cx.host.now() / 1_000
}

/// The send map for a connection starting on (or switched to) a RACK block.
pub(crate) fn new_map(cx: &StackCtx, mode: InitMode) -> RackTlp {
    let t = cx.tun();
    let cfg = RackConfig {
        reorder_thresh: t.rack_reorder_thresh.min(31),
        tlp_enabled: t.rack_tlp_limit > 0,
        tlp_limit: t.rack_tlp_limit.min(u8::MAX as u32) as u8,
        tlp_min_us: t.rack_tlpminto as u64,
        // FreeBSD's rack allows for the peer's delayed ACK with its own delayed-ACK time
        // (40 ms), not RFC 8985's conservative 200 ms.
        wc_del_ack_us: t.delacktime as u64 * 1_000,
        ..RackConfig::default()
    };
    let tp = &cx.tp;
    if mode == InitMode::Switch && tp.t_state.have_established() && tp.snd_una != tp.snd_max {
        // Switched in with data in flight: it counts as sent now, of unknown age.
        let mut m = RackTlp::from_outstanding(cfg, tp.snd_una, tp.snd_max, now_us(cx));
        if tp.t_srtt > 0 {
            m.set_srtt(tp.t_srtt as u64);
        }
        m
    } else {
        RackTlp::new(cfg)
    }
}

/// A segment went out.
pub(crate) fn on_transmit(eng: &mut Engine, now_ns: u64, seq: u32, len: u32, retransmit: bool) {
    if let Some(r) = eng.rack.as_mut() {
        if len > 0 {
            r.on_transmit(seq, seq.wrapping_add(len), now_ns / 1_000, retransmit);
        }
    }
}

/// An acceptable ACK (RFC 8985 6.2): update the map, find losses by time, enter recovery or
/// pace it with PRR, and arm the reordering timer. Runs before the engine's own ACK
/// processing, which then advances snd_una, grows cwnd and leaves recovery.
pub(crate) fn on_ack(eng: &mut Engine, cx: &mut StackCtx, seg: &SegIn<'_>) {
    let Some(r) = eng.rack.as_mut() else { return };
    let now = now_us(cx);
    let sacks = if seg.opts.has(to::SACK) {
        seg.opts.sack_blocks()
    } else {
        &[]
    };
    let out = r.on_ack(seg.ack, sacks, now);
    if eng.rtt.srtt() > 0 {
        r.set_srtt(eng.rtt.srtt() as u64);
    }
    if out.tlp_loss_repaired && !cx.tp.in_recovery() {
        // RFC 8985 7.4: the probe repaired a real loss; respond as to a fast recovery.
        cx.cc.on_cong_signal(&mut cx.tp, CC_NDUPACK);
        let pipe = crate::compute_pipe(eng, &cx.tp);
        cx.cc.on_post_recovery(&mut cx.tp, seg.ack, pipe);
    }
    if out.dsack {
        cx.count(ctr::RACK_DSACK, 1);
    }
    detect_loss(eng, cx, out.delivered_bytes);
}

/// RACK's loss detection (on an ACK or the reordering timer): newly lost data starts
/// recovery; in recovery, PRR paces what goes out by what was delivered.
pub(crate) fn detect_loss(eng: &mut Engine, cx: &mut StackCtx, delivered: u32) {
    let Some(r) = eng.rack.as_mut() else { return };
    let loss = r.detect_loss(now_us(cx));
    match loss.reo_timer_us {
        Some(us) => {
            let pktdelay_us = cx.tun().rack_pktdelay as u64 * 1_000;
            cx.host.timer_start(TT_RACK, (us + pktdelay_us) * 1_000);
        }
        None => cx.host.timer_stop(TT_RACK),
    }
    if loss.newly_lost_bytes > 0 {
        cx.count(ctr::RACK_LOST, 1);
        if !cx.tp.in_fastrecovery() {
            enter_recovery(eng, cx);
            return;
        }
    }
    if cx.tp.in_fastrecovery() {
        crate::input::prr_apply(eng, cx, delivered);
    }
}

/// Fast recovery on RACK's word: the CC's reduction, then PRR from the flight of now.
fn enter_recovery(eng: &mut Engine, cx: &mut StackCtx) {
    cx.cc.on_cong_signal(&mut cx.tp, CC_NDUPACK);
    eng.rtt_timer.invalidate();
    cx.count(ctr::SACK_RECOVERY, 1);
    cx.tp.t_sack_recovery_episode += 1;
    cx.host.timer_stop(TT_TLP);
    let tp = &mut cx.tp;
    tp.snd_cwnd = tp.snd_ssthresh;
    eng.prr_delivered = 0;
    eng.prr_out = 0;
    eng.recover_fs = tp.snd_max.wrapping_sub(tp.snd_una);
    // The first lost segment goes at once (as RFC 6675's fast retransmit).
    if let Some((s, e)) = eng.rack.as_deref().and_then(RackTlp::next_to_retransmit) {
        retransmit_range(eng, cx, s, e);
    }
    crate::input::prr_apply(eng, cx, 0);
}

/// Sends (the first segment of) `[s, e)` again.
pub(crate) fn retransmit_range(eng: &mut Engine, cx: &mut StackCtx, s: u32, e: u32) -> bool {
    let tp = &cx.tp;
    let data_end = data_start(tp).wrapping_add(cx.host.snd_len());
    let len = e
        .wrapping_sub(s)
        .min(output::max_payload(tp))
        .min(data_end.wrapping_sub(s));
    let fin =
        output::fin_wanted(tp) && tp.t_flags & tf::SENTFIN != 0 && s.wrapping_add(len) == data_end;
    if len == 0 && !fin {
        return false;
    }
    send_seg(eng, cx, s, if fin { th::FIN } else { 0 }, len);
    true
}

/// Pipe for PRR and for what output may send in recovery.
pub(crate) fn pipe(eng: &Engine, cx: &StackCtx) -> Option<u32> {
    eng.rack
        .as_ref()
        .map(|r| r.pipe(cx.tp.snd_una, cx.tp.snd_max))
}

/// The next lost range to resend, in recovery.
pub(crate) fn next_to_retransmit(eng: &Engine) -> Option<(u32, u32)> {
    eng.rack.as_deref().and_then(RackTlp::next_to_retransmit)
}

/// (Re)arms the probe timeout when data is outstanding outside recovery (RFC 8985 7.2);
/// called after new data goes out and when an ACK advances snd_una.
pub(crate) fn arm_tlp(eng: &mut Engine, cx: &mut StackCtx) {
    let Some(r) = eng.rack.as_ref() else { return };
    let tp = &cx.tp;
    // Not into a closed window: that is the persist timer's business.
    if !tp.t_state.have_established()
        || tp.snd_una == tp.snd_max
        || tp.in_recovery()
        || tp.snd_wnd == 0
        || !r.tlp_armable()
    {
        cx.host.timer_stop(TT_TLP);
        return;
    }
    let now = now_us(cx);
    let rto_left = cx
        .host
        .timer_remaining(tt::REXMT)
        .map_or(eng.rxt_ns(tp) / 1_000, |ns| ns / 1_000);
    let mss = output::max_payload(tp).max(1);
    let flight_segs = tp.flight_size().div_ceil(mss);
    let srtt = (eng.rtt.srtt() > 0).then_some(eng.rtt.srtt() as u64);
    let pto = r.pto_us(srtt, now + rto_left, flight_segs, now);
    // RFC 8985 7.2 caps the PTO at the RTO; the probe must then come first (it re-arms
    // the RTO), so it fires just before.
    let pto = pto.min(rto_left.saturating_sub(1)).max(1);
    cx.host.timer_start(TT_TLP, pto * 1_000);
}

/// The probe timeout fired (RFC 8985 7.3): a new segment if there is one and the peer's
/// window takes it, else the last segment sent again; then the RTO is armed.
pub(crate) fn tlp_fire(eng: &mut Engine, cx: &mut StackCtx) {
    let tp = &cx.tp;
    if !tp.t_state.have_established() || tp.snd_una == tp.snd_max || tp.in_recovery() {
        return;
    }
    let mss = output::max_payload(tp);
    let data_end = data_start(tp).wrapping_add(cx.host.snd_len());
    let unsent = data_end.wrapping_sub(tp.snd_max);
    let wnd_left = tp.snd_una.wrapping_add(tp.snd_wnd).wrapping_sub(tp.snd_max);
    let have_new = (unsent as i32) > 0 && (wnd_left as i32) >= mss.min(unsent) as i32;
    let Some(r) = eng.rack.as_mut() else { return };
    let bytes_before = cx.tp.t_snd_bytes + cx.tp.t_rexmit_bytes;
    let sent = match r.on_pto(have_new) {
        TlpAction::SendNew => {
            let (seq, len) = (cx.tp.snd_max, unsent.min(mss));
            let fin = output::fin_wanted(&cx.tp) && seq.wrapping_add(len) == data_end;
            send_seg(eng, cx, seq, if fin { th::FIN } else { 0 }, len);
            true
        }
        TlpAction::Retransmit(s, e) => {
            // RFC 8985 7.3: the last segment sent, not the whole burst it went out in.
            let rem = e.wrapping_sub(s) % mss.max(1);
            let last = e.wrapping_sub(if rem == 0 { mss } else { rem });
            let s = if plugtcp_abi::seq::seq_gt(last, s) {
                last
            } else {
                s
            };
            // A probe, not a repair: the delivery-rate state does not count it lost.
            eng.probing = true;
            let sent = retransmit_range(eng, cx, s, e);
            eng.probing = false;
            sent
        }
        TlpAction::None => false,
    };
    if sent {
        cx.count(ctr::TLP_PROBES, 1);
        cx.tp.t_sndtlppack += 1;
        cx.tp.t_sndtlpbyte += cx.tp.t_snd_bytes + cx.tp.t_rexmit_bytes - bytes_before;
    }
    cx.host.timer_start(tt::REXMT, eng.rxt_ns(&cx.tp));
}

/// The reordering timer fired: look for losses again.
pub(crate) fn reorder_fire(eng: &mut Engine, cx: &mut StackCtx) {
    detect_loss(eng, cx, 0);
    output::tcp_output(eng, cx);
}

/// An RTO: the engine resends from snd_una (go-back-N), so everything outstanding is lost.
pub(crate) fn on_rto(eng: &mut Engine, cx: &mut StackCtx) {
    if let Some(r) = eng.rack.as_mut() {
        r.mark_all_lost();
        cx.host.timer_stop(TT_RACK);
        cx.host.timer_stop(TT_TLP);
    }
}
