//! Benchmarks behind `plugtcp bench ...`. Each compares variants side by side in one run, so
//! that the ratio stays meaningful on a shared, noisy machine.

pub mod bulk;
pub mod conns;
pub mod dispatch;

/// Median of a few samples.
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}
