//! CHD against Hayes and Armitage (LCN 2010) and FreeBSD cc_chd, driven through the ABI
//! descriptor.

use super::*;
use plugtcp_abi::cc::{ccf, CC_DUPACK, CC_RTO};
use plugtcp_abi::tcpcb::tf;
use plugtcp_abi::HookStatus;
use plugtcp_tcpkit::cc::testing::{self, assert_rate, globals, round, sample, TestConn};
use std::sync::atomic::Ordering;

const MSS: u32 = 1460;
const MS: u32 = 1000;

/// An established connection on chd with the sysctl defaults, driven as the host drives it.
fn conn_with(iss: u32, irs: u32) -> (TestConn<Chd>, Tcpcb) {
    let mut tp = testing::tcpcb(MSS, 20 * MSS, 10 * MSS);
    tp.iss = iss;
    tp.irs = irs;
    tp.snd_max = 1_000_000;
    tp.snd_nxt = tp.snd_max;
    let mut cc = TestConn::attach(globals(), testing::params::<Chd>(&[]), &mut tp);
    cc.conn_init(&mut tp);
    (cc, tp)
}

fn conn() -> (TestConn<Chd>, Tcpcb) {
    conn_with(0x1234_5678, 0x9abc_def0)
}

/// minrtt 50 ms and maxrtt 100 ms (queueing delays up to 50 ms), in a first round whose
/// own test cannot back off (qdly at the maximum has probability 0).
fn path(cc: &mut TestConn<Chd>, tp: &mut Tcpcb) {
    round(cc, tp, &[50 * MS, 100 * MS]);
    assert_eq!(cc.counter(COUNTER_DELAY_BACKOFFS), 0);
    // Above the threshold without a backoff, loss_compete stays as it was.
    assert!(!cc.state().loss_compete);
}

/// `n` RTTs at a fixed queueing delay, each backoff undone so the RTTs are independent
/// trials; returns the number of backoffs.
fn trials(cc: &mut TestConn<Chd>, tp: &mut Tcpcb, rtt: u32, n: usize) -> usize {
    let before = cc.counter(COUNTER_DELAY_BACKOFFS);
    for _ in 0..n {
        tp.snd_cwnd = 20 * MSS;
        tp.snd_ssthresh = 10 * MSS;
        tp.t_flags = 0;
        round(cc, tp, &[rtt]);
    }
    cc.counter(COUNTER_DELAY_BACKOFFS) - before
}

#[test]
fn empirical_backoff_rate_matches_probability() {
    let (mut cc, mut tp) = conn();
    path(&mut cc, &mut tp);
    // qdly 8 ms: 50% * 3/15.
    assert_rate(trials(&mut cc, &mut tp, 58 * MS, 20_000), 20_000, 0.1);
    // qdly 20 ms: pmax.
    assert_rate(trials(&mut cc, &mut tp, 70 * MS, 20_000), 20_000, 0.5);
    // qdly 41 ms: 50% * 9/30.
    assert_rate(trials(&mut cc, &mut tp, 91 * MS, 20_000), 20_000, 0.15);
    // pmax 10%, qdly 14 ms: 10% * 9/15.
    cc.set_param(PARAM_PMAX, 10);
    assert_rate(trials(&mut cc, &mut tp, 64 * MS, 40_000), 40_000, 0.06);
}

#[test]
fn conn_init_seeds_the_prng_from_the_handshake() {
    let rng = |s: &Chd| s.rng.clone();
    testing::assert_conn_init_reseeds(conn_with(0, 0), rng, connection_rng);
}

#[test]
fn prng_is_per_connection_and_deterministic() {
    let run = |iss, irs| {
        let (mut cc, mut tp) = conn_with(iss, irs);
        path(&mut cc, &mut tp);
        (0..256)
            .map(|_| trials(&mut cc, &mut tp, 70 * MS, 1))
            .collect::<Vec<_>>()
    };
    assert_eq!(run(7, 9), run(7, 9));
    assert_ne!(run(7, 9), run(8, 9));
}

#[test]
fn delay_backoff_keeps_half_in_whole_segments() {
    let (mut cc, mut tp) = conn();
    path(&mut cc, &mut tp);
    cc.set_param(PARAM_PMAX, 100);
    tp.snd_cwnd = 21 * MSS + 100;
    tp.snd_recover = 0;
    round(&mut cc, &mut tp, &[70 * MS]);
    assert_eq!(cc.counter(COUNTER_DELAY_BACKOFFS), 1);
    // win = 21 segments; 21 - 10 = 11.
    assert_eq!((tp.snd_ssthresh, tp.snd_cwnd), (11 * MSS, 11 * MSS));
    assert!(tp.in_congrecovery() && !tp.in_fastrecovery());
    assert_eq!(tp.snd_recover, tp.snd_max);
    // The receive window bounds it, and two segments is the floor.
    for (wnd, want) in [(8 * MSS, 4 * MSS), (MSS, 2 * MSS), (100, 2 * MSS)] {
        tp.snd_wnd = wnd;
        tp.snd_cwnd = 30 * MSS;
        cc.cong_signal(&mut tp, CC_CHD_DELAY);
        assert_eq!(tp.snd_cwnd, want, "snd_wnd {wnd}");
    }
}

#[test]
fn no_backoff_below_queue_min_without_measurement_or_in_recovery() {
    let (mut cc, mut tp) = conn();
    path(&mut cc, &mut tp);
    cc.set_param(PARAM_PMAX, 100);
    // qdly exactly queue_min.
    assert_eq!(trials(&mut cc, &mut tp, 55 * MS, 1000), 0);
    // A big delay, but no new per-RTT measurement: no test.
    sample(&mut cc, &mut tp, 70 * MS);
    assert_eq!(cc.counter(COUNTER_DELAY_BACKOFFS), 0);
    // In recovery.
    tp.t_flags = tf::FASTRECOVERY;
    round(&mut cc, &mut tp, &[70 * MS]);
    tp.t_flags = tf::CONGRECOVERY;
    round(&mut cc, &mut tp, &[70 * MS]);
    assert_eq!(cc.counter(COUNTER_DELAY_BACKOFFS), 0);
    // The measurement is taken by any ACK type, a duplicate ACK too.
    tp.t_flags = 0;
    sample(&mut cc, &mut tp, 70 * MS);
    cc.newround(&mut tp, 0);
    cc.ack_received(&mut tp, CC_DUPACK);
    assert_eq!(cc.counter(COUNTER_DELAY_BACKOFFS), 1);
}

#[test]
fn use_max_takes_the_largest_rtt_of_the_rtt() {
    for (use_max, want) in [(1, Some(25_000)), (0, None)] {
        let (mut cc, mut tp) = conn();
        path(&mut cc, &mut tp);
        cc.set_param(PARAM_PMAX, 100);
        cc.set_param(PARAM_QUEUE_THRESHOLD, 25);
        cc.set_param(PARAM_USE_MAX, use_max);
        // Largest 75 ms (qdly 25 ms = threshold: p = 1); latest 52 ms (2 ms < queue_min).
        round(&mut cc, &mut tp, &[60 * MS, 75 * MS, 52 * MS]);
        let backed_off = cc.counter(COUNTER_DELAY_BACKOFFS) == 1;
        assert_eq!(backed_off.then_some(cc.state().prev_backoff_qdly), want);
    }
}

#[test]
fn delayed_ack_samples_do_not_count() {
    let (mut cc, mut tp) = conn();
    path(&mut cc, &mut tp);
    cc.set_param(PARAM_PMAX, 100);
    // ACKs of two segments, one delayed lone-segment ACK (75 ms: qdly 25 ms) before the
    // round ends at 52 ms (qdly 2 ms, below queue_min): the round's largest RTT is 52 ms.
    for (rtt, segs, end) in [
        (52 * MS, 2, false),
        (52 * MS, 2, false),
        (75 * MS, 1, false),
        (52 * MS, 2, true),
    ] {
        testing::sampled_ack(&mut cc, &mut tp, rtt, segs * MSS, end);
    }
    assert_eq!(cc.counter(COUNTER_DELAY_BACKOFFS), 0);
    assert_eq!(cc.state().hertt.ertt.maxrtt, 100 * MS);
    assert_eq!(
        cc.state().hertt.dlyack_rx,
        plugtcp_tcpkit::cc::ertt::DLYACK_SMOOTH
    );
}

#[test]
fn shadow_window_tracks_newreno_and_resets() {
    let (mut cc, mut tp) = conn();
    assert_eq!(cc.state().shadow_w, 20 * MSS, "conn_init starts it at cwnd");
    path(&mut cc, &mut tp);
    // Congestion avoidance: cwnd and the shadow grow by the same segment.
    let shadow = cc.state().shadow_w;
    let cwnd = tp.snd_cwnd;
    cc.ccv.flags |= ccf::ABC_SENTAWND;
    cc.ccv.bytes_this_ack = MSS;
    cc.ack_received(&mut tp, CC_ACK);
    assert_eq!(
        (tp.snd_cwnd, cc.state().shadow_w),
        (cwnd + MSS, shadow + MSS)
    );

    cc.set_param(PARAM_PMAX, 100);
    // A backoff at a delay above the previous backoff's keeps the larger window.
    tp.snd_cwnd = 40 * MSS;
    round(&mut cc, &mut tp, &[70 * MS]);
    assert_eq!(cc.counter(COUNTER_DELAY_BACKOFFS), 1);
    assert_eq!(cc.state().shadow_w, 40 * MSS);
    assert_eq!(tp.snd_cwnd, 20 * MSS);
    // The same delay again (at the threshold: no loss competition): our backoffs work,
    // stop tracking.
    tp.t_flags = 0;
    round(&mut cc, &mut tp, &[70 * MS]);
    assert_eq!(cc.counter(COUNTER_DELAY_BACKOFFS), 2);
    assert!(!cc.state().loss_compete);
    assert_eq!(cc.state().shadow_w, 0);
    // Not tracking: increases leave it at 0.
    tp.t_flags = 0;
    tp.snd_cwnd = 4 * MSS;
    cc.ccv.bytes_this_ack = MSS;
    cc.ack_received(&mut tp, CC_ACK);
    assert_eq!((tp.snd_cwnd, cc.state().shadow_w), (5 * MSS, 0));
}

/// Rounds at `rtt` until one backs off (p < 1 off the threshold), at most 1000.
fn until_backoff(cc: &mut TestConn<Chd>, tp: &mut Tcpcb, rtt: u32) {
    let before = cc.counter(COUNTER_DELAY_BACKOFFS);
    for _ in 0..1000 {
        tp.t_flags = 0;
        round(cc, tp, &[rtt]);
        if cc.counter(COUNTER_DELAY_BACKOFFS) > before {
            return;
        }
    }
    panic!("no backoff in 1000 RTTs at {rtt} us");
}

#[test]
fn competing_keeps_the_shadow_even_at_a_lower_delay() {
    for (loss_fair, want) in [(1, 40 * MSS), (0, 0)] {
        let (mut cc, mut tp) = conn();
        path(&mut cc, &mut tp);
        cc.set_param(PARAM_PMAX, 100);
        cc.set_param(PARAM_LOSS_FAIR, loss_fair);
        // The last backoff was at 30 ms; now 25 ms, above the threshold.
        cc.state_mut().prev_backoff_qdly = 30_000;
        tp.snd_cwnd = 40 * MSS;
        until_backoff(&mut cc, &mut tp, 75 * MS);
        assert_eq!(cc.state().loss_compete, loss_fair == 1);
        assert_eq!(cc.state().shadow_w, want, "loss_fair {loss_fair}");
        assert_eq!(cc.state().prev_backoff_qdly, 25_000);
    }
}

#[test]
fn loss_compete_needs_backoff_above_threshold_and_loss_fair() {
    // (loss_fair, RTT, loss_compete before, after): above the threshold a backoff sets it
    // only with loss_fair; below the threshold it is cleared.
    for (loss_fair, rtt, before, want) in [
        (1, 80 * MS, false, true),
        (0, 80 * MS, false, false),
        (1, 65 * MS, true, false),
    ] {
        let (mut cc, mut tp) = conn();
        path(&mut cc, &mut tp);
        cc.set_param(PARAM_PMAX, 100);
        cc.set_param(PARAM_LOSS_FAIR, loss_fair);
        cc.state_mut().loss_compete = before;
        until_backoff(&mut cc, &mut tp, rtt);
        assert_eq!(
            cc.state().loss_compete,
            want,
            "loss_fair {loss_fair} rtt {rtt}"
        );
    }
}

#[test]
fn loss_below_threshold_is_not_congestion() {
    let (mut cc, mut tp) = conn();
    path(&mut cc, &mut tp);
    // qdly 10 ms, below queue_threshold.
    sample(&mut cc, &mut tp, 60 * MS);
    tp.snd_cwnd = 30 * MSS;
    cc.cong_signal(&mut tp, CC_NDUPACK);
    assert_eq!(cc.counter(COUNTER_LOSSES_IGNORED), 1);
    assert_eq!((tp.snd_ssthresh, tp.snd_cwnd), (30 * MSS, 30 * MSS));
    assert!(tp.in_fastrecovery() && !tp.in_congrecovery());
    assert_eq!(tp.snd_recover, tp.snd_max);
    // Shadow window halves anyway (NewReno would have): 20 segments -> 10.
    assert_eq!(cc.state().shadow_w, 10 * MSS);
}

#[test]
fn loss_above_threshold_halves_from_the_shadow_when_competing() {
    for (compete, want) in [(true, 25 * MSS), (false, 10 * MSS)] {
        let (mut cc, mut tp) = conn();
        path(&mut cc, &mut tp);
        sample(&mut cc, &mut tp, 80 * MS);
        cc.state_mut().loss_compete = compete;
        cc.state_mut().shadow_w = 50 * MSS;
        tp.snd_cwnd = 20 * MSS;
        cc.cong_signal(&mut tp, CC_NDUPACK);
        assert_eq!(tp.snd_ssthresh, want, "loss_compete {compete}");
        assert_eq!(cc.state().shadow_w, 25 * MSS);
        assert_eq!(cc.counter(COUNTER_LOSSES_IGNORED), 0);
        assert!(tp.in_fastrecovery());
    }
    // Already reducing after a delay backoff: not a new congestion event.
    let (mut cc, mut tp) = conn();
    path(&mut cc, &mut tp);
    sample(&mut cc, &mut tp, 80 * MS);
    tp.t_flags = tf::CONGRECOVERY;
    tp.snd_cwnd = 20 * MSS;
    cc.cong_signal(&mut tp, CC_NDUPACK);
    assert_eq!(tp.snd_ssthresh, 20 * MSS);
    assert_eq!(cc.counter(COUNTER_LOSSES_IGNORED), 1);
}

#[test]
fn window_increase_slow_start_and_congestion_avoidance() {
    let (mut cc, mut tp) = conn();
    tp.snd_cwnd = 4 * MSS;
    cc.ccv.bytes_this_ack = 3 * MSS;
    cc.ack_received(&mut tp, CC_ACK);
    assert_eq!(tp.snd_cwnd, 6 * MSS, "ABC: at most L=2 segments");
    tp.snd_nxt = tp.snd_max - 10 * MSS;
    cc.ack_received(&mut tp, CC_ACK);
    assert_eq!(
        tp.snd_cwnd,
        7 * MSS,
        "one segment while retransmitting after an RTO"
    );
    tp.snd_nxt = tp.snd_max;
    cc.ack_received(&mut tp, CC_DUPACK);
    assert_eq!(tp.snd_cwnd, 7 * MSS, "duplicate ACKs do not grow it");
    tp.snd_ssthresh = 5 * MSS;
    cc.ack_received(&mut tp, CC_ACK);
    assert_eq!(
        tp.snd_cwnd,
        7 * MSS,
        "no growth until a window is acknowledged"
    );
    cc.ccv.flags |= ccf::ABC_SENTAWND;
    cc.ack_received(&mut tp, CC_ACK);
    assert_eq!(tp.snd_cwnd, 8 * MSS);
    assert_eq!(cc.ccv.flags & ccf::ABC_SENTAWND, 0);
    tp.snd_scale = 0;
    tp.snd_cwnd = 65_000;
    cc.ccv.flags |= ccf::ABC_SENTAWND;
    cc.ack_received(&mut tp, CC_ACK);
    assert_eq!(tp.snd_cwnd, 65_535);
}

#[test]
fn ecn_and_rto_are_newreno() {
    let (mut cc, mut tp) = conn();
    testing::assert_newreno_ecn(&mut cc, &mut tp);
    tp.t_flags = 0;
    tp.snd_cwnd = 16 * MSS;
    cc.cong_signal(&mut tp, CC_RTO);
    assert_eq!((tp.snd_cwnd, tp.snd_ssthresh), (MSS, 8 * MSS));
}

#[test]
fn sysctl_defaults_ranges_and_checks() {
    let uint = u32::MAX as i64;
    assert_eq!(
        testing::param_table::<Chd>(),
        [
            ("loss_fair", 1, 0, 1),
            ("pmax", 50, 1, 100),
            ("queue_threshold", 20, 0, uint),
            ("queue_min", 5, 0, uint),
            ("use_max", 1, 0, uint),
        ]
    );
    let algo = cc_algo();
    assert_eq!(algo.name().as_str(), "chd");
    assert!(algo.ctl_output().is_none() && algo.ecnpkt_handler().is_none());

    let g = globals();
    let sysctl = testing::sysctl::<Chd>;
    let einval = HookStatus(Errno::EINVAL.0);
    let values = testing::param_defaults::<Chd>();
    // queue_threshold must stay above queue_min; queue_min itself is not checked.
    assert_eq!(sysctl(g, &values, PARAM_QUEUE_THRESHOLD, 5), einval);
    assert!(sysctl(g, &values, PARAM_QUEUE_THRESHOLD, 6).is_ok());
    assert!(sysctl(g, &values, PARAM_QUEUE_MIN, 10).is_ok());
    assert_eq!(sysctl(g, &values, PARAM_QUEUE_THRESHOLD, 10), einval);
    assert!(sysctl(g, &values, PARAM_QUEUE_THRESHOLD, 11).is_ok());
    assert_eq!(sysctl(g, &values, PARAM_LOSS_FAIR, 2), einval);
    assert_eq!(sysctl(g, &values, PARAM_PMAX, 0), einval);
    assert!(sysctl(g, &values, PARAM_PMAX, 100).is_ok());
    assert_eq!(
        values
            .iter()
            .map(|v| v.load(Ordering::Relaxed) as i64)
            .collect::<Vec<_>>(),
        [1, 100, 11, 10, 1]
    );
    // The check reads the queue_min stored now, whatever this module saw before: a fresh
    // registration (the defaults again) or another host.
    let fresh = testing::param_defaults::<Chd>();
    assert_eq!(sysctl(g, &fresh, PARAM_QUEUE_THRESHOLD, 5), einval);
    assert!(sysctl(g, &fresh, PARAM_QUEUE_THRESHOLD, 6).is_ok());
    values[PARAM_QUEUE_MIN].store(3, Ordering::Relaxed);
    assert!(sysctl(g, &values, PARAM_QUEUE_THRESHOLD, 4).is_ok());
    values[PARAM_QUEUE_MIN].store(30, Ordering::Relaxed);
    assert_eq!(sysctl(g, &values, PARAM_QUEUE_THRESHOLD, 30), einval);
}

#[test]
fn cb_destroy_frees_state() {
    let (mut cc, _tp) = conn();
    cc.assert_cb_destroy_frees_state();
}
