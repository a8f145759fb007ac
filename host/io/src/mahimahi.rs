//! Mahimahi packet-delivery traces: parsing, lookup, and a synthetic generator.
//!
//! A trace has one line per delivery opportunity: the time in milliseconds from the start
//! (non-decreasing) at which the link may deliver up to [`OPPORTUNITY_BYTES`] bytes. Several
//! lines with the same time are several opportunities at that instant. The trace repeats with
//! a period equal to its last timestamp, as in Mahimahi's `LinkQueue` (a trace whose last
//! timestamp is 0 gets a period of 1 ms rather than looping forever).
//!
//! Real traces are not bundled; [`generate`] makes cellular-like ones deterministically.

use std::fmt;
use std::path::Path;

use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

/// Bytes one opportunity can carry (Mahimahi's `PACKET_SIZE`).
pub const OPPORTUNITY_BYTES: usize = 1500;

const NS_PER_MS: u64 = 1_000_000;

/// A parsed trace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trace {
    /// Opportunity times within one period (ms), non-decreasing, not empty.
    opportunities_ms: Vec<u64>,
    /// Repetition period (ms), >= 1 and >= every entry.
    period_ms: u64,
    /// How many entries equal `period_ms` (they fall on the next repetition's start).
    at_period_end: u64,
}

/// Why a trace did not parse.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceError {
    /// 1-based line number; for an empty trace, the last line (1 if the text is empty).
    pub line: usize,
    pub kind: TraceErrorKind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TraceErrorKind {
    /// The line is not a non-negative integer (the offending text, shortened).
    NotANumber(String),
    /// The timestamp is smaller than the one before it.
    Decreasing { previous: u64, value: u64 },
    /// No timestamps at all.
    Empty,
}

impl fmt::Display for TraceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.line)?;
        match &self.kind {
            TraceErrorKind::NotANumber(s) => write!(f, "not a number of milliseconds: {s:?}"),
            TraceErrorKind::Decreasing { previous, value } => {
                write!(
                    f,
                    "timestamp {value} is before the previous one ({previous})"
                )
            }
            TraceErrorKind::Empty => write!(f, "empty trace (no timestamps)"),
        }
    }
}

impl std::error::Error for TraceError {}

/// Parses a trace. Blank lines (and surrounding whitespace) are ignored.
pub fn parse(text: &str) -> Result<Trace, TraceError> {
    let mut opportunities_ms = Vec::new();
    let mut lines = 0;
    for (i, raw) in text.lines().enumerate() {
        lines = i + 1;
        let s = raw.trim();
        if s.is_empty() {
            continue;
        }
        let value: u64 = s.parse().map_err(|_| TraceError {
            line: i + 1,
            kind: TraceErrorKind::NotANumber(s.chars().take(40).collect()),
        })?;
        if let Some(&previous) = opportunities_ms.last() {
            if value < previous {
                return Err(TraceError {
                    line: i + 1,
                    kind: TraceErrorKind::Decreasing { previous, value },
                });
            }
        }
        opportunities_ms.push(value);
    }
    let Some(&last) = opportunities_ms.last() else {
        return Err(TraceError {
            line: lines.max(1),
            kind: TraceErrorKind::Empty,
        });
    };
    let period_ms = last.max(1);
    let at_period_end = opportunities_ms.iter().filter(|&&t| t == period_ms).count() as u64;
    Ok(Trace {
        opportunities_ms,
        period_ms,
        at_period_end,
    })
}

/// Reads and parses a trace file; errors read "PATH:LINE: reason" (or "PATH: reason" when
/// the file cannot be read).
pub fn load(path: impl AsRef<Path>) -> Result<Trace, String> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    parse(&text).map_err(|e| format!("{}:{e}", path.display()))
}

fn ms_to_ns(ms: u128) -> u64 {
    u64::try_from(ms.saturating_mul(u128::from(NS_PER_MS))).unwrap_or(u64::MAX)
}

impl Trace {
    /// Opportunity times within one period (ms).
    pub fn opportunities_ms(&self) -> &[u64] {
        &self.opportunities_ms
    }

    pub fn period_ms(&self) -> u64 {
        self.period_ms
    }

    /// Average capacity: 1500 bytes per opportunity over one period.
    pub fn mean_bps(&self) -> f64 {
        let bits = self.opportunities_ms.len() as f64 * (OPPORTUNITY_BYTES * 8) as f64;
        bits * 1000.0 / self.period_ms as f64
    }

    fn n(&self) -> u128 {
        self.opportunities_ms.len() as u128
    }

    /// Opportunities strictly before `m` ms (over all repetitions).
    fn count_before_ms(&self, m: u128) -> u128 {
        let p = u128::from(self.period_ms);
        let (reps, rem) = (m / p, m % p);
        let in_rep = self
            .opportunities_ms
            .partition_point(|&t| u128::from(t) < rem) as u128;
        if reps == 0 {
            return in_rep;
        }
        // Repetitions 0..reps are complete, except that entries equal to the period fall at
        // the start of repetition `reps` and are only before `m` if rem > 0.
        let tail = if rem == 0 {
            u128::from(self.at_period_end)
        } else {
            0
        };
        reps * self.n() - tail + in_rep
    }

    /// Number of opportunities at times `t` with `t0_ns <= t < t1_ns` (the trace repeating
    /// from time 0).
    pub fn opportunities_between(&self, t0_ns: u64, t1_ns: u64) -> u64 {
        if t1_ns <= t0_ns {
            return 0;
        }
        // t < x ns  <=>  t_ms < ceil(x / 1e6)  for whole-ms t.
        let before = |x: u64| self.count_before_ms(u128::from(x.div_ceil(NS_PER_MS)));
        u64::try_from(before(t1_ns) - before(t0_ns)).unwrap_or(u64::MAX)
    }

    /// Time (ns) of the first opportunity at or after `t_ns` (saturating at `u64::MAX`).
    pub fn next_opportunity_at_or_after(&self, t_ns: u64) -> u64 {
        self.opportunity_time(self.first_index_at_or_after(t_ns))
    }

    /// Global index (counting over repetitions) of the first opportunity at or after `t_ns`.
    pub(crate) fn first_index_at_or_after(&self, t_ns: u64) -> u64 {
        let m = u128::from(t_ns.div_ceil(NS_PER_MS));
        u64::try_from(self.count_before_ms(m)).unwrap_or(u64::MAX)
    }

    /// Time (ns) of the opportunity with global index `idx` (saturating).
    pub(crate) fn opportunity_time(&self, idx: u64) -> u64 {
        let idx = u128::from(idx);
        let (rep, i) = (idx / self.n(), (idx % self.n()) as usize);
        let ms = rep * u128::from(self.period_ms) + u128::from(self.opportunities_ms[i]);
        ms_to_ns(ms)
    }
}

/// A synthetic cellular-like trace in Mahimahi format, deterministic per `seed`.
///
/// The rate is `mean_mbps * exp(x)` where `x` is a mean-reverting random walk in log space,
/// stepped every 20 ms, with a stationary spread of about `variability` (so 0.5 means the
/// rate typically moves within a factor of e^±0.5) and hard bounds at ±3·`variability`; now
/// and then (on average every 5 s when `variability > 0`) it drops into a short deep fade of
/// 50..300 ms at a tenth of the rate, as cellular links do. The sequence is then rescaled so
/// that its average over the trace is exactly `mean_mbps`, and opportunities are emitted by
/// accumulating fractional opportunities per millisecond. The last line is `duration_ms`, so
/// the trace repeats with that period. `variability` 0 gives a constant rate (opportunities
/// as evenly spaced as whole milliseconds allow).
///
/// Degenerate inputs do not panic: a zero duration counts as 1 ms, a non-positive or NaN
/// rate yields a single opportunity per period, a negative or NaN variability counts as 0.
/// The output has about `mean_mbps * duration_ms / 12` lines; the caller bounds it.
pub fn generate(seed: u64, mean_mbps: f64, duration_ms: u64, variability: f64) -> String {
    let duration = duration_ms.max(1);
    let v = if variability.is_finite() && variability > 0.0 {
        variability
    } else {
        0.0
    };
    let mut out = String::new();
    if !(mean_mbps.is_finite() && mean_mbps > 0.0) {
        out.push_str(&format!("{duration}\n"));
        return out;
    }
    const EPOCH_MS: u64 = 20;
    let epochs = duration.div_ceil(EPOCH_MS) as usize;
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let mut mult = Vec::with_capacity(epochs);
    let mut x = 0.0f64;
    let mut fade_left = 0u64;
    // AR(1) with rho = 0.95: the innovation sd giving a stationary sd of `v`.
    let rho = 0.95f64;
    let sigma = v * (1.0 - rho * rho).sqrt();
    for _ in 0..epochs {
        if v > 0.0 {
            // Sum of three uniforms: a cheap, bounded, roughly normal innovation (sd 1).
            let z: f64 = (0..3).map(|_| rng.random::<f64>() - 0.5).sum::<f64>() * 2.0;
            x = (rho * x + sigma * z).clamp(-3.0 * v, 3.0 * v);
            if fade_left == 0 && rng.random::<f64>() < EPOCH_MS as f64 / 5000.0 {
                fade_left = rng.random_range(50..=300) / EPOCH_MS;
            }
        }
        let fade = if fade_left > 0 {
            fade_left -= 1;
            0.1
        } else {
            1.0
        };
        mult.push(x.exp() * fade);
    }
    // Normalize to the exact requested mean over the whole duration (the last epoch may be
    // partial).
    let mut weighted = 0.0;
    for (k, m) in mult.iter().enumerate() {
        let start = k as u64 * EPOCH_MS;
        weighted += m * (duration.min(start + EPOCH_MS) - start) as f64;
    }
    let scale = duration as f64 / weighted;
    // Opportunities per ms at the mean rate.
    let per_ms = mean_mbps * 1e6 / (OPPORTUNITY_BYTES as f64 * 8.0) / 1000.0;
    let mut acc = 0.0f64;
    let mut emitted_last = false;
    for ms in 1..=duration {
        let k = ((ms - 1) / EPOCH_MS) as usize;
        acc += per_ms * mult[k] * scale;
        emitted_last = false;
        while acc >= 1.0 {
            out.push_str(&format!("{ms}\n"));
            acc -= 1.0;
            emitted_last = true;
        }
    }
    if !emitted_last {
        // The period is the last timestamp: make it the requested duration.
        out.push_str(&format!("{duration}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = NS_PER_MS;

    #[test]
    fn parse_accepts_mahimahi_format() {
        let t = parse("1\n1\n\n  3 \r\n7\n").unwrap();
        assert_eq!(t.opportunities_ms(), [1, 1, 3, 7]);
        assert_eq!(t.period_ms(), 7);
        // 4 opportunities of 1500 B per 7 ms.
        assert!((t.mean_bps() - 4.0 * 12_000.0 * 1000.0 / 7.0).abs() < 1e-6);
        let z = parse("0\n0\n").unwrap();
        assert_eq!(z.period_ms(), 1);
        assert_eq!(z.opportunities_between(0, 10 * MS), 20);
    }

    #[test]
    fn parse_errors_name_line_and_reason() {
        let e = parse("1\n2\nabc\n4\n").unwrap_err();
        assert_eq!(e.line, 3);
        assert!(matches!(e.kind, TraceErrorKind::NotANumber(ref s) if s == "abc"));
        assert!(e.to_string().starts_with("3: not a number"), "{e}");
        let e = parse("1\n\n5\n4\n").unwrap_err();
        assert_eq!(
            e,
            TraceError {
                line: 4,
                kind: TraceErrorKind::Decreasing {
                    previous: 5,
                    value: 4
                }
            }
        );
        assert_eq!(parse("").unwrap_err().kind, TraceErrorKind::Empty);
        assert_eq!(parse("\n \n\n").unwrap_err().line, 3);
        assert!(parse("-1").is_err());
        assert!(parse("1.5").is_err());
        assert!(parse("99999999999999999999999").is_err());
    }

    #[test]
    fn load_reports_path_and_line() {
        let dir = std::env::temp_dir().join(format!("plugtcp-mahimahi-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bad.trace");
        std::fs::write(&path, "1\n2\nx\n").unwrap();
        let err = load(&path).unwrap_err();
        assert_eq!(
            err,
            format!("{}:3: not a number of milliseconds: \"x\"", path.display())
        );
        std::fs::write(&path, "5\n10\n").unwrap();
        assert_eq!(load(&path).unwrap().period_ms(), 10);
        let missing = dir.join("missing.trace");
        assert!(load(&missing)
            .unwrap_err()
            .starts_with(&format!("{}: ", missing.display())));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Brute-force list of opportunity times (ns) below `end_ms`.
    fn brute(t: &Trace, end_ms: u64) -> Vec<u64> {
        let mut v = Vec::new();
        for rep in 0.. {
            let base = rep * t.period_ms();
            if base >= end_ms {
                break;
            }
            for &o in t.opportunities_ms() {
                if base + o < end_ms {
                    v.push((base + o) * MS);
                }
            }
        }
        v.sort_unstable();
        v
    }

    #[test]
    fn lookups_match_brute_force_across_repeats() {
        for text in ["0\n2\n2\n5\n", "3\n4\n10\n10\n", "1\n", "0\n", "7\n7\n7\n"] {
            let t = parse(text).unwrap();
            let all = brute(&t, 60);
            for t0 in (0..45 * MS).step_by(250_000) {
                for t1 in [t0, t0 + 1, t0 + MS, t0 + 7 * MS + 3, t0 + 13 * MS] {
                    let want = all.iter().filter(|&&x| x >= t0 && x < t1).count() as u64;
                    assert_eq!(t.opportunities_between(t0, t1), want, "{text:?} {t0} {t1}");
                }
                let want = *all.iter().find(|&&x| x >= t0).unwrap();
                assert_eq!(t.next_opportunity_at_or_after(t0), want, "{text:?} {t0}");
                // Global indices enumerate the same list.
                let idx = t.first_index_at_or_after(t0);
                assert_eq!(t.opportunity_time(idx), want);
                assert_eq!(all[idx as usize], want);
            }
        }
        let t = parse("5\n").unwrap();
        assert_eq!(t.next_opportunity_at_or_after(u64::MAX), u64::MAX);
        assert_eq!(t.opportunities_between(0, u64::MAX), u64::MAX / (5 * MS));
    }

    #[test]
    fn generated_traces_round_trip_and_hit_the_mean() {
        for (seed, mbps, var) in [
            (1, 12.0, 0.5),
            (2, 48.0, 1.0),
            (3, 3.0, 0.3),
            (4, 100.0, 0.8),
        ] {
            let text = generate(seed, mbps, 60_000, var);
            let t = parse(&text).unwrap();
            assert_eq!(t.period_ms(), 60_000);
            let rendered: String = t
                .opportunities_ms()
                .iter()
                .map(|o| format!("{o}\n"))
                .collect();
            assert_eq!(rendered, text);
            let mean = t.mean_bps() / 1e6;
            assert!(
                (mean - mbps).abs() < 0.1 * mbps,
                "{mbps} Mbit/s: got {mean}"
            );
            // It does vary: per-second rates spread out.
            let per_s: Vec<u64> = (0..60)
                .map(|s| t.opportunities_between(s * 1000 * MS, (s + 1) * 1000 * MS))
                .collect();
            let (lo, hi) = (per_s.iter().min().unwrap(), per_s.iter().max().unwrap());
            assert!(*hi as f64 > 1.3 * *lo as f64, "{per_s:?}");
            assert_eq!(generate(seed, mbps, 60_000, var), text, "not deterministic");
        }
        assert_ne!(generate(1, 12.0, 5000, 0.5), generate(2, 12.0, 5000, 0.5));
    }

    #[test]
    fn zero_variability_is_evenly_spaced() {
        // 6 Mbit/s = one opportunity every 2 ms exactly.
        let t = parse(&generate(9, 6.0, 10_000, 0.0)).unwrap();
        let o = t.opportunities_ms();
        assert_eq!(o.len(), 5000);
        assert!(o.windows(2).all(|w| w[1] - w[0] == 2));
        // The seam of the repetition keeps the spacing.
        assert_eq!(t.next_opportunity_at_or_after(10_000 * MS + 1), 10_002 * MS);
        // 10 Mbit/s: 5 opportunities per 6 ms, gaps of 1 or 2 ms only, no drift.
        let t = parse(&generate(9, 10.0, 6000, 0.0)).unwrap();
        let o = t.opportunities_ms();
        assert_eq!(o.len(), 5000);
        assert!(o.windows(2).all(|w| (1..=2).contains(&(w[1] - w[0]))));
        assert_eq!(generate(1, 6.0, 100, 0.0), generate(2, 6.0, 100, 0.0));
    }

    #[test]
    fn generate_survives_odd_inputs() {
        for (m, d, v) in [
            (0.0, 1000, 0.5),
            (f64::NAN, 10, 0.1),
            (-3.0, 0, 0.0),
            (1.0, 0, f64::NAN),
            (0.001, 100, -1.0),
            (5.0, 1, 50.0),
        ] {
            let t = parse(&generate(0, m, d, v)).unwrap();
            assert_eq!(t.period_ms(), d.max(1));
        }
    }
}
