//! DCTCP against RFC 8257 and FreeBSD's cc_dctcp arithmetic, driven through the module's ABI
//! descriptor as the host and the base stack drive it.

use super::*;
use plugtcp_abi::cc::CcConn;
use plugtcp_abi::seq::seq_geq;
use plugtcp_abi::TcpState;
use plugtcp_tcpkit::cc::testing::{self, globals, TestConn};
use proptest::prelude::*;
use std::sync::atomic::{AtomicIsize, Ordering};

const MSS: u32 = 1000;
/// Close to the sequence wrap, so that windows cross it.
const ISS: u32 = 0xFFFF_F000;
/// net.inet.tcp.abc_l_var, as in `testing::globals()`.
const ABC_L: u32 = 2;

/// The module's sysctls: alpha, shift_g, slowstart.
fn params(alpha: u32, shift_g: u32, slowstart: u32) -> &'static [AtomicIsize] {
    testing::params::<Dctcp>(&[
        (PARAM_ALPHA, alpha.into()),
        (PARAM_SHIFT_G, shift_g.into()),
        (PARAM_SLOWSTART, slowstart.into()),
    ])
}

/// An established connection on dctcp (ECN negotiated or not), cb_init and conn_init done.
fn conn_with(p: &'static [AtomicIsize], ecn: bool) -> (TestConn<Dctcp>, Tcpcb) {
    let mut tp = testing::tcpcb(MSS, 10 * MSS, u32::MAX);
    tp.t_state = TcpState::Established;
    tp.iss = ISS;
    tp.snd_una = ISS;
    tp.snd_nxt = ISS;
    tp.snd_max = ISS;
    if ecn {
        tp.t_flags2 |= tf2::ECN_PERMIT;
    }
    let mut cc = TestConn::attach(globals(), p, &mut tp);
    cc.conn_init(&mut tp);
    (cc, tp)
}

fn conn() -> (TestConn<Dctcp>, Tcpcb) {
    conn_with(params(DEFAULT_ALPHA, DEFAULT_SHIFT_G, 0), true)
}

fn send(tp: &mut Tcpcb, bytes: u32) {
    tp.snd_nxt = tp.snd_nxt.wrapping_add(bytes);
    tp.snd_max = tp.snd_nxt;
}

/// [`conn`] with a window of `cwnd_segs` segments sent, and an observation window that
/// began after them (conn_init saves snd_nxt).
fn conn_window_sent(cwnd_segs: u32) -> (TestConn<Dctcp>, Tcpcb) {
    let (mut cc, mut tp) = conn();
    tp.snd_cwnd = cwnd_segs * MSS;
    send(&mut tp, cwnd_segs * MSS);
    cc.conn_init(&mut tp);
    (cc, tp)
}

/// One new ACK as the base stack handles it: CC_ECN first when it carries ECE, then the end
/// of an ECN recovery once snd_recover is acknowledged, then ack_received.
fn ack(cc: &mut TestConn<Dctcp>, tp: &mut Tcpcb, bytes: u32, ece: bool) {
    if ece {
        cc.on_cong_signal(tp, CC_ECN);
    }
    let ack = tp.snd_una.wrapping_add(bytes);
    if tp.in_congrecovery() && !tp.in_fastrecovery() && seq_geq(ack, tp.snd_recover) {
        tp.t_flags &= !tf::CONGRECOVERY;
    }
    tp.snd_una = ack;
    let nsegs = bytes.div_ceil(MSS).max(1) as u16;
    cc.on_ack(tp, CC_ACK, bytes, nsegs, ABC_L);
}

/// A duplicate ACK (with ECE or not) as the base stack handles it.
fn dupack(cc: &mut TestConn<Dctcp>, tp: &mut Tcpcb, ece: bool) {
    if ece {
        cc.on_cong_signal(tp, CC_ECN);
    }
    cc.on_ack(tp, CC_DUPACK, 0, 1, ABC_L);
}

/// Runs observation windows, each a list of (bytes, ECE) ACKs, and returns alpha after each.
/// snd_nxt is placed so that each window ends exactly at its last ACK: when a window closes,
/// the next one's bytes less one are outstanding (the closing ACK must pass save_sndnxt).
fn run_windows(cc: &mut TestConn<Dctcp>, tp: &mut Tcpcb, windows: &[Vec<(u32, bool)>]) -> Vec<u32> {
    let total = |w: &Vec<(u32, bool)>| w.iter().map(|a| a.0).sum::<u32>();
    send(tp, total(&windows[0]) - 1);
    cc.conn_init(tp);
    let mut alphas = Vec::new();
    for (i, w) in windows.iter().enumerate() {
        for (j, &(bytes, ece)) in w.iter().enumerate() {
            let last = j == w.len() - 1;
            if last {
                let next = windows.get(i + 1).map_or(1, total);
                tp.snd_nxt = tp.snd_una.wrapping_add(bytes + next - 1);
                tp.snd_max = tp.snd_nxt;
            }
            let alpha_before = cc.state().alpha;
            ack(cc, tp, bytes, ece);
            if !last {
                assert_eq!(cc.state().alpha, alpha_before, "window {i} closed early");
                assert!(cc.state().bytes_total > 0);
            } else {
                assert_eq!((cc.state().bytes_total, cc.state().bytes_ecn), (0, 0));
                assert_eq!(cc.state().save_sndnxt, tp.snd_nxt);
            }
        }
        alphas.push(cc.state().alpha);
    }
    alphas
}

fn acks(n: usize, bytes: u32, ece: bool) -> Vec<(u32, bool)> {
    vec![(bytes, ece); n]
}

#[test]
fn update_alpha_fixed_point() {
    // alpha - alpha/16 + bytes_ecn * 64 / bytes_total, truncated.
    assert_eq!(dctcp_update_alpha(1024, 0, 10_000, 4), 960);
    assert_eq!(dctcp_update_alpha(960, 4000, 10_000, 4), 900 + 25);
    assert_eq!(dctcp_update_alpha(0, 10_000, 10_000, 4), 64);
    assert_eq!(dctcp_update_alpha(1024, 10_000, 10_000, 4), 1024);
    // shift_g 1 (g = 1/2): halfway to F; shift_g 10 (g = 1/1024): at most one step of 1/1024.
    assert_eq!(dctcp_update_alpha(1000, 1, 4, 1), 500 + 128);
    // 1000 >> 10 is 0, and 1 * 2^0 / 4 truncates to 0: no change.
    assert_eq!(dctcp_update_alpha(1000, 1, 4, 10), 1000);
    assert_eq!(dctcp_update_alpha(1024, 0, 4, 10), 1023);
    // g = 1: alpha is F.
    assert_eq!(dctcp_update_alpha(7, 3, 7, 0), 3 * 1024 / 7);
    // An empty window counts as one byte; more marks than bytes cannot pass 1.
    assert_eq!(dctcp_update_alpha(512, 0, 0, 4), 480);
    assert_eq!(dctcp_update_alpha(1024, 50, 10, 4), 1024);
    // Large windows do not overflow the shifted mark count.
    assert_eq!(dctcp_update_alpha(0, u32::MAX, u32::MAX, 0), 1024);
}

#[test]
fn alpha_over_several_windows() {
    let (mut cc, mut tp) = conn();
    tp.snd_cwnd = 100 * MSS;
    let alphas = run_windows(
        &mut cc,
        &mut tp,
        &[
            // Nothing marked: 1024 - 64 = 960.
            acks(5, 2000, false),
            // Two marked ACKs then an unmarked one, each covering 2 MSS: the first marked ACK
            // holds one unmarked segment, the first unmarked one holds one marked segment:
            // 1000 + 2000 + 1000 = 4000 of 10000; 960 - 60 + 4000*64/10000 (25) = 925.
            vec![
                (2000, true),
                (2000, true),
                (2000, false),
                (2000, false),
                (2000, false),
            ],
            // All marked, but the first ACK holds one old unmarked segment: 9000 of 10000;
            // 925 - 57 + 57 (57.6) = 925.
            acks(5, 2000, true),
            // All marked and ECE already on: 4000 of 4000; 925 - 57 + 64 = 932.
            acks(4, 1000, true),
            // One stretch ACK ending the marks: one segment of it was marked:
            // 932 - 58 + 1000*64/3000 (21) = 895.
            vec![(3000, false)],
        ],
    );
    assert_eq!(alphas, [960, 925, 925, 932, 895]);
}

#[test]
fn shift_g_zero_makes_alpha_the_marked_fraction() {
    let (mut cc, mut tp) = conn_with(params(DEFAULT_ALPHA, 0, 0), true);
    tp.snd_cwnd = 100 * MSS;
    let alphas = run_windows(
        &mut cc,
        &mut tp,
        &[
            vec![(1000, true), (1000, true), (1000, true), (1000, false)],
            vec![(1000, false), (1000, false), (1000, false), (1000, true)],
            acks(3, 1000, false),
            vec![(1000, true), (2000, false)],
        ],
    );
    // Single-segment ACKs need no correction; the last window's stretch ACK holds one
    // marked segment: 2000 of 3000.
    assert_eq!(alphas, [768, 256, 0, 2 * 1024 / 3]);
}

#[test]
fn shift_g_is_read_when_a_window_closes() {
    let p = params(DEFAULT_ALPHA, 4, 0);
    let (mut cc, mut tp) = conn_with(p, true);
    let a = run_windows(&mut cc, &mut tp, &[acks(2, 1000, false)]);
    assert_eq!(a, [960]);
    p[PARAM_SHIFT_G].store(1, Ordering::Relaxed);
    let a = run_windows(&mut cc, &mut tp, &[acks(2, 1000, false)]);
    assert_eq!(a, [480]);
}

#[test]
fn ecn_cuts_cwnd_by_half_alpha() {
    // (alpha sysctl, cwnd before, cwnd after = max(cwnd - cwnd * alpha / 2048, 2 MSS))
    for (alpha, before, after) in [
        (1024, 20_000, 10_000),
        (512, 20_000, 15_000),
        (0, 20_000, 20_000),
        // 14600 * 100 / 2048 = 712.89: the cut is truncated.
        (100, 14_600, 13_888),
        (1024, 3_000, 2_000),
        (1024, 4_001, 2_001),
    ] {
        let (mut cc, mut tp) = conn_with(params(alpha, DEFAULT_SHIFT_G, 0), true);
        tp.snd_cwnd = before;
        cc.on_cong_signal(&mut tp, CC_ECN);
        assert_eq!(
            (tp.snd_cwnd, tp.snd_ssthresh),
            (after, after),
            "alpha {alpha}"
        );
        assert!(tp.in_congrecovery() && !tp.in_fastrecovery());
        assert!(cc.state().ece_curr);
        assert_eq!(dctcp_ecn_window(before, alpha, MSS), after);
    }
}

#[test]
fn one_reduction_per_window_with_ece_on_every_ack() {
    let (mut cc, mut tp) = conn_window_sent(20);
    let mut cwnd = tp.snd_cwnd;
    let mut reductions = 0;
    for _ in 0..20 {
        ack(&mut cc, &mut tp, MSS, true);
        if tp.snd_cwnd < cwnd {
            reductions += 1;
        }
        cwnd = tp.snd_cwnd;
        assert_eq!(tp.snd_ssthresh, 10 * MSS, "alpha 1: halved once");
    }
    assert_eq!(reductions, 1);
    // Window growth goes on during the window (RFC 8257 3.4): one slow-start segment (cwnd
    // was at ssthresh), then congestion avoidance.
    assert!(tp.snd_cwnd >= 11 * MSS);
    assert!(
        !tp.in_congrecovery(),
        "the ACK of snd_recover ends the episode"
    );
    // Yet every marked byte was counted.
    assert_eq!(
        (cc.state().bytes_total, cc.state().bytes_ecn),
        (20 * MSS, 20 * MSS)
    );

    // Next window: the first ECE reduces again (alpha is still 1), the others do not.
    send(&mut tp, 10 * MSS);
    let before = tp.snd_cwnd;
    ack(&mut cc, &mut tp, MSS, true);
    let first = tp.snd_ssthresh;
    assert_eq!(first, before - before / 2);
    // That ACK passed the window's end: 1024 - 64 + 64.
    assert_eq!(cc.state().alpha, 1024);
    for _ in 0..5 {
        ack(&mut cc, &mut tp, MSS, true);
        assert_eq!(tp.snd_ssthresh, first);
    }
}

#[test]
fn ece_without_new_ack_is_counted_on_the_next_ack() {
    let (mut cc, mut tp) = conn();
    send(&mut tp, 20 * MSS);
    dupack(&mut cc, &mut tp, true);
    // The stack reports duplicate ACKs with no bytes: nothing counted, the mark consumed.
    assert_eq!((cc.state().bytes_total, cc.state().bytes_ecn), (0, 0));
    assert!(!cc.state().ece_curr && cc.state().ece_prev);
    // A dupack reporting bytes counts at most one segment.
    cc.on_cong_signal(&mut tp, CC_ECN);
    cc.ccv.bytes_this_ack = 1500;
    cc.ack_received(&mut tp, CC_DUPACK);
    assert_eq!((cc.state().bytes_total, cc.state().bytes_ecn), (MSS, MSS));
}

#[test]
fn byte_accounting_with_ece_prev_and_ece_curr() {
    // save_sndnxt: one window far ahead, so that none closes here.
    let (mut cc, mut tp) = conn_window_sent(100);
    // (bytes, ECE, total after, marked after)
    for (i, (bytes, ece, total, marked)) in [
        (3000, false, 3000, 0),
        // ECE turns on: one segment of the ACK is from before the change.
        (3000, true, 6000, 2000),
        (3000, true, 9000, 5000),
        // ECE turns off: one segment of the ACK is from before the change.
        (3000, false, 12_000, 6000),
        (3000, false, 15_000, 6000),
        // Single-segment ACKs are all in one state.
        (1000, true, 16_000, 7000),
        (500, false, 16_500, 7000),
        (1000, true, 17_500, 8000),
        (1000, true, 18_500, 9000),
        (1000, false, 19_500, 9000),
    ]
    .into_iter()
    .enumerate()
    {
        ack(&mut cc, &mut tp, bytes, ece);
        let s = cc.state();
        assert_eq!((s.bytes_total, s.bytes_ecn), (total, marked), "ack {i}");
        assert_eq!(s.ece_prev, ece, "ack {i}");
        assert!(!s.ece_curr, "consumed by ack_received");
        assert_eq!(s.alpha, 1024, "no window closed");
    }
}

#[test]
fn receiver_mirrors_ce_and_acks_at_once_on_changes() {
    let (mut cc, mut tp) = conn();
    // (CE, CWR, ACK at once)
    let packets = [
        (false, false, false),
        (true, false, true),
        (true, false, false),
        (false, false, true),
        (false, false, false),
        (true, true, true),
        (true, false, false),
        (false, true, true),
        (true, false, true),
        // CWR during a CE run: no change of state, but FreeBSD acknowledges CWR at once.
        (true, true, true),
        (true, false, false),
    ];
    for (i, &(ce, cwr, acknow)) in packets.iter().enumerate() {
        // The stack's RFC 3168 part first (base stack ecn_input): CWR clears ECE, CE sets it.
        if cwr {
            tp.t_flags2 &= !tf2::ECN_SND_ECE;
        }
        if ce {
            tp.t_flags2 |= tf2::ECN_SND_ECE;
        }
        cc.ccv.flags = (cc.ccv.flags & !(ccf::IPHDR_CE | ccf::TCPHDR_CWR | ccf::ACKNOW))
            | if ce { ccf::IPHDR_CE } else { 0 }
            | if cwr { ccf::TCPHDR_CWR } else { 0 };
        // A stale request must not survive an unchanged state.
        if !acknow {
            cc.ccv.flags |= ccf::ACKNOW;
        }
        cc.ecnpkt_handler(&mut tp);
        assert_eq!(
            tp.t_flags2 & tf2::ECN_SND_ECE != 0,
            ce,
            "ECE echoes CE, packet {i}"
        );
        assert_eq!(
            cc.ccv.flags & ccf::ACKNOW != 0,
            acknow,
            "ACKNOW, packet {i}"
        );
        assert_eq!(cc.state().ce_prev, ce);
    }
}

#[test]
fn non_ecn_connection_behaves_as_newreno() {
    let (mut cc, mut tp) = conn_with(params(DEFAULT_ALPHA, DEFAULT_SHIFT_G, 0), false);
    // The same connection run by cc.c's NewReno functions, with the same stack bookkeeping.
    let mut reference = CcConn::new(globals());
    let mut rtp = tp.clone();
    let same = |tp: &Tcpcb, rtp: &Tcpcb, step: &str| {
        assert_eq!(
            (tp.snd_cwnd, tp.snd_ssthresh, tp.t_flags, tp.t_flags2),
            (rtp.snd_cwnd, rtp.snd_ssthresh, rtp.t_flags, rtp.t_flags2),
            "after {step}"
        );
    };
    send(&mut tp, 50 * MSS);
    send(&mut rtp, 50 * MSS);
    let acked = |cc: &mut CcConn, tp: &mut Tcpcb| {
        tp.snd_una = tp.snd_una.wrapping_add(2 * MSS);
        cc.on_ack(tp, CC_ACK, 2 * MSS, 2, ABC_L);
    };
    for sig in [0, 0, CC_ECN, 0, CC_NDUPACK, CC_RTO] {
        if sig == 0 {
            acked(&mut cc, &mut tp);
            acked(&mut reference, &mut rtp);
            common::newreno_cc_ack_received(&mut reference.ccv, &mut rtp, CC_ACK);
        } else {
            cc.on_cong_signal(&mut tp, sig);
            reference.on_cong_signal(&mut rtp, sig);
            common::newreno_cc_cong_signal(&mut reference.ccv, &mut rtp, sig);
        }
        same(&tp, &rtp, &format!("signal {sig}"));
        if sig == CC_NDUPACK {
            for (c, t) in [(&mut *cc, &mut tp), (&mut reference, &mut rtp)] {
                t.snd_una = t.snd_max.wrapping_sub(30 * MSS);
                c.ccv.curack = t.snd_una;
                c.ccv.pipe = t.snd_max.wrapping_sub(t.snd_una);
            }
            common::newreno_cc_post_recovery(&mut reference.ccv, &mut rtp);
            {
                let (ack, pipe) = (rtp.snd_una, rtp.snd_max.wrapping_sub(rtp.snd_una));
                reference.on_post_recovery(&mut rtp, ack, pipe)
            };
            {
                let (ack, pipe) = (tp.snd_una, tp.snd_max.wrapping_sub(tp.snd_una));
                cc.on_post_recovery(&mut tp, ack, pipe)
            };
            same(&tp, &rtp, "post_recovery");
        }
    }
    tp.snd_cwnd = 40 * MSS;
    rtp.snd_cwnd = 40 * MSS;
    cc.after_idle(&mut tp);
    common::newreno_cc_after_idle(&mut reference.ccv, &mut rtp);
    same(&tp, &rtp, "after_idle");

    // No DCTCP bookkeeping, and the receiver keeps RFC 3168's ECE.
    assert_eq!(cc.state().alpha, DEFAULT_ALPHA);
    assert_eq!((cc.state().bytes_total, cc.state().num_cong_events), (0, 0));
    tp.t_flags2 |= tf2::ECN_SND_ECE;
    cc.ccv.flags &= !ccf::IPHDR_CE;
    cc.ecnpkt_handler(&mut tp);
    assert_ne!(tp.t_flags2 & tf2::ECN_SND_ECE, 0);
    assert_eq!(cc.ccv.flags & ccf::ACKNOW, 0);
}

#[test]
fn loss_halves_as_freebsd_dctcp() {
    let (mut cc, mut tp) = conn();
    // Not rounded to whole segments (unlike newreno).
    tp.snd_cwnd = 21_500;
    cc.on_cong_signal(&mut tp, CC_NDUPACK);
    assert_eq!(tp.snd_ssthresh, 10_750);
    assert!(tp.in_fastrecovery() && tp.in_congrecovery());
    assert_eq!(cc.state().num_cong_events, 1);
    tp.snd_cwnd = 4 * MSS;
    cc.on_cong_signal(&mut tp, CC_NDUPACK);
    assert_eq!(tp.snd_ssthresh, 10_750, "once per recovery");

    let (mut cc, mut tp) = conn();
    tp.snd_cwnd = 3 * MSS;
    cc.on_cong_signal(&mut tp, CC_NDUPACK);
    assert_eq!(tp.snd_ssthresh, 2 * MSS);

    // A loss after an ECN reduction in the same window halves the window from before it.
    let (mut cc, mut tp) = conn_with(params(512, DEFAULT_SHIFT_G, 0), true);
    tp.snd_cwnd = 20 * MSS;
    cc.on_cong_signal(&mut tp, CC_ECN);
    assert_eq!(tp.snd_cwnd, 15 * MSS);
    cc.on_cong_signal(&mut tp, CC_NDUPACK);
    assert_eq!(tp.snd_ssthresh, 10 * MSS);
    assert_eq!(
        cc.state().num_cong_events,
        0,
        "counted at the ECN reduction only with slowstart"
    );
}

#[test]
fn fast_recovery_defers_the_alpha_update_to_post_recovery() {
    let (mut cc, mut tp) = conn_window_sent(20);
    send(&mut tp, 5 * MSS);
    ack(&mut cc, &mut tp, 2 * MSS, true);
    ack(&mut cc, &mut tp, 2 * MSS, false);
    assert_eq!((cc.state().bytes_total, cc.state().bytes_ecn), (4000, 2000));
    cc.on_cong_signal(&mut tp, CC_NDUPACK);
    // Dupacks in recovery, even one reporting an ACK past the window, do not close it.
    cc.ccv.curack = tp.snd_max;
    cc.ccv.bytes_this_ack = 0;
    cc.ack_received(&mut tp, CC_DUPACK);
    assert_eq!(cc.state().alpha, 1024);
    // Recovery ends: NewReno's deflation, then the window closes:
    // 1024 - 64 + 2000*64/4000 = 992.
    tp.snd_una = tp.snd_max.wrapping_sub(3 * MSS);
    let ssthresh = tp.snd_ssthresh;
    {
        let (ack, pipe) = (tp.snd_una, tp.snd_max.wrapping_sub(tp.snd_una));
        cc.on_post_recovery(&mut tp, ack, pipe)
    };
    assert_eq!(
        ssthresh,
        10 * MSS,
        "half the window before the ECN reduction"
    );
    // RFC 6582: 3 MSS in flight, less than ssthresh: cwnd = pipe + 1 MSS.
    assert_eq!(tp.snd_cwnd, 4 * MSS);
    assert_eq!(cc.state().alpha, 992);
    assert_eq!(
        (cc.state().bytes_total, cc.state().save_sndnxt),
        (0, tp.snd_nxt)
    );
}

#[test]
fn rto_collapses_cwnd_closes_the_window_and_sends_cwr() {
    let (mut cc, mut tp) = conn_window_sent(30);
    tp.snd_wnd = 16 * MSS;
    send(&mut tp, 10 * MSS);
    ack(&mut cc, &mut tp, 4 * MSS, false);
    ack(&mut cc, &mut tp, 4 * MSS, true);
    // 3000 of 8000 marked.
    cc.on_cong_signal(&mut tp, CC_RTO);
    assert_eq!((tp.snd_cwnd, tp.snd_ssthresh), (MSS, 8 * MSS));
    assert_ne!(tp.t_flags2 & tf2::ECN_SND_CWR, 0);
    assert!(!tp.in_recovery());
    // 1024 - 64 + 3000*64/8000 (24) = 984.
    assert_eq!(cc.state().alpha, 984);
    assert_eq!(cc.state().save_sndnxt, tp.snd_nxt.wrapping_add(MSS));
    assert_eq!(cc.state().num_cong_events, 1);
}

#[test]
fn slowstart_sysctl_halves_the_first_reduction() {
    // alpha 0: without the sysctl an ECE would not reduce at all.
    let p = params(0, DEFAULT_SHIFT_G, 1);
    let (mut cc, mut tp) = conn_with(p, true);
    tp.snd_cwnd = 20 * MSS;
    send(&mut tp, 20 * MSS);
    cc.conn_init(&mut tp);
    ack(&mut cc, &mut tp, MSS, false);
    assert_eq!(cc.state().bytes_total, MSS);
    assert_eq!(tp.snd_cwnd, 21 * MSS);
    cc.on_cong_signal(&mut tp, CC_ECN);
    assert_eq!((tp.snd_cwnd, tp.snd_ssthresh), (21 * MSS / 2, 21 * MSS / 2));
    let s = cc.state();
    assert_eq!((s.alpha, s.bytes_total, s.num_cong_events), (1024, 0, 1));
    assert_eq!(s.save_sndnxt, tp.snd_nxt);
    // Later reductions use alpha.
    tp.t_flags &= !tf::CONGRECOVERY;
    tp.snd_cwnd = 20 * MSS;
    cc.on_cong_signal(&mut tp, CC_ECN);
    assert_eq!(tp.snd_cwnd, 10 * MSS);
    assert_eq!(cc.state().num_cong_events, 2);

    // After a loss the first ECN is not the first congestion event: no halving.
    let (mut cc, mut tp) = conn_with(p, true);
    tp.snd_cwnd = 20 * MSS;
    cc.on_cong_signal(&mut tp, CC_NDUPACK);
    tp.t_flags &= !tf::INRECOVERY;
    cc.on_cong_signal(&mut tp, CC_ECN);
    assert_eq!(tp.snd_cwnd, 20 * MSS, "alpha 0");

    // Without the sysctl, alpha 0 leaves cwnd alone.
    let (mut cc, mut tp) = conn_with(params(0, DEFAULT_SHIFT_G, 0), true);
    tp.snd_cwnd = 20 * MSS;
    cc.on_cong_signal(&mut tp, CC_ECN);
    assert_eq!(tp.snd_cwnd, 20 * MSS);
    assert_eq!(cc.state().num_cong_events, 0);
}

#[test]
fn after_idle_resets_alpha_and_restarts() {
    let p = params(DEFAULT_ALPHA, DEFAULT_SHIFT_G, 0);
    let (mut cc, mut tp) = conn_with(p, true);
    tp.snd_cwnd = 100 * MSS;
    tp.snd_ssthresh = 20 * MSS;
    run_windows(&mut cc, &mut tp, &[acks(2, 1000, false)]);
    assert_eq!(cc.state().alpha, 960);
    send(&mut tp, 10 * MSS);
    ack(&mut cc, &mut tp, 2 * MSS, true);
    tp.t_flags &= !tf::CONGRECOVERY;
    p[PARAM_ALPHA].store(300, Ordering::Relaxed);
    let cwnd = tp.snd_cwnd;
    let ssthresh = tp.snd_ssthresh;
    cc.after_idle(&mut tp);
    let s = cc.state();
    assert_eq!((s.alpha, s.bytes_total, s.bytes_ecn), (300, 0, 0));
    assert!(!s.ece_prev && !s.ece_curr);
    assert_eq!(s.save_sndnxt, tp.snd_nxt);
    // NewReno's restart window (RFC 5681 4.1, IW10) and ssthresh >= 3/4 cwnd.
    assert_eq!(tp.snd_cwnd, 10 * MSS);
    assert_eq!(tp.snd_ssthresh, ssthresh.max(cwnd - cwnd / 4));
}

#[test]
fn sysctls_as_freebsd() {
    let algo = cc_algo();
    assert_eq!(algo.name().as_str(), "dctcp");
    let ps = algo.params();
    assert_eq!(
        testing::param_table::<Dctcp>(),
        [
            ("alpha", 1024, 0, 1024),
            ("shift_g", 4, 0, 10),
            ("slowstart", 0, 0, 1),
        ]
    );
    assert_eq!(ps[PARAM_ALPHA].name.as_str(), "alpha");
    assert_eq!(ps[PARAM_SHIFT_G].name.as_str(), "shift_g");
    assert_eq!(ps[PARAM_SLOWSTART].name.as_str(), "slowstart");
    // FreeBSD has no TCP_CCALGOOPT for dctcp; it has an ECN packet handler.
    assert!(algo.ctl_output().is_none());
    assert!(algo.ecnpkt_handler().is_some());
    assert!(algo.counters().is_empty());
    let check = algo.param_check().unwrap();
    let current = params(DEFAULT_ALPHA, DEFAULT_SHIFT_G, 0);
    for (i, p) in ps.iter().enumerate() {
        assert!(check(i as u32, p.min, globals(), current.into()).is_ok());
        assert!(check(i as u32, p.max, globals(), current.into()).is_ok());
    }
}

#[test]
fn initial_alpha_comes_from_the_sysctl() {
    let (cc, _tp) = conn_with(params(256, DEFAULT_SHIFT_G, 0), true);
    assert_eq!(cc.state().alpha, 256);
    let (cc, _tp) = conn();
    assert_eq!(cc.state().alpha, 1024, "RFC 8257 3.3: alpha starts at 1");
}

#[test]
fn cb_init_keeps_cwnd_and_conn_init_starts_a_window() {
    let mut tp = Tcpcb::new(MSS);
    tp.snd_cwnd = 12_345;
    tp.snd_ssthresh = 5_000;
    tp.snd_nxt = 777;
    let p = params(DEFAULT_ALPHA, DEFAULT_SHIFT_G, 0);
    let mut cc = TestConn::<Dctcp>::attach(globals(), p, &mut tp);
    assert_eq!((tp.snd_cwnd, tp.snd_ssthresh), (12_345, 5_000));
    // Not an ECN connection yet: conn_init leaves the window alone.
    cc.conn_init(&mut tp);
    assert_eq!(cc.state().save_sndnxt, 0);
    tp.t_flags2 |= tf2::ECN_PERMIT;
    cc.conn_init(&mut tp);
    assert_eq!(cc.state().save_sndnxt, 777);
    cc.assert_cb_destroy_frees_state();
}

proptest! {
    /// For a constant marked fraction F = e/t, alpha moves monotonically (never overshooting)
    /// to the fixed point of the update, which is F to within the resolution of g:
    /// alpha >> shift_g == (e << (10 - shift_g)) / t.
    #[test]
    fn alpha_converges_to_a_constant_fraction(
        alpha0 in 0u32..=1024,
        shift_g in 0u32..=10,
        t in 1u32..=1_000_000,
        num in 0u32..=1000,
    ) {
        let e = (t as u64 * num as u64 / 1000) as u32;
        let k = ((e as u64) << (10 - shift_g)) / t as u64;
        let mut alpha = alpha0;
        let rising = (alpha >> shift_g) as u64 <= k;
        // Each step moves alpha by at least 1 until it is fixed: 1024 steps suffice.
        for _ in 0..=1024 {
            let next = dctcp_update_alpha(alpha, e, t, shift_g);
            prop_assert!(next <= 1024);
            let monotone = if rising { next >= alpha } else { next <= alpha };
            prop_assert!(monotone, "overshoot: {} -> {}", alpha, next);
            alpha = next;
        }
        prop_assert_eq!(dctcp_update_alpha(alpha, e, t, shift_g), alpha, "fixed point");
        if e == t {
            prop_assert_eq!(alpha, 1024);
        } else {
            prop_assert_eq!((alpha >> shift_g) as u64, k);
        }
        let f = 1024.0 * e as f64 / t as f64;
        prop_assert!((alpha as f64 - f).abs() < (1u32 << shift_g) as f64);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// The same through the module: windows of ten one-segment ACKs, the first m with ECE.
    #[test]
    fn module_alpha_converges_for_constant_marking(
        alpha0 in 0u32..=1024,
        shift_g in 0u32..=10,
        m in 0usize..=10,
    ) {
        let (mut cc, mut tp) = conn_with(params(alpha0, shift_g, 0), true);
        tp.snd_cwnd = 100 * MSS;
        let mut window = acks(m, MSS, true);
        window.extend(acks(10 - m, MSS, false));
        let windows = vec![window; 1030];
        let alphas = run_windows(&mut cc, &mut tp, &windows);
        let alpha = *alphas.last().unwrap();
        prop_assert_eq!(alphas[alphas.len() - 2], alpha, "settled");
        let k = ((m as u64 * 1000) << (10 - shift_g)) / 10_000;
        if m == 10 {
            prop_assert_eq!(alpha, 1024);
        } else {
            prop_assert_eq!((alpha >> shift_g) as u64, k);
        }
    }

    /// Whatever the ACKs, alpha stays within [0, 1024], marked bytes never exceed acked
    /// bytes, and an ECN reduction never takes cwnd below two segments.
    #[test]
    fn alpha_and_counts_stay_in_range(
        alpha0 in 0u32..=1024,
        shift_g in 0u32..=10,
        slowstart in 0u32..=1,
        events in prop::collection::vec((0u32..=4 * MSS, any::<bool>(), 0u8..4), 1..200),
    ) {
        let (mut cc, mut tp) = conn_with(params(alpha0, shift_g, slowstart), true);
        for (bytes, ece, kind) in events {
            match kind {
                // Send and acknowledge right away: windows close often.
                0 => {
                    send(&mut tp, bytes);
                    ack(&mut cc, &mut tp, bytes, ece);
                }
                // Keep more outstanding: longer windows.
                1 => {
                    send(&mut tp, 4 * bytes);
                    ack(&mut cc, &mut tp, bytes, ece);
                }
                2 => dupack(&mut cc, &mut tp, ece),
                _ => {
                    cc.on_cong_signal(&mut tp, CC_ECN);
                    cc.ccv.bytes_this_ack = bytes;
                    cc.ack_received(&mut tp, CC_DUPACK);
                }
            }
            let s = cc.state();
            prop_assert!(s.alpha <= 1024);
            prop_assert!(s.bytes_ecn <= s.bytes_total);
            prop_assert!(!s.ece_curr);
            prop_assert!(tp.snd_cwnd >= 2 * MSS);
        }
    }
}
