//! Timer expiry (FreeBSD tcp_timer.c): retransmit, delayed ACK, persist, keepalive, 2MSL.

use plugtcp_abi::cc::CC_RTO;
use plugtcp_abi::stack::{tt, StackCtx};
use plugtcp_abi::tcpcb::{tf, tf2};
use plugtcp_abi::{Errno, TcpState};
use plugtcp_tcpkit::rtt::TCP_TOTBACKOFF;

use crate::input::{keepalive_on, keepidle_ns};
use crate::output;
use crate::{ctr, tcp_close, tcp_drop, Engine, TCP_MAXRXTSHIFT};

/// FreeBSD TCPTV_PERSMAX.
const TCPTV_PERSMAX_NS: u64 = 60_000_000_000;

pub(crate) fn fire(eng: &mut Engine, cx: &mut StackCtx, which: u32) {
    match which {
        tt::REXMT => rexmt(eng, cx),
        tt::DELACK => {
            cx.tp.t_flags |= tf::ACKNOW;
            output::tcp_output(eng, cx);
        }
        tt::PERSIST => persist(eng, cx),
        tt::KEEP => keep(eng, cx),
        crate::rack::TT_RACK => crate::rack::reorder_fire(eng, cx),
        crate::rack::TT_TLP => crate::rack::tlp_fire(eng, cx),
        crate::output::TT_CORK => cork_fire(eng, cx),
        tt::TWO_MSL => match cx.tp.t_state {
            TcpState::TimeWait => tcp_close(cx),
            // FreeBSD tcp_timer_2msl: a fast-recycled or TCP_LINGER2 FIN_WAIT_2 goes now;
            // otherwise only after TP_MAXIDLE without a word from the peer.
            TcpState::FinWait2 => {
                let idle_ms = cx.host.now().saturating_sub(cx.tp.t_rcvtime) / 1_000_000;
                if cx.tun().fast_finwait2_recycle != 0
                    || eng.linger2 != 0
                    || idle_ms > crate::input::maxidle_ms(cx)
                {
                    tcp_close(cx);
                } else {
                    let intvl = crate::input::keepintvl_ms(cx) * 1_000_000;
                    cx.host.timer_start(tt::TWO_MSL, intvl);
                }
            }
            _ => {}
        },
        _ => {}
    }
}

/// PMTU blackhole detection (FreeBSD tcp_timer_rexmt, `pmtud_blackhole_detection`): a
/// path that drops big packets without an ICMP error looks like one where full-sized
/// segments time out. At the 2nd and 4th timeout of a full-sized segment the MSS drops to
/// `pmtud_blackhole_mss` (`v6pmtud_blackhole_mss`), then to `mssdflt` (`v6mssdflt`),
/// each stage with two chances; from the 6th the old MSS comes back (it was no blackhole).
fn pmtud_blackhole(cx: &mut StackCtx) {
    let t = cx.tun();
    let v6 = cx.tp.t_flags2 & tf2::INET6 != 0;
    let on = match t.pmtud_blackhole_detection {
        1 => true,
        2 => !v6,
        3 => v6,
        _ => false,
    };
    let (probe_mss, dflt_mss) = if v6 {
        (t.v6pmtud_blackhole_mss, t.v6mssdflt)
    } else {
        (t.pmtud_blackhole_mss, t.mssdflt)
    };
    let minmss = t.minmss;
    let tp = &mut cx.tp;
    if !on || !matches!(tp.t_state, TcpState::Established | TcpState::FinWait1) {
        return;
    }
    let shift = tp.t_rxtshift;
    let changed = if tp.t_flags2 & tf2::PLPMTU_MAXSEGSNT != 0
        && (2..6).contains(&shift)
        && shift.is_multiple_of(2)
    {
        if tp.t_flags2 & tf2::PLPMTU_BLACKHOLE == 0 {
            tp.t_flags2 |= tf2::PLPMTU_BLACKHOLE;
            tp.t_pmtud_saved_maxseg = tp.t_maxseg;
        }
        let target = if tp.t_maxseg > probe_mss {
            probe_mss
        } else {
            dflt_mss
        };
        let target = target.max(minmss);
        let lowered = target < tp.t_maxseg;
        tp.t_maxseg = tp.t_maxseg.min(target);
        lowered
    } else if tp.t_flags2 & tf2::PLPMTU_BLACKHOLE != 0 && shift >= 6 {
        tp.t_flags2 &= !tf2::PLPMTU_BLACKHOLE;
        tp.t_maxseg = tp.t_pmtud_saved_maxseg.max(tp.t_maxseg);
        true
    } else {
        false
    };
    if changed {
        cx.count(ctr::PMTUD_BLACKHOLE, 1);
        // The slow-start numbers depend on the MSS (FreeBSD calls cc conn_init).
        let iw = cx.tun().initcwnd_segments;
        cx.cc.on_conn_init(&mut cx.tp, iw);
    }
}

/// Retransmission timeout (RFC 6298 5.4-5.7): back off, collapse cwnd through the CC, and
/// resend from snd_una.
fn rexmt(eng: &mut Engine, cx: &mut StackCtx) {
    if matches!(
        cx.tp.t_state,
        TcpState::Closed | TcpState::Listen | TcpState::TimeWait
    ) {
        return;
    }
    if cx.tp.snd_una == cx.tp.snd_max && cx.tp.t_state.have_established() {
        return;
    }
    cx.tp.t_rxtshift += 1;
    let syn_limit =
        cx.tp.t_state == TcpState::SynSent && eng.syncnt > 0 && cx.tp.t_rxtshift > eng.syncnt;
    if cx.tp.t_rxtshift > TCP_MAXRXTSHIFT || syn_limit {
        tcp_drop(cx, Errno::ETIMEDOUT);
        return;
    }
    // TCP_USER_TIMEOUT (Linux): how long transmitted data may stay unacknowledged, counted
    // from its first transmission, whatever else the peer sends meanwhile.
    if user_timeout_ns(cx).is_some_and(|ut| cx.host.now().saturating_sub(eng.una_since) >= ut) {
        tcp_drop(cx, Errno::ETIMEDOUT);
        return;
    }
    cx.count(ctr::RTO, 1);
    cx.tp.t_rexmttimeo += 1;
    pmtud_blackhole(cx);
    if cx.tp.t_rxtshift == 1 && cx.tp.t_state.have_established() {
        crate::save_prev_rto(eng, cx);
    } else {
        eng.prev_rto = None;
    }
    let was_recovering = cx.tp.in_fastrecovery();
    crate::frto::on_rto(eng, cx, was_recovering);
    // (A connection TCP Fast Open opened has its CC running from the SYN-ACK on.)
    if cx.tp.t_state.have_established() || eng.cc_inited {
        cx.cc.on_cong_signal(&mut cx.tp, CC_RTO);
        crate::rate::on_rto(eng, cx);
    } else {
        // FreeBSD: a SYN (or SYN-ACK) timed out, so the connection starts with one segment
        // (cc_conn_init reads snd_cwnd == 1).
        cx.tp.snd_cwnd = 1;
    }
    eng.rtt_timer.invalidate();
    eng.send_times.clear();
    crate::rack::on_rto(eng, cx);
    eng.sack.clear();
    cx.tp.snd_numholes = 0;
    let tp = &mut cx.tp;
    tp.snd_nxt = if matches!(tp.t_state, TcpState::SynSent | TcpState::SynReceived) {
        tp.iss
    } else {
        tp.snd_una
    };
    // FreeBSD tcp_timer_rexmt: no fast recovery for what was sent before the timeout,
    // and a segment goes out whatever the window (a bare ACK into a closed one, which
    // then persists).
    if tp.t_state.have_established() {
        tp.snd_recover = tp.snd_max;
        tp.t_flags |= tf::ACKNOW;
    }
    eng.high_rxt = tp.snd_una;
    eng.publish_rtt(tp);
    output::tcp_output(eng, cx);
    // Linux (tcp_clamp_rto_to_user_timeout): the next timeout comes no later than
    // TCP_USER_TIMEOUT's end, which it then enforces.
    if let Some(ut) = user_timeout_ns(cx) {
        let left = (eng.una_since + ut).saturating_sub(cx.host.now()).max(1);
        if cx.host.timer_remaining(tt::REXMT).is_some_and(|r| r > left) {
            cx.host.timer_start(tt::REXMT, left);
        }
    }
}

/// Zero-window probe (RFC 9293 3.8.6.1): one byte past the window, backing off.
fn persist(eng: &mut Engine, cx: &mut StackCtx) {
    if !cx.tp.t_state.have_established() {
        return;
    }
    // TCP_USER_TIMEOUT also bounds how long data may wait for a zero window to open.
    let probing_since = eng.persist_since;
    if probing_since != 0
        && cx.tp.snd_wnd == 0
        && user_timeout_ns(cx).is_some_and(|ut| cx.host.now().saturating_sub(probing_since) >= ut)
    {
        tcp_drop(cx, Errno::ETIMEDOUT);
        return;
    }
    // FreeBSD tcp_timer_persist: once the user has closed, a persisting connection is
    // given TCPTV_PERSMAX (60 s) of silence.
    if cx.tp.t_state > TcpState::CloseWait
        && cx.host.now().saturating_sub(cx.tp.t_rcvtime) >= TCPTV_PERSMAX_NS
    {
        tcp_drop(cx, Errno::ETIMEDOUT);
        return;
    }
    // FreeBSD tcp_timer_persist: a peer that has said nothing for longer than
    // maxpersistidle (keepidle) or a whole backoff series, with the backoff at its end,
    // is gone.
    let since_rcv = cx.host.now().saturating_sub(cx.tp.t_rcvtime);
    if cx.tp.t_rxtshift >= TCP_MAXRXTSHIFT
        && (since_rcv >= cx.tun().keepidle as u64 * 1_000_000
            || since_rcv >= eng.rtt.rexmtval_us() * TCP_TOTBACKOFF * 1000)
    {
        tcp_drop(cx, Errno::ETIMEDOUT);
        return;
    }
    cx.count(ctr::PERSISTTIMEO, 1);
    cx.tp.t_persisttimeo += 1;
    // The probe is the first unacknowledged byte, the same one each time until the window
    // opens (RFC 9293 3.8.6.1).
    if cx.tp.snd_wnd == 0 {
        cx.tp.snd_nxt = cx.tp.snd_una;
    }
    output::setpersist(eng, cx);
    cx.tp.t_flags |= tf::FORCEDATA;
    output::tcp_output(eng, cx);
    cx.tp.t_flags &= !tf::FORCEDATA;
    if cx.tp.snd_wnd == 0 {
        cx.host.timer_stop(tt::REXMT);
    } else {
        // The window opened: data is out under the retransmit timer.
        cx.host.timer_stop(tt::PERSIST);
        cx.tp.t_rxtshift = 0;
    }
}

/// Connection-establishment timeout, and keepalive probes (tcp_timer_keep).
fn keep(eng: &mut Engine, cx: &mut StackCtx) {
    let tp = &cx.tp;
    if !tp.t_state.have_established() {
        tcp_drop(cx, Errno::ETIMEDOUT);
        return;
    }
    // FreeBSD tcp_timer_keep: through CLOSING (FIN_WAIT_1 and CLOSING too).
    if !keepalive_on(cx) || tp.t_state > TcpState::Closing {
        return;
    }
    let t = cx.tun();
    let now = cx.host.now();
    let idle = now.saturating_sub(tp.t_rcvtime);
    let idle_limit = keepidle_ns(cx);
    let intvl = if tp.t_keepintvl > 0 {
        tp.t_keepintvl
    } else {
        t.keepintvl
    } as u64
        * 1_000_000;
    let cnt = if tp.t_keepcnt > 0 {
        tp.t_keepcnt
    } else {
        t.keepcnt
    };
    if idle < idle_limit {
        cx.host.timer_start(tt::KEEP, idle_limit - idle);
        return;
    }
    // TCP_USER_TIMEOUT overrides keepcnt (Linux): once a probe is out, the connection dies
    // when it has heard nothing for that long.
    let give_up = match user_timeout_ns(cx) {
        Some(ut) => eng.keep_probes > 0 && idle >= ut,
        None => eng.keep_probes >= cnt,
    };
    if give_up {
        tcp_drop(cx, Errno::ETIMEDOUT);
        return;
    }
    // The probe: one byte before snd_una (no data), which the peer must ACK.
    eng.keep_probes += 1;
    cx.count(ctr::KEEPPROBE, 1);
    cx.tp.t_keepprobe += 1;
    // FreeBSD sends it with tcp_respond: a bare ACK, the window truncated to the scale.
    let seq = cx.tp.snd_una.wrapping_sub(1);
    output::respond_ack_at(cx, seq);
    cx.host.timer_start(tt::KEEP, intvl);
}

/// TCP_USER_TIMEOUT in ns, when set.
fn user_timeout_ns(cx: &StackCtx) -> Option<u64> {
    (cx.tp.t_user_timeout > 0).then(|| cx.tp.t_user_timeout as u64 * 1_000_000)
}

/// Linux's cork ceiling: what TCP_CORK held back 200 ms goes out.
fn cork_fire(eng: &mut Engine, cx: &mut StackCtx) {
    if cx.tp.t_flags2 & tf2::CORK != 0 && cx.tp.t_state.have_established() {
        eng.push_now(cx);
    }
}
