//! `plugtcp bench metrics`: the bulk transfer of `bench bulk` (two hosts, one thread, a
//! zero-delay in-memory link, every byte checked) with metrics on against off, in one run.
//!
//! "On" is what `serve --metrics` does, for both hosts: each host has a Prometheus recorder
//! of its own (installed for the whole timed transfer, so that any metrics call on the data
//! path would land in a real recorder and be counted), publishes into it at an interval
//! ([`Host::publish_metrics`](plugtcp_host::Host::publish_metrics)), and both expositions are
//! rendered at the scrape interval, on the transfer's own thread (a scrape served by the
//! exporter's thread would cost the data path less). Samples alternate off/on, the order
//! flipping each round, so that drift and machine noise hit both; medians are compared.

use std::time::{Duration, Instant};

use metrics_exporter_prometheus::{PrometheusHandle, PrometheusRecorder};

use crate::bench::bulk;
use crate::builtins::BuiltinNet as _;
use plugtcp_io::sim::SimLinkConfig;
use plugtcp_io::simnet::SimNet;

/// Steps between two reads of the clock in the "on" variant: a read per step would add a
/// cost of its own to every few segments (serve reads it once per poll, not per packet).
const CLOCK_EVERY: u32 = 64;

#[derive(Debug, Clone)]
pub struct MetricsBenchConfig {
    /// Bytes per sample.
    pub bytes: u64,
    /// Samples per variant.
    pub samples: usize,
    pub mtu: u32,
    pub buffer: u64,
    /// How often each host publishes while metrics are on (serve: every second).
    pub publish: Duration,
    /// How often both expositions are rendered, as a scraper's GET would.
    pub scrape: Duration,
}

impl Default for MetricsBenchConfig {
    fn default() -> Self {
        MetricsBenchConfig {
            // Under a second per sample here (30-45 Gbit/s at MTU 1500).
            bytes: 4 << 30,
            samples: 7,
            mtu: 1500,
            buffer: 64 * 1024,
            // Samples last under a second: publishing every 100 ms (ten times serve's rate)
            // and rendering every 250 ms (four times a 1 s scraper's, sixty times
            // Prometheus' default 15 s) makes each sample do both several times, so the
            // cost measured is an upper bound of serve's.
            publish: Duration::from_millis(100),
            scrape: Duration::from_millis(250),
        }
    }
}

/// One timed transfer.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MetricsSample {
    pub metrics: bool,
    /// Bytes moved and checked against the pattern sent (a transfer that loses or garbles
    /// a byte fails the benchmark instead).
    pub bytes: u64,
    pub seconds: f64,
    pub gbit_per_s: f64,
    /// Times both hosts published during the transfer.
    pub publishes: u64,
    /// Times both expositions were rendered during the transfer.
    pub renders: u64,
}

#[derive(Debug, serde::Serialize)]
pub struct MetricsReport {
    pub bytes: u64,
    pub mtu: u32,
    pub buffer: u64,
    pub samples_per_variant: usize,
    pub publish_interval_ms: f64,
    pub scrape_interval_ms: f64,
    /// Medians.
    pub gbit_per_s_off: f64,
    pub gbit_per_s_on: f64,
    /// on / off (target: at least 0.97).
    pub ratio: f64,
    /// (1 - ratio) * 100.
    pub slowdown_percent: f64,
    /// Size of the last rendering of both expositions, bytes.
    pub exposition_bytes: usize,
    /// The untimed transfer before the samples.
    pub warmup_bytes: u64,
    /// `plugtcp_tcp_received_bytes_total` summed over B's series after a final publish: every
    /// byte of every transfer, warm-up, off and on (the counters are the host's own).
    pub exported_received_bytes: u64,
    pub samples: Vec<MetricsSample>,
}

/// Sum of a counter's series in a text exposition.
pub fn exposition_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|r| r.starts_with('{') || r.starts_with(' '))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

struct On {
    a: PrometheusRecorder,
    b: PrometheusRecorder,
    handles: [PrometheusHandle; 2],
    out: Vec<u8>,
}

impl On {
    fn new() -> Self {
        let a = crate::exporter::builder().build_recorder();
        let b = crate::exporter::builder().build_recorder();
        let handles = [a.handle(), b.handle()];
        On {
            a,
            b,
            handles,
            out: Vec::new(),
        }
    }

    fn publish(&self, net: &mut SimNet) {
        metrics::with_local_recorder(&self.a, || net.a.publish_metrics());
        metrics::with_local_recorder(&self.b, || net.b.publish_metrics());
    }

    fn render(&mut self) -> Result<(), String> {
        self.out.clear();
        for h in &self.handles {
            h.render_to_write(&mut self.out)
                .map_err(|e| format!("render: {e}"))?;
        }
        Ok(())
    }

    /// A transfer with both hosts publishing and the expositions rendered on their intervals.
    fn sample(
        &mut self,
        net: &mut SimNet,
        port: u16,
        cfg: &MetricsBenchConfig,
    ) -> Result<MetricsSample, String> {
        let (mut publishes, mut renders, mut steps) = (0u64, 0u64, 0u32);
        let start = Instant::now();
        let (mut next_publish, mut next_scrape) = (start, start + cfg.scrape);
        let mut render_err = None;
        let (a, b, handles, out) = (&self.a, &self.b, &self.handles, &mut self.out);
        let r = metrics::with_local_recorder(a, || {
            bulk::transfer_with(net, port, cfg.bytes, |n| {
                steps += 1;
                if steps % CLOCK_EVERY != 0 {
                    return;
                }
                let now = Instant::now();
                if now >= next_publish {
                    n.a.publish_metrics();
                    metrics::with_local_recorder(b, || n.b.publish_metrics());
                    publishes += 1;
                    next_publish = now + cfg.publish;
                }
                if now >= next_scrape {
                    out.clear();
                    for h in handles {
                        if let Err(e) = h.render_to_write(out) {
                            render_err = Some(format!("render: {e}"));
                        }
                    }
                    renders += 1;
                    next_scrape = now + cfg.scrape;
                }
            })
        })?;
        if let Some(e) = render_err {
            return Err(e);
        }
        Ok(MetricsSample {
            metrics: true,
            bytes: r.bytes,
            seconds: r.seconds,
            gbit_per_s: r.gbit_per_s,
            publishes,
            renders,
        })
    }
}

fn off_sample(net: &mut SimNet, port: u16, bytes: u64) -> Result<MetricsSample, String> {
    let r = bulk::transfer(net, port, bytes)?;
    Ok(MetricsSample {
        metrics: false,
        bytes: r.bytes,
        seconds: r.seconds,
        gbit_per_s: r.gbit_per_s,
        publishes: 0,
        renders: 0,
    })
}

pub fn run(cfg: &MetricsBenchConfig) -> Result<MetricsReport, String> {
    if cfg.samples == 0 {
        return Err("samples must be at least 1".into());
    }
    // One network for both variants: the same hosts, heap and tables, a fresh port per
    // transfer.
    let mut net = SimNet::builtin(SimLinkConfig::default(), 1);
    for h in [&mut net.a, &mut net.b] {
        h.mtu = cfg.mtu;
        for name in ["sendspace", "recvspace", "recvbuf_max", "sendbuf_max"] {
            h.sysctl_set(&format!("net.inet.tcp.{name}"), &cfg.buffer.to_string())
                .map_err(|e| format!("{name}: {e}"))?;
        }
    }
    let mut on = On::new();
    let mut port = 7000u16;
    let mut next_port = || {
        port += 1;
        port
    };
    // Warm-up, untimed: the first transfer pays for growing buffers and tables.
    let warmup_bytes = cfg.bytes.min(64 << 20);
    off_sample(&mut net, next_port(), warmup_bytes)?;
    let mut samples = Vec::with_capacity(2 * cfg.samples);
    for round in 0..cfg.samples {
        for metrics_on in [round % 2 == 1, round % 2 == 0] {
            let s = if metrics_on {
                on.sample(&mut net, next_port(), cfg)?
            } else {
                off_sample(&mut net, next_port(), cfg.bytes)?
            };
            samples.push(s);
        }
    }
    // What a scrape after the run sees: B received every byte of every transfer.
    on.publish(&mut net);
    on.render()?;
    let text = String::from_utf8_lossy(&on.out);
    let exported_received_bytes = exposition_sum(&text, "plugtcp_tcp_received_bytes_total") as u64;
    let med = |m: bool| {
        super::median(
            samples
                .iter()
                .filter(|s| s.metrics == m)
                .map(|s| s.gbit_per_s)
                .collect(),
        )
    };
    let (off, on_g) = (med(false), med(true));
    Ok(MetricsReport {
        bytes: cfg.bytes,
        mtu: cfg.mtu,
        buffer: cfg.buffer,
        samples_per_variant: cfg.samples,
        publish_interval_ms: cfg.publish.as_secs_f64() * 1e3,
        scrape_interval_ms: cfg.scrape.as_secs_f64() * 1e3,
        gbit_per_s_off: off,
        gbit_per_s_on: on_g,
        ratio: on_g / off,
        slowdown_percent: (1.0 - on_g / off) * 100.0,
        exposition_bytes: on.out.len(),
        warmup_bytes,
        exported_received_bytes,
        samples,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// At a small scale, publishing and rendering at every clock check: every sample of both
    /// variants moves its bytes intact, the "on" ones publish and render, the report has the
    /// fields `--json` prints, and the exported byte counter saw every byte moved.
    #[test]
    fn small_run_moves_bytes_and_exports_them() {
        let cfg = MetricsBenchConfig {
            bytes: 16 << 20,
            samples: 3,
            publish: Duration::ZERO,
            scrape: Duration::ZERO,
            ..Default::default()
        };
        let r = run(&cfg).unwrap();
        assert_eq!(r.samples.len(), 6);
        for m in [false, true] {
            assert_eq!(r.samples.iter().filter(|s| s.metrics == m).count(), 3);
        }
        for s in &r.samples {
            assert_eq!(s.bytes, 16 << 20);
            assert!(s.gbit_per_s > 0.0 && s.seconds > 0.0);
            if s.metrics {
                assert!(s.publishes >= 1 && s.renders >= 1, "{s:?}");
            } else {
                assert_eq!((s.publishes, s.renders), (0, 0));
            }
        }
        assert_eq!(r.warmup_bytes, 16 << 20);
        assert_eq!(r.exported_received_bytes, 7 * (16 << 20));
        assert!(r.exposition_bytes > 0);
        assert!(r.ratio.is_finite() && r.ratio > 0.0);
        let v = serde_json::to_value(&r).unwrap();
        for k in [
            "bytes",
            "mtu",
            "buffer",
            "samples_per_variant",
            "publish_interval_ms",
            "scrape_interval_ms",
            "gbit_per_s_off",
            "gbit_per_s_on",
            "ratio",
            "slowdown_percent",
            "exposition_bytes",
            "warmup_bytes",
            "exported_received_bytes",
            "samples",
        ] {
            assert!(v.get(k).is_some(), "no {k} in {v}");
        }
        assert_eq!(v["samples"][0]["metrics"], false);
        assert_eq!(v["samples"][1]["metrics"], true);
        assert_eq!(
            v["ratio"].as_f64(),
            Some(r.gbit_per_s_on / r.gbit_per_s_off)
        );
    }

    #[test]
    fn exposition_sum_adds_labelled_series_only_of_that_name() {
        let text = "# TYPE x_total counter\nx_total{a=\"1\"} 5\nx_total{a=\"2\"} 7\nx_total_more 100\nx_total 1\n";
        assert_eq!(exposition_sum(text, "x_total"), 13.0);
    }
}
