//! HD against Budzisz et al. (2009) and FreeBSD cc_hd, driven through the ABI descriptor.

use super::*;
use plugtcp_framework::cc::{ccf, CcConn, CcHooks, CC_DUPACK, CC_NDUPACK, CC_RTO};
use plugtcp_framework::tcpcb::tf;
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

/// A connection on hd with the sysctl defaults, driven as the host drives it.
fn conn_with(iss: u32, irs: u32) -> (CcConn, Tcpcb) {
    let params: &'static [AtomicIsize] = Box::leak(
        Hd::PARAMS
            .iter()
            .map(|d| AtomicIsize::new(d.default as isize))
            .collect::<Vec<_>>()
            .into_boxed_slice(),
    );
    let counters: &'static [AtomicUsize] = Box::leak(
        Hd::COUNTERS
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
    (cc, tp)
}

fn conn() -> (CcConn, Tcpcb) {
    conn_with(0x1234_5678, 0x9abc_def0)
}

fn st(cc: &CcConn) -> &Hd {
    // SAFETY: cc_data is the Box<Hd> made by this module's cb_init.
    unsafe { &*(cc.ccv.cc_data as *const Hd) }
}

fn set(cc: &CcConn, idx: usize, v: i64) {
    cc.ccv.params[idx].store(v as isize, Ordering::Relaxed);
}

fn backoffs(cc: &CcConn) -> usize {
    cc.ccv.counters[COUNTER_DELAY_BACKOFFS].load(Ordering::Relaxed)
}

/// Feeds h_ertt a minimum RTT, a maximum RTT, then the current RTT (the latest sample),
/// each with the ACK of one segment, in recovery so that nothing else happens.
fn delays(cc: &mut CcConn, tp: &mut Tcpcb, minrtt: u32, maxrtt: u32, rtt: u32) {
    let flags = tp.t_flags;
    tp.t_flags |= tf::FASTRECOVERY;
    for s in [minrtt, maxrtt, rtt] {
        cc.rttsample(tp, s, 0, 0);
        cc.ccv.bytes_this_ack = MSS;
        cc.ack_received(tp, CC_ACK);
    }
    tp.t_flags = flags;
}

fn ack(cc: &mut CcConn, tp: &mut Tcpcb) {
    cc.ccv.bytes_this_ack = MSS;
    cc.ccv.flags |= ccf::CWND_LIMITED;
    cc.ack_received(tp, CC_ACK);
}

/// The paper's triangle, written out independently: 0 up to qmin, linear to pmax at qth,
/// linear back to 0 at qmax.
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
fn backoff_probability_is_the_papers_triangle() {
    let (qmin, qth, qmax, pmax) = (5_000, 20_000, 50_000, 0.05);
    for (q, want) in [
        (0, 0.0),
        (5_000, 0.0),
        (8_000, 0.01),
        (12_500, 0.025),
        (19_999, 0.05 * 14_999.0 / 15_000.0),
        (20_000, 0.05),
        (35_000, 0.025),
        (44_000, 0.01),
        (50_000, 0.0),
        (70_000, 0.0),
    ] {
        let got = backoff_probability(q, qmax, qmin, qth, pmax);
        assert!((got - want).abs() < 1e-12, "q={q}: {got} != {want}");
        let reference = paper(q as f64, qmax as f64, qmin as f64, qth as f64, pmax);
        assert!((got - reference).abs() < 1e-12, "q={q}");
    }
    // A maximum delay no larger than the threshold leaves nothing above it to fall over.
    assert_eq!(backoff_probability(25_000, 20_000, qmin, qth, pmax), 0.0);
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
        // Rising up to the threshold, falling after it.
        if hi <= qthresh {
            prop_assert!(p(lo) <= p(hi));
        }
        if lo >= qthresh {
            prop_assert!(p(lo) >= p(hi));
        }
        prop_assert_eq!(p(qthresh), pmax);
    }
}

/// Runs `n` ACKs at a fixed queueing delay and counts the backoffs, undoing each one so
/// that every ACK is an independent trial.
fn trials(cc: &mut CcConn, tp: &mut Tcpcb, n: usize) -> usize {
    let before = backoffs(cc);
    for _ in 0..n {
        tp.snd_cwnd = 20 * MSS;
        tp.snd_ssthresh = 10 * MSS;
        tp.t_flags &= !tf::INRECOVERY;
        ack(cc, tp);
    }
    backoffs(cc) - before
}

fn assert_rate(hits: usize, n: usize, p: f64) {
    let mean = n as f64 * p;
    let sd = (n as f64 * p * (1.0 - p)).sqrt();
    assert!(
        (hits as f64 - mean).abs() <= 5.0 * sd,
        "{hits} backoffs in {n} trials, expected {mean:.1} +- {:.1}",
        5.0 * sd
    );
}

#[test]
fn empirical_backoff_rate_matches_probability() {
    let (mut cc, mut tp) = conn();
    // minrtt 50 ms, maxrtt 100 ms: qdly 10 ms on the rising side, p = 5% * 5/15.
    delays(&mut cc, &mut tp, 50 * MS, 100 * MS, 60 * MS);
    let n = 60_000;
    assert_rate(trials(&mut cc, &mut tp, n), n, 0.05 / 3.0);

    // At the threshold with pmax 40%.
    set(&cc, PARAM_PMAX, 40);
    cc.rttsample(&mut tp, 70 * MS, 0, 0);
    assert_rate(trials(&mut cc, &mut tp, 20_000), 20_000, 0.4);

    // Falling side: qdly 40 ms of a 50 ms maximum, p = 40% * 10/30.
    cc.rttsample(&mut tp, 90 * MS, 0, 0);
    assert_rate(trials(&mut cc, &mut tp, 20_000), 20_000, 0.4 / 3.0);
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
        set(&cc, PARAM_PMAX, 50);
        delays(&mut cc, &mut tp, 50 * MS, 100 * MS, 70 * MS);
        (0..256)
            .map(|_| trials(&mut cc, &mut tp, 1))
            .collect::<Vec<_>>()
    };
    assert_eq!(run(1, 2), run(1, 2));
    assert_ne!(run(1, 2), run(3, 2));
    assert_ne!(run(1, 2), run(1, 4));
}

#[test]
fn backoff_halves_cwnd_like_newreno_ecn() {
    let (mut cc, mut tp) = conn();
    // pmax 100% at the threshold: p = 1.
    set(&cc, PARAM_PMAX, 100);
    delays(&mut cc, &mut tp, 50 * MS, 100 * MS, 70 * MS);
    tp.snd_cwnd = 20 * MSS + 700;
    tp.snd_recover = 0;
    ack(&mut cc, &mut tp);
    assert_eq!(backoffs(&cc), 1);
    assert_eq!(tp.snd_ssthresh, 10 * MSS, "half, in whole segments");
    assert_eq!(
        tp.snd_cwnd,
        10 * MSS,
        "no increase on the ACK that backs off"
    );
    assert!(tp.in_congrecovery() && !tp.in_fastrecovery());
    assert_eq!(tp.snd_recover, tp.snd_max);
    // In recovery there is no second backoff, and no growth either (NewReno).
    ack(&mut cc, &mut tp);
    assert_eq!((backoffs(&cc), tp.snd_cwnd), (1, 10 * MSS));
}

#[test]
fn no_backoff_at_or_below_queue_min() {
    let (mut cc, mut tp) = conn();
    set(&cc, PARAM_PMAX, 100);
    // qdly exactly queue_min (5 ms): never.
    delays(&mut cc, &mut tp, 50 * MS, 100 * MS, 55 * MS);
    assert_eq!(trials(&mut cc, &mut tp, 2_000), 0);
    // 1 us above it: p = 1/15000 per ACK, so now and then.
    cc.rttsample(&mut tp, 55 * MS + 1, 0, 0);
    assert!(trials(&mut cc, &mut tp, 200_000) > 0);
    // Below queue_min HD is NewReno: slow start adds the bytes acknowledged.
    cc.rttsample(&mut tp, 52 * MS, 0, 0);
    tp.snd_cwnd = 4 * MSS;
    ack(&mut cc, &mut tp);
    assert_eq!(tp.snd_cwnd, 5 * MSS);
}

#[test]
fn no_backoff_without_rtt_or_in_recovery_or_on_dupacks() {
    let (mut cc, mut tp) = conn();
    set(&cc, PARAM_PMAX, 100);
    // No RTT sample yet.
    assert_eq!(trials(&mut cc, &mut tp, 100), 0);
    delays(&mut cc, &mut tp, 50 * MS, 100 * MS, 70 * MS);
    for flag in [tf::FASTRECOVERY, tf::CONGRECOVERY] {
        tp.t_flags = flag;
        ack(&mut cc, &mut tp);
        assert_eq!(backoffs(&cc), 0);
    }
    tp.t_flags = 0;
    cc.ack_received(&mut tp, CC_DUPACK);
    assert_eq!(backoffs(&cc), 0);
    ack(&mut cc, &mut tp);
    assert_eq!(backoffs(&cc), 1);
}

#[test]
fn delayed_ack_samples_do_not_count() {
    let (mut cc, mut tp) = conn();
    set(&cc, PARAM_PMAX, 100);
    delays(&mut cc, &mut tp, 50 * MS, 100 * MS, 52 * MS);
    // The receiver delays ACKs: two segments per ACK.
    let ack_of = |cc: &mut CcConn, tp: &mut Tcpcb, rtt: u32, segs: u32| {
        cc.rttsample(tp, rtt, 0, 0);
        cc.ccv.bytes_this_ack = segs * MSS;
        cc.ack_received(tp, CC_ACK);
    };
    for _ in 0..3 {
        ack_of(&mut cc, &mut tp, 52 * MS, 2);
    }
    // A lone segment's ACK waited for the delayed-ACK timer: 70 ms is not a queue (which
    // would back off for certain at qdly = queue_threshold).
    ack_of(&mut cc, &mut tp, 70 * MS, 1);
    assert_eq!(backoffs(&cc), 0);
    assert_eq!(st(&cc).hertt.ertt.rtt, 52 * MS);
    ack_of(&mut cc, &mut tp, 70 * MS, 2);
    assert_eq!(backoffs(&cc), 1);
}

#[test]
fn newreno_everywhere_else() {
    let (mut cc, mut tp) = conn();
    // Slow start with ABC (no delay yet).
    tp.snd_cwnd = 4 * MSS;
    cc.ccv.bytes_this_ack = 3 * MSS;
    cc.ccv.flags |= ccf::CWND_LIMITED;
    cc.ack_received(&mut tp, CC_ACK);
    assert_eq!(tp.snd_cwnd, 6 * MSS, "at most L=2 SMSS per ACK");
    // Loss: ssthresh halves, fast recovery.
    tp.snd_cwnd = 30 * MSS;
    cc.cong_signal(&mut tp, CC_NDUPACK);
    assert_eq!(tp.snd_ssthresh, 15 * MSS);
    assert!(tp.in_fastrecovery() && tp.in_congrecovery());
    cc.ccv.curack = tp.snd_max - 40 * MSS;
    cc.post_recovery(&mut tp);
    assert_eq!(tp.snd_cwnd, 15 * MSS);
    // RTO.
    tp.t_flags = 0;
    tp.snd_cwnd = 16 * MSS;
    cc.cong_signal(&mut tp, CC_RTO);
    assert_eq!((tp.snd_cwnd, tp.snd_ssthresh), (MSS, 8 * MSS));
    // Idle restart.
    tp.snd_cwnd = 100 * MSS;
    tp.snd_ssthresh = 20 * MSS;
    cc.after_idle(&mut tp);
    assert_eq!((tp.snd_cwnd, tp.snd_ssthresh), (10 * MSS, 75 * MSS));
}

#[test]
fn sysctl_defaults_ranges_and_checks() {
    let table: Vec<_> = Hd::PARAMS
        .iter()
        .map(|d| (d.name.as_str(), d.default, d.min, d.max))
        .collect();
    assert_eq!(
        table,
        [
            ("queue_threshold", 20, 1, u32::MAX as i64),
            ("pmax", 5, 1, 100),
            ("queue_min", 5, 0, u32::MAX as i64),
        ]
    );
    let algo = cc_algo();
    assert_eq!(algo.name().as_str(), "hd");
    assert!(algo.ctl_output().is_none() && algo.ecnpkt_handler().is_none());

    // FreeBSD's handlers: queue_min <= queue_threshold, queue_threshold >= queue_min.
    let g = globals();
    let einval = HookStatus(Errno::EINVAL.0);
    let values = defaults();
    assert_eq!(sysctl(g, &values, PARAM_QUEUE_MIN, 21), einval);
    assert!(sysctl(g, &values, PARAM_QUEUE_MIN, 20).is_ok());
    assert_eq!(sysctl(g, &values, PARAM_QUEUE_THRESHOLD, 19), einval);
    assert!(
        sysctl(g, &values, PARAM_QUEUE_THRESHOLD, 20).is_ok(),
        "equal is fine"
    );
    assert!(sysctl(g, &values, PARAM_QUEUE_THRESHOLD, 40).is_ok());
    assert!(sysctl(g, &values, PARAM_QUEUE_MIN, 30).is_ok());
    assert_eq!(sysctl(g, &values, PARAM_QUEUE_THRESHOLD, 29), einval);
    // The check itself refuses 0 (the declared minimum is 1 as well).
    let check = algo.param_check().unwrap();
    assert_eq!(
        check(PARAM_QUEUE_THRESHOLD as u32, 0, g, values.as_slice().into()),
        einval
    );
    assert_eq!(sysctl(g, &values, PARAM_PMAX, 0), einval);
    assert_eq!(sysctl(g, &values, PARAM_PMAX, 101), einval);
    assert!(sysctl(g, &values, PARAM_PMAX, 100).is_ok());
    assert_eq!(
        values
            .iter()
            .map(|v| v.load(Ordering::Relaxed) as i64)
            .collect::<Vec<_>>(),
        [40, 100, 30]
    );
    // The checks read the values stored now, whatever this module saw before: a fresh
    // registration (the defaults again) or another host.
    let fresh = defaults();
    assert_eq!(sysctl(g, &fresh, PARAM_QUEUE_MIN, 21), einval);
    assert_eq!(sysctl(g, &fresh, PARAM_QUEUE_THRESHOLD, 4), einval);
    values[PARAM_QUEUE_THRESHOLD].store(50, Ordering::Relaxed);
    assert!(sysctl(g, &values, PARAM_QUEUE_MIN, 45).is_ok());
    values[PARAM_QUEUE_MIN].store(2, Ordering::Relaxed);
    assert!(sysctl(g, &values, PARAM_QUEUE_THRESHOLD, 3).is_ok());
}

/// The module's sysctl values at their defaults, as the host keeps them.
fn defaults() -> Vec<AtomicIsize> {
    Hd::PARAMS
        .iter()
        .map(|d| AtomicIsize::new(d.default as isize))
        .collect()
}

/// What the host does for `sysctl net.inet.tcp.cc.hd.<param>=value`: the range check, the
/// module's check against the current values, then the store.
fn sysctl(g: &CcGlobals, values: &[AtomicIsize], idx: usize, value: i64) -> HookStatus {
    let d = &Hd::PARAMS[idx];
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
