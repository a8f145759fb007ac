//! examples/stack-template as its README tells a user to use it: tested and built outside the
//! workspace, `kldload`ed into a running `plugtcp serve` through the control socket, and a
//! live download switched to it with `tcpsso ... TCP_FUNCTION_BLK template`: sockstat and
//! kldstat show the switch, every byte arrives, and the block's own segment counter is
//! exported. Then the same `.so` in two in-process hosts on the simulated link, where the
//! template's own socket option is read on the switched connection.

mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::{ctl, ok};
use plugtcp_abi::sockopt::{IPPROTO_TCP, TCP_FUNCTION_BLK};
use plugtcp_abi::{PluginKind, TcpState};
use plugtcp_cli::builtins::BuiltinNet as _;
use plugtcp_host::ctloutput::{parse_function_set, TCP_FUNCTION_SET_LEN};
use plugtcp_io::sim::SimLinkConfig;
use plugtcp_io::simnet::SimNet;
use sha2::{Digest, Sha256};

/// The template's own socket option (examples/stack-template/src/lib.rs,
/// `TCP_TEMPLATE_SEGS`): the segments a connection handed to the block.
const TCP_TEMPLATE_SEGS: i32 = 0x7_0001;

/// Tests and builds the template as its README says, into a target directory of its own,
/// once per test binary.
fn build_template() -> PathBuf {
    static SO: OnceLock<PathBuf> = OnceLock::new();
    SO.get_or_init(|| {
        let (test_out, so) =
            common::build_example("stack-template", "libplugtcp_stack_template.so");
        // Its unit tests ran (and passed: cargo test succeeded).
        let passed: usize = test_out
            .lines()
            .filter_map(|l| l.strip_prefix("test result: ok. "))
            .filter_map(|l| l.split(' ').next()?.parse::<usize>().ok())
            .sum();
        assert!(passed >= 4, "the template's unit tests: {test_out}");
        so
    })
    .clone()
}

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

fn free_tcp_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The body of `GET /metrics` from `serve --metrics`.
fn scrape(addr: SocketAddr) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut r = String::new();
    s.read_to_string(&mut r).unwrap();
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    r.split_once("\r\n\r\n").unwrap().1.to_string()
}

/// The value of the sample `name{labels...}` in a Prometheus text page (labels in any
/// order), if there is one.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(name)?.strip_prefix('{')?;
        let (set, value) = rest.split_once("} ")?;
        labels
            .iter()
            .all(|(k, v)| set.split(',').any(|kv| kv == format!("{k}=\"{v}\"")))
            .then(|| value.trim().parse().ok())?
    })
}

/// The sockstat row of the connection to `remote` on the server.
fn conn_row(sock: &Path, remote: &str) -> Option<serde_json::Value> {
    let rows: Vec<serde_json::Value> =
        serde_json::from_str(&ok(&ctl(sock, &["sockstat", "--json"]))).unwrap();
    rows.into_iter().find(|r| r["remote"] == remote)
}

fn one_line(o: &std::process::Output) -> String {
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(e.lines().count(), 1, "one line on stderr: {e:?}");
    e
}

#[test]
fn template_kldloaded_into_a_running_host_takes_over_a_live_connection() {
    let so = build_template();
    let so_str = so.to_str().unwrap();
    let dir = std::env::temp_dir().join(format!("plugtcp-stack-template-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut guard = Guard {
        children: Vec::new(),
        dir: dir.clone(),
    };
    let sock = dir.join("control.sock");
    let data = common::payload(24 << 20, 0x57ac);
    std::fs::write(dir.join("f.bin"), &data).unwrap();
    let (uport, maddr) = (free_udp_port(), free_tcp_addr());
    // A 40 Mbit/s, 10 ms path out of the server: the download lasts about five seconds.
    let server = common::spawn_udp_http_server(
        &dir,
        uport,
        Some(&sock),
        &[
            "--fault-out",
            "rate=40m,delay=10ms",
            "--metrics",
            &maddr.to_string(),
        ],
    );
    guard.children.push(server);
    let out = dir.join("out.bin");
    let get = common::udp_get_command("f.bin", uport, &out)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    guard.children.push(get);

    // The download, on the default block.
    let row = common::live_download(&sock, 0);
    let remote = row["remote"].as_str().unwrap().to_string();
    assert_eq!(row["stack"], "base");

    // kldload: the block registers under its name; a second load is refused in one line.
    let loaded = ok(&ctl(&sock, &["kldload", so_str]));
    assert!(
        loaded.contains("loaded stack template from") && loaded.contains(so_str),
        "{loaded}"
    );
    let again = one_line(&ctl(&sock, &["kldload", so_str]));
    assert!(again.contains("EALREADY"), "{again}");

    // The switch, on the live connection.
    ok(&ctl(
        &sock,
        &[
            "tcpsso",
            "127.0.0.1:8080",
            &remote,
            "TCP_FUNCTION_BLK",
            "template",
        ],
    ));
    let at_switch = conn_row(&sock, &remote).expect("the download's row");
    assert_eq!(at_switch["stack"], "template", "{at_switch}");
    assert_eq!(at_switch["state"], "ESTABLISHED");
    let sent_at_switch = at_switch["bytes_sent"].as_u64().unwrap();
    assert!(
        sent_at_switch < data.len() as u64 / 2,
        "switched early in the download: {sent_at_switch}"
    );
    let text = ok(&ctl(&sock, &["sockstat"]));
    assert!(
        text.lines()
            .any(|l| l.contains(&remote) && l.contains("template")),
        "{text}"
    );
    // kldstat: a stack, one PCB, loaded from the file.
    let stat: Vec<serde_json::Value> =
        serde_json::from_str(&ok(&ctl(&sock, &["kldstat", "--json"]))).unwrap();
    let t = stat.iter().find(|r| r["name"] == "template").unwrap();
    assert_eq!(
        (&t["kind"], &t["pcbs"], &t["file"]),
        (
            &serde_json::json!("stack"),
            &serde_json::json!(1),
            &serde_json::json!(so_str)
        ),
        "{t}"
    );
    let text = ok(&ctl(&sock, &["kldstat"]));
    let line = text.lines().find(|l| l.contains(" template ")).unwrap();
    assert!(line.contains(" stack ") && line.contains(" 1 "), "{line}");
    // A block nobody registered: ENOENT, and the connection stays on the template.
    let nosuch = one_line(&ctl(
        &sock,
        &[
            "tcpsso",
            "127.0.0.1:8080",
            &remote,
            "TCP_FUNCTION_BLK",
            "nosuch",
        ],
    ));
    assert!(nosuch.contains("ENOENT"), "{nosuch}");

    // The template carries the rest of the download.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = conn_row(&sock, &remote).expect("the download's row");
        assert_eq!(r["stack"], "template", "{r}");
        if r["bytes_sent"].as_u64().unwrap() > sent_at_switch + (1 << 20) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no progress after the switch: {r}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut get = guard.children.pop().unwrap();
    let status = get.wait().unwrap();
    let mut stderr = String::new();
    let _ = get.stderr.take().unwrap().read_to_string(&mut stderr);
    assert!(status.success(), "{stderr}");
    let got = std::fs::read(&out).unwrap_or_default();
    assert_eq!(got.len(), data.len());
    assert!(
        Sha256::digest(&got) == Sha256::digest(&data),
        "downloaded bytes differ"
    );

    // The template's own counter, exported by the host (published once a second), and the
    // switch counted.
    let deadline = Instant::now() + Duration::from_secs(10);
    let (segs, switches) = loop {
        let text = scrape(maddr);
        let segs = sample(
            &text,
            "plugtcp_stack_counter_total",
            &[("stack", "template"), ("counter", "template_segments")],
        );
        let switches = sample(
            &text,
            "plugtcp_stack_switches_total",
            &[("from", "base"), ("to", "template"), ("result", "ok")],
        );
        // The client's ACKs of the 12 MiB or more sent after the switch (fewer than one per
        // two segments: its receive batches are acknowledged once each).
        if let (Some(s), Some(w)) = (segs, switches) {
            if s >= 100.0 {
                break (s, w);
            }
        }
        assert!(Instant::now() < deadline, "never published:\n{text}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(segs >= 100.0, "{segs}");
    assert_eq!(switches, 1.0);

    let server = guard.children.pop().unwrap();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(server.id() as i32, libc::SIGTERM) };
    let mut server = server;
    assert!(server.wait().unwrap().success());
    assert!(!sock.exists(), "socket removed on exit");
}

#[test]
fn template_from_its_so_carries_a_transfer_on_the_simulated_link() {
    const LEN: usize = 4 << 20;
    let so = build_template();
    let mut net = SimNet::builtin(
        SimLinkConfig {
            delay_ns: 5_000_000,
            bandwidth_bps: 100_000_000,
            loss: 0.01,
            seed: 7,
            ..Default::default()
        },
        7,
    );
    for h in [&mut net.a, &mut net.b] {
        let (kind, names) = h.kldload(so.to_str().unwrap()).unwrap();
        assert_eq!(
            (kind, names),
            (PluginKind::FunctionBlock, vec!["template".to_owned()])
        );
    }
    let (mut switched, mut seen) = (false, None);
    let t = common::transfer(&mut net, LEN, 120_000_000_000, |n, c| {
        let Some(acked) =
            n.a.tcpcb(c)
                .map(|tp| tp.snd_una.wrapping_sub(tp.iss) as usize)
        else {
            return 0;
        };
        if !switched && acked > LEN / 4 {
            n.a.setsockopt(c, IPPROTO_TCP, TCP_FUNCTION_BLK, b"template")
                .unwrap();
            switched = true;
            return 1;
        }
        if switched && seen.is_none() && acked > 3 * LEN / 4 {
            assert_eq!(n.a.state(c), Some(TcpState::Established));
            let segs =
                n.a.getsockopt_int(c, IPPROTO_TCP, TCP_TEMPLATE_SEGS)
                    .unwrap();
            let mut b = [0u8; TCP_FUNCTION_SET_LEN];
            n.a.getsockopt(c, IPPROTO_TCP, TCP_FUNCTION_BLK, &mut b)
                .unwrap();
            seen = Some((segs, parse_function_set(&b).unwrap()));
        }
        0
    });
    assert!(t.intact, "got {} of {LEN}", t.got);
    assert_eq!(t.ticks, 1, "one switch");
    let (segs, blk) = seen.expect("the connection seen on the template");
    assert_eq!(blk, ("template".to_owned(), 1));
    // The sender on the template took the receiver's ACKs for half the transfer: about one
    // per two 1460-byte segments, hundreds at least.
    assert!(segs > 300, "{segs}");
    assert!(net.a.block_counter("template_segments") >= segs as u64);
    assert_eq!(
        net.b.block_counter("template_segments"),
        0,
        "B stayed on base"
    );
}
