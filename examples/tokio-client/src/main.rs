//! A tokio client whose TCP is plugtcp's, on a TUN device. Given `http://IP[:PORT]/PATH` it
//! does an HTTP/1.1 GET and writes the body to stdout; given `IP:PORT` it sends stdin and
//! writes what comes back to stdout (as `nc -N` does). Bytes and times go to stderr. See
//! README.md.
//!
//! The stacks and CC modules are the plugin files next to the executable (a workspace build
//! puts them there), loaded as `plugtcp serve` loads them. `--stack` and `--cc` choose the
//! connection's function block and CC module through the host's defaults
//! (`net.inet.tcp.functions_default`, `net.inet.tcp.cc.algorithm`): the runtime's streams
//! take TCP_NODELAY only, and the client makes one connection, so the default is its choice.

use std::cell::Cell;
use std::net::{IpAddr, SocketAddr};
use std::process::exit;
use std::time::{Duration, Instant};

use plugtcp_io::runtime::{AsyncTcpStream, Runtime, Side};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

const USAGE: &str =
    "usage: plugtcp-tokio-client [--tun NAME] [--addr IP] [--stack NAME] [--cc NAME] \
                     (http://IP[:PORT]/PATH | IP:PORT)";

/// What to do once connected.
enum Target {
    /// GET `path` with `Host: authority`; the body to stdout.
    Http {
        server: SocketAddr,
        authority: String,
        path: String,
    },
    /// stdin to the server, the server's bytes to stdout.
    Raw(SocketAddr),
}

impl Target {
    fn server(&self) -> SocketAddr {
        match self {
            Target::Http { server, .. } | Target::Raw(server) => *server,
        }
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (mut tun, mut addr) = ("ptclient0".to_string(), "198.18.0.2".to_string());
    let (mut stack, mut cc, mut target) = (None, None, None);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--tun" | "--addr" | "--stack" | "--cc" => {
                let Some(v) = args.next() else {
                    usage(&format!("{a} takes a value"));
                };
                match a.as_str() {
                    "--tun" => tun = v,
                    "--addr" => addr = v,
                    "--stack" => stack = Some(v),
                    _ => cc = Some(v),
                }
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                return;
            }
            t if target.is_none() && !t.starts_with('-') => {
                target = Some(parse_target(t).unwrap_or_else(|e| usage(&e)))
            }
            _ => usage(&format!("unexpected argument `{a}`")),
        }
    }
    let Some(target) = target else {
        usage("no server given");
    };
    if tun.contains('%') {
        usage("--tun takes a fixed name (the client waits for that device to be up)");
    }
    let ip: IpAddr = addr
        .parse()
        .unwrap_or_else(|e| usage(&format!("--addr {addr}: {e}")));

    let mut builder = Runtime::builder().tun(&tun).addr(ip);
    if let Some(s) = &stack {
        builder = builder.sysctl("functions_default", s);
    }
    if let Some(c) = &cc {
        builder = builder.sysctl("cc.algorithm", c);
    }
    let rt = builder.build().unwrap_or_else(|e| die(e));
    let (stack, cc) = rt.with_host(Side::A, |h| {
        let get = |name| {
            h.sysctl
                .get(name)
                .map_or_else(|e| e.to_string(), |v| v.to_string())
        };
        (
            get("net.inet.tcp.functions_default"),
            get("net.inet.tcp.cc.algorithm"),
        )
    });
    eprintln!("plugtcp-tokio-client: {tun} open, plugtcp at {ip} (stack {stack}, cc {cc})");

    // A packet sent while the device is down fails (EIO) and stops the network: connect
    // once the kernel side has brought the link up.
    let server = target.server();
    wait_link_up(&tun, server.ip(), Duration::from_secs(60)).unwrap_or_else(|e| die(e));

    let t0 = Instant::now();
    let stream = rt
        .connect(Side::A, server)
        .unwrap_or_else(|e| die(format!("connect {server}: {e}")));
    let connect_time = t0.elapsed();
    if matches!(target, Target::Raw(_)) {
        // Typed lines go out as they come.
        let _ = stream.set_nodelay(true);
    }
    let stream = stream.into_async();

    let exec = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("tokio runtime");
    let t1 = Instant::now();
    let result = exec.block_on(async {
        match &target {
            Target::Http {
                authority, path, ..
            } => http_get(stream, authority, path).await.map(|(status, n)| {
                let ok = status
                    .split_whitespace()
                    .nth(1)
                    .is_some_and(|c| c.starts_with('2'));
                (format!("{status}, {n} bytes of body"), n, ok)
            }),
            Target::Raw(_) => pipe(stream)
                .await
                .map(|(sent, got)| (format!("sent {sent} bytes, received {got}"), got, true)),
        }
    });
    let secs = t1.elapsed().as_secs_f64();
    // A read of stdin may still be blocked in tokio's thread: do not wait for it.
    exec.shutdown_background();
    // The streams are closed: let the driver send what they queued (our FIN) before the
    // runtime goes.
    let deadline = Instant::now() + Duration::from_secs(1);
    while rt.with_host(Side::A, |h| h.tx_len()) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    drop(rt);
    match result {
        Ok((what, bytes, ok)) => {
            eprintln!(
                "plugtcp-tokio-client: {what} in {secs:.3} s ({:.1} Mbit/s), connected to {server} in {:.2} ms",
                bytes as f64 * 8.0 / secs.max(1e-9) / 1e6,
                connect_time.as_secs_f64() * 1e3,
            );
            if !ok {
                exit(1);
            }
        }
        Err(e) => die(e),
    }
}

fn usage(msg: &str) -> ! {
    eprintln!("plugtcp-tokio-client: {msg}\n{USAGE}");
    exit(2)
}

fn die(e: impl std::fmt::Display) -> ! {
    eprintln!("plugtcp-tokio-client: {e}");
    exit(1)
}

/// `http://IP[:PORT][/PATH]` (IPv6 in brackets) or `IP:PORT`. Addresses only: the client
/// has no resolver of its own.
fn parse_target(s: &str) -> Result<Target, String> {
    let Some(rest) = s.strip_prefix("http://") else {
        return s
            .parse()
            .map(Target::Raw)
            .map_err(|_| format!("`{s}`: expected http://IP[:PORT]/PATH or IP:PORT"));
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let server = authority
        .parse::<SocketAddr>()
        .or_else(|_| {
            let host = authority.trim_start_matches('[').trim_end_matches(']');
            host.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 80))
        })
        .map_err(|_| format!("`{authority}`: expected IP or IP:PORT (no names)"))?;
    Ok(Target::Http {
        server,
        authority: authority.to_string(),
        path: if path.is_empty() { "/" } else { path }.to_string(),
    })
}

/// Polls the device's flags (SIOCGIFFLAGS) until IFF_UP, saying once what it waits for
/// (the kernel at the server's address, on the device).
fn wait_link_up(dev: &str, server: IpAddr, limit: Duration) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    let mut said = false;
    loop {
        let flags = if_flags(dev).map_err(|e| format!("{dev}: {e}"))?;
        if flags & libc::IFF_UP != 0 {
            return Ok(());
        }
        if !said {
            let prefix = if server.is_ipv4() { 24 } else { 64 };
            eprintln!(
                "plugtcp-tokio-client: waiting for {dev} to be up \
                 (ip addr add {server}/{prefix} dev {dev}; ip link set {dev} up)"
            );
            said = true;
        }
        if Instant::now() >= deadline {
            return Err(format!("{dev} still down after {} s", limit.as_secs()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The interface flags of `dev` in this process's network namespace.
fn if_flags(dev: &str) -> std::io::Result<i32> {
    // SAFETY: plain socket(2) arguments; the descriptor is closed below.
    let s = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if s < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: an all-zero ifreq is valid (an empty name, zero flags).
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, b) in req
        .ifr_name
        .iter_mut()
        .zip(dev.bytes().take(libc::IFNAMSIZ - 1))
    {
        *d = b as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads the name and fills ifr_flags of a valid ifreq.
    let r = unsafe { libc::ioctl(s, libc::SIOCGIFFLAGS, &mut req) };
    let err = std::io::Error::last_os_error();
    // SAFETY: `s` is ours and closed once.
    unsafe { libc::close(s) };
    if r < 0 {
        return Err(err);
    }
    // SAFETY: SIOCGIFFLAGS set the flags member of the union.
    Ok(i32::from(unsafe { req.ifr_ifru.ifru_flags }))
}

/// One HTTP/1.1 GET: the status line and the number of body bytes written to stdout
/// (Content-Length, chunked, or up to the server's close).
async fn http_get(s: AsyncTcpStream, authority: &str, path: &str) -> Result<(String, u64), String> {
    let (rd, mut wr) = tokio::io::split(s);
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: plugtcp-tokio-client\r\n\
         Accept: */*\r\nConnection: close\r\n\r\n"
    );
    wr.write_all(req.as_bytes())
        .await
        .map_err(|e| format!("send request: {e}"))?;
    let mut rd = BufReader::with_capacity(64 * 1024, rd);
    let status = line(&mut rd).await?;
    if !status.starts_with("HTTP/1.") {
        return Err(format!("not an HTTP/1.x answer: {status:?}"));
    }
    let (mut length, mut chunked) = (None, false);
    loop {
        let h = line(&mut rd).await?;
        if h.is_empty() {
            break;
        }
        let Some((name, value)) = h.split_once(':') else {
            return Err(format!("bad header line {h:?}"));
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(
                value
                    .parse::<u64>()
                    .map_err(|_| format!("bad Content-Length {value:?}"))?,
            );
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.to_ascii_lowercase().contains("chunked");
        }
    }
    let mut out = tokio::io::BufWriter::with_capacity(256 * 1024, tokio::io::stdout());
    let io = |what: &'static str| move |e: std::io::Error| format!("{what}: {e}");
    let mut body = 0;
    if chunked {
        loop {
            let size = line(&mut rd).await?;
            let hex = size.split(';').next().unwrap_or_default().trim();
            let n = u64::from_str_radix(hex, 16).map_err(|_| format!("bad chunk size {size:?}"))?;
            if n == 0 {
                // Trailers, up to the empty line.
                while !line(&mut rd).await?.is_empty() {}
                break;
            }
            let got = tokio::io::copy(&mut (&mut rd).take(n), &mut out)
                .await
                .map_err(io("read body"))?;
            body += got;
            if got != n || !line(&mut rd).await?.is_empty() {
                return Err(format!("chunk cut short after {body} bytes"));
            }
        }
    } else if let Some(n) = length {
        body = tokio::io::copy(&mut (&mut rd).take(n), &mut out)
            .await
            .map_err(io("read body"))?;
        if body != n {
            return Err(format!("the server closed after {body} of {n} bytes"));
        }
    } else {
        body = tokio::io::copy(&mut rd, &mut out)
            .await
            .map_err(io("read body"))?;
    }
    out.flush().await.map_err(io("stdout"))?;
    let _ = wr.shutdown().await;
    Ok((status, body))
}

/// A line of the response head, without its CRLF (at most 64 KiB).
async fn line<R: tokio::io::AsyncBufRead + Unpin>(rd: &mut R) -> Result<String, String> {
    let mut v = Vec::new();
    let n = rd
        .take(64 * 1024)
        .read_until(b'\n', &mut v)
        .await
        .map_err(|e| format!("read: {e}"))?;
    if n == 0 || v.last() != Some(&b'\n') {
        return Err("the server closed in the middle of the response head".into());
    }
    while matches!(v.last(), Some(b'\n' | b'\r')) {
        v.pop();
    }
    Ok(String::from_utf8_lossy(&v).into_owned())
}

/// stdin to the server (then a half-close), the server's bytes to stdout, until the server
/// closes its side: bytes sent and received.
async fn pipe(s: AsyncTcpStream) -> Result<(u64, u64), String> {
    let (mut rd, mut wr) = tokio::io::split(s);
    let sent = Cell::new(0u64);
    let up = async {
        let mut stdin = tokio::io::stdin();
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = stdin
                .read(&mut buf)
                .await
                .map_err(|e| format!("stdin: {e}"))?;
            if n == 0 {
                break;
            }
            wr.write_all(&buf[..n])
                .await
                .map_err(|e| format!("send: {e}"))?;
            sent.set(sent.get() + n as u64);
        }
        wr.shutdown().await.map_err(|e| format!("shutdown: {e}"))
    };
    let down = async {
        let mut out = tokio::io::stdout();
        let mut buf = vec![0u8; 64 * 1024];
        let mut got = 0u64;
        loop {
            let n = rd
                .read(&mut buf)
                .await
                .map_err(|e| format!("receive: {e}"))?;
            if n == 0 {
                return Ok::<_, String>(got);
            }
            out.write_all(&buf[..n])
                .await
                .map_err(|e| format!("stdout: {e}"))?;
            out.flush().await.map_err(|e| format!("stdout: {e}"))?;
            got += n as u64;
        }
    };
    tokio::pin!(up, down);
    let mut up_done = false;
    loop {
        tokio::select! {
            r = &mut up, if !up_done => {
                r?;
                up_done = true;
            }
            // The server's close ends the session, whatever stdin still has.
            r = &mut down => return r.map(|got| (sent.get(), got)),
        }
    }
}
