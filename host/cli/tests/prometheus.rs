//! A real Prometheus server (Debian's `prometheus`, installed by `.ci/run`) scrapes
//! `plugtcp serve --metrics` while two downloads move data; Prometheus' HTTP API must return
//! byte, segment and state series that grew as the traffic did.

mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Kills and reaps what the test started and removes its directory, also when an assertion
/// fails.
struct Guard {
    children: Vec<Child>,
    dir: PathBuf,
}

impl Drop for Guard {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The `prometheus` binary on PATH. Missing: a failure under CI (which installs it), a skip
/// with a message on a developer's machine.
fn prometheus_binary() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join("prometheus"))
            .find(|f| f.is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "prometheus is not installed (apt-get install prometheus; .ci/run does)"
        );
        eprintln!("skipping: prometheus is not installed (apt-get install prometheus)");
    }
    found
}

fn free_tcp_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// `GET target` with HTTP/1.0 (so that the body is neither chunked nor kept alive):
/// (status, body), or None when nothing listens yet.
fn http_get(addr: SocketAddr, target: &str) -> Option<(u16, String)> {
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {target} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut r = String::new();
    s.read_to_string(&mut r).ok()?;
    let (head, body) = r.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}

/// Percent-encoding of a query parameter (RFC 3986: all but the unreserved characters).
fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

struct Prom {
    addr: SocketAddr,
    log: PathBuf,
}

impl Prom {
    /// An instant query through `/api/v1/query`: each result's value (vector results).
    fn query(&self, expr: &str) -> Vec<f64> {
        let (status, body) = http_get(
            self.addr,
            &format!("/api/v1/query?query={}", urlencode(expr)),
        )
        .unwrap_or_else(|| panic!("no answer to {expr}; log:\n{}", self.log_tail()));
        assert_eq!(status, 200, "{expr}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["status"], "success", "{expr}: {body}");
        assert_eq!(v["data"]["resultType"], "vector", "{expr}: {body}");
        v["data"]["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["value"][1].as_str().unwrap().parse().unwrap())
            .collect()
    }

    /// The value of an expression that selects one series, if Prometheus has it.
    fn one(&self, expr: &str) -> Option<f64> {
        let v = self.query(expr);
        assert!(v.len() <= 1, "{expr}: {v:?}");
        v.first().copied()
    }

    /// Polls (10 s at most) until `ok` holds for the values of `exprs`; returns them.
    fn wait_for<const N: usize>(
        &self,
        what: &str,
        exprs: [&str; N],
        ok: impl Fn(&[Option<f64>; N]) -> bool,
    ) -> [Option<f64>; N] {
        self.wait_for_within(what, exprs, ok, Duration::from_secs(10))
    }

    /// As [`Prom::wait_for`], polling for up to `limit`.
    fn wait_for_within<const N: usize>(
        &self,
        what: &str,
        exprs: [&str; N],
        ok: impl Fn(&[Option<f64>; N]) -> bool,
        limit: Duration,
    ) -> [Option<f64>; N] {
        let deadline = Instant::now() + limit;
        loop {
            let vals = exprs.map(|e| self.one(e));
            if ok(&vals) {
                return vals;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: Prometheus returned {:?} for {exprs:?}; log:\n{}",
                vals,
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

fn start_prometheus(bin: &Path, dir: &Path, target: SocketAddr, g: &mut Guard) -> Prom {
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: plugtcp\n    scrape_interval: 1s\n    \
             scrape_timeout: 1s\n    static_configs:\n      - targets: ['{target}']\n"
        ),
    )
    .unwrap();
    let addr = free_tcp_port();
    let log = dir.join("prometheus.log");
    let child = Command::new(bin)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("tsdb").display()
        ))
        .arg(format!("--web.listen-address={addr}"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    g.children.push(child);
    let prom = Prom { addr, log };
    let deadline = Instant::now() + Duration::from_secs(30);
    while http_get(addr, "/-/ready").map(|(s, _)| s) != Some(200) {
        assert!(
            Instant::now() < deadline,
            "prometheus not ready after 30 s; log:\n{}",
            prom.log_tail()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    prom
}

const SENT: &str = "plugtcp_tcp_sent_bytes_total{stack=\"base\",cc=\"newreno\"}";
const RECEIVED: &str = "plugtcp_tcp_received_bytes_total{stack=\"base\",cc=\"newreno\"}";
const OUT_SEGS: &str = "plugtcp_tcp_out_segs_total";
const SENT_SEGS: &str = "plugtcp_tcp_sent_segs_total{stack=\"base\",cc=\"newreno\"}";
const PASSIVE: &str = "plugtcp_tcp_passive_opens_total";
/// The largest MSS a 1500-byte path can carry: a lower bound on segments per byte.
const MAX_MSS: usize = 1460;
/// An HTTP response header from `serve --service http` is well under this.
const HEADER_MAX: f64 = 512.0;

#[test]
fn prometheus_scrapes_serve_while_data_moves() {
    let Some(bin) = prometheus_binary() else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("plugtcp-prometheus-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut g = Guard {
        children: Vec::new(),
        dir: dir.clone(),
    };
    let root = dir.join("root");
    std::fs::create_dir(&root).unwrap();
    let small = common::payload(2 << 20, 21);
    let large = common::payload(4 << 20, 22);
    std::fs::write(root.join("small"), &small).unwrap();
    std::fs::write(root.join("large"), &large).unwrap();

    let maddr = free_tcp_port();
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let uport = udp.local_addr().unwrap().port();
    drop(udp);
    // 10 Mbit/s out of the server: about 1.7 s for the small file, 3.4 s for the large one,
    // so that several publishes and scrapes fall inside each download.
    let server = common::spawn_udp_http_server(
        &root,
        uport,
        None,
        &["--metrics", &maddr.to_string(), "--fault-out", "rate=10m"],
    );
    g.children.push(server);
    let prom = start_prometheus(&bin, &dir, maddr, &mut g);

    // Scraped before any traffic: up, nothing opened or sent.
    let [up, opens, out0] = prom.wait_for(
        "first scrape",
        ["up{job=\"plugtcp\"}", PASSIVE, OUT_SEGS],
        |v| v.iter().all(Option::is_some),
    );
    assert_eq!(up, Some(1.0));
    assert_eq!(opens, Some(0.0));
    assert_eq!(out0, Some(0.0));
    assert_eq!(
        prom.one("plugtcp_tcp_connection_states{state=\"LISTEN\"}"),
        Some(1.0)
    );
    assert_eq!(prom.one("plugtcp_tcp_curr_estab"), Some(0.0));

    let download = |name: &str, want: &[u8]| {
        let out = dir.join(format!("got-{name}"));
        let t = Instant::now();
        let st = common::udp_get_command(name, uport, &out).status().unwrap();
        assert!(st.success(), "plugtcp get {name}: {st}");
        assert!(std::fs::read(&out).unwrap() == want, "{name}: corrupted");
        t.elapsed()
    };

    // First download: one passive open, the file's bytes sent once (rate-limited, no loss).
    let t1 = download("small", &small);
    let [_, sent1, out1, segs1, recv1] = prom.wait_for(
        "after the small download",
        [PASSIVE, SENT, OUT_SEGS, SENT_SEGS, RECEIVED],
        |v| v[0] == Some(1.0) && v[1].is_some_and(|s| s >= small.len() as f64),
    );
    let (sent1, out1, segs1, recv1) = (
        sent1.unwrap(),
        out1.unwrap(),
        segs1.unwrap(),
        recv1.unwrap(),
    );
    assert!(sent1 < small.len() as f64 + HEADER_MAX, "sent {sent1}");
    assert!(out1 >= small.len().div_ceil(MAX_MSS) as f64, "out {out1}");
    assert!(
        segs1 >= small.len().div_ceil(MAX_MSS) as f64,
        "segs {segs1}"
    );
    // The request, a few dozen bytes.
    assert!(recv1 > 0.0 && recv1 < HEADER_MAX, "received {recv1}");

    // Second download, twice as large: every series grew by at least what moved.
    let t2 = download("large", &large);
    let [_, sent2, out2, segs2, recv2] = prom.wait_for(
        "after the large download",
        [PASSIVE, SENT, OUT_SEGS, SENT_SEGS, RECEIVED],
        |v| v[0] == Some(2.0) && v[1].is_some_and(|s| s >= sent1 + large.len() as f64),
    );
    let (sent2, out2, segs2, recv2) = (
        sent2.unwrap(),
        out2.unwrap(),
        segs2.unwrap(),
        recv2.unwrap(),
    );
    let grew = sent2 - sent1;
    assert!(
        grew >= large.len() as f64 && grew < large.len() as f64 + HEADER_MAX,
        "sent grew by {grew}"
    );
    let min_segs = large.len().div_ceil(MAX_MSS) as f64;
    assert!(out2 - out1 >= min_segs, "out segs {out1} -> {out2}");
    assert!(segs2 - segs1 >= min_segs, "sent segs {segs1} -> {segs2}");
    assert!(
        recv2 > recv1 && recv2 - recv1 < HEADER_MAX,
        "{recv1} -> {recv2}"
    );
    // The counters never went down between scrapes (no reset: one serve process throughout).
    assert_eq!(prom.one(&format!("resets({SENT}[1m])")), Some(0.0));
    assert_eq!(prom.one(&format!("resets({OUT_SEGS}[1m])")), Some(0.0));

    // States: the large download lasted several publish and scrape periods, so Prometheus
    // stored an ESTABLISHED connection during it; now none is, and the listener stays.
    assert!(
        t2 >= Duration::from_millis(2500),
        "large download took {t2:?}"
    );
    let window = (t2.as_secs() + 3).max(5);
    assert_eq!(
        prom.one(&format!(
            "max_over_time(plugtcp_tcp_connection_states{{state=\"ESTABLISHED\"}}[{window}s])"
        )),
        Some(1.0)
    );
    assert_eq!(
        prom.one(&format!("max_over_time(plugtcp_tcp_curr_estab[{window}s])")),
        Some(1.0)
    );
    prom.wait_for(
        "connection gone from ESTABLISHED",
        [
            "plugtcp_tcp_connection_states{state=\"ESTABLISHED\"}",
            "plugtcp_tcp_connection_states{state=\"LISTEN\"}",
        ],
        |v| v[0] == Some(0.0) && v[1] == Some(1.0),
    );
    eprintln!("downloads: small {t1:?}, large {t2:?}");
}

/// `plugtcp demo --metrics ADDR --hold S` and `plugtcp lab run --metrics ADDR --hold S`:
/// Prometheus scrapes what they publish, and the final values stay while they hold.
#[test]
fn prometheus_scrapes_demo_and_lab_while_they_hold() {
    let Some(bin) = prometheus_binary() else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("plugtcp-prometheus-demo-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut g = Guard {
        children: Vec::new(),
        dir: dir.clone(),
    };
    let plugtcp = env!("CARGO_BIN_EXE_plugtcp");

    // The demo: 8 MiB on the simulated link, then 60 s of holding its final metrics.
    let maddr = free_tcp_port();
    let demo = Command::new(plugtcp)
        .args([
            "demo",
            "--size",
            "8M",
            "--loss",
            "0",
            "--hold",
            "60",
            "--metrics",
        ])
        .arg(maddr.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    g.children.push(demo);
    let prom = start_prometheus(&bin, &dir, maddr, &mut g);
    let [up, sent, opens] = prom.wait_for(
        "demo's final metrics",
        [
            "up{job=\"plugtcp\"}",
            "sum(plugtcp_tcp_sent_bytes_total)",
            "plugtcp_tcp_active_opens_total",
        ],
        |v| v[1].is_some_and(|s| s >= (8 << 20) as f64),
    );
    assert_eq!(up, Some(1.0));
    let sent = sent.unwrap();
    assert!(sent < (8 << 20) as f64 + 4096.0, "sent {sent}");
    assert_eq!(opens, Some(1.0));

    // The lab: one flow for 12 s (virtual time; with --kernel also 12 s of real time, so
    // Prometheus, ready a few seconds after it starts, scrapes the kernel run as it runs).
    let scenario = dir.join("one.toml");
    std::fs::write(
        &scenario,
        "name = \"watched\"\nduration = \"12s\"\n[[link]]\nbandwidth = \"20Mbit\"\n\
         delay = \"10ms\"\n[[flow]]\ncc = \"cubic\"\n",
    )
    .unwrap();
    let laddr = free_tcp_port();
    // With root and iproute2 the kernel runs too, in real time: watched as it runs.
    let kernel = plugtcp_cli::lab::kernel::available().is_ok();
    let lab = Command::new(plugtcp)
        .args(["lab", "run"])
        .arg(&scenario)
        .arg("-o")
        .arg(dir.join("out"))
        .args(if kernel { &["--kernel"][..] } else { &[][..] })
        .args(["--hold", "60", "--metrics"])
        .arg(laddr.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    g.children.push(lab);
    let prom2dir = dir.join("prom2");
    std::fs::create_dir_all(&prom2dir).unwrap();
    let prom2 = start_prometheus(&bin, &prom2dir, laddr, &mut g);
    let sel = "{engine=\"plugtcp\",point=\"base\",seed=\"1\",flow=\"cubic/base\"}";
    let [goodput, cwnd, vtime] = prom2.wait_for(
        "lab's last samples",
        [
            &format!("plugtcp_lab_flow_goodput_mbps{sel}"),
            &format!("plugtcp_lab_flow_cwnd_bytes{sel}"),
            "plugtcp_lab_run_time_seconds{engine=\"plugtcp\",point=\"base\",seed=\"1\"}",
        ],
        |v| v[2].is_some_and(|t| t >= 11.9),
    );
    // A 20 Mbit/s link: the flow's goodput in its last sample is most of it.
    let goodput = goodput.unwrap();
    assert!(goodput > 10.0 && goodput <= 20.0, "goodput {goodput}");
    assert!(cwnd.unwrap() > 10_000.0, "cwnd {cwnd:?}");
    assert!(vtime.unwrap() <= 12.0);
    assert!(prom2
        .one("plugtcp_lab_queue_backlog_bytes{engine=\"plugtcp\",point=\"base\",seed=\"1\",link=\"link0\"}")
        .is_some());
    if !kernel {
        eprintln!("skipping the kernel half: --kernel cannot run here");
        return;
    }
    // The kernel run: its samples were scraped while it ran (its clock seen to move), and
    // its last ones are a busy 20 Mbit/s link.
    let ksel = "{engine=\"kernel\",point=\"base\",seed=\"1\"}";
    let [ktime, kchanges] = prom2.wait_for_within(
        "the kernel run's samples",
        [
            &format!("plugtcp_lab_run_time_seconds{ksel}"),
            &format!("changes(plugtcp_lab_run_time_seconds{ksel}[1m])"),
        ],
        |v| v[0].is_some_and(|t| t >= 11.5),
        Duration::from_secs(30),
    );
    assert!(ktime.unwrap() <= 12.5, "{ktime:?}");
    assert!(
        kchanges.unwrap() >= 2.0,
        "scraped {kchanges:?} changes: not live"
    );
    let kgoodput = prom2
        .one("plugtcp_lab_flow_goodput_mbps{engine=\"kernel\",point=\"base\",seed=\"1\",flow=\"cubic/base\"}")
        .unwrap();
    assert!(
        kgoodput > 5.0 && kgoodput < 25.0,
        "kernel goodput {kgoodput}"
    );
}
