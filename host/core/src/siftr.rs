//! Per-connection traces after FreeBSD's siftr(4) (Statistical Information For TCP
//! Research): one CSV line for every ACK a connection's stack processes, written by the
//! host (it owns the `Tcpcb` and sees each segment go in), never by the stacks.
//!
//! Two ways to switch it on:
//! * per connection: `setsockopt(IPPROTO_TCP, TCP_SIFTR, b"/path/trace.csv")` (an empty
//!   value stops it), or [`Host::siftr_attach`] with any writer, e.g. a [`SiftrBuffer`]
//!   kept in memory;
//! * host-wide, as siftr(4): `net.inet.siftr.enabled=1` appends the lines of every
//!   connection (or only those with `net.inet.siftr.port_filter` as local or foreign port)
//!   to `net.inet.siftr.logfile`.
//!
//! A line is formatted into a buffer the trace reuses and reaches its file 64 KiB at a
//! time, so steady state neither allocates nor makes a system call per ACK. Untraced
//! connections pay one well-predicted branch per segment.

use std::any::Any;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};

use plugtcp_abi::segment::th;
use plugtcp_abi::Errno;

use crate::conn::Conn;
use crate::conn_table::ConnId;
use crate::observe::{ConnObserver, HostObserver, SegmentSeen};
use crate::sysctl::{DynamicNode, SysctlValue};
use crate::Host;

/// The CSV header: the columns of every line.
///
/// `time` is the host clock in seconds (microseconds, as siftr), `state` the TCP state
/// (FreeBSD's tcpstates names), `phase` the congestion phase (SS slow start, CA congestion
/// avoidance, FR fast recovery, CR congestion recovery), sizes in bytes, times in
/// microseconds, `acked` the bytes this ACK acknowledged, `flight` snd_max - snd_una after
/// it, `rcv_wnd` the window last advertised, `rexmits` the connection's retransmitted
/// segments so far, `sndbuf` the bytes in the send buffer, `stack` and `cc` the function
/// block and CC module that handled the ACK (a live switch shows where they change).
pub const HEADER: &str = "time,laddr,lport,faddr,fport,state,phase,snd_cwnd,snd_ssthresh,\
srtt_us,rttvar_us,rto_us,flight,acked,snd_una,snd_max,snd_wnd,rcv_wnd,maxseg,dupacks,\
rexmits,sndbuf,stack,cc\n";

/// Number of columns in [`HEADER`].
pub const COLUMNS: usize = 24;

/// Buffered lines are written out when this much has gathered.
const FLUSH_AT: usize = 64 * 1024;

/// FreeBSD's default `net.inet.siftr.logfile`.
pub const DEFAULT_LOGFILE: &str = "/var/log/siftr.log";

/// Lines on their way to one writer.
struct LineSink {
    buf: Vec<u8>,
    out: Box<dyn Write + Send>,
    /// What TCP_SIFTR reads back: the file's path, or "" for a writer given by the API.
    name: String,
    /// The first write error; later lines are dropped (a trace must not stop the stack).
    error: Option<io::ErrorKind>,
}

impl LineSink {
    fn new(out: Box<dyn Write + Send>, name: String) -> Self {
        LineSink {
            buf: Vec::with_capacity(FLUSH_AT + 512),
            out,
            name,
            error: None,
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        if let Some(k) = self.error {
            self.buf.clear();
            return Err(k.into());
        }
        let r = self
            .out
            .write_all(&self.buf)
            .and_then(|()| self.out.flush());
        self.buf.clear();
        if let Err(e) = &r {
            self.error = Some(e.kind());
        }
        r
    }
}

impl Drop for LineSink {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

/// A connection's own trace (TCP_SIFTR or [`Host::siftr_attach`]).
pub struct ConnTrace {
    sink: LineSink,
}

/// The host-wide log of `net.inet.siftr.*`, kept in the worker while enabled.
pub struct SiftrLog {
    sink: LineSink,
    /// Only connections with this local or foreign port (0: all).
    pub port_filter: u16,
}

impl LineSink {
    /// The line for an ACK the stack handled (siftr logs on ACKs only).
    fn log(&mut self, seen: &SegmentSeen<'_>) {
        if seen.flags & th::ACK == 0 {
            return;
        }
        format_line(&mut self.buf, seen);
        if self.buf.len() >= FLUSH_AT {
            let _ = self.flush();
        }
    }
}

impl ConnObserver for ConnTrace {
    fn segment(&mut self, seen: &SegmentSeen<'_>) {
        self.sink.log(seen);
    }
    fn flush(&mut self) -> io::Result<()> {
        self.sink.flush()
    }
    fn name(&self) -> &str {
        &self.sink.name
    }
}

impl HostObserver for SiftrLog {
    fn wants(&self, local: &SocketAddr, remote: &SocketAddr) -> bool {
        self.port_filter == 0
            || local.port() == self.port_filter
            || remote.port() == self.port_filter
    }
    fn segment(&mut self, seen: &SegmentSeen<'_>) {
        self.sink.log(seen);
    }
    fn flush(&mut self) -> io::Result<()> {
        self.sink.flush()
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

/// Opens a trace file: `append` for the host-wide log (as siftr, it grows across
/// enables), else created afresh. The header goes first into an empty file.
fn open_trace(path: &Path, append: bool) -> io::Result<File> {
    let mut f = if append {
        OpenOptions::new().create(true).append(true).open(path)?
    } else {
        File::create(path)?
    };
    if f.metadata()?.len() == 0 {
        f.write_all(HEADER.as_bytes())?;
    }
    Ok(f)
}

fn errno_of(e: &io::Error) -> Errno {
    Errno(e.raw_os_error().unwrap_or(Errno::EIO.0))
}

/// A trace kept in memory: a clonable writer whose bytes the test or application reads
/// with [`SiftrBuffer::contents`]. Lines reach it 64 KiB at a time and when the trace
/// ends (detach, connection freed) or is flushed.
#[derive(Clone, Default)]
pub struct SiftrBuffer(Arc<Mutex<Vec<u8>>>);

impl SiftrBuffer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Everything written so far.
    pub fn contents(&self) -> Vec<u8> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Write for SiftrBuffer {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Appends one CSV line (with its newline) to `out`. No allocation once `out` has room.
fn format_line(out: &mut Vec<u8>, seen: &SegmentSeen<'_>) {
    let (now_ns, local, remote, tp) = (seen.now, &seen.local, &seen.remote, seen.tp);
    let phase = if tp.in_fastrecovery() {
        "FR"
    } else if tp.in_congrecovery() {
        "CR"
    } else if tp.snd_cwnd < tp.snd_ssthresh {
        "SS"
    } else {
        "CA"
    };
    let us = now_ns / 1000;
    // Writing into a Vec cannot fail.
    let _ = writeln!(
        out,
        "{}.{:06},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
        us / 1_000_000,
        us % 1_000_000,
        local.ip(),
        local.port(),
        remote.ip(),
        remote.port(),
        tp.t_state.name(),
        phase,
        tp.snd_cwnd,
        tp.snd_ssthresh,
        tp.t_srtt,
        tp.t_rttvar,
        tp.t_rxtcur,
        tp.flight_size(),
        seen.acked,
        tp.snd_una,
        tp.snd_max,
        tp.snd_wnd,
        // The window last advertised (what siftr's rcv_wnd shows).
        tp.rcv_adv.wrapping_sub(tp.rcv_nxt),
        tp.t_maxseg,
        tp.t_dupacks,
        tp.t_sndrexmitpack,
        seen.snd_queued,
        seen.stack,
        seen.cc,
    );
}

/// The `net.inet.siftr.*` variables, shared by their sysctl nodes and read by the host when
/// `gen` moves (see [`Host::refresh_siftr`]).
pub struct SiftrConf {
    enabled: AtomicBool,
    port_filter: AtomicU32,
    logfile: Mutex<String>,
    /// A log file opened by a write to `enabled` or `logfile`, for the host to take.
    opened: Mutex<Option<File>>,
    gen: AtomicU64,
}

impl Default for SiftrConf {
    fn default() -> Self {
        SiftrConf {
            enabled: AtomicBool::new(false),
            port_filter: AtomicU32::new(0),
            logfile: Mutex::new(DEFAULT_LOGFILE.to_owned()),
            opened: Mutex::new(None),
            gen: AtomicU64::new(0),
        }
    }
}

impl SiftrConf {
    /// Changes seen so far; the host compares it with the last one it applied.
    pub fn generation(&self) -> u64 {
        self.gen.load(Relaxed)
    }

    fn logfile(&self) -> String {
        self.logfile
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Opens `path` for the log now, so that a bad path is the write's errno.
    fn open_log(&self, path: &str) -> Result<(), Errno> {
        let f = open_trace(Path::new(path), true).map_err(|e| errno_of(&e))?;
        *self.opened.lock().unwrap_or_else(PoisonError::into_inner) = Some(f);
        Ok(())
    }
}

#[derive(Clone, Copy)]
enum Var {
    Enabled,
    Logfile,
    PortFilter,
}

/// One `net.inet.siftr.*` variable.
struct SiftrNode {
    conf: Arc<SiftrConf>,
    var: Var,
}

impl DynamicNode for SiftrNode {
    fn get(&self) -> SysctlValue {
        let c = &self.conf;
        match self.var {
            Var::Enabled => SysctlValue::Int(c.enabled.load(Relaxed) as i64),
            Var::Logfile => SysctlValue::Str(c.logfile()),
            Var::PortFilter => SysctlValue::Int(c.port_filter.load(Relaxed) as i64),
        }
    }

    fn set(&self, v: &str) -> Result<(), Errno> {
        let c = &self.conf;
        match self.var {
            Var::Enabled => {
                let on = match crate::sysctl::parse_int(v)? {
                    0 => false,
                    1 => true,
                    _ => return Err(Errno::EINVAL),
                };
                if on == c.enabled.load(Relaxed) {
                    return Ok(());
                }
                if on {
                    c.open_log(&c.logfile())?;
                }
                c.enabled.store(on, Relaxed);
            }
            Var::Logfile => {
                if v.is_empty() {
                    return Err(Errno::EINVAL);
                }
                if c.enabled.load(Relaxed) {
                    // As siftr: the log moves to the new file at once.
                    c.open_log(v)?;
                }
                *c.logfile.lock().unwrap_or_else(PoisonError::into_inner) = v.to_owned();
            }
            Var::PortFilter => {
                let p = crate::sysctl::parse_int(v)?;
                if !(0..=65535).contains(&p) {
                    return Err(Errno::EINVAL);
                }
                c.port_filter.store(p as u32, Relaxed);
            }
        }
        c.gen.fetch_add(1, Relaxed);
        Ok(())
    }

    fn description(&self) -> String {
        match self.var {
            Var::Enabled => "switch siftr module operations on/off",
            Var::Logfile => "file to save siftr log messages to",
            Var::PortFilter => "enable packet filter on a TCP port",
        }
        .to_owned()
    }

    fn read_only(&self) -> bool {
        false
    }
}

/// siftr(4)'s variables.
pub const SYSCTL_ENABLED: &str = "net.inet.siftr.enabled";
pub const SYSCTL_LOGFILE: &str = "net.inet.siftr.logfile";
pub const SYSCTL_PORT_FILTER: &str = "net.inet.siftr.port_filter";

impl Host {
    fn siftr_conn(&mut self, slot: usize) -> Result<&mut Conn, Errno> {
        self.conns
            .get_mut(slot)
            .and_then(Option::as_mut)
            .map(|b| &mut **b)
            .ok_or(Errno::EBADF)
    }

    /// Hangs `net.inet.siftr.*` on the sysctl tree.
    pub(crate) fn register_siftr_sysctls(&self) {
        for (name, var) in [
            (SYSCTL_ENABLED, Var::Enabled),
            (SYSCTL_LOGFILE, Var::Logfile),
            (SYSCTL_PORT_FILTER, Var::PortFilter),
        ] {
            let node = Arc::new(SiftrNode {
                conf: self.siftr_conf.clone(),
                var,
            });
            // A fresh tree has none of these names.
            let _ = self.sysctl.register_dynamic(name, node);
        }
    }

    /// Applies `net.inet.siftr.*` writes: opens, moves or closes the host-wide log.
    pub(crate) fn refresh_siftr(&mut self) {
        let conf = &self.siftr_conf;
        self.siftr_gen = conf.generation();
        let opened = conf
            .opened
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if !conf.enabled.load(Relaxed) {
            // Dropping the log flushes it.
            self.worker.observer = None;
            return;
        }
        let port_filter = conf.port_filter.load(Relaxed) as u16;
        if let Some(f) = opened {
            let sink = LineSink::new(Box::new(f), conf.logfile());
            self.worker.observer = Some(Box::new(SiftrLog { sink, port_filter }));
        }
        if let Some(log) = self
            .worker
            .observer
            .as_mut()
            .and_then(|o| o.as_any_mut().downcast_mut::<SiftrLog>())
        {
            log.port_filter = port_filter;
        }
    }

    /// Writes what the host-wide log holds to its file.
    pub fn siftr_log_flush(&mut self) -> io::Result<()> {
        match self.worker.observer.as_mut() {
            Some(log) => log.flush(),
            None => Ok(()),
        }
    }

    /// Traces connection `slot` into `out` (replacing a trace it had, which is flushed).
    /// The header is written first.
    pub fn siftr_attach(&mut self, id: ConnId, out: Box<dyn Write + Send>) -> Result<(), Errno> {
        let slot = self.conns.resolve(id);
        self.siftr_attach_named(slot, out, String::new(), true)
    }

    fn siftr_attach_named(
        &mut self,
        slot: usize,
        out: Box<dyn Write + Send>,
        name: String,
        header: bool,
    ) -> Result<(), Errno> {
        let c = self.siftr_conn(slot)?;
        let mut sink = LineSink::new(out, name);
        if header {
            sink.buf.extend_from_slice(HEADER.as_bytes());
        }
        c.side.observer = Some(Box::new(ConnTrace { sink }));
        Ok(())
    }

    /// Ends connection `slot`'s own trace, writing out what it holds.
    pub fn siftr_detach(&mut self, id: ConnId) -> io::Result<()> {
        let slot = self.conns.resolve(id);
        let c = self.siftr_conn(slot).map_err(io::Error::from)?;
        match c.side.observer.take() {
            Some(mut t) => t.flush(),
            None => Ok(()),
        }
    }

    /// Writes out what connection `slot`'s own trace holds (the first write error, if
    /// any, comes back here).
    pub fn siftr_flush(&mut self, id: ConnId) -> io::Result<()> {
        let slot = self.conns.resolve(id);
        let c = self.siftr_conn(slot).map_err(io::Error::from)?;
        match c.side.observer.as_mut() {
            Some(t) => t.flush(),
            None => Ok(()),
        }
    }

    /// setsockopt(TCP_SIFTR): a path starts a trace into that file (created afresh, header
    /// first; its open errno otherwise), an empty value ends the trace.
    pub(crate) fn siftr_setsockopt(&mut self, slot: usize, val: &[u8]) -> Result<(), Errno> {
        let path = std::str::from_utf8(val)
            .map_err(|_| Errno::EINVAL)?
            .trim_end_matches('\0');
        self.siftr_conn(slot)?;
        if path.is_empty() {
            let id = self.conns.id(slot).ok_or(Errno::ENOTCONN)?;
            return self.siftr_detach(id).map_err(|e| errno_of(&e));
        }
        let f = open_trace(&PathBuf::from(path), false).map_err(|e| errno_of(&e))?;
        self.siftr_attach_named(slot, Box::new(f), path.to_owned(), false)
    }

    /// getsockopt(TCP_SIFTR): the trace file's path; "" when untraced or traced into a
    /// writer.
    pub(crate) fn siftr_getsockopt(&mut self, slot: usize) -> Result<Vec<u8>, Errno> {
        let c = self.siftr_conn(slot)?;
        Ok(c.side
            .observer
            .as_ref()
            .map_or_else(Vec::new, |t| t.name().as_bytes().to_vec()))
    }
}

/// One parsed trace line: what `plugtcp plot` draws.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TracePoint {
    /// Seconds.
    pub time: f64,
    pub snd_cwnd: u64,
    pub snd_ssthresh: u64,
    pub srtt_us: u64,
    pub flight: u64,
    pub phase: Phase,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    SlowStart,
    CongestionAvoidance,
    FastRecovery,
    CongRecovery,
}

/// A parsed trace: the lines of its first connection.
#[derive(Clone, Debug, PartialEq)]
pub struct Trace {
    pub points: Vec<TracePoint>,
    /// The function block and CC module of the first line ("" in a trace from before they
    /// were logged), and every change after it: (time, `stack/cc` from then on).
    pub stack: String,
    pub cc: String,
    pub switches: Vec<(f64, String)>,
    /// The connection drawn: `laddr:lport -> faddr:fport`.
    pub flow: String,
    /// Lines of other connections (a host-wide log holds many), left out.
    pub other_lines: usize,
}

/// Reads a trace written by this module (header first). The error names the line and
/// what is wrong with it, in one line.
pub fn parse_trace(text: &str) -> Result<Trace, String> {
    let mut lines = text.lines().enumerate();
    let header: Vec<&str> = match lines.next() {
        Some((_, h)) => h.split(',').map(str::trim).collect(),
        None => return Err("empty file: expected a siftr CSV header".into()),
    };
    let col = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .ok_or_else(|| format!("line 1: not a plugtcp siftr trace (no column '{name}')"))
    };
    let (t, cw, ss, srtt, fl, ph) = (
        col("time")?,
        col("snd_cwnd")?,
        col("snd_ssthresh")?,
        col("srtt_us")?,
        col("flight")?,
        col("phase")?,
    );
    let flow_cols = [col("laddr")?, col("lport")?, col("faddr")?, col("fport")?];
    let names = (
        header.iter().position(|h| *h == "stack"),
        header.iter().position(|h| *h == "cc"),
    );
    let mut current: Option<(String, String)> = None;
    let mut first_names = (String::new(), String::new());
    let mut switches = Vec::new();
    let mut flow: Option<[&str; 4]> = None;
    let mut other_lines = 0;
    let mut points = Vec::new();
    for (i, l) in lines {
        if l.is_empty() {
            continue;
        }
        let f: Vec<&str> = l.split(',').collect();
        let n = i + 1;
        if f.len() != header.len() {
            return Err(format!(
                "line {n}: {} fields, the header has {}",
                f.len(),
                header.len()
            ));
        }
        let key = flow_cols.map(|c| f[c]);
        if *flow.get_or_insert(key) != key {
            other_lines += 1;
            continue;
        }
        let num = |c: usize| {
            f[c].parse::<u64>()
                .map_err(|_| format!("line {n}: '{}' is not a number ({})", f[c], header[c]))
        };
        let time = f[t]
            .parse::<f64>()
            .ok()
            .filter(|x| x.is_finite())
            .ok_or_else(|| format!("line {n}: '{}' is not a time", f[t]))?;
        let phase = match f[ph] {
            "SS" => Phase::SlowStart,
            "CA" => Phase::CongestionAvoidance,
            "FR" => Phase::FastRecovery,
            "CR" => Phase::CongRecovery,
            other => return Err(format!("line {n}: unknown phase '{other}'")),
        };
        let now_names = (
            names.0.map_or("", |c| f[c]).to_string(),
            names.1.map_or("", |c| f[c]).to_string(),
        );
        match &current {
            None => first_names = now_names.clone(),
            Some(prev) if *prev != now_names => {
                switches.push((time, format!("{}/{}", now_names.0, now_names.1)));
            }
            _ => {}
        }
        current = Some(now_names);
        points.push(TracePoint {
            time,
            snd_cwnd: num(cw)?,
            snd_ssthresh: num(ss)?,
            srtt_us: num(srtt)?,
            flight: num(fl)?,
            phase,
        });
    }
    let Some([la, lp, fa, fp]) = flow else {
        return Err("no trace lines after the header".into());
    };
    Ok(Trace {
        points,
        stack: first_names.0,
        cc: first_names.1,
        switches,
        flow: format!("{la}:{lp} -> {fa}:{fp}"),
        other_lines,
    })
}
