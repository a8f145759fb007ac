//! Interop with the Linux kernel's TCP over a TUN device. Each test makes its own network
//! namespace with the device in it, sends traffic only inside it, and removes it afterwards.
//! Needs root (CI runs as root); elsewhere the tests say so and skip.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use plugtcp_cli::services::{GetOutcome, Http, HttpGet, Simple, SimpleServer};
use plugtcp_host::registry::loader::SearchPath;
use plugtcp_host::Host;
use plugtcp_io::driver::{Faulty, IoHost, PacketIo};
use plugtcp_io::netns::{self, Netns};
use plugtcp_io::sim::SimLinkConfig;
use plugtcp_io::tun::TunIo;
use sha2::{Digest, Sha256};

mod common;
use common::payload;
use plugtcp_cli::builtins::BuiltinHost as _;

/// RFC 2544's benchmarking range and RFC 3849's documentation prefix: addresses that exist
/// only inside the namespace.
const KERNEL_V4: &str = "198.18.0.1";
const PLUGTCP_V4: &str = "198.18.0.2";
const KERNEL_V6: &str = "2001:db8:77::1";
const PLUGTCP_V6: &str = "2001:db8:77::2";
const TUN: &str = "ptun0";

/// This test's network namespace (deleted on drop); None (with a message) where namespaces
/// cannot be made: not root, no `ip`, no TUN.
fn make_ns(tag: &str) -> Option<Netns> {
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } != 0 || !Path::new("/dev/net/tun").exists() {
        eprintln!("not root or no /dev/net/tun: skipping");
        return None;
    }
    Netns::create(&format!("plugtcp-{tag}-{}", std::process::id()))
        .map_err(|e| eprintln!("{e}: skipping"))
        .ok()
}

/// Test-side conveniences: a command in the namespace must run (and `ok` succeed).
trait NsExt {
    fn exec(&self, args: &[&str]) -> Output;
    fn must(&self, args: &[&str]);
    fn csum_errors(&self) -> u64;
}

impl NsExt for Netns {
    fn exec(&self, args: &[&str]) -> Output {
        self.run(args).expect("ip netns exec")
    }

    fn must(&self, args: &[&str]) {
        self.ok(args).unwrap();
    }

    /// The kernel's TcpInCsumErrors counter in the namespace.
    fn csum_errors(&self) -> u64 {
        let out = self.exec(&["nstat", "-az", "TcpInCsumErrors"]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| {
                let mut f = l.split_whitespace();
                (f.next() == Some("TcpInCsumErrors")).then(|| f.next()?.parse().ok())?
            })
            .unwrap_or(0)
    }
}

/// What runs beside the network in plugtcp's thread: polled between network polls.
type App = Box<dyn FnMut(&mut Host)>;

/// Starts plugtcp on a TUN device in `ns` at both of its addresses, with the application
/// `setup` makes, until `stop` is set (or the application's done flag). Returns once the
/// device is configured.
fn run_plugtcp(
    ns: &Netns,
    stop: Arc<AtomicBool>,
    faults: Option<SimLinkConfig>,
    vnet_hdr: bool,
    setup: impl FnOnce(&mut Host) -> App + Send + 'static,
) -> std::thread::JoinHandle<plugtcp_host::conn::OffloadStats> {
    let (ready_tx, ready_rx) = mpsc::channel::<mpsc::Sender<()>>();
    let name = ns.name().to_string();
    let handle = std::thread::spawn(move || {
        netns::enter(&name).unwrap();
        let tun = TunIo::open_with(TUN, vnet_hdr).unwrap();
        // The device exists: the kernel side is configured, then plugtcp starts.
        let (go_tx, go_rx) = mpsc::channel::<()>();
        ready_tx.send(go_tx).unwrap();
        go_rx.recv().unwrap();
        let tun: Box<dyn PacketIo> = match faults {
            Some(f) => {
                let mut inbound = f.clone();
                inbound.seed = f.seed + 1;
                Box::new(Faulty::new(tun, f, inbound))
            }
            None => Box::new(tun),
        };
        let mut host = Host::with_seed(SearchPath::default(), 11);
        host.register_builtins();
        for ip in [PLUGTCP_V4, PLUGTCP_V6] {
            host.add_addr(ip.parse().unwrap());
        }
        let mut app = setup(&mut host);
        let mut h = IoHost::new(host, tun);
        while !stop.load(Ordering::Relaxed) {
            h.poll(Duration::from_millis(5)).unwrap();
            app(&mut h.host);
        }
        h.host.offload_stats()
    });
    let go = ready_rx.recv().unwrap();
    ns.must(&["ip", "link", "set", "lo", "up"]);
    ns.must(&["ip", "addr", "add", &format!("{KERNEL_V4}/24"), "dev", TUN]);
    ns.must(&[
        "ip",
        "-6",
        "addr",
        "add",
        &format!("{KERNEL_V6}/64"),
        "dev",
        TUN,
        "nodad",
    ]);
    ns.must(&["ip", "link", "set", TUN, "up"]);
    go.send(()).unwrap();
    handle
}

/// plugtcp's HTTP service on port 8080 at both addresses, serving `root`.
fn serve_http(
    ns: &Netns,
    root: PathBuf,
    stop: Arc<AtomicBool>,
    faults: Option<SimLinkConfig>,
    vnet_hdr: bool,
) -> std::thread::JoinHandle<plugtcp_host::conn::OffloadStats> {
    run_plugtcp(ns, stop, faults, vnet_hdr, move |host| {
        let mut services = Vec::new();
        for ip in [PLUGTCP_V4, PLUGTCP_V6] {
            let ip: IpAddr = ip.parse().unwrap();
            let l = host.listen(SocketAddr::new(ip, 8080), 64).unwrap();
            services.push(Http::new(root.clone(), l));
        }
        Box::new(move |host: &mut Host| {
            for s in &mut services {
                s.poll(host);
            }
        })
    })
}

fn write_file(path: &Path, len: usize) -> Vec<u8> {
    let data = payload(len, 0x2545_f491_4f6c_dd1d);
    std::fs::write(path, &data).unwrap();
    Sha256::digest(&data).to_vec()
}

/// curl downloads `len` bytes from the plugtcp HTTP server at each URL in `ns`; asserts
/// success and the digest, and that the kernel counted no checksum errors.
fn curl_downloads(tag: &str, len: usize, faults: Option<SimLinkConfig>, v6: bool, vnet_hdr: bool) {
    let Some(ns) = make_ns(tag) else {
        return;
    };
    if Command::new("curl").arg("--version").output().is_err() {
        eprintln!("curl not installed: skipping");
        return;
    }
    let dir = std::env::temp_dir().join(format!("plugtcp-http-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let want = write_file(&dir.join("big.bin"), len);
    let stop = Arc::new(AtomicBool::new(false));
    let faulty = faults.is_some();
    let server = serve_http(&ns, dir.clone(), stop.clone(), faults, vnet_hdr);
    let mut urls = vec![format!("http://{PLUGTCP_V4}:8080/big.bin")];
    if v6 {
        urls.push(format!("http://[{PLUGTCP_V6}]:8080/big.bin"));
    }
    let mut results = Vec::new();
    for url in urls {
        let out_file = dir.join("out.bin");
        let t0 = Instant::now();
        let out = ns.exec(&[
            "curl",
            "-sS",
            "--max-time",
            "240",
            "-o",
            out_file.to_str().unwrap(),
            &url,
        ]);
        let got = std::fs::read(&out_file).unwrap_or_default();
        results.push((
            url,
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
            got.len(),
            Sha256::digest(&got).to_vec() == want,
            t0.elapsed(),
        ));
        let _ = std::fs::remove_file(&out_file);
    }
    let csum_errors = ns.csum_errors();
    stop.store(true, Ordering::Relaxed);
    let offload = server.join().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    // With IFF_VNET_HDR (and no faults, which want packets one by one) the download left
    // as super-packets the kernel cut; without it the host cut them itself.
    if vnet_hdr && !faulty {
        assert!(offload.gso_sends > 0, "{offload:?}");
    } else {
        assert_eq!(offload.gso_sends, 0, "{offload:?}");
    }
    for (url, ok, err, got, digest_ok, took) in &results {
        eprintln!("{url}: {got} bytes in {took:?}");
        assert!(ok, "{url}: curl failed: {err}");
        assert_eq!(*got, len, "{url}");
        assert!(digest_ok, "{url}: SHA-256 differs");
    }
    assert_eq!(csum_errors, 0, "TcpInCsumErrors");
}

/// curl (the kernel's TCP) downloads 64 MiB from the plugtcp HTTP server, over IPv4 and
/// IPv6; the SHA-256 matches, and the kernel counts no checksum errors.
#[test]
fn curl_downloads_64_mib_from_plugtcp_http() {
    curl_downloads("curl", 64 << 20, None, true, false);
}

/// The same download to a device with IFF_VNET_HDR: the kernel's checksum and TSO offloads
/// on both ways (its GSO super-packets come in whole, partial checksums completed here;
/// plugtcp's go out whole, the kernel cuts them and completes their checksums).
#[test]
fn curl_downloads_64_mib_with_vnet_hdr_offloads() {
    curl_downloads("vnet", 64 << 20, None, true, true);
}

/// The same with 1% loss and reordering injected in both directions (1 ms each way).
#[test]
fn curl_download_survives_loss_and_reordering() {
    let faults = SimLinkConfig {
        delay_ns: 1_000_000,
        loss: 0.01,
        reorder: 0.01,
        reorder_min_ns: 500_000,
        reorder_max_ns: 2_000_000,
        seed: 5,
        ..SimLinkConfig::default()
    };
    curl_downloads("lossy", 64 << 20, Some(faults), false, false);
}

/// Waits until something listens on `port` in the namespace (a kernel server started).
fn wait_listening(ns: &Netns, port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let out = ns.exec(&["ss", "-Hltn", &format!("sport = :{port}")]);
        if !String::from_utf8_lossy(&out.stdout).trim().is_empty() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("nothing listens on port {port}");
}

/// plugtcp's HTTP client (an active open) downloads 64 MiB from `python3 -m http.server` on
/// the kernel's TCP; the SHA-256 matches.
#[test]
fn plugtcp_get_downloads_64_mib_from_python_http_server() {
    let Some(ns) = make_ns("get") else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("plugtcp-get-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let want = write_file(&dir.join("big.bin"), 64 << 20);
    // The device first (the server binds the kernel's address on it).
    let stop = Arc::new(AtomicBool::new(false));
    let (done_tx, done_rx) = mpsc::channel();
    let started = Arc::new(AtomicBool::new(false));
    let go = started.clone();
    let plugtcp = run_plugtcp(&ns, stop.clone(), None, true, move |_| {
        let mut get: Option<HttpGet<Vec<u8>>> = None;
        Box::new(move |host: &mut Host| {
            if !go.load(Ordering::Relaxed) {
                return;
            }
            let g = get.get_or_insert_with(|| {
                let server = SocketAddr::new(KERNEL_V4.parse().unwrap(), 8000);
                HttpGet::start(host, server, KERNEL_V4, "/big.bin", Vec::new()).unwrap()
            });
            if let Some(outcome) = g.poll(host) {
                let body = std::mem::take(g.out_mut());
                done_tx.send((outcome, body)).unwrap();
                go.store(false, Ordering::Relaxed);
            }
        })
    });
    let mut server = Command::new("ip")
        .args([
            "netns",
            "exec",
            ns.name(),
            "python3",
            "-m",
            "http.server",
            "8000",
        ])
        .args(["--bind", KERNEL_V4, "--directory"])
        .arg(&dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_listening(&ns, 8000);
    started.store(true, Ordering::Relaxed);
    let result = done_rx.recv_timeout(Duration::from_secs(120));
    let csum_errors = ns.csum_errors();
    stop.store(true, Ordering::Relaxed);
    plugtcp.join().unwrap();
    let _ = server.kill();
    let _ = server.wait();
    std::fs::remove_dir_all(&dir).unwrap();
    let (outcome, body) = result.expect("download finished");
    assert_eq!(outcome, GetOutcome::Done(200, 64 << 20));
    assert!(Sha256::digest(&body).to_vec() == want, "SHA-256 differs");
    assert_eq!(csum_errors, 0, "TcpInCsumErrors");
}

/// A Python client on the kernel's TCP talks to plugtcp's echo service: 1 MiB back intact,
/// and after the client's half-close (SHUT_WR) the echo still arrives, then the FIN.
#[test]
fn python_client_and_echo_service_with_half_close() {
    let Some(ns) = make_ns("echo") else {
        return;
    };
    let stop = Arc::new(AtomicBool::new(false));
    let plugtcp = run_plugtcp(&ns, stop.clone(), None, false, |host| {
        let l = host
            .listen(SocketAddr::new(PLUGTCP_V4.parse().unwrap(), 7), 16)
            .unwrap();
        let mut echo = SimpleServer::new(Simple::Echo, l);
        Box::new(move |host: &mut Host| echo.poll(host))
    });
    let script = format!(
        r#"
import hashlib, socket
data = bytes((i * 7 + i // 251) % 256 for i in range(1 << 20))
s = socket.create_connection(("{PLUGTCP_V4}", 7), timeout=60)
s.sendall(data)
s.shutdown(socket.SHUT_WR)
got = bytearray()
while True:
    b = s.recv(65536)
    if not b:
        break
    got += b
s.close()
print("OK" if bytes(got) == data else "MISMATCH %d" % len(got))
"#
    );
    let out = ns.exec(&["python3", "-c", &script]);
    let csum_errors = ns.csum_errors();
    stop.store(true, Ordering::Relaxed);
    plugtcp.join().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.trim() == "OK",
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(csum_errors, 0, "TcpInCsumErrors");
}

/// `plugtcp serve` started inside the namespace, stopped with SIGTERM.
struct Served {
    child: std::process::Child,
    /// The first line it printed: where to connect.
    addr: String,
}

impl Served {
    fn start(ns: &Netns, args: &[&str]) -> Served {
        Served::start_with(ns, &[], args)
    }

    /// As `start`, with global options (`--control PATH`) before `serve`.
    fn start_with(ns: &Netns, global: &[&str], args: &[&str]) -> Served {
        use std::io::BufRead;
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns.name(), env!("CARGO_BIN_EXE_plugtcp")])
            .args(global)
            .arg("serve")
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        Served {
            child,
            addr: line.trim().to_string(),
        }
    }

    /// SIGTERM, then the exit status.
    fn stop(mut self) -> std::process::ExitStatus {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("serve did not exit after SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// `plugtcp serve --io tun --service echo` with no address flags sets up its own device and
/// prints where to connect; nc (with -N: half-close after its input) gets its bytes back;
/// SIGTERM ends it cleanly.
#[test]
fn nc_and_the_echo_service_from_the_cli() {
    let Some(ns) = make_ns("nc") else {
        return;
    };
    if Command::new("nc").arg("-h").output().is_err() {
        eprintln!("nc not installed: skipping");
        return;
    }
    ns.must(&["ip", "link", "set", "lo", "up"]);
    let served = Served::start(&ns, &["--io", "tun", "--service", "echo"]);
    assert_eq!(served.addr, "198.18.0.2:7");
    let dir = std::env::temp_dir().join(format!("plugtcp-nc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join("in.bin");
    let want = write_file(&input, 256 * 1024);
    let out = ns.exec(&[
        "sh",
        "-c",
        &format!("nc -N -w 20 198.18.0.2 7 < {}", input.display()),
    ]);
    let csum_errors = ns.csum_errors();
    let status = served.stop();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(csum_errors, 0, "TcpInCsumErrors");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout.len(), 256 * 1024);
    assert!(
        Sha256::digest(&out.stdout).to_vec() == want,
        "echoed bytes differ"
    );
    assert!(status.success(), "serve exited with {status}");
}

/// iperf3's client and server (the kernel's TCP) through plugtcp's forwarder (on a device with
/// IFF_VNET_HDR offloads), 5 s each way:
/// iperf3 reports success and throughput above zero.
#[test]
fn iperf3_through_the_forwarder() {
    let Some(ns) = make_ns("iperf") else {
        return;
    };
    if Command::new("iperf3").arg("--version").output().is_err() {
        eprintln!("iperf3 not installed: skipping");
        return;
    }
    ns.must(&["ip", "link", "set", "lo", "up"]);
    let mut server = Command::new("ip")
        .args([
            "netns",
            "exec",
            ns.name(),
            "iperf3",
            "-s",
            "-B",
            "127.0.0.1",
            "-p",
            "5201",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_listening(&ns, 5201);
    let served = Served::start(
        &ns,
        &[
            "--io",
            "tun",
            "--vnet-hdr",
            "--service",
            "forward",
            "--port",
            "5201",
            "--to",
            "127.0.0.1:5201",
        ],
    );
    let mut reports = Vec::new();
    for reverse in [false, true] {
        let mut args = vec!["iperf3", "-c", "198.18.0.2", "-p", "5201", "-t", "5", "-J"];
        if reverse {
            args.push("-R");
        }
        let out = ns.exec(&args);
        reports.push((reverse, out));
    }
    let csum_errors = ns.csum_errors();
    let status = served.stop();
    let _ = server.kill();
    let _ = server.wait();
    assert_eq!(csum_errors, 0, "TcpInCsumErrors");
    for (reverse, out) in reports {
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "iperf3 -R={reverse}: {text}");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let bps = v["end"]["sum_received"]["bits_per_second"]
            .as_f64()
            .unwrap_or(0.0);
        eprintln!("iperf3 reverse={reverse}: {:.2} Gbit/s", bps / 1e9);
        assert!(bps > 0.0, "no throughput: {text}");
    }
    assert!(status.success(), "serve exited with {status}");
}

/// `plugtcp bench tun` end to end at a small size: every transfer, both ways, plain and
/// with IFF_VNET_HDR (super-packets both ways), one shard and two, delivers every byte.
#[test]
fn bench_tun_runs() {
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } != 0 || !Path::new("/dev/net/tun").exists() {
        eprintln!("not root or no /dev/net/tun: skipping");
        return;
    }
    let cfg = plugtcp_cli::bench::tun::TunConfig {
        bytes: 16 << 20,
        connections: vec![1, 3],
        shards: vec![1, 2],
        rounds: 1,
    };
    let r = plugtcp_cli::bench::tun::run(&cfg).unwrap();
    assert_eq!(r.kernel.len(), 2, "{r:?}");
    assert_eq!(r.plugtcp.len(), 16, "{r:?}");
    assert!(r.plugtcp.iter().all(|p| p.gbit_per_s > 0.0), "{r:?}");
}

/// Without CAP_NET_ADMIN (here: as `nobody`), `serve --io tun` fails with one line that
/// says so.
#[test]
fn tun_without_privileges_says_so_in_one_line() {
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } != 0 || Command::new("setpriv").arg("--help").output().is_err() {
        eprintln!("not root or no setpriv: skipping");
        return;
    }
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_plugtcp"))
        .args(["serve", "--io", "tun", "--service", "echo"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    if err.starts_with("setpriv:") {
        // `nobody` may not reach the build directory: nothing to learn here.
        eprintln!("{err}: skipping");
        return;
    }
    assert!(!out.status.success());
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("CAP_NET_ADMIN"), "{err}");
}

/// discard (with the listener's stack and CC chosen by name) swallows what a Python client
/// sends and answers its FIN with its own; chargen sends RFC 864's rotating lines; an unknown
/// stack name is refused in one line.
#[test]
fn discard_chargen_and_listener_choices_from_the_cli() {
    let Some(ns) = make_ns("dc") else {
        return;
    };
    ns.must(&["ip", "link", "set", "lo", "up"]);
    let served = Served::start(
        &ns,
        &[
            "--io",
            "tun",
            "--service",
            "discard",
            "--stack",
            "base",
            "--cc",
            "newreno",
        ],
    );
    assert_eq!(served.addr, "198.18.0.2:9");
    let discard = r#"
import socket
s = socket.create_connection(("198.18.0.2", 9), timeout=30)
s.sendall(b"x" * (1 << 20))
s.shutdown(socket.SHUT_WR)
print("EOF" if s.recv(1) == b"" else "DATA")
"#;
    let out = ns.exec(&["python3", "-c", discard]);
    assert!(served.stop().success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "EOF");

    // A second device: the first went away with its process.
    let served = Served::start(
        &ns,
        &[
            "--io",
            "tun",
            "--tun",
            "pchg0",
            "--addr",
            "198.18.0.2",
            "--service",
            "chargen",
        ],
    );
    ns.must(&["ip", "addr", "add", "198.18.0.1/24", "dev", "pchg0"]);
    ns.must(&["ip", "link", "set", "pchg0", "up"]);
    let chargen = r#"
import socket
s = socket.create_connection(("198.18.0.2", 19), timeout=30)
got = b""
while len(got) < 74 * 3:
    got += s.recv(4096)
s.close()
line = lambda n: bytes(32 + (n + i) % 95 for i in range(72)) + b"\r\n"
print("OK" if got[:74 * 3] == line(0) + line(1) + line(2) else repr(got[:80]))
"#;
    let out = ns.exec(&["python3", "-c", chargen]);
    assert!(served.stop().success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "OK");

    let bad = ns.exec(&[
        env!("CARGO_BIN_EXE_plugtcp"),
        "serve",
        "--io",
        "tun",
        "--service",
        "echo",
        "--stack",
        "nosuch",
    ]);
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        !bad.status.success() && err.contains("nosuch") && err.trim().lines().count() == 1,
        "{err}"
    );
}

/// HTTP details with Python's http.client on one kept-alive connection: HEAD gives the
/// length and no body, GET the bytes, a missing file 404, and `..` cannot leave the root.
#[test]
fn http_head_keep_alive_and_errors() {
    let Some(ns) = make_ns("http") else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("plugtcp-http-ka-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("a.txt"), b"hello, plugtcp\n").unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let server = serve_http(&ns, dir.clone(), stop.clone(), None, false);
    let script = format!(
        r#"
import http.client
c = http.client.HTTPConnection("{PLUGTCP_V4}", 8080, timeout=30)
c.request("HEAD", "/a.txt"); r = c.getresponse(); h = (r.status, r.getheader("Content-Length"), r.read())
first = c.sock
c.request("GET", "/a.txt"); r = c.getresponse(); g = (r.status, r.read())
c.request("GET", "/nope"); r = c.getresponse(); n = (r.status, r.read())
c.request("GET", "/../etc/passwd"); r = c.getresponse(); e = (r.status, r.read())
same = c.sock is first and first is not None
ok = same and h == (200, "15", b"") and g == (200, b"hello, plugtcp\n") and n[0] == 404 and e[0] == 404
print("OK" if ok else repr((same, h, g, n, e)))
"#
    );
    let out = ns.exec(&["python3", "-c", &script]);
    stop.store(true, Ordering::Relaxed);
    server.join().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout.trim(),
        "OK",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// curl (the kernel's TCP) downloads 64 MiB from `plugtcp serve --service http` over a 300
/// Mbit/s path with loss and reordering while the test switches the server's connection
/// between base and rack every 50 ms through the control socket (`tcpsso ...
/// TCP_FUNCTION_BLK`): every byte arrives.
#[test]
fn curl_download_survives_live_stack_switches() {
    let Some(ns) = make_ns("switch") else {
        return;
    };
    if Command::new("curl").arg("--version").output().is_err() {
        eprintln!("curl not installed: skipping");
        return;
    }
    ns.must(&["ip", "link", "set", "lo", "up"]);
    let dir = std::env::temp_dir().join(format!("plugtcp-switch-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let want = write_file(&dir.join("big.bin"), 64 << 20);
    let sock = dir.join("control.sock");
    let served = Served::start_with(
        &ns,
        &["--control", sock.to_str().unwrap()],
        &[
            "--io",
            "tun",
            "--service",
            "http",
            "--root",
            dir.to_str().unwrap(),
            "--fault-out",
            "rate=300m,delay=2ms,loss=0.002,reorder=0.005,seed=3",
        ],
    );
    let server = served.addr.clone();
    let out_file = dir.join("out.bin");
    let mut curl = Command::new("ip")
        .args([
            "netns",
            "exec",
            ns.name(),
            "curl",
            "-sS",
            "--max-time",
            "120",
            "-o",
        ])
        .arg(&out_file)
        .arg(format!("http://{server}/big.bin"))
        .spawn()
        .unwrap();
    let ctl = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_plugtcp"))
            .arg("--control")
            .arg(&sock)
            .args(args)
            .output()
            .unwrap()
    };
    let (mut switches, mut refused, mut to_rack) = (0, 0, true);
    let mut remote = None;
    let curl_status = loop {
        if let Some(st) = curl.try_wait().unwrap() {
            break st;
        }
        if remote.is_none() {
            let out = ctl(&["sockstat", "--json"]);
            let rows: Vec<serde_json::Value> =
                serde_json::from_slice(&out.stdout).unwrap_or_default();
            remote = rows
                .iter()
                .find(|r| r["state"] == "ESTABLISHED" && r["local"] == server.as_str())
                .and_then(|r| r["remote"].as_str().map(str::to_owned));
        }
        if let Some(peer) = &remote {
            let block = if to_rack { "rack" } else { "base" };
            let out = ctl(&["tcpsso", &server, peer, "TCP_FUNCTION_BLK", block]);
            if out.status.success() {
                switches += 1;
                to_rack = !to_rack;
            } else {
                // Only at the very end (EAGAIN with the FIN out, or the connection gone).
                refused += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let got = std::fs::read(&out_file).unwrap_or_default();
    let csum_errors = ns.csum_errors();
    let status = served.stop();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(curl_status.success(), "curl failed");
    assert_eq!(got.len(), 64 << 20);
    assert!(Sha256::digest(&got).to_vec() == want, "SHA-256 differs");
    assert!(switches >= 6, "{switches} switches ({refused} refused)");
    assert!(refused <= 3, "{refused} switches refused mid-transfer");
    assert_eq!(csum_errors, 0, "TcpInCsumErrors");
    assert!(status.success(), "serve exited with {status}");
}

/// The kernel's side of the device in `ns`: KERNEL_V4, up (and loopback up).
fn kernel_side_up(ns: &Netns) {
    ns.must(&["ip", "link", "set", "lo", "up"]);
    ns.must(&["ip", "addr", "add", &format!("{KERNEL_V4}/24"), "dev", TUN]);
    ns.must(&["ip", "link", "set", TUN, "up"]);
}

/// A runtime (`Runtime::on`) for a host at PLUGTCP_V4 on a TUN device in `ns`, the kernel
/// side at KERNEL_V4 and up. The device is opened inside the namespace; its descriptor
/// works from any thread.
fn runtime_in(ns: &Netns, seed: u64) -> plugtcp_io::runtime::Runtime {
    runtime_in_shards(ns, seed, 1)
}

/// As `runtime_in`, the host split into `shards` shards on as many queues of a multi-queue
/// device (`Runtime::sharded`).
fn runtime_in_shards(ns: &Netns, seed: u64, shards: usize) -> plugtcp_io::runtime::Runtime {
    let name = ns.name().to_string();
    let queues = std::thread::spawn(move || {
        netns::enter(&name).unwrap();
        TunIo::open_queues(TUN, shards, false).unwrap()
    })
    .join()
    .unwrap();
    assert_eq!(queues.len(), shards);
    kernel_side_up(ns);
    let mut first = Host::with_seed(SearchPath::default(), seed);
    first.register_builtins();
    first.add_addr(PLUGTCP_V4.parse().unwrap());
    let mut hosts: Vec<Host> = (1..shards)
        .map(|i| {
            first.new_shard(
                plugtcp_host::secrets::Entropy::Seed(seed + i as u64),
                shards,
                i,
            )
        })
        .collect();
    hosts.insert(0, first);
    let ios = queues
        .into_iter()
        .map(|q| Box::new(q) as Box<dyn PacketIo + Send>)
        .collect();
    plugtcp_io::runtime::Runtime::sharded(hosts, ios).unwrap()
}

/// Python's asyncio opening `n` concurrent connections to `PLUGTCP_V4:port`, each sending
/// 64 KiB (a pattern of its own) and half-closing, then checking that what comes back is
/// what it sent. Prints OK.
fn echo_clients_script(n: usize, port: u16) -> String {
    format!(
        r#"
import asyncio
N, LEN = {n}, 64 * 1024
async def one(i):
    data = bytes((i * 131 + j * 7) % 256 for j in range(LEN))
    r, w = await asyncio.open_connection("{PLUGTCP_V4}", {port}, limit=1 << 20)
    async def send():
        w.write(data)
        await w.drain()
        w.write_eof()
    t = asyncio.create_task(send())
    got = await asyncio.wait_for(r.read(-1), 120)
    await t
    w.close()
    return got == data
async def main():
    ok = await asyncio.gather(*(one(i) for i in range(N)))
    print("OK" if all(ok) else "MISMATCH %d" % ok.count(False))
asyncio.run(main())
"#
    )
}

/// The blocking API on a host of two shards (a multi-queue TUN device): a thread per
/// connection echoes 64 KiB for each of 1,000 concurrent kernel connections, every byte
/// checked; both shards take connections.
#[test]
fn blocking_echo_server_on_two_shards_serves_a_thousand_kernel_connections() {
    use plugtcp_host::usrreq::Shutdown;
    use plugtcp_io::runtime::Side;
    use std::io::{Read, Write};
    let Some(ns) = make_ns("rt-block") else {
        return;
    };
    let rt = runtime_in_shards(&ns, 19, 2);
    let listener = rt
        .listen(
            Side::A,
            SocketAddr::new(PLUGTCP_V4.parse().unwrap(), 7),
            1024,
        )
        .unwrap();
    let server = std::thread::spawn(move || {
        let mut per_shard = [0usize; 2];
        let mut workers = Vec::new();
        for _ in 0..1000 {
            let mut s = listener.accept().unwrap();
            per_shard[s.shard()] += 1;
            let w = std::thread::Builder::new()
                .stack_size(128 << 10)
                .spawn(move || {
                    let mut buf = vec![0u8; 16 * 1024];
                    loop {
                        match s.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                if s.write_all(&buf[..n]).is_err() {
                                    break;
                                }
                            }
                        }
                    }
                    let _ = s.shutdown(Shutdown::Write);
                })
                .unwrap();
            workers.push(w);
        }
        workers.into_iter().for_each(|w| w.join().unwrap());
        per_shard
    });
    let out = ns.exec(&["python3", "-c", &echo_clients_script(1000, 7)]);
    let csum_errors = ns.csum_errors();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.trim() == "OK",
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let per_shard = server.join().unwrap();
    assert!(per_shard.iter().all(|&n| n > 0), "{per_shard:?}");
    assert_eq!(csum_errors, 0, "TcpInCsumErrors");
}

/// An application's own tokio server on plugtcp over a TUN device (`Runtime::on`): 1,000
/// concurrent connections from the kernel each echo 64 KiB, every byte checked.
#[test]
fn tokio_echo_server_on_tun_serves_a_thousand_kernel_connections() {
    use plugtcp_io::runtime::Side;
    let Some(ns) = make_ns("rt-echo") else {
        return;
    };
    let rt = runtime_in_shards(&ns, 13, 2);
    let listener = rt
        .listen(
            Side::A,
            SocketAddr::new(PLUGTCP_V4.parse().unwrap(), 7),
            1024,
        )
        .unwrap();
    let server = std::thread::spawn(move || {
        let exec = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        exec.block_on(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            // Until the runtime goes away (ENETDOWN).
            while let Ok(s) = listener.accept_async().await {
                tokio::spawn(async move {
                    let (mut rd, mut wr) = tokio::io::split(s);
                    let mut buf = vec![0u8; 16 * 1024];
                    loop {
                        match rd.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                if wr.write_all(&buf[..n]).await.is_err() {
                                    break;
                                }
                            }
                        }
                    }
                    let _ = wr.shutdown().await;
                });
            }
        });
    });
    let script = echo_clients_script(1000, 7);
    let out = ns.exec(&["python3", "-c", &script]);
    let csum_errors = ns.csum_errors();
    drop(rt);
    server.join().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.trim() == "OK",
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(csum_errors, 0, "TcpInCsumErrors");
}

/// examples/tokio-echo, as its README runs it: started inside a namespace on its own TUN
/// device, it serves `curl` (HTTP on port 80) and `nc` (echo on port 7) from the kernel.
#[test]
fn tokio_example_serves_curl_and_nc() {
    let Some(ns) = make_ns("tokio-ex") else {
        return;
    };
    let exe = common::target_dir().join("plugtcp-tokio-echo");
    assert!(exe.exists(), "{}: build the workspace first", exe.display());
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns.name()])
        .arg(&exe)
        .args(["--tun", TUN, "--addr", PLUGTCP_V4])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Its first line says the device is up and the services listen.
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert!(line.contains("serving echo"), "{line}");
    kernel_side_up(&ns);
    let curl = ns.exec(&[
        "curl",
        "-s",
        "--max-time",
        "20",
        &format!("http://{PLUGTCP_V4}/hello"),
    ]);
    let data: String = (0..20_000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let nc = ns.exec(&[
        "sh",
        "-c",
        &format!("printf '%s' '{data}' | nc -N -w 20 {PLUGTCP_V4} 7"),
    ]);
    let _ = child.kill();
    let _ = child.wait();
    let body = String::from_utf8_lossy(&curl.stdout);
    assert_eq!(
        body, "hello from plugtcp: GET /hello HTTP/1.1\n",
        "curl: {curl:?}"
    );
    assert_eq!(
        String::from_utf8_lossy(&nc.stdout),
        data,
        "nc: {:?}",
        nc.stderr
    );
}

/// The TUN device removed under a running runtime ends it: the driver stops with one line,
/// and a blocked accept returns ENETDOWN instead of waiting forever.
#[test]
fn tun_removed_under_the_runtime_ends_it() {
    use plugtcp_io::runtime::Side;
    let Some(ns) = make_ns("rt-gone") else {
        return;
    };
    let rt = runtime_in(&ns, 17);
    let listener = rt
        .listen(Side::A, SocketAddr::new(PLUGTCP_V4.parse().unwrap(), 7), 8)
        .unwrap();
    let waiter = std::thread::spawn(move || listener.accept().map(|_| ()));
    std::thread::sleep(Duration::from_millis(100));
    ns.must(&["ip", "link", "del", TUN]);
    let t0 = Instant::now();
    while !waiter.is_finished() {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "accept still blocked"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let e = waiter.join().unwrap().unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENETDOWN), "{e}");
}

/// examples/tokio-client, as its README runs it: inside a namespace, the client on plugtcp
/// fetches a 1 MiB random body from a kernel HTTP server (a std TcpListener) and writes it to
/// stdout, digest checked. Twice: on a device made and configured beforehand (`ip tuntap
/// add`, the README's steps), and with --stack rack --cc cubic on a device the client makes
/// itself, waiting until the test brings the kernel side up.
#[test]
fn tokio_client_example_fetches_over_http() {
    use std::io::{BufRead, BufReader, Read, Write};
    let Some(ns) = make_ns("tokio-cl") else {
        return;
    };
    let exe = common::target_dir().join("plugtcp-tokio-client");
    assert!(exe.exists(), "{}: build the workspace first", exe.display());
    let body = payload(1 << 20, 29);
    let want = Sha256::digest(&body);
    // The kernel's HTTP server on port 8000 at every address of the namespace; each request
    // head goes back to the test.
    let (heads_tx, heads) = mpsc::channel::<String>();
    let name = ns.name().to_string();
    let served = body.clone();
    std::thread::spawn(move || {
        netns::enter(&name).unwrap();
        let l = std::net::TcpListener::bind(("0.0.0.0", 8000)).unwrap();
        heads_tx.send(String::new()).unwrap();
        while let Ok((mut s, _)) = l.accept() {
            let mut head = Vec::new();
            let mut b = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut b) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&b[..n]),
                }
            }
            let resp = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n",
                served.len()
            );
            let _ = s
                .write_all(resp.as_bytes())
                .and_then(|_| s.write_all(&served));
            let _ = heads_tx.send(String::from_utf8_lossy(&head).into_owned());
        }
    });
    assert_eq!(heads.recv().unwrap(), "", "server listening");
    let client = |args: &[&str]| {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns.name(), "timeout", "60"])
            .arg(&exe)
            .args(args);
        c
    };
    let check = |what: &str, out: &Output, stderr: &str, kernel: &str, stack_cc: &str| {
        assert!(out.status.success(), "{what}: {:?}: {stderr}", out.status);
        assert_eq!(out.stdout.len(), body.len(), "{what}: {stderr}");
        assert_eq!(Sha256::digest(&out.stdout), want, "{what}: body digest");
        assert!(stderr.contains(stack_cc), "{what}: {stderr}");
        assert!(
            stderr.contains("200 OK, 1048576 bytes of body"),
            "{what}: {stderr}"
        );
        let head = heads.recv_timeout(Duration::from_secs(10)).unwrap();
        assert!(
            head.starts_with("GET /blob HTTP/1.1\r\n")
                && head.contains(&format!("Host: {kernel}:8000\r\n")),
            "{what}: {head:?}"
        );
    };

    // The README's steps: the device made and up first, the client attaches to it.
    ns.must(&["ip", "tuntap", "add", "mode", "tun", "name", TUN]);
    kernel_side_up(&ns);
    let url = format!("http://{KERNEL_V4}:8000/blob");
    let out = client(&["--tun", TUN, "--addr", PLUGTCP_V4, &url])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    check(
        "made first",
        &out,
        &stderr,
        KERNEL_V4,
        "(stack base, cc newreno)",
    );

    // The client makes the device and waits for the kernel side; another subnet, as the
    // first device is still there.
    let (dev, kernel, plugtcp) = ("ptun1", "198.18.1.1", "198.18.1.2");
    let url = format!("http://{kernel}:8000/blob");
    let mut child = client(&[
        "--tun", dev, "--addr", plugtcp, "--stack", "rack", "--cc", "cubic", &url,
    ])
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .spawn()
    .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut stderr = String::new();
    while !stderr.contains("waiting for") {
        let n = err.read_line(&mut stderr).unwrap();
        assert!(n > 0, "the client ended before waiting: {stderr}");
    }
    ns.must(&["ip", "addr", "add", &format!("{kernel}/24"), "dev", dev]);
    ns.must(&["ip", "link", "set", dev, "up"]);
    let out = child.wait_with_output().unwrap();
    err.read_to_string(&mut stderr).unwrap();
    check(
        "made by the client",
        &out,
        &stderr,
        kernel,
        "(stack rack, cc cubic)",
    );
}

/// `plugtcp bench echo` end to end with few round trips: both servers answer every request.
#[test]
fn bench_echo_runs() {
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } != 0 || !Path::new("/dev/net/tun").exists() {
        eprintln!("not root or no /dev/net/tun: skipping");
        return;
    }
    let cfg = plugtcp_cli::bench::echo::EchoConfig {
        clients: 4,
        round_trips: 200,
        warmup: 10,
        size: 64,
    };
    let r = plugtcp_cli::bench::echo::run(&cfg).unwrap();
    for s in [&r.plugtcp, &r.kernel] {
        assert_eq!(s.round_trips, 800, "{r:?}");
        assert!(s.p50_us > 0.0 && s.p50_us <= s.p99_us, "{r:?}");
    }
}

/// `plugtcp serve --shards 2` on a multi-queue TUN device: 32 kernel connections held open
/// to its echo service are spread over both shards; sockstat through the control socket
/// lists every one of them (with its shard), and the Prometheus endpoint counts them once
/// each (the shards' series summed, the listener not doubled).
#[test]
fn serve_with_two_shards_lists_every_connection() {
    use std::io::{BufRead, BufReader};
    let Some(ns) = make_ns("shards") else {
        return;
    };
    ns.must(&["ip", "link", "set", "lo", "up"]);
    let sock = std::env::temp_dir().join(format!("plugtcp-shards-{}.sock", std::process::id()));
    let served = Served::start_with(
        &ns,
        &["--control", sock.to_str().unwrap()],
        &[
            "--io",
            "tun",
            "--tun",
            TUN,
            "--service",
            "echo",
            "--shards",
            "2",
            "--metrics",
            "127.0.0.1:9464",
        ],
    );
    assert_eq!(served.addr, "198.18.0.2:7");
    let script = r#"
import socket, sys
conns = []
for i in range(32):
    s = socket.create_connection(("198.18.0.2", 7), timeout=20)
    s.sendall(b"hello %d\n" % i)
    want = b"hello %d\n" % i
    got = b""
    while len(got) < len(want):
        got += s.recv(100)
    assert got == want, got
    conns.append(s)
print(" ".join(str(s.getsockname()[1]) for s in conns), flush=True)
sys.stdin.read()
"#;
    let mut clients = Command::new("ip")
        .args(["netns", "exec", ns.name(), "python3", "-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(clients.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let mut ports: Vec<u16> = line
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    assert_eq!(ports.len(), 32, "clients: {line:?}");

    let out = common::ctl(&sock, &["sockstat", "--json"]);
    let rows: serde_json::Value = serde_json::from_str(&common::ok(&out)).unwrap();
    let mut listed: Vec<u16> = Vec::new();
    let mut shards = [0usize; 2];
    for r in rows.as_array().unwrap() {
        assert_eq!(r["state"], "ESTABLISHED", "{r}");
        assert_eq!(r["local"], "198.18.0.2:7");
        let remote: SocketAddr = r["remote"].as_str().unwrap().parse().unwrap();
        listed.push(remote.port());
        shards[r["shard"].as_u64().unwrap() as usize] += 1;
    }
    listed.sort_unstable();
    ports.sort_unstable();
    assert_eq!(listed, ports, "sockstat lists every connection once");
    assert!(
        shards.iter().all(|&n| n > 0),
        "both shards carry connections: {shards:?}"
    );

    // The exporter publishes every second: wait for the summed gauges.
    let deadline = Instant::now() + Duration::from_secs(10);
    let metrics = loop {
        let m = ns.exec(&["curl", "-s", "http://127.0.0.1:9464/metrics"]);
        let text = String::from_utf8_lossy(&m.stdout).into_owned();
        if text.lines().any(|l| l == "plugtcp_tcp_curr_estab 32") || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let value = |name: &str| {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok())
    };
    assert_eq!(value("plugtcp_tcp_curr_estab"), Some(32.0), "{metrics}");
    assert_eq!(
        value("plugtcp_tcp_connection_states{state=\"LISTEN\"}"),
        Some(1.0)
    );
    assert_eq!(value("plugtcp_tcp_passive_opens_total"), Some(32.0));

    drop(clients.stdin.take());
    let _ = clients.wait();
    let status = served.stop();
    assert!(status.success(), "serve exited with {status}");
}

/// `plugtcp serve --service forward --transparent`: a terminating proxy. In the proxy's
/// namespace, what curl sends from 198.18.0.1 is routed into the TUN device (policy
/// routing); plugtcp accepts the connection to 203.0.113.10:80, an address it does not own,
/// and forwards it through the kernel to that destination, a python HTTP server in a second
/// namespace behind a veth pair. The 8 MiB download's digest is intact.
#[test]
fn transparent_forward_of_a_download() {
    let Some(proxy) = make_ns("tproxy") else {
        return;
    };
    let Some(origin) = make_ns("origin") else {
        return;
    };
    let (veth_p, veth_o) = (
        format!("tpp{}", std::process::id() % 100_000),
        format!("tpo{}", std::process::id() % 100_000),
    );
    proxy.must(&["ip", "link", "set", "lo", "up"]);
    origin.must(&["ip", "link", "set", "lo", "up"]);
    proxy.must(&[
        "ip", "link", "add", &veth_p, "type", "veth", "peer", "name", &veth_o,
    ]);
    proxy.must(&["ip", "link", "set", &veth_o, "netns", origin.name()]);
    proxy.must(&["ip", "addr", "add", "198.19.0.1/24", "dev", &veth_p]);
    proxy.must(&["ip", "link", "set", &veth_p, "up"]);
    origin.must(&["ip", "addr", "add", "198.19.0.2/24", "dev", &veth_o]);
    origin.must(&["ip", "addr", "add", "203.0.113.10/32", "dev", "lo"]);
    origin.must(&["ip", "link", "set", &veth_o, "up"]);
    // (No route back to 198.18.0.0/24: only the proxy's own connection, from 198.19.0.1,
    // can reach the origin, so the download cannot bypass plugtcp.)
    // The proxy's own connections reach the origin through the veth.
    proxy.must(&["ip", "route", "add", "203.0.113.0/24", "via", "198.19.0.2"]);
    for conf in ["all", "default"] {
        proxy.must(&[
            "sysctl",
            "-qw",
            &format!("net.ipv4.conf.{conf}.rp_filter=0"),
        ]);
    }

    let root = std::env::temp_dir().join(format!("plugtcp-tproxy-{}", std::process::id()));
    std::fs::create_dir_all(&root).unwrap();
    let want = write_file(&root.join("file"), 8 << 20);
    let mut http = Command::new("ip")
        .args([
            "netns",
            "exec",
            origin.name(),
            "python3",
            "-m",
            "http.server",
        ])
        .args(["80", "--bind", "203.0.113.10", "--directory"])
        .arg(&root)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_listening(&origin, 80);

    let served = Served::start(
        &proxy,
        &[
            "--io",
            "tun",
            "--tun",
            TUN,
            "--service",
            "forward",
            "--transparent",
            "--cc",
            "newreno",
        ],
    );
    // What the client sends from the device's kernel address goes into the device.
    proxy.must(&["ip", "rule", "add", "from", KERNEL_V4, "lookup", "100"]);
    proxy.must(&["ip", "route", "add", "default", "dev", TUN, "table", "100"]);
    let out = proxy.exec(&[
        "curl",
        "-s",
        "--max-time",
        "60",
        "--interface",
        KERNEL_V4,
        "http://203.0.113.10/file",
    ]);
    let status = served.stop();
    let _ = http.kill();
    let _ = http.wait();
    std::fs::remove_dir_all(&root).unwrap();
    assert!(
        out.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout.len(), 8 << 20);
    assert!(Sha256::digest(&out.stdout).to_vec() == want, "digest");
    assert!(status.success(), "serve exited with {status}");
}

/// TCP-MD5 with the Linux kernel (its TCP_MD5SIG, `struct tcp_md5sig`), both ways: a kernel
/// client with the key gets 256 KiB echoed by plugtcp's listener; plugtcp's client gets
/// 256 KiB echoed by a kernel server; a kernel client with a wrong key never connects (its
/// SYNs are dropped and counted by plugtcp, never answered).
/// A client's side of one request: sends all of the data once connected, half-closes,
/// and collects the reply.
#[derive(Default)]
struct Exchange {
    sent: usize,
    shut: bool,
    reply: Vec<u8>,
    done: bool,
}

impl Exchange {
    /// One poll of the connection `id`; true once, when the reply has ended.
    fn poll(&mut self, host: &mut Host, id: plugtcp_host::conn_table::ConnId, data: &[u8]) -> bool {
        if self.done || !host.state(id).is_some_and(|s| s.have_established()) {
            return false;
        }
        while self.sent < data.len() {
            match host.send(id, &data[self.sent..]) {
                Ok(k) if k > 0 => self.sent += k,
                _ => break,
            }
        }
        if self.sent == data.len() && !self.shut {
            self.shut = host
                .shutdown(id, plugtcp_host::usrreq::Shutdown::Write)
                .is_ok();
        }
        let mut buf = [0u8; 65536];
        while let Ok(k) = host.recv(id, &mut buf) {
            if k == 0 {
                self.done = true;
                return true;
            }
            self.reply.extend_from_slice(&buf[..k]);
        }
        false
    }
}

/// Linux's TCP_MD5SIG from Python (`struct tcp_md5sig`: the peer, the key), for the
/// scripts below (they import socket and struct).
const PY_MD5SIG: &str = r#"TCP_MD5SIG = 14
def md5sig(s, peer, key):
    sa = struct.pack("=H", socket.AF_INET) + struct.pack("!H", 0) + socket.inet_aton(peer)
    s.setsockopt(socket.IPPROTO_TCP, TCP_MD5SIG,
                 sa.ljust(128, b"\0") + struct.pack("=BBHi", 0, 0, len(key), 0) + key.ljust(80, b"\0"))
"#;

/// Runs python3 `script` in `ns`: it prints LISTENING once ready, then `go` runs, then the
/// script prints its result line and ends. Returns the result line, whether the script
/// succeeded, and what it wrote to stderr.
fn python_in(ns: &Netns, script: &str, go: impl FnOnce()) -> (String, bool, String) {
    use std::io::{BufRead, Read};
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns.name(), "python3", "-c", script])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().and_then(Result::ok).unwrap_or_default();
    assert_eq!(first, "LISTENING");
    go();
    let last = lines.next().and_then(Result::ok).unwrap_or_default();
    let ok = child.wait().unwrap().success();
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    (last, ok, err)
}

#[test]
fn tcp_md5_with_the_kernel_both_ways() {
    use plugtcp_abi::sockopt::{IPPROTO_TCP, TCP_MD5SIG};
    use std::sync::Mutex;
    let Some(ns) = make_ns("md5") else {
        return;
    };
    let stop = Arc::new(AtomicBool::new(false));
    let go = Arc::new(AtomicBool::new(false));
    let client_result: Arc<Mutex<Option<bool>>> = Arc::default();
    let stats: Arc<Mutex<plugtcp_host::tcpmd5::Md5Stats>> = Arc::default();
    let (go2, result2, stats2) = (go.clone(), client_result.clone(), stats.clone());
    let on = 1i32.to_ne_bytes();
    let plugtcp = run_plugtcp(&ns, stop.clone(), None, false, move |host| {
        let kernel: IpAddr = KERNEL_V4.parse().unwrap();
        host.md5_key_set(kernel, None, b"secret").unwrap();
        let l = host
            .listen(SocketAddr::new(PLUGTCP_V4.parse().unwrap(), 179), 16)
            .unwrap();
        host.listener_setsockopt(l, IPPROTO_TCP, TCP_MD5SIG, &on)
            .unwrap();
        let mut echo = SimpleServer::new(Simple::Echo, l);
        let data = payload(256 << 10, 0x3d5);
        let (mut c, mut x) = (None, Exchange::default());
        Box::new(move |host: &mut Host| {
            echo.poll(host);
            *stats2.lock().unwrap() = host.md5_stats();
            if c.is_none() && go2.load(Ordering::Relaxed) {
                let id = host.socket(SocketAddr::new(kernel, 1790), None).unwrap();
                host.setsockopt(id, IPPROTO_TCP, TCP_MD5SIG, &on).unwrap();
                host.start_connect(id).unwrap();
                c = Some(id);
            }
            if let Some(id) = c {
                if x.poll(host, id, &data) {
                    *result2.lock().unwrap() = Some(x.reply == data);
                }
            }
        })
    });
    let script = format!(
        r#"
import socket, struct, sys, threading
{PY_MD5SIG}def read_all(s):
    got = bytearray()
    while True:
        b = s.recv(65536)
        if not b:
            return bytes(got)
        got += b
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
md5sig(srv, "{PLUGTCP_V4}", b"secret")
srv.bind(("{KERNEL_V4}", 1790))
srv.listen(1)
def serve():
    c, _ = srv.accept()
    c.settimeout(60)
    c.sendall(read_all(c))
    c.close()
t = threading.Thread(target=serve)
t.start()
print("LISTENING", flush=True)
data = bytes((i * 7 + i // 251) % 256 for i in range(1 << 18))
s = socket.socket()
md5sig(s, "{PLUGTCP_V4}", b"secret")
s.settimeout(60)
s.connect(("{PLUGTCP_V4}", 179))
s.sendall(data)
s.shutdown(socket.SHUT_WR)
echoed = read_all(s) == data
s.close()
w = socket.socket()
md5sig(w, "{PLUGTCP_V4}", b"wrong key")
w.settimeout(3)
try:
    w.connect(("{PLUGTCP_V4}", 179))
    refused = False
except socket.timeout:
    refused = True
t.join(60)
print("OK" if echoed and refused and not t.is_alive() else "FAIL echoed=%s refused=%s" % (echoed, refused), flush=True)
"#
    );
    let (last, ok, err) = python_in(&ns, &script, || go.store(true, Ordering::Relaxed));
    let deadline = Instant::now() + Duration::from_secs(30);
    while client_result.lock().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let csum_errors = ns.csum_errors();
    stop.store(true, Ordering::Relaxed);
    plugtcp.join().unwrap();
    assert!(ok && last == "OK", "{last} {err}");
    assert_eq!(
        *client_result.lock().unwrap(),
        Some(true),
        "plugtcp's client got its bytes back from the kernel"
    );
    let st = *stats.lock().unwrap();
    assert!(st.rcv_badsig >= 1, "the wrong key's SYNs: {st:?}");
    assert!(st.rcv_goodsig > 100, "{st:?}");
    assert_eq!(csum_errors, 0, "TcpInCsumErrors");
}

/// TCP Fast Open with the kernel (net.ipv4.tcp_fastopen=3 in the namespace), on a path of
/// 100 ms round trip (plugtcp's side delays 50 ms each way). A kernel client sends its
/// request with MSG_FASTOPEN to a plugtcp server: the first time it gets a cookie and the
/// answer takes two round trips, the second time the request rides in the SYN and the
/// answer comes after one. plugtcp's client does the same to a kernel TFO server, which
/// reports (TCPI_OPT_SYN_DATA) that the second connection's SYN carried the data.
#[test]
fn tcp_fast_open_with_the_kernel_both_ways() {
    use plugtcp_abi::sockopt::{IPPROTO_TCP, TCP_FASTOPEN};
    use std::sync::Mutex;
    let Some(ns) = make_ns("tfo") else {
        return;
    };
    ns.must(&["sysctl", "-qw", "net.ipv4.tcp_fastopen=3"]);
    let stop = Arc::new(AtomicBool::new(false));
    let go = Arc::new(AtomicBool::new(false));
    let answers: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let stats: Arc<Mutex<plugtcp_host::fastopen::FastopenStats>> = Arc::default();
    let (go2, answers2, stats2) = (go.clone(), answers.clone(), stats.clone());
    let delay = SimLinkConfig {
        delay_ns: 50_000_000,
        ..SimLinkConfig::default()
    };
    let plugtcp = run_plugtcp(&ns, stop.clone(), Some(delay), false, move |host| {
        for (k, v) in [
            ("net.inet.tcp.fastopen.server_enable", "1"),
            ("net.inet.tcp.fastopen.client_enable", "1"),
        ] {
            host.sysctl_set(k, v).unwrap();
        }
        let l = host
            .listen(SocketAddr::new(PLUGTCP_V4.parse().unwrap(), 8081), 16)
            .unwrap();
        host.listener_setsockopt(l, IPPROTO_TCP, TCP_FASTOPEN, &16i32.to_ne_bytes())
            .unwrap();
        // The server answers each request with "re:" and the request, then closes.
        let mut served = Vec::new();
        let kernel = SocketAddr::new(KERNEL_V4.parse().unwrap(), 8082);
        let (mut client, mut got, mut round) = (None, Vec::new(), 0);
        Box::new(move |host: &mut Host| {
            *stats2.lock().unwrap() = host.fastopen_stats();
            while let Ok(id) = host.accept(l) {
                served.push(id);
            }
            served.retain(|&id| {
                let mut buf = [0u8; 256];
                match host.recv(id, &mut buf) {
                    Ok(n) if n > 0 => {
                        let mut answer = b"re:".to_vec();
                        answer.extend_from_slice(&buf[..n]);
                        let _ = host.send(id, &answer);
                        host.close(id);
                        false
                    }
                    Ok(_) => {
                        host.close(id);
                        false
                    }
                    Err(_) => true,
                }
            });
            // plugtcp's client: two requests, one connection each, one after the other.
            if !go2.load(Ordering::Relaxed) || round >= 2 {
                return;
            }
            let id = *client.get_or_insert_with(|| {
                let id = host.open(false).unwrap();
                let req = format!("plugtcp {round}");
                host.connect_with_data(id, kernel, None, req.as_bytes(), true, false)
                    .unwrap();
                id
            });
            let mut buf = [0u8; 256];
            match host.recv(id, &mut buf) {
                Ok(0) => {
                    answers2.lock().unwrap().push(std::mem::take(&mut got));
                    host.close(id);
                    client = None;
                    round += 1;
                }
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(_) => {}
            }
        })
    });
    let script = format!(
        r#"
import socket, threading, time
TCP_FASTOPEN, MSG_FASTOPEN, TCPI_OPT_SYN_DATA = 23, 0x20000000, 32
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.setsockopt(socket.IPPROTO_TCP, TCP_FASTOPEN, 16)
srv.bind(("{KERNEL_V4}", 8082))
srv.listen(16)
syn_data = []
def serve():
    for _ in range(2):
        c, _ = srv.accept()
        c.settimeout(30)
        info = c.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
        syn_data.append(bool(info[5] & TCPI_OPT_SYN_DATA))
        req = c.recv(256)
        c.sendall(b"kernel re:" + req)
        c.close()
t = threading.Thread(target=serve)
t.start()
print("LISTENING", flush=True)
times = []
for i in range(2):
    s = socket.socket()
    t0 = time.monotonic()
    # Blocking: without a cookie the kernel connects first, then sends.
    s.sendto(b"kernel %d" % i, MSG_FASTOPEN, ("{PLUGTCP_V4}", 8081))
    s.settimeout(30)
    got = s.recv(256)
    times.append(time.monotonic() - t0)
    assert got == b"re:kernel %d" % i, got
    s.close()
t.join(60)
print("OK %.3f %.3f %s" % (times[0], times[1], syn_data), flush=True)
"#
    );
    let (last, ok, err) = python_in(&ns, &script, || go.store(true, Ordering::Relaxed));
    let deadline = Instant::now() + Duration::from_secs(30);
    while answers.lock().unwrap().len() < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    plugtcp.join().unwrap();
    assert!(ok && last.starts_with("OK "), "{last} {err}");
    eprintln!("kernel client's requests (s) and kernel server's SYN data: {last}");
    let fields: Vec<&str> = last.split_whitespace().collect();
    let (first_rt, second_rt): (f64, f64) =
        (fields[1].parse().unwrap(), fields[2].parse().unwrap());
    // 100 ms round trips: two of them without a cookie, one with.
    assert!(first_rt >= 0.19, "first request took {first_rt} s");
    assert!(
        second_rt < 0.15,
        "the TFO request took {second_rt} s: {last}"
    );
    assert!(
        last.ends_with("[False, True]"),
        "kernel server's TCPI_OPT_SYN_DATA: {last}"
    );
    assert_eq!(
        *answers.lock().unwrap(),
        vec![
            b"kernel re:plugtcp 0".to_vec(),
            b"kernel re:plugtcp 1".to_vec()
        ]
    );
    let st = *stats.lock().unwrap();
    assert_eq!(st.passive, 1, "one connection opened with SYN data: {st:?}");
    assert_eq!(st.passive_fail, 1, "one cookie request answered: {st:?}");
}

/// Path MTU discovery through a Linux router: plugtcp on the TUN device sends 4 MiB,
/// signed with TCP-MD5, to a kernel server in a second namespace behind a veth link of
/// MTU 1200. The router answers the first full-sized packets with ICMP "fragmentation
/// needed" (MTU 1200); plugtcp lowers its MSS, sends again, and the transfer completes:
/// the server's SHA-256 of what it read is plugtcp's, every segment signed right.
#[test]
fn icmp_lowered_path_mtu_keeps_a_signed_transfer_going() {
    use plugtcp_abi::sockopt::{IPPROTO_TCP, TCP_MD5SIG};
    use std::sync::Mutex;
    let Some(router) = make_ns("pmtu") else {
        return;
    };
    let Ok(server) = Netns::create(&format!("plugtcp-pmtu-srv-{}", std::process::id())) else {
        eprintln!("no second namespace: skipping");
        return;
    };
    const SERVER_V4: &str = "198.19.0.2";
    let stop = Arc::new(AtomicBool::new(false));
    /// The server's reply, the digest plugtcp expects, the final MSS, ICMP errors acted on.
    type Outcome = (String, String, u32, u64);
    let result: Arc<Mutex<Option<Outcome>>> = Arc::default();
    let result2 = result.clone();
    let data = payload(4 << 20, 0x9e37);
    let want: String = Sha256::digest(&data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let go = Arc::new(AtomicBool::new(false));
    let go2 = go.clone();
    let plugtcp = run_plugtcp(&router, stop.clone(), None, false, move |host| {
        let srv: IpAddr = SERVER_V4.parse().unwrap();
        host.md5_key_set(srv, None, b"pmtu secret").unwrap();
        let on = 1i32.to_ne_bytes();
        let (mut c, mut x) = (None, Exchange::default());
        Box::new(move |host: &mut Host| {
            if c.is_none() && go2.load(Ordering::Relaxed) {
                let id = host.socket(SocketAddr::new(srv, 8179), None).unwrap();
                host.setsockopt(id, IPPROTO_TCP, TCP_MD5SIG, &on).unwrap();
                host.start_connect(id).unwrap();
                c = Some(id);
            }
            if let Some(id) = c {
                if x.poll(host, id, &data) {
                    let mss = host.tcpcb(id).map_or(0, |t| t.t_maxseg);
                    *result2.lock().unwrap() = Some((
                        String::from_utf8_lossy(&x.reply).into_owned(),
                        want.clone(),
                        mss,
                        host.stats.icmp_errors,
                    ));
                }
            }
        })
    });
    // The router: forwards between the TUN device and a veth link of MTU 1200.
    router.must(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    router.must(&[
        "ip",
        "link",
        "add",
        "pv0",
        "mtu",
        "1200",
        "type",
        "veth",
        "peer",
        "name",
        "pv1",
        "netns",
        server.name(),
    ]);
    router.must(&["ip", "addr", "add", "198.19.0.1/24", "dev", "pv0"]);
    router.must(&["ip", "link", "set", "pv0", "up"]);
    server.ok(&["ip", "link", "set", "lo", "up"]).unwrap();
    server
        .ok(&[
            "ip",
            "addr",
            "add",
            &format!("{SERVER_V4}/24"),
            "dev",
            "pv1",
        ])
        .unwrap();
    // The server's side of the link takes 1500-byte packets: only the router's egress is
    // narrow, so the server offers MSS 1460 and the path, not the peer, must say less.
    server
        .ok(&["ip", "link", "set", "pv1", "mtu", "1500", "up"])
        .unwrap();
    server
        .ok(&["ip", "route", "add", "default", "via", "198.19.0.1"])
        .unwrap();
    let script = format!(
        r#"
import hashlib, socket, struct
{PY_MD5SIG}srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
md5sig(srv, "{PLUGTCP_V4}", b"pmtu secret")
srv.bind(("{SERVER_V4}", 8179))
srv.listen(1)
print("LISTENING", flush=True)
c, _ = srv.accept()
c.settimeout(60)
h = hashlib.sha256()
n = 0
while True:
    b = c.recv(65536)
    if not b:
        break
    h.update(b)
    n += len(b)
c.sendall(h.hexdigest().encode())
c.close()
print("OK", n, flush=True)
"#
    );
    let (last, ok, err) = python_in(&server, &script, || go.store(true, Ordering::Relaxed));
    let deadline = Instant::now() + Duration::from_secs(30);
    while result.lock().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    plugtcp.join().unwrap();
    assert!(ok, "{last} {err}");
    assert_eq!(last, format!("OK {}", 4 << 20), "{err}");
    let (reply, want, mss, icmp) = result.lock().unwrap().clone().expect("no reply");
    eprintln!("MSS after PMTUD {mss}, ICMP errors acted on {icmp}");
    assert_eq!(reply, want, "the server's SHA-256 of what it read");
    assert!(icmp >= 1, "ICMP fragmentation needed acted on");
    assert!(mss <= 1200 - 40, "MSS {mss} fits the 1200-byte link");
}

/// curl (the kernel's TCP) downloads 16 MiB from plugtcp's HTTP server running BBR, once as
/// the CC module (on base) and once as the bbr block: the host paces the download over the
/// TUN device (paced bursts counted), every byte intact, no checksum error.
#[test]
fn curl_downloads_from_bbr_paced_over_tun() {
    for (tag, sysctl) in [
        ("bbr-cc", "net.inet.tcp.cc.algorithm"),
        ("bbr-blk", "net.inet.tcp.functions_default"),
    ] {
        let Some(ns) = make_ns(tag) else {
            return;
        };
        if Command::new("curl").arg("--version").output().is_err() {
            eprintln!("curl not installed: skipping");
            return;
        }
        let dir = std::env::temp_dir().join(format!("plugtcp-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let len = 16 << 20;
        let want = write_file(&dir.join("big.bin"), len);
        let stop = Arc::new(AtomicBool::new(false));
        let paced = Arc::new(std::sync::Mutex::new(Default::default()));
        let seen = paced.clone();
        let root = dir.clone();
        let server = run_plugtcp(&ns, stop.clone(), None, false, move |host| {
            host.sysctl_set(sysctl, "bbr").unwrap();
            let ip: IpAddr = PLUGTCP_V4.parse().unwrap();
            let l = host.listen(SocketAddr::new(ip, 8080), 64).unwrap();
            let mut http = Http::new(root, l);
            Box::new(move |host: &mut Host| {
                http.poll(host);
                *seen.lock().unwrap() = host.worker.pacing;
            })
        });
        let out_file = dir.join("out.bin");
        let out = ns.exec(&[
            "curl",
            "-sS",
            "--max-time",
            "120",
            "-o",
            out_file.to_str().unwrap(),
            &format!("http://{PLUGTCP_V4}:8080/big.bin"),
        ]);
        let got = std::fs::read(&out_file).unwrap_or_default();
        let csum_errors = ns.csum_errors();
        stop.store(true, Ordering::Relaxed);
        server.join().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let paced: plugtcp_host::pacing::PacingStats = *paced.lock().unwrap();
        assert!(
            out.status.success(),
            "{tag}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(got.len(), len, "{tag}");
        assert!(
            Sha256::digest(&got).to_vec() == want,
            "{tag}: SHA-256 differs"
        );
        assert_eq!(csum_errors, 0, "{tag}: TcpInCsumErrors");
        // 16 MiB went out in paced bursts (each at most the send quantum, 64 KiB).
        assert!(paced.bytes >= len as u64, "{tag}: {paced:?}");
        assert!(
            paced.bursts >= (len / (64 << 10)) as u64,
            "{tag}: {paced:?}"
        );
        eprintln!("{tag}: {paced:?}");
    }
}
