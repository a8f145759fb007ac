//! Prometheus metrics: what a host publishes after deterministic transfers on the simulated
//! link, that no label names a connection, that the dashboard uses only served names, and
//! a scrape of `plugtcp serve --metrics` over HTTP.

mod common;

use plugtcp_host::conn_table::ConnId;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};

use metrics_exporter_prometheus::PrometheusRecorder;
use plugtcp_abi::TcpState;
use plugtcp_cli::builtins::{BuiltinHost as _, BuiltinNet as _};
use plugtcp_cli::exporter::builder;
use plugtcp_host::metrics::METRICS;
use plugtcp_host::Host;
use plugtcp_io::sim::SimLinkConfig;
use plugtcp_io::simnet::SimNet;

type Labels = BTreeMap<String, String>;

/// Every sample line of an exposition: (name, labels, value).
fn samples(text: &str) -> Vec<(String, Labels, f64)> {
    let mut out = Vec::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (series, value) = line.rsplit_once(' ').unwrap();
        let (name, labels) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.strip_suffix('}').unwrap()),
            None => (series, ""),
        };
        let mut l = Labels::new();
        for kv in labels.split("\",").filter(|s| !s.is_empty()) {
            let (k, v) = kv.split_once("=\"").unwrap();
            l.insert(k.to_string(), v.trim_end_matches('"').to_string());
        }
        out.push((name.to_string(), l, value.parse().unwrap()));
    }
    out
}

/// The value of the series `name` with exactly `labels`.
fn get(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let want: Labels = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    samples(text)
        .into_iter()
        .find(|(n, l, _)| n == name && *l == want)
        .map(|(_, _, v)| v)
}

fn val(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    get(text, name, labels).unwrap_or_else(|| panic!("no {name}{labels:?} in:\n{text}"))
}

fn publish(h: &mut Host, rec: &PrometheusRecorder) -> String {
    metrics::with_local_recorder(rec, || h.publish_metrics());
    rec.handle().render()
}

/// 100 Mbit/s, 20 ms RTT, 1% loss both ways.
fn lossy() -> SimLinkConfig {
    SimLinkConfig {
        bandwidth_bps: 100_000_000,
        delay_ns: 10_000_000,
        loss: 0.01,
        seed: 5,
        ..SimLinkConfig::default()
    }
}

/// No label may identify a connection: only these label names, and no value an address.
fn assert_no_four_tuple(text: &str) {
    let allowed: BTreeSet<&str> = [
        "reason", "state", "stack", "cc", "plugin", "from", "to", "result", "kind", "name",
        "counter", "le", "event", "outcome",
    ]
    .into();
    for (n, l, _) in samples(text) {
        for (k, v) in &l {
            assert!(allowed.contains(k.as_str()), "{n}: label {k}");
            assert!(!v.contains("10.0.0.") && !v.contains(':'), "{n}: {k}={v}");
        }
    }
}

const LEN: usize = 4 << 20;

/// A lossy 4 MiB transfer from A to B; A's exposition is published once mid-transfer and
/// both after. Returns (A's mid render, A's end render, B's end render, the net).
fn lossy_transfer() -> (String, String, String, SimNet, ConnId) {
    let mut net = SimNet::builtin(lossy(), 11);
    let (ra, rb) = (builder().build_recorder(), builder().build_recorder());
    let mut mid = String::new();
    let mut slot = None;
    let t = common::transfer(&mut net, LEN, 120_000_000_000, |n, c| {
        slot = Some(c);
        if mid.is_empty() && n.now >= 1_000_000_000 {
            mid = publish(&mut n.a, &ra);
        }
        0
    });
    assert!(t.intact);
    // Until B has acknowledged A's FIN (B's application never closes: CLOSE_WAIT there).
    let c = slot.unwrap();
    assert!(net.run_until(net.now + 5_000_000_000, |n| n.a.state(c)
        == Some(TcpState::FinWait2)));
    let a = publish(&mut net.a, &ra);
    let b = publish(&mut net.b, &rb);
    (mid, a, b, net, c)
}

#[test]
fn lossy_transfer_publishes_netstat_counters_states_and_histograms() {
    let (mid, a, b, net, _) = lossy_transfer();
    // Mid-transfer: one established connection on A.
    assert_eq!(val(&mid, "plugtcp_tcp_curr_estab", &[]), 1.0);
    assert_eq!(
        val(
            &mid,
            "plugtcp_tcp_connection_states",
            &[("state", "ESTABLISHED")]
        ),
        1.0
    );
    assert_eq!(val(&mid, "plugtcp_tcp_rtt_seconds_count", &[]), 1.0);

    assert_eq!(val(&a, "plugtcp_tcp_active_opens_total", &[]), 1.0);
    assert_eq!(val(&a, "plugtcp_tcp_passive_opens_total", &[]), 0.0);
    assert_eq!(val(&b, "plugtcp_tcp_active_opens_total", &[]), 0.0);
    assert_eq!(val(&b, "plugtcp_tcp_passive_opens_total", &[]), 1.0);

    // Retransmissions: the tcpcbs' count equals the stack's ABI counter, and loss made some.
    let rexmit = net.a.block_counter("sndrexmitpack");
    assert!(rexmit > 0);
    assert_eq!(
        val(&a, "plugtcp_tcp_retrans_segs_total", &[]),
        rexmit as f64
    );
    assert_eq!(
        val(
            &a,
            "plugtcp_stack_counter_total",
            &[("stack", "base"), ("counter", "sndrexmitpack")]
        ),
        rexmit as f64
    );
    let sc = [("stack", "base"), ("cc", "newreno")];
    // Every data byte once as new data on A, and once in order on B.
    assert_eq!(val(&a, "plugtcp_tcp_sent_bytes_total", &sc), LEN as f64);
    assert_eq!(val(&b, "plugtcp_tcp_received_bytes_total", &sc), LEN as f64);
    assert!(val(&a, "plugtcp_tcp_retrans_bytes_total", &sc) >= rexmit as f64);
    // Every packet that entered the link was counted by the host that sent it, and every
    // one B took in (none corrupted here) by B.
    let out_a = val(&a, "plugtcp_tcp_out_segs_total", &[]);
    let out_b = val(&b, "plugtcp_tcp_out_segs_total", &[]);
    assert_eq!(out_a + out_b, net.packets as f64);
    assert_eq!(
        val(&b, "plugtcp_tcp_in_segs_total", &[]),
        net.b.stats.in_segs as f64
    );
    assert!(
        val(&b, "plugtcp_tcp_in_segs_total", &[]) < out_a,
        "some were lost"
    );

    // States after A's close: A's side is past its FIN, B's waits for its application.
    assert_eq!(
        val(
            &a,
            "plugtcp_tcp_connection_states",
            &[("state", "FIN_WAIT_2")]
        ),
        1.0
    );
    assert_eq!(val(&a, "plugtcp_tcp_curr_estab", &[]), 0.0);
    assert_eq!(
        val(
            &b,
            "plugtcp_tcp_connection_states",
            &[("state", "CLOSE_WAIT")]
        ),
        1.0
    );
    assert_eq!(
        val(&b, "plugtcp_tcp_connection_states", &[("state", "LISTEN")]),
        1.0
    );
    assert_eq!(val(&b, "plugtcp_tcp_curr_estab", &[]), 1.0);
    let states: f64 = TcpState::ALL
        .iter()
        .map(|s| val(&b, "plugtcp_tcp_connection_states", &[("state", s.name())]))
        .sum();
    assert_eq!(states, 2.0);

    // Histograms with real buckets: 20 ms RTT lands between 10 and 50 ms; A sampled its
    // connection mid-transfer and in FIN_WAIT_2 (every synchronized state but TIME_WAIT),
    // B once.
    let n = val(&a, "plugtcp_tcp_rtt_seconds_count", &[]);
    assert_eq!(n, 2.0);
    assert_eq!(
        val(&a, "plugtcp_tcp_rtt_seconds_bucket", &[("le", "0.01")]),
        0.0
    );
    assert_eq!(
        val(&a, "plugtcp_tcp_rtt_seconds_bucket", &[("le", "0.05")]),
        n
    );
    assert_eq!(val(&b, "plugtcp_tcp_cwnd_bytes_count", &[]), 1.0);
    assert_eq!(val(&b, "plugtcp_tcp_rtt_seconds_count", &[]), 1.0);

    // Plugins: built-ins registered once each, nothing deregistered, nothing faulted.
    for (kind, name) in [("stack", "base"), ("stack", "rack"), ("cc", "newreno")] {
        let l = [("kind", kind), ("name", name)];
        assert_eq!(val(&a, "plugtcp_plugin_loads_total", &l), 1.0);
        assert_eq!(val(&a, "plugtcp_plugin_deregistrations_total", &l), 0.0);
    }
    assert_eq!(
        val(
            &b,
            "plugtcp_plugin_users",
            &[("kind", "cc"), ("name", "newreno")]
        ),
        1.0
    );
    assert!(get(&a, "plugtcp_plugin_faults_total", &[("plugin", "base")]).is_none());
    assert!(get(
        &a,
        "plugtcp_cc_counter_total",
        &[("cc", "cdg"), ("counter", "delay_backoffs")]
    )
    .is_some());

    // Every name is served with its type, and no label names a connection.
    for (text, side) in [(&a, "A"), (&b, "B")] {
        for &(name, kind, _) in METRICS {
            if name == "plugtcp_plugin_faults_total" || name == "plugtcp_stack_switches_total" {
                continue; // nothing faulted or switched here
            }
            assert!(
                text.contains(&format!("# TYPE {name} {kind}\n")),
                "{side}: no {name} {kind}"
            );
        }
        assert_no_four_tuple(text);
    }
}

#[test]
fn malformed_packets_are_counted_by_reason() {
    let mut net = SimNet::builtin(SimLinkConfig::default(), 3);
    net.record = Some(Vec::new());
    let (_c, _s) = common::established(&mut net);
    let syn = net.record.as_ref().unwrap()[0].bytes.clone();
    let rec = builder().build_recorder();
    let before = publish(&mut net.b, &rec);
    for r in [
        "bad_tcp_checksum",
        "truncated",
        "bad_version",
        "bad_ip_checksum",
    ] {
        assert_eq!(
            val(&before, "plugtcp_tcp_in_errs_total", &[("reason", r)]),
            0.0
        );
    }
    let in_segs = val(&before, "plugtcp_tcp_in_segs_total", &[]);
    // A's SYN with a flipped byte in its TCP options, twice; three bytes; an IPv5 header;
    // a broken IPv4 header checksum.
    let mut bad = syn.clone();
    *bad.last_mut().unwrap() ^= 0x40;
    net.b.input(&bad);
    net.b.input(&bad);
    net.b.input(&syn[..3]);
    let mut v5 = syn.clone();
    v5[0] = 0x55;
    net.b.input(&v5);
    let mut iph = syn.clone();
    iph[10] ^= 0xff;
    net.b.input(&iph);
    let after = publish(&mut net.b, &rec);
    let errs = |r| val(&after, "plugtcp_tcp_in_errs_total", &[("reason", r)]);
    assert_eq!(errs("bad_tcp_checksum"), 2.0);
    assert_eq!(errs("truncated"), 1.0);
    assert_eq!(errs("bad_version"), 1.0);
    assert_eq!(errs("bad_ip_checksum"), 1.0);
    assert_eq!(errs("fragment"), 0.0);
    assert_eq!(val(&after, "plugtcp_tcp_in_segs_total", &[]), in_segs);
}

#[test]
fn bytes_follow_the_stack_through_a_switch_and_switches_are_counted() {
    let cfg = SimLinkConfig {
        bandwidth_bps: 100_000_000,
        delay_ns: 5_000_000,
        ..SimLinkConfig::default()
    };
    let mut net = SimNet::builtin(cfg, 4);
    let rec = builder().build_recorder();
    let (mut before, mut after_switch) = (String::new(), String::new());
    let mut failed = None;
    let t = common::transfer(&mut net, LEN, 60_000_000_000, |n, c| {
        // In SYN_SENT rack refuses the handoff (EAGAIN): counted with that result.
        if failed.is_none() {
            failed = Some(n.a.set_function_blk(c, "rack"));
        }
        if before.is_empty() && n.now >= 150_000_000 {
            before = publish(&mut n.a, &rec);
            assert_eq!(n.a.set_function_blk(c, "rack"), Ok(()));
            assert_eq!(n.a.set_function_blk(c, "rack"), Ok(()), "a no-op");
            after_switch = publish(&mut n.a, &rec);
            return 1;
        }
        0
    });
    assert!(t.intact && t.ticks == 1);
    assert_eq!(failed, Some(Err(plugtcp_abi::Errno::EAGAIN)));
    let end = publish(&mut net.a, &rec);
    let base = [("stack", "base"), ("cc", "newreno")];
    let rack = [("stack", "rack"), ("cc", "newreno")];
    let sent_base = val(&before, "plugtcp_tcp_sent_bytes_total", &base);
    assert!(sent_base > 0.0);
    // What base sent stays base's (a counter never goes down), rack's grows from 0.
    assert_eq!(
        val(&after_switch, "plugtcp_tcp_sent_bytes_total", &base),
        sent_base
    );
    assert_eq!(
        val(&after_switch, "plugtcp_tcp_sent_bytes_total", &rack),
        0.0
    );
    assert_eq!(val(&end, "plugtcp_tcp_sent_bytes_total", &base), sent_base);
    assert_eq!(
        val(&end, "plugtcp_tcp_sent_bytes_total", &base)
            + val(&end, "plugtcp_tcp_sent_bytes_total", &rack),
        LEN as f64
    );
    let sw = |r| {
        get(
            &end,
            "plugtcp_stack_switches_total",
            &[("from", "base"), ("to", "rack"), ("result", r)],
        )
    };
    assert_eq!(sw("ok"), Some(1.0));
    assert_eq!(sw("EAGAIN"), Some(1.0));
    assert!(get(
        &end,
        "plugtcp_stack_switches_total",
        &[("from", "rack"), ("to", "rack"), ("result", "ok")]
    )
    .is_none());
    assert_no_four_tuple(&end);

    // The connection's totals survive its close, under the pairs it ran on.
    let ids: Vec<ConnId> = net.a.conns.ids().collect();
    for id in ids {
        net.a.abort(id);
    }
    let closed = publish(&mut net.a, &rec);
    assert_eq!(
        val(&closed, "plugtcp_tcp_sent_bytes_total", &base),
        sent_base
    );
    assert_eq!(
        val(&closed, "plugtcp_tcp_sent_bytes_total", &rack),
        LEN as f64 - sent_base
    );
    assert_eq!(
        val(
            &closed,
            "plugtcp_tcp_connection_states",
            &[("state", "TIME_WAIT")]
        ),
        0.0
    );

    // kldunload counts a deregistration.
    net.a.kldunload("vegas", false).unwrap();
    let text = publish(&mut net.a, &rec);
    let l = [("kind", "cc"), ("name", "vegas")];
    assert_eq!(val(&text, "plugtcp_plugin_deregistrations_total", &l), 1.0);
}

/// Metric names a PromQL expression uses (identifiers starting `plugtcp_`), histogram
/// series suffixes taken off.
fn promql_names(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("plugtcp_") {
        let tail = &rest[i..];
        let end = tail
            .find(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '_'))
            .unwrap_or(tail.len());
        out.push(tail[..end].to_string());
        rest = &tail[end..];
    }
    out
}

fn exprs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                match (k.as_str(), x) {
                    ("expr" | "definition", serde_json::Value::String(s)) => out.push(s.clone()),
                    _ => exprs(x, out),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| exprs(x, out)),
        _ => {}
    }
}

#[test]
fn dashboard_uses_only_served_names() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../dashboards/plugtcp.json");
    let dash: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut all = Vec::new();
    exprs(&dash, &mut all);
    assert!(all.len() >= 15, "{} expressions", all.len());
    // What a host serves after a lossy transfer with a stack switch and a fault-free run.
    let (_, a, b, mut net, c) = lossy_transfer();
    let rec = builder().build_recorder();
    let _ = net.a.set_function_blk(c, "rack");
    let switched = publish(&mut net.a, &rec);
    let served: BTreeSet<String> = [a, b, switched]
        .iter()
        .flat_map(|t| samples(t).into_iter().map(|(n, _, _)| n))
        .collect();
    let mut used = BTreeSet::new();
    for e in &all {
        let names = promql_names(e);
        assert!(!names.is_empty(), "{e:?} uses no plugtcp metric");
        used.extend(names);
    }
    for n in &used {
        // plugin_faults only exists after a fault; it is a declared counter all the same.
        let declared = METRICS.iter().any(|(m, ..)| m == n);
        assert!(
            served.contains(n) || (n == "plugtcp_plugin_faults_total" && declared),
            "the dashboard uses {n}, which the exporter does not serve"
        );
    }
}

#[test]
fn serve_metrics_scrape_over_http() {
    let dir = std::env::temp_dir().join(format!("plugtcp-metrics-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let body = common::payload(300_000, 9);
    std::fs::write(dir.join("f"), &body).unwrap();
    // Free ports: ask the kernel for them, then hand them over.
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
    };
    let maddr = free();
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let uport = udp.local_addr().unwrap().port();
    drop(udp);
    let mut server =
        common::spawn_udp_http_server(&dir, uport, None, &["--metrics", &maddr.to_string()]);
    let out = dir.join("got");
    let st = common::udp_get_command("f", uport, &out).status().unwrap();
    assert!(st.success());
    assert_eq!(std::fs::read(&out).unwrap(), body);
    let scrape = || {
        let mut s = std::net::TcpStream::connect(maddr).unwrap();
        write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut r = String::new();
        s.read_to_string(&mut r).unwrap();
        r
    };
    // Published once a second: wait for a publish after the download.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let text = loop {
        let r = scrape();
        assert!(r.starts_with("HTTP/1.1 200"), "{r}");
        let text = r.split_once("\r\n\r\n").unwrap().1.to_string();
        if get(&text, "plugtcp_tcp_passive_opens_total", &[]) == Some(1.0)
            && get(
                &text,
                "plugtcp_tcp_sent_bytes_total",
                &[("stack", "base"), ("cc", "newreno")],
            )
            .is_some_and(|v| v >= body.len() as f64)
        {
            break text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never published:\n{text}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    server.kill().unwrap();
    server.wait().unwrap();
    assert_eq!(val(&text, "plugtcp_tcp_active_opens_total", &[]), 0.0);
    assert!(val(&text, "plugtcp_tcp_in_segs_total", &[]) > 0.0);
    assert!(text.contains("# TYPE plugtcp_tcp_rtt_seconds histogram"));
    assert!(text.contains("# HELP plugtcp_tcp_curr_estab "));
    assert_no_four_tuple(&text);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_syn_flood_shows_in_the_syncache_cookie_and_state_series() {
    use plugtcp_abi::segment::{th, SegOut};
    let tree = plugtcp_host::sysctl::SysctlTree::with_loader_tunables(&[
        ("net.inet.tcp.syncache.hashsize", "16"),
        ("net.inet.tcp.syncache.bucketlimit", "4"),
    ])
    .unwrap();
    let mut h = Host::with_sysctl(
        plugtcp_host::registry::loader::SearchPath::default(),
        plugtcp_host::secrets::Entropy::Seed(21),
        tree,
    );
    h.register_builtins();
    h.add_addr("10.0.0.2".parse().unwrap());
    h.listen("10.0.0.2:80".parse().unwrap(), 128).unwrap();
    let rec = builder().build_recorder();
    const SYNS: u32 = 10_000;
    for i in 0..SYNS {
        let seg = SegOut {
            seq: i,
            flags: th::SYN,
            win: 65535,
            ..Default::default()
        };
        let src = std::net::SocketAddr::new(std::net::IpAddr::V4((0x0b00_0000 + i).into()), 1024);
        let mut pkt = vec![0u8; plugtcp_host::wire::MAX_HEADER];
        let n =
            plugtcp_host::wire::build(&mut pkt, src, "10.0.0.2:80".parse().unwrap(), &seg, &[], 64)
                .unwrap();
        h.input(&pkt[..n]);
    }
    h.transmit(|_| {});
    let text = publish(&mut h, &rec);
    let n = f64::from(SYNS);
    // Every SYN-ACK carried a cookie (FreeBSD's tcps_sc_sendcookie).
    assert_eq!(val(&text, "plugtcp_tcp_syncookies_sent_total", &[]), n);
    assert_eq!(
        val(
            &text,
            "plugtcp_tcp_syncache_total",
            &[("event", "cookiessent")]
        ),
        n
    );
    assert_eq!(
        val(&text, "plugtcp_tcp_syncache_total", &[("event", "added")]),
        n
    );
    let held = h.syncache.len() as f64;
    assert_eq!(held, 64.0, "16 buckets of 4");
    assert_eq!(
        val(
            &text,
            "plugtcp_tcp_syncache_total",
            &[("event", "bucketoverflow")]
        ),
        n - held
    );
    assert_eq!(
        val(&text, "plugtcp_tcp_listen_overflows_total", &[]),
        n - held
    );
    assert_eq!(val(&text, "plugtcp_tcp_syncache_entries", &[]), held);
    assert_eq!(
        val(
            &text,
            "plugtcp_tcp_connection_states",
            &[("state", "SYN_RCVD")]
        ),
        held
    );
}

/// `plugtcp demo --metrics ADDR --hold S`: the sending host's metrics are served while the
/// demo runs and for S seconds after it, the final values included, so Prometheus can watch
/// the demo.
#[test]
fn demo_serves_its_metrics_and_holds_the_final_values() {
    let maddr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let demo = std::process::Command::new(env!("CARGO_BIN_EXE_plugtcp"))
        .args(["demo", "--size", "8M", "--json", "--hold", "5", "--metrics"])
        .arg(maddr.to_string())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let scrape = || -> Option<String> {
        let mut s = std::net::TcpStream::connect(maddr).ok()?;
        write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut r = String::new();
        s.read_to_string(&mut r).ok()?;
        Some(r.split_once("\r\n\r\n")?.1.to_string())
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let text = loop {
        let done = scrape().filter(|t| {
            get(
                t,
                "plugtcp_tcp_sent_bytes_total",
                &[("stack", "base"), ("cc", "newreno")],
            ) == Some((8 << 20) as f64)
        });
        if let Some(t) = done {
            break t;
        }
        assert!(std::time::Instant::now() < deadline, "no final metrics");
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert_eq!(get(&text, "plugtcp_tcp_active_opens_total", &[]), Some(1.0));
    assert_no_four_tuple(&text);
    let out = demo.wait_with_output().unwrap();
    assert!(out.status.success());
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["intact"], true);
}
