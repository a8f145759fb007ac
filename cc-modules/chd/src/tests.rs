//! CHD against Hayes and Armitage (LCN 2010) and FreeBSD cc_chd, driven through the ABI
//! descriptor.

use super::*;
use plugtcp_framework::cc::{CcConn, CcHooks, CC_DUPACK, CC_ECN, CC_RTO};
use plugtcp_framework::HookStatus;
use proptest::prelude::*;
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};

const MSS: u32 = 1460;
const MS: u32 = 1000;

fn globals() -> &'static CcGlobals {
    let g: &'static CcGlobals = Box::leak(Box::default());
    g.abc_l_var.store(2, Ordering::Relaxed);
    g.initcwnd_segments.store(10, Ordering::Relaxed);
    g
}

/// An established connection on chd with the sysctl defaults, driven as the host drives it.
fn conn_with(iss: u32, irs: u32) -> (CcConn, Tcpcb) {
    let params: &'static [AtomicIsize] = Box::leak(
        Chd::PARAMS
            .iter()
            .map(|d| AtomicIsize::new(d.default as isize))
            .collect::<Vec<_>>()
            .into_boxed_slice(),
    );
    let counters: &'static [AtomicUsize] = Box::leak(
        Chd::COUNTERS
            .iter()
            .map(|_| AtomicUsize::new(0))
            .collect::<Vec<_>>()
            .into_boxed_slice(),
    );
    let mut cc = CcConn::new(globals());
    cc.hooks = CcHooks::of(cc_algo());
    cc.ccv.params = params.into();
    cc.ccv.counters = counters.into();
    let mut tp = Tcpcb::new(MSS);
    tp.iss = iss;
    tp.irs = irs;
    tp.snd_cwnd = 20 * MSS;
    tp.snd_ssthresh = 10 * MSS;
    tp.snd_wnd = 1 << 20;
    tp.snd_scale = 7;
    tp.snd_max = 1_000_000;
    tp.snd_nxt = tp.snd_max;
    assert!((cc.hooks.cb_init.unwrap())(&mut cc.ccv, &mut tp).is_ok());
    cc.conn_init(&mut tp);
    (cc, tp)
}

fn conn() -> (CcConn, Tcpcb) {
    conn_with(0x1234_5678, 0x9abc_def0)
}

fn st(cc: &CcConn) -> &Chd {
    // SAFETY: cc_data is the Box<Chd> made by this module's cb_init.
    unsafe { &*(cc.ccv.cc_data as *const Chd) }
}

fn st_mut(cc: &mut CcConn) -> &mut Chd {
    // SAFETY: as in `st`.
    unsafe { &mut *(cc.ccv.cc_data as *mut Chd) }
}

fn set(cc: &CcConn, idx: usize, v: i64) {
    cc.ccv.params[idx].store(v as isize, Ordering::Relaxed);
}

fn count(cc: &CcConn, idx: usize) -> usize {
    cc.ccv.counters[idx].load(Ordering::Relaxed)
}

/// One RTT: an ACK of one segment per sample, the last one ending the round, as the stack
/// calls the hooks (rttsample, newround, ack_received).
fn round(cc: &mut CcConn, tp: &mut Tcpcb, samples: &[u32]) {
    for (i, &s) in samples.iter().enumerate() {
        cc.rttsample(tp, s, 0, 0);
        if i + 1 == samples.len() {
            cc.newround(tp, 0);
        }
        cc.ccv.bytes_this_ack = MSS;
        cc.ack_received(tp, CC_ACK);
    }
}

/// An ACK of one segment with an RTT sample, within the round.
fn sample(cc: &mut CcConn, tp: &mut Tcpcb, rtt: u32) {
    cc.rttsample(tp, rtt, 0, 0);
    cc.ccv.bytes_this_ack = MSS;
    cc.ack_received(tp, CC_ACK);
}

/// minrtt 50 ms and maxrtt 100 ms (queueing delays up to 50 ms), in a first round whose
/// own test cannot back off (qdly at the maximum has probability 0).
fn path(cc: &mut CcConn, tp: &mut Tcpcb) {
    round(cc, tp, &[50 * MS, 100 * MS]);
    assert_eq!(count(cc, COUNTER_DELAY_BACKOFFS), 0);
    // Above the threshold without a backoff, loss_compete stays as it was.
    assert!(!st(cc).loss_compete);
}

fn paper(q: f64, qmax: f64, qmin: f64, qth: f64, pmax: f64) -> f64 {
    if q <= qmin {
        0.0
    } else if q <= qth {
        pmax * (q - qmin) / (qth - qmin)
    } else if q <= qmax {
        pmax * (qmax - q) / (qmax - qth)
    } else {
        0.0
    }
}

#[test]
fn backoff_probability_at_points() {
    let (qmin, qth, qmax, pmax) = (5_000, 20_000, 50_000, 0.5);
    for (q, want) in [
        (0, 0.0),
        (5_000, 0.0),
        (8_000, 0.1),
        (12_500, 0.25),
        (20_000, 0.5),
        (26_000, 0.4),
        (35_000, 0.25),
        (50_000, 0.0),
        (51_000, 0.0),
    ] {
        let got = backoff_probability(q, qmax, qmin, qth, pmax);
        assert!((got - want).abs() < 1e-12, "q={q}: {got} != {want}");
    }
}

proptest! {
    #[test]
    fn backoff_probability_bounded_and_monotone(
        qmin in 0u64..50_000,
        span in 1u64..100_000,
        above in 0u64..200_000,
        pmax_pct in 1u32..=100,
        a in 0u64..400_000,
        b in 0u64..400_000,
    ) {
        let qthresh = qmin + span;
        let maxqdly = qthresh + above;
        let pmax = pmax_pct as f64 / 100.0;
        let p = |q| backoff_probability(q, maxqdly, qmin, qthresh, pmax);
        let (lo, hi) = (a.min(b), a.max(b));
        for q in [lo, hi] {
            prop_assert!((0.0..=pmax).contains(&p(q)));
            prop_assert!((p(q) - paper(q as f64, maxqdly as f64, qmin as f64, qthresh as f64, pmax)).abs() < 1e-9);
        }
        if hi <= qthresh {
            prop_assert!(p(lo) <= p(hi));
        }
        if lo >= qthresh {
            prop_assert!(p(lo) >= p(hi));
        }
    }
}

/// `n` RTTs at a fixed queueing delay, each backoff undone so the RTTs are independent
/// trials; returns the number of backoffs.
fn trials(cc: &mut CcConn, tp: &mut Tcpcb, rtt: u32, n: usize) -> usize {
    let before = count(cc, COUNTER_DELAY_BACKOFFS);
    for _ in 0..n {
        tp.snd_cwnd = 20 * MSS;
        tp.snd_ssthresh = 10 * MSS;
        tp.t_flags = 0;
        round(cc, tp, &[rtt]);
    }
    count(cc, COUNTER_DELAY_BACKOFFS) - before
}

fn assert_rate(hits: usize, n: usize, p: f64) {
    let mean = n as f64 * p;
    let sd = (n as f64 * p * (1.0 - p)).sqrt();
    assert!(
        (hits as f64 - mean).abs() <= 5.0 * sd,
        "{hits} backoffs in {n} RTTs, expected {mean:.1} +- {:.1}",
        5.0 * sd
    );
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
    set(&cc, PARAM_PMAX, 10);
    assert_rate(trials(&mut cc, &mut tp, 64 * MS, 40_000), 40_000, 0.06);
}

#[test]
fn conn_init_seeds_the_prng_from_the_handshake() {
    // cb_init of an active open comes before the handshake has chosen the ISNs.
    let (mut cc, mut tp) = conn_with(0, 0);
    let unseeded = connection_rng(&tp);
    tp.iss = 77;
    tp.irs = 88;
    cc.conn_init(&mut tp);
    assert_eq!(st(&cc).rng, connection_rng(&tp));
    assert_ne!(st(&cc).rng, unseeded);
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
    set(&cc, PARAM_PMAX, 100);
    tp.snd_cwnd = 21 * MSS + 100;
    tp.snd_recover = 0;
    round(&mut cc, &mut tp, &[70 * MS]);
    assert_eq!(count(&cc, COUNTER_DELAY_BACKOFFS), 1);
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
    set(&cc, PARAM_PMAX, 100);
    // qdly exactly queue_min.
    assert_eq!(trials(&mut cc, &mut tp, 55 * MS, 1000), 0);
    // A big delay, but no new per-RTT measurement: no test.
    sample(&mut cc, &mut tp, 70 * MS);
    assert_eq!(count(&cc, COUNTER_DELAY_BACKOFFS), 0);
    // In recovery.
    tp.t_flags = tf::FASTRECOVERY;
    round(&mut cc, &mut tp, &[70 * MS]);
    tp.t_flags = tf::CONGRECOVERY;
    round(&mut cc, &mut tp, &[70 * MS]);
    assert_eq!(count(&cc, COUNTER_DELAY_BACKOFFS), 0);
    // The measurement is taken by any ACK type, a duplicate ACK too.
    tp.t_flags = 0;
    sample(&mut cc, &mut tp, 70 * MS);
    cc.newround(&mut tp, 0);
    cc.ack_received(&mut tp, CC_DUPACK);
    assert_eq!(count(&cc, COUNTER_DELAY_BACKOFFS), 1);
}

#[test]
fn use_max_takes_the_largest_rtt_of_the_rtt() {
    for (use_max, want) in [(1, Some(25_000)), (0, None)] {
        let (mut cc, mut tp) = conn();
        path(&mut cc, &mut tp);
        set(&cc, PARAM_PMAX, 100);
        set(&cc, PARAM_QUEUE_THRESHOLD, 25);
        set(&cc, PARAM_USE_MAX, use_max);
        // Largest 75 ms (qdly 25 ms = threshold: p = 1); latest 52 ms (2 ms < queue_min).
        round(&mut cc, &mut tp, &[60 * MS, 75 * MS, 52 * MS]);
        let backed_off = count(&cc, COUNTER_DELAY_BACKOFFS) == 1;
        assert_eq!(backed_off.then_some(st(&cc).prev_backoff_qdly), want);
    }
}

#[test]
fn delayed_ack_samples_do_not_count() {
    let (mut cc, mut tp) = conn();
    path(&mut cc, &mut tp);
    set(&cc, PARAM_PMAX, 100);
    // ACKs of two segments, one delayed lone-segment ACK (75 ms: qdly 25 ms) before the
    // round ends at 52 ms (qdly 2 ms, below queue_min): the round's largest RTT is 52 ms.
    for (rtt, segs, end) in [
        (52 * MS, 2, false),
        (52 * MS, 2, false),
        (75 * MS, 1, false),
        (52 * MS, 2, true),
    ] {
        cc.rttsample(&mut tp, rtt, 0, 0);
        if end {
            cc.newround(&mut tp, 0);
        }
        cc.ccv.bytes_this_ack = segs * MSS;
        cc.ack_received(&mut tp, CC_ACK);
    }
    assert_eq!(count(&cc, COUNTER_DELAY_BACKOFFS), 0);
    assert_eq!(st(&cc).hertt.ertt.maxrtt, 100 * MS);
    assert_eq!(
        st(&cc).hertt.dlyack_rx,
        plugtcp_framework::cc::ertt::DLYACK_SMOOTH
    );
}

#[test]
fn shadow_window_tracks_newreno_and_resets() {
    let (mut cc, mut tp) = conn();
    assert_eq!(st(&cc).shadow_w, 20 * MSS, "conn_init starts it at cwnd");
    path(&mut cc, &mut tp);
    // Congestion avoidance: cwnd and the shadow grow by the same segment.
    let shadow = st(&cc).shadow_w;
    let cwnd = tp.snd_cwnd;
    cc.ccv.flags |= ccf::ABC_SENTAWND;
    cc.ccv.bytes_this_ack = MSS;
    cc.ack_received(&mut tp, CC_ACK);
    assert_eq!((tp.snd_cwnd, st(&cc).shadow_w), (cwnd + MSS, shadow + MSS));

    set(&cc, PARAM_PMAX, 100);
    // A backoff at a delay above the previous backoff's keeps the larger window.
    tp.snd_cwnd = 40 * MSS;
    round(&mut cc, &mut tp, &[70 * MS]);
    assert_eq!(count(&cc, COUNTER_DELAY_BACKOFFS), 1);
    assert_eq!(st(&cc).shadow_w, 40 * MSS);
    assert_eq!(tp.snd_cwnd, 20 * MSS);
    // The same delay again (at the threshold: no loss competition): our backoffs work,
    // stop tracking.
    tp.t_flags = 0;
    round(&mut cc, &mut tp, &[70 * MS]);
    assert_eq!(count(&cc, COUNTER_DELAY_BACKOFFS), 2);
    assert!(!st(&cc).loss_compete);
    assert_eq!(st(&cc).shadow_w, 0);
    // Not tracking: increases leave it at 0.
    tp.t_flags = 0;
    tp.snd_cwnd = 4 * MSS;
    cc.ccv.bytes_this_ack = MSS;
    cc.ack_received(&mut tp, CC_ACK);
    assert_eq!((tp.snd_cwnd, st(&cc).shadow_w), (5 * MSS, 0));
}

/// Rounds at `rtt` until one backs off (p < 1 off the threshold), at most 1000.
fn until_backoff(cc: &mut CcConn, tp: &mut Tcpcb, rtt: u32) {
    let before = count(cc, COUNTER_DELAY_BACKOFFS);
    for _ in 0..1000 {
        tp.t_flags = 0;
        round(cc, tp, &[rtt]);
        if count(cc, COUNTER_DELAY_BACKOFFS) > before {
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
        set(&cc, PARAM_PMAX, 100);
        set(&cc, PARAM_LOSS_FAIR, loss_fair);
        // The last backoff was at 30 ms; now 25 ms, above the threshold.
        st_mut(&mut cc).prev_backoff_qdly = 30_000;
        tp.snd_cwnd = 40 * MSS;
        until_backoff(&mut cc, &mut tp, 75 * MS);
        assert_eq!(st(&cc).loss_compete, loss_fair == 1);
        assert_eq!(st(&cc).shadow_w, want, "loss_fair {loss_fair}");
        assert_eq!(st(&cc).prev_backoff_qdly, 25_000);
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
        set(&cc, PARAM_PMAX, 100);
        set(&cc, PARAM_LOSS_FAIR, loss_fair);
        st_mut(&mut cc).loss_compete = before;
        until_backoff(&mut cc, &mut tp, rtt);
        assert_eq!(
            st(&cc).loss_compete,
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
    assert_eq!(count(&cc, COUNTER_LOSSES_IGNORED), 1);
    assert_eq!((tp.snd_ssthresh, tp.snd_cwnd), (30 * MSS, 30 * MSS));
    assert!(tp.in_fastrecovery() && !tp.in_congrecovery());
    assert_eq!(tp.snd_recover, tp.snd_max);
    // Shadow window halves anyway (NewReno would have): 20 segments -> 10.
    assert_eq!(st(&cc).shadow_w, 10 * MSS);
}

#[test]
fn loss_above_threshold_halves_from_the_shadow_when_competing() {
    for (compete, want) in [(true, 25 * MSS), (false, 10 * MSS)] {
        let (mut cc, mut tp) = conn();
        path(&mut cc, &mut tp);
        sample(&mut cc, &mut tp, 80 * MS);
        st_mut(&mut cc).loss_compete = compete;
        st_mut(&mut cc).shadow_w = 50 * MSS;
        tp.snd_cwnd = 20 * MSS;
        cc.cong_signal(&mut tp, CC_NDUPACK);
        assert_eq!(tp.snd_ssthresh, want, "loss_compete {compete}");
        assert_eq!(st(&cc).shadow_w, 25 * MSS);
        assert_eq!(count(&cc, COUNTER_LOSSES_IGNORED), 0);
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
    assert_eq!(count(&cc, COUNTER_LOSSES_IGNORED), 1);
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
    tp.snd_cwnd = 20 * MSS;
    cc.cong_signal(&mut tp, CC_ECN);
    assert_eq!((tp.snd_cwnd, tp.snd_ssthresh), (10 * MSS, 10 * MSS));
    assert!(tp.in_congrecovery());
    tp.t_flags = 0;
    tp.snd_cwnd = 16 * MSS;
    cc.cong_signal(&mut tp, CC_RTO);
    assert_eq!((tp.snd_cwnd, tp.snd_ssthresh), (MSS, 8 * MSS));
}

#[test]
fn sysctl_defaults_ranges_and_checks() {
    let table: Vec<_> = Chd::PARAMS
        .iter()
        .map(|d| (d.name.as_str(), d.default, d.min, d.max))
        .collect();
    let uint = u32::MAX as i64;
    assert_eq!(
        table,
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
    let einval = HookStatus(Errno::EINVAL.0);
    let values = defaults();
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
    let fresh = defaults();
    assert_eq!(sysctl(g, &fresh, PARAM_QUEUE_THRESHOLD, 5), einval);
    assert!(sysctl(g, &fresh, PARAM_QUEUE_THRESHOLD, 6).is_ok());
    values[PARAM_QUEUE_MIN].store(3, Ordering::Relaxed);
    assert!(sysctl(g, &values, PARAM_QUEUE_THRESHOLD, 4).is_ok());
    values[PARAM_QUEUE_MIN].store(30, Ordering::Relaxed);
    assert_eq!(sysctl(g, &values, PARAM_QUEUE_THRESHOLD, 30), einval);
}

/// The module's sysctl values at their defaults, as the host keeps them.
fn defaults() -> Vec<AtomicIsize> {
    Chd::PARAMS
        .iter()
        .map(|d| AtomicIsize::new(d.default as isize))
        .collect()
}

/// What the host does for `sysctl net.inet.tcp.cc.chd.<param>=value`: the range check, the
/// module's check against the current values, then the store.
fn sysctl(g: &CcGlobals, values: &[AtomicIsize], idx: usize, value: i64) -> HookStatus {
    let d = &Chd::PARAMS[idx];
    if !(d.min..=d.max).contains(&value) {
        return HookStatus(Errno::EINVAL.0);
    }
    let st = (cc_algo().param_check().unwrap())(idx as u32, value, g, values.into());
    if st.is_ok() {
        values[idx].store(value as isize, Ordering::Relaxed);
    }
    st
}

#[test]
fn cb_destroy_frees_state() {
    let (mut cc, _tp) = conn();
    assert!(!cc.ccv.cc_data.is_null());
    assert!((cc.hooks.cb_destroy.unwrap())(&mut cc.ccv).is_ok());
    assert!(cc.ccv.cc_data.is_null());
}
