//! A tokio program whose TCP is plugtcp's, on a TUN device: echo on port 7, and a small HTTP
//! service on port 80 that answers every request with one line. See README.md.
//!
//! The stacks and CC modules are the plugin files next to the executable (a workspace
//! build puts them there), loaded as `plugtcp serve` loads them.

use std::net::{IpAddr, SocketAddr};

use plugtcp_io::runtime::{AsyncTcpStream, Runtime, Side};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn main() {
    let mut args = std::env::args().skip(1);
    let (mut tun, mut addr) = ("ptokio0".to_string(), "198.18.0.2".to_string());
    while let Some(a) = args.next() {
        match (a.as_str(), args.next()) {
            ("--tun", Some(v)) => tun = v,
            ("--addr", Some(v)) => addr = v,
            _ => {
                eprintln!("usage: plugtcp-tokio-echo [--tun NAME] [--addr IP]");
                std::process::exit(2);
            }
        }
    }
    let ip: IpAddr = addr.parse().unwrap_or_else(|e| {
        eprintln!("plugtcp-tokio-echo: --addr {addr}: {e}");
        std::process::exit(2)
    });
    let rt = Runtime::builder()
        .tun(&tun)
        .addr(ip)
        .build()
        .unwrap_or_else(|e| {
            eprintln!("plugtcp-tokio-echo: {e}");
            std::process::exit(1)
        });
    let echo = rt.listen(Side::A, SocketAddr::new(ip, 7), 128);
    let http = rt.listen(Side::A, SocketAddr::new(ip, 80), 128);
    let (echo, http) = match (echo, http) {
        (Ok(e), Ok(h)) => (e, h),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("plugtcp-tokio-echo: listen: {e}");
            std::process::exit(1)
        }
    };
    println!("plugtcp-tokio-echo: {tun} up, serving echo on {ip}:7 and HTTP on {ip}:80");
    let exec = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("tokio runtime");
    exec.block_on(async move {
        let echo_loop = async {
            while let Ok(s) = echo.accept_async().await {
                tokio::spawn(serve_echo(s));
            }
        };
        let http_loop = async {
            while let Ok(s) = http.accept_async().await {
                tokio::spawn(serve_http(s));
            }
        };
        tokio::join!(echo_loop, http_loop);
    });
}

/// Echoes until the peer closes its side, then closes ours.
async fn serve_echo(s: AsyncTcpStream) {
    let (mut rd, mut wr) = tokio::io::split(s);
    let mut buf = vec![0u8; 16 * 1024];
    while let Ok(n) = rd.read(&mut buf).await {
        if n == 0 || wr.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = wr.shutdown().await;
}

/// Reads one request head and answers it with one line.
async fn serve_http(mut s: AsyncTcpStream) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let body = format!("hello from plugtcp: {}\n", String::from_utf8_lossy(line));
    let resp = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = s.write_all(resp.as_bytes()).await;
    let _ = s.shutdown().await;
}
