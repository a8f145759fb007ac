//! `plugtcp bench tun`: in one run and one namespace setup, the kernel's TCP sends a bulk
//! transfer to plugtcp over a TUN device, and to the kernel's TCP over a veth pair. Both
//! receivers count the bytes and time from the accept to the end of stream. Needs root.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::builtins::BuiltinHost as _;
use plugtcp_host::registry::loader::SearchPath;
use plugtcp_host::Host;
use plugtcp_io::driver::IoHost;
use plugtcp_io::netns::{self, Netns};
use plugtcp_io::tun::TunIo;

#[derive(Debug, serde::Serialize)]
pub struct TunReport {
    pub bytes: u64,
    /// Kernel to plugtcp over TUN.
    pub plugtcp_gbit_per_s: f64,
    /// The same with IFF_VNET_HDR: the kernel's GSO super-packets taken whole.
    pub plugtcp_vnet_hdr_gbit_per_s: f64,
    /// Kernel to kernel over veth.
    pub kernel_gbit_per_s: f64,
    /// plugtcp (the better of the two) over kernel.
    pub ratio: f64,
}

const TUN_KERNEL: &str = "198.18.0.1";
const TUN_PLUGTCP: &str = "198.18.0.2";
const VETH_A: &str = "198.18.1.1";
const VETH_B: &str = "198.18.1.2";
const PORT: u16 = 9;

/// The kernel's side of a transfer: connects from inside `ns` and writes `bytes`.
fn kernel_sender(
    ns: &Netns,
    to: SocketAddr,
    bytes: u64,
) -> std::thread::JoinHandle<Result<(), String>> {
    let name = ns.name().to_string();
    std::thread::spawn(move || {
        netns::enter(&name).map_err(|e| e.to_string())?;
        let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(10))
            .map_err(|e| format!("connect {to}: {e}"))?;
        let chunk = vec![0x5au8; 1 << 20];
        let mut left = bytes;
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            s.write_all(&chunk[..n])
                .map_err(|e| format!("write: {e}"))?;
            left -= n as u64;
        }
        s.shutdown(std::net::Shutdown::Write)
            .map_err(|e| format!("shutdown: {e}"))?;
        // Wait for the receiver's FIN, so that the timing includes the last byte's arrival.
        let mut b = [0u8; 1];
        let _ = s.read(&mut b);
        Ok(())
    })
}

/// plugtcp on a TUN device in `ns` receives `bytes`; returns the seconds from accept to EOF.
fn plugtcp_receive(ns: &Netns, bytes: u64, vnet_hdr: bool) -> Result<f64, String> {
    let (ready_tx, ready_rx) = mpsc::channel::<Result<mpsc::Sender<()>, String>>();
    let name = ns.name().to_string();
    // One device name per run: the kernel unregisters a closed TUN device asynchronously, so
    // reusing the name right after the previous run can meet EBUSY.
    let dev = if vnet_hdr { "pbench1" } else { "pbench0" };
    let receiver = std::thread::spawn(move || -> Result<f64, String> {
        let setup = (|| {
            netns::enter(&name).map_err(|e| e.to_string())?;
            TunIo::open_with(dev, vnet_hdr).map_err(|e| e.to_string())
        })();
        let tun = match setup {
            Ok(t) => t,
            Err(e) => {
                let _ = ready_tx.send(Err(e.clone()));
                return Err(e);
            }
        };
        let (go_tx, go_rx) = mpsc::channel();
        let _ = ready_tx.send(Ok(go_tx));
        let _ = go_rx.recv();
        let mut host = Host::with_seed(SearchPath::default(), 3);
        host.register_builtins();
        let ip = TUN_PLUGTCP.parse().map_err(|_| "address")?;
        host.add_addr(ip);
        let l = host
            .listen(SocketAddr::new(ip, PORT), 4)
            .map_err(|e| e.to_string())?;
        let mut h = IoHost::new(host, tun);
        let (mut s, mut got, mut t0, mut eof) = (None, 0u64, None, false);
        let deadline = Instant::now() + Duration::from_secs(600);
        h.run_until(deadline, |host| {
            if s.is_none() {
                s = host.accept(l).ok();
                if s.is_some() {
                    t0 = Some(Instant::now());
                }
            }
            if let Some(c) = s {
                while let Ok(k) = host.recv_with(c, |run| run.len()) {
                    if k == 0 {
                        eof = true;
                        break;
                    }
                    got += k as u64;
                }
            }
            eof
        })
        .map_err(|e| e.to_string())?;
        let secs = t0.map_or(0.0, |t| t.elapsed().as_secs_f64());
        if let Some(c) = s {
            h.host.close(c);
        }
        let _ = h.run_until(Instant::now() + Duration::from_millis(200), |_| false);
        if got != bytes {
            return Err(format!("plugtcp received {got} of {bytes} bytes"));
        }
        Ok(secs)
    });
    let go = ready_rx
        .recv()
        .map_err(|_| "receiver thread died".to_string())??;
    let cfg = (|| {
        ns.ok(&["ip", "link", "set", "lo", "up"])?;
        ns.ok(&["ip", "addr", "add", &format!("{TUN_KERNEL}/24"), "dev", dev])?;
        ns.ok(&["ip", "link", "set", dev, "up"])
    })();
    let _ = go.send(());
    cfg.map_err(|e| e.to_string())?;
    let to: SocketAddr = (
        TUN_PLUGTCP
            .parse::<std::net::IpAddr>()
            .map_err(|_| "address")?,
        PORT,
    )
        .into();
    let sender = kernel_sender(ns, to, bytes);
    let sent = sender.join().map_err(|_| "sender panicked")?;
    let secs = receiver.join().map_err(|_| "receiver panicked")??;
    sent?;
    Ok(secs)
}

/// The kernel in `b` receives `bytes` from the kernel in `a` over the veth pair.
fn kernel_receive(a: &Netns, b: &Netns, bytes: u64) -> Result<f64, String> {
    let (ready_tx, ready_rx) = mpsc::channel();
    let name = b.name().to_string();
    let receiver = std::thread::spawn(move || -> Result<f64, String> {
        netns::enter(&name).map_err(|e| e.to_string())?;
        let l = TcpListener::bind((VETH_B, PORT)).map_err(|e| format!("bind: {e}"))?;
        let _ = ready_tx.send(());
        let (mut s, _) = l.accept().map_err(|e| format!("accept: {e}"))?;
        let t0 = Instant::now();
        let mut buf = vec![0u8; 1 << 20];
        let mut got = 0u64;
        loop {
            let n = s.read(&mut buf).map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                break;
            }
            got += n as u64;
        }
        let secs = t0.elapsed().as_secs_f64();
        drop(s);
        if got != bytes {
            return Err(format!("kernel received {got} of {bytes} bytes"));
        }
        Ok(secs)
    });
    ready_rx.recv().map_err(|_| "receiver thread died")?;
    let to: SocketAddr = (
        VETH_B.parse::<std::net::IpAddr>().map_err(|_| "address")?,
        PORT,
    )
        .into();
    let sent = kernel_sender(a, to, bytes)
        .join()
        .map_err(|_| "sender panicked")?;
    let secs = receiver.join().map_err(|_| "receiver panicked")??;
    sent?;
    Ok(secs)
}

pub fn run(bytes: u64) -> Result<TunReport, String> {
    let pid = std::process::id();
    let mk = |tag: &str| {
        Netns::create(&format!("plugtcp-bench-{tag}-{pid}"))
            .map_err(|e| format!("{e} (bench tun needs root and iproute2)"))
    };
    let (a, b) = (mk("a")?, mk("b")?);
    // The veth pair: one end in each namespace.
    let link = std::process::Command::new("ip")
        .args([
            "link",
            "add",
            "pbv0",
            "netns",
            a.name(),
            "type",
            "veth",
            "peer",
            "name",
            "pbv1",
            "netns",
            b.name(),
        ])
        .output()
        .map_err(|e| format!("ip link add: {e}"))?;
    if !link.status.success() {
        return Err(format!(
            "ip link add veth: {}",
            String::from_utf8_lossy(&link.stderr).trim()
        ));
    }
    let setup = |ns: &Netns, dev: &str, addr: &str| -> std::io::Result<()> {
        ns.ok(&["ip", "link", "set", "lo", "up"])?;
        ns.ok(&["ip", "addr", "add", &format!("{addr}/24"), "dev", dev])?;
        ns.ok(&["ip", "link", "set", dev, "up"])
    };
    setup(&a, "pbv0", VETH_A).map_err(|e| e.to_string())?;
    setup(&b, "pbv1", VETH_B).map_err(|e| e.to_string())?;
    let plugtcp = plugtcp_receive(&a, bytes, false)?;
    let vnet = plugtcp_receive(&a, bytes, true)?;
    let kernel = kernel_receive(&a, &b, bytes)?;
    let gbit = |s: f64| bytes as f64 * 8.0 / s / 1e9;
    Ok(TunReport {
        bytes,
        plugtcp_gbit_per_s: gbit(plugtcp),
        plugtcp_vnet_hdr_gbit_per_s: gbit(vnet),
        kernel_gbit_per_s: gbit(kernel),
        ratio: kernel / plugtcp.min(vnet),
    })
}
