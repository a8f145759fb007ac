//! tcp_output: decides what to send next and turns it into segment descriptors for the host.

use plugtcp_abi::cc::ccf;
use plugtcp_abi::segment::{ecn, th, to, SackBlock, SegOut, TcpOpts};
use plugtcp_abi::seq::{seq_geq, seq_gt, seq_lt, seq_max};
use plugtcp_abi::stack::{tt, StackCtx};
use plugtcp_abi::tcpcb::{tf, tf2};
use plugtcp_abi::{TcpState, Tcpcb};
use plugtcp_tcpkit::rtt::TCP_BACKOFF;

use crate::{ctr, Engine, TCP_MAXRXTSHIFT};

/// Largest unscaled window (TCP_MAXWIN).
pub(crate) const TCP_MAXWIN: u32 = 65535;
/// Bytes of the timestamp option as we send it (NOP, NOP, kind 8 len 10).
const TS_OPT_LEN: u32 = 12;
/// The TCP-MD5 signature option with its two NOPs.
const SIG_OPT_LEN: u32 = 20;

/// TCP-MD5 (TCP_MD5SIG): every segment carries the signature, which the host computes.
pub(crate) fn signing(tp: &Tcpcb) -> bool {
    tp.t_flags & tf::SIGNATURE != 0
}

/// Our timestamp clock: milliseconds, as FreeBSD's tcp_ts_getticks() at hz=1000, plus the
/// connection's random offset (RFC 7323 section 5.4).
pub(crate) fn ts_now(cx: &StackCtx) -> u32 {
    ((cx.host.now() / 1_000_000) as u32).wrapping_add(cx.tp.ts_offset)
}

/// Our SYN has not been acknowledged yet, so it occupies sequence space before the data.
pub(crate) fn syn_unacked(tp: &Tcpcb) -> bool {
    matches!(tp.t_state, TcpState::SynSent | TcpState::SynReceived) && tp.snd_una == tp.iss
}

/// Sequence number of the first byte in the send buffer.
pub(crate) fn data_start(tp: &Tcpcb) -> u32 {
    tp.snd_una.wrapping_add(syn_unacked(tp) as u32)
}

/// The user has closed: a FIN follows the last data byte.
pub(crate) fn fin_wanted(tp: &Tcpcb) -> bool {
    matches!(
        tp.t_state,
        TcpState::FinWait1 | TcpState::Closing | TcpState::LastAck
    )
}

/// Timestamps are in use on this connection.
pub(crate) fn ts_on(tp: &Tcpcb) -> bool {
    tp.t_flags & (tf::REQ_TSTMP | tf::RCVD_TSTMP) == tf::REQ_TSTMP | tf::RCVD_TSTMP
}

/// Payload bytes a data segment may carry: t_maxseg less the options every segment carries.
pub(crate) fn max_payload(tp: &Tcpcb) -> u32 {
    let mut opt = if ts_on(tp) { TS_OPT_LEN } else { 0 };
    if signing(tp) {
        opt += SIG_OPT_LEN;
    }
    tp.t_maxseg.saturating_sub(opt).max(1)
}

/// Option space of a TCP header.
const TCP_MAXOLEN_U32: u32 = 40;

/// A TCP Fast Open client's first SYN, or the first SYN-ACK of a connection a TFO SYN
/// opened (FreeBSD: it hands out the server's newest cookie); never a retransmission, which
/// goes without the option and without data.
fn tfo_first_syn(tp: &Tcpcb) -> bool {
    let server = tp.t_state == TcpState::SynReceived && tp.t_tfo_client_cookie_len > 0;
    (tp.t_state == TcpState::SynSent || server)
        && tp.t_flags & tf::FASTOPEN != 0
        && tp.t_flags & tf::NOOPT == 0
        && tp.t_rxtshift == 0
}

/// The bytes the host writes for a SYN's options (its builder's padding rules, FreeBSD
/// tcp_addoptions): what a SYN carrying data must leave room for.
fn syn_options_len(o: &TcpOpts) -> u32 {
    let pad = |n: &mut u32, need: &dyn Fn(u32) -> bool| {
        while need(*n) && *n < TCP_MAXOLEN_U32 {
            *n += 1;
        }
    };
    let mut n = 0u32;
    if o.has(to::MSS) {
        pad(&mut n, &|l| l % 4 != 0);
        n += 4;
    }
    if o.has(to::WSCALE) {
        pad(&mut n, &|l| l == 0 || l % 2 != 1);
        n += 3;
    }
    if o.has(to::SACKPERM) {
        pad(&mut n, &|l| l % 2 != 0);
        n += 2;
    }
    if o.has(to::TSTAMP) {
        pad(&mut n, &|l| l == 0 || l % 4 != 2);
        n += 10;
    }
    if o.has(to::SIGNATURE) {
        pad(&mut n, &|l| l == 0 || l % 4 != 2);
        n += 18;
    }
    if o.has(to::FASTOPEN) {
        n += 2 + u32::from(o.tfo_len);
    }
    n.div_ceil(4) * 4
}

/// Data a TCP Fast Open client's first SYN carries: with a cookie (not with a cookie
/// request), as much of the send buffer as fits in one segment beside the options.
fn tfo_syn_data(cx: &StackCtx) -> u32 {
    let tp = &cx.tp;
    let client = tp.t_state == TcpState::SynSent && tfo_first_syn(tp);
    if !client || tp.t_tfo_client_cookie_len == 0 || cx.host.snd_len() == 0 {
        return 0;
    }
    let mut o = TcpOpts {
        flags: to::MSS | to::FASTOPEN,
        tfo_len: tp.t_tfo_client_cookie_len.min(16),
        ..Default::default()
    };
    if tp.t_flags & tf::REQ_SCALE != 0 {
        o.flags |= to::WSCALE;
    }
    if cx.tun().sack_enable != 0 {
        o.flags |= to::SACKPERM;
    }
    if tp.t_flags & tf::REQ_TSTMP != 0 {
        o.flags |= to::TSTAMP;
    }
    if signing(tp) {
        o.flags |= to::SIGNATURE;
    }
    let optlen = syn_options_len(&o);
    if optlen > TCP_MAXOLEN_U32 {
        return 0; // the option does not fit: no data either
    }
    // The server's MSS from last time, which the host put in t_peer_mss.
    let mss = match tp.t_peer_mss {
        0 => tp.t_maxseg,
        peer => tp.t_maxseg.min(peer),
    };
    cx.host.snd_len().min(mss.saturating_sub(optlen))
}

/// The receive window to advertise, in bytes (never shrinking what we already offered, and
/// avoiding silly-window advertisements: RFC 9293 3.8.6.2.2).
fn rcv_window(eng: &Engine, cx: &StackCtx) -> u32 {
    let tp = &cx.tp;
    let space = cx.host.rcv_space();
    let offered = if seq_gt(tp.rcv_adv, tp.rcv_nxt) {
        tp.rcv_adv.wrapping_sub(tp.rcv_nxt)
    } else {
        0
    };
    let mut win = space;
    // FreeBSD: no window smaller than a segment and a quarter of the buffer.
    if win < tp.t_maxseg && win < cx.host.rcv_hiwat() / 4 {
        win = 0;
    }
    let mut win = win.max(offered).min(TCP_MAXWIN << tp.rcv_scale);
    if eng.window_clamp > 0 {
        win = win.min(eng.window_clamp.max(offered));
    }
    win
}

fn options(eng: &Engine, cx: &StackCtx, flags: u16) -> TcpOpts {
    let tp = &cx.tp;
    let mut o = TcpOpts::default();
    if tp.t_flags & tf::NOOPT != 0 {
        return o;
    }
    if flags & th::SYN != 0 {
        o.flags |= to::MSS;
        let mss = if eng.syn_mss > 0 {
            eng.syn_mss
        } else {
            tp.t_maxseg
        };
        o.mss = mss.min(65535) as u16;
        if tp.t_flags & tf::REQ_SCALE != 0 {
            o.flags |= to::WSCALE;
            o.wscale = tp.request_r_scale;
        }
        if cx.tun().sack_enable != 0
            && (tp.t_state == TcpState::SynSent || tp.t_flags & tf::SACK_PERMIT != 0)
        {
            o.flags |= to::SACKPERM;
        }
        if tp.t_flags & tf::REQ_TSTMP != 0 {
            o.flags |= to::TSTAMP;
            o.tsval = ts_now(cx);
            o.tsecr = if flags & th::ACK != 0 {
                tp.ts_recent
            } else {
                0
            };
        }
        if signing(tp) {
            o.flags |= to::SIGNATURE;
        }
        if tfo_first_syn(tp) {
            // The cookie from the host's cache, or an empty option asking for one; left
            // out when it does not fit (with TCP-MD5), and then no data goes with it.
            let len = usize::from(tp.t_tfo_client_cookie_len).min(16);
            let mut with_fo = o;
            with_fo.flags |= to::FASTOPEN;
            with_fo.tfo_len = len as u8;
            with_fo.tfo_cookie[..len].copy_from_slice(&tp.t_tfo_cookie[..len]);
            if syn_options_len(&with_fo) <= TCP_MAXOLEN_U32 {
                o = with_fo;
            }
        }
        return o;
    }
    let mut room = 4;
    if ts_on(tp) {
        o.flags |= to::TSTAMP;
        o.tsval = ts_now(cx);
        o.tsecr = tp.ts_recent;
        room = 3;
    }
    if signing(tp) {
        // 20 option bytes of 40: with timestamps no SACK block fits, without them two.
        o.flags |= to::SIGNATURE;
        room = if ts_on(tp) { 0 } else { 2 };
    }
    if tp.t_flags & tf::SACK_PERMIT != 0
        && room > 0
        && (eng.dsack.is_some() || !eng.reass.is_empty())
    {
        let mut blocks = [SackBlock::default(); 4];
        // RFC 2883: a duplicate we received goes first, as a D-SACK block.
        let d = usize::from(eng.dsack.is_some());
        if let Some(dsack) = eng.dsack {
            blocks[0] = dsack;
        }
        let n = d + eng.reass.sack_blocks(&mut blocks[d..room]);
        if n > 0 {
            o.flags |= to::SACK;
            o.nsacks = n as u8;
            o.sacks = blocks;
        }
    }
    o
}

/// Sends one segment: `len` data bytes at `seq` (which must lie in the send buffer), with
/// `flags`; does the bookkeeping every transmission needs (snd_nxt/snd_max, the RTT timer,
/// the retransmit timer, delayed-ACK state, statistics).
pub(crate) fn send_seg(eng: &mut Engine, cx: &mut StackCtx, seq: u32, mut flags: u16, len: u32) {
    let now = cx.host.now();
    let win = rcv_window(eng, cx);
    // A zero-window probe runs under the persist timer alone (FreeBSD never arms the
    // retransmit timer in persist; RACK's tail loss probe has nothing to do with it).
    let window_probe = cx.tp.t_flags & tf::FORCEDATA != 0 && cx.tp.snd_wnd == 0;
    if cx.tp.t_state != TcpState::SynSent {
        flags |= th::ACK;
    }
    // FreeBSD: PSH on every segment that reaches the end of the send buffer, new data or a
    // retransmission (RACK's probes and SACK retransmits included).
    // Where the payload sits in sequence space: after the SYN when one goes with it (TCP
    // Fast Open).
    let dseq = seq.wrapping_add((flags & th::SYN != 0) as u32);
    // (FreeBSD: never on a SYN, which carries data only with TCP Fast Open.)
    if len > 0
        && flags & th::SYN == 0
        && dseq.wrapping_add(len) == data_start(&cx.tp).wrapping_add(cx.host.snd_len())
    {
        flags |= th::PUSH;
    }
    if flags & th::SYN != 0 && eng.syn_mss == 0 {
        // FreeBSD offers tcp_mssopt() in every SYN, whatever the peer's MSS did to
        // t_maxseg since (a simultaneous open's SYN-ACK): the first offer stands.
        eng.syn_mss = cx.tp.t_maxseg;
    }
    let opts = options(eng, cx, flags);
    // FreeBSD tcp_output: receive-buffer auto-sizing measures from the first segment sent
    // after a measurement ended (see input.rs autorcvbuf). 0 means unset.
    if eng.rfbuf_ts == 0 && cx.tun().recvbuf_auto != 0 {
        eng.rfbuf_ts = cx.host.now().max(1);
    }
    if opts.has(to::TSTAMP) && cx.tp.t_rxtshift == 1 && eng.prev_rto.is_some() {
        // FreeBSD t_badrxtwin: the retransmission's timestamp, without the offset.
        eng.badrxtwin_ts = Some(opts.tsval.wrapping_sub(cx.tp.ts_offset));
    }
    let (ecn_enable, ecn_maxretries) = (cx.tun().ecn_enable, cx.tun().ecn_maxretries);
    let tp = &mut cx.tp;
    if flags & th::SYN != 0 {
        flags |= syn_ecn_flags(tp, ecn_enable, ecn_maxretries);
    }
    // RFC 9293 3.8.5 (BSD semantics, RFC 6093): while urgent data is unacknowledged, every
    // segment before it carries URG and the offset to the byte after it; once acked, the
    // pointer is dragged along with snd_una.
    let mut urp = 0u16;
    if seq_gt(tp.snd_up, tp.snd_una) && seq_gt(tp.snd_up, seq) && flags & th::SYN == 0 {
        let off = tp.snd_up.wrapping_sub(seq);
        if off <= 0xffff {
            flags |= th::URG;
            urp = off as u16;
        }
    } else if seq_lt(tp.snd_up, tp.snd_una) {
        tp.snd_up = tp.snd_una;
    }
    let wire_win = if flags & th::SYN != 0 {
        win.min(TCP_MAXWIN)
    } else {
        // FreeBSD tcp_output: rounded up to the scale's unit, so that truncation never
        // shrinks the window already offered.
        let unit = 1u32 << tp.rcv_scale;
        (win.div_ceil(unit)).min(TCP_MAXWIN)
    };
    let data_off = if len > 0 {
        dseq.wrapping_sub(data_start(tp))
    } else {
        0
    };
    // RFC 3168: ECT(0) on new data only (6.1.5: never on retransmissions or pure ACKs).
    let ecn_on = tp.t_flags2 & tf2::ECN_PERMIT != 0;
    let ect = ecn_on && len > 0 && !seq_lt(seq, tp.snd_max);
    if ecn_on && flags & th::SYN == 0 {
        if tp.t_flags2 & tf2::ECN_SND_ECE != 0 {
            flags |= th::ECE;
        }
        // CWR once, on the first new data after a reduction (6.1.2).
        if ect && tp.t_flags2 & tf2::ECN_SND_CWR != 0 {
            flags |= th::CWR;
            tp.t_flags2 &= !tf2::ECN_SND_CWR;
        }
    }
    let seg = SegOut {
        seq,
        ack: if flags & th::ACK != 0 { tp.rcv_nxt } else { 0 },
        flags,
        win: wire_win as u16,
        urp,
        ip_ecn: if ect { ecn::ECT0 } else { ecn::NOT_ECT },
        opts,
        data_off,
        data_len: len,
        tso_segsz: if len > max_payload(tp) {
            max_payload(tp)
        } else {
            0
        },
    };
    if cx.host.output(&seg).is_err() {
        // The host could not queue it (no buffer): the retransmit timer recovers, as in
        // FreeBSD when ip_output fails with ENOBUFS.
        if cx.host.timer_remaining(tt::REXMT).is_none() {
            cx.host.timer_start(tt::REXMT, eng.rxt_ns(&cx.tp));
        }
        return;
    }
    let tp = &mut cx.tp;
    let scaled_adv = tp.rcv_nxt.wrapping_add(if flags & th::SYN != 0 {
        wire_win
    } else {
        wire_win << tp.rcv_scale
    });
    if seq_gt(scaled_adv, tp.rcv_adv) {
        tp.rcv_adv = scaled_adv;
    }
    if wire_win == 0 {
        tp.t_flags |= tf::RXWIN0SENT;
        // FreeBSD t_sndzerowin: zero windows this end advertised.
        tp.t_sndzerowin += 1;
    } else {
        tp.t_flags &= !tf::RXWIN0SENT;
    }
    eng.last_ack_sent = tp.rcv_nxt;
    eng.unacked_segs = 0;
    if opts.has(to::SACK) {
        eng.dsack = None;
    }
    if tp.t_flags & tf::DELACK != 0 {
        tp.t_flags &= !tf::DELACK;
        cx.host.timer_stop(tt::DELACK);
    }
    let tp = &mut cx.tp;
    tp.t_flags &= !(tf::ACKNOW | tf::FORCEDATA);
    // PMTU blackhole detection watches whether full-sized segments time out.
    if len > 0 {
        if len >= max_payload(tp) {
            tp.t_flags2 |= tf2::PLPMTU_MAXSEGSNT;
        } else {
            tp.t_flags2 &= !tf2::PLPMTU_MAXSEGSNT;
        }
    }
    tp.t_snd_segs += u64::from(len.div_ceil(max_payload(tp)).max(1));
    tp.t_sndtime = now;

    let seq_len = len + (flags & th::SYN != 0) as u32 + (flags & th::FIN != 0) as u32;
    if seq_len == 0 {
        return;
    }
    if flags & th::FIN != 0 {
        tp.t_flags |= tf::SENTFIN;
    }
    if flags & th::SYN != 0 {
        tp.t_flags |= tf::SENTSYN;
    }
    let end = seq.wrapping_add(seq_len);
    let retransmit = seq_lt(seq, tp.snd_max);
    if tp.snd_una == tp.snd_max {
        // Nothing was outstanding: TCP_USER_TIMEOUT counts from this transmission.
        eng.una_since = now;
    }
    if tp.in_fastrecovery() {
        eng.prr_out = eng.prr_out.saturating_add(len);
    }
    // As FreeBSD's tcps_sndrexmitpack: resent data (and SYNs), not a resent bare FIN.
    if retransmit && (len > 0 || flags & th::SYN != 0) {
        tp.t_sndrexmitpack += 1;
        tp.t_rexmit_bytes += len as u64;
        cx.count(ctr::SNDREXMITPACK, 1);
    } else {
        tp.t_snd_bytes += len as u64;
    }
    crate::rack::on_transmit(eng, now, dseq, len, retransmit);
    let tp = &mut cx.tp;
    if len > 0 {
        let flight = tp.flight_size();
        let seq = dseq;
        let data_end = seq.wrapping_add(len);
        if retransmit {
            let old_end = if seq_lt(tp.snd_max, data_end) {
                tp.snd_max
            } else {
                data_end
            };
            eng.send_times.on_send(seq, old_end, now, flight, true);
            crate::rate::on_send(eng, seq, old_end, now, flight, true);
            if seq_gt(data_end, tp.snd_max) {
                eng.send_times
                    .on_send(tp.snd_max, data_end, now, flight, false);
                crate::rate::on_send(eng, tp.snd_max, data_end, now, flight, false);
            }
        } else {
            eng.send_times.on_send(seq, data_end, now, flight, false);
            crate::rate::on_send(eng, seq, data_end, now, flight, false);
        }
    }
    if seq_gt(end, tp.snd_nxt) {
        tp.snd_nxt = end;
    }
    if seq_gt(end, tp.snd_max) {
        // Time a new segment (Karn: never a retransmitted one).
        if !retransmit && !eng.rtt_timer.is_running() {
            eng.rtt_timer.start(seq, now);
        }
        tp.snd_max = end;
    }
    if window_probe {
        return;
    }
    if cx.host.timer_remaining(tt::REXMT).is_none() {
        cx.host.timer_start(tt::REXMT, eng.rxt_ns(&cx.tp));
        if cx.host.timer_remaining(tt::PERSIST).is_some() {
            // Leaving persist (FreeBSD tcp_output): the backoff was the persist timer's.
            cx.host.timer_stop(tt::PERSIST);
            cx.tp.t_rxtshift = 0;
        }
    }
    if !retransmit && len > 0 {
        crate::rack::arm_tlp(eng, cx);
    }
}

/// ECN negotiation on our SYN (RFC 3168 6.1.1): ECE|CWR when `ecn.enable` is 1, until the
/// SYN has been retransmitted `ecn.maxretries` times (a path that drops ECN SYNs); on a
/// SYN-ACK of a simultaneous open, ECE if the peer's SYN asked for ECN.
fn syn_ecn_flags(tp: &Tcpcb, ecn_enable: u32, maxretries: u32) -> u16 {
    match tp.t_state {
        TcpState::SynSent if ecn_enable == 1 && tp.t_rxtshift <= maxretries => th::ECE | th::CWR,
        TcpState::SynReceived if tp.t_flags2 & tf2::ECN_PERMIT != 0 => th::ECE,
        _ => 0,
    }
}

/// FreeBSD tcp_respond(tp, rcv_nxt, snd_nxt, TH_ACK): a bare ACK outside the output path
/// (challenge ACKs): no FIN, no data, the window truncated to the scale, the timestamp
/// option when the peer sends timestamps; nothing of the connection's state changes.
pub(crate) fn respond_ack(cx: &mut StackCtx) {
    let seq = cx.tp.snd_nxt;
    respond_ack_at(cx, seq);
}

/// [`respond_ack`] at sequence number `seq` (a keepalive probe's snd_una - 1).
pub(crate) fn respond_ack_at(cx: &mut StackCtx, seq: u32) {
    let tp = &cx.tp;
    let max = TCP_MAXWIN << tp.rcv_scale;
    let win = (cx.host.rcv_space().min(max) >> tp.rcv_scale).min(TCP_MAXWIN) as u16;
    let mut opts = TcpOpts::default();
    if tp.t_flags & tf::NOOPT == 0 && tp.t_flags & tf::RCVD_TSTMP != 0 {
        opts.flags |= to::TSTAMP;
        opts.tsval = ts_now(cx);
        opts.tsecr = tp.ts_recent;
    }
    if tp.t_flags & tf::NOOPT == 0 && signing(tp) {
        opts.flags |= to::SIGNATURE;
    }
    let seg = SegOut {
        seq,
        ack: tp.rcv_nxt,
        flags: th::ACK,
        win,
        opts,
        ..Default::default()
    };
    let _ = cx.host.output(&seg);
}

/// Sends a RST (tcp_respond): `seq`, and `ack` when `with_ack`.
pub(crate) fn send_rst(cx: &mut StackCtx, seq: u32, ack: u32, with_ack: bool) {
    let seg = SegOut {
        seq,
        ack: if with_ack { ack } else { 0 },
        flags: th::RST | if with_ack { th::ACK } else { 0 },
        ..Default::default()
    };
    let _ = cx.host.output(&seg);
}

/// A pure ACK right now (challenge ACKs, duplicate ACKs, window updates). Its sequence
/// number is snd_max, the next new byte, not snd_nxt (FreeBSD tcp_output): after a timeout
/// rewinds snd_nxt, an ACK with that older number would lie left of the peer's window and
/// be dropped, and two peers retransmitting at once would each drop the other's ACKs.
/// While probing a zero window it is snd_nxt.
pub(crate) fn send_ack(eng: &mut Engine, cx: &mut StackCtx) {
    // FreeBSD tcp_output: while our FIN is unacknowledged and no data is left to send, what
    // we send carries the FIN again at its own sequence number ("if resending a FIN, be
    // sure not to use a new sequence number").
    let tp = &cx.tp;
    let data_end = data_start(tp).wrapping_add(cx.host.snd_len());
    if fin_wanted(tp)
        && tp.t_flags & tf::SENTFIN != 0
        && tp.snd_nxt == tp.snd_max
        && tp.snd_una != tp.snd_max
        && tp.snd_max.wrapping_sub(1) == data_end
    {
        let seq = tp.snd_max.wrapping_sub(1);
        send_seg(eng, cx, seq, th::FIN, 0);
        return;
    }
    let seq = if cx.host.timer_remaining(tt::PERSIST).is_some() {
        cx.tp.snd_nxt
    } else {
        cx.tp.snd_max
    };
    send_seg(eng, cx, seq, th::ACK, 0);
}

/// tcp_output: sends whatever the windows, the CC and the rules allow, then stops.
pub(crate) fn tcp_output(eng: &mut Engine, cx: &mut StackCtx) {
    // Closed by the application while already in FIN_WAIT_2: its lifetime starts now.
    if cx.tp.t_state == TcpState::FinWait2
        && cx.tp.t_flags & tf::CLOSED != 0
        && cx.host.timer_remaining(tt::TWO_MSL).is_none()
    {
        crate::input::finwait2_timer(eng, cx);
    }
    match cx.tp.t_state {
        TcpState::Closed | TcpState::Listen => return,
        TcpState::TimeWait => {
            if cx.tp.t_flags & tf::ACKNOW != 0 {
                send_ack(eng, cx);
            }
            return;
        }
        TcpState::SynSent | TcpState::SynReceived => {
            // A connection opened by a TCP Fast Open SYN may send data before the
            // handshake completes (RFC 7413 4.2.2), after its first SYN-ACK.
            let tfo_server =
                cx.tp.t_state == TcpState::SynReceived && cx.tp.t_flags & tf::FASTOPEN != 0;
            // (Re)send our SYN (a SYN-ACK in a simultaneous open) when snd_nxt is at it.
            if cx.tp.snd_nxt == cx.tp.iss {
                let flags = if cx.tp.t_state == TcpState::SynSent {
                    th::SYN
                } else {
                    th::SYN | th::ACK
                };
                if tfo_server && !eng.cc_inited {
                    // FreeBSD runs cc_conn_init here for TFO: data may follow at once.
                    let iw = cx.tun().initcwnd_segments;
                    cx.cc.ccv.flags |= ccf::HYSTART_ALLOWED | ccf::HYSTART_CONS_SSTH;
                    cx.cc.on_conn_init(&mut cx.tp, iw);
                    eng.cc_inited = true;
                    crate::rate::on_conn_init(eng, cx);
                }
                let iss = cx.tp.iss;
                let len = tfo_syn_data(cx);
                send_seg(eng, cx, iss, flags, len);
                if cx.host.timer_remaining(tt::KEEP).is_none() {
                    cx.host.timer_start(tt::KEEP, keepinit_ns(cx));
                }
                if !(tfo_server && cx.tp.t_rxtshift == 0) {
                    return;
                }
            } else if !tfo_server {
                if cx.tp.t_flags & tf::ACKNOW != 0 && cx.tp.t_state == TcpState::SynReceived {
                    send_ack(eng, cx);
                }
                return;
            }
        }
        _ => {}
    }
    autosndbuf(cx);
    // FreeBSD tcp_output: after an idle period of at least one RTO the old cwnd no longer
    // describes the path; the CC restarts from its restart window (cc_after_idle).
    let idle_ns = cx.host.now().saturating_sub(cx.tp.t_rcvtime);
    if cx.tp.snd_max == cx.tp.snd_una
        && cx.tp.t_state.have_established()
        && cx.host.snd_len() > 0
        && idle_ns >= cx.tp.t_rxtcur as u64 * 1_000
    {
        cx.cc.after_idle(&mut cx.tp);
    }
    // FreeBSD decides "idle" (nothing in flight) once per tcp_output call: the tail of a
    // write larger than a segment still goes out with its head (Nagle waits only when
    // data was in flight before the call).
    // The unacknowledged SYN of a connection TCP Fast Open opened is no small segment in
    // flight: Nagle does not hold the answer to the SYN's request for the handshake's end.
    let idle = cx.tp.snd_max == data_start(&cx.tp);
    if eng.refresh_rate_hook(cx).is_some() {
        eng.init_if_due(cx);
    }
    // Each pass sends at most one segment; the bound only guards against a logic error
    // turning into an endless loop.
    for _ in 0..100_000 {
        if !output_one(eng, cx, idle) {
            break;
        }
    }
    if eng.rate_based() {
        let tp = &cx.tp;
        let data_end = data_start(tp).wrapping_add(cx.host.snd_len());
        let unsent = if seq_lt(tp.snd_nxt, data_end) {
            data_end.wrapping_sub(tp.snd_nxt)
        } else {
            0
        };
        crate::rate::check_app_limited(eng, cx, unsent);
    }
    arm_persist(eng, cx);
}

/// Send-buffer auto-sizing (FreeBSD tcp_output): when the buffer is 7/8 full, the peer's
/// window could take 5/4 of it and the window has room for what is unsent, grow it by
/// sendbuf_inc (up to sendbuf_max), so the application can keep the pipe full.
fn autosndbuf(cx: &mut StackCtx) {
    let t = cx.tun();
    if t.sendbuf_auto == 0 {
        return;
    }
    let inc = t.sendbuf_inc;
    let hiwat = cx.host.snd_hiwat();
    let used = cx.host.snd_len();
    let tp = &cx.tp;
    let in_flight = tp.snd_nxt.wrapping_sub(tp.snd_una);
    if tp.snd_wnd / 4 * 5 >= hiwat
        && used >= hiwat / 8 * 7
        && tp.snd_wnd >= used.saturating_sub(in_flight)
    {
        cx.host.autosize(1, hiwat.saturating_add(inc.max(1)));
    }
}

pub(crate) fn keepinit_ns(cx: &StackCtx) -> u64 {
    let ms = if cx.tp.t_keepinit > 0 {
        cx.tp.t_keepinit
    } else {
        cx.tun().keepinit
    };
    ms as u64 * 1_000_000
}

/// Sends one segment if one is due; false when there is nothing (more) to send. `idle`:
/// nothing was in flight when this output began.
fn output_one(eng: &mut Engine, cx: &mut StackCtx, idle: bool) -> bool {
    // The host's pacer: a burst waits for its time (the host calls output then).
    let Some(budget) = crate::rate::burst_budget(cx) else {
        return maybe_pure_ack(eng, cx);
    };
    let tp = &cx.tp;
    let snd_len = cx.host.snd_len();
    let dstart = data_start(tp);
    let data_end = dstart.wrapping_add(snd_len);
    let mss = max_payload(tp);
    let sack_recovery = tp.in_fastrecovery() && tp.t_flags & tf::SACK_PERMIT != 0;

    let rack_pipe = if tp.in_fastrecovery() {
        crate::rack::pipe(eng, cx)
    } else {
        None
    };
    let mut usable = if let Some(pipe) = rack_pipe {
        // RACK-TLP recovery: its pipe decides, and what it marked lost goes first.
        let room = tp.snd_cwnd.saturating_sub(pipe);
        if room < mss && !(pipe == 0 && room > 0) {
            return maybe_pure_ack(eng, cx);
        }
        if let Some((s, e)) = crate::rack::next_to_retransmit(eng) {
            if crate::rack::retransmit_range(eng, cx, s, e) {
                return true;
            }
        }
        let tp = &cx.tp;
        let wnd_left = tp.snd_una.wrapping_add(tp.snd_wnd).wrapping_sub(tp.snd_nxt);
        room.min(if (wnd_left as i32) < 0 { 0 } else { wnd_left })
    } else if sack_recovery {
        // RFC 6675: in recovery, the pipe decides, and holes go first.
        let pipe = eng.sack.pipe(tp.snd_una, tp.snd_max, eng.high_rxt, mss);
        let room = tp.snd_cwnd.saturating_sub(pipe);
        if room < mss && !(pipe == 0 && room > 0) {
            return maybe_pure_ack(eng, cx);
        }
        if let Some((seq, len, false)) =
            eng.sack.next_seg(tp.snd_una, tp.snd_max, eng.high_rxt, mss)
        {
            let len = len.min(mss).min(data_end.wrapping_sub(seq));
            if len > 0 {
                let end = seq.wrapping_add(len);
                eng.high_rxt = seq_max(eng.high_rxt, end);
                if seq == tp.snd_una {
                    eng.lrd_mark = Some((seq, tp.snd_max));
                }
                let fin = tp.t_flags & tf::SENTFIN != 0 && end == data_end && fin_wanted(tp);
                send_seg(eng, cx, seq, if fin { th::FIN } else { 0 }, len);
                return true;
            }
        }
        // New data still has to fit the peer's window.
        let wnd_left = tp.snd_una.wrapping_add(tp.snd_wnd).wrapping_sub(tp.snd_nxt);
        room.min(if (wnd_left as i32) < 0 { 0 } else { wnd_left })
    } else {
        let win = tp.snd_wnd.min(tp.snd_cwnd);
        let inflight = tp.snd_nxt.wrapping_sub(tp.snd_una);
        win.saturating_sub(inflight)
    };
    let tp = &cx.tp;
    // Sending at snd_nxt: new data, or go-back-N after an RTO rewound snd_nxt.
    let nxt = tp.snd_nxt;
    let unsent = if seq_geq(nxt, dstart) && seq_lt(nxt, data_end) {
        data_end.wrapping_sub(nxt)
    } else {
        0
    };
    if tp.t_flags & tf::FORCEDATA != 0 && usable == 0 && unsent > 0 {
        usable = 1; // a window probe
    }
    let mut len = unsent
        .min(usable)
        .min(tso_max(eng, tp, mss))
        .min(budget.max(mss));
    if len > mss && (len < unsent || tp.t_flags2 & tf2::CORK != 0) {
        // TSO sends whole segments unless this empties the buffer (FreeBSD: "prevent the
        // last segment from being fractional unless the send sockbuf can be emptied");
        // Linux's cork holds a partial segment back whatever.
        len -= len % mss;
    }
    let retransmitting = seq_lt(nxt, tp.snd_max);
    let fin_pending = fin_wanted(tp) && (tp.t_flags & tf::SENTFIN == 0 || retransmitting);
    let fin = fin_pending && nxt.wrapping_add(len) == data_end;
    let inflight = nxt.wrapping_sub(tp.snd_una);
    if len > 0 {
        let all = len == unsent;
        let nodelay = tp.t_flags & tf::NODELAY != 0;
        let nopush = tp.t_flags & tf::NOPUSH != 0;
        let send = len >= mss
            || retransmitting
            || fin
            || tp.t_flags & tf::FORCEDATA != 0
            || (all && (eng.push_once || (!nopush && (nodelay || idle))))
            || seq_gt(tp.snd_up, nxt)
            || (tp.max_sndwnd > 0 && len >= tp.max_sndwnd / 2);
        if send {
            let flags = if all { th::PUSH } else { 0 } | if fin { th::FIN } else { 0 };
            leave_quickack(cx, retransmitting);
            send_seg(eng, cx, nxt, flags, len);
            return true;
        }
        if nopush && tp.t_flags2 & tf2::CORK != 0 && cx.host.timer_remaining(TT_CORK).is_none() {
            // Linux's TCP_CORK holds a partial segment back for 200 ms at most.
            cx.host.timer_start(TT_CORK, CORK_CEILING_NS);
        }
    } else if fin
        && (usable > 0 || retransmitting || snd_len == 0 || tp.snd_wnd > 0 || inflight == 0)
    {
        send_seg(eng, cx, nxt, th::FIN, 0);
        return true;
    }
    maybe_pure_ack(eng, cx)
}

/// The engine's own timer for Linux's cork ceiling (rack's private timers are PRIV0 and
/// PRIV0 + 1).
pub(crate) const TT_CORK: u32 = tt::PRIV0 + 2;
/// How long TCP_CORK may hold a partial segment (Linux: "a 200 millisecond ceiling").
pub(crate) const CORK_CEILING_NS: u64 = 200_000_000;

/// Linux leaves quick-ACK mode when the connection turns interactive: new data sent within
/// a delayed-ACK time of the last segment received (its pingpong mode).
fn leave_quickack(cx: &mut StackCtx, retransmitting: bool) {
    if retransmitting || cx.tp.t_flags2 & tf2::QUICKACK == 0 {
        return;
    }
    let ato = cx.tun().delacktime as u64 * 1_000_000;
    if cx.host.now().saturating_sub(cx.tp.t_rcvtime) < ato {
        cx.tp.t_flags2 &= !tf2::QUICKACK;
    }
}

/// Largest payload one segment descriptor may carry: `mss`, or with TSO (FreeBSD
/// tcp_output's `tso` conditions) as many segments as the host takes, up to an IP packet's
/// 64 KiB. Not with SACK blocks to send (they would repeat in every packet), urgent data or
/// a pending CWR (both belong on one packet), nor a window probe.
fn tso_max(eng: &Engine, tp: &Tcpcb, mss: u32) -> u32 {
    const IP_MAXPACKET_PAYLOAD: u32 = 65535 - 40 - 60;
    if tp.t_tsomax_segs <= 1
        || eng.dsack.is_some()
        || !eng.reass.is_empty()
        || seq_gt(tp.snd_up, tp.snd_una)
        || tp.t_flags2 & tf2::ECN_SND_CWR != 0
        || tp.t_flags & tf::FORCEDATA != 0
    {
        return mss;
    }
    let segs = tp.t_tsomax_segs.min(IP_MAXPACKET_PAYLOAD / mss).max(1);
    mss * segs
}

/// An ACK with no data: when one is owed (ACKNOW) or when the window opened enough to be
/// worth telling (FreeBSD tcp_output's standalone window update).
fn maybe_pure_ack(eng: &mut Engine, cx: &mut StackCtx) -> bool {
    let due = cx.tp.t_flags & tf::ACKNOW != 0 || window_update_due(cx);
    if due {
        send_ack(eng, cx);
    }
    false
}

/// FreeBSD tcp_output: a window update is worth a segment of its own when the window
/// grows by two segments and that is a quarter of the buffer (or the buffer is small or
/// nearly full, or the growth reaches the largest window), or by half the buffer; never
/// after the peer's FIN, or when the scaled window would not change. (FreeBSD's "not while
/// a delayed ACK is pending" looks at TF_DELACK, which lives only inside tcp_input; a
/// read finds it clear and the update takes the delayed ACK along.)
fn window_update_due(cx: &StackCtx) -> bool {
    let tp = &cx.tp;
    let rcvd_fin = matches!(
        tp.t_state,
        TcpState::CloseWait | TcpState::LastAck | TcpState::Closing | TcpState::TimeWait
    );
    if !tp.t_state.have_established() || rcvd_fin {
        return false;
    }
    let max_win = TCP_MAXWIN << tp.rcv_scale;
    let recwin = cx.host.rcv_space().min(max_win);
    if recwin == 0 {
        return false;
    }
    let oldwin = if seq_gt(tp.rcv_adv, tp.rcv_nxt) {
        tp.rcv_adv.wrapping_sub(tp.rcv_nxt)
    } else {
        0
    };
    let adv = recwin.saturating_sub(oldwin);
    if oldwin >> tp.rcv_scale >= (adv + oldwin) >> tp.rcv_scale {
        return false;
    }
    let hiwat = cx.host.rcv_hiwat();
    let maxseg = tp.t_maxseg;
    (adv >= 2 * maxseg
        && (adv >= hiwat / 4 || recwin <= hiwat / 8 || hiwat <= 8 * maxseg || adv >= max_win))
        || 2 * adv >= hiwat
}

/// Data waiting and nothing in flight (a zero window, or one too small to send into without
/// silly-window syndrome): the persist timer forces a probe (FreeBSD tcp_output's
/// tcp_setpersist when it sends nothing).
fn arm_persist(eng: &mut Engine, cx: &mut StackCtx) {
    let tp = &cx.tp;
    if !tp.t_state.have_established() {
        return;
    }
    let unsent = data_start(tp)
        .wrapping_add(cx.host.snd_len())
        .wrapping_sub(tp.snd_nxt);
    if unsent as i32 > 0
        && cx.host.timer_remaining(tt::REXMT).is_none()
        && cx.host.timer_remaining(tt::PERSIST).is_none()
    {
        // The window just closed: persisting starts from no backoff (FreeBSD tcp_output).
        cx.tp.t_rxtshift = 0;
        setpersist(eng, cx);
        if eng.persist_since == 0 {
            eng.persist_since = cx.host.now().max(1);
        }
    }
}

/// FreeBSD tcp_setpersist(): arms the persist timer at `((srtt >> 2) + rttvar) >> 1` backed
/// off by tcp_backoff[t_rxtshift], plus the slop, within [persmin, persmax], and counts the
/// backoff up.
pub(crate) fn setpersist(eng: &Engine, cx: &mut StackCtx) {
    cx.host.timer_start(tt::PERSIST, persist_ns(eng, cx));
    if cx.tp.t_rxtshift < TCP_MAXRXTSHIFT {
        cx.tp.t_rxtshift += 1;
    }
}

/// The persist interval tcp_setpersist() would arm now, ns.
pub(crate) fn persist_ns(eng: &Engine, cx: &StackCtx) -> u64 {
    let t = cx.tun();
    let mult = TCP_BACKOFF[cx.tp.t_rxtshift.min(TCP_MAXRXTSHIFT) as usize] as u64;
    let us = eng.rtt.persist_base_us() * mult + t.rexmit_slop as u64 * 1000;
    (us * 1000).clamp(t.persmin as u64 * 1_000_000, t.persmax as u64 * 1_000_000)
}
