//! Vegas against the paper's per-RTT rule and FreeBSD cc_vegas's slow start and loss handling.

use super::*;
use plugtcp_abi::cc::{ccf, CcConn, CC_ACK, CC_NDUPACK, CC_RTO};
use plugtcp_abi::tcpcb::tf;
use plugtcp_abi::HookStatus;
use plugtcp_tcpkit::cc::testing::{self, globals, TestConn};
use proptest::prelude::*;
use std::sync::atomic::{AtomicIsize, Ordering};

const MSS: u32 = 1460;
/// BaseRTT of the tests (us).
const MINRTT: u32 = 100_000;

/// A connection on vegas through its ABI descriptor with sysctls alpha/beta, cwnd
/// `cwnd_segs`, ssthresh `ssthresh`, and an earlier round that saw BaseRTT = MINRTT.
fn conn_with(alpha: i64, beta: i64, cwnd_segs: u32, ssthresh: u32) -> (TestConn<Vegas>, Tcpcb) {
    let params = testing::params::<Vegas>(&[(PARAM_ALPHA, alpha), (PARAM_BETA, beta)]);
    let mut tp = Tcpcb::new(MSS);
    tp.snd_cwnd = cwnd_segs * MSS;
    tp.snd_ssthresh = ssthresh;
    tp.snd_wnd = 1 << 30;
    tp.snd_scale = 14;
    let mut cc = TestConn::<Vegas>::attach(globals(), params, &mut tp);
    cc.state_mut().hertt.ertt.minrtt = MINRTT;
    (cc, tp)
}

/// Congestion avoidance (ssthresh below cwnd) with the default sysctls.
fn ca_conn(cwnd_segs: u32) -> (TestConn<Vegas>, Tcpcb) {
    conn_with(1, 3, cwnd_segs, 2 * MSS)
}

/// An ACK of `bytes` while cwnd-limited (no ABC window completed).
fn ack(cc: &mut CcConn, tp: &mut Tcpcb, bytes: u32) {
    tp.snd_una = tp.snd_una.wrapping_add(bytes);
    cc.ccv.bytes_this_ack = bytes;
    cc.ccv.nsegs = 1;
    cc.ccv.flags |= ccf::CWND_LIMITED;
    cc.ack_received(tp, CC_ACK);
}

/// An ACK of `bytes` with an RTT sample of `rtt_us`, as the stack calls the hooks: the
/// sample first, then the ACK.
fn ack_with_rtt(cc: &mut CcConn, tp: &mut Tcpcb, rtt_us: u32, bytes: u32) {
    cc.rttsample(tp, rtt_us, 0, 0);
    ack(cc, tp, bytes);
}

/// Begins a round with `bytes` outstanding, as the stack does at the ACK that ends the
/// previous one: newround before it applies the ACK, then the ACK (here acknowledging
/// nothing of the new round, and without an RTT sample).
fn begin_round(cc: &mut CcConn, tp: &mut Tcpcb, bytes: u32) {
    tp.snd_max = tp.snd_una.wrapping_add(bytes);
    tp.snd_nxt = tp.snd_max;
    cc.newround(tp, 0);
    ack(cc, tp, 0);
}

/// The stack's calls for the ACK that ends a round, before the ACK itself: its RTT sample,
/// then newround. The caller's next `ack` is that ACK, which closes the round's measurement.
fn end_round(cc: &mut CcConn, tp: &mut Tcpcb, rtt_us: u32) {
    cc.rttsample(tp, rtt_us, 0, 0);
    cc.newround(tp, 0);
}

/// A round that begins with `bytes` outstanding and ends with an ACK whose RTT sample is
/// `rtt_us`; the caller's next `ack` is that ACK, where Vegas adjusts.
fn measured_round(cc: &mut CcConn, tp: &mut Tcpcb, rtt_us: u32, bytes: u32) {
    begin_round(cc, tp, bytes);
    end_round(cc, tp, rtt_us);
}

#[test]
fn ndiff_exact_numbers() {
    // expected = cwnd / minRTT, actual = bytes / RTT, diff in segments of BaseRTT.
    assert_eq!(vegas_ndiff(20 * MSS, MINRTT, 20 * MSS, MINRTT, MSS), 0);
    assert_eq!(vegas_ndiff(20 * MSS, MINRTT, 17 * MSS, MINRTT, MSS), 3);
    // No rate lost, but RTT up 25%: 20 * (1 - 100/125) = 4 segments queued.
    assert_eq!(vegas_ndiff(20 * MSS, MINRTT, 20 * MSS, 125_000, MSS), 4);
    // 20 - 18.5 * 100/110 = 3.18...: truncated to 3.
    assert_eq!(
        vegas_ndiff(20 * MSS, MINRTT, 18 * MSS + MSS / 2, 110_000, MSS),
        3
    );
    // More delivered than expected (negative), truncated towards zero like C.
    assert_eq!(
        vegas_ndiff(20 * MSS, MINRTT, 20 * MSS + MSS / 2, MINRTT, MSS),
        0
    );
    assert_eq!(vegas_ndiff(20 * MSS, MINRTT, 22 * MSS, MINRTT, MSS), -2);
}

proptest! {
    #[test]
    fn ndiff_is_the_paper_diff_truncated(
        cwnd in 1u32..10_000_000,
        minrtt in 1u32..2_000_000,
        extra in 0u32..2_000_000,
        bytes in 0u32..10_000_000,
        mss in 536u32..9000,
    ) {
        let rtt = minrtt + extra;
        let expected = cwnd as f64 / minrtt as f64;
        let actual = bytes as f64 / rtt as f64;
        let diff = (expected - actual) * minrtt as f64 / mss as f64;
        let got = vegas_ndiff(cwnd, minrtt, bytes, rtt, mss) as f64;
        prop_assert!((got - diff.trunc()).abs() <= 1.0, "ndiff {} for diff {}", got, diff);
        // Where diff is clear of f64 rounding around an integer, it is exactly its truncation.
        if (diff - diff.round()).abs() > 1e-4 {
            prop_assert_eq!(got, diff.trunc());
        }
    }
}

#[test]
fn diff_below_alpha_adds_one_segment() {
    let (mut cc, mut tp) = ca_conn(20);
    measured_round(&mut cc, &mut tp, MINRTT, 20 * MSS);
    assert_eq!(
        tp.snd_cwnd,
        20 * MSS,
        "nothing before the round is measured"
    );
    ack(&mut cc, &mut tp, MSS);
    assert_eq!(tp.snd_cwnd, 21 * MSS);
    assert!(!cc.state().slow_start_toggle);
    // Half a segment short of cwnd: a window full of whole segments, nothing queued.
    let (mut cc, mut tp) = ca_conn(20);
    measured_round(&mut cc, &mut tp, MINRTT, 19 * MSS + MSS / 2);
    ack(&mut cc, &mut tp, MSS);
    assert_eq!(tp.snd_cwnd, 21 * MSS);
}

#[test]
fn diff_between_alpha_and_beta_holds() {
    for queued in [1, 2, 3] {
        let (mut cc, mut tp) = ca_conn(20);
        measured_round(&mut cc, &mut tp, MINRTT, (20 - queued) * MSS);
        ack(&mut cc, &mut tp, MSS);
        assert_eq!(tp.snd_cwnd, 20 * MSS, "diff {queued}");
    }
}

#[test]
fn diff_above_beta_takes_one_segment_away() {
    let (mut cc, mut tp) = ca_conn(20);
    measured_round(&mut cc, &mut tp, MINRTT, 16 * MSS);
    ack(&mut cc, &mut tp, MSS);
    assert_eq!(tp.snd_cwnd, 19 * MSS);
    assert_eq!(
        tp.snd_ssthresh,
        2 * MSS,
        "ssthresh below cwnd is left alone"
    );
    // The same 4 segments from a longer RTT at the full rate.
    let (mut cc, mut tp) = ca_conn(20);
    measured_round(&mut cc, &mut tp, 125_000, 20 * MSS);
    ack(&mut cc, &mut tp, MSS);
    assert_eq!(tp.snd_cwnd, 19 * MSS);
}

#[test]
fn thresholds_come_from_the_sysctls() {
    // alpha = 3, beta = 5: diff 2 now increases, diff 4 holds.
    let (mut cc, mut tp) = conn_with(3, 5, 20, 2 * MSS);
    measured_round(&mut cc, &mut tp, MINRTT, 18 * MSS);
    ack(&mut cc, &mut tp, MSS);
    assert_eq!(tp.snd_cwnd, 21 * MSS);
    let (mut cc, mut tp) = conn_with(3, 5, 20, 2 * MSS);
    measured_round(&mut cc, &mut tp, MINRTT, 16 * MSS);
    ack(&mut cc, &mut tp, MSS);
    assert_eq!(tp.snd_cwnd, 20 * MSS);
}

#[test]
fn decrease_floors_at_two_segments() {
    // beta = 1: diff 3 from a 3-segment window with nothing delivered.
    let (mut cc, mut tp) = conn_with(1, 1, 3, 2 * MSS);
    measured_round(&mut cc, &mut tp, MINRTT, 0);
    ack(&mut cc, &mut tp, MSS);
    assert_eq!(tp.snd_cwnd, 2 * MSS);
    measured_round(&mut cc, &mut tp, MINRTT, 0);
    ack(&mut cc, &mut tp, MSS);
    assert_eq!(tp.snd_cwnd, 2 * MSS);
}

#[test]
fn expected_rate_uses_cwnd_at_the_start_of_the_measured_round() {
    let (mut cc, mut tp) = ca_conn(20);
    begin_round(&mut cc, &mut tp, 20 * MSS);
    ack(&mut cc, &mut tp, 10 * MSS);
    // cwnd changed during the round (e.g. recovery ended): the round was sent with 20.
    tp.snd_cwnd = 40 * MSS;
    end_round(&mut cc, &mut tp, MINRTT);
    ack(&mut cc, &mut tp, 10 * MSS);
    assert_eq!(cc.state().marked_snd_cwnd, 20 * MSS);
    assert_eq!(tp.snd_cwnd, 41 * MSS, "diff 0 against the 20-segment round");
}

#[test]
fn once_per_rtt_only() {
    let (mut cc, mut tp) = ca_conn(20);
    measured_round(&mut cc, &mut tp, MINRTT, 20 * MSS);
    for _ in 0..50 {
        ack(&mut cc, &mut tp, MSS);
    }
    assert_eq!(tp.snd_cwnd, 21 * MSS, "one step for the whole RTT");
    // A round with no RTT sample publishes nothing.
    cc.newround(&mut tp, 0);
    ack(&mut cc, &mut tp, MSS);
    cc.newround(&mut tp, 0);
    ack(&mut cc, &mut tp, MSS);
    assert_eq!(tp.snd_cwnd, 21 * MSS);
    // The next measured round gives the next step.
    measured_round(&mut cc, &mut tp, MINRTT, 21 * MSS);
    ack(&mut cc, &mut tp, MSS);
    assert_eq!(tp.snd_cwnd, 22 * MSS);
}

#[test]
fn rtt_is_the_round_ending_sample_not_the_round_minimum() {
    // Two segments per ACK: the round's first ACK saw BaseRTT, its last 125 ms. The round's
    // smallest sample would give diff 0 and an increase; a larger window takes more samples
    // per round, so that minimum favours it.
    let (mut cc, mut tp) = ca_conn(20);
    begin_round(&mut cc, &mut tp, 20 * MSS);
    ack_with_rtt(&mut cc, &mut tp, MINRTT, 2 * MSS);
    for _ in 0..8 {
        ack_with_rtt(&mut cc, &mut tp, 110_000, 2 * MSS);
    }
    end_round(&mut cc, &mut tp, 125_000);
    ack(&mut cc, &mut tp, 2 * MSS);
    assert_eq!(cc.state().hertt.ertt.markedpkt_rtt, 125_000);
    assert_eq!(
        tp.snd_cwnd,
        19 * MSS,
        "20 * (1 - 100/125) = 4 segments queued"
    );
}

#[test]
fn a_delayed_ack_does_not_end_a_round_with_its_wait() {
    // The receiver acknowledges every other segment; the round's last, lone segment is
    // acknowledged by its delayed-ACK timer 40 ms late. h_ertt's guard refuses that
    // sample, and the round's RTT is the latest it accepted.
    let (mut cc, mut tp) = ca_conn(20);
    begin_round(&mut cc, &mut tp, 19 * MSS + MSS / 2);
    for _ in 0..9 {
        ack_with_rtt(&mut cc, &mut tp, MINRTT, 2 * MSS);
    }
    end_round(&mut cc, &mut tp, MINRTT + 40_000);
    ack(&mut cc, &mut tp, MSS);
    let e = &cc.state().hertt.ertt;
    assert_eq!((e.markedpkt_rtt, e.maxrtt), (MINRTT, MINRTT));
    assert_eq!(tp.snd_cwnd, 21 * MSS, "diff 0, not 20 * (1 - 100/140) = 5");
}

#[test]
fn a_round_without_an_accepted_sample_measures_nothing() {
    // A round on an empty queue acknowledged two segments per ACK: the guard goes up.
    let (mut cc, mut tp) = ca_conn(20);
    begin_round(&mut cc, &mut tp, 20 * MSS);
    ack_with_rtt(&mut cc, &mut tp, MINRTT, 2 * MSS);
    end_round(&mut cc, &mut tp, MINRTT);
    ack(&mut cc, &mut tp, 2 * MSS);
    assert_eq!(tp.snd_cwnd, 21 * MSS);
    // A round whose only sample comes with a lone segment's ACK: refused, no measurement.
    measured_round(&mut cc, &mut tp, MINRTT, 16 * MSS);
    ack(&mut cc, &mut tp, MSS);
    assert!(!cc.state().hertt.ertt.new_measurement);
    assert_eq!(tp.snd_cwnd, 21 * MSS, "diff 5 was never measured");
}

#[test]
fn usable_cwnd_drops_what_whole_segments_cannot_fill() {
    assert_eq!(usable_cwnd(20 * MSS, 19 * MSS + 1, MSS), 19 * MSS + 1);
    assert_eq!(usable_cwnd(20 * MSS + 852, 20 * MSS, MSS), 20 * MSS);
    assert_eq!(usable_cwnd(20 * MSS, 20 * MSS, MSS), 20 * MSS);
    // A whole segment or more unused: the sender is not cwnd-limited, cwnd stays.
    assert_eq!(usable_cwnd(20 * MSS, 19 * MSS, MSS), 20 * MSS);
    assert_eq!(usable_cwnd(20 * MSS, 0, MSS), 20 * MSS);
    // More outstanding than cwnd (cwnd just fell): cwnd.
    assert_eq!(usable_cwnd(20 * MSS, 25 * MSS, MSS), 20 * MSS);
}

#[test]
fn cwnd_beyond_whole_segments_is_not_queued_data() {
    // cwnd 100.6 segments of which the sender holds 100 (whole segments), RTT 0.6% above
    // BaseRTT: 0.6 segments queued, below alpha. Counting the 0.6 segment the sender cannot
    // send as queued too would make diff 1 and hold cwnd.
    let (cwnd, flight, rtt) = (100 * MSS + 876, 100 * MSS, 100_604);
    assert_eq!(vegas_ndiff(cwnd, MINRTT, flight, rtt, MSS), 1);
    let (mut cc, mut tp) = ca_conn(100);
    tp.snd_cwnd = cwnd;
    measured_round(&mut cc, &mut tp, rtt, flight);
    ack(&mut cc, &mut tp, MSS);
    assert_eq!(cc.state().marked_snd_cwnd, flight);
    assert_eq!(tp.snd_cwnd, cwnd + MSS);
}

#[test]
fn slow_start_grows_every_other_rtt() {
    let (mut cc, mut tp) = conn_with(1, 3, 10, u32::MAX);
    assert!(cc.state().slow_start_toggle);
    // RTT 1: NewReno slow start (ABC L = 2 per ACK).
    begin_round(&mut cc, &mut tp, 10 * MSS);
    ack(&mut cc, &mut tp, 2 * MSS);
    assert_eq!(tp.snd_cwnd, 12 * MSS);
    // Measurement with diff < alpha in slow start: toggle off, no growth this RTT.
    end_round(&mut cc, &mut tp, MINRTT);
    ack(&mut cc, &mut tp, 2 * MSS);
    assert!(!cc.state().slow_start_toggle);
    assert_eq!(tp.snd_cwnd, 12 * MSS);
    measured_round(&mut cc, &mut tp, MINRTT, 12 * MSS);
    assert_eq!(tp.snd_cwnd, 12 * MSS);
    // Next measurement: toggle on, growth resumes from this very ACK.
    ack(&mut cc, &mut tp, 2 * MSS);
    assert!(cc.state().slow_start_toggle);
    assert_eq!(tp.snd_cwnd, 14 * MSS);
    ack(&mut cc, &mut tp, 2 * MSS);
    assert_eq!(tp.snd_cwnd, 16 * MSS);
}

#[test]
fn slow_start_hold_keeps_toggle() {
    let (mut cc, mut tp) = conn_with(1, 3, 10, u32::MAX);
    cc.state_mut().slow_start_toggle = false;
    cc.newround(&mut tp, 0);
    // diff 2: neither increase nor decrease, the toggle stays as it was.
    measured_round(&mut cc, &mut tp, MINRTT, 8 * MSS);
    ack(&mut cc, &mut tp, MSS);
    assert!(!cc.state().slow_start_toggle);
    assert_eq!(tp.snd_cwnd, 10 * MSS);
}

#[test]
fn rate_signal_ends_slow_start() {
    let (mut cc, mut tp) = conn_with(1, 3, 20, u32::MAX);
    cc.state_mut().slow_start_toggle = false;
    measured_round(&mut cc, &mut tp, MINRTT, 16 * MSS);
    ack(&mut cc, &mut tp, MSS);
    assert_eq!((tp.snd_cwnd, tp.snd_ssthresh), (19 * MSS, 19 * MSS));
    assert!(!cc.state().slow_start_toggle);
    // Now in congestion avoidance without NewReno growth: only Vegas moves cwnd.
    cc.ccv.flags |= ccf::ABC_SENTAWND;
    ack(&mut cc, &mut tp, MSS);
    assert_eq!(tp.snd_cwnd, 19 * MSS);
}

#[test]
fn rate_signal_ignored_in_recovery() {
    // In ECN's congestion recovery ACKs still reach the module.
    let (mut cc, mut tp) = ca_conn(20);
    measured_round(&mut cc, &mut tp, MINRTT, 16 * MSS);
    tp.t_flags |= tf::CONGRECOVERY;
    ack(&mut cc, &mut tp, MSS);
    assert_eq!(tp.snd_cwnd, 20 * MSS);
    assert!(!cc.state().slow_start_toggle);
}

#[test]
fn loss_is_newreno_and_stops_newreno_growth() {
    let (mut cc, mut tp) = conn_with(1, 3, 20, u32::MAX);
    tp.snd_cwnd = 20 * MSS + 100;
    cc.cong_signal(&mut tp, CC_NDUPACK);
    assert_eq!(tp.snd_ssthresh, 10 * MSS);
    assert!(tp.in_fastrecovery() && tp.in_congrecovery());
    assert!(
        !cc.state().slow_start_toggle,
        "cwnd >= ssthresh on entering recovery"
    );
    // A second signal in the same recovery changes nothing.
    tp.snd_cwnd = 4 * MSS;
    cc.cong_signal(&mut tp, CC_NDUPACK);
    assert_eq!(tp.snd_ssthresh, 10 * MSS);
    // Leaving recovery as NewReno (RFC 6582).
    tp.snd_ssthresh = 10 * MSS;
    tp.snd_max = 100 * MSS;
    cc.ccv.curack = 80 * MSS;
    cc.ccv.pipe = tp.snd_max.wrapping_sub(cc.ccv.curack);
    cc.post_recovery(&mut tp);
    assert_eq!(tp.snd_cwnd, 10 * MSS);
    tp.t_flags &= !tf::INRECOVERY;
    // Congestion avoidance afterwards grows by Vegas only.
    cc.ccv.flags |= ccf::ABC_SENTAWND;
    ack(&mut cc, &mut tp, MSS);
    assert_eq!(tp.snd_cwnd, 10 * MSS);
}

#[test]
fn ecn_and_rto_are_newreno() {
    let (mut cc, mut tp) = ca_conn(20);
    testing::assert_newreno_ecn(&mut cc, &mut tp);
    assert!(!cc.state().slow_start_toggle);

    let (mut cc, mut tp) = ca_conn(30);
    tp.snd_wnd = 16 * MSS;
    cc.cong_signal(&mut tp, CC_RTO);
    assert_eq!((tp.snd_cwnd, tp.snd_ssthresh), (MSS, 8 * MSS));
    // Not a recovery: the toggle is left as it was.
    assert!(cc.state().slow_start_toggle);
}

#[test]
fn increase_capped_at_scaled_max_window() {
    let (mut cc, mut tp) = ca_conn(44);
    tp.snd_scale = 0;
    measured_round(&mut cc, &mut tp, MINRTT, 44 * MSS);
    ack(&mut cc, &mut tp, MSS);
    assert_eq!(tp.snd_cwnd, 65_535);
}

#[test]
fn conn_init_restarts_slow_start_toggle() {
    let (mut cc, mut tp) = ca_conn(10);
    cc.state_mut().slow_start_toggle = false;
    cc.conn_init(&mut tp);
    assert!(cc.state().slow_start_toggle);
}

#[test]
fn after_idle_restart_window() {
    let (mut cc, mut tp) = ca_conn(100);
    testing::assert_newreno_after_idle(&mut cc, &mut tp);
}

#[test]
fn sysctl_checks_alpha_le_beta() {
    // What the host does for `sysctl net.inet.tcp.cc.vegas.<param>=value`.
    let set = testing::sysctl::<Vegas>;
    let einval = HookStatus(Errno::EINVAL.0);
    let g = globals();
    let p = [AtomicIsize::new(1), AtomicIsize::new(3)];
    assert_eq!(set(g, &p, PARAM_ALPHA, 0), einval, "alpha > 0");
    assert_eq!(set(g, &p, PARAM_BETA, 0), einval, "beta > 0");
    assert_eq!(set(g, &p, PARAM_ALPHA, 4), einval, "alpha 4 > beta 3");
    assert!(set(g, &p, PARAM_ALPHA, 3).is_ok(), "alpha == beta allowed");
    assert_eq!(set(g, &p, PARAM_BETA, 2), einval, "beta 2 < alpha 3");
    assert!(set(g, &p, PARAM_BETA, 8).is_ok());
    assert!(set(g, &p, PARAM_ALPHA, 6).is_ok());
    assert_eq!(set(g, &p, PARAM_BETA, 5), einval);
    assert_eq!(
        (p[0].load(Ordering::Relaxed), p[1].load(Ordering::Relaxed)),
        (6, 8)
    );
    // Other values (another host, or a fresh registration with the defaults) are checked
    // against themselves, not against what this module accepted before.
    let q = [AtomicIsize::new(1), AtomicIsize::new(3)];
    assert_eq!(set(g, &q, PARAM_ALPHA, 4), einval);
    assert!(set(g, &q, PARAM_BETA, 1).is_ok());
    assert_eq!(set(g, &q, PARAM_ALPHA, 2), einval);
    // The check reads the value stored now, not a copy of an earlier one.
    p[PARAM_BETA].store(20, Ordering::Relaxed);
    assert!(set(g, &p, PARAM_ALPHA, 15).is_ok());
    p[PARAM_ALPHA].store(2, Ordering::Relaxed);
    assert!(set(g, &p, PARAM_BETA, 3).is_ok());
    assert_eq!(set(g, &p, PARAM_ALPHA, 4), einval);
}

#[test]
fn declared_as_freebsd() {
    let algo = cc_algo();
    assert_eq!(algo.name().as_str(), "vegas");
    let uint = u32::MAX as i64;
    assert_eq!(
        testing::param_table::<Vegas>(),
        [("alpha", 1, 1, uint), ("beta", 3, 1, uint)]
    );
    assert!(algo.ctl_output().is_none() && algo.ecnpkt_handler().is_none());
}

#[test]
fn round_bytes_are_the_data_outstanding_when_it_began() {
    // The stack ends a round at the first ACK at or past what was outstanding when it
    // began, before applying that ACK: with delayed ACKs the ACKs in between cover two
    // segments less than the round's data. The round's data is what counts.
    let (mut cc, mut tp) = ca_conn(20);
    begin_round(&mut cc, &mut tp, 20 * MSS);
    for _ in 0..9 {
        ack_with_rtt(&mut cc, &mut tp, MINRTT, 2 * MSS);
    }
    end_round(&mut cc, &mut tp, MINRTT);
    ack(&mut cc, &mut tp, 2 * MSS);
    assert_eq!(cc.state().hertt.ertt.bytes_tx_in_marked_rtt, 20 * MSS);
    assert_eq!(tp.snd_cwnd, 21 * MSS, "empty queue: diff 0, not 2");
}

#[test]
fn round_begun_before_attach_measures_nothing() {
    let (mut cc, mut tp) = ca_conn(20);
    end_round(&mut cc, &mut tp, MINRTT);
    ack(&mut cc, &mut tp, MSS);
    assert!(!cc.state().hertt.ertt.new_measurement);
    assert_eq!(tp.snd_cwnd, 20 * MSS);
}
