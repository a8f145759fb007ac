//! HD against Budzisz et al. (2009) and FreeBSD cc_hd, driven through the ABI descriptor.

use super::*;
use plugtcp_abi::cc::{ccf, CcConn, CC_DUPACK, CC_NDUPACK, CC_RTO};
use plugtcp_abi::tcpcb::tf;
use plugtcp_abi::HookStatus;
use plugtcp_tcpkit::cc::testing::{self, assert_rate, globals, TestConn};
use std::sync::atomic::Ordering;

const MSS: u32 = 1460;
const MS: u32 = 1000;

/// A connection on hd with the sysctl defaults, driven as the host drives it.
fn conn_with(iss: u32, irs: u32) -> (TestConn<Hd>, Tcpcb) {
    let mut tp = testing::tcpcb(MSS, 20 * MSS, 10 * MSS);
    tp.iss = iss;
    tp.irs = irs;
    tp.snd_max = 1_000_000;
    tp.snd_nxt = tp.snd_max;
    let cc = TestConn::attach(globals(), testing::params::<Hd>(&[]), &mut tp);
    (cc, tp)
}

fn conn() -> (TestConn<Hd>, Tcpcb) {
    conn_with(0x1234_5678, 0x9abc_def0)
}

fn backoffs(cc: &TestConn<Hd>) -> usize {
    cc.counter(COUNTER_DELAY_BACKOFFS)
}

/// Feeds h_ertt a minimum RTT, a maximum RTT, then the current RTT (the latest sample),
/// each with the ACK of one segment, in recovery so that nothing else happens.
fn delays(cc: &mut CcConn, tp: &mut Tcpcb, minrtt: u32, maxrtt: u32, rtt: u32) {
    let flags = tp.t_flags;
    tp.t_flags |= tf::FASTRECOVERY;
    for s in [minrtt, maxrtt, rtt] {
        testing::sample(cc, tp, s);
    }
    tp.t_flags = flags;
}

fn ack(cc: &mut CcConn, tp: &mut Tcpcb) {
    cc.ccv.bytes_this_ack = MSS;
    cc.ccv.flags |= ccf::CWND_LIMITED;
    cc.ack_received(tp, CC_ACK);
}

/// Runs `n` ACKs at a fixed queueing delay and counts the backoffs, undoing each one so
/// that every ACK is an independent trial.
fn trials(cc: &mut TestConn<Hd>, tp: &mut Tcpcb, n: usize) -> usize {
    let before = backoffs(cc);
    for _ in 0..n {
        tp.snd_cwnd = 20 * MSS;
        tp.snd_ssthresh = 10 * MSS;
        tp.t_flags &= !tf::INRECOVERY;
        ack(cc, tp);
    }
    backoffs(cc) - before
}

#[test]
fn empirical_backoff_rate_matches_probability() {
    let (mut cc, mut tp) = conn();
    // minrtt 50 ms, maxrtt 100 ms: qdly 10 ms on the rising side, p = 5% * 5/15.
    delays(&mut cc, &mut tp, 50 * MS, 100 * MS, 60 * MS);
    let n = 60_000;
    assert_rate(trials(&mut cc, &mut tp, n), n, 0.05 / 3.0);

    // At the threshold with pmax 40%.
    cc.set_param(PARAM_PMAX, 40);
    cc.rttsample(&mut tp, 70 * MS, 0, 0);
    assert_rate(trials(&mut cc, &mut tp, 20_000), 20_000, 0.4);

    // Falling side: qdly 40 ms of a 50 ms maximum, p = 40% * 10/30.
    cc.rttsample(&mut tp, 90 * MS, 0, 0);
    assert_rate(trials(&mut cc, &mut tp, 20_000), 20_000, 0.4 / 3.0);
}

#[test]
fn conn_init_seeds_the_prng_from_the_handshake() {
    let rng = |s: &Hd| s.rng.clone();
    testing::assert_conn_init_reseeds(conn_with(0, 0), rng, connection_rng);
}

#[test]
fn prng_is_per_connection_and_deterministic() {
    let run = |iss, irs| {
        let (mut cc, mut tp) = conn_with(iss, irs);
        cc.set_param(PARAM_PMAX, 50);
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
    cc.set_param(PARAM_PMAX, 100);
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
    cc.set_param(PARAM_PMAX, 100);
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
    cc.set_param(PARAM_PMAX, 100);
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
    cc.set_param(PARAM_PMAX, 100);
    delays(&mut cc, &mut tp, 50 * MS, 100 * MS, 52 * MS);
    // The receiver delays ACKs: two segments per ACK.
    let ack_of = |cc: &mut CcConn, tp: &mut Tcpcb, rtt: u32, segs: u32| {
        testing::sampled_ack(cc, tp, rtt, segs * MSS, false);
    };
    for _ in 0..3 {
        ack_of(&mut cc, &mut tp, 52 * MS, 2);
    }
    // A lone segment's ACK waited for the delayed-ACK timer: 70 ms is not a queue (which
    // would back off for certain at qdly = queue_threshold).
    ack_of(&mut cc, &mut tp, 70 * MS, 1);
    assert_eq!(backoffs(&cc), 0);
    assert_eq!(cc.state().hertt.ertt.rtt, 52 * MS);
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
    cc.ccv.pipe = tp.snd_max.wrapping_sub(cc.ccv.curack);
    cc.post_recovery(&mut tp);
    assert_eq!(tp.snd_cwnd, 15 * MSS);
    // RTO.
    tp.t_flags = 0;
    tp.snd_cwnd = 16 * MSS;
    cc.cong_signal(&mut tp, CC_RTO);
    assert_eq!((tp.snd_cwnd, tp.snd_ssthresh), (MSS, 8 * MSS));
    // Idle restart.
    testing::assert_newreno_after_idle(&mut cc, &mut tp);
}

#[test]
fn sysctl_defaults_ranges_and_checks() {
    assert_eq!(
        testing::param_table::<Hd>(),
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
    let sysctl = testing::sysctl::<Hd>;
    let einval = HookStatus(Errno::EINVAL.0);
    let values = testing::param_defaults::<Hd>();
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
    let fresh = testing::param_defaults::<Hd>();
    assert_eq!(sysctl(g, &fresh, PARAM_QUEUE_MIN, 21), einval);
    assert_eq!(sysctl(g, &fresh, PARAM_QUEUE_THRESHOLD, 4), einval);
    values[PARAM_QUEUE_THRESHOLD].store(50, Ordering::Relaxed);
    assert!(sysctl(g, &values, PARAM_QUEUE_MIN, 45).is_ok());
    values[PARAM_QUEUE_MIN].store(2, Ordering::Relaxed);
    assert!(sysctl(g, &values, PARAM_QUEUE_THRESHOLD, 3).is_ok());
}

#[test]
fn cb_destroy_frees_state() {
    let (mut cc, _tp) = conn();
    cc.assert_cb_destroy_frees_state();
}
