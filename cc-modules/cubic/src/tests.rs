//! CUBIC against RFC 9438's formulas (computed here independently in f64), FreeBSD's
//! cc_cubic behaviour and RFC 9406 HyStart++.

use super::*;
use plugtcp_abi::cc::{CcGlobals, CC_DUPACK};
use plugtcp_abi::TcpState;
use plugtcp_tcpkit::cc::testing::{self, TestConn};
use proptest::prelude::*;
use std::sync::atomic::Ordering;

const MSS: u32 = 1460;
const MSS_F: f64 = MSS as f64;

/// RFC 9438 constants, spelled out again so that the tests do not borrow the module's.
const C: f64 = 0.4;
const BETA: f64 = 0.7;

/// The tests' globals with FreeBSD's net.inet.tcp.cc.hystartplusplus defaults.
fn globals() -> &'static CcGlobals {
    let g = testing::globals();
    g.hystartplusplus_minrtt_thresh
        .store(4000, Ordering::Relaxed);
    g.hystartplusplus_maxrtt_thresh
        .store(16000, Ordering::Relaxed);
    g.hystartplusplus_n_rttsamples.store(8, Ordering::Relaxed);
    g.hystartplusplus_css_growth_div.store(4, Ordering::Relaxed);
    g.hystartplusplus_css_rounds.store(5, Ordering::Relaxed);
    g
}

/// A control block as a connection would have it, with a large send window.
fn tcpcb(cwnd_segs: u32) -> Tcpcb {
    let mut tp = Tcpcb::new(MSS);
    tp.t_state = TcpState::Established;
    tp.snd_cwnd = cwnd_segs * MSS;
    tp.snd_ssthresh = u32::MAX;
    tp.snd_wnd = 1 << 30;
    tp.snd_scale = 14;
    tp
}

/// A connection on cubic through its ABI descriptor, as a host would set it up.
fn attach(g: &'static CcGlobals, tp: &mut Tcpcb) -> TestConn<Cubic> {
    let mut cc = TestConn::attach(g, testing::params::<Cubic>(&[]), tp);
    cc.conn_init(tp);
    cc
}

fn conn(cwnd_segs: u32) -> (TestConn<Cubic>, Tcpcb) {
    let mut tp = tcpcb(cwnd_segs);
    let cc = attach(globals(), &mut tp);
    (cc, tp)
}

fn ack(cc: &mut TestConn<Cubic>, tp: &mut Tcpcb, bytes: u32) {
    tp.snd_una = tp.snd_una.wrapping_add(bytes);
    tp.snd_max = tp.snd_una.wrapping_add(tp.snd_cwnd);
    tp.snd_nxt = tp.snd_max;
    cc.ccv.bytes_this_ack = bytes;
    cc.ccv.flags |= ccf::CWND_LIMITED;
    cc.ack_received(tp, CC_ACK);
}

/// Gives the module CUBIC_MIN_RTT_SAMPLES samples of `rtt_us` so that it trusts srtt.
fn trust_rtt(cc: &mut TestConn<Cubic>, tp: &mut Tcpcb, rtt_us: u32) {
    tp.t_srtt = rtt_us;
    for _ in 0..CUBIC_MIN_RTT_SAMPLES {
        cc.rttsample(tp, rtt_us, 0, 0);
    }
    cc.ack_received(tp, CC_DUPACK);
    assert_eq!(cc.state().min_rtt_usecs, rtt_us);
}

/// A loss at the current cwnd, then the end of fast recovery with a full pipe.
fn loss_and_recovery(cc: &mut TestConn<Cubic>, tp: &mut Tcpcb) {
    tp.snd_max = tp.snd_una.wrapping_add(tp.snd_cwnd);
    cc.on_cong_signal(tp, CC_NDUPACK);
    {
        let (ack, pipe) = (tp.snd_una, tp.snd_max.wrapping_sub(tp.snd_una));
        cc.on_post_recovery(tp, ack, pipe)
    };
    assert!(!tp.in_recovery());
}

/// [`conn`] trusting an RTT of `rtt_us`, after a loss at `cwnd_segs` segments and the end of
/// its recovery.
fn after_loss(rtt_us: u32, cwnd_segs: u32) -> (TestConn<Cubic>, Tcpcb) {
    let (mut cc, mut tp) = conn(10);
    trust_rtt(&mut cc, &mut tp, rtt_us);
    tp.snd_cwnd = cwnd_segs * MSS;
    loss_and_recovery(&mut cc, &mut tp);
    (cc, tp)
}

/// FreeBSD slow-starts while cwnd <= ssthresh, so the ACK after recovery (cwnd = ssthresh)
/// still adds a segment; congestion avoidance begins with the next one.
fn leave_slow_start(cc: &mut TestConn<Cubic>, tp: &mut Tcpcb) {
    assert_eq!(tp.snd_cwnd, tp.snd_ssthresh);
    ack(cc, tp, MSS);
    assert_eq!(tp.snd_cwnd, tp.snd_ssthresh + MSS);
}

fn cbrt_ref(x: f64) -> f64 {
    x.signum() * x.abs().powf(1.0 / 3.0)
}

/// RFC 9438 equation 1 with equation 2's K, independently of the module.
fn w_cubic_ref(t: f64, w_max: f64, cwnd_epoch: f64) -> f64 {
    let k = cbrt_ref((w_max - cwnd_epoch) / C);
    C * (t - k).powf(3.0) + w_max
}

/// RFC 9438 equation 4 with alpha_cubic from equation 5 (1 once W_est reaches cwnd_prior).
fn w_est_step(w_est: f64, segs_acked: f64, cwnd: f64, cwnd_prior: f64) -> f64 {
    let alpha = if w_est >= cwnd_prior {
        1.0
    } else {
        3.0 * (1.0 - BETA) / (1.0 + BETA)
    };
    w_est + alpha * segs_acked / cwnd
}

/// ACK clocking for `rounds` RTTs: each round, a window's worth of one-MSS ACKs evenly
/// spread over the RTT, `t_rcvtime` advancing. After every ACK, `check` sees the time and
/// the window before the ACK.
fn ack_clock(
    cc: &mut TestConn<Cubic>,
    tp: &mut Tcpcb,
    now: &mut u64,
    rtt_ns: u64,
    rounds: usize,
    mut check: impl FnMut(&TestConn<Cubic>, &Tcpcb, u64, u32),
) {
    for _ in 0..rounds {
        let n = (tp.snd_cwnd / MSS).max(1) as u64;
        for _ in 0..n {
            *now += rtt_ns / n;
            tp.t_rcvtime = *now;
            let before = tp.snd_cwnd;
            ack(cc, tp, MSS);
            check(cc, tp, *now, before);
        }
    }
}

proptest! {
    /// RFC 9438 equations 1, 2 and 5 as the module exposes them.
    #[test]
    fn k_and_w_cubic_match_rfc9438(
        w_max in 1.0f64..1.0e6,
        epoch_frac in 0.0f64..1.5,
        t in 0.0f64..1000.0,
    ) {
        // K with cwnd_epoch = beta * W_max: cbrt(W_max * (1 - beta) / C).
        let k_beta = (w_max * (1.0 - BETA) / C).powf(1.0 / 3.0);
        let k = cubic_k(w_max, BETA * w_max);
        prop_assert!((k - k_beta).abs() <= 1e-9 * k_beta.max(1.0), "{k} vs {k_beta}");

        // The general K and W_cubic(t), also for cwnd_epoch above W_max (negative K).
        let cwnd_epoch = epoch_frac * w_max;
        let k = cubic_k(w_max, cwnd_epoch);
        let k_ref = cbrt_ref((w_max - cwnd_epoch) / C);
        prop_assert!((k - k_ref).abs() <= 1e-9 * k_ref.abs().max(1.0));
        let w = w_cubic(t, k, w_max);
        let w_ref = w_cubic_ref(t, w_max, cwnd_epoch);
        prop_assert!((w - w_ref).abs() <= 1e-9 * w_ref.abs().max(1.0), "{w} vs {w_ref}");
        // The curve starts at cwnd_epoch and passes W_max at K.
        prop_assert!((w_cubic(0.0, k, w_max) - cwnd_epoch).abs() <= 1e-6 * w_max.max(1.0));
        prop_assert!((w_cubic(k, k, w_max) - w_max).abs() <= 1e-9 * w_max);

        // Equation 4 and the target clamp of section 4.2.
        let cwnd = w_max.max(2.0);
        let est = w_est(cwnd_epoch, 1.0, cwnd, w_max);
        prop_assert_eq!(est, w_est_step(cwnd_epoch, 1.0, cwnd, w_max));
        let target = cubic_target(w, cwnd);
        prop_assert!(target >= cwnd && target <= 1.5 * cwnd);
        if w >= cwnd && w <= 1.5 * cwnd {
            prop_assert_eq!(target, w);
        }
    }
}

#[test]
fn alpha_cubic_is_rfc9438_equation_5() {
    assert!((ALPHA_CUBIC - 0.9 / 1.7).abs() < 1e-15);
    assert_eq!(alpha_cubic(10.0, 20.0), ALPHA_CUBIC);
    assert_eq!(alpha_cubic(20.0, 20.0), 1.0);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// After a loss at W_max, congestion avoidance follows RFC 9438: cwnd never exceeds
    /// max(W_cubic(t + RTT), W_est(t)); where W_cubic(t) < W_est it is W_est; otherwise it
    /// is at least W_cubic(t - RTT) (less one segment); and where the cubic region rules it
    /// comes within a segment of W_max when W_cubic does, to half an RTT.
    #[test]
    fn congestion_avoidance_follows_w_cubic(
        w_max_segs in 100u32..1500,
        rtt_ms in 10u64..200,
    ) {
        let (mut cc, mut tp) = conn(10);
        let rtt_us = (rtt_ms * 1000) as u32;
        let rtt = rtt_ms as f64 / 1000.0;
        trust_rtt(&mut cc, &mut tp, rtt_us);
        tp.snd_cwnd = w_max_segs * MSS;
        tp.snd_ssthresh = tp.snd_cwnd / 2;
        loss_and_recovery(&mut cc, &mut tp);
        // Multiplicative decrease: cwnd = ssthresh = beta * W_max (bytes, rounded down).
        prop_assert_eq!(tp.snd_cwnd as u64, w_max_segs as u64 * MSS as u64 * 7 / 10);
        leave_slow_start(&mut cc, &mut tp);

        let w_max = w_max_segs as f64;
        let cwnd_epoch = tp.snd_cwnd as f64 / MSS_F;
        let k = cbrt_ref((w_max - cwnd_epoch) / C);

        let mut now = 5_000_000_000u64;
        let rtt_ns = rtt_ms * 1_000_000;
        let mut t0 = None;
        let mut est = cwnd_epoch;
        let mut reached_w_max = None;
        let mut cubic_dominated = true;
        let rounds = ((1.3 * k + 2.0 * rtt) / rtt).ceil() as usize;
        let mut failure = None;
        ack_clock(&mut cc, &mut tp, &mut now, rtt_ns, rounds, |cc, tp, now, before| {
            if failure.is_some() {
                return;
            }
            let t0 = *t0.get_or_insert(now);
            if cc.state().t_epoch != Some(t0) {
                failure = Some(format!("epoch began at {:?}, not {t0}", cc.state().t_epoch));
            }
            let t = (now - t0) as f64 / 1e9;
            est = w_est_step(est, 1.0, before as f64 / MSS_F, w_max);
            let cwnd = tp.snd_cwnd as f64 / MSS_F;
            let upper = w_cubic_ref(t + rtt, w_max, cwnd_epoch).max(est).max(cwnd_epoch);
            if cwnd > upper + 1.0 / MSS_F {
                failure = Some(format!(
                    "t={t}: cwnd {cwnd} above max(W_cubic(t+RTT), W_est) {upper}"
                ));
            }
            let w_t = w_cubic_ref(t, w_max, cwnd_epoch);
            if w_t < est {
                // (Both start at cwnd_epoch, so the first ACKs are trivially Reno-friendly.)
                cubic_dominated = cubic_dominated && (t < rtt || t > k);
                if (tp.snd_cwnd as f64) < (est * MSS_F).floor() - 1.0 {
                    failure = Some(format!(
                        "t={t}: Reno-friendly region, cwnd {cwnd} < W_est {est}"
                    ));
                }
            } else {
                let lower = w_cubic_ref(t - rtt, w_max, cwnd_epoch).min(w_t) - 1.0;
                if cwnd < lower {
                    failure = Some(format!("t={t}: cwnd {cwnd} lags W_cubic {w_t} by over an RTT"));
                }
            }
            if reached_w_max.is_none() && tp.snd_cwnd >= w_max_segs * MSS - MSS {
                reached_w_max = Some(t);
            }
        });
        prop_assert!(failure.is_none(), "{}", failure.unwrap());
        let reached = reached_w_max.expect("cwnd never came back to W_max");
        // W_cubic comes within a segment of W_max cbrt(1 / C) seconds before K.
        let t_near = k - (1.0 / C).powf(1.0 / 3.0);
        if cubic_dominated {
            prop_assert!(
                (reached - t_near).abs() <= 0.5 * rtt,
                "within a segment of W_max at {reached}, W_cubic at {t_near} (K = {k})"
            );
        } else {
            prop_assert!(reached <= t_near + 2.0 * rtt);
        }
    }
}

#[test]
fn multiplicative_decrease_on_loss() {
    let (mut cc, mut tp) = conn(100);
    tp.snd_max = tp.snd_una + 100 * MSS;
    cc.on_cong_signal(&mut tp, CC_NDUPACK);
    // RFC 9438 4.6: ssthresh = cwnd * beta_cubic; W_max = cwnd; cwnd_prior = cwnd.
    assert_eq!(tp.snd_ssthresh, 70 * MSS);
    assert_eq!(cc.state().w_max, 100 * MSS);
    assert_eq!(cc.state().cwnd_prior, 100 * MSS);
    assert!(tp.in_fastrecovery() && tp.in_congrecovery());
    assert!(cc.state().flags & CONG_EVENT != 0);
    assert_eq!(
        cc.state().t_epoch,
        None,
        "the epoch begins with congestion avoidance"
    );
    // A second signal in the same recovery changes nothing.
    tp.snd_cwnd = 73 * MSS;
    cc.on_cong_signal(&mut tp, CC_NDUPACK);
    assert_eq!(tp.snd_ssthresh, 70 * MSS);
    assert_eq!(cc.state().w_max, 100 * MSS);
    // Recovery ends at ssthresh.
    {
        let (ack, pipe) = (tp.snd_una, tp.snd_max.wrapping_sub(tp.snd_una));
        cc.on_post_recovery(&mut tp, ack, pipe)
    };
    assert_eq!(tp.snd_cwnd, 70 * MSS);
    assert!(!tp.in_recovery());

    // Odd sizes: beta applied to bytes, rounded down; at least two segments.
    let (mut cc, mut tp) = conn(10);
    tp.snd_cwnd = 12345;
    cc.cong_signal(&mut tp, CC_NDUPACK);
    assert_eq!(tp.snd_ssthresh, 12345 * 7 / 10);
    let (mut cc, mut tp) = conn(2);
    cc.cong_signal(&mut tp, CC_NDUPACK);
    assert_eq!(tp.snd_ssthresh, 2 * MSS);
}

#[test]
fn post_recovery_with_little_in_flight_avoids_a_burst() {
    let (mut cc, mut tp) = conn(100);
    tp.snd_max = tp.snd_una + 100 * MSS;
    cc.cong_signal(&mut tp, CC_NDUPACK);
    tp.snd_una = tp.snd_max - 3 * MSS;
    cc.ccv.curack = tp.snd_una;
    cc.ccv.pipe = tp.snd_max.wrapping_sub(cc.ccv.curack);
    cc.post_recovery(&mut tp);
    assert_eq!(tp.snd_cwnd, 4 * MSS, "pipe + 1 SMSS (RFC 6582)");
}

#[test]
fn ecn_reduces_once_per_window() {
    let (mut cc, mut tp) = conn(100);
    tp.t_flags2 |= plugtcp_abi::tcpcb::tf2::ECN_PERMIT;
    tp.snd_max = tp.snd_una + 100 * MSS;
    cc.on_cong_signal(&mut tp, CC_ECN);
    assert_eq!((tp.snd_cwnd, tp.snd_ssthresh), (70 * MSS, 70 * MSS));
    assert!(tp.in_congrecovery() && !tp.in_fastrecovery());
    // More ECEs in the same window: no further reduction.
    cc.on_cong_signal(&mut tp, CC_ECN);
    cc.on_cong_signal(&mut tp, CC_ECN);
    assert_eq!((tp.snd_cwnd, tp.snd_ssthresh), (70 * MSS, 70 * MSS));
    // A loss within the ECN window enters fast recovery without reducing again.
    cc.on_cong_signal(&mut tp, CC_NDUPACK);
    assert_eq!(tp.snd_ssthresh, 70 * MSS);
    assert!(tp.in_fastrecovery());
}

#[test]
fn fast_convergence_lowers_w_max() {
    let (mut cc, mut tp) = conn(100);
    loss_and_recovery(&mut cc, &mut tp);
    assert_eq!(cc.state().w_max, 100 * MSS);
    // Lost again below the last maximum: W_max = cwnd * (1 + beta) / 2 (RFC 9438 4.7),
    // ssthresh still cwnd * beta (4.6).
    tp.snd_cwnd = 80 * MSS;
    loss_and_recovery(&mut cc, &mut tp);
    assert_eq!(cc.state().w_max, 80 * MSS * 17 / 20);
    assert_eq!(cc.state().w_max, 68 * MSS);
    assert_eq!(tp.snd_ssthresh, 56 * MSS);
    assert_eq!(cc.state().cwnd_prior, 80 * MSS);
    // Lost above the last maximum: W_max = cwnd.
    tp.snd_cwnd = 90 * MSS;
    loss_and_recovery(&mut cc, &mut tp);
    assert_eq!(cc.state().w_max, 90 * MSS);
    assert_eq!(tp.snd_ssthresh, 63 * MSS);
}

#[test]
fn k_of_the_epoch_after_loss() {
    let (mut cc, mut tp) = conn(10);
    trust_rtt(&mut cc, &mut tp, 50_000);
    tp.snd_cwnd = 400 * MSS;
    tp.snd_ssthresh = 200 * MSS;
    loss_and_recovery(&mut cc, &mut tp);
    assert_eq!(tp.snd_cwnd, 280 * MSS);
    tp.t_rcvtime = 6_000_000_000;
    leave_slow_start(&mut cc, &mut tp);
    assert_eq!(cc.state().t_epoch, None);
    tp.t_rcvtime = 7_000_000_000;
    ack(&mut cc, &mut tp, MSS);
    let s = cc.state();
    assert_eq!(s.t_epoch, Some(7_000_000_000));
    assert_eq!(s.cwnd_epoch, 281 * MSS);
    assert_eq!(s.w_max, 400 * MSS);
    // RFC 9438 equation 2 with cwnd_epoch = 281 segments.
    let k_ref = ((400.0 - 281.0) / C).powf(1.0 / 3.0);
    assert!((s.k - k_ref).abs() < 1e-9, "K {} vs {k_ref}", s.k);
}

#[test]
fn reno_friendly_region_takes_over_at_small_bdp() {
    // 30 segments at 2 ms: K is 2.8 s (1400 RTTs) while Reno adds a segment per RTT.
    let (mut cc, mut tp) = conn(10);
    trust_rtt(&mut cc, &mut tp, 2_000);
    tp.snd_cwnd = 30 * MSS;
    tp.snd_ssthresh = 15 * MSS;
    loss_and_recovery(&mut cc, &mut tp);
    leave_slow_start(&mut cc, &mut tp);
    let w_max = 30.0;
    let cwnd_epoch = tp.snd_cwnd as f64 / MSS_F;
    let mut est = cwnd_epoch;
    let mut now = 1_000_000_000u64;
    let mut t0 = None;
    let mut reno_acks = 0;
    ack_clock(
        &mut cc,
        &mut tp,
        &mut now,
        2_000_000,
        100,
        |cc, tp, now, before| {
            let t0 = *t0.get_or_insert(now);
            let t = (now - t0) as f64 / 1e9;
            est = w_est_step(est, 1.0, before as f64 / MSS_F, w_max);
            if w_cubic_ref(t, w_max, cwnd_epoch) < est {
                reno_acks += 1;
                // cwnd = W_est, to the byte.
                let want = (est * MSS_F).floor();
                assert!(
                    (tp.snd_cwnd as f64 - want).abs() <= 1.0,
                    "t={t}: cwnd {} vs W_est {want}",
                    tp.snd_cwnd
                );
            }
            assert!(cc.state().w_est > 0.0);
        },
    );
    assert!(reno_acks > 1000);
    // alpha_cubic (0.53 segments per RTT) from 22 segments until W_est reaches
    // cwnd_prior = 30 after about 15 RTTs, then 1 per RTT: about 115 segments after 100
    // RTTs (a little less, as a round is a whole number of ACKs), while W_cubic has barely
    // left 22.
    let cwnd = tp.snd_cwnd as f64 / MSS_F;
    let t = 0.2;
    assert!(cwnd > 105.0 && cwnd < 116.0, "cwnd {cwnd} segments");
    assert!(cwnd > w_cubic_ref(t, w_max, cwnd_epoch) + 50.0);
}

/// HyStart++ with FreeBSD's defaults: 8 samples per round, thresholds 4-16 ms, CSS growth
/// divided by 4 for 5 rounds.
#[test]
fn hystart_css_and_exit() {
    fn round(cc: &mut TestConn<Cubic>, tp: &mut Tcpcb, rtt_us: u32, round_cnt: u32) {
        for _ in 0..8 {
            cc.rttsample(tp, rtt_us, 0, 0);
            ack(cc, tp, MSS);
        }
        cc.newround(tp, round_cnt);
    }
    let setup = || {
        let (mut cc, mut tp) = conn(10);
        cc.ccv.flags |= ccf::HYSTART_ALLOWED;
        tp.t_srtt = 100_000;
        round(&mut cc, &mut tp, 100_000, 1);
        (cc, tp)
    };

    // An RTT increase just below last round's min + max(4 ms, min(16 ms, min/8 = 12.5 ms)).
    let (mut cc, mut tp) = setup();
    round(&mut cc, &mut tp, 112_499, 2);
    assert_eq!(cc.state().hystart.phase, Phase::SlowStart);

    // At the threshold: Conservative Slow Start.
    let (mut cc, mut tp) = setup();
    for _ in 0..8 {
        cc.rttsample(&mut tp, 112_500, 0, 0);
    }
    assert_eq!(cc.state().hystart.phase, Phase::Css);
    let before = tp.snd_cwnd;
    ack(&mut cc, &mut tp, MSS);
    assert_eq!(
        tp.snd_cwnd - before,
        MSS / 4,
        "CSS growth divided by css_growth_div"
    );
    cc.newround(&mut tp, 2);
    for r in 3..=5 {
        round(&mut cc, &mut tp, 113_000, r);
        assert_eq!(cc.state().hystart.phase, Phase::Css);
        assert_eq!(tp.snd_ssthresh, u32::MAX);
    }
    // The fifth round of CSS ends slow start: ssthresh = cwnd.
    round(&mut cc, &mut tp, 113_000, 6);
    assert_eq!(cc.state().hystart.phase, Phase::Done);
    assert_eq!(tp.snd_ssthresh, tp.snd_cwnd);

    // cwnd = ssthresh is still slow start; then congestion avoidance with W_max undefined
    // (RFC 9438 4.10): K = 0, W_max = cwnd_prior = cwnd.
    ack(&mut cc, &mut tp, MSS);
    assert!(tp.snd_cwnd > tp.snd_ssthresh);
    tp.t_rcvtime = 3_000_000_000;
    ack(&mut cc, &mut tp, MSS);
    let s = cc.state();
    assert_eq!(s.t_epoch, Some(3_000_000_000));
    assert_eq!(s.k, 0.0);
    assert_eq!(s.w_max, s.cwnd_epoch);
    assert_eq!(s.cwnd_prior, s.cwnd_epoch);
    assert_eq!(s.flags & CONG_EVENT, 0);

    // A false alarm: a lower RTT in CSS returns to standard slow start.
    let (mut cc, mut tp) = setup();
    for _ in 0..8 {
        cc.rttsample(&mut tp, 120_000, 0, 0);
    }
    assert_eq!(cc.state().hystart.phase, Phase::Css);
    cc.rttsample(&mut tp, 110_000, 0, 0);
    assert_eq!(cc.state().hystart.phase, Phase::SlowStart);

    // Loss ends HyStart++; retransmitted samples (rxtcnt > 1) are ignored.
    let (mut cc, mut tp) = setup();
    for _ in 0..8 {
        cc.rttsample(&mut tp, 200_000, 2, 0);
    }
    assert_eq!(cc.state().hystart.phase, Phase::SlowStart);
    cc.cong_signal(&mut tp, CC_NDUPACK);
    assert_eq!(cc.state().hystart.phase, Phase::Done);
}

#[test]
fn slow_start_until_rtt_is_trusted() {
    let (mut cc, mut tp) = conn(10);
    tp.snd_ssthresh = 5 * MSS;
    tp.t_srtt = 30_000;
    // cwnd > ssthresh, but FreeBSD slow-starts until 8 RTT samples vouch for srtt.
    ack(&mut cc, &mut tp, 2 * MSS);
    assert_eq!(tp.snd_cwnd, 12 * MSS);
    assert_eq!(cc.state().min_rtt_usecs, 0);
    trust_rtt(&mut cc, &mut tp, 30_000);
    let before = tp.snd_cwnd;
    ack(&mut cc, &mut tp, 2 * MSS);
    assert!(tp.snd_cwnd - before < MSS, "congestion avoidance now");
    // ABC: at most L = 2 segments per ACK in slow start.
    let (mut cc, mut tp) = conn(10);
    ack(&mut cc, &mut tp, 5 * MSS);
    assert_eq!(tp.snd_cwnd, 12 * MSS);
}

#[test]
fn no_growth_when_not_cwnd_limited_or_in_recovery() {
    let (mut cc, mut tp) = conn(10);
    cc.ccv.bytes_this_ack = MSS;
    cc.ccv.flags = 0;
    cc.ack_received(&mut tp, CC_ACK);
    assert_eq!(tp.snd_cwnd, 10 * MSS);
    assert!(cc.state().flags & IN_APPLIMIT != 0);
    tp.t_flags |= tf::FASTRECOVERY;
    ack(&mut cc, &mut tp, MSS);
    assert_eq!(tp.snd_cwnd, 10 * MSS);
    tp.t_flags = 0;
    testing::assert_dupack_keeps_cwnd(&mut cc, &mut tp);
}

#[test]
fn rto_and_spurious_rto_undo() {
    let (mut cc, mut tp) = after_loss(40_000, 100);
    leave_slow_start(&mut cc, &mut tp);
    tp.t_rcvtime = 1_000_000_000;
    ack(&mut cc, &mut tp, MSS);
    let before = cc.state().clone();
    let (cwnd, ssthresh) = (tp.snd_cwnd, tp.snd_ssthresh);
    assert!(before.t_epoch.is_some());

    // RFC 9438 4.8: ssthresh = max(2, min(snd_wnd, flight) * beta / SMSS) SMSS, cwnd = 1 SMSS.
    tp.snd_max = tp.snd_una + 80 * MSS;
    tp.snd_wnd = 90 * MSS;
    tp.t_rxtshift = 1;
    cc.on_cong_signal(&mut tp, CC_RTO);
    assert_eq!(tp.snd_cwnd, MSS);
    assert_eq!(tp.snd_ssthresh, 56 * MSS);
    assert!(cc.state().flags & RTO_EVENT != 0);
    // Later backoffs keep the first one's ssthresh.
    tp.t_rxtshift = 2;
    tp.snd_wnd = 10 * MSS;
    cc.on_cong_signal(&mut tp, CC_RTO);
    assert_eq!(tp.snd_ssthresh, 56 * MSS);

    // The RTO was spurious: everything as before it.
    cc.cong_signal(&mut tp, CC_RTO_ERR);
    assert_eq!((tp.snd_cwnd, tp.snd_ssthresh), (cwnd, ssthresh));
    let after = cc.state();
    assert_eq!(after.w_max, before.w_max);
    assert_eq!(after.k, before.k);
    assert_eq!(after.w_est, before.w_est);
    assert_eq!(after.cwnd_epoch, before.cwnd_epoch);
    assert_eq!(after.cwnd_prior, before.cwnd_prior);
    assert_eq!(after.t_epoch, before.t_epoch);
    assert_eq!(after.flags & (RTO_EVENT | CONG_EVENT), CONG_EVENT);
    // Without a saved state there is nothing to undo.
    cc.cong_signal(&mut tp, CC_RTO_ERR);
    assert_eq!((tp.snd_cwnd, tp.snd_ssthresh), (cwnd, ssthresh));

    // A real RTO: slow start to ssthresh, then the first congestion-avoidance stage has
    // K = 0 and W_max = W_est = cwnd at its start.
    tp.t_rxtshift = 1;
    tp.snd_wnd = 1 << 30;
    tp.snd_max = tp.snd_una + 20 * MSS;
    cc.on_cong_signal(&mut tp, CC_RTO);
    assert_eq!(tp.snd_ssthresh, 14 * MSS);
    tp.t_rxtshift = 0;
    while tp.snd_cwnd <= tp.snd_ssthresh {
        ack(&mut cc, &mut tp, MSS);
    }
    tp.t_rcvtime = 9_000_000_000;
    let cwnd = tp.snd_cwnd;
    ack(&mut cc, &mut tp, MSS);
    let s = cc.state();
    assert_eq!(s.t_epoch, Some(9_000_000_000));
    assert_eq!((s.k, s.w_max, s.cwnd_epoch), (0.0, cwnd, cwnd));
    assert_eq!(s.flags & (RTO_EVENT | IN_SLOWSTART), 0);
    // W_cubic(t) = W_max + C t^3 from here: after 2 s at most + C (2 + RTT)^3 segments
    // on top of the Reno-friendly estimate.
    let mut now = 9_000_000_000;
    // cwnd_prior is still that of the loss at 100 segments; W_est began at cwnd_epoch and
    // has seen the ACK at 9 s.
    assert_eq!(cc.state().cwnd_prior, 100 * MSS);
    let mut est = w_est_step(cwnd as f64 / MSS_F, 1.0, cwnd as f64 / MSS_F, 100.0);
    ack_clock(
        &mut cc,
        &mut tp,
        &mut now,
        40_000_000,
        50,
        |cc, tp, now, before| {
            est = w_est_step(est, 1.0, before as f64 / MSS_F, 100.0);
            let t = (now - 9_000_000_000) as f64 / 1e9;
            let cubic = cwnd as f64 / MSS_F + C * (t + 0.04).powi(3);
            assert!(
                tp.snd_cwnd as f64 / MSS_F <= cubic.max(est) + 1e-3,
                "t={t}: cwnd {} cubic {cubic} est {est} state {:?}",
                tp.snd_cwnd as f64 / MSS_F,
                cc.state()
            );
        },
    );
    assert!(tp.snd_cwnd > cwnd);
}

#[test]
fn switched_in_on_a_large_window() {
    // Another module ran the connection up to 1000 segments and left ssthresh at 700.
    let g = globals();
    let mut tp = tcpcb(1000);
    tp.snd_ssthresh = 700 * MSS;
    tp.t_srtt = 40_000;
    tp.t_rcvtime = 50_000_000_000;
    let mut cc = attach(g, &mut tp);
    let s = cc.state();
    assert_eq!(s.w_max, 1000 * MSS);
    assert_eq!(s.min_rtt_usecs, 40_000, "srtt trusted at once");

    // Congestion avoidance from the first ACK: no slow-start jump, K = 0, W_max = cwnd.
    tp.t_rcvtime += 40_000;
    ack(&mut cc, &mut tp, 2 * MSS);
    assert!(tp.snd_cwnd - 1000 * MSS < MSS);
    let s = cc.state();
    assert_eq!((s.k, s.w_max), (0.0, 1000 * MSS));
    let t0 = s.t_epoch.unwrap();
    // Then Reno-friendly growth (alpha = 1 as W_est starts at cwnd_prior): about one
    // segment per RTT, bounded by W_max + C t^3.
    let mut now = tp.t_rcvtime;
    let mut est = 1000.0 + 2.0 / 1000.0;
    ack_clock(
        &mut cc,
        &mut tp,
        &mut now,
        40_000_000,
        30,
        |_, tp, now, before| {
            est = w_est_step(est, 1.0, before as f64 / MSS_F, 1000.0);
            let t = (now - t0) as f64 / 1e9;
            let cwnd = tp.snd_cwnd as f64 / MSS_F;
            let cubic = 1000.0 + C * (t + 0.04).powi(3);
            assert!(cwnd <= cubic.max(est) + 1e-3, "t={t}: {cwnd}");
            assert!(cwnd >= est.min(cubic) - 1.0);
        },
    );
    let cwnd = tp.snd_cwnd;
    let segs = cwnd as f64 / MSS_F;
    assert!((1025.0..1035.0).contains(&segs), "cwnd {segs}");

    // A loss works from the inherited state.
    loss_and_recovery(&mut cc, &mut tp);
    assert_eq!(tp.snd_cwnd as u64, cwnd as u64 * 7 / 10);
    assert_eq!(cc.state().w_max, cwnd);

    // Switched in before any loss (ssthresh infinite): slow start, as FreeBSD.
    let mut tp = tcpcb(1000);
    tp.t_srtt = 40_000;
    let mut cc = attach(g, &mut tp);
    ack(&mut cc, &mut tp, 2 * MSS);
    assert_eq!(tp.snd_cwnd, 1002 * MSS);

    // Switched in during fast recovery: the recovery ends at ssthresh.
    let mut tp = tcpcb(1000);
    tp.snd_ssthresh = 500 * MSS;
    tp.t_flags |= tf::FASTRECOVERY | tf::CONGRECOVERY;
    tp.snd_max = tp.snd_una + 900 * MSS;
    let mut cc = attach(g, &mut tp);
    {
        let (ack, pipe) = (tp.snd_una, tp.snd_max.wrapping_sub(tp.snd_una));
        cc.on_post_recovery(&mut tp, ack, pipe)
    };
    assert_eq!(tp.snd_cwnd, 500 * MSS);
}

#[test]
fn after_idle_does_not_count_idle_time() {
    let (mut cc, mut tp) = after_loss(100_000, 10);
    tp.snd_cwnd = 8 * MSS;
    tp.snd_ssthresh = 4 * MSS;
    tp.t_rcvtime = 1_000_000_000;
    ack(&mut cc, &mut tp, MSS);
    assert_eq!(cc.state().t_epoch, Some(1_000_000_000));
    tp.snd_cwnd = 8 * MSS;

    // Without the idle restart, an ACK 100 s into the epoch jumps by the 1.5 cwnd clamp.
    {
        let (mut cc2, mut tp2) = conn(10);
        // Give it this connection's state.
        *cc2.state_mut() = cc.state().clone();
        tp2.clone_from(&tp);
        tp2.t_rcvtime = 101_000_000_000;
        ack(&mut cc2, &mut tp2, MSS);
        assert_eq!(tp2.snd_cwnd - tp.snd_cwnd, MSS / 2);
    }

    // RFC 5681 restart window, ssthresh at least 3/4 of cwnd, W_max keeps the old window.
    cc.after_idle(&mut tp);
    assert_eq!(tp.snd_cwnd, 8 * MSS, "min(IW, cwnd)");
    assert_eq!(tp.snd_ssthresh, 6 * MSS);
    assert_eq!(cc.state().w_max, 10 * MSS);
    assert_eq!(
        cc.state().hystart.phase,
        Phase::SlowStart,
        "HyStart++ re-enabled"
    );
    tp.t_rcvtime = 101_000_000_000;
    ack(&mut cc, &mut tp, MSS);
    let s = cc.state();
    assert_eq!(s.t_epoch, Some(101_000_000_000));
    let k_ref = cbrt_ref((10.0 - 8.0) / C);
    assert!((s.k - k_ref).abs() < 1e-9);
    // W_cubic(0) = cwnd: only the Reno-friendly alpha/cwnd of a segment.
    let grown = tp.snd_cwnd - 8 * MSS;
    assert!(
        grown <= (MSS_F * (0.9 / 1.7) / 8.0).ceil() as u32,
        "grew {grown}"
    );

    // A large window after idle: back to the initial window, then slow start.
    let (mut cc, mut tp) = conn(100);
    testing::assert_newreno_after_idle(&mut cc, &mut tp);
    assert_eq!(cc.state().w_max, 100 * MSS);
}

#[test]
fn application_limited_time_does_not_count() {
    let (mut cc, mut tp) = after_loss(50_000, 200);
    leave_slow_start(&mut cc, &mut tp);
    tp.t_rcvtime = 1_000_000_000;
    ack(&mut cc, &mut tp, MSS);
    assert_eq!(cc.state().t_epoch, Some(1_000_000_000));
    // Application-limited ACKs for 30 s: no growth, and the epoch restarts afterwards.
    tp.t_rcvtime = 31_000_000_000;
    let cwnd = tp.snd_cwnd;
    cc.ccv.flags &= !ccf::CWND_LIMITED;
    cc.ccv.bytes_this_ack = MSS;
    cc.ack_received(&mut tp, CC_ACK);
    assert_eq!(tp.snd_cwnd, cwnd);
    tp.t_rcvtime = 31_050_000_000;
    ack(&mut cc, &mut tp, MSS);
    let s = cc.state();
    assert_eq!(s.t_epoch, Some(31_050_000_000));
    assert_eq!(s.cwnd_epoch, cwnd);
    let k_ref = cbrt_ref((200.0 - cwnd as f64 / MSS_F) / C);
    assert!((s.k - k_ref).abs() < 1e-9);
    assert!(tp.snd_cwnd - cwnd < MSS / 4);
}

#[test]
fn mean_rtt_of_the_epoch_taken_at_recovery_end() {
    let (mut cc, mut tp) = conn(10);
    trust_rtt(&mut cc, &mut tp, 20_000);
    assert_eq!(cc.state().mean_rtt_usecs, 20_000, "primed by the min RTT");
    for srtt in [30_000, 40_000, 50_000] {
        tp.t_srtt = srtt;
        cc.ack_received(&mut tp, CC_DUPACK);
    }
    tp.snd_cwnd = 50 * MSS;
    loss_and_recovery(&mut cc, &mut tp);
    assert_eq!(
        cc.state().mean_rtt_usecs,
        (20_000 + 30_000 + 40_000 + 50_000) / 4
    );
    assert_eq!(cc.state().min_rtt_usecs, 20_000);
}

#[test]
fn descriptor_and_lifecycle() {
    let algo = cc_algo();
    assert_eq!(algo.name().as_str(), "cubic");
    assert!(algo.params().is_empty(), "cc_cubic has no sysctls");
    assert!(algo.ctl_output().is_none(), "nor TCP_CCALGOOPT");
    assert!(algo.ecnpkt_handler().is_none());
    let (mut cc, _tp) = conn(10);
    cc.assert_cb_destroy_frees_state();
}
