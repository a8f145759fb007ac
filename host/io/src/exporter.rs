//! The Prometheus exporter (`metrics-exporter-prometheus`) behind `plugtcp serve --metrics`:
//! the process-wide recorder that [`plugtcp_host::Host::publish_metrics`] writes into, and the
//! HTTP endpoint that serves it.

use std::net::SocketAddr;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use plugtcp_host::metrics::{CWND_BUCKETS, RTT_BUCKETS};

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
