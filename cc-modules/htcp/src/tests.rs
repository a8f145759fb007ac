//! H-TCP against the paper's alpha(delta) and beta, and FreeBSD cc_htcp's window arithmetic.

use super::*;
use plugtcp_abi::cc::CC_ACK;
use plugtcp_tcpkit::cc::testing::{self, TestConn};
use proptest::prelude::*;

const MSS: u32 = 1460;
const SEC: u64 = 1_000_000_000;
/// An arbitrary host-clock origin, so that no test depends on time 0.
const T0: u64 = 5_000 * SEC;

/// A connection on htcp through its ABI descriptor, as a host drives it, with its own
/// sysctl values (adaptive_backoff, rtt_scaling), created at host time T0.
fn conn_with(adaptive_backoff: i64, rtt_scaling: i64) -> (TestConn<Htcp>, Tcpcb) {
    let params = testing::params::<Htcp>(&[
        (PARAM_ADAPTIVE_BACKOFF, adaptive_backoff),
        (PARAM_RTT_SCALING, rtt_scaling),
    ]);
    let mut tp = Tcpcb::new(MSS);
    tp.snd_cwnd = 10 * MSS;
    tp.snd_ssthresh = u32::MAX;
    tp.snd_wnd = 1 << 30;
    tp.snd_scale = 14;
    tp.t_rcvtime = T0;
    let cc = TestConn::attach(testing::globals(), params, &mut tp);
    (cc, tp)
}

fn conn() -> (TestConn<Htcp>, Tcpcb) {
    conn_with(0, 0)
}

/// [`conn`] in congestion avoidance: cwnd 40 segments, ssthresh 20.
fn ca_conn() -> (TestConn<Htcp>, Tcpcb) {
    let (cc, mut tp) = conn();
    tp.snd_cwnd = 40 * MSS;
    tp.snd_ssthresh = 20 * MSS;
    (cc, tp)
}

/// One ACK of `bytes` arriving at host time `now`, through the stack's ABC bookkeeping.
fn ack_at(cc: &mut TestConn<Htcp>, tp: &mut Tcpcb, now: u64, bytes: u32) {
    tp.t_rcvtime = now;
    tp.snd_una = tp.snd_una.wrapping_add(bytes);
    cc.on_ack(tp, CC_ACK, bytes, 1, 2);
}

/// The paper's alpha for a time `delta` (s) since the last congestion event, unrounded.
fn paper_alpha(delta: f64) -> f64 {
    let dl = 1.0;
    if delta <= dl {
        1.0
    } else {
        1.0 + 10.0 * (delta - dl) + ((delta - dl) / 2.0).powi(2)
    }
}

#[test]
fn alpha_exact_values() {
    assert_eq!(htcp_calc_alpha(0), 1);
    assert_eq!(htcp_calc_alpha(SEC / 10), 2, "1 + 1 + 0.0025");
    assert_eq!(htcp_calc_alpha(SEC), 11, "1 + 10 + 0.25");
    assert_eq!(htcp_calc_alpha(2 * SEC), 22, "1 + 20 + 1");
    assert_eq!(htcp_calc_alpha(10 * SEC), 126, "1 + 100 + 25");
    assert_eq!(htcp_calc_alpha(SEC * 19 / 10), 20, "1 + 19 + 0.9025");
}

proptest! {
    #[test]
    fn alpha_is_the_paper_formula(diff_ns in 0u64..HTCP_MAX_DIFF) {
        let alpha = htcp_calc_alpha(diff_ns) as f64;
        let exact = paper_alpha(1.0 + diff_ns as f64 / SEC as f64);
        // alpha is the formula rounded down (f64 has ample precision at these magnitudes).
        prop_assert!(alpha <= exact * (1.0 + 1e-12), "alpha {} > {}", alpha, exact);
        prop_assert!(exact < (alpha + 1.0) * (1.0 + 1e-12), "alpha {} << {}", alpha, exact);
    }

    #[test]
    fn module_alpha_follows_time_since_congestion(delta_ms in 0u64..100_000) {
        let (mut cc, mut tp) = conn();
        tp.snd_ssthresh = 5 * MSS;
        cc.ccv.flags |= ccf::ABC_SENTAWND;
        ack_at(&mut cc, &mut tp, T0 + delta_ms * 1_000_000, MSS);
        // The formula's fractional part is a multiple of 2.5e-7 here: the nudge only
        // undoes f64 rounding just below an integer.
        let want = (paper_alpha(delta_ms as f64 / 1000.0) + 1e-9).floor() as u32;
        prop_assert_eq!(cc.state().alpha, want);
    }
}

#[test]
fn alpha_frozen_past_the_overflow_cap() {
    let (mut cc, mut tp) = conn();
    tp.snd_ssthresh = 5 * MSS;
    cc.state_mut().alpha = 77;
    cc.ccv.flags |= ccf::ABC_SENTAWND;
    ack_at(&mut cc, &mut tp, T0 + HTCP_DELTA_L + HTCP_MAX_DIFF, MSS);
    assert_eq!(cc.state().alpha, 77, "FreeBSD leaves alpha as it was");
}

#[test]
fn rtt_scaling_scales_alpha_by_srtt_over_100ms() {
    // delta = 3 s: raw alpha = 1 + 20 + 1 = 22.
    let at = |srtt_us: u32| {
        let (mut cc, mut tp) = conn_with(0, 1);
        tp.snd_ssthresh = 5 * MSS;
        tp.t_srtt = srtt_us;
        cc.ccv.flags |= ccf::ABC_SENTAWND;
        ack_at(&mut cc, &mut tp, T0 + 3 * SEC, MSS);
        cc.state().alpha
    };
    assert_eq!(at(100_000), 22, "RTT = RTT_ref: factor 1");
    assert_eq!(at(200_000), 44, "factor 2");
    assert_eq!(at(50_000), 11, "factor 1/2");
    // 30 ms: factor (30000 << 8) / 100000 = 76; 76 * 22 >> 8 = 6.
    assert_eq!(at(30_000), 6);
    // Below 0.1 the factor is clamped to 26/256; above 2 to 2.
    assert_eq!(at(1_000), (26 * 22) >> 8);
    assert_eq!(at(5_000_000), 44);
    // Never below 1.
    let (mut cc, mut tp) = conn_with(0, 1);
    tp.snd_ssthresh = 5 * MSS;
    tp.t_srtt = 1_000;
    cc.ccv.flags |= ccf::ABC_SENTAWND;
    ack_at(&mut cc, &mut tp, T0 + HTCP_DELTA_L + SEC / 10, MSS);
    assert_eq!(cc.state().alpha, 1);
    // Off by default: no scaling whatever the RTT.
    let (mut cc, mut tp) = conn();
    tp.snd_ssthresh = 5 * MSS;
    tp.t_srtt = 10_000;
    cc.ccv.flags |= ccf::ABC_SENTAWND;
    ack_at(&mut cc, &mut tp, T0 + 3 * SEC, MSS);
    assert_eq!(cc.state().alpha, 22);
}

/// Feeds `n` RTT samples with the stack's SRTT at `srtt_us`.
fn samples(cc: &mut TestConn<Htcp>, tp: &mut Tcpcb, srtt_us: u32, n: u32) {
    tp.t_srtt = srtt_us;
    for _ in 0..n {
        cc.rttsample(tp, srtt_us, 0, 0);
    }
}

#[test]
fn min_max_rtt_need_eight_srtt_updates() {
    let (mut cc, mut tp) = conn_with(1, 0);
    samples(&mut cc, &mut tp, 50_000, 7);
    assert_eq!((cc.state().minrtt, cc.state().maxrtt), (0, 0));
    samples(&mut cc, &mut tp, 60_000, 1);
    assert_eq!((cc.state().minrtt, cc.state().maxrtt), (60_000, 60_000));
    samples(&mut cc, &mut tp, 40_000, 1);
    samples(&mut cc, &mut tp, 90_000, 1);
    samples(&mut cc, &mut tp, 70_000, 1);
    assert_eq!((cc.state().minrtt, cc.state().maxrtt), (40_000, 90_000));
}

#[test]
fn beta_fixed_at_half_without_adaptive_backoff() {
    let (mut cc, mut tp) = conn();
    samples(&mut cc, &mut tp, 60_000, 8);
    samples(&mut cc, &mut tp, 100_000, 1);
    tp.snd_cwnd = 40 * MSS;
    tp.snd_ssthresh = 30 * MSS;
    cc.cong_signal(&mut tp, CC_NDUPACK);
    assert_eq!(cc.state().beta, HTCP_MINBETA);
    assert_eq!(tp.snd_ssthresh, 20 * MSS);
}

#[test]
fn beta_adaptive_is_min_over_max_rtt_clamped() {
    let beta_after = |min: u32, max: u32| {
        let (mut cc, mut tp) = conn_with(1, 0);
        samples(&mut cc, &mut tp, min, 8);
        samples(&mut cc, &mut tp, max, 1);
        tp.snd_cwnd = 100 * MSS;
        tp.snd_ssthresh = 50 * MSS;
        cc.cong_signal(&mut tp, CC_NDUPACK);
        (cc.state().beta, tp.snd_ssthresh, cc.state().maxrtt)
    };
    // maxRTT first decays to minRTT + 0.95 (maxRTT - minRTT) = 98 ms; then
    // beta = (60000 << 8) / 98000 = 156, ssthresh = 146000 * 156 >> 8 = 88968.
    assert_eq!(beta_after(60_000, 100_000), (156, 88_968, 98_000));
    // 0.4 is raised to 0.5, 0.9 lowered to 0.8.
    assert_eq!(beta_after(40_000, 100_000).0, HTCP_MINBETA);
    assert_eq!(beta_after(90_000, 100_000).0, HTCP_MAXBETA);
}

#[test]
fn first_congestion_event_halves_even_with_adaptive_backoff() {
    let (mut cc, mut tp) = conn_with(1, 0);
    samples(&mut cc, &mut tp, 90_000, 8);
    samples(&mut cc, &mut tp, 100_000, 1);
    tp.snd_cwnd = 20 * MSS + 100;
    cc.cong_signal(&mut tp, CC_NDUPACK);
    // cwnd * 128 >> 8, not rounded to segments (FreeBSD htcp_ssthresh_update).
    assert_eq!(tp.snd_ssthresh, (20 * MSS + 100) / 2);
}

#[test]
fn adaptive_backoff_scales_alpha_by_two_one_minus_beta() {
    // minRTT/maxRTT = 0.75: beta = 192; alpha = 2 * (256 - 192) * 22 >> 8 = 11.
    let (mut cc, mut tp) = conn_with(1, 0);
    samples(&mut cc, &mut tp, 75_000, 8);
    samples(&mut cc, &mut tp, 100_000, 1);
    tp.snd_ssthresh = 5 * MSS;
    cc.ccv.flags |= ccf::ABC_SENTAWND;
    ack_at(&mut cc, &mut tp, T0 + 3 * SEC, MSS);
    assert_eq!(cc.state().beta, 192);
    assert_eq!(cc.state().alpha, 11);
    // Without RTT data beta is 0.5 and the factor 2 (1 - 0.5) = 1.
    let (mut cc, mut tp) = conn_with(1, 0);
    tp.snd_ssthresh = 5 * MSS;
    cc.ccv.flags |= ccf::ABC_SENTAWND;
    ack_at(&mut cc, &mut tp, T0 + 3 * SEC, MSS);
    assert_eq!(cc.state().alpha, 22);
}

/// Acknowledges one full window in MSS-sized ACKs at time `now`, as the stack would.
fn ack_one_window(cc: &mut TestConn<Htcp>, tp: &mut Tcpcb, now: u64) {
    let acks = tp.snd_cwnd / MSS;
    for _ in 0..acks {
        ack_at(cc, tp, now, MSS);
    }
}

#[test]
fn congestion_avoidance_grows_alpha_segments_per_rtt() {
    let (mut cc, mut tp) = ca_conn();
    // delta = 3 s: alpha = 22 segments per window of ACKs.
    ack_one_window(&mut cc, &mut tp, T0 + 3 * SEC);
    assert_eq!(tp.snd_cwnd, 62 * MSS);
    assert_eq!(cc.ccv.flags & ccf::ABC_SENTAWND, 0);
    // The next window, at delta = 4 s: alpha = 1 + 30 + 2.25 -> 33.
    ack_one_window(&mut cc, &mut tp, T0 + 4 * SEC);
    assert_eq!(tp.snd_cwnd, 95 * MSS);
}

#[test]
fn first_second_after_congestion_is_newreno() {
    let (mut cc, mut tp) = ca_conn();
    ack_one_window(&mut cc, &mut tp, T0 + SEC / 2);
    assert_eq!(tp.snd_cwnd, 41 * MSS, "alpha = 1: one segment per window");
    // A loss restarts the clock: 0.5 s later it is NewReno again.
    let t_loss = T0 + 10 * SEC;
    tp.t_rcvtime = t_loss;
    cc.cong_signal(&mut tp, CC_NDUPACK);
    assert_eq!(cc.state().t_last_cong, Some(t_loss));
    tp.t_flags &= !tf::INRECOVERY;
    tp.snd_cwnd = 30 * MSS;
    let before = tp.snd_cwnd;
    ack_one_window(&mut cc, &mut tp, t_loss + SEC / 2);
    assert_eq!(tp.snd_cwnd, before + MSS);
    assert_eq!(cc.state().alpha, 1);
}

#[test]
fn slow_start_is_newreno() {
    let (mut cc, mut tp) = conn();
    // Even long after the start, slow start is NewReno's ABC (L = 2).
    ack_at(&mut cc, &mut tp, T0 + 5 * SEC, MSS);
    assert_eq!(tp.snd_cwnd, 11 * MSS);
    ack_at(&mut cc, &mut tp, T0 + 5 * SEC, 5 * MSS);
    assert_eq!(tp.snd_cwnd, 13 * MSS);
}

#[test]
fn no_growth_in_recovery_or_when_not_cwnd_limited() {
    let (mut cc, mut tp) = conn();
    tp.snd_wnd = 5 * MSS;
    ack_at(&mut cc, &mut tp, T0 + 5 * SEC, MSS);
    assert_eq!(tp.snd_cwnd, 10 * MSS);
    tp.snd_wnd = 1 << 30;
    tp.t_flags |= tf::FASTRECOVERY;
    ack_at(&mut cc, &mut tp, T0 + 5 * SEC, MSS);
    assert_eq!(tp.snd_cwnd, 10 * MSS);
    tp.t_flags = 0;
    testing::assert_dupack_keeps_cwnd(&mut cc, &mut tp);
}

#[test]
fn fast_retransmit_and_repeat_signals() {
    let (mut cc, mut tp) = conn();
    tp.snd_cwnd = 20 * MSS;
    tp.t_rcvtime = T0 + 7 * SEC;
    cc.cong_signal(&mut tp, CC_NDUPACK);
    assert_eq!(tp.snd_ssthresh, 10 * MSS);
    assert!(tp.in_fastrecovery() && tp.in_congrecovery());
    assert_eq!(cc.state().prev_cwnd, 20 * MSS);
    // A second signal during the same recovery changes nothing.
    tp.snd_cwnd = 4 * MSS;
    tp.t_rcvtime = T0 + 8 * SEC;
    cc.cong_signal(&mut tp, CC_NDUPACK);
    assert_eq!(tp.snd_ssthresh, 10 * MSS);
    assert_eq!(cc.state().t_last_cong, Some(T0 + 7 * SEC));
}

#[test]
fn ecn_reduces_once_per_window() {
    let (mut cc, mut tp) = conn();
    testing::assert_newreno_ecn(&mut cc, &mut tp);
    assert_eq!(cc.state().prev_cwnd, 10 * MSS);
    cc.cong_signal(&mut tp, CC_ECN);
    assert_eq!(tp.snd_cwnd, 10 * MSS);
}

#[test]
fn post_recovery_rfc6582_or_beta_times_prev_cwnd() {
    let (mut cc, mut tp) = conn();
    tp.snd_cwnd = 30 * MSS + 700;
    cc.cong_signal(&mut tp, CC_NDUPACK);
    tp.snd_max = 100 * MSS;
    // Much in flight: beta * prev_cwnd in whole segments: 128 * 44500 / 1460 >> 8 = 15.
    cc.ccv.curack = 60 * MSS;
    cc.ccv.pipe = tp.snd_max.wrapping_sub(cc.ccv.curack);
    cc.post_recovery(&mut tp);
    assert_eq!(tp.snd_cwnd, 15 * MSS);
    // Little in flight: max(pipe, SMSS) + SMSS.
    cc.ccv.curack = 97 * MSS;
    cc.ccv.pipe = tp.snd_max.wrapping_sub(cc.ccv.curack);
    cc.post_recovery(&mut tp);
    assert_eq!(tp.snd_cwnd, 4 * MSS);
    // Leaving ECN recovery (not fast recovery) leaves cwnd alone.
    tp.t_flags &= !tf::FASTRECOVERY;
    tp.snd_cwnd = 7 * MSS;
    cc.ccv.pipe = tp.snd_max.wrapping_sub(cc.ccv.curack);
    cc.post_recovery(&mut tp);
    assert_eq!(tp.snd_cwnd, 7 * MSS);
}

#[test]
fn rto_first_sets_ssthresh_later_ones_restart_alpha_clock() {
    let (mut cc, mut tp) = conn();
    tp.snd_cwnd = 30 * MSS;
    tp.snd_wnd = 16 * MSS;
    tp.t_rxtshift = 1;
    cc.cong_signal(&mut tp, CC_RTO);
    assert_eq!((tp.snd_cwnd, tp.snd_ssthresh), (MSS, 8 * MSS));
    assert_eq!(
        cc.state().t_last_cong,
        Some(T0),
        "a single RTO is no congestion event"
    );
    tp.t_rxtshift = 2;
    cc.cong_signal(&mut tp, CC_RTO);
    assert_eq!(
        (tp.snd_cwnd, tp.snd_ssthresh),
        (MSS, 8 * MSS),
        "ssthresh kept"
    );
    assert_eq!(cc.state().t_last_cong, None);
    // The next ACK's arrival time is the congestion time.
    tp.t_rxtshift = 0;
    ack_at(&mut cc, &mut tp, T0 + 20 * SEC, MSS);
    assert_eq!(cc.state().t_last_cong, Some(T0 + 20 * SEC));
}

#[test]
fn clock_starts_at_first_ack_when_created_before_any_segment() {
    let (mut cc, mut tp) = conn();
    tp.t_rcvtime = 0;
    assert!((cc.hooks.cb_destroy.unwrap())(&mut cc.ccv).is_ok());
    assert!((cc.hooks.cb_init.unwrap())(&mut cc.ccv, &mut tp).is_ok());
    assert_eq!(cc.state().t_last_cong, None);
    ack_at(&mut cc, &mut tp, T0, MSS);
    assert_eq!(cc.state().t_last_cong, Some(T0));
}

#[test]
fn cwnd_capped_at_scaled_max_window() {
    let (mut cc, mut tp) = conn();
    tp.snd_scale = 0;
    tp.snd_cwnd = 60_000;
    tp.snd_ssthresh = 20 * MSS;
    cc.ccv.flags |= ccf::ABC_SENTAWND;
    ack_at(&mut cc, &mut tp, T0 + 10 * SEC, MSS);
    assert_eq!(tp.snd_cwnd, 65_535);
}

#[test]
fn after_idle_restart_window() {
    let (mut cc, mut tp) = conn();
    testing::assert_newreno_after_idle(&mut cc, &mut tp);
}

#[test]
fn sysctls_declared_as_freebsd() {
    let algo = cc_algo();
    assert_eq!(algo.name().as_str(), "htcp");
    let uint = u32::MAX as i64;
    assert_eq!(
        testing::param_table::<Htcp>(),
        [
            ("adaptive_backoff", 0, 0, uint),
            ("rtt_scaling", 0, 0, uint)
        ]
    );
    assert!(algo.ctl_output().is_none() && algo.ecnpkt_handler().is_none());
}
