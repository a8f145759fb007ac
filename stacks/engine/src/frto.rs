//! F-RTO (RFC 5682, the basic algorithm): telling a spurious retransmission timeout from
//! a genuine one on a connection without timestamps (with them, the echoed timestamp
//! tells at once: FreeBSD's badrxtwin in `input.rs`).
//!
//! After the first timeout of an episode the first unacknowledged segment goes again as
//! usual. If the first ACK then acknowledges it but not everything sent before the
//! timeout, new data goes instead of more retransmissions (up to two segments). If the
//! next ACK acknowledges data too, it can only be for segments sent before the timeout:
//! the timeout was spurious, cwnd and ssthresh come back and the CC hears CC_RTO_ERR. A
//! duplicate ACK says the timeout was genuine: go-back-N with at most three segments.

use plugtcp_abi::seq::{seq_geq, seq_gt};
use plugtcp_abi::stack::StackCtx;

use crate::output::{self, data_start, ts_on};
use crate::Engine;

/// Where F-RTO stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Frto {
    /// The timeout's retransmission is out; `recover` is snd_max at the timeout.
    AwaitFirstAck { recover: u32 },
    /// New data went instead of retransmissions; the next ACK decides.
    AwaitSecondAck { cwnd_before: u32 },
}

/// A retransmission timeout: F-RTO starts at the first of an episode, outside fast
/// recovery, without timestamps (RFC 5682 2: not while recovering from loss).
pub(crate) fn on_rto(eng: &mut Engine, cx: &StackCtx, was_recovering: bool) {
    let tp = &cx.tp;
    eng.frto = (tp.t_rxtshift == 1
        && tp.t_state.have_established()
        && !was_recovering
        && !ts_on(tp)
        && eng.prev_rto.is_some())
    .then_some(Frto::AwaitFirstAck {
        recover: tp.snd_max,
    });
}

/// An ACK while F-RTO runs, before the engine processes it (`advances`: it acknowledges
/// new data; else it is a duplicate). Decides step 3.
pub(crate) fn before_ack(eng: &mut Engine, cx: &mut StackCtx, ack: u32, dupack: bool) {
    let Some(Frto::AwaitSecondAck { cwnd_before }) = eng.frto else {
        return;
    };
    if seq_gt(ack, cx.tp.snd_una) {
        // 3a: data sent before the timeout is acknowledged: it was never lost.
        eng.frto = None;
        crate::undo_rto(eng, cx);
    } else if dupack {
        // 3b: the timeout was genuine: slow start from snd_una, at most 3 segments.
        eng.frto = None;
        eng.prev_rto = None;
        let mss = output::max_payload(&cx.tp);
        let tp = &mut cx.tp;
        tp.snd_cwnd = cwnd_before.min(3 * mss).max(mss);
        tp.snd_nxt = tp.snd_una;
    }
}

/// After the engine processed an ACK of new data in step 2: acknowledged only part of
/// what was sent before the timeout, so up to two new segments go instead of
/// retransmissions (2b); otherwise, or when nothing new can go, the conventional recovery
/// continues (2a).
pub(crate) fn after_new_ack(eng: &mut Engine, cx: &mut StackCtx) {
    let Some(Frto::AwaitFirstAck { recover }) = eng.frto else {
        return;
    };
    let tp = &cx.tp;
    let mss = output::max_payload(tp);
    let data_end = data_start(tp).wrapping_add(cx.host.snd_len());
    let window_end = tp.snd_una.wrapping_add(tp.snd_wnd);
    let can_send_new = seq_gt(data_end, tp.snd_max) && seq_gt(window_end, tp.snd_max);
    if seq_geq(tp.snd_una, recover) || !can_send_new {
        eng.frto = None;
        return;
    }
    let tp = &mut cx.tp;
    let cwnd_before = tp.snd_cwnd;
    tp.snd_nxt = tp.snd_max;
    // Room for two new segments beside what is in flight.
    tp.snd_cwnd = tp.snd_max.wrapping_sub(tp.snd_una).saturating_add(2 * mss);
    eng.frto = Some(Frto::AwaitSecondAck { cwnd_before });
}

/// A duplicate ACK in step 2 (2a): conventional recovery.
pub(crate) fn on_dupack(eng: &mut Engine) {
    if matches!(eng.frto, Some(Frto::AwaitFirstAck { .. })) {
        eng.frto = None;
    }
}
