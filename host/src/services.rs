//! Services for `plugtcp serve`, written against the sans-IO application calls: each is
//! polled between network polls and never blocks. `Http` serves files (HTTP/1.1 GET and
//! HEAD, Content-Length, keep-alive).

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use plugtcp_framework::Errno;

use crate::Host;

/// Longest request head accepted (then 431 and close).
const MAX_HEAD: usize = 16 * 1024;

/// One HTTP connection: the request head being read, and what is left to send.
#[derive(Default)]
struct HttpConn {
    head: Vec<u8>,
    /// Response bytes not yet taken by the send buffer (headers, error bodies).
    out: Vec<u8>,
    out_pos: usize,
    /// File body still to send.
    body: Option<(File, u64)>,
    chunk: Vec<u8>,
    chunk_pos: usize,
    close_after: bool,
}

/// A static file server over `root`.
pub struct Http {
    root: PathBuf,
    listener: usize,
    conns: HashMap<usize, HttpConn>,
}

impl Http {
    pub fn new(root: PathBuf, listener: usize) -> Self {
        Http {
            root,
            listener,
            conns: HashMap::new(),
        }
    }

    /// Open connections.
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// Accepts, reads requests, sends responses as far as the send buffers take them.
    pub fn poll(&mut self, host: &mut Host) {
        while let Ok(s) = host.accept(self.listener) {
            self.conns.insert(s, HttpConn::default());
        }
        let root = self.root.clone();
        self.conns.retain(|&s, c| serve(host, s, c, &root));
    }
}

/// One connection's turn; false once it is closed.
fn serve(host: &mut Host, s: usize, c: &mut HttpConn, root: &Path) -> bool {
    loop {
        if !flush(host, s, c) {
            return true; // send buffer full: wait
        }
        if c.body.is_none() && c.out_pos == c.out.len() && c.close_after {
            host.close(s);
            return false;
        }
        // The response is out: read the next request.
        match read_head(host, s, c) {
            Ok(Some(end)) => {
                let head = c.head.drain(..end).collect::<Vec<u8>>();
                respond(c, &head, root);
            }
            Ok(None) => return true,
            Err(_) => {
                host.close(s);
                return false;
            }
        }
    }
}

/// Reads until the end of a request head; Ok(Some(len)) with its length including the
/// blank line, Ok(None) to wait, Err at end of stream or on error.
fn read_head(host: &mut Host, s: usize, c: &mut HttpConn) -> Result<Option<usize>, Errno> {
    loop {
        if let Some(i) = find(&c.head, b"\r\n\r\n") {
            return Ok(Some(i + 4));
        }
        if c.head.len() > MAX_HEAD {
            c.head.clear();
            c.out = b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec();
            c.out_pos = 0;
            c.close_after = true;
            return Ok(None);
        }
        let head = &mut c.head;
        match host.recv_with(s, |run| {
            let k = run.len().min(MAX_HEAD + 4 - head.len().min(MAX_HEAD));
            head.extend_from_slice(&run[..k]);
            k
        }) {
            Ok(0) => return Err(Errno::ENOTCONN),
            Ok(_) => {}
            Err(Errno::EAGAIN) => return Ok(None),
            Err(e) => return Err(e),
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Builds the response to one request head.
fn respond(c: &mut HttpConn, head: &[u8], root: &Path) {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let mut parts = lines.next().unwrap_or("").split(' ');
    let (method, target, version) = (
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
    );
    let mut close = version != "HTTP/1.1";
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            if k.trim().eq_ignore_ascii_case("connection") {
                let v = v.trim();
                close = v.eq_ignore_ascii_case("close")
                    || (close && !v.eq_ignore_ascii_case("keep-alive"));
            }
        }
    }
    c.close_after = close;
    let conn = if close { "close" } else { "keep-alive" };
    let status = |code: &str| {
        format!("HTTP/1.1 {code}\r\nContent-Length: 0\r\nConnection: {conn}\r\n\r\n").into_bytes()
    };
    c.out_pos = 0;
    if method != "GET" && method != "HEAD" {
        c.out = status("405 Method Not Allowed");
        return;
    }
    let Some(path) = resolve(root, target) else {
        c.out = status("404 Not Found");
        return;
    };
    match File::open(&path).and_then(|f| Ok((f.metadata()?, f))) {
        Ok((m, f)) if m.is_file() => {
            c.out = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\nConnection: {conn}\r\n\r\n",
                m.len()
            )
            .into_bytes();
            if method == "GET" && m.len() > 0 {
                c.body = Some((f, m.len()));
            }
        }
        _ => c.out = status("404 Not Found"),
    }
}

/// The file a request target names under `root`: no `..`, no absolute escapes.
fn resolve(root: &Path, target: &str) -> Option<PathBuf> {
    let path = target.split(['?', '#']).next()?;
    let rel = Path::new(path.trim_start_matches('/'));
    if rel
        .components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return None;
    }
    let p = root.join(rel);
    if p.is_dir() {
        Some(p.join("index.html"))
    } else {
        Some(p)
    }
}

/// Sends pending header bytes, then file body; false while the send buffer is full.
fn flush(host: &mut Host, s: usize, c: &mut HttpConn) -> bool {
    while c.out_pos < c.out.len() {
        match host.send(s, &c.out[c.out_pos..]) {
            Ok(k) => c.out_pos += k,
            Err(_) => return false,
        }
    }
    while let Some((f, left)) = c.body.as_mut() {
        if c.chunk_pos == c.chunk.len() {
            if *left == 0 {
                c.body = None;
                break;
            }
            c.chunk.resize(64 * 1024, 0);
            match f.read(&mut c.chunk) {
                Ok(n) if n > 0 => {
                    let n = (n as u64).min(*left) as usize;
                    c.chunk.truncate(n);
                    c.chunk_pos = 0;
                    *left -= n as u64;
                }
                // The file shrank or failed: the connection cannot be completed honestly.
                _ => {
                    c.body = None;
                    c.close_after = true;
                    host.abort(s);
                    return true;
                }
            }
        }
        match host.send(s, &c.chunk[c.chunk_pos..]) {
            Ok(k) => c.chunk_pos += k,
            Err(_) => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_stay_under_the_root() {
        let root = Path::new("/srv");
        assert_eq!(
            resolve(root, "/a/b.txt?x=1"),
            Some(PathBuf::from("/srv/a/b.txt"))
        );
        assert_eq!(resolve(root, "/../etc/passwd"), None);
        assert_eq!(resolve(root, "/a/../../x"), None);
    }
}
