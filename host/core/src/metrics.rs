//! Metrics through the `metrics` facade (the `plugtcp` binary installs the Prometheus
//! exporter: its `exporter` module), named after
//! node_exporter's netstat ones (`plugtcp_tcp_active_opens_total` reads like
//! `node_netstat_Tcp_ActiveOpens`).
//!
//! Nothing here runs per segment. The receive and send paths keep plain counters (the
//! host's [`crate::host::TcpStat`], the transmit queue's packet count, each tcpcb's byte and
//! segment counts, the plugins' ABI counters in the registry entries), and
//! [`Host::publish_metrics`] copies them into the recorder: counters as absolute values,
//! gauges set, and one RTT and one cwnd sample per established connection into the
//! histograms. `plugtcp serve --metrics` publishes every [`PUBLISH_INTERVAL`]; a library user
//! calls it when it likes (before rendering, say). A metrics macro per segment would cost a
//! registry lookup (a hash of the name and labels) each time; publishing costs one pass over
//! the connections per interval, whatever the packet rate.
//!
//! No label carries an address or port: connections are aggregated by stack and CC.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use plugtcp_abi::{PluginKind, TcpState};

use crate::conn::{
    ConnTotals, TOT_RCV_BYTES, TOT_RCV_SEGS, TOT_REXMIT_BYTES, TOT_REXMIT_SEGS, TOT_SND_BYTES,
    TOT_SND_SEGS,
};
use crate::wire::DropReason;
use crate::Host;

/// How often `serve` publishes (Prometheus scrapes every 15 s by default; a second keeps a
/// scrape at most that stale and costs one pass over the connections per second).
pub const PUBLISH_INTERVAL: Duration = Duration::from_secs(1);

/// The default exporter address (`--metrics` without a value): the port node_exporter's
/// neighbours use for OpenTelemetry's Prometheus exporter, free on most hosts.
pub const DEFAULT_ADDR: &str = "127.0.0.1:9464";

/// RTT histogram bounds, seconds: 100 us to 10 s, about x2.5 apart.
pub const RTT_BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 1.0, 10.0,
];
/// cwnd histogram bounds, bytes: 1 segment (1460) to 64 MiB, x4 apart.
pub const CWND_BUCKETS: [f64; 9] = [
    1460.0, 5840.0, 23360.0, 93440.0, 373760.0, 1495040.0, 5980160.0, 23920640.0, 67108864.0,
];

/// Every metric name the host serves, with its type and help text.
pub const METRICS: &[(&str, &str, &str)] = &[
    ("plugtcp_tcp_active_opens_total", "counter", "Connections that went SYN_SENT -> ESTABLISHED (TcpActiveOpens)."),
    ("plugtcp_tcp_passive_opens_total", "counter", "Connections accepted from a listener (TcpPassiveOpens)."),
    ("plugtcp_tcp_curr_estab", "gauge", "Connections in ESTABLISHED or CLOSE_WAIT (TcpCurrEstab)."),
    ("plugtcp_tcp_in_segs_total", "counter", "Segments received that passed the checks (TcpInSegs)."),
    ("plugtcp_tcp_out_segs_total", "counter", "Segments sent, retransmissions, RSTs and SYN-ACKs included (FreeBSD tcps_sndtotal)."),
    ("plugtcp_tcp_retrans_segs_total", "counter", "Segments retransmitted (TcpRetransSegs, FreeBSD tcps_sndrexmitpack)."),
    ("plugtcp_tcp_in_errs_total", "counter", "Packets dropped before demux, by reason (TcpInErrs)."),
    ("plugtcp_tcp_out_rsts_total", "counter", "RSTs sent by the host for segments with no socket (TcpOutRsts)."),
    ("plugtcp_tcp_blackholed_total", "counter", "Segments to closed ports dropped without a RST (net.inet.tcp.blackhole)."),
    ("plugtcp_tcp_sockets_refused_total", "counter", "New sockets refused with ENOBUFS at kern.ipc.maxsockets."),
    ("plugtcp_tcp_buffer_bytes", "gauge", "Socket-buffer storage held by the host's pools, bytes (bounded by kern.ipc.maxmbufmem)."),
    ("plugtcp_tcp_buffer_refused_total", "counter", "Buffer chunks refused at kern.ipc.maxmbufmem (sends got ENOBUFS or less, received data was not taken)."),
    ("plugtcp_tcp_fastopen_total", "counter", "TCP Fast Open events, by event (passive: opened with SYN data; passive_fail: cookie missing or invalid; passive_overflow: past the listener's TFO queue; active: client SYN with a cookie; path_disabled)."),
    ("plugtcp_tcp_md5_total", "counter", "TCP-MD5 signatures checked on input, by result (good, bad, missing: FreeBSD tcps_sig_*)."),
    ("plugtcp_tcp_listen_overflows_total", "counter", "SYNs dropped or answered with a cookie because a listen queue or the SYN cache was full (TcpExtListenOverflows)."),
    ("plugtcp_tcp_syncookies_sent_total", "counter", "SYN-ACKs that carried a SYN cookie (TcpExtSyncookiesSent)."),
    ("plugtcp_tcp_syncookies_recv_total", "counter", "Connections completed from a valid SYN cookie (TcpExtSyncookiesRecv)."),
    ("plugtcp_tcp_connection_states", "gauge", "Connections per TCP state (FreeBSD tcpstates[] names), listeners as LISTEN, SYN cache entries as SYN_RCVD."),
    ("plugtcp_tcp_syncache_entries", "gauge", "Half-open connections in the SYN cache."),
    ("plugtcp_tcp_syncache_total", "counter", "SYN cache events by kind (FreeBSD tcps_sc_*: added, retransmitted, dupsyn, dropped, completed, bucketoverflow, cacheoverflow, reset, stale, aborted, badack, unreach, zonefail, sndacks, cookiessent, cookiesrecvd)."),
    ("plugtcp_tcp_sent_bytes_total", "counter", "Data bytes sent for the first time, by stack and CC (tcps_sndbyte)."),
    ("plugtcp_tcp_retrans_bytes_total", "counter", "Data bytes retransmitted, by stack and CC (tcps_sndrexmitbyte)."),
    ("plugtcp_tcp_received_bytes_total", "counter", "In-order data bytes received, by stack and CC (tcps_rcvbyte)."),
    ("plugtcp_tcp_sent_segs_total", "counter", "Segments connections sent, by stack and CC."),
    ("plugtcp_tcp_received_segs_total", "counter", "Segments connections received (an LRO merge counts once), by stack and CC."),
    ("plugtcp_tcp_paced_connections", "gauge", "Connections with a pacing rate (set by their stack or CC module, or SO_MAX_PACING_RATE)."),
    ("plugtcp_tcp_pacing_bursts_total", "counter", "Bursts (output calls) of paced connections, by outcome (sent: on time; held: waited in the pacer; refused: hold queue full, ENOBUFS)."),
    ("plugtcp_tcp_paced_bytes_total", "counter", "Wire bytes (IP packets) of paced connections."),
    ("plugtcp_tcp_rtt_seconds", "histogram", "Smoothed RTT of each established connection, sampled once per publish interval."),
    ("plugtcp_tcp_cwnd_bytes", "histogram", "Congestion window of each established connection, sampled once per publish interval."),
    ("plugtcp_plugin_faults_total", "counter", "Panics caught at the plugin boundary, by plugin."),
    ("plugtcp_plugin_loads_total", "counter", "Plugins registered (kldload, reload, built-ins), by kind and name."),
    ("plugtcp_plugin_deregistrations_total", "counter", "Plugins deregistered (kldunload), by kind and name."),
    ("plugtcp_plugin_users", "gauge", "Connections using each registered plugin (FreeBSD's PCB count)."),
    ("plugtcp_stack_switches_total", "counter", "TCP_FUNCTION_BLK switches of live connections, by from, to and result (ok or the errno)."),
    ("plugtcp_stack_counter_total", "counter", "Counters function blocks report through the ABI (FreeBSD tcpstat names)."),
    ("plugtcp_cc_counter_total", "counter", "Counters CC modules report through the ABI."),
];

/// What the host keeps for the metrics besides the counters the data path already has.
#[derive(Default)]
pub struct HostMetrics {
    /// Totals of closed connections by (stack, CC) name.
    closed: BTreeMap<(String, String), ConnTotals>,
    /// (from, to, result) -> count.
    switches: Vec<(String, String, &'static str, u64)>,
    /// (kind, name) -> (loads, deregistrations). Behind a lock because built-ins register
    /// through `&Host`; only the control plane takes it.
    plugins: Mutex<Vec<(&'static str, String, u64, u64)>>,
    described: bool,
}

impl HostMetrics {
    pub(crate) fn note_switch(&mut self, from: &str, to: &str, result: &'static str) {
        match self
            .switches
            .iter_mut()
            .find(|(f, t, r, _)| f == from && t == to && *r == result)
        {
            Some(e) => e.3 += 1,
            None => self
                .switches
                .push((from.to_owned(), to.to_owned(), result, 1)),
        }
    }

    pub(crate) fn note_plugin(&self, kind: PluginKind, name: &str, load: bool) {
        let mut p = self.plugins.lock().unwrap_or_else(|e| e.into_inner());
        let i = match p
            .iter()
            .position(|(k, n, ..)| *k == kind.name() && n == name)
        {
            Some(i) => i,
            None => {
                p.push((kind.name(), name.to_owned(), 0, 0));
                p.len() - 1
            }
        };
        if load {
            p[i].2 += 1;
        } else {
            p[i].3 += 1;
        }
    }
}

/// Describes every metric (name, kind, help) to the current recorder.
pub fn describe_metrics() {
    for &(name, kind, help) in METRICS {
        match kind {
            "counter" => metrics::describe_counter!(name, help),
            "gauge" => metrics::describe_gauge!(name, help),
            _ => metrics::describe_histogram!(name, help),
        }
    }
}

impl Host {
    /// Copies the host's counters into the current `metrics` recorder (the global one, or a
    /// local one under `metrics::with_local_recorder`) and samples each established
    /// connection's RTT and cwnd into the histograms. A pass over the connections: call it
    /// at an interval, not per packet.
    pub fn publish_metrics(&mut self) {
        self.publish_host_metrics();
        self.publish_registry_metrics();
    }

    /// The part of [`Host::publish_metrics`] that is this host's own: its counters, its
    /// connections' states and samples, its plugin faults and stack switches. A sharded
    /// host sums these over its shards.
    pub fn publish_host_metrics(&mut self) {
        use metrics::{counter, gauge, histogram};
        if !self.metrics.described {
            describe_metrics();
            self.metrics.described = true;
        }
        let st = &self.stats;
        counter!("plugtcp_tcp_active_opens_total").absolute(st.active_opens);
        counter!("plugtcp_tcp_passive_opens_total").absolute(st.passive_opens);
        counter!("plugtcp_tcp_in_segs_total").absolute(st.in_segs);
        counter!("plugtcp_tcp_out_segs_total").absolute(self.worker.tx.sent);
        counter!("plugtcp_tcp_out_rsts_total").absolute(st.out_rsts);
        counter!("plugtcp_tcp_blackholed_total").absolute(st.blackholed);
        let md5 = self.md5_stats;
        for (result, n) in [
            ("good", md5.rcv_goodsig),
            ("bad", md5.rcv_badsig),
            ("missing", md5.err_nosigopt),
        ] {
            counter!("plugtcp_tcp_md5_total", "result" => result).absolute(n);
        }
        counter!("plugtcp_tcp_listen_overflows_total").absolute(st.listen_overflows);
        counter!("plugtcp_tcp_syncookies_sent_total").absolute(st.syncookies_sent);
        counter!("plugtcp_tcp_syncookies_recv_total").absolute(st.syncookies_recvd);
        let sc = self.syncache.stats();
        for (event, n) in [
            ("added", sc.added),
            ("retransmitted", sc.retransmitted),
            ("dupsyn", sc.dupsyn),
            ("dropped", sc.dropped),
            ("completed", sc.completed),
            ("bucketoverflow", sc.bucketoverflow),
            ("cacheoverflow", sc.cacheoverflow),
            ("reset", sc.reset),
            ("stale", sc.stale),
            ("aborted", sc.aborted),
            ("badack", sc.badack),
            ("unreach", sc.unreach),
            ("zonefail", sc.zonefail),
            ("sndacks", sc.sndacks),
            ("cookiessent", sc.cookiessent),
            ("cookiesrecvd", sc.cookiesrecvd),
        ] {
            counter!("plugtcp_tcp_syncache_total", "event" => event).absolute(n);
        }
        gauge!("plugtcp_tcp_syncache_entries").set(self.syncache.len() as f64);
        for r in DropReason::ALL {
            counter!("plugtcp_tcp_in_errs_total", "reason" => r.name())
                .absolute(st.in_errs[r as usize]);
        }

        // Byte and segment totals by (stack, CC): closed connections, then live ones.
        for (b, c, t) in self.worker.departed.drain(..) {
            let e = self
                .metrics
                .closed
                .entry((b.name.clone(), c.name.clone()))
                .or_default();
            e.iter_mut().zip(t).for_each(|(e, t)| *e += t);
        }
        let mut totals = self.metrics.closed.clone();
        let mut states = [0u64; TcpState::ALL.len()];
        states[TcpState::Listen as usize] = self.listeners.iter().flatten().count() as u64;
        // FreeBSD counts its SYN cache entries in tcps_states[TCPS_SYN_RECEIVED] too.
        states[TcpState::SynReceived as usize] = self.syncache.len() as u64;
        let ps = self.worker.pacing;
        for (outcome, n) in [
            ("sent", ps.bursts - ps.held),
            ("held", ps.held),
            ("refused", ps.refused),
        ] {
            counter!("plugtcp_tcp_pacing_bursts_total", "outcome" => outcome).absolute(n);
        }
        counter!("plugtcp_tcp_paced_bytes_total").absolute(ps.bytes);
        let mut paced = 0u64;
        let rtt = histogram!("plugtcp_tcp_rtt_seconds");
        let cwnd = histogram!("plugtcp_tcp_cwnd_bytes");
        for c in self.conns.iter().flatten() {
            c.for_each_attribution(|b, cc, t| {
                let e = totals.entry((b.name.clone(), cc.name.clone())).or_default();
                e.iter_mut().zip(t).for_each(|(e, t)| *e += t);
            });
            let tp = &c.ctx.tp;
            states[tp.t_state as usize] += 1;
            paced += u64::from(c.side.pacer.as_ref().is_some_and(|p| p.rate() > 0));
            if tp.t_state.have_established() && tp.t_state != TcpState::TimeWait {
                if tp.t_srtt > 0 {
                    rtt.record(f64::from(tp.t_srtt) / 1e6);
                }
                cwnd.record(f64::from(tp.snd_cwnd));
            }
        }
        let mut rexmit = 0;
        for ((s, c), t) in totals {
            rexmit += t[TOT_REXMIT_SEGS];
            for (name, i) in [
                ("plugtcp_tcp_sent_bytes_total", TOT_SND_BYTES),
                ("plugtcp_tcp_retrans_bytes_total", TOT_REXMIT_BYTES),
                ("plugtcp_tcp_received_bytes_total", TOT_RCV_BYTES),
                ("plugtcp_tcp_sent_segs_total", TOT_SND_SEGS),
                ("plugtcp_tcp_received_segs_total", TOT_RCV_SEGS),
            ] {
                counter!(name, "stack" => s.clone(), "cc" => c.clone()).absolute(t[i]);
            }
        }
        counter!("plugtcp_tcp_retrans_segs_total").absolute(rexmit);
        for s in TcpState::ALL {
            gauge!("plugtcp_tcp_connection_states", "state" => s.name())
                .set(states[s as usize] as f64);
        }
        gauge!("plugtcp_tcp_curr_estab").set(
            (states[TcpState::Established as usize] + states[TcpState::CloseWait as usize]) as f64,
        );
        gauge!("plugtcp_tcp_paced_connections").set(paced as f64);

        for (p, n) in &self.plugin_faults {
            counter!("plugtcp_plugin_faults_total", "plugin" => p.clone()).absolute(*n);
        }
        for (from, to, result, n) in &self.metrics.switches {
            counter!("plugtcp_stack_switches_total",
                "from" => from.clone(), "to" => to.clone(), "result" => *result)
            .absolute(*n);
        }
    }

    /// The part of [`Host::publish_metrics`] that belongs to the registry every shard
    /// shares: plugin loads, users and the blocks' and modules' own counters.
    pub fn publish_registry_metrics(&mut self) {
        use metrics::{counter, gauge};
        if !self.metrics.described {
            describe_metrics();
            self.metrics.described = true;
        }
        // Shared by the shards like the registry: published once.
        counter!("plugtcp_tcp_sockets_refused_total").absolute(self.sockets_refused());
        let (buf_bytes, buf_refused) = self.buffer_memory();
        metrics::gauge!("plugtcp_tcp_buffer_bytes").set(buf_bytes as f64);
        counter!("plugtcp_tcp_buffer_refused_total").absolute(buf_refused);
        let fo = self.fastopen_stats();
        for (event, n) in [
            ("passive", fo.passive),
            ("passive_fail", fo.passive_fail),
            ("passive_overflow", fo.passive_overflow),
            ("active", fo.active),
            ("path_disabled", fo.paths_disabled),
        ] {
            counter!("plugtcp_tcp_fastopen_total", "event" => event).absolute(n);
        }
        {
            let p = self
                .metrics
                .plugins
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            for (kind, name, loads, deregs) in p.iter() {
                counter!("plugtcp_plugin_loads_total", "kind" => *kind, "name" => name.clone())
                    .absolute(*loads);
                counter!("plugtcp_plugin_deregistrations_total",
                    "kind" => *kind, "name" => name.clone())
                .absolute(*deregs);
            }
        }
        let snap = self.registry.snapshot();
        for b in &snap.blocks {
            let kind = PluginKind::FunctionBlock.name();
            gauge!("plugtcp_plugin_users", "kind" => kind, "name" => b.name.clone())
                .set(b.users() as f64);
            for (name, v) in b.counter_names.iter().zip(b.counters) {
                counter!("plugtcp_stack_counter_total",
                    "stack" => b.name.clone(), "counter" => name.clone())
                .absolute(v.load(std::sync::atomic::Ordering::Relaxed) as u64);
            }
        }
        for c in &snap.ccs {
            let kind = PluginKind::CcModule.name();
            gauge!("plugtcp_plugin_users", "kind" => kind, "name" => c.name.clone())
                .set(c.users() as f64);
            for (name, v) in c.counter_names.iter().zip(c.counters) {
                counter!("plugtcp_cc_counter_total",
                    "cc" => c.name.clone(), "counter" => name.clone())
                .absolute(v.load(std::sync::atomic::Ordering::Relaxed) as u64);
            }
        }
    }
}
