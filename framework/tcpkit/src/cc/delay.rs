//! What the probabilistic delay-based modules share (CDG, CHD and HD, after FreeBSD's
//! cc_cdg, cc_chd and cc_hd): the Hamilton backoff probability of CHD and HD, their
//! millisecond sysctls, the seed of each connection's PRNG, and the shadow window with which
//! CDG and CHD keep up with loss-based flows.
//!
//! FreeBSD measures these delays in ticks (1 ms at the default hz=1000); the sysctls here are
//! in milliseconds and the delays are compared in microseconds, the unit of the RTT samples.

use super::common::max_cwnd;
use plugtcp_abi::tcpcb::Tcpcb;

/// Milliseconds (the sysctls) to microseconds (the RTT samples); a negative value is 0.
#[inline]
pub fn ms_to_us(ms: i64) -> u64 {
    (ms.max(0) as u64).saturating_mul(1000)
}

/// The Hamilton backoff probability (L. Budzisz, R. Stanojevic, R. Shorten and F. Baker,
/// IEEE Communications Letters 13(7), 2009; FreeBSD cc_hd's should_backoff, per ACK there,
/// and cc_chd's, per RTT) for queueing delay `qdly`, all delays in the same unit:
///
/// - 0 for `qdly <= qmin`;
/// - `pmax * (qdly - qmin) / (qthresh - qmin)` for `qmin < qdly < qthresh`;
/// - `pmax` at `qdly == qthresh`;
/// - `pmax * (maxqdly - qdly) / (maxqdly - qthresh)` for `qthresh < qdly <= maxqdly`, so that
///   a delay-based flow stops yielding once the queue is as full as it gets (a loss-based
///   competitor keeps it there), which is what lets it coexist with loss-based TCP.
///
/// `pmax` is a fraction (0..=1).
pub fn hamilton_backoff_probability(
    qdly: u64,
    maxqdly: u64,
    qmin: u64,
    qthresh: u64,
    pmax: f64,
) -> f64 {
    if qdly <= qmin {
        0.0
    } else if qdly < qthresh {
        pmax * (qdly - qmin) as f64 / (qthresh - qmin) as f64
    } else if qdly > qthresh {
        match maxqdly.checked_sub(qthresh) {
            Some(span) if span > 0 => pmax * maxqdly.saturating_sub(qdly) as f64 / span as f64,
            _ => 0.0,
        }
    } else {
        pmax
    }
}

/// The seed of a connection's PRNG for a probabilistic backoff (FreeBSD uses the kernel's
/// random() or prng32()): deterministic, from the connection's initial sequence numbers. A
/// module seeds again in conn_init, because cb_init may come before the handshake has chosen
/// them.
#[inline]
pub fn connection_seed(tp: &Tcpcb) -> u64 {
    (u64::from(tp.iss) << 32) | u64::from(tp.irs)
}

/// The window increase of CDG and CHD: cwnd grows by `incr` and the shadow window (what
/// NewReno's cwnd would be; 0 while not tracked) by `shadow_incr`, both up to [`max_cwnd`].
#[inline]
pub fn grow_with_shadow(tp: &mut Tcpcb, shadow_w: &mut u32, incr: u32, shadow_incr: u32) {
    let cap = max_cwnd(tp);
    if *shadow_w > 0 {
        *shadow_w = shadow_w.saturating_add(shadow_incr).min(cap);
    }
    tp.snd_cwnd = tp.snd_cwnd.saturating_add(incr).min(cap);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

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
    fn hamilton_probability_at_points() {
        // CHD's defaults (pmax 50%).
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
            let got = hamilton_backoff_probability(q, qmax, qmin, qth, pmax);
            assert!((got - want).abs() < 1e-12, "q={q}: {got} != {want}");
        }
    }

    #[test]
    fn hamilton_probability_is_the_papers_triangle() {
        // HD's defaults (pmax 5%).
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
            let got = hamilton_backoff_probability(q, qmax, qmin, qth, pmax);
            assert!((got - want).abs() < 1e-12, "q={q}: {got} != {want}");
            let reference = paper(q as f64, qmax as f64, qmin as f64, qth as f64, pmax);
            assert!((got - reference).abs() < 1e-12, "q={q}");
        }
        // A maximum delay no larger than the threshold leaves nothing above it to fall over.
        assert_eq!(
            hamilton_backoff_probability(25_000, 20_000, qmin, qth, pmax),
            0.0
        );
    }

    proptest! {
        #[test]
        fn hamilton_probability_bounded_and_monotone(
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
            let p = |q| hamilton_backoff_probability(q, maxqdly, qmin, qthresh, pmax);
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

    #[test]
    fn ms_to_us_and_seed() {
        assert_eq!(ms_to_us(20), 20_000);
        assert_eq!(ms_to_us(-3), 0);
        assert_eq!(ms_to_us(i64::MAX), u64::MAX);
        let mut tp = Tcpcb::new(1000);
        tp.iss = 0x1234_5678;
        tp.irs = 0x9abc_def0;
        assert_eq!(connection_seed(&tp), 0x1234_5678_9abc_def0);
    }
}
