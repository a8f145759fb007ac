//! The flows' applications on kernel sockets, each end a thread of this process that has
//! entered its host's namespace; the streams' patterns and digests; TCP_INFO.
//!
//! Bulk and on/off: the sender host connects to the receiver host and writes; request/
//! response: the receiver host is the client (it connects and asks), the sender host
//! answers, so the responses (the measured stream) cross the path forward with the flow's
//! CC, as in the simulator. Every stream is a deterministic pattern; both ends SHA-256 it,
//! and the sender keeps digest checkpoints so the digest of the prefix the receiver got by
//! the end of the run (data still in flight then is not an error) is cheap to compare.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Shutdown, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::plan::FlowPlan;
use crate::lab::scenario::AppKind;

/// Socket timeouts: how often a blocked end looks at the clock and the end of the run.
const TICK: Duration = Duration::from_millis(20);
/// The longest a connection may take to open.
const CONNECT_LIMIT: Duration = Duration::from_secs(10);

/// The stream pattern: 8-byte words, word `w` a hash of (key, w), so bytes at the wrong
/// offset show wherever they land.
#[derive(Clone, Copy, Debug)]
pub struct Pattern(pub u64);

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Pattern {
    /// The pattern of flow `flow`'s stream `which` (0: data, 1: requests) in run `seed`.
    pub fn new(seed: u64, flow: usize, which: u64) -> Pattern {
        Pattern(mix(seed ^ mix(flow as u64 + 1) ^ (which << 40)))
    }

    /// The bytes at [off, off + out.len()).
    pub fn fill(&self, off: u64, out: &mut [u8]) {
        let mut w = off / 8;
        let mut skip = (off % 8) as usize;
        let mut i = 0;
        while i < out.len() {
            let bytes = mix(self.0 ^ w.wrapping_mul(0x9e37_79b9_7f4a_7c15)).to_le_bytes();
            let n = (8 - skip).min(out.len() - i);
            out[i..i + n].copy_from_slice(&bytes[skip..skip + n]);
            i += n;
            skip = 0;
            w += 1;
        }
    }
}

/// What a writer wrote: the running digest, and clones of it every [`SentStream::EVERY`]
/// bytes for the last [`SentStream::KEEP`] of them.
pub struct SentStream {
    pub pattern: Pattern,
    pub bytes: u64,
    hasher: Sha256,
    checkpoints: VecDeque<(u64, Sha256)>,
}

impl SentStream {
    const EVERY: u64 = 256 * 1024;
    const KEEP: usize = 512;

    pub fn new(pattern: Pattern) -> SentStream {
        SentStream {
            pattern,
            bytes: 0,
            hasher: Sha256::new(),
            checkpoints: VecDeque::from([(0, Sha256::new())]),
        }
    }

    /// Records `data`, the next bytes written.
    pub fn update(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let to_next = Self::EVERY - self.bytes % Self::EVERY;
            let n = (to_next as usize).min(data.len());
            self.hasher.update(&data[..n]);
            self.bytes += n as u64;
            data = &data[n..];
            if self.bytes.is_multiple_of(Self::EVERY) {
                self.checkpoints
                    .push_back((self.bytes, self.hasher.clone()));
                if self.checkpoints.len() > Self::KEEP {
                    self.checkpoints.pop_front();
                }
            }
        }
    }

    /// The digest of the first `n` bytes written (n <= bytes): from the last checkpoint
    /// before it (or from the start), the rest regenerated from the pattern.
    pub fn digest_of_prefix(&self, n: u64) -> [u8; 32] {
        if n == self.bytes {
            return self.hasher.clone().finalize().into();
        }
        let (mut at, mut h) = self
            .checkpoints
            .iter()
            .rev()
            .find(|(b, _)| *b <= n)
            .map_or((0, Sha256::new()), |(b, h)| (*b, h.clone()));
        let mut buf = vec![0u8; 64 * 1024];
        while at < n {
            let k = ((n - at) as usize).min(buf.len());
            self.pattern.fill(at, &mut buf[..k]);
            h.update(&buf[..k]);
            at += k as u64;
        }
        h.finalize().into()
    }
}

/// What a reader read.
#[derive(Clone)]
pub struct ReadStream {
    pub bytes: u64,
    hasher: Sha256,
}

impl Default for ReadStream {
    fn default() -> Self {
        ReadStream {
            bytes: 0,
            hasher: Sha256::new(),
        }
    }
}

impl ReadStream {
    fn update(&mut self, data: &[u8]) {
        self.hasher.update(data);
        self.bytes += data.len() as u64;
    }
    pub fn digest(&self) -> [u8; 32] {
        self.hasher.clone().finalize().into()
    }
}

/// The reader got a prefix of what the writer wrote, unchanged.
pub fn intact(sent: &SentStream, read: &ReadStream) -> bool {
    read.bytes <= sent.bytes && sent.digest_of_prefix(read.bytes) == read.digest()
}

/// The start of the run, once every end is ready.
#[derive(Default)]
pub struct Gate {
    t0: Mutex<Option<Instant>>,
    cv: Condvar,
}

impl Gate {
    pub fn open(&self, t0: Instant) {
        *self.t0.lock().unwrap_or_else(|e| e.into_inner()) = Some(t0);
        self.cv.notify_all();
    }

    /// The start time, or None when the run was called off first.
    pub fn wait(&self, over: &AtomicBool) -> Option<Instant> {
        let mut g = self.t0.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(t) = *g {
                return Some(t);
            }
            if over.load(Ordering::Relaxed) {
                return None;
            }
            g = self
                .cv
                .wait_timeout(g, TICK)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

/// What the sampler sees of a flow while it runs.
pub struct FlowShared {
    /// Measured-stream bytes the receiving end has read.
    pub received: AtomicU64,
    /// When a sized flow's last byte was read (ns since t0; u64::MAX: not yet).
    pub done_at_ns: AtomicU64,
    /// A duplicate of the data-sending socket, for TCP_INFO.
    pub info: Mutex<Option<OwnedFd>>,
}

impl Default for FlowShared {
    fn default() -> Self {
        FlowShared {
            received: AtomicU64::new(0),
            done_at_ns: AtomicU64::new(u64::MAX),
            info: Mutex::new(None),
        }
    }
}

/// One end's result.
pub enum EndOut {
    /// The sender host's end: the data it wrote; the requests it read (request/response).
    Sender(SentStream, ReadStream),
    /// The receiver host's end: the data it read; the requests it wrote.
    Receiver(ReadStream, Option<SentStream>),
}

/// What an end needs besides its flow.
pub struct EndCtx<'a> {
    pub flow: &'a FlowPlan,
    pub index: usize,
    pub seed: u64,
    pub shared: &'a FlowShared,
    pub gate: &'a Gate,
    pub over: &'a AtomicBool,
    /// The peer's address and the port (the listening end binds its own address).
    pub local: Ipv4Addr,
    pub peer: Ipv4Addr,
    /// SO_SNDBUF for the host's sockets (FreeBSD's sendbuf_auto = 0).
    pub fixed_sndbuf: Option<u64>,
}

fn setsockopt_raw(fd: RawFd, level: i32, opt: i32, val: &[u8]) -> io::Result<()> {
    // SAFETY: val is a valid buffer of val.len() bytes.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            opt,
            val.as_ptr().cast(),
            val.len() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn set_int(fd: RawFd, level: i32, opt: i32, v: i32) -> io::Result<()> {
    setsockopt_raw(fd, level, opt, &v.to_ne_bytes())
}

/// Sets the socket's congestion control (the kernel's module name).
pub fn set_cc(fd: RawFd, cc: &str) -> io::Result<()> {
    setsockopt_raw(fd, libc::IPPROTO_TCP, libc::TCP_CONGESTION, cc.as_bytes())
}

fn sockopts(fd: RawFd, ctx: &EndCtx<'_>) -> io::Result<()> {
    if let Some(b) = ctx.fixed_sndbuf {
        // Linux doubles SO_SNDBUF (for its bookkeeping); tcp_wmem's numbers are doubled ones.
        set_int(
            fd,
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            (b / 2).min(i32::MAX as u64) as i32,
        )?;
    }
    Ok(())
}

fn prepare_stream(s: &TcpStream) -> io::Result<()> {
    s.set_nonblocking(false)?;
    s.set_read_timeout(Some(TICK))?;
    s.set_write_timeout(Some(TICK))?;
    s.set_nodelay(false)
}

/// Connects to `peer:port` with congestion control `cc` (None: the host's default), giving
/// up when the run is over.
fn connect(ctx: &EndCtx<'_>, port: u16, cc: Option<&str>) -> Result<TcpStream, String> {
    let what = |e: io::Error| format!("connecting to {}:{port}: {e}", ctx.peer);
    // SAFETY: plain socket(2).
    let fd = unsafe {
        libc::socket(
            libc::AF_INET,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            0,
        )
    };
    if fd < 0 {
        return Err(what(io::Error::last_os_error()));
    }
    // SAFETY: a fresh descriptor we own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    if let Some(cc) = cc {
        set_cc(fd.as_raw_fd(), cc).map_err(|e| format!("TCP_CONGESTION {cc}: {e}"))?;
    }
    sockopts(fd.as_raw_fd(), ctx).map_err(what)?;
    if ctx.flow.app == AppKind::OnOff {
        // As the simulator's on/off source: little unsent data queued, so "off" is silence
        // on the wire rather than a send buffer draining (writes block above it).
        set_int(
            fd.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_NOTSENT_LOWAT,
            64 * 1024,
        )
        .map_err(what)?;
    }
    let sa = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(ctx.peer).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: sa is a sockaddr_in of the size given.
    let r = unsafe {
        libc::connect(
            fd.as_raw_fd(),
            (&sa as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    if r != 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINPROGRESS) {
            return Err(what(e));
        }
        let limit = Instant::now() + CONNECT_LIMIT;
        loop {
            let mut p = libc::pollfd {
                fd: fd.as_raw_fd(),
                events: libc::POLLOUT,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            let n = unsafe { libc::poll(&mut p, 1, TICK.as_millis() as i32) };
            if n > 0 {
                break;
            }
            if ctx.over.load(Ordering::Relaxed) || Instant::now() > limit {
                return Err(what(io::Error::from(io::ErrorKind::TimedOut)));
            }
        }
        let mut err: i32 = 0;
        let mut len = std::mem::size_of::<i32>() as libc::socklen_t;
        // SAFETY: SO_ERROR writes an int.
        unsafe {
            libc::getsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_ERROR,
                (&mut err as *mut i32).cast(),
                &mut len,
            );
        }
        if err != 0 {
            return Err(what(io::Error::from_raw_os_error(err)));
        }
    }
    let s = TcpStream::from(fd);
    prepare_stream(&s).map_err(what)?;
    Ok(s)
}

/// Binds the listening end (before the run starts).
pub fn listen(ctx: &EndCtx<'_>, cc: Option<&str>) -> Result<TcpListener, String> {
    let port = super::plan::port(ctx.flow.copy);
    let l = TcpListener::bind((ctx.local, port))
        .map_err(|e| format!("listening on {}:{port}: {e}", ctx.local))?;
    if let Some(cc) = cc {
        set_cc(l.as_raw_fd(), cc).map_err(|e| format!("TCP_CONGESTION {cc}: {e}"))?;
    }
    sockopts(l.as_raw_fd(), ctx).map_err(|e| e.to_string())?;
    l.set_nonblocking(true).map_err(|e| e.to_string())?;
    Ok(l)
}

fn accept(l: &TcpListener, over: &AtomicBool) -> Result<Option<TcpStream>, String> {
    loop {
        match l.accept() {
            Ok((s, _)) => {
                prepare_stream(&s).map_err(|e| e.to_string())?;
                return Ok(Some(s));
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if over.load(Ordering::Relaxed) {
                    return Ok(None);
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(e) => return Err(format!("accept: {e}")),
        }
    }
}

/// Sleeps until `t0 + at_ns`; false when the run ended first.
fn sleep_until(t0: Instant, at_ns: u64, over: &AtomicBool) -> bool {
    let until = t0 + Duration::from_nanos(at_ns);
    loop {
        if over.load(Ordering::Relaxed) {
            return false;
        }
        let now = Instant::now();
        if now >= until {
            return true;
        }
        std::thread::sleep((until - now).min(TICK));
    }
}

fn now_ns(t0: Instant) -> u64 {
    Instant::now().saturating_duration_since(t0).as_nanos() as u64
}

fn timed_out(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

/// Writes the pattern from `out.bytes` up to `goal` (or until `until_ns` or the end of the
/// run), recording what was written. Returns whether `goal` was reached.
fn write_until(
    s: &mut TcpStream,
    out: &mut SentStream,
    buf: &mut Chunk,
    goal: u64,
    t0: Instant,
    until_ns: u64,
    over: &AtomicBool,
) -> Result<bool, String> {
    while out.bytes < goal {
        if over.load(Ordering::Relaxed) || now_ns(t0) >= until_ns {
            return Ok(false);
        }
        let data = buf.at(out.pattern, out.bytes, goal);
        match s.write(data) {
            Ok(0) => return Err("write: connection closed".into()),
            Ok(n) => {
                let d = &data[..n];
                out.update(d);
            }
            Err(e) if timed_out(&e) => {}
            Err(e) => return Err(format!("write: {e}")),
        }
    }
    Ok(true)
}

/// A window of the pattern, regenerated only when the writer moves past it.
struct Chunk {
    off: u64,
    data: Vec<u8>,
}

impl Chunk {
    const LEN: usize = 256 * 1024;
    fn new() -> Chunk {
        Chunk {
            off: u64::MAX,
            data: Vec::new(),
        }
    }
    /// The pattern from `at`, at most to `goal`.
    fn at(&mut self, p: Pattern, at: u64, goal: u64) -> &[u8] {
        let end = self.off.saturating_add(self.data.len() as u64);
        if at < self.off || at >= end {
            self.off = at;
            self.data.resize(Self::LEN, 0);
            p.fill(at, &mut self.data);
        }
        let from = (at - self.off) as usize;
        let to = ((goal - self.off).min(self.data.len() as u64)) as usize;
        &self.data[from..to]
    }
}

/// Reads what `s` has until `want` bytes are in `into` (None: until EOF), the end of the run
/// or `until_ns`. Counts into `shared` when `measured`. Returns false at EOF.
#[allow(clippy::too_many_arguments)]
fn read_until(
    s: &mut TcpStream,
    into: &mut ReadStream,
    buf: &mut [u8],
    want: Option<u64>,
    t0: Instant,
    ctx: &EndCtx<'_>,
    measured: bool,
) -> Result<bool, String> {
    loop {
        if want.is_some_and(|w| into.bytes >= w) || ctx.over.load(Ordering::Relaxed) {
            return Ok(true);
        }
        let room = want.map_or(buf.len(), |w| ((w - into.bytes) as usize).min(buf.len()));
        match s.read(&mut buf[..room]) {
            Ok(0) => return Ok(false),
            Ok(n) => {
                into.update(&buf[..n]);
                if measured {
                    let total =
                        ctx.shared.received.fetch_add(n as u64, Ordering::Relaxed) + n as u64;
                    if ctx.flow.size.is_some_and(|sz| total >= sz) {
                        let _ = ctx.shared.done_at_ns.compare_exchange(
                            u64::MAX,
                            now_ns(t0),
                            Ordering::Relaxed,
                            Ordering::Relaxed,
                        );
                    }
                }
            }
            Err(e) if timed_out(&e) => {}
            Err(e) => return Err(format!("read: {e}")),
        }
    }
}

fn share_socket(ctx: &EndCtx<'_>, s: &TcpStream) -> Result<(), String> {
    let dup = s.try_clone().map_err(|e| format!("dup: {e}"))?;
    *ctx.shared.info.lock().unwrap_or_else(|e| e.into_inner()) = Some(OwnedFd::from(dup));
    Ok(())
}

/// The sender host's end. `listener`: bound beforehand for request/response.
pub fn sender_end(ctx: &EndCtx<'_>, listener: Option<TcpListener>) -> Result<EndOut, String> {
    let f = ctx.flow;
    let mut data = SentStream::new(Pattern::new(ctx.seed, ctx.index, 0));
    let mut requests = ReadStream::default();
    let Some(t0) = ctx.gate.wait(ctx.over) else {
        return Ok(EndOut::Sender(data, requests));
    };
    let mut chunk = Chunk::new();
    if f.app == AppKind::RequestResponse {
        let Some(l) = listener else {
            return Err("no listener".into());
        };
        let Some(mut s) = accept(&l, ctx.over)? else {
            return Ok(EndOut::Sender(data, requests));
        };
        set_cc(s.as_raw_fd(), f.kernel_cc).map_err(|e| format!("TCP_CONGESTION: {e}"))?;
        share_socket(ctx, &s)?;
        let mut buf = vec![0u8; 64 * 1024];
        let req = f.request.max(1);
        loop {
            // Answer every whole request read so far.
            let owed = requests.bytes / req * f.response;
            if !write_until(&mut s, &mut data, &mut chunk, owed, t0, u64::MAX, ctx.over)? {
                break;
            }
            if ctx.over.load(Ordering::Relaxed) {
                break;
            }
            // One read (a tick at most), then look at what is owed again.
            match s.read(&mut buf) {
                Ok(0) => {
                    let _ = s.shutdown(Shutdown::Write);
                    break;
                }
                Ok(n) => requests.update(&buf[..n]),
                Err(e) if timed_out(&e) => {}
                Err(e) => return Err(format!("read: {e}")),
            }
        }
        return Ok(EndOut::Sender(data, requests));
    }
    if !sleep_until(t0, f.start_ns, ctx.over) {
        return Ok(EndOut::Sender(data, requests));
    }
    let mut s = connect(ctx, super::plan::port(f.copy), Some(f.kernel_cc))?;
    share_socket(ctx, &s)?;
    let goal = f.size.unwrap_or(u64::MAX);
    loop {
        let now = now_ns(t0);
        if now >= f.stop_ns || data.bytes >= goal || ctx.over.load(Ordering::Relaxed) {
            break;
        }
        if f.app == AppKind::OnOff && !f.on_at(now) {
            if !sleep_until(t0, f.next_on(now).min(f.stop_ns), ctx.over) {
                break;
            }
            continue;
        }
        let until = if f.app == AppKind::OnOff {
            f.next_on(now) - f.off_ns
        } else {
            f.stop_ns
        };
        write_until(
            &mut s,
            &mut data,
            &mut chunk,
            goal,
            t0,
            until.min(f.stop_ns),
            ctx.over,
        )?;
    }
    let _ = s.shutdown(Shutdown::Write);
    Ok(EndOut::Sender(data, requests))
}

/// The receiver host's end. `listener`: bound beforehand for bulk and on/off.
pub fn receiver_end(ctx: &EndCtx<'_>, listener: Option<TcpListener>) -> Result<EndOut, String> {
    let f = ctx.flow;
    let mut data = ReadStream::default();
    let Some(t0) = ctx.gate.wait(ctx.over) else {
        return Ok(EndOut::Receiver(data, None));
    };
    let mut buf = vec![0u8; 256 * 1024];
    if f.app != AppKind::RequestResponse {
        let Some(l) = listener else {
            return Err("no listener".into());
        };
        let Some(mut s) = accept(&l, ctx.over)? else {
            return Ok(EndOut::Receiver(data, None));
        };
        read_until(&mut s, &mut data, &mut buf, None, t0, ctx, true)?;
        return Ok(EndOut::Receiver(data, None));
    }
    let mut requests = SentStream::new(Pattern::new(ctx.seed, ctx.index, 1));
    if !sleep_until(t0, f.start_ns, ctx.over) {
        return Ok(EndOut::Receiver(data, Some(requests)));
    }
    let mut s = connect(ctx, super::plan::port(f.copy), None)?;
    let mut chunk = Chunk::new();
    let mut exchanges = 0u64;
    let mut open = true;
    while now_ns(t0) < f.stop_ns && !ctx.over.load(Ordering::Relaxed) {
        let goal = (exchanges + 1) * f.request;
        if !write_until(
            &mut s,
            &mut requests,
            &mut chunk,
            goal,
            t0,
            f.stop_ns,
            ctx.over,
        )? {
            break;
        }
        let want = (exchanges + 1) * f.response;
        open = read_until(&mut s, &mut data, &mut buf, Some(want), t0, ctx, true)?;
        if !open || data.bytes < want {
            break;
        }
        exchanges += 1;
        let think_end = now_ns(t0).saturating_add(f.think_ns).min(f.stop_ns);
        if !sleep_until(t0, think_end, ctx.over) {
            break;
        }
    }
    let _ = s.shutdown(Shutdown::Write);
    if open {
        // Responses still owed arrive until the server closes or the run ends.
        read_until(&mut s, &mut data, &mut buf, None, t0, ctx, true)?;
    }
    Ok(EndOut::Receiver(data, Some(requests)))
}

/// The fields of Linux's struct tcp_info this module reads (offsets of the uapi struct;
/// a field is there when the kernel's struct is long enough).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct TcpInfo {
    pub snd_mss: u32,
    pub unacked: u32,
    pub sacked: u32,
    pub lost: u32,
    pub retrans: u32,
    pub rtt_us: u32,
    pub snd_cwnd: u32,
    pub total_retrans: u32,
    pub pacing_rate: Option<u64>,
    pub segs_out: Option<u32>,
    /// Time (us) busy sending, and limited by the receive window / the send buffer.
    pub busy_us: Option<u64>,
    pub rwnd_limited_us: Option<u64>,
    pub sndbuf_limited_us: Option<u64>,
    pub snd_wnd: Option<u32>,
}

impl TcpInfo {
    /// Parses the first `buf.len()` bytes the kernel returned.
    pub fn parse(buf: &[u8]) -> Option<TcpInfo> {
        let u32_at = |o: usize| -> Option<u32> {
            buf.get(o..o + 4)
                .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
        };
        let u64_at = |o: usize| -> Option<u64> {
            buf.get(o..o + 8).map(|b| {
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                u64::from_ne_bytes(a)
            })
        };
        Some(TcpInfo {
            snd_mss: u32_at(16)?,
            unacked: u32_at(24)?,
            sacked: u32_at(28)?,
            lost: u32_at(32)?,
            retrans: u32_at(36)?,
            rtt_us: u32_at(68)?,
            snd_cwnd: u32_at(80)?,
            total_retrans: u32_at(100)?,
            pacing_rate: u64_at(104),
            segs_out: u32_at(136),
            busy_us: u64_at(168),
            rwnd_limited_us: u64_at(176),
            sndbuf_limited_us: u64_at(184),
            snd_wnd: u32_at(228),
        })
    }

    /// Bytes in flight, as Linux counts them (packets out, less SACKed and lost, plus
    /// retransmitted), in full segments.
    pub fn inflight_bytes(&self) -> u64 {
        let pkts = (self.unacked as u64 + self.retrans as u64)
            .saturating_sub(self.sacked as u64 + self.lost as u64);
        pkts * self.snd_mss as u64
    }
}

/// TCP_INFO of the socket `fd`.
pub fn tcp_info(fd: RawFd) -> Option<TcpInfo> {
    let mut buf = [0u8; 512];
    let mut len = buf.len() as libc::socklen_t;
    // SAFETY: TCP_INFO writes at most len bytes into buf and updates len.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            buf.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if r != 0 {
        return None;
    }
    TcpInfo::parse(&buf[..(len as usize).min(buf.len())])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_at_any_offset_is_the_same_stream() {
        let p = Pattern::new(3, 1, 0);
        let mut whole = vec![0u8; 1000];
        p.fill(0, &mut whole);
        for off in [0usize, 1, 7, 8, 13, 500] {
            let mut part = vec![0u8; 123];
            p.fill(off as u64, &mut part);
            assert_eq!(part[..], whole[off..off + 123]);
        }
        let mut other = vec![0u8; 1000];
        Pattern::new(3, 2, 0).fill(0, &mut other);
        assert_ne!(whole, other);
    }

    #[test]
    fn prefixes_of_what_was_sent_check_out() {
        let p = Pattern::new(9, 0, 0);
        let mut sent = SentStream::new(p);
        let mut chunk = Chunk::new();
        let total = SentStream::EVERY * 3 + 4321;
        let mut at = 0;
        // Odd write sizes, as a socket takes them.
        while at < total {
            let d = chunk.at(p, at, total);
            let n = d.len().min(70_001);
            sent.update(&d[..n]);
            at += n as u64;
        }
        assert_eq!(sent.bytes, total);
        for n in [0, 1, SentStream::EVERY, SentStream::EVERY * 2 + 17, total] {
            let mut read = ReadStream::default();
            let mut buf = vec![0u8; n as usize];
            p.fill(0, &mut buf);
            read.update(&buf);
            assert!(intact(&sent, &read), "prefix {n}");
            if n > 0 {
                let mut bad = ReadStream::default();
                buf[n as usize / 2] ^= 1;
                bad.update(&buf);
                assert!(!intact(&sent, &bad), "corrupt prefix {n}");
            }
        }
        let mut long = ReadStream::default();
        long.update(&vec![0u8; total as usize + 1]);
        assert!(!intact(&sent, &long));
    }

    #[test]
    fn tcp_info_fields_need_the_length() {
        let mut b = vec![0u8; 232];
        b[80..84].copy_from_slice(&10u32.to_ne_bytes());
        b[16..20].copy_from_slice(&1448u32.to_ne_bytes());
        b[24..28].copy_from_slice(&7u32.to_ne_bytes());
        b[228..232].copy_from_slice(&65535u32.to_ne_bytes());
        let i = TcpInfo::parse(&b).unwrap();
        assert_eq!(i.snd_cwnd, 10);
        assert_eq!(i.inflight_bytes(), 7 * 1448);
        assert_eq!(i.snd_wnd, Some(65535));
        let short = TcpInfo::parse(&b[..200]).unwrap();
        assert_eq!(short.snd_wnd, None);
        assert_eq!(short.sndbuf_limited_us, Some(0));
        assert!(TcpInfo::parse(&b[..90]).is_none());
    }
}
