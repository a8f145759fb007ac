//! The `udp` backend: two plugtcp hosts, each in its own thread on the wall clock, talk TCP
//! over UDP on 127.0.0.1 (no privileges needed).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use plugtcp_abi::TcpState;
use plugtcp_host::registry::loader::SearchPath;
use plugtcp_host::Host;
use plugtcp_io::driver::{Faulty, IoHost, PacketIo};
use plugtcp_io::sim::SimLinkConfig;
use plugtcp_io::udp::UdpIo;
use sha2::{Digest, Sha256};

mod common;
use common::payload;
use plugtcp_cli::builtins::BuiltinHost as _;

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn host() -> Host {
    let mut h = Host::with_seed(SearchPath::default(), 7);
    h.register_builtins();
    h.add_addr(LOCALHOST);
    h
}

/// Each side's UDP backend, wrapped in fault injection when `faults` is given (the same
/// conditions on every pipe, seeded differently).
fn backend(
    local: SocketAddr,
    peer: Option<u16>,
    faults: Option<&SimLinkConfig>,
    seed: u64,
) -> (Box<dyn PacketIo>, u16) {
    let io = UdpIo::bind(local, peer, 1500).unwrap();
    let port = io.local_addr().unwrap().port();
    let io: Box<dyn PacketIo> = match faults {
        Some(f) => {
            let (mut out, mut inbound) = (f.clone(), f.clone());
            out.seed = seed;
            inbound.seed = seed + 1;
            Box::new(Faulty::new(io, out, inbound))
        }
        None => Box::new(io),
    };
    (io, port)
}

/// `len` bytes from A to B and the FIN back; returns what B read, hashed, and how many.
fn transfer(
    len: usize,
    faults: Option<SimLinkConfig>,
    seconds: u64,
    capture: Option<&std::path::Path>,
) -> (Vec<u8>, usize) {
    transfer_with(len, faults, seconds, capture, false)
}

/// As `transfer`; with `per_connection_port`, A's backend knows no peer port and the
/// connection names it with TCP_REMOTE_UDP_ENCAPS_PORT, set while it is still closed.
fn transfer_with(
    len: usize,
    faults: Option<SimLinkConfig>,
    seconds: u64,
    capture: Option<&std::path::Path>,
    per_connection_port: bool,
) -> (Vec<u8>, usize) {
    let (port_tx, port_rx) = mpsc::channel();
    let f2 = faults.clone();
    let server = std::thread::spawn(move || {
        let (io, port) = backend((LOCALHOST, 0).into(), None, f2.as_ref(), 100);
        port_tx.send(port).unwrap();
        let mut b = IoHost::new(host(), io);
        let lid = b.host.listen((LOCALHOST, 5001).into(), 4).unwrap();
        let (mut s, mut sha, mut got, mut eof) = (None, Sha256::new(), 0usize, false);
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let ok = b
            .run_until(deadline, |h| {
                s = s.or_else(|| h.accept(lid).ok());
                if let Some(s) = s {
                    while let Ok(k) = h.recv_with(s, |run| {
                        sha.update(run);
                        run.len()
                    }) {
                        if k == 0 {
                            eof = true;
                            break;
                        }
                        got += k;
                    }
                }
                eof
            })
            .unwrap();
        if let Some(s) = s {
            b.host.close(s);
        }
        // Let the FIN and the last ACKs go out.
        let _ = b.run_until(Instant::now() + Duration::from_millis(300), |_| false);
        assert!(ok, "server: {got} of {len} bytes by the deadline");
        (sha.finalize().to_vec(), got)
    });
    let port = port_rx.recv().unwrap();
    let data = payload(len, 0x9e37_79b9_7f4a_7c15);
    let default_port = (!per_connection_port).then_some(port);
    let (io, tunnel) = backend((LOCALHOST, 0).into(), default_port, faults.as_ref(), 200);
    let mut a = IoHost::new(host(), io);
    // The backend is this host's tunnel: FreeBSD takes TCP_REMOTE_UDP_ENCAPS_PORT only
    // with net.inet.tcp.udp_tunneling_port set.
    a.host
        .sysctl_set("net.inet.tcp.udp_tunneling_port", &tunnel.to_string())
        .unwrap();
    if let Some(path) = capture {
        a.capture(path).unwrap();
    }
    let server_addr = SocketAddr::new(LOCALHOST, 5001);
    let c = if per_connection_port {
        use plugtcp_abi::sockopt::{IPPROTO_TCP, TCP_REMOTE_UDP_ENCAPS_PORT};
        let c = a.host.socket(server_addr, None).unwrap();
        let v = (port as i32).to_ne_bytes();
        a.host
            .setsockopt(c, IPPROTO_TCP, TCP_REMOTE_UDP_ENCAPS_PORT, &v)
            .unwrap();
        let got = a
            .host
            .getsockopt_int(c, IPPROTO_TCP, TCP_REMOTE_UDP_ENCAPS_PORT);
        assert_eq!(got, Ok(port as i32));
        a.host.start_connect(c).unwrap();
        // Only a closed socket takes it (tcp(4)).
        assert_eq!(
            a.host
                .setsockopt(c, IPPROTO_TCP, TCP_REMOTE_UDP_ENCAPS_PORT, &v),
            Err(plugtcp_abi::Errno::EINVAL)
        );
        c
    } else {
        a.host.connect(server_addr, None).unwrap()
    };
    let (mut sent, mut closed) = (0, false);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let ok = a
        .run_until(deadline, |h| {
            if h.state(c) == Some(TcpState::Established) {
                while sent < len {
                    match h.send(c, &data[sent..]) {
                        Ok(k) => sent += k,
                        Err(_) => break,
                    }
                }
            }
            if sent == len && !closed {
                h.close(c);
                closed = true;
            }
            // Done once B's FIN came back (the slot is freed then).
            closed && h.state(c).is_none_or(|s| s == TcpState::TimeWait)
        })
        .unwrap();
    assert!(ok, "client: sent {sent} of {len}");
    a.finish_capture().unwrap();
    let (digest, got) = server.join().unwrap();
    assert_eq!(
        digest,
        Sha256::digest(&data).to_vec(),
        "delivered bytes differ"
    );
    (digest, got)
}

/// 64 MiB from A to B: B's SHA-256 of what it read is A's.
#[test]
fn two_hosts_transfer_64_mib_over_udp() {
    let (_, got) = transfer(64 << 20, None, 120, None);
    assert_eq!(got, 64 << 20);
}

/// TCP_REMOTE_UDP_ENCAPS_PORT, set on the connection before it starts, is where its
/// segments go (the backend has no peer port of its own); 4 MiB arrive intact.
#[test]
fn remote_udp_encaps_port_per_connection() {
    let (_, got) = transfer_with(4 << 20, None, 60, None, true);
    assert_eq!(got, 4 << 20);
}

/// With 1% loss and reordering injected in both directions (and 1 ms of delay, so that
/// recovery has something to work with), 2 MiB still arrive intact.
#[test]
fn lossy_reordering_udp_transfer_is_intact() {
    let faults = SimLinkConfig {
        delay_ns: 1_000_000,
        loss: 0.01,
        reorder: 0.01,
        reorder_min_ns: 500_000,
        reorder_max_ns: 2_000_000,
        ..SimLinkConfig::default()
    };
    let (_, got) = transfer(2 << 20, Some(faults), 120, None);
    assert_eq!(got, 2 << 20);
}

/// `IoHost::capture` writes what a host sends and receives on any backend as pcap, and
/// tcpdump reads it: the handshake, data to port 5001 and the FINs.
#[test]
fn capture_on_the_udp_backend_reads_back_in_tcpdump() {
    let dir = std::env::temp_dir().join(format!("plugtcp-udp-pcap-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("a.pcap");
    transfer(100_000, None, 30, Some(&path));
    let out = std::process::Command::new("tcpdump")
        .args(["-nn", "-r"])
        .arg(&path)
        .output();
    std::fs::remove_dir_all(&dir).unwrap();
    let Ok(out) = out else {
        eprintln!("tcpdump not installed; skipping");
        return;
    };
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let to_server = text
        .lines()
        .filter(|l| l.contains("> 127.0.0.1.5001:"))
        .count();
    assert!(to_server > 10, "{text}");
    assert!(text.lines().next().unwrap().contains("Flags [S]"), "{text}");
    assert!(text.contains("Flags [F"), "{text}");
}

/// The CLI over the `udp` backend, no privileges: `plugtcp serve --service http` bound to
/// `net.inet.tcp.udp_tunneling_port`, and `plugtcp get` downloading 8 MiB from it; the
/// digest matches and SIGTERM ends the server cleanly.
#[test]
fn serve_and_get_over_udp_from_the_cli() {
    let dir = std::env::temp_dir().join(format!("plugtcp-udp-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let data = payload(8 << 20, 0x9e37_79b9_7f4a_7c15);
    std::fs::write(dir.join("f.bin"), &data).unwrap();
    let port = 20000 + (std::process::id() % 20000) as u16;
    let mut server = common::spawn_udp_http_server(&dir, port, None, &[]);
    let out = dir.join("out.bin");
    let get = common::udp_get_command("f.bin", port, &out)
        .output()
        .unwrap();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(server.id() as i32, libc::SIGTERM) };
    let status = server.wait().unwrap();
    let got = std::fs::read(&out).unwrap_or_default();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(
        get.status.success(),
        "{}",
        String::from_utf8_lossy(&get.stderr)
    );
    assert!(
        Sha256::digest(&got) == Sha256::digest(&data),
        "downloaded bytes differ"
    );
    assert!(status.success(), "serve exited with {status}");
}

/// The application API over a real backend: two runtimes, each a host on its own UDP
/// socket with its own driver thread, TCP over UDP on 127.0.0.1. The server reads each
/// connection to its end and answers with the SHA-256 of what it read; a blocking client
/// and a tokio client each send 4 MiB and check the answer.
#[test]
fn runtime_over_udp_serves_blocking_and_tokio_clients() {
    use plugtcp_host::usrreq::Shutdown;
    use plugtcp_io::runtime::{Runtime, Side};
    use std::io::{Read, Write};
    let b_io = UdpIo::bind((LOCALHOST, 0).into(), None, 1500).unwrap();
    let b_port = b_io.local_addr().unwrap().port();
    let rt_b = Runtime::on(host(), Box::new(b_io)).unwrap();
    // The client side from the builder, as an application would start it.
    let rt_a = Runtime::builder()
        .udp((LOCALHOST, 0).into(), Some(b_port))
        .addr(LOCALHOST)
        .plugins(plugtcp_cli::builtins::plugins())
        .sysctl("cc.algorithm", "cubic")
        .build()
        .unwrap();
    assert_eq!(
        rt_a.with_host(Side::A, |h| h.sysctl.get("net.inet.tcp.cc.algorithm")),
        Ok(plugtcp_host::sysctl::SysctlValue::Str("cubic".into()))
    );
    let addr: SocketAddr = (LOCALHOST, 7).into();
    let listener = rt_b.listen(Side::A, addr, 8).unwrap();
    let server = std::thread::spawn(move || {
        let mut handlers = Vec::new();
        for _ in 0..2 {
            let mut s = listener.accept().unwrap();
            handlers.push(std::thread::spawn(move || {
                let (mut sha, mut buf) = (Sha256::new(), vec![0u8; 64 * 1024]);
                loop {
                    let n = s.read(&mut buf).unwrap();
                    if n == 0 {
                        break;
                    }
                    sha.update(&buf[..n]);
                }
                s.write_all(&sha.finalize()).unwrap();
                s.shutdown(Shutdown::Write).unwrap();
            }));
        }
        handlers.into_iter().for_each(|h| h.join().unwrap());
    });
    let data = payload(4 << 20, 0x5eed);
    let want = Sha256::digest(&data).to_vec();

    // Blocking std::io.
    let mut c = rt_a.connect(Side::A, addr).unwrap();
    c.write_all(&data).unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    let mut got = Vec::new();
    c.read_to_end(&mut got).unwrap();
    assert_eq!(got, want, "blocking client: digest");

    // tokio.
    let c = rt_a.connect(Side::A, addr).unwrap().into_async();
    let exec = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let got = exec.block_on(async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut rd, mut wr) = tokio::io::split(c);
        let writer = async {
            wr.write_all(&data).await.unwrap();
            wr.shutdown().await.unwrap();
        };
        let reader = async {
            let mut got = Vec::new();
            rd.read_to_end(&mut got).await.unwrap();
            got
        };
        tokio::join!(writer, reader).1
    });
    assert_eq!(got, want, "tokio client: digest");
    server.join().unwrap();
}

/// The builder refuses what `plugtcp serve` refuses, naming it, and needs a backend.
#[test]
fn runtime_builder_errors_name_what_failed() {
    use plugtcp_io::runtime::Runtime;
    let err = |b: plugtcp_io::runtime::Builder| match b.build() {
        Ok(_) => panic!("built"),
        Err(e) => e.to_string(),
    };
    let e = err(Runtime::builder()
        .udp((LOCALHOST, 0).into(), None)
        .plugins(plugtcp_cli::builtins::plugins())
        .sysctl("delacktime", "-5"));
    assert!(e.starts_with("sysctl net.inet.tcp.delacktime=-5"), "{e}");
    let e = err(Runtime::builder().plugins(plugtcp_cli::builtins::plugins()));
    assert!(e.contains("no backend"), "{e}");
    let e = err(Runtime::builder().udp((Ipv4Addr::UNSPECIFIED, 0).into(), None));
    assert!(e.starts_with("udp 0.0.0.0:0"), "{e}");
}

/// Two hosts of two shards each over TCP over UDP on 127.0.0.1: 64 concurrent tokio
/// connections each send 256 KiB and get its SHA-256 back. The kernel's SO_REUSEPORT group
/// steers each datagram to the shard that owns its flow (the BPF program on the TCP ports),
/// so no packet is handed between shards; both shards of both hosts carry connections.
#[test]
fn sharded_runtimes_over_udp_steer_every_flow_to_its_shard() {
    use plugtcp_io::runtime::{Runtime, Side};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let b_port = std::net::UdpSocket::bind((LOCALHOST, 0))
        .and_then(|s| s.local_addr())
        .unwrap()
        .port();
    let build = |bind: u16, peer: Option<u16>| {
        Runtime::builder()
            .udp((LOCALHOST, bind).into(), peer)
            .addr(LOCALHOST)
            .plugins(plugtcp_cli::builtins::plugins())
            .shards(2)
            .seed(41)
            .build()
            .unwrap()
    };
    let rt_b = build(b_port, None);
    let rt_a = build(0, Some(b_port));
    assert_eq!((rt_a.shards(), rt_b.shards()), (2, 2));
    let addr: SocketAddr = (LOCALHOST, 9000).into();
    let listener = rt_b.listen(Side::A, addr, 128).unwrap();
    const N: usize = 64;
    let server = std::thread::spawn(move || {
        let exec = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        exec.block_on(async move {
            let mut tasks = Vec::new();
            let mut shards = [0usize; 2];
            for _ in 0..N {
                let s = listener.accept_async().await.unwrap();
                shards[s.get_ref().shard()] += 1;
                tasks.push(tokio::spawn(async move {
                    let (mut rd, mut wr) = s.into_split();
                    let (mut sha, mut buf) = (Sha256::new(), vec![0u8; 32 * 1024]);
                    loop {
                        let n = rd.read(&mut buf).await.unwrap();
                        if n == 0 {
                            break;
                        }
                        sha.update(&buf[..n]);
                    }
                    wr.write_all(&sha.finalize()).await.unwrap();
                    wr.shutdown().await.unwrap();
                }));
            }
            for t in tasks {
                t.await.unwrap();
            }
            shards
        })
    });
    let exec = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let client_shards = exec.block_on(async {
        let mut tasks = Vec::new();
        for i in 0..N {
            let data = payload(256 << 10, 0x5eed + i as u64);
            let s = rt_a.connect_async(Side::A, addr).await.unwrap();
            let shard = s.get_ref().shard();
            tasks.push(async move {
                let want = Sha256::digest(&data).to_vec();
                let (mut rd, mut wr) = s.into_split();
                let writer = async {
                    wr.write_all(&data).await.unwrap();
                    wr.shutdown().await.unwrap();
                };
                let reader = async {
                    let mut got = Vec::new();
                    rd.read_to_end(&mut got).await.unwrap();
                    got
                };
                let got = tokio::join!(writer, reader).1;
                assert_eq!(got, want, "connection {i}: digest");
                shard
            });
        }
        let mut shards = [0usize; 2];
        for s in futures_join_all(tasks).await {
            shards[s] += 1;
        }
        shards
    });
    let server_shards = server.join().unwrap();
    assert!(client_shards.iter().all(|&n| n > 0), "{client_shards:?}");
    assert!(server_shards.iter().all(|&n| n > 0), "{server_shards:?}");
    assert_eq!(
        client_shards, server_shards,
        "each flow's shard is the same on both hosts"
    );
    assert_eq!((rt_a.handed_over(), rt_b.handed_over()), (0, 0));
}

/// Runs the futures concurrently on this task, their outputs in order.
async fn futures_join_all<F: std::future::Future>(fs: Vec<F>) -> Vec<F::Output> {
    let mut fs: Vec<_> = fs.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = (0..fs.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, o) in fs.iter_mut().zip(out.iter_mut()) {
            if o.is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *o = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().map(|o| o.unwrap()).collect()
}

/// `plugtcp bench shards` end to end, briefly: every configuration moves bytes and completes
/// handshakes, every shard carries connections, and the SO_REUSEPORT program steers every
/// datagram to its flow's shard.
#[test]
fn bench_shards_runs() {
    let cfg = plugtcp_cli::bench::shards::ShardsConfig {
        seconds: 0.4,
        bulk_connections: 4,
        handshakes_in_flight: 8,
        rounds: 1,
    };
    let r = plugtcp_cli::bench::shards::run(&cfg).unwrap();
    for p in [&r.two_hosts, &r.one_host] {
        for (f, shards) in [(&p.one, 1), (&p.two, 2)] {
            assert_eq!(f.shards, shards);
            assert!(f.bulk_gbit_per_s > 0.0, "{r:?}");
            assert!(f.handshakes_per_s > 0.0, "{r:?}");
            assert_eq!(f.busy_shards, shards, "{r:?}");
            assert_eq!(f.handed_over, 0, "{r:?}");
        }
    }
}

/// A super-packet handed to the UDP backend leaves as whole TCP segments, one datagram
/// each, in one system call (a UDP_SEGMENT train, or one sendmmsg where the kernel lacks
/// it); the receiving backend takes them in fewer calls than datagrams (UDP_GRO, recvmmsg)
/// and hands over exactly the segments TSO would have made: consecutive sequence numbers,
/// PSH and FIN on the last only, the payload in order, checksums that complete correctly.
#[test]
fn udp_backend_cuts_super_packets_and_batches_system_calls() {
    use plugtcp_abi::segment::{th, SegOut};
    use plugtcp_host::wire;
    let mut b = UdpIo::bind((LOCALHOST, 0).into(), None, 1500).unwrap();
    let b_port = b.local_addr().unwrap().port();
    let mut a = UdpIo::bind((LOCALHOST, 0).into(), Some(b_port), 1500).unwrap();
    assert!(b.leave_partial_checksums());
    const SEGS: usize = 20;
    const GSO: usize = 1000;
    let data = payload(SEGS * GSO - 123, 77);
    let seg = SegOut {
        seq: 5000,
        ack: 9000,
        flags: th::ACK | th::PUSH | th::FIN,
        win: 1024,
        data_len: data.len() as u32,
        ..Default::default()
    };
    let (src, dst) = ((LOCALHOST, 40000).into(), (LOCALHOST, 5001).into());
    let mut pkt = vec![0u8; wire::MAX_HEADER + data.len()];
    let n = wire::build_finished(
        &mut pkt,
        src,
        dst,
        &seg,
        &[&data],
        (64, 0),
        wire::Finish::PartialChecksum,
    )
    .unwrap();
    a.send_gso(&pkt[..n], GSO as u16).unwrap();
    a.flush().unwrap();
    assert_eq!(a.stats.sent, SEGS as u64);
    assert_eq!(a.stats.send_calls, 1, "{:?}", a.stats);
    let mut got = Vec::new();
    let mut buf = vec![0u8; 65536];
    let deadline = Instant::now() + Duration::from_secs(5);
    while got.len() < SEGS && Instant::now() < deadline {
        let Some(n) = b.recv(&mut buf, Some(Duration::from_millis(100))).unwrap() else {
            continue;
        };
        let (start, offset) = b.rx_partial_checksum().expect("left partial");
        wire::complete_checksum(&mut buf[..n], start.into(), offset.into());
        let p = wire::parse(&buf[..n]).expect("a whole, correct TCP packet");
        got.push((p.seq, p.flags, p.payload.to_vec()));
    }
    assert_eq!(got.len(), SEGS, "{:?}", b.stats);
    assert!(b.stats.recv_calls < SEGS as u64, "{:?}", b.stats);
    for (i, (seq, flags, bytes)) in got.iter().enumerate() {
        assert_eq!(*seq, 5000 + (i * GSO) as u32);
        let last = i + 1 == SEGS;
        assert_eq!(flags & (th::PUSH | th::FIN) != 0, last, "segment {i}");
        assert_eq!(flags & th::ACK, th::ACK);
        assert_eq!(&bytes[..], &data[i * GSO..((i + 1) * GSO).min(data.len())]);
    }
}

/// TCP-MD5 over the UDP backend, which takes super-packets (GSO): a signed 4 MiB transfer
/// arrives intact, because signed segments are cut by the host, each with its own digest
/// (a super-packet's one digest would be wrong for every segment cut from it).
#[test]
fn tcp_md5_over_a_backend_that_takes_super_packets() {
    use plugtcp_abi::sockopt::{IPPROTO_TCP, TCP_MD5SIG};
    const KEY: &[u8] = b"udp md5 key";
    let on = 1i32.to_ne_bytes();
    let (port_tx, port_rx) = mpsc::channel();
    let len = 4 << 20;
    let server = std::thread::spawn(move || {
        let io = UdpIo::bind((LOCALHOST, 0).into(), None, 1500).unwrap();
        port_tx.send(io.local_addr().unwrap().port()).unwrap();
        let mut b = IoHost::new(host(), io);
        b.host.md5_key_set(LOCALHOST, None, KEY).unwrap();
        let lid = b.host.listen((LOCALHOST, 5002).into(), 4).unwrap();
        b.host
            .listener_setsockopt(lid, IPPROTO_TCP, TCP_MD5SIG, &on)
            .unwrap();
        let (mut s, mut sha, mut got) = (None, Sha256::new(), 0usize);
        let ok = b
            .run_until(Instant::now() + Duration::from_secs(60), |h| {
                s = s.or_else(|| h.accept(lid).ok());
                if let Some(s) = s {
                    while let Ok(k) = h.recv_with(s, |run| {
                        sha.update(run);
                        run.len()
                    }) {
                        if k == 0 {
                            break;
                        }
                        got += k;
                    }
                }
                got == len
            })
            .unwrap();
        assert!(ok, "server: {got} of {len}");
        // Let the last ACKs go out.
        let _ = b.run_until(Instant::now() + Duration::from_millis(300), |_| false);
        (sha.finalize().to_vec(), b.host.md5_stats())
    });
    let port = port_rx.recv().unwrap();
    let io = UdpIo::bind((LOCALHOST, 0).into(), Some(port), 1500).unwrap();
    assert!(io.gso_max() > 0, "the backend takes super-packets");
    let mut a = IoHost::new(host(), io);
    a.host.md5_key_set(LOCALHOST, None, KEY).unwrap();
    let c = a.host.socket((LOCALHOST, 5002).into(), None).unwrap();
    a.host.setsockopt(c, IPPROTO_TCP, TCP_MD5SIG, &on).unwrap();
    a.host.start_connect(c).unwrap();
    let data = payload(len, 0x6d35);
    let mut sent = 0;
    let done = a
        .run_until(Instant::now() + Duration::from_secs(60), |h| {
            if h.state(c) == Some(TcpState::Established) {
                while let Ok(k) = h.send(c, &data[sent..]) {
                    if k == 0 {
                        break;
                    }
                    sent += k;
                }
            }
            sent == len
        })
        .unwrap();
    assert!(done, "client: sent {sent} of {len}");
    // The server takes everything (its digest is the check); keep answering it meanwhile.
    let (tx, rx) = mpsc::channel();
    let joiner = std::thread::spawn(move || tx.send(server.join()).unwrap());
    let deadline = Instant::now() + Duration::from_secs(60);
    let result = loop {
        a.poll(Duration::from_millis(5)).unwrap();
        if let Ok(r) = rx.try_recv() {
            break r;
        }
        assert!(Instant::now() < deadline, "server did not finish");
    };
    joiner.join().unwrap();
    let (digest, stats) = result.unwrap();
    assert_eq!(digest, Sha256::digest(&data).to_vec());
    assert_eq!(stats.rcv_badsig, 0, "{stats:?}");
    assert_eq!(
        a.host.offload_stats().gso_sends,
        0,
        "signed: no super-packets"
    );
}
