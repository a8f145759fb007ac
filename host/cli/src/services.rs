//! Services for `plugtcp serve`, written against the sans-IO application calls: each is
//! polled between network polls and never blocks. `Echo` (RFC 862), `Discard` (RFC 863),
//! `Chargen` (RFC 864), `Http` serves files (HTTP/1.1 GET and HEAD, Content-Length,
//! keep-alive); `HttpGet` is the client side of one download.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};

use plugtcp_abi::Errno;

use plugtcp_host::conn_table::ConnId;
use plugtcp_host::usrreq::Shutdown;
use plugtcp_host::Host;

/// The simple TCP services: what each does with a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Simple {
    /// RFC 862: sends back what it receives; after the peer's FIN, its own once all is
    /// echoed (half-close kept).
    Echo,
    /// RFC 863: reads and drops.
    Discard,
    /// RFC 864: sends the rotating 72-character lines until the peer closes.
    Chargen,
}

/// Per-connection state of a simple service: bytes read but not yet echoed back.
#[derive(Default)]
struct SimpleConn {
    pending: Vec<u8>,
    pos: usize,
    /// Chargen: where in the pattern the next byte comes from.
    line: usize,
    eof: bool,
}

/// A listener's accepted connections, each with its service's state.
struct Accepted<C> {
    listener: usize,
    conns: HashMap<ConnId, C>,
}

impl<C: Default> Accepted<C> {
    fn new(listener: usize) -> Self {
        Accepted {
            listener,
            conns: HashMap::new(),
        }
    }

    /// Takes what the listener has queued.
    fn accept(&mut self, host: &mut Host) {
        while let Ok(s) = host.accept(self.listener) {
            self.conns.insert(s, C::default());
        }
    }
}

/// A listener running one of the simple services.
pub struct SimpleServer {
    kind: Simple,
    acc: Accepted<SimpleConn>,
}

impl SimpleServer {
    pub fn new(kind: Simple, listener: usize) -> Self {
        SimpleServer {
            kind,
            acc: Accepted::new(listener),
        }
    }

    pub fn connections(&self) -> usize {
        self.acc.conns.len()
    }

    pub fn poll(&mut self, host: &mut Host) {
        self.acc.accept(host);
        let kind = self.kind;
        self.acc.conns.retain(|&s, c| simple(host, kind, s, c));
    }
}

/// RFC 864's pattern: 95 printable characters, lines of 72 starting one further each time.
fn chargen_line(n: usize) -> [u8; 74] {
    let mut l = [0u8; 74];
    for (i, b) in l[..72].iter_mut().enumerate() {
        *b = b' ' + ((n + i) % 95) as u8;
    }
    l[72] = b'\r';
    l[73] = b'\n';
    l
}

/// One connection's turn; false once it is done (closed).
fn simple(host: &mut Host, kind: Simple, s: ConnId, c: &mut SimpleConn) -> bool {
    loop {
        // Send what is pending first (echo back-pressure: stop reading while it cannot go).
        while c.pos < c.pending.len() {
            match host.send(s, &c.pending[c.pos..]) {
                Ok(k) => c.pos += k,
                Err(Errno::EAGAIN) => return true,
                Err(_) => {
                    host.close(s);
                    return false;
                }
            }
        }
        c.pending.clear();
        c.pos = 0;
        if kind == Simple::Chargen && !c.eof {
            for _ in 0..64 {
                c.pending.extend_from_slice(&chargen_line(c.line));
                c.line = (c.line + 1) % 95;
            }
        }
        if c.eof {
            // Everything echoed: our FIN after theirs.
            host.close(s);
            return false;
        }
        let (pending, echo) = (&mut c.pending, kind == Simple::Echo);
        match host.recv_with(s, |run| {
            if echo {
                pending.extend_from_slice(run);
            }
            run.len()
        }) {
            Ok(0) => c.eof = true,
            Ok(_) => {}
            Err(Errno::EAGAIN) if kind == Simple::Chargen && !c.pending.is_empty() => {}
            Err(Errno::EAGAIN) => return true,
            Err(_) => {
                host.close(s);
                return false;
            }
        }
        if kind != Simple::Echo && c.eof {
            let _ = host.shutdown(s, Shutdown::Write);
        }
    }
}

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
    acc: Accepted<HttpConn>,
}

impl Http {
    pub fn new(root: PathBuf, listener: usize) -> Self {
        Http {
            root,
            acc: Accepted::new(listener),
        }
    }

    /// Open connections.
    pub fn connections(&self) -> usize {
        self.acc.conns.len()
    }

    /// Accepts, reads requests, sends responses as far as the send buffers take them.
    pub fn poll(&mut self, host: &mut Host) {
        self.acc.accept(host);
        let root = &self.root;
        self.acc.conns.retain(|&s, c| serve(host, s, c, root));
    }
}

/// One connection's turn; false once it is closed.
fn serve(host: &mut Host, s: ConnId, c: &mut HttpConn, root: &Path) -> bool {
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
fn read_head(host: &mut Host, s: ConnId, c: &mut HttpConn) -> Result<Option<usize>, Errno> {
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
fn flush(host: &mut Host, s: ConnId, c: &mut HttpConn) -> bool {
    while c.out_pos < c.out.len() {
        match host.send(s, &c.out[c.out_pos..]) {
            Ok(k) => c.out_pos += k,
            Err(Errno::EAGAIN) => return false,
            Err(_) => return failed(c),
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
            Err(Errno::EAGAIN) => return false,
            Err(_) => return failed(c),
        }
    }
    true
}

/// The connection failed under a response (reset, dropped, timed out): nothing more goes
/// out, and `serve` closes it (freeing the socket) instead of waiting for room forever.
fn failed(c: &mut HttpConn) -> bool {
    c.body = None;
    c.out.clear();
    c.out_pos = 0;
    c.close_after = true;
    true
}

/// One forwarded connection: plugtcp's side, the kernel socket, what is waiting to go each
/// way, and which directions have ended.
struct Forwarded {
    kernel: std::net::TcpStream,
    to_kernel: Vec<u8>,
    to_kernel_pos: usize,
    to_plugtcp: Vec<u8>,
    to_plugtcp_pos: usize,
    plugtcp_eof: bool,
    kernel_eof: bool,
    kernel_shut: bool,
    plugtcp_shut: bool,
}

/// A forwarder: accepts on plugtcp and connects each connection to a kernel socket address,
/// copying both ways; an end of stream on one side becomes a half-close on the other.
pub struct Forward {
    listener: usize,
    /// The kernel address to connect to; `None`: where the connection was addressed
    /// (a transparent listener's connections).
    to: Option<std::net::SocketAddr>,
    conns: HashMap<ConnId, Forwarded>,
    buf: Vec<u8>,
}

impl Forward {
    pub fn new(listener: usize, to: Option<std::net::SocketAddr>) -> Self {
        Forward {
            listener,
            to,
            conns: HashMap::new(),
            buf: vec![0; 64 * 1024],
        }
    }

    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    pub fn poll(&mut self, host: &mut Host) {
        while let Ok(s) = host.accept(self.listener) {
            let Some(to) = self.to.or_else(|| host.local_addr(s)) else {
                host.abort(s);
                continue;
            };
            let kernel =
                std::net::TcpStream::connect_timeout(&to, std::time::Duration::from_secs(5))
                    .and_then(|k| k.set_nonblocking(true).map(|()| k));
            match kernel {
                Ok(kernel) => {
                    let _ = kernel.set_nodelay(true);
                    self.conns.insert(
                        s,
                        Forwarded {
                            kernel,
                            to_kernel: Vec::new(),
                            to_kernel_pos: 0,
                            to_plugtcp: Vec::new(),
                            to_plugtcp_pos: 0,
                            plugtcp_eof: false,
                            kernel_eof: false,
                            kernel_shut: false,
                            plugtcp_shut: false,
                        },
                    );
                }
                // The target refuses: so does the forwarder.
                Err(_) => host.abort(s),
            }
        }
        let buf = &mut self.buf;
        self.conns.retain(|&s, f| forward(host, s, f, buf));
    }
}

/// One forwarded connection's turn; false once both directions are done (or it failed).
fn forward(host: &mut Host, s: ConnId, f: &mut Forwarded, buf: &mut [u8]) -> bool {
    use std::io::ErrorKind::WouldBlock;
    let mut progress = true;
    while progress {
        progress = false;
        // plugtcp -> kernel.
        while f.to_kernel_pos < f.to_kernel.len() {
            match f.kernel.write(&f.to_kernel[f.to_kernel_pos..]) {
                Ok(0) => break,
                Ok(k) => {
                    f.to_kernel_pos += k;
                    progress = true;
                }
                Err(e) if e.kind() == WouldBlock => break,
                Err(_) => return fail(host, s),
            }
        }
        if f.to_kernel_pos == f.to_kernel.len() {
            f.to_kernel.clear();
            f.to_kernel_pos = 0;
            if f.plugtcp_eof && !f.kernel_shut {
                let _ = f.kernel.shutdown(std::net::Shutdown::Write);
                f.kernel_shut = true;
            } else if !f.plugtcp_eof {
                let pending = &mut f.to_kernel;
                match host.recv_with(s, |run| {
                    pending.extend_from_slice(run);
                    run.len()
                }) {
                    Ok(0) => {
                        f.plugtcp_eof = true;
                        progress = true;
                    }
                    Ok(_) => progress = true,
                    Err(Errno::EAGAIN) => {}
                    Err(_) => return fail(host, s),
                }
            }
        }
        // kernel -> plugtcp.
        while f.to_plugtcp_pos < f.to_plugtcp.len() {
            match host.send(s, &f.to_plugtcp[f.to_plugtcp_pos..]) {
                Ok(k) => {
                    f.to_plugtcp_pos += k;
                    progress = true;
                }
                Err(Errno::EAGAIN) => break,
                Err(_) => return fail(host, s),
            }
        }
        if f.to_plugtcp_pos == f.to_plugtcp.len() {
            f.to_plugtcp.clear();
            f.to_plugtcp_pos = 0;
            if f.kernel_eof && !f.plugtcp_shut {
                let _ = host.shutdown(s, Shutdown::Write);
                f.plugtcp_shut = true;
            } else if !f.kernel_eof {
                match f.kernel.read(buf) {
                    Ok(0) => {
                        f.kernel_eof = true;
                        progress = true;
                    }
                    Ok(k) => {
                        f.to_plugtcp.extend_from_slice(&buf[..k]);
                        progress = true;
                    }
                    Err(e) if e.kind() == WouldBlock => {}
                    Err(_) => return fail(host, s),
                }
            }
        }
    }
    if f.kernel_shut && f.plugtcp_shut {
        host.close(s);
        return false;
    }
    true
}

/// A forwarded connection failed on one side: reset plugtcp's (the kernel socket closes on
/// drop).
fn fail(host: &mut Host, s: ConnId) -> bool {
    host.abort(s);
    false
}

/// The client side of one HTTP/1.1 download (`plugtcp get`): sends the request, then
/// writes the body to `out`.
pub struct HttpGet<W: Write> {
    conn: ConnId,
    request: Vec<u8>,
    sent: usize,
    head: Vec<u8>,
    /// Status code and Content-Length, once the head is in.
    status: Option<(u16, Option<u64>)>,
    body: u64,
    out: W,
}

/// How a download ended.
#[derive(Debug, PartialEq, Eq)]
pub enum GetOutcome {
    /// The status and the body's length.
    Done(u16, u64),
    Failed(String),
}

impl<W: Write> HttpGet<W> {
    /// Opens the connection to `server` and queues `GET path` for `host_header`.
    pub fn start(
        host: &mut Host,
        server: std::net::SocketAddr,
        host_header: &str,
        path: &str,
        out: W,
    ) -> Result<Self, Errno> {
        let conn = host.connect(server, None)?;
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: plugtcp\r\nAccept: */*\r\nConnection: close\r\n\r\n"
        )
        .into_bytes();
        Ok(HttpGet {
            conn,
            request,
            sent: 0,
            head: Vec::new(),
            status: None,
            body: 0,
            out,
        })
    }

    /// Where the body went.
    pub fn out_mut(&mut self) -> &mut W {
        &mut self.out
    }

    /// One turn; Some once the download is over.
    pub fn poll(&mut self, host: &mut Host) -> Option<GetOutcome> {
        while self.sent < self.request.len() {
            match host.send(self.conn, &self.request[self.sent..]) {
                Ok(k) => self.sent += k,
                // Not connected yet, or the buffer is full: later.
                Err(Errno::EAGAIN) | Err(Errno::ENOTCONN) => return None,
                Err(e) => return Some(self.fail(host, format!("send: {e}"))),
            }
        }
        loop {
            let (conn, status) = (self.conn, self.status);
            let (head, out, body) = (&mut self.head, &mut self.out, &mut self.body);
            let mut write_err = None;
            let r = host.recv_with(conn, |run| match status {
                None => {
                    head.extend_from_slice(run);
                    run.len()
                }
                Some((_, len)) => {
                    let k = len.map_or(run.len(), |l| run.len().min((l - *body) as usize));
                    if let Err(e) = out.write_all(&run[..k]) {
                        write_err = Some(e);
                    }
                    *body += k as u64;
                    k
                }
            });
            if let Some(e) = write_err {
                return Some(self.fail(host, format!("write: {e}")));
            }
            match r {
                Ok(0) => {
                    return Some(match self.status {
                        Some((code, None)) => self.finish(host, code),
                        Some((code, Some(l))) if self.body == l => self.finish(host, code),
                        Some((_, Some(l))) => self.fail(
                            host,
                            format!("connection closed after {} of {l} bytes", self.body),
                        ),
                        None => self.fail(host, "connection closed before a response".into()),
                    })
                }
                Ok(_) => {}
                Err(Errno::EAGAIN) => return None,
                Err(e) => return Some(self.fail(host, format!("recv: {e}"))),
            }
            if self.status.is_none() {
                let Some(end) = find(&self.head, b"\r\n\r\n") else {
                    if self.head.len() > MAX_HEAD {
                        return Some(self.fail(host, "response head too long".into()));
                    }
                    continue;
                };
                let parsed = parse_response_head(&self.head[..end]);
                let Some((code, len)) = parsed else {
                    return Some(self.fail(host, "malformed response".into()));
                };
                self.status = Some((code, len));
                // Body bytes that came with the head.
                let rest = self.head.split_off(end + 4);
                let k = len.map_or(rest.len(), |l| rest.len().min(l as usize));
                if let Err(e) = self.out.write_all(&rest[..k]) {
                    return Some(self.fail(host, format!("write: {e}")));
                }
                self.body += k as u64;
            }
            if let Some((code, Some(l))) = self.status {
                if self.body == l {
                    return Some(self.finish(host, code));
                }
            }
        }
    }

    fn finish(&mut self, host: &mut Host, code: u16) -> GetOutcome {
        let _ = self.out.flush();
        host.close(self.conn);
        GetOutcome::Done(code, self.body)
    }

    fn fail(&mut self, host: &mut Host, why: String) -> GetOutcome {
        host.abort(self.conn);
        GetOutcome::Failed(why)
    }
}

/// Status code and Content-Length of a response head.
fn parse_response_head(head: &[u8]) -> Option<(u16, Option<u64>)> {
    let text = std::str::from_utf8(head).ok()?;
    let mut lines = text.split("\r\n");
    let status = lines.next()?;
    let mut parts = status.split(' ');
    if !parts.next()?.starts_with("HTTP/1.") {
        return None;
    }
    let code = parts.next()?.parse().ok()?;
    let len = lines.find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse().ok())?
    });
    Some((code, len))
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
