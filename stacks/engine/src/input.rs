//! tcp_input: one incoming segment for a connection the host has demultiplexed (RFC 9293
//! section 3.10.7, with RFC 7323, RFC 2018/6675 and RFC 5961).

use plugtcp_abi::cc::{ccf, CC_ACK, CC_DUPACK, CC_NDUPACK};
use plugtcp_abi::segment::{ecn, th, to, SackBlock, SegIn};
use plugtcp_abi::seq::{seq_geq, seq_gt, seq_leq, seq_lt};
use plugtcp_abi::stack::{tt, ConnEvent, StackCtx};
use plugtcp_abi::tcpcb::{tf, tf2};
use plugtcp_abi::{Errno, TcpState};
use plugtcp_tcpkit::reass::Insert;

use crate::output::{self, data_start, send_rst, send_seg, syn_unacked, ts_on};
use crate::{ctr, tcp_close, Engine};

/// Duplicate ACKs that start fast retransmit (RFC 5681 DupThresh).
const DUPTHRESH: u32 = 3;

pub(crate) fn do_segment(eng: &mut Engine, cx: &mut StackCtx, seg: &SegIn<'_>) {
    let now = cx.host.now();
    cx.tp.t_rcvtime = now;
    cx.tp.t_rcv_segs += 1;
    eng.keep_probes = 0;
    match cx.tp.t_state {
        TcpState::Closed | TcpState::Listen => return,
        TcpState::SynSent => return syn_sent(eng, cx, seg),
        _ => {}
    }
    if cx.tp.t_state.have_established() && keepalive_on(cx) {
        let idle = keepidle_ns(cx);
        cx.host.timer_start(tt::KEEP, idle);
    }
    let mut flags = seg.flags;
    let mut seq = seg.seq;
    let mut data: &[u8] = &seg.payload;
    let mut fin = flags & th::FIN != 0;

    // RFC 7323 3.2: once timestamps are agreed, a segment without one is dropped, unless
    // tolerate_missing_ts (FreeBSD's default) or it is a RST.
    if ts_on(&cx.tp)
        && !seg.opts.has(to::TSTAMP)
        && flags & th::RST == 0
        && cx.tun().tolerate_missing_ts == 0
    {
        return;
    }
    // The receive window (FreeBSD rcv_wnd: the buffer's room, never less than offered).
    let tp = &cx.tp;
    let wnd = if seq_gt(tp.rcv_adv, tp.rcv_nxt) {
        tp.rcv_adv.wrapping_sub(tp.rcv_nxt)
    } else {
        0
    }
    .max(cx.host.rcv_space());
    // RFC 5961 3.2 (FreeBSD, against last_ack_sent): a RST drops the connection only at
    // exactly the ACK we last sent; elsewhere in the window it earns a challenge ACK.
    if flags & th::RST != 0 {
        let las = eng.last_ack_sent;
        let in_window =
            (seq_geq(seq, las) && seq_lt(seq, las.wrapping_add(wnd))) || (wnd == 0 && seq == las);
        if in_window {
            if cx.tun().insecure_rst != 0 || seq == las {
                let err = match cx.tp.t_state {
                    TcpState::SynReceived => Errno::ECONNREFUSED,
                    TcpState::TimeWait => Errno(0),
                    _ => Errno::ECONNRESET,
                };
                cx.tp.t_softerror = err.0;
                tcp_close(cx);
            } else {
                challenge_ack(eng, cx);
            }
        }
        return;
    }
    // TCP Fast Open: the client sent its SYN (with data) again, so our SYN-ACK was lost;
    // send it again (the data in the SYN is a duplicate now and is not taken twice).
    if flags & th::SYN != 0
        && flags & th::ACK == 0
        && cx.tp.t_state == TcpState::SynReceived
        && cx.tp.t_flags & tf::FASTOPEN != 0
        && seq == cx.tp.irs
    {
        cx.tp.snd_nxt = cx.tp.iss;
        output::tcp_output(eng, cx);
        return;
    }
    // RFC 5961 4.2: any SYN on a synchronized connection (SYN_RECEIVED aside: a
    // simultaneous open's SYN-ACK) earns a challenge ACK, wherever it falls.
    if flags & th::SYN != 0 && cx.tp.t_state != TcpState::SynReceived {
        let las = eng.last_ack_sent;
        let in_window = seq_geq(seq, las) && seq_lt(seq, las.wrapping_add(wnd));
        if cx.tun().insecure_syn != 0 && in_window {
            crate::tcp_drop(cx, Errno::ECONNRESET);
        } else {
            challenge_ack(eng, cx);
        }
        return;
    }
    // RFC 7323 PAWS: an old timestamp means an old duplicate.
    let has_ts = seg.opts.has(to::TSTAMP) && ts_on(&cx.tp);
    if has_ts
        && flags & th::RST == 0
        && cx.tp.ts_recent != 0
        && seq_lt(seg.opts.tsval, cx.tp.ts_recent)
    {
        cx.count(ctr::PAWSDROP, 1);
        // FreeBSD: "if (tlen) goto dropafterack; goto drop".
        if !data.is_empty() && ack_war_permits(eng, cx) {
            cx.tp.t_flags |= tf::ACKNOW;
            output::tcp_output(eng, cx);
        }
        return;
    }

    // Acceptability (RFC 9293 3.10.7.4, first check).
    let tp = &cx.tp;
    let seg_len = data.len() as u32 + (flags & th::SYN != 0) as u32 + fin as u32;
    let in_wnd = |s: u32| seq_geq(s, tp.rcv_nxt) && seq_lt(s, tp.rcv_nxt.wrapping_add(wnd));
    let acceptable = match (seg_len, wnd) {
        (0, 0) => seq == tp.rcv_nxt,
        (0, _) => in_wnd(seq),
        // A window probe: at the edge of a closed window the segment still counts (its
        // ACK, its timestamp); its data is trimmed away below (FreeBSD tcps_rcvwinprobe).
        (_, 0) => seq == tp.rcv_nxt,
        (l, _) => in_wnd(seq) || in_wnd(seq.wrapping_add(l - 1)),
    };
    if wnd == 0 && seg_len > 0 && seq == tp.rcv_nxt {
        cx.tp.t_flags |= tf::ACKNOW;
    }
    // An old duplicate, wholly left of rcv_nxt: FreeBSD trims it rather than drop it, so
    // that its ACK field still counts (a simultaneous close's FIN+ACK, a reordered pure
    // ACK); the ACK it earns comes out of the ack-war budget below.
    let old_dup = !acceptable
        && cx.tp.t_state != TcpState::TimeWait
        && seq_lt(seq, cx.tp.rcv_nxt)
        && seq_leq(seq.wrapping_add(seg_len), cx.tp.rcv_nxt);
    let mut old_dup_ack = false;
    if old_dup {
        old_dup_ack = ack_war_permits(eng, cx);
    } else if !acceptable {
        // Beyond the window (or an old duplicate in TIME_WAIT): re-ACK (RFC 9293), which
        // also answers a retransmitted FIN in TIME_WAIT. Old data is reported as a D-SACK
        // (RFC 2883).
        let end = seq.wrapping_add(data.len() as u32);
        if !data.is_empty() && seq_leq(end, cx.tp.rcv_nxt) {
            eng.dsack = Some(SackBlock { start: seq, end });
        }
        if data.len() as u32 > 0 && seq_geq(seq, cx.tp.rcv_nxt) {
            cx.count(ctr::RCVAFTERWIN, 1);
        }
        if cx.tp.t_state == TcpState::TimeWait && fin {
            restart_2msl(cx);
        }
        // RFC 5961 7: these ACKs come out of the same per-connection budget as challenge
        // ACKs, so a flood of blind segments cannot make us send one ACK each (a legitimate
        // peer's retransmissions come an RTO apart).
        if ack_war_permits(eng, cx) {
            cx.tp.t_flags |= tf::ACKNOW;
            output::tcp_output(eng, cx);
        }
        return;
    }
    // A SYN left of rcv_nxt is the one we have (a simultaneous open's SYN-ACK): FreeBSD
    // drops the SYN bit and goes on with the rest of the segment.
    if flags & th::SYN != 0 && seq_lt(seq, cx.tp.rcv_nxt) {
        flags &= !th::SYN;
        seq = seq.wrapping_add(1);
        // Nothing left but what we have: acknowledge it at once (FreeBSD's trim).
        if seq == cx.tp.rcv_nxt && data.is_empty() && !fin {
            cx.tp.t_flags |= tf::ACKNOW;
        }
    }
    if flags & th::SYN != 0 {
        // A SYN in SYN_RECEIVED inside the window: nothing to do with it.
        return;
    }
    if flags & th::ACK == 0 {
        return;
    }
    if cx.tp.t_flags2 & tf2::ECN_PERMIT != 0 {
        ecn_input(eng, cx, seg);
    }

    // Trim what we already have at the front.
    let rcv_nxt = cx.tp.rcv_nxt;
    if seq_lt(seq, rcv_nxt) {
        let dup = rcv_nxt.wrapping_sub(seq);
        let dup_end = if dup as usize >= data.len() {
            seq.wrapping_add(data.len() as u32)
        } else {
            rcv_nxt
        };
        if dup as usize >= data.len() {
            // All old data: a FIN in it is old too unless it sits exactly at rcv_nxt.
            if fin && seq.wrapping_add(data.len() as u32) != rcv_nxt {
                fin = false;
            }
            data = &[];
            if !old_dup || old_dup_ack {
                cx.tp.t_flags |= tf::ACKNOW;
            }
        } else {
            data = &data[dup as usize..];
        }
        if dup_end != seq {
            eng.dsack = Some(SackBlock {
                start: seq,
                end: dup_end,
            });
            // FreeBSD: the next in-order segment would clear the D-SACK block, so ACK now.
            if cx.tp.t_flags & tf::SACK_PERMIT != 0 {
                cx.tp.t_flags |= tf::ACKNOW;
            }
        }
        seq = rcv_nxt;
    }
    // FreeBSD: new data for a connection the user has closed resets it (unless the
    // peer's FIN came already).
    let rcvd_fin_state = matches!(
        cx.tp.t_state,
        TcpState::CloseWait | TcpState::LastAck | TcpState::Closing | TcpState::TimeWait
    );
    if cx.tp.t_flags & tf::CLOSED != 0 && !data.is_empty() && !rcvd_fin_state {
        tcp_close(cx);
        send_rst(cx, seg.ack, 0, false);
        return;
    }
    // Trim what lies beyond the window.
    if data.len() as u32 > wnd {
        data = &data[..wnd as usize];
        fin = false;
        cx.count(ctr::RCVAFTERWIN, 1);
    }

    // RFC 7323 4.3: remember the peer's timestamp from a segment covering Last.ACK.sent
    // (FreeBSD does it before the ACK is processed, so an answer to this segment echoes
    // it).
    let seg_end = seg
        .seq
        .wrapping_add(seg.payload.len() as u32)
        .wrapping_add(u32::from(seg.flags & (th::SYN | th::FIN) != 0));
    if has_ts && seq_leq(seg.seq, eng.last_ack_sent) && seq_leq(eng.last_ack_sent, seg_end) {
        cx.tp.ts_recent = seg.opts.tsval;
        cx.tp.ts_recent_age = now;
    }

    if !ack_processing(eng, cx, seg, data.len() as u32) {
        return;
    }

    urgent_input(cx, seg);
    if !data.is_empty() || fin {
        receive_data(eng, cx, seq, data, fin);
    }
    // In a receive batch the host calls output once at its end: one ACK for the batch.
    if !cx.host.input_batch() {
        output::tcp_output(eng, cx);
    }
}

/// RFC 3168 on an ECN connection: a CE mark makes us echo ECE until the sender's CWR; an ECE
/// from the peer is a congestion signal, taken once per window (the CC's CC_ECN) and answered
/// with CWR. DCTCP-style modules also see every packet's marks through ecnpkt_handler.
fn ecn_input(_base: &mut Engine, cx: &mut StackCtx, seg: &SegIn<'_>) {
    let ce = seg.ip_ecn == ecn::CE;
    let cwr = seg.flags & th::CWR != 0;
    // FreeBSD tcp_ecn_input_segment: CE sets ECE (the ACK is not hurried); the sender's
    // CWR clears it and is acknowledged at once.
    let tp = &mut cx.tp;
    if ce {
        tp.t_flags2 |= tf2::ECN_SND_ECE;
    }
    if cwr {
        tp.t_flags2 &= !tf2::ECN_SND_ECE;
        tp.t_flags |= tf::ACKNOW;
    }
    if cx.cc.hooks.ecnpkt_handler.is_some() {
        let ccv = &mut cx.cc.ccv;
        ccv.flags = (ccv.flags & !(ccf::IPHDR_CE | ccf::TCPHDR_CWR))
            | if ce { ccf::IPHDR_CE } else { 0 }
            | if cwr { ccf::TCPHDR_CWR } else { 0 };
        cx.cc.ecnpkt_handler(&mut cx.tp);
        // The module may want this packet acknowledged at once (DCTCP's receiver does when
        // the CE state changes, so that the sender sees marks exactly).
        if cx.cc.ccv.flags & ccf::ACKNOW != 0 {
            cx.cc.ccv.flags &= !ccf::ACKNOW;
            cx.tp.t_flags |= tf::ACKNOW;
        }
    }
    // FreeBSD signals CC_ECN on every ECE: the stack reduces once per window (snd_recover,
    // CWR), and modules that count marks (DCTCP) see each one; others ignore repeats.
    if seg.flags & th::ECE != 0
        && seg.flags & th::ACK != 0
        && cx.cc.on_ecn_signal(&mut cx.tp, seg.ack)
    {
        cx.count(ctr::ECN_REDUCTIONS, 1);
        cx.tp.t_ecn_reductions += 1;
    }
}

/// The peer's urgent pointer (RFC 9293 3.10.7.4, seventh step; BSD: it points past the
/// urgent byte). A new, later pointer is reported to the host, which owns the stream.
fn urgent_input(cx: &mut StackCtx, seg: &SegIn<'_>) {
    let tp = &mut cx.tp;
    if !matches!(
        tp.t_state,
        TcpState::Established | TcpState::FinWait1 | TcpState::FinWait2
    ) {
        return;
    }
    if seg.flags & th::URG != 0 && seg.urp > 0 {
        let up = seg.seq.wrapping_add(seg.urp as u32);
        if seq_gt(up, tp.rcv_up) {
            tp.rcv_up = up;
            cx.host.event(ConnEvent::Urgent);
        }
    } else if seq_gt(tp.rcv_nxt, tp.rcv_up) {
        // Drag the pointer along so an old one is not mistaken for new data.
        tp.rcv_up = tp.rcv_nxt;
    }
}

/// RFC 5961 challenge ACK, throttled.
fn challenge_ack(eng: &mut Engine, cx: &mut StackCtx) {
    if ack_war_permits(eng, cx) {
        cx.count(ctr::CHALLENGE_ACK, 1);
        output::respond_ack(cx);
    }
}

/// RFC 5961 section 7 ACK throttling (FreeBSD ack_war_timewindow / ack_war_cnt): whether
/// one more ACK for an unacceptable segment may go in this window, counting it if so.
fn ack_war_permits(eng: &mut Engine, cx: &mut StackCtx) -> bool {
    let now = cx.host.now();
    let t = cx.tun();
    let window = t.ack_war_timewindow as u64 * 1_000_000;
    if now.saturating_sub(eng.ack_war_start) >= window {
        eng.ack_war_start = now;
        eng.ack_war_count = 0;
    }
    if t.ack_war_cnt == 0 || eng.ack_war_count < t.ack_war_cnt {
        eng.ack_war_count += 1;
        return true;
    }
    false
}

/// ACK field processing; false when the segment must go no further.
fn ack_processing(eng: &mut Engine, cx: &mut StackCtx, seg: &SegIn<'_>, tlen: u32) -> bool {
    let ack = seg.ack;
    let now = cx.host.now();
    if cx.tp.t_state == TcpState::SynReceived {
        if seq_gt(ack, cx.tp.snd_una) && seq_leq(ack, cx.tp.snd_max) {
            // The ACK of our SYN is accounted before the rest (FreeBSD incforsyn): what the
            // CC and the send buffer see acknowledged is data only.
            if cx.tp.snd_una == cx.tp.iss {
                cx.tp.snd_una = cx.tp.snd_una.wrapping_add(1);
                // FreeBSD's process_ACK still times the handshake (from the echoed
                // timestamp) although no data was acknowledged.
                if ack == cx.tp.snd_una {
                    rtt_sample(eng, cx, ack, now, echoed_ts(cx, seg));
                }
            }
            established(eng, cx);
            cx.tp.snd_wnd = (seg.win as u32) << cx.tp.snd_scale;
            cx.tp.snd_wl1 = seg.seq;
            cx.tp.snd_wl2 = ack;
            cx.tp.max_sndwnd = cx.tp.max_sndwnd.max(cx.tp.snd_wnd);
        } else {
            send_rst(cx, ack, 0, false);
            return false;
        }
    }
    let tp = &cx.tp;
    if seq_gt(ack, tp.snd_max) {
        // ACK of data never sent.
        cx.tp.t_flags |= tf::ACKNOW;
        output::tcp_output(eng, cx);
        return false;
    }
    crate::rate::on_ack_begin(eng, cx, seg, now);
    // SACK blocks (RFC 2018, D-SACK RFC 2883) update the scoreboard before loss detection.
    let mut sack_news = 0;
    eng.sacked_before = eng.sack.sacked_bytes();
    let tp = &cx.tp;
    if tp.t_flags & tf::SACK_PERMIT != 0 && seg.opts.has(to::SACK) {
        // sack.globalmaxholes reached (the host says): no new holes, as FreeBSD's
        // tcp_sackhole_alloc fails then.
        let maxholes = if tp.t_flags2 & tf2::SACK_HOLES_FULL != 0 {
            eng.sack.num_ranges()
        } else {
            cx.tun().sack_maxholes.max(1) as usize
        };
        eng.sack.set_maxholes(maxholes);
        let tp = &cx.tp;
        let r = eng
            .sack
            .update(tp.snd_una, tp.snd_max, seg.opts.sack_blocks());
        cx.tp.snd_numholes = eng.sack.num_ranges() as u32;
        sack_news = r.new_sacked_bytes;
        if let Some(d) = r.dsack {
            cx.tp.t_dsack_bytes += d.end.wrapping_sub(d.start) as u64;
            cx.tp.t_dsack_pack += 1;
        }
    }
    // RACK-TLP finds losses by time on every acceptable ACK, duplicate or not.
    crate::rack::on_ack(eng, cx, seg);
    let tp = &cx.tp;
    let new_wnd = (seg.win as u32) << tp.snd_scale;
    if seq_leq(ack, tp.snd_una) {
        // RFC 5681's duplicate ACK: the same window, or (FreeBSD, RFC 6675) with SACK new
        // SACK information, whatever the window; so a window update (the reader made room)
        // is never one. Not while only a window probe is outstanding (no retransmit timer
        // running means we are probing a zero window).
        let news = if tp.t_flags & tf::SACK_PERMIT != 0 {
            sack_news > 0
        } else {
            new_wnd == tp.snd_wnd
        };
        let dupack = ack == tp.snd_una
            && tlen == 0
            && seg.flags & th::FIN == 0
            && news
            && tp.snd_max != tp.snd_una
            && cx.host.timer_remaining(tt::REXMT).is_some();
        if dupack {
            crate::frto::before_ack(eng, cx, ack, true);
            crate::frto::on_dupack(eng);
        }
        if dupack && eng.rack.is_some() {
            // RACK counts no duplicate ACKs; what they SACKed went through rack::on_ack.
            cx.count(ctr::RCVDUPACK, 1);
            cx.tp.t_rcvdupack += 1;
            output::tcp_output(eng, cx);
        } else if dupack {
            lost_retransmission(eng, cx);
            on_dupack(eng, cx, sack_news > 0);
        } else {
            cx.tp.t_dupacks = 0;
        }
    } else {
        let tsecr = echoed_ts(cx, seg);
        crate::frto::before_ack(eng, cx, ack, false);
        on_new_ack(eng, cx, ack, now, tsecr);
        if cx.tp.t_state == TcpState::Closed {
            return false;
        }
        crate::frto::after_new_ack(eng, cx);
    }
    // Window update (RFC 9293 3.10.7.4, SND.WL1/WL2).
    let tp = &mut cx.tp;
    if seq_lt(tp.snd_wl1, seg.seq) || (tp.snd_wl1 == seg.seq && seq_leq(tp.snd_wl2, ack)) {
        let opened = tp.snd_wnd == 0 && new_wnd > 0;
        tp.snd_wnd = new_wnd;
        tp.snd_wl1 = seg.seq;
        tp.snd_wl2 = ack;
        tp.max_sndwnd = tp.max_sndwnd.max(new_wnd);
        if opened {
            cx.tp.t_rxtshift = 0;
            eng.persist_since = 0;
            cx.host.timer_stop(tt::PERSIST);
            // Resume from the first unacknowledged byte: the probe byte may sit beyond it.
            if seq_lt(cx.tp.snd_una, cx.tp.snd_nxt) && cx.host.timer_remaining(tt::REXMT).is_none()
            {
                cx.tp.snd_nxt = cx.tp.snd_una;
            }
        }
    }
    crate::rate::on_ack_end(eng, cx);
    true
}

fn on_dupack(eng: &mut Engine, cx: &mut StackCtx, sacked_something: bool) {
    let tp = &mut cx.tp;
    tp.t_dupacks += 1;
    tp.t_rcvdupack += 1;
    cx.count(ctr::RCVDUPACK, 1);
    let tp = &cx.tp;
    let sack = tp.t_flags & tf::SACK_PERMIT != 0;
    let mss = output::max_payload(tp);
    if tp.in_fastrecovery() {
        let abc = cx.tun().abc_l_var;
        cx.cc.on_ack(&mut cx.tp, CC_DUPACK, 0, 1, abc);
        if sack {
            let delivered = eng.sack.sacked_bytes().saturating_sub(eng.sacked_before);
            prr_apply(eng, cx, delivered);
        } else if !eng.rate_based() {
            // NewReno: inflate by one segment per dupack (RFC 6582).
            cx.tp.snd_cwnd = cx.tp.snd_cwnd.saturating_add(mss);
        }
        output::tcp_output(eng, cx);
        return;
    }
    let lost = tp.t_dupacks >= DUPTHRESH
        || (sack && sacked_something && eng.sack.is_lost(tp.snd_una, DUPTHRESH, mss));
    if lost {
        enter_recovery(eng, cx);
    } else {
        let abc = cx.tun().abc_l_var;
        cx.cc.on_ack(&mut cx.tp, CC_DUPACK, 0, 1, abc);
        // RFC 3042 limited transmit: up to two new segments beyond cwnd.
        let tp = &mut cx.tp;
        let saved = tp.snd_cwnd;
        tp.snd_cwnd = saved.saturating_add(tp.t_dupacks.min(2) * mss);
        output::tcp_output(eng, cx);
        cx.tp.snd_cwnd = saved;
    }
}

fn enter_recovery(eng: &mut Engine, cx: &mut StackCtx) {
    let sack = cx.tp.t_flags & tf::SACK_PERMIT != 0;
    let mss = output::max_payload(&cx.tp);
    cx.cc.on_cong_signal(&mut cx.tp, CC_NDUPACK);
    eng.rtt_timer.invalidate();
    // FreeBSD stops the retransmit timer on entering recovery; the fast retransmission
    // arms it again.
    cx.host.timer_stop(tt::REXMT);
    eng.high_rxt = cx.tp.snd_una;
    cx.count(ctr::SACK_RECOVERY, 1);
    cx.tp.t_sack_recovery_episode += 1;
    let rate_based = eng.rate_based();
    let tp = &mut cx.tp;
    if sack {
        // RFC 6675: cwnd = ssthresh; the first lost segment goes out at once; then PRR
        // (RFC 6937) paces the rest of recovery by the data the receiver gets.
        if !rate_based {
            tp.snd_cwnd = tp.snd_ssthresh;
        }
        eng.prr_delivered = 0;
        eng.prr_out = 0;
        eng.recover_fs = tp.snd_max.wrapping_sub(tp.snd_una);
        retransmit_first(eng, cx);
        let delivered = eng.sack.sacked_bytes().saturating_sub(eng.sacked_before);
        prr_apply(eng, cx, delivered);
    } else {
        if !rate_based {
            tp.snd_cwnd = tp.snd_ssthresh.saturating_add(DUPTHRESH * mss);
        }
        retransmit_first(eng, cx);
    }
    output::tcp_output(eng, cx);
}

/// RFC 6937 proportional rate reduction: cwnd from the data this ACK delivered. While the
/// pipe is above ssthresh, sending follows delivery at ssthresh/RecoverFS; below it, the
/// slow-start reduction bound (or, with `do_prr_conservative`, strict packet conservation).
pub(crate) fn prr_apply(eng: &mut Engine, cx: &mut StackCtx, delivered: u32) {
    if eng.rate_based() {
        // A rate-based CC sets cwnd in recovery itself (Linux skips tcp_cwnd_reduction).
        return;
    }
    let (do_prr, conservative) = (cx.tun().do_prr != 0, cx.tun().do_prr_conservative != 0);
    // RACK always paces its recovery with PRR (FreeBSD's rack does).
    if !do_prr && eng.rack.is_none() {
        return;
    }
    let rack_pipe = crate::rack::pipe(eng, cx);
    let tp = &mut cx.tp;
    let mss = output::max_payload(tp);
    eng.prr_delivered = eng.prr_delivered.saturating_add(delivered);
    let pipe =
        rack_pipe.unwrap_or_else(|| eng.sack.pipe(tp.snd_una, tp.snd_max, eng.high_rxt, mss));
    let ssthresh = tp.snd_ssthresh;
    let owed = eng.prr_delivered as i64 - eng.prr_out as i64;
    let sndcnt = if pipe > ssthresh {
        let share =
            (eng.prr_delivered as u64 * ssthresh as u64).div_ceil(eng.recover_fs.max(1) as u64);
        share as i64 - eng.prr_out as i64
    } else {
        let limit = if conservative {
            owed
        } else {
            owed.max(delivered as i64) + mss as i64
        };
        (ssthresh as i64 - pipe as i64).min(limit)
    };
    tp.snd_cwnd = pipe.saturating_add(sndcnt.max(0) as u32);
}

/// Fast retransmit: the segment at snd_una.
fn retransmit_first(eng: &mut Engine, cx: &mut StackCtx) {
    let tp = &cx.tp;
    let mss = output::max_payload(tp);
    let una = tp.snd_una;
    let dstart = data_start(tp);
    let data_end = dstart.wrapping_add(cx.host.snd_len());
    let len = data_end.wrapping_sub(una).min(mss);
    let fin = output::fin_wanted(tp)
        && tp.t_flags & tf::SENTFIN != 0
        && una.wrapping_add(len) == data_end;
    if len > 0 || fin {
        eng.high_rxt = una.wrapping_add(len);
        // LRD: anything sent after this retransmission that the peer SACKs proves it lost.
        eng.lrd_mark = Some((una, cx.tp.snd_max));
        send_seg(eng, cx, una, if fin { th::FIN } else { 0 }, len);
    }
}

/// Lost retransmission detection (FreeBSD `do_lrd`): in SACK recovery, when data sent after
/// our retransmission of the hole at snd_una is SACKed while the hole is still missing, that
/// retransmission was lost as well; send it again now rather than wait for the RTO.
fn lost_retransmission(eng: &mut Engine, cx: &mut StackCtx) {
    if cx.tun().do_lrd == 0 || !cx.tp.in_fastrecovery() || cx.tp.t_flags & tf::SACK_PERMIT == 0 {
        return;
    }
    let Some((hole, sent_before)) = eng.lrd_mark else {
        return;
    };
    if cx.tp.snd_una != hole {
        eng.lrd_mark = None;
        return;
    }
    if eng
        .sack
        .highest_sack()
        .is_some_and(|h| seq_gt(h, sent_before))
    {
        cx.count(ctr::LOST_REXMIT, 1);
        cx.tp.t_lost_rexmit += 1;
        retransmit_first(eng, cx);
    }
}

/// The timestamp an ACK echoes when timestamps are in use (0: none).
fn echoed_ts(cx: &StackCtx, seg: &SegIn<'_>) -> u32 {
    if seg.opts.has(to::TSTAMP) && output::ts_on(&cx.tp) {
        seg.opts.tsecr
    } else {
        0
    }
}

/// FreeBSD process_ACK's RTT measurement: an echoed timestamp gives a sample on every ACK
/// of new data (RFC 7323 RTTM, in whole ticks plus one); without one, the timed segment
/// does. Either is a valid measurement, so the backoff goes (Karn, tcp_xmit_timer);
/// nothing else resets it.
fn rtt_sample(eng: &mut Engine, cx: &mut StackCtx, ack: u32, now: u64, tsecr: u32) {
    let ts_sample = (tsecr != 0)
        .then(|| output::ts_now(cx).wrapping_sub(tsecr))
        .filter(|&ms| (ms as i32) >= 0);
    let sample = match ts_sample {
        Some(ms) => {
            eng.rtt_timer.invalidate();
            Some(ms.saturating_add(1).saturating_mul(1000))
        }
        None => eng.rtt_timer.on_ack(ack, now),
    };
    if let Some(sample_us) = sample {
        eng.rtt.sample(sample_us);
        cx.tp.t_rxtshift = 0;
        // As FreeBSD's tcp_xmit_timer: the CC hooks see the new t_srtt.
        eng.publish_rtt(&mut cx.tp);
    }
}

/// An ACK of new data (FreeBSD process_ACK). `tsecr`: the echoed timestamp when
/// timestamps are in use (0: none).
fn on_new_ack(eng: &mut Engine, cx: &mut StackCtx, ack: u32, now: u64, tsecr: u32) {
    let tp = &mut cx.tp;
    let acked = ack.wrapping_sub(tp.snd_una);
    let mut data_acked = acked;
    // The SYN's sequence number is no data: the CC does not see it (FreeBSD incforsyn).
    let syn_acked = syn_unacked(tp);
    if syn_acked {
        data_acked -= 1;
    }
    let fin_acked = tp.t_flags & tf::SENTFIN != 0 && ack == tp.snd_max && output::fin_wanted(tp);
    if fin_acked {
        data_acked = data_acked.saturating_sub(1);
    }
    data_acked = data_acked.min(cx.host.snd_len());
    cx.host.snd_drop(data_acked);

    if data_acked > 0 {
        cx.host.event(ConnEvent::Writable);
    }
    // FreeBSD: the first timeout was spurious when this ACK echoes a timestamp older than
    // the retransmission's (or, without timestamps, comes within half an RTT of it).
    if cx.tp.t_rxtshift == 1 && eng.prev_rto.is_some() {
        let spurious = if tsecr != 0 {
            eng.badrxtwin_ts
                .is_some_and(|w| (tsecr.wrapping_sub(cx.tp.ts_offset).wrapping_sub(w) as i32) < 0)
        } else {
            eng.badrxtwin_ns.is_some_and(|w| now < w)
        };
        if spurious {
            crate::undo_rto(eng, cx);
        }
    }
    rtt_sample(eng, cx, ack, now, tsecr);
    // The CC sees an RTT sample on every ACK that gives one, then the start of a new round
    // (RFC 9406: a round ends when the ACK passes what was outstanding when it began).
    if let Some((sample_us, fas)) = eng.send_times.on_ack(ack, now) {
        crate::rate::on_rtt(eng, sample_us);
        let shift = cx.tp.t_rxtshift;
        cx.cc.rttsample(&mut cx.tp, sample_us, shift, fas);
    }
    // The oldest unacknowledged data is later data now: TCP_USER_TIMEOUT counts from when
    // that was first sent (from now, when an RTO made us forget the send times).
    eng.una_since = eng.send_times.oldest_sent().unwrap_or(now);
    if seq_geq(ack, eng.round_end) {
        eng.round_cnt = eng.round_cnt.wrapping_add(1);
        eng.round_end = cx.tp.snd_max;
        cx.cc.newround(&mut cx.tp, eng.round_cnt);
    }
    let tp = &mut cx.tp;
    let in_fr = tp.in_fastrecovery();
    if in_fr && seq_geq(ack, tp.snd_recover) {
        // FreeBSD calls cc_post_recovery before snd_una moves: the pipe it sees still
        // counts what this ACK covers.
        let pipe = crate::compute_pipe(eng, &cx.tp);
        cx.cc.on_post_recovery(&mut cx.tp, ack, pipe);
        cx.tp.snd_una = ack;
    } else if in_fr {
        // Partial ACK (RFC 6582 / RFC 6675): more holes to fill.
        tp.snd_una = ack;
        if tp.t_flags & tf::SACK_PERMIT == 0 {
            let mss = output::max_payload(tp);
            if eng.rate_hook.is_none() {
                tp.snd_cwnd = tp.snd_cwnd.saturating_sub(acked).saturating_add(mss);
            }
            retransmit_first(eng, cx);
        }
    } else {
        if tp.in_congrecovery() && seq_geq(ack, tp.snd_recover) {
            tp.t_flags &= !tf::CONGRECOVERY;
        }
        tp.snd_una = ack;
        let abc = cx.tun().abc_l_var;
        let cc_acked = acked - u32::from(syn_acked);
        if cc_acked > 0 {
            // One ACK segment is one ACK for ABC's per-ACK limit (FreeBSD ccv->nsegs
            // counts the ACKs an LRO aggregate merged, not the data they cover).
            cx.cc.on_ack(&mut cx.tp, CC_ACK, cc_acked, 1, abc);
        }
    }
    let tp = &mut cx.tp;
    tp.t_dupacks = 0;
    if seq_lt(tp.snd_nxt, tp.snd_una) {
        tp.snd_nxt = tp.snd_una;
    }
    if seq_lt(eng.high_rxt, tp.snd_una) {
        eng.high_rxt = tp.snd_una;
    }
    eng.sack.on_cumack(tp.snd_una);
    tp.snd_numholes = eng.sack.num_ranges() as u32;
    // (In RACK mode PRR already counted this ACK's delivery in rack::on_ack.)
    if tp.in_fastrecovery() && tp.t_flags & tf::SACK_PERMIT != 0 && eng.rack.is_none() {
        let delivered = acked
            .saturating_add(eng.sack.sacked_bytes())
            .saturating_sub(eng.sacked_before);
        prr_apply(eng, cx, delivered);
    }
    let tp = &mut cx.tp;
    eng.publish_rtt(tp);
    if tp.snd_una == tp.snd_max {
        cx.host.timer_stop(tt::REXMT);
    } else {
        cx.host.timer_start(tt::REXMT, eng.rxt_ns(&cx.tp));
    }
    crate::rack::arm_tlp(eng, cx);
    if fin_acked {
        match cx.tp.t_state {
            TcpState::FinWait1 => {
                cx.tp.t_state = TcpState::FinWait2;
                finwait2_timer(eng, cx);
            }
            TcpState::Closing => enter_time_wait(cx),
            TcpState::LastAck => tcp_close(cx),
            _ => {}
        }
    }
}

/// Incoming data and FIN for a synchronized connection.
fn receive_data(eng: &mut Engine, cx: &mut StackCtx, seq: u32, data: &[u8], fin: bool) {
    receive_data_inner(eng, cx, seq, data, fin);
    cx.tp.t_segqlen = eng.reass.num_ranges() as u32;
}

fn receive_data_inner(eng: &mut Engine, cx: &mut StackCtx, seq: u32, data: &[u8], fin: bool) {
    let accepts_data = matches!(
        cx.tp.t_state,
        TcpState::Established | TcpState::FinWait1 | TcpState::FinWait2 | TcpState::SynReceived
    );
    let mut fin_in_order = false;
    if accepts_data && !data.is_empty() {
        let tp = &cx.tp;
        if seq == tp.rcv_nxt {
            let n = cx.host.rcv_write(0, data);
            let more = eng.reass.take_contiguous(tp.rcv_nxt.wrapping_add(n));
            cx.host.rcv_commit(n + more);
            let tp = &mut cx.tp;
            tp.rcv_nxt = tp.rcv_nxt.wrapping_add(n + more);
            tp.t_rcv_bytes += (n + more) as u64;
            autorcvbuf(eng, cx, n + more);
            cx.host.event(ConnEvent::Readable);
            fin_in_order = (fin && n as usize == data.len() && more == 0)
                || eng.ooo_fin == Some(cx.tp.rcv_nxt);
            if more > 0 || !eng.reass.is_empty() {
                // Filling a hole: ACK at once (RFC 5681 4.2).
                cx.tp.t_flags |= tf::ACKNOW;
            } else {
                delay_ack(eng, cx, data.len() as u32);
            }
        } else {
            // reass.maxqueuelen, and never more segments than the buffer holds (FreeBSD
            // tcp_reass): past it the segment is dropped; the peer sends it again.
            let by_buffer = cx.host.rcv_hiwat() / tp.t_maxseg.max(1) + 1;
            let limit = match cx.tun().reass_maxqueuelen {
                0 => by_buffer,
                n => n.min(by_buffer),
            };
            eng.reass.set_maxqueuelen(limit.max(1) as usize);
            let off = seq.wrapping_sub(tp.rcv_nxt);
            let n = cx.host.rcv_write(off, data);
            if fin && n as usize == data.len() {
                eng.ooo_fin = Some(seq.wrapping_add(n));
            }
            match (n > 0).then(|| eng.reass.insert(tp.rcv_nxt, seq, n)) {
                Some(Insert::Duplicate) => {
                    eng.dsack = Some(SackBlock {
                        start: seq,
                        end: seq.wrapping_add(n),
                    });
                }
                Some(Insert::Overflow) => cx.count(ctr::REASS_OVERFLOW, 1),
                _ => {}
            }
            cx.tp.t_rcvoopack += 1;
            cx.count(ctr::RCVOOPACK, 1);
            cx.tp.t_flags |= tf::ACKNOW;
        }
    } else if fin && seq == cx.tp.rcv_nxt {
        fin_in_order = true;
    } else if fin && accepts_data && seq_gt(seq, cx.tp.rcv_nxt) {
        // A bare FIN beyond a hole: it waits for the data before it.
        eng.ooo_fin = Some(seq);
        cx.tp.t_flags |= tf::ACKNOW;
    }
    if fin_in_order && cx.tp.t_flags2 & tf2::FIN_RCVD == 0 {
        eng.ooo_fin = None;
        let tp = &mut cx.tp;
        tp.rcv_nxt = tp.rcv_nxt.wrapping_add(1);
        tp.t_flags2 |= tf2::FIN_RCVD;
        tp.t_flags |= tf::ACKNOW;
        eng.rcvd_fin = true;
        cx.host.event(ConnEvent::Readable);
        match cx.tp.t_state {
            TcpState::SynReceived | TcpState::Established => cx.tp.t_state = TcpState::CloseWait,
            TcpState::FinWait1 => cx.tp.t_state = TcpState::Closing,
            TcpState::FinWait2 => enter_time_wait(cx),
            _ => {}
        }
    } else if fin && cx.tp.t_state == TcpState::TimeWait {
        restart_2msl(cx);
        cx.tp.t_flags |= tf::ACKNOW;
    }
}

/// Receive-buffer auto-sizing (FreeBSD 13+ tcp_autorcvbuf): a measurement starts when a
/// segment is sent (output.rs) and ends with the first data after half a smoothed RTT; if
/// more than 3/8 of the buffer arrived by then (the sender would fill it within an RTT),
/// the buffer grows by half, up to recvbuf_max. At most two steps per RTT, and only while
/// the stream keeps up: the buffer follows the path's bandwidth-delay product.
fn autorcvbuf(eng: &mut Engine, cx: &mut StackCtx, bytes: u32) {
    if cx.tun().recvbuf_auto == 0 {
        return;
    }
    let now = cx.host.now();
    let srtt_ns = eng.rtt.srtt() as u64 * 1000;
    if srtt_ns != 0 && eng.rfbuf_ts != 0 && now.saturating_sub(eng.rfbuf_ts) > srtt_ns / 2 {
        let hiwat = cx.host.rcv_hiwat();
        if eng.rfbuf_cnt > hiwat / 2 / 4 * 3 {
            cx.host.autosize(0, hiwat.saturating_add(hiwat / 2));
        }
        // Start over with the next segment sent.
        eng.rfbuf_ts = 0;
        eng.rfbuf_cnt = 0;
    } else {
        eng.rfbuf_cnt = eng.rfbuf_cnt.saturating_add(bytes);
    }
}

/// Delayed ACK (RFC 9293 3.8.6.3, FreeBSD: every second full segment at once).
fn delay_ack(eng: &mut Engine, cx: &mut StackCtx, tlen: u32) {
    eng.unacked_segs += 1;
    let (delayed_ack, delacktime) = (cx.tun().delayed_ack, cx.tun().delacktime);
    // FreeBSD DELAY_ACK(): not for a segment longer than the MSS (an LRO aggregate, or a
    // peer ignoring our MSS), nor right after this end advertised a zero window.
    if delayed_ack == 0
        || cx.tp.t_flags2 & tf2::QUICKACK != 0
        || eng.unacked_segs >= 2
        || tlen > cx.tp.t_maxseg
        || cx.tp.t_flags & tf::RXWIN0SENT != 0
    {
        cx.tp.t_flags |= tf::ACKNOW;
        return;
    }
    if cx.tp.t_flags & tf::DELACK == 0 {
        cx.tp.t_flags |= tf::DELACK;
        cx.host
            .timer_start(tt::DELACK, delacktime as u64 * 1_000_000);
    }
}

/// FreeBSD tcp_mss: once the MSS is known, both socket buffers become a whole number of
/// segments (rounded up; capped at kern.ipc.maxsockbuf by the host), and a send buffer
/// smaller than one segment lowers the MSS to it. The window a peer sees is that rounded
/// buffer.
fn round_buffers_to_mss(cx: &mut StackCtx) {
    use plugtcp_abi::stack::autosize;
    let mss = cx.tp.t_maxseg.max(1);
    let snd = cx.host.snd_hiwat();
    if snd < mss {
        cx.tp.t_maxseg = snd.max(1);
    } else {
        cx.host
            .autosize(autosize::RESERVE_SND, snd.div_ceil(mss).saturating_mul(mss));
    }
    let rcv = cx.host.rcv_hiwat();
    if rcv > mss {
        cx.host
            .autosize(autosize::RESERVE_RCV, rcv.div_ceil(mss).saturating_mul(mss));
    }
}

/// The handshake completed.
fn established(eng: &mut Engine, cx: &mut StackCtx) {
    round_buffers_to_mss(cx);
    cx.tp.t_state = TcpState::Established;
    cx.host.timer_stop(tt::KEEP);
    let iw = cx.tun().initcwnd_segments;
    // HyStart++ (RFC 9406) for the initial slow start, for the modules that implement it.
    cx.cc.ccv.flags |= ccf::HYSTART_ALLOWED | ccf::HYSTART_CONS_SSTH;
    eng.round_end = cx.tp.snd_max;
    // The host cache's hints (FreeBSD cc_conn_init): the RTT when the handshake timed none,
    // the ssthresh the path had.
    if !eng.rtt.has_sample() && cx.tp.t_hc_rtt > 0 {
        let var = if cx.tp.t_hc_rttvar > 0 {
            cx.tp.t_hc_rttvar
        } else {
            cx.tp.t_hc_rtt / 4
        };
        eng.rtt.seed(cx.tp.t_hc_rtt, var);
        eng.publish_rtt(&mut cx.tp);
    }
    if cx.tp.t_hc_ssthresh > 0 && !eng.cc_inited {
        cx.tp.snd_ssthresh = cx.tp.t_hc_ssthresh.max(2 * cx.tp.maxseg());
    }
    if !eng.cc_inited {
        cx.cc.on_conn_init(&mut cx.tp, iw);
        eng.cc_inited = true;
        crate::rate::on_conn_init(eng, cx);
    }
    cx.host.event(ConnEvent::Connected);
    if keepalive_on(cx) {
        let idle = keepidle_ns(cx);
        cx.host.timer_start(tt::KEEP, idle);
    }
    eng.publish_rtt(&mut cx.tp);
}

pub(crate) fn enter_time_wait(cx: &mut StackCtx) {
    // FreeBSD nolocaltimewait: no TIME_WAIT when the peer is this host itself.
    if cx.tun().nolocaltimewait != 0 && cx.tp.t_flags2 & tf2::LOCAL_PEER != 0 {
        tcp_close(cx);
        return;
    }
    cx.tp.t_state = TcpState::TimeWait;
    for t in [tt::REXMT, tt::PERSIST, tt::KEEP, tt::DELACK] {
        cx.host.timer_stop(t);
    }
    cx.host.event(ConnEvent::TimeWait);
    restart_2msl(cx);
}

/// An orphaned connection (the application closed it) does not wait in FIN_WAIT_2 for
/// ever: TCP_LINGER2, else the finwait2_timeout sysctl (or 2*MSL with
/// fast_finwait2_recycle off, as FreeBSD's tcp_timer_2msl).
pub(crate) fn finwait2_timer(eng: &Engine, cx: &mut StackCtx) {
    if cx.tp.t_flags & tf::CLOSED == 0 {
        return;
    }
    let t = cx.tun();
    let ms = match eng.linger2 {
        l if l < 0 => 0,
        // FreeBSD: finwait2_timeout with fast recycling, else TP_MAXIDLE (keepcnt times
        // keepintvl, 600 s), rechecked then every keepintvl while the peer is heard from.
        0 if t.fast_finwait2_recycle != 0 => t.finwait2_timeout as u64,
        0 => maxidle_ms(cx),
        l => l as u64 * 1000,
    };
    cx.host.timer_start(tt::TWO_MSL, ms * 1_000_000);
}

/// FreeBSD TP_MAXIDLE: keepcnt probes keepintvl apart, in ms.
pub(crate) fn maxidle_ms(cx: &StackCtx) -> u64 {
    let t = cx.tun();
    let cnt = if cx.tp.t_keepcnt > 0 {
        cx.tp.t_keepcnt
    } else {
        t.keepcnt
    };
    cnt as u64 * keepintvl_ms(cx)
}

/// TCP_KEEPINTVL, else the sysctl, in ms.
pub(crate) fn keepintvl_ms(cx: &StackCtx) -> u64 {
    let t = cx.tun();
    (if cx.tp.t_keepintvl > 0 {
        cx.tp.t_keepintvl
    } else {
        t.keepintvl
    }) as u64
}

fn restart_2msl(cx: &mut StackCtx) {
    let msl = cx.tun().msl as u64 * 1_000_000;
    cx.host.timer_start(tt::TWO_MSL, 2 * msl);
}

/// Keepalives probe this connection: SO_KEEPALIVE, or net.inet.tcp.always_keepalive
/// (FreeBSD's default: every connection).
pub(crate) fn keepalive_on(cx: &StackCtx) -> bool {
    cx.tp.t_flags2 & tf2::KEEPALIVE != 0 || cx.tun().always_keepalive != 0
}

pub(crate) fn keepidle_ns(cx: &StackCtx) -> u64 {
    let ms = if cx.tp.t_keepidle > 0 {
        cx.tp.t_keepidle
    } else {
        cx.tun().keepidle
    };
    ms as u64 * 1_000_000
}

/// SYN_SENT (RFC 9293 3.10.7.3).
fn syn_sent(eng: &mut Engine, cx: &mut StackCtx, seg: &SegIn<'_>) {
    let f = seg.flags;
    let tp = &cx.tp;
    if f & th::ACK != 0 && (seq_leq(seg.ack, tp.iss) || seq_gt(seg.ack, tp.snd_max)) {
        if f & th::RST == 0 {
            send_rst(cx, seg.ack, 0, false);
        }
        return;
    }
    if f & th::RST != 0 {
        if f & th::ACK != 0 {
            cx.tp.t_softerror = Errno::ECONNREFUSED.0;
            tcp_close(cx);
        }
        return;
    }
    if f & th::SYN == 0 {
        return;
    }
    let now = cx.host.now();
    let tun_sack = cx.tun().sack_enable != 0;
    // RFC 9293 3.7.1: without an MSS option the peer gets the family's default.
    let mssdflt = if cx.tp.t_flags2 & tf2::INET6 != 0 {
        cx.tun().v6mssdflt
    } else {
        cx.tun().mssdflt
    };
    let minmss = cx.tun().minmss;
    let (ecn_enable, ecn_maxretries) = (cx.tun().ecn_enable, cx.tun().ecn_maxretries);
    let tp = &mut cx.tp;
    // TCP_NOOPT: our SYN offered nothing, so nothing the peer offers is agreed.
    let opts_ok = tp.t_flags & tf::NOOPT == 0;
    tp.irs = seg.seq;
    tp.rcv_nxt = seg.seq.wrapping_add(1);
    tp.rcv_adv = tp.rcv_nxt;
    tp.rcv_up = tp.rcv_nxt;
    tp.t_peer_mss = if seg.opts.has(to::MSS) {
        seg.opts.mss as u32
    } else {
        mssdflt
    };
    tp.t_maxseg = tp.t_maxseg.min(tp.t_peer_mss).max(minmss);
    if opts_ok && seg.opts.has(to::WSCALE) && tp.t_flags & tf::REQ_SCALE != 0 {
        tp.t_flags |= tf::RCVD_SCALE;
        tp.snd_scale = seg.opts.wscale.min(14);
        tp.rcv_scale = tp.request_r_scale;
    } else {
        tp.t_flags &= !tf::REQ_SCALE;
        tp.snd_scale = 0;
        tp.rcv_scale = 0;
    }
    if opts_ok && seg.opts.has(to::SACKPERM) && tun_sack {
        tp.t_flags |= tf::SACK_PERMIT;
    }
    // RFC 3168 6.1.1: our ECN SYN answered by a SYN-ACK with ECE and without CWR.
    let ecn_syn = tp.t_rxtshift <= ecn_maxretries && ecn_enable == 1;
    if f & (th::ECE | th::CWR) == th::ECE && f & th::ACK != 0 && ecn_syn {
        tp.t_flags2 |= tf2::ECN_PERMIT;
    } else if f & (th::ECE | th::CWR) == th::ECE | th::CWR && f & th::ACK == 0 && ecn_enable != 0 {
        // A simultaneous open whose SYN asked for ECN.
        tp.t_flags2 |= tf2::ECN_PERMIT;
    }
    if opts_ok && seg.opts.has(to::TSTAMP) && tp.t_flags & tf::REQ_TSTMP != 0 {
        tp.t_flags |= tf::RCVD_TSTMP;
        tp.ts_recent = seg.opts.tsval;
        tp.ts_recent_age = now;
    } else {
        tp.t_flags &= !tf::REQ_TSTMP;
    }
    if f & th::ACK != 0 {
        tp.snd_una = seg.ack;
        if seq_lt(tp.snd_nxt, tp.snd_una) {
            tp.snd_nxt = tp.snd_una;
        }
        // TCP Fast Open: data our SYN carried and the SYN-ACK acknowledged leaves the send
        // buffer; what it did not acknowledge is sent again at once (RFC 7413 4.2.2).
        let syn_data_acked = seg.ack.wrapping_sub(tp.iss.wrapping_add(1));
        if seq_lt(tp.snd_una, tp.snd_max) {
            tp.snd_nxt = tp.snd_una;
        }
        if syn_data_acked > 0 {
            cx.host.snd_drop(syn_data_acked.min(cx.host.snd_len()));
            cx.host.event(ConnEvent::Writable);
        }
        let tp = &mut cx.tp;
        // The window in a SYN is never scaled (RFC 7323 2.2).
        tp.snd_wnd = seg.win as u32;
        tp.max_sndwnd = tp.snd_wnd;
        tp.snd_wl1 = seg.seq;
        tp.snd_wl2 = seg.ack;
        // FreeBSD goes on to process_ACK: an RTT sample from the echoed timestamp or the
        // timed SYN.
        rtt_sample(eng, cx, seg.ack, now, echoed_ts(cx, seg));
        cx.host.timer_stop(tt::REXMT);
        established(eng, cx);
        cx.tp.t_rxtshift = 0;
        cx.tp.t_flags |= tf::ACKNOW;
        // Data (and a FIN) on the SYN-ACK is taken as on any segment (FreeBSD dodata).
        let data = &seg.payload[..];
        if !data.is_empty() || f & th::FIN != 0 {
            let wnd = cx.host.rcv_space() as usize;
            let fin = f & th::FIN != 0 && data.len() <= wnd;
            let data = &data[..data.len().min(wnd)];
            receive_data(eng, cx, seg.seq.wrapping_add(1), data, fin);
        }
        output::tcp_output(eng, cx);
    } else {
        // Simultaneous open: answer with SYN-ACK from SYN_RECEIVED.
        tp.t_state = TcpState::SynReceived;
        tp.snd_nxt = tp.iss;
        cx.host.timer_stop(tt::REXMT);
        output::tcp_output(eng, cx);
    }
}
