//! The blocking std::io API over the simulated link, with real threads.

use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;

use plugtcp_cli::builtins::BuiltinNet as _;
use plugtcp_host::usrreq::Shutdown;
use plugtcp_io::runtime::{Side, SimRuntime};
use plugtcp_io::sim::SimLinkConfig;
use plugtcp_io::simnet::{SimNet, ADDR_B};
use sha2::{Digest, Sha256};

fn runtime(loss: f64) -> SimRuntime {
    let cfg = SimLinkConfig {
        delay_ns: 2_000_000,
        bandwidth_bps: 200_000_000,
        loss,
        seed: 5,
        ..Default::default()
    };
    SimRuntime::new(SimNet::builtin(cfg, 5))
}

#[test]
fn echo_through_threads_with_half_close() {
    let rt = runtime(0.01);
    let addr: SocketAddr = (ADDR_B, 7).into();
    let listener = rt.listen(Side::B, addr, 4).unwrap();
    let server = std::thread::spawn(move || {
        // Echo until the client half-closes, then close.
        let mut s = listener.accept().unwrap();
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            let n = s.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            s.write_all(&buf[..n]).unwrap();
        }
    });
    let data: Vec<u8> = (0..4u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    let mut c = rt.connect(Side::A, addr).unwrap();
    // Lock-step (write a chunk, read its echo) so neither side can fill the other's window
    // while not reading.
    let mut got = Vec::with_capacity(data.len());
    let mut buf = vec![0u8; 64 * 1024];
    for chunk in data.chunks(24 * 1024) {
        c.write_all(chunk).unwrap();
        let want = got.len() + chunk.len();
        while got.len() < want {
            let n = c.read(&mut buf).unwrap();
            assert!(n > 0, "early end of stream");
            got.extend_from_slice(&buf[..n]);
        }
    }
    // Half-close: the server sees end of stream, closes, and we see ours.
    c.shutdown(Shutdown::Write).unwrap();
    assert_eq!(c.read(&mut buf).unwrap(), 0);
    assert_eq!(Sha256::digest(&got), Sha256::digest(&data));
    server.join().unwrap();
}

#[test]
fn connect_refused_and_errors_map_to_io_error_kinds() {
    let rt = runtime(0.0);
    let e = rt
        .connect(Side::A, (ADDR_B, 9999).into())
        .err()
        .expect("refused");
    assert_eq!(e.kind(), ErrorKind::ConnectionRefused);
    assert_eq!(e.raw_os_error(), Some(111));
    let addr: SocketAddr = (ADDR_B, 80).into();
    let _l = rt.listen(Side::B, addr, 1).unwrap();
    let e = rt.listen(Side::B, addr, 1).err().expect("in use");
    assert_eq!(e.kind(), ErrorKind::AddrInUse);
}

#[test]
fn tokio_streams_echo() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rt = runtime(0.005);
    let addr: SocketAddr = (ADDR_B, 7).into();
    let listener = rt.listen(Side::B, addr, 4).unwrap();
    let client = rt.connect(Side::A, addr).unwrap().into_async();
    let exec = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let data: Vec<u8> = (0..1u32 << 20).map(|i| (i * 7 + (i >> 9)) as u8).collect();
    let got = exec.block_on(async {
        let server = async {
            let mut s = listener.accept_async().await.unwrap();
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                let n = s.read(&mut buf).await.unwrap();
                if n == 0 {
                    s.shutdown().await.unwrap();
                    break;
                }
                s.write_all(&buf[..n]).await.unwrap();
            }
        };
        let client = async {
            let (mut rd, mut wr) = tokio::io::split(client);
            let writer = async {
                wr.write_all(&data).await.unwrap();
                wr.shutdown().await.unwrap();
            };
            let reader = async {
                let mut got = Vec::new();
                rd.read_to_end(&mut got).await.unwrap();
                got
            };
            let ((), got) = tokio::join!(writer, reader);
            got
        };
        let ((), got) = tokio::join!(server, client);
        got
    });
    assert_eq!(Sha256::digest(&got), Sha256::digest(&data));
}

/// A waker that counts its wake-ups.
struct CountingWaker(std::sync::atomic::AtomicUsize);

impl std::task::Wake for CountingWaker {
    fn wake(self: std::sync::Arc<Self>) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Readiness is per connection: a task waiting to read on one connection is not woken while
/// another connection of the same host moves a megabyte, and is woken once data arrives on
/// its own.
#[test]
fn a_waiting_task_is_woken_by_its_own_connection_only() {
    use std::sync::atomic::Ordering::SeqCst;
    use std::sync::Arc;
    use std::task::{Context, Poll};
    use tokio::io::{AsyncRead, ReadBuf};
    let rt = runtime(0.0);
    // No keepalive: the quiet connection then has no timer of its own. (The simulated clock
    // jumps to the next timer whenever the threads are slow, so a 2-hour keepalive probe
    // could otherwise come during the test and wake the task, rightly.)
    rt.with(|n| {
        for h in [&mut n.a, &mut n.b] {
            h.sysctl_set("net.inet.tcp.always_keepalive", "0").unwrap();
        }
    });
    let addr: SocketAddr = (ADDR_B, 7).into();
    let listener = rt.listen(Side::B, addr, 4).unwrap();
    let mut quiet = rt.connect(Side::A, addr).unwrap();
    let quiet_peer = listener.accept().unwrap();
    let mut busy = rt.connect(Side::A, addr).unwrap();
    let mut busy_peer = listener.accept().unwrap();

    // Wait (as a tokio task would) for data on the quiet connection.
    let mut quiet_async = quiet_peer.into_async();
    let counter = Arc::new(CountingWaker(0.into()));
    let waker = std::task::Waker::from(counter.clone());
    let mut cx = Context::from_waker(&waker);
    let mut buf = [0u8; 16];
    let mut rb = ReadBuf::new(&mut buf);
    assert!(std::pin::Pin::new(&mut quiet_async)
        .poll_read(&mut cx, &mut rb)
        .is_pending());

    // A megabyte on the other connection, read on the other side.
    let data = vec![0x5au8; 1 << 20];
    let reader = std::thread::spawn(move || {
        let mut got = vec![0u8; 1 << 20];
        busy_peer.read_exact(&mut got).unwrap();
        got
    });
    busy.write_all(&data).unwrap();
    assert_eq!(reader.join().unwrap(), data);
    assert_eq!(
        counter.0.load(SeqCst),
        0,
        "woken by another connection's traffic"
    );

    // Data for the waiting task: it is woken, and the read succeeds.
    quiet.write_all(b"ping").unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while counter.0.load(SeqCst) == 0 {
        assert!(std::time::Instant::now() < deadline, "never woken");
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let mut rb = ReadBuf::new(&mut buf);
    match std::pin::Pin::new(&mut quiet_async).poll_read(&mut cx, &mut rb) {
        Poll::Ready(Ok(())) => assert_eq!(rb.filled(), b"ping"),
        other => panic!("{other:?}"),
    }
}
