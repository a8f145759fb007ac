//! The Prometheus exporter (`metrics-exporter-prometheus`) behind `plugtcp serve --metrics`:
//! the process-wide recorder that [`plugtcp_host::Host::publish_metrics`] writes into, and the
//! HTTP endpoint that serves it.

use std::net::SocketAddr;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use plugtcp_host::metrics::{CWND_BUCKETS, RTT_BUCKETS};
use plugtcp_host::Host;

/// A Prometheus builder with the histograms' buckets set (otherwise the exporter renders
/// them as summaries).
pub fn builder() -> PrometheusBuilder {
    let b = PrometheusBuilder::new();
    // Non-empty bucket lists cannot be refused.
    let b = b
        .set_buckets_for_metric(
            Matcher::Full("plugtcp_tcp_rtt_seconds".into()),
            &RTT_BUCKETS,
        )
        .unwrap_or_else(|_| unreachable!());
    b.set_buckets_for_metric(
        Matcher::Full("plugtcp_tcp_cwnd_bytes".into()),
        &CWND_BUCKETS,
    )
    .unwrap_or_else(|_| unreachable!())
}

/// Installs the process-wide recorder and serves `GET /metrics` (any path) on `addr` from a
/// thread of its own. Port 0 takes a free port; the address actually served is returned
/// with the handle (which renders the same text in-process).
pub fn install(addr: SocketAddr) -> Result<(SocketAddr, PrometheusHandle), String> {
    let addr = if addr.port() == 0 {
        // The exporter binds inside `build` and does not tell the port: find a free one.
        std::net::TcpListener::bind(addr)
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("{addr}: {e}"))?
    } else {
        addr
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("metrics runtime: {e}"))?;
    let (recorder, exporter) = {
        let _g = rt.enter();
        builder()
            .with_http_listener(addr)
            .build()
            .map_err(|e| format!("{addr}: {e}"))?
    };
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).map_err(|e| format!("metrics recorder: {e}"))?;
    std::thread::Builder::new()
        .name("plugtcp-metrics".into())
        .spawn(move || rt.block_on(exporter))
        .map_err(|e| format!("metrics thread: {e}"))?;
    Ok((addr, handle))
}

/// Publishes a host split into shards as one host: each shard's own counters and gauges
/// summed (a series is never multiplied by the shard count), their histogram samples
/// merged, and the registry's metrics, which all shards share, once. One shard publishes
/// as [`Host::publish_metrics`] does. Called at the publishing interval, never per packet.
pub fn publish_sharded(hosts: &mut [&mut Host]) {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    use metrics_util::{CompositeKey, MetricKind};
    use std::collections::HashMap;
    match hosts {
        [] => {}
        [h] => h.publish_metrics(),
        _ => {
            let mut counters: HashMap<CompositeKey, u64> = HashMap::new();
            let mut gauges: HashMap<CompositeKey, f64> = HashMap::new();
            let mut histograms: HashMap<CompositeKey, Vec<f64>> = HashMap::new();
            for h in hosts.iter_mut() {
                let rec = DebuggingRecorder::new();
                let snap = rec.snapshotter();
                metrics::with_local_recorder(&rec, || h.publish_host_metrics());
                for (key, _, _, value) in snap.snapshot().into_vec() {
                    match value {
                        DebugValue::Counter(n) => *counters.entry(key).or_default() += n,
                        // Every shard holds a copy of each listener: one socket to
                        // the user, counted once.
                        DebugValue::Gauge(g) if is_listen_state(&key) => {
                            let e = gauges.entry(key).or_default();
                            *e = e.max(g.0);
                        }
                        DebugValue::Gauge(g) => *gauges.entry(key).or_default() += g.0,
                        DebugValue::Histogram(v) => histograms
                            .entry(key)
                            .or_default()
                            .extend(v.into_iter().map(|x| x.0)),
                    }
                }
            }
            static DESCRIBED: std::sync::Once = std::sync::Once::new();
            DESCRIBED.call_once(plugtcp_host::metrics::describe_metrics);
            let meta = metrics::Metadata::new(module_path!(), metrics::Level::INFO, None);
            metrics::with_recorder(|r| {
                for (k, n) in counters {
                    debug_assert_eq!(k.kind(), MetricKind::Counter);
                    r.register_counter(k.key(), &meta).absolute(n);
                }
                for (k, g) in gauges {
                    r.register_gauge(k.key(), &meta).set(g);
                }
                for (k, v) in histograms {
                    let h = r.register_histogram(k.key(), &meta);
                    v.into_iter().for_each(|x| h.record(x));
                }
            });
            hosts[0].publish_registry_metrics();
        }
    }
}

/// The LISTEN series of the state gauge.
fn is_listen_state(key: &metrics_util::CompositeKey) -> bool {
    let k = key.key();
    k.name() == "plugtcp_tcp_connection_states"
        && k.labels()
            .any(|l| l.key() == "state" && l.value() == "LISTEN")
}
