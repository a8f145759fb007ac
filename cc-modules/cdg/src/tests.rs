//! CDG against Hayes and Armitage (IFIP Networking 2011) and FreeBSD cc_cdg, driven
//! through the ABI descriptor.

use super::*;
use plugtcp_abi::cc::{CC_DUPACK, CC_RTO};
use plugtcp_abi::HookStatus;
use plugtcp_tcpkit::cc::testing::{self, globals, round, sample, TestConn};
use proptest::prelude::*;

const MSS: u32 = 1460;
const MS: u32 = 1000;

/// An established connection on cdg, the sysctls at their defaults except `overrides`
/// (applied before cb_init, which fixes smoothing_factor), driven as the host drives it.
fn conn_with(iss: u32, irs: u32, overrides: &[(usize, i64)]) -> (TestConn<Cdg>, Tcpcb) {
    let mut tp = testing::tcpcb(MSS, 20 * MSS, 10 * MSS);
    tp.iss = iss;
    tp.irs = irs;
    tp.snd_max = 1_000_000;
    tp.snd_nxt = tp.snd_max;
    let mut cc = TestConn::attach(globals(), testing::params::<Cdg>(overrides), &mut tp);
    cc.conn_init(&mut tp);
    (cc, tp)
}

fn conn(overrides: &[(usize, i64)]) -> (TestConn<Cdg>, Tcpcb) {
    conn_with(0x1234_5678, 0x9abc_def0, overrides)
}

#[test]
fn backoff_probability_is_one_minus_exp() {
    // G = 3 ms: P = 1 - exp(-g/G).
    for (g, want) in [
        (1_500, 0.393_469_340_287_366_6),
        (3_000, 0.632_120_558_828_557_7),
        (6_000, 0.864_664_716_763_387_3),
        (15_000, 0.993_262_053_000_914_5),
    ] {
        let got = backoff_probability(g, 3);
        assert!((got - want).abs() < 1e-12, "g={g}: {got} != {want}");
    }
    // No backoff for a queue that does not grow.
    assert_eq!(backoff_probability(0, 3), 0.0);
    assert_eq!(backoff_probability(-5_000, 3), 0.0);
    // Beyond MAXGRAD * G a backoff is certain.
    assert_eq!(backoff_probability(15_001, 3), 1.0);
    // A gradient too small for FreeBSD's table still gets probexp[0].
    assert_eq!(backoff_probability(1, 10), PROBEXP_MIN);
    // FreeBSD's probexp table, (1 - exp(-idx/128)) << 15: with G = 128 ms, idx is g in ms.
    for (idx, entry) in [(1, 255.0), (64, 12_893.0), (128, 20_713.0), (640, 32_547.0)] {
        let p = backoff_probability(idx * 1000, 128);
        assert!((p * 32768.0 - entry).abs() < 1.0, "probexp[{idx}]");
    }
}

proptest! {
    #[test]
    fn backoff_probability_bounded_monotone_formula(
        scale in 1i64..200,
        a in -1_000_000i64..2_000_000,
        b in -1_000_000i64..2_000_000,
    ) {
        let (lo, hi) = (a.min(b), a.max(b));
        let (plo, phi) = (backoff_probability(lo, scale), backoff_probability(hi, scale));
        prop_assert!((0.0..=1.0).contains(&plo) && (0.0..=1.0).contains(&phi));
        prop_assert!(plo <= phi, "P({lo}) = {plo} > P({hi}) = {phi}");
        for (g, p) in [(lo, plo), (hi, phi)] {
            let g_over_scale = g as f64 / (scale as f64 * 1000.0);
            let want = if g <= 0 {
                0.0
            } else if g_over_scale > 5.0 {
                1.0
            } else {
                (1.0 - (-g_over_scale).exp()).max(10.0 / 32768.0)
            };
            prop_assert!((p - want).abs() < 1e-12);
        }
    }

    /// Each sample adds sample/size; once full, the oldest sample's share leaves. With
    /// samples that divide evenly that is exactly the mean of the last `size` samples.
    #[test]
    fn moving_average_is_the_windowed_mean(
        size in 1usize..16,
        raw in proptest::collection::vec(-2_000i64..2_000, 1..64),
    ) {
        let samples: Vec<i64> = raw.iter().map(|s| s * size as i64).collect();
        let mut avg = MovingAverage::new(size);
        for (i, &s) in samples.iter().enumerate() {
            avg.push(s);
            let window = &samples[(i + 1).saturating_sub(size)..=i];
            prop_assert_eq!(avg.trend, window.iter().sum::<i64>() / size as i64);
        }
    }
}

#[test]
fn moving_average_ramps_up_then_slides() {
    let mut avg = MovingAverage::new(4);
    let mut trends = vec![];
    for s in [400, 800, 1200, 1600, 2000, -400] {
        avg.push(s);
        trends.push(avg.trend);
    }
    // Filling: 400/4, +800/4, ...; full: + (new - oldest)/4.
    assert_eq!(trends, [100, 300, 600, 1000, 1400, 1100]);
    // Truncating division per step, as FreeBSD's integer arithmetic.
    let mut avg = MovingAverage::new(3);
    let mut trends = vec![];
    for s in [5, 5, 5, 7, 9] {
        avg.push(s);
        trends.push(avg.trend);
    }
    // 5/3 = 1 three times; then (7 - 5)/3 = 0 and (9 - 5)/3 = 1.
    assert_eq!(trends, [1, 2, 3, 3, 4]);
    // 0: no smoothing.
    let mut avg = MovingAverage::new(0);
    avg.push(700);
    avg.push(-300);
    assert_eq!(avg.trend, -300);
}

#[test]
fn gradients_are_per_rtt_min_and_max_differences_smoothed() {
    let (mut cc, mut tp) = conn(&[(PARAM_SMOOTHING_FACTOR, 4)]);
    // In recovery no backoff disturbs the measurement sequence.
    tp.t_flags = tf::FASTRECOVERY;
    round(&mut cc, &mut tp, &[50 * MS, 60 * MS, 55 * MS]);
    assert_eq!(
        (cc.state().minrtt_in_prevrtt, cc.state().maxrtt_in_prevrtt),
        (50 * MS, 60 * MS)
    );
    assert_eq!(
        cc.state().min_qtrend.trend,
        0,
        "nothing to compare with yet"
    );
    // min +400 us, max +2000 us.
    round(&mut cc, &mut tp, &[62 * MS, 50 * MS + 400]);
    assert_eq!(
        (cc.state().min_qtrend.trend, cc.state().max_qtrend.trend),
        (100, 500)
    );
    // min +800, max -4000.
    round(&mut cc, &mut tp, &[51 * MS + 200, 58 * MS]);
    assert_eq!(
        (cc.state().min_qtrend.trend, cc.state().max_qtrend.trend),
        (300, -500)
    );
    // Samples after the round's end belong to the next RTT.
    assert_eq!(cc.state().maxrtt_in_rtt, 0);
    sample(&mut cc, &mut tp, 99 * MS);
    assert_eq!(cc.state().maxrtt_in_rtt, 99 * MS);
}

#[test]
fn delayed_ack_samples_do_not_count() {
    let (mut cc, mut tp) = conn(&[]);
    // ACKs of two segments; a lone segment's ACK waited for the delayed-ACK timer.
    for (rtt, segs, end) in [
        (50 * MS, 2, false),
        (50 * MS, 2, false),
        (90 * MS, 1, false),
        (51 * MS, 2, true),
    ] {
        testing::sampled_ack(&mut cc, &mut tp, rtt, segs * MSS, end);
    }
    assert_eq!(
        (cc.state().minrtt_in_prevrtt, cc.state().maxrtt_in_prevrtt),
        (50 * MS, 51 * MS)
    );
}

/// Backs off on every positive gradient (G small: certain), never holding back.
fn eager() -> Vec<(usize, i64)> {
    vec![
        (PARAM_SMOOTHING_FACTOR, 0),
        (PARAM_EXP_BACKOFF_SCALE, 1),
        (PARAM_LOSS_COMPETE_CONSEC_CONG, UINT_MAX),
    ]
}

#[test]
fn empirical_backoff_rate_matches_probability() {
    for (g, n) in [(2_000u32, 20_000), (500, 20_000), (6_000, 10_000)] {
        let (mut cc, mut tp) = conn(&[
            (PARAM_SMOOTHING_FACTOR, 0),
            (PARAM_LOSS_COMPETE_CONSEC_CONG, UINT_MAX),
        ]);
        let before = cc.counter(COUNTER_DELAY_BACKOFFS);
        for _ in 0..n {
            // Congestion avoidance; the previous RTT at 50 ms, this one g higher.
            tp.t_flags = 0;
            tp.snd_cwnd = 20 * MSS;
            tp.snd_ssthresh = 10 * MSS;
            let s = cc.state_mut();
            s.minrtt_in_prevrtt = 50 * MS;
            s.maxrtt_in_prevrtt = 50 * MS;
            round(&mut cc, &mut tp, &[50 * MS + g]);
        }
        let hits = cc.counter(COUNTER_DELAY_BACKOFFS) - before;
        let p = 1.0 - (-(g as f64) / 3000.0).exp();
        testing::assert_rate(hits, n, p);
    }
}

#[test]
fn conn_init_seeds_the_prng_from_the_handshake() {
    let rng = |s: &Cdg| s.rng.clone();
    testing::assert_conn_init_reseeds(conn_with(0, 0, &[]), rng, connection_rng);
}

#[test]
fn prng_is_per_connection_and_deterministic() {
    let run = |iss, irs| {
        let (mut cc, mut tp) = conn_with(iss, irs, &[(PARAM_SMOOTHING_FACTOR, 0)]);
        (0..256)
            .map(|_| {
                tp.t_flags = 0;
                tp.snd_cwnd = 20 * MSS;
                let s = cc.state_mut();
                s.consec_cong_cnt = 0;
                s.minrtt_in_prevrtt = 50 * MS;
                s.maxrtt_in_prevrtt = 50 * MS;
                let before = cc.counter(COUNTER_DELAY_BACKOFFS);
                round(&mut cc, &mut tp, &[52 * MS]);
                cc.counter(COUNTER_DELAY_BACKOFFS) - before
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(run(5, 6), run(5, 6));
    assert_ne!(run(5, 6), run(5, 7));
}

#[test]
fn delay_backoff_keeps_beta_delay() {
    let (mut cc, mut tp) = conn(&eager());
    round(&mut cc, &mut tp, &[50 * MS]);
    tp.snd_cwnd = 20 * MSS;
    tp.snd_recover = 0;
    cc.state_mut().window_incr = 3;
    round(&mut cc, &mut tp, &[60 * MS]);
    assert_eq!(cc.counter(COUNTER_DELAY_BACKOFFS), 1);
    assert_eq!((tp.snd_cwnd, tp.snd_ssthresh), (14 * MSS, 14 * MSS), "70%");
    assert!(tp.in_congrecovery() && !tp.in_fastrecovery());
    assert_eq!(tp.snd_recover, tp.snd_max);
    assert_eq!((cc.state().window_incr, cc.state().rtt_count), (0, 0));
    // The next RTT's gradient is skipped: the backoff shows only in the one after.
    assert_eq!(cc.state().maxrtt_in_prevrtt, 0);
    tp.t_flags = 0;
    round(&mut cc, &mut tp, &[90 * MS]);
    assert_eq!(cc.counter(COUNTER_DELAY_BACKOFFS), 1);

    // beta_delay is live; the receive window bounds the window it applies to.
    cc.set_param(PARAM_BETA_DELAY, 50);
    for (wnd, want) in [(1 << 20, 10 * MSS), (10 * MSS, 5 * MSS), (0, MSS)] {
        tp.snd_wnd = wnd;
        tp.snd_cwnd = 20 * MSS;
        cc.cong_signal(&mut tp, CC_CDG_DELAY);
        assert_eq!(tp.snd_cwnd, want, "snd_wnd {wnd}");
    }
}

#[test]
fn no_backoff_on_falling_or_flat_gradients() {
    let (mut cc, mut tp) = conn(&eager());
    // Flat, then falling RTTs for many RTTs.
    let mut rtt = 500 * MS;
    for i in 0..400 {
        tp.t_flags = 0;
        if i >= 200 {
            rtt -= MS;
        }
        round(&mut cc, &mut tp, &[rtt, rtt + 5 * MS]);
    }
    assert_eq!(cc.counter(COUNTER_DELAY_BACKOFFS), 0);
    assert_eq!(cc.state().queue_state, QueueState::Falling);
    assert_eq!(cc.state().consec_cong_cnt, 0);
}

#[test]
fn slow_start_uses_the_raw_gradients() {
    // Eight RTTs of a shrinking queue (smoothed gradients -10 ms), then one RTT whose min
    // (or, with the min falling, max) RTT rises by 20 ms: the smoothed gradient stays
    // negative (-6.25 ms), the raw one is beyond 5 G. Slow start reacts to the raw gradient
    // (a certain backoff), congestion avoidance to the smoothed ones (none).
    let ms = i64::from(MS);
    for (dmin, dmax) in [(20 * ms, -10 * ms), (-10 * ms, 20 * ms)] {
        for (ssthresh, want) in [(u32::MAX, 1), (10 * MSS, 0)] {
            let (mut cc, mut tp) = conn(&[(PARAM_LOSS_COMPETE_CONSEC_CONG, UINT_MAX)]);
            tp.snd_ssthresh = ssthresh;
            tp.t_flags = tf::FASTRECOVERY;
            let (mut min, mut max) = (200 * ms, 250 * ms);
            for _ in 0..9 {
                round(&mut cc, &mut tp, &[min as u32, max as u32]);
                min -= 10 * ms;
                max -= 10 * ms;
            }
            let trends =
                |cc: &TestConn<Cdg>| (cc.state().min_qtrend.trend, cc.state().max_qtrend.trend);
            assert_eq!(trends(&cc), (-10_000, -10_000));
            tp.t_flags = 0;
            tp.snd_cwnd = 20 * MSS;
            let (min, max) = (min + 10 * ms + dmin, max + 10 * ms + dmax);
            round(&mut cc, &mut tp, &[min as u32, max as u32]);
            let smoothed = |d: i64| -10_000 + (d + 10_000) / 8;
            assert_eq!(trends(&cc), (smoothed(dmin), smoothed(dmax)));
            let got = cc.counter(COUNTER_DELAY_BACKOFFS);
            assert_eq!(got, want, "ssthresh {ssthresh}, ({dmin}, {dmax})");
        }
    }
}

#[test]
fn queue_state_from_the_two_gradients() {
    let (mut cc, mut tp) = conn(&eager());
    // In recovery: gradients and queue state update, no backoff moves anything.
    tp.t_flags = tf::FASTRECOVERY;
    round(&mut cc, &mut tp, &[100 * MS, 110 * MS]);
    assert_eq!(cc.state().queue_state, QueueState::Unknown);
    let mut step = |min: u32, max: u32| {
        round(&mut cc, &mut tp, &[min, max]);
        cc.state().queue_state
    };
    // (min, max) RTT of each RTT after (100, 110) ms.
    assert_eq!(step(101 * MS, 111 * MS), QueueState::Rising);
    assert_eq!(
        step(102 * MS, 111 * MS),
        QueueState::Full,
        "min up, max flat"
    );
    assert_eq!(step(101 * MS, 105 * MS), QueueState::Falling);
    assert_eq!(
        step(101 * MS, 104 * MS),
        QueueState::Empty,
        "min flat, max down"
    );
    assert_eq!(
        step(100 * MS, 110 * MS),
        QueueState::Empty,
        "min down, max up: unchanged"
    );
    assert_eq!(
        cc.state().shadow_w,
        0,
        "an empty queue: nobody to compete with"
    );
}

#[test]
fn loss_competition_holds_backoffs_after_consec_cong() {
    let (mut cc, mut tp) = conn(&[(PARAM_SMOOTHING_FACTOR, 0), (PARAM_EXP_BACKOFF_SCALE, 1)]);
    // Each episode: a skipped RTT (after a backoff), then a 20 ms rise: certain congestion.
    let mut rtt = 50 * MS;
    let mut log = vec![];
    for _ in 0..16 {
        tp.t_flags = 0;
        tp.snd_cwnd = 100 * MSS;
        round(&mut cc, &mut tp, &[rtt]);
        rtt += 20 * MS;
        round(&mut cc, &mut tp, &[rtt]);
        log.push((
            cc.counter(COUNTER_DELAY_BACKOFFS),
            cc.counter(COUNTER_BACKOFFS_HELD),
            tp.snd_cwnd,
            cc.state().shadow_w,
        ));
    }
    // 5 backoffs, 5 held (then the count restarts), 5 backoffs, held again.
    let backoffs: Vec<_> = log.iter().map(|l| l.0).collect();
    let held: Vec<_> = log.iter().map(|l| l.1).collect();
    assert_eq!(backoffs, [1, 2, 3, 4, 5, 5, 5, 5, 5, 5, 6, 7, 8, 9, 10, 10]);
    assert_eq!(held, [0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 5, 5, 5, 5, 5, 6]);
    // A held episode leaves cwnd (grown by a segment in the skipped RTT) and resyncs the
    // shadow window to it.
    assert_eq!((log[5].2, log[5].3), (101 * MSS, 101 * MSS));
    assert!(log[4].2 < 101 * MSS && log[4].3 < 101 * MSS);
}

#[test]
fn a_falling_queue_resets_the_congestion_count() {
    // Either gradient falling means our backoffs work: the episode count restarts.
    let ms = i64::from(MS);
    for (dmin, dmax) in [(-ms, -ms), (0, -ms), (-ms, 0)] {
        let (mut cc, mut tp) = conn(&[(PARAM_SMOOTHING_FACTOR, 0), (PARAM_EXP_BACKOFF_SCALE, 1)]);
        let (mut min, mut max) = (50 * MS, 60 * MS);
        // A skipped RTT (after a backoff), then one whose RTTs move by (dmin, dmax).
        let mut episode = |cc: &mut TestConn<Cdg>, tp: &mut Tcpcb, dmin: i64, dmax: i64| {
            tp.t_flags = 0;
            round(cc, tp, &[min, max]);
            min = (i64::from(min) + dmin) as u32;
            max = (i64::from(max) + dmax) as u32;
            round(cc, tp, &[min, max]);
        };
        let rise = 20 * ms;
        for _ in 0..4 {
            episode(&mut cc, &mut tp, rise, rise);
        }
        assert_eq!(cc.state().consec_cong_cnt, 4);
        episode(&mut cc, &mut tp, dmin, dmax);
        assert_eq!(cc.state().consec_cong_cnt, 0, "({dmin}, {dmax})");
        for _ in 0..5 {
            episode(&mut cc, &mut tp, rise, rise);
        }
        assert_eq!(cc.counter(COUNTER_DELAY_BACKOFFS), 9);
        assert_eq!(cc.counter(COUNTER_BACKOFFS_HELD), 0);
    }
}

#[test]
fn loss_is_congestion_only_with_a_full_or_unknown_queue() {
    // Unknown queue state (the start): a congestion loss, beta_loss of cwnd but at least
    // half the shadow window.
    let (mut cc, mut tp) = conn(&[]);
    assert_eq!(cc.state().shadow_w, 20 * MSS, "conn_init starts it at cwnd");
    cc.state_mut().shadow_w = 40 * MSS;
    cc.state_mut().window_incr = 2;
    tp.snd_cwnd = 30 * MSS;
    cc.cong_signal(&mut tp, CC_NDUPACK);
    assert_eq!(cc.state().shadow_w, 20 * MSS);
    assert_eq!(tp.snd_ssthresh, 20 * MSS, "max(shadow/2, 50% of cwnd)");
    assert!(tp.in_fastrecovery() && tp.in_congrecovery());
    assert_eq!(cc.state().window_incr, 0);
    assert_eq!(cc.counter(COUNTER_LOSSES_IGNORED), 0);
    // Without a shadow window: beta_loss.
    let (mut cc, mut tp) = conn(&[(PARAM_BETA_LOSS, 60)]);
    cc.state_mut().shadow_w = 0;
    cc.state_mut().queue_state = QueueState::Full;
    tp.snd_cwnd = 30 * MSS;
    cc.cong_signal(&mut tp, CC_NDUPACK);
    assert_eq!((tp.snd_ssthresh, cc.state().shadow_w), (18 * MSS, 0));

    // Rising, falling or empty: not congestion, the window stays.
    for state in [QueueState::Empty, QueueState::Rising, QueueState::Falling] {
        let (mut cc, mut tp) = conn(&[]);
        cc.state_mut().queue_state = state;
        tp.snd_cwnd = 30 * MSS;
        cc.cong_signal(&mut tp, CC_NDUPACK);
        assert_eq!(tp.snd_ssthresh, 30 * MSS, "{state:?}");
        assert_eq!(cc.state().shadow_w, 20 * MSS, "{state:?}");
        assert_eq!(tp.snd_recover, tp.snd_max);
        assert!(tp.in_fastrecovery());
        assert_eq!(cc.counter(COUNTER_LOSSES_IGNORED), 1);
    }
    // Already reducing after a delay backoff.
    let (mut cc, mut tp) = conn(&[]);
    tp.t_flags = tf::CONGRECOVERY;
    tp.snd_cwnd = 30 * MSS;
    cc.cong_signal(&mut tp, CC_NDUPACK);
    assert_eq!(tp.snd_ssthresh, 30 * MSS);
}

#[test]
fn window_increase_per_ack_in_slow_start_per_rtt_after() {
    let (mut cc, mut tp) = conn(&[]);
    // Slow start: one segment per ACK whatever it acknowledges; the shadow follows.
    tp.snd_cwnd = 4 * MSS;
    cc.state_mut().shadow_w = 4 * MSS;
    cc.state_mut().window_incr = 3;
    for bytes in [100, MSS] {
        cc.ccv.bytes_this_ack = bytes;
        cc.ack_received(&mut tp, CC_ACK);
    }
    assert_eq!((tp.snd_cwnd, cc.state().shadow_w), (6 * MSS, 6 * MSS));
    assert_eq!(cc.state().window_incr, 0);
    cc.ack_received(&mut tp, CC_DUPACK);
    assert_eq!(tp.snd_cwnd, 6 * MSS, "not on duplicate ACKs");

    // Congestion avoidance: only when an RTT ends (flat RTTs: no gradient).
    tp.snd_ssthresh = 5 * MSS;
    cc.ccv.bytes_this_ack = MSS;
    cc.ack_received(&mut tp, CC_ACK);
    assert_eq!(tp.snd_cwnd, 6 * MSS);
    let mut cwnds = vec![];
    for _ in 0..3 {
        round(&mut cc, &mut tp, &[50 * MS]);
        cwnds.push(tp.snd_cwnd / MSS);
    }
    assert_eq!(cwnds, [7, 8, 9]);
    assert_eq!(cc.state().shadow_w, 9 * MSS);
    assert_eq!(cc.counter(COUNTER_DELAY_BACKOFFS), 0);

    // alpha_inc 2: alpha grows by a segment every 2 RTTs; the shadow stays NewReno's.
    cc.set_param(PARAM_ALPHA_INC, 2);
    let mut incrs = vec![];
    for _ in 0..6 {
        let before = tp.snd_cwnd;
        round(&mut cc, &mut tp, &[50 * MS]);
        incrs.push((tp.snd_cwnd - before) / MSS);
    }
    assert_eq!(incrs, [0, 1, 1, 2, 2, 3]);
    assert_eq!(cc.state().shadow_w, 15 * MSS);

    // The scaled maximum window caps both.
    tp.snd_scale = 0;
    tp.snd_cwnd = 65_000;
    tp.snd_ssthresh = u32::MAX;
    cc.ack_received(&mut tp, CC_ACK);
    assert_eq!(tp.snd_cwnd, 65_535);
}

#[test]
fn ecn_rto_and_recovery_exit_are_newreno() {
    let (mut cc, mut tp) = conn(&[]);
    testing::assert_newreno_ecn(&mut cc, &mut tp);
    tp.t_flags = 0;
    tp.snd_cwnd = 16 * MSS;
    cc.cong_signal(&mut tp, CC_RTO);
    assert_eq!((tp.snd_cwnd, tp.snd_ssthresh), (MSS, 8 * MSS));
    tp.t_flags = tf::FASTRECOVERY;
    tp.snd_ssthresh = 10 * MSS;
    cc.ccv.curack = tp.snd_max - 3 * MSS;
    cc.ccv.pipe = tp.snd_max.wrapping_sub(cc.ccv.curack);
    cc.post_recovery(&mut tp);
    assert_eq!(tp.snd_cwnd, 4 * MSS, "pipe + 1 segment");
    testing::assert_newreno_after_idle(&mut cc, &mut tp);
}

#[test]
fn sysctl_defaults_ranges_and_checks() {
    assert_eq!(
        testing::param_table::<Cdg>(),
        [
            ("version", 1, i64::MIN, i64::MAX),
            ("alpha_inc", 0, 0, UINT_MAX),
            ("beta_delay", 70, 1, 100),
            ("beta_loss", 50, 1, 100),
            ("exp_backoff_scale", 3, 1, UINT_MAX),
            ("smoothing_factor", 8, 0, UINT_MAX),
            ("loss_compete_consec_cong", 5, 0, UINT_MAX),
            ("loss_compete_hold_backoff", 5, 0, UINT_MAX),
        ]
    );
    let algo = cc_algo();
    assert_eq!(algo.name().as_str(), "cdg");
    assert!(algo.ctl_output().is_none() && algo.ecnpkt_handler().is_none());
    let g = globals();
    // No check of cdg's looks at another parameter: the defaults as the current values.
    let current = testing::param_defaults::<Cdg>();
    let param_check = algo.param_check().unwrap();
    let check =
        |idx: u32, value: i64, g: &CcGlobals| param_check(idx, value, g, current.as_slice().into());
    let einval = HookStatus(Errno::EINVAL.0);
    for v in [0, 1, 2] {
        assert_eq!(
            check(PARAM_VERSION as u32, v, g),
            HookStatus(Errno::EPERM.0)
        );
    }
    for idx in [PARAM_BETA_DELAY, PARAM_BETA_LOSS] {
        assert_eq!(check(idx as u32, 0, g), einval);
        assert_eq!(check(idx as u32, 101, g), einval);
        assert!(check(idx as u32, 100, g).is_ok());
    }
    assert_eq!(check(PARAM_EXP_BACKOFF_SCALE as u32, 0, g), einval);
    assert!(check(PARAM_EXP_BACKOFF_SCALE as u32, 1, g).is_ok());
    assert!(check(PARAM_SMOOTHING_FACTOR as u32, 0, g).is_ok());

    // smoothing_factor is fixed per connection at cb_init.
    let (cc, _tp) = conn(&[(PARAM_SMOOTHING_FACTOR, 2)]);
    cc.set_param(PARAM_SMOOTHING_FACTOR, 16);
    assert_eq!(cc.state().min_qtrend, MovingAverage::new(2));
}

#[test]
fn cb_destroy_frees_state() {
    let (mut cc, _tp) = conn(&[]);
    cc.assert_cb_destroy_frees_state();
}
