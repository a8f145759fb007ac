//! System calls: a script's call line run through the POSIX socket layer, its arguments
//! taken from the script's expressions (`...` filled in as packetdrill fills it: the
//! script's addresses and ports, zero bytes for data), its result and errno and any output
//! argument (getsockopt's value, poll's revents, ...) checked.
//!
//! A call that cannot finish at once on a blocking descriptor becomes the [`Pending`]
//! call the runner retries as the host moves; a second call waits for it, as packetdrill's
//! single system-call thread does.

use std::net::{IpAddr, SocketAddr};

use plugtcp_abi::sockopt::{self, IPPROTO_TCP};
use plugtcp_abi::{Errno, TcpState};
use plugtcp_packetdrill::display::format_seconds;
use plugtcp_packetdrill::{Expr, ExprKind, IpVersion, StructField, SyscallEvent};

use super::exec::{Failure, Runner, ScriptSocket, SockState};
use super::symbols;
use plugtcp_host::ctloutput::{function_set, parse_function_set};
use plugtcp_host::posix::consts::*;
use plugtcp_host::posix::PollFd;

/// What a call returned: a value or an errno.
type SysResult = Result<i64, Errno>;

/// A blocked call and how to go on with it.
#[derive(Debug)]
pub(crate) struct Pending {
    pub line: u32,
    pub call: SyscallEvent,
    /// Script time it started, and when it should return (`...END`).
    pub start_us: u64,
    pub end_us: Option<u64>,
    resume: Resume,
}

impl Pending {
    /// When the call returns by itself (a poll's timeout), host ns.
    pub(crate) fn wake_ns(&self) -> Option<u64> {
        match self.resume {
            Resume::Poll { until_ns, .. } => until_ns,
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
enum Resume {
    Accept {
        fd: i32,
    },
    Connect {
        fd: i32,
    },
    Recv {
        fd: i32,
        len: usize,
        flags: i32,
        got: usize,
        waitall: bool,
    },
    Send {
        fd: i32,
        total: usize,
        sent: usize,
        flags: i32,
    },
    Poll {
        fds: Vec<PollFd>,
        until_ns: Option<u64>,
        expect: Vec<Option<Expr>>,
    },
}

/// What running a call did.
enum Step {
    Done(SysResult, Vec<Check>),
    Block(Resume),
}

/// An output argument to compare after the call.
#[derive(Debug)]
enum Check {
    Int {
        what: &'static str,
        expected: Expr,
        actual: i64,
    },
    Bytes {
        what: &'static str,
        expected: Vec<u8>,
        actual: Vec<u8>,
    },
}

type R<T> = Result<T, String>;

/// Runs the call of script line `line`, due at script time `due`.
pub(crate) fn run(
    r: &mut Runner<'_>,
    line: u32,
    call: &SyscallEvent,
    due: u64,
    end: Option<u64>,
) -> Result<(), Failure> {
    // One system-call thread: a call waits for a blocked one to return.
    if r.pending.is_some() {
        let until = r
            .pending
            .as_ref()
            .map_or(due, |p| p.end_us.unwrap_or(p.start_us));
        let deadline = until.max(due) + r.tolerance(until);
        r.advance_to(super::exec::START_NS + deadline * 1000)?;
        if let Some(p) = r.pending.as_ref() {
            return Err(Failure::at(
                p.line,
                format!("blocking system call did not return before the call at line {line}"),
            ));
        }
    }
    r.note(line, format!("{call}"));
    let step = start(r, call).map_err(|e| in_call(&call.name, Failure::at(line, e)))?;
    match step {
        Step::Done(res, checks) => {
            finish(r, line, call, res, checks).map_err(|f| in_call(&call.name, f))?;
            if let Some(end) = end {
                let now = r.now_us();
                let tol = r.tolerance(end);
                if now + tol < end {
                    return Err(Failure::at(
                        line,
                        format!(
                            "timing error: expected system call return at {} sec but happened at {} sec",
                            format_seconds(end),
                            format_seconds(now)
                        ),
                    ));
                }
            }
            Ok(())
        }
        Step::Block(resume) => {
            r.pending = Some(Pending {
                line,
                call: call.clone(),
                start_us: due,
                end_us: end,
                resume,
            });
            Ok(())
        }
    }
}

/// Tries the blocked call again; checks it when it returns.
pub(crate) fn retry(r: &mut Runner<'_>) -> Result<(), Failure> {
    let Some(p) = r.pending.take() else {
        return Ok(());
    };
    let step =
        resume(r, p.resume.clone()).map_err(|e| in_call(&p.call.name, Failure::at(p.line, e)))?;
    match step {
        Step::Block(resume) => {
            r.pending = Some(Pending { resume, ..p });
            Ok(())
        }
        Step::Done(res, checks) => {
            let now = r.now_us();
            r.note(p.line, format!("{} returned {res:?}", p.call.name));
            finish(r, p.line, &p.call, res, checks).map_err(|f| in_call(&p.call.name, f))?;
            let end = p.end_us.unwrap_or(p.start_us);
            let tol = r.tolerance(end);
            if now + tol < end || now > end + tol {
                return Err(Failure {
                    line: p.line,
                    message: format!(
                        "timing error: expected system call return at {} sec but happened at {} sec",
                        format_seconds(end),
                        format_seconds(now)
                    ),
                    soft: true,
                });
            }
            Ok(())
        }
    }
}

/// packetdrill's form for a call that went wrong: `runtime error in read call: ...`.
fn in_call(name: &str, f: Failure) -> Failure {
    Failure {
        message: format!("runtime error in {name} call: {}", f.message),
        ..f
    }
}

/// Checks a returned call against the script: result, errno, output arguments.
fn finish(
    r: &mut Runner<'_>,
    line: u32,
    call: &SyscallEvent,
    res: SysResult,
    checks: Vec<Check>,
) -> Result<(), Failure> {
    let soft = |message: String| Failure {
        line,
        message,
        soft: true,
    };
    let got = res.unwrap_or(-1);
    if !call.result.is_ellipsis() {
        let expected = int(&call.result).map_err(|e| Failure::at(line, e))?;
        // packetdrill's CHECK_FD: a call that returns a descriptor passes with any
        // descriptor when the script expects one; the script's number then stands for it.
        let fd_call = matches!(call.name.as_str(), "socket" | "accept" | "accept4");
        if expected != got && !(fd_call && expected >= 0 && got >= 0) {
            let detail = match res {
                Err(e) => format!(" with errno {} ({})", e.name(), e.message()),
                Ok(_) => String::new(),
            };
            return Err(soft(format!(
                "Expected result {expected} but got {got}{detail}"
            )));
        }
        // The descriptor a call returned stands for the script's number.
        if matches!(call.name.as_str(), "socket" | "accept" | "accept4") {
            if let Ok(live) = res {
                map_fd(r, expected as i32, live as i32);
            }
        }
    } else if matches!(call.name.as_str(), "socket" | "accept" | "accept4") {
        if let Ok(live) = res {
            map_fd(r, live as i32, live as i32);
        }
    }
    if let Some(want) = &call.errno {
        let Some(e) = Errno::from_name(&want.name) else {
            return Err(Failure::at(line, format!("unknown errno {}", want.name)));
        };
        match res {
            Err(actual) if actual == e => {}
            Err(actual) => {
                return Err(soft(format!(
                    "Expected errno {} ({}) but got {} ({})",
                    want.name,
                    e.message(),
                    actual.name(),
                    actual.message()
                )));
            }
            Ok(_) => {
                return Err(soft(format!(
                    "Expected errno {} but the call succeeded",
                    want.name
                )));
            }
        }
    }
    if res.is_ok() {
        for c in checks {
            match c {
                Check::Int {
                    what,
                    expected,
                    actual,
                } => {
                    if expected.is_ellipsis() {
                        continue;
                    }
                    let e = int(&expected).map_err(|e| Failure::at(line, e))?;
                    if e != actual {
                        return Err(soft(format!("Bad {what}: expected: {e} actual: {actual}")));
                    }
                }
                Check::Bytes {
                    what,
                    expected,
                    actual,
                } => {
                    if expected != actual {
                        return Err(soft(format!(
                            "Bad {what}: expected: {} actual: {}",
                            show_bytes(&expected),
                            show_bytes(&actual)
                        )));
                    }
                }
            }
        }
    }
    Ok(())
}

/// A value as a script would write it: an int, a string, or (a struct literal's bytes)
/// its 32-bit fields in order, `{1, 5}`.
fn show_bytes(b: &[u8]) -> String {
    if b.len() == 4 {
        return i32::from_ne_bytes([b[0], b[1], b[2], b[3]]).to_string();
    }
    let text_len = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    let printable = text_len > 0
        && b[..text_len]
            .iter()
            .all(|&c| c.is_ascii_graphic() || c == b' ')
        && b[text_len..].iter().all(|&c| c == 0);
    if printable {
        let text = String::from_utf8_lossy(&b[..text_len]);
        return format!("\"{text}\" ({} bytes)", b.len());
    }
    if b.len().is_multiple_of(4) {
        let fields: Vec<String> = b
            .chunks_exact(4)
            .map(|c| i32::from_ne_bytes([c[0], c[1], c[2], c[3]]).to_string())
            .collect();
        return format!("{{{}}}", fields.join(", "));
    }
    let hex: Vec<String> = b.iter().map(|c| format!("{c:02x}")).collect();
    format!("0x{} ({} bytes)", hex.join(""), b.len())
}

fn map_fd(r: &mut Runner<'_>, script: i32, live: i32) {
    r.fds.retain(|&(s, _)| s != script);
    r.fds.push((script, live));
}

/// The host descriptor a script descriptor stands for.
fn fd(r: &Runner<'_>, e: &Expr) -> R<i32> {
    let n = int(e)? as i32;
    Ok(r.fds
        .iter()
        .rev()
        .find(|(s, _)| *s == n)
        .map_or(n, |&(_, l)| l))
}

/// An integer expression: literals, symbols, `A|B`, htons/htonl (the value itself).
pub(crate) fn int(e: &Expr) -> R<i64> {
    match &e.kind {
        ExprKind::Integer { value, .. } => Ok(*value),
        ExprKind::Symbol(name) => {
            symbols::lookup(name).ok_or_else(|| format!("unknown symbol {name}"))
        }
        ExprKind::BitOr(parts) => parts.iter().try_fold(0i64, |acc, p| Ok(acc | int(p)?)),
        ExprKind::Htons(inner) | ExprKind::Htonl(inner) => int(inner),
        ExprKind::List(items) if items.len() == 1 => int(&items[0]),
        ExprKind::Null => Ok(0),
        _ => Err(format!("expected an integer, found {e}")),
    }
}

fn arg(call: &SyscallEvent, i: usize) -> R<&Expr> {
    call.args
        .get(i)
        .ok_or_else(|| format!("{} needs argument {}", call.name, i + 1))
}

fn field<'e>(fields: &'e [StructField], names: &[&str]) -> Option<&'e Expr> {
    fields
        .iter()
        .find(|f| f.name.as_deref().is_some_and(|n| names.contains(&n)))
        .map(|f| &f.value)
}

/// A sockaddr argument: `...` is the script's default for the call (`local` or not), as
/// the socket's family shows it.
fn sockaddr(r: &Runner<'_>, e: &Expr, local: bool) -> R<SocketAddr> {
    let app = |ip: IpAddr, port: u16| {
        let ip = match (r.s.ip_version, ip) {
            (IpVersion::Ipv4MappedIpv6, IpAddr::V4(v4)) => IpAddr::V6(v4.to_ipv6_mapped()),
            (_, ip) => ip,
        };
        SocketAddr::new(ip, port)
    };
    match &e.kind {
        ExprKind::Ellipsis => Ok(if local {
            app(r.s.local_ip, r.s.bind_port)
        } else {
            app(r.s.remote_ip, r.s.connect_port)
        }),
        ExprKind::Struct(fields) => {
            let port = field(fields, &["sin_port", "sin6_port"])
                .map(int)
                .transpose()?
                .unwrap_or(0) as u16;
            let ip = match field(fields, &["sin_addr", "sin6_addr"]).map(|e| &e.kind) {
                Some(
                    ExprKind::InetAddr(a) | ExprKind::Inet6Addr(a) | ExprKind::Str { value: a, .. },
                ) => a
                    .parse::<IpAddr>()
                    .map_err(|_| format!("bad address {a}"))?,
                Some(ExprKind::Symbol(s)) if s == "INADDR_ANY" => {
                    IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)
                }
                Some(ExprKind::Symbol(s)) if s == "in6addr_any" => {
                    IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)
                }
                Some(other) => return Err(format!("unsupported address form {other:?}")),
                None => {
                    if local {
                        r.s.local_ip
                    } else {
                        r.s.remote_ip
                    }
                }
            };
            Ok(app(ip, port))
        }
        _ => Err(format!("expected a socket address, found {e}")),
    }
}

/// The bytes a setsockopt value stands for, cut or padded to `len` when given.
fn opt_bytes(e: &Expr, name: i32) -> R<Vec<u8>> {
    Ok(match &e.kind {
        ExprKind::Str { value, .. } => {
            if name == sockopt::TCP_FUNCTION_BLK {
                function_set(value, 0).to_vec()
            } else {
                value.clone().into_bytes()
            }
        }
        ExprKind::List(items) => {
            let mut v = Vec::new();
            for it in items {
                v.extend_from_slice(&(int(it)? as i32).to_ne_bytes());
            }
            v
        }
        ExprKind::Struct(fields) => struct_bytes(fields)?,
        ExprKind::Null | ExprKind::Ellipsis => Vec::new(),
        _ => (int(e)? as i32).to_ne_bytes().to_vec(),
    })
}

/// linger, tcp_function_set and timeval literals, as their C structs lay out.
fn struct_bytes(fields: &[StructField]) -> R<Vec<u8>> {
    if let Some(name) = field(fields, &["function_set_name"]) {
        let ExprKind::Str { value, .. } = &name.kind else {
            return Err("function_set_name must be a string".into());
        };
        let cnt = field(fields, &["pcbcnt"])
            .map(int)
            .transpose()?
            .unwrap_or(0);
        return Ok(function_set(value, cnt as usize).to_vec());
    }
    if let Some(onoff) = field(fields, &["l_onoff", "onoff"]) {
        let secs = field(fields, &["l_linger", "linger"])
            .map(int)
            .transpose()?
            .unwrap_or(0);
        let mut v = (int(onoff)? as i32).to_ne_bytes().to_vec();
        v.extend_from_slice(&(secs as i32).to_ne_bytes());
        return Ok(v);
    }
    if let Some(sec) = field(fields, &["tv_sec"]) {
        let usec = field(fields, &["tv_usec"])
            .map(int)
            .transpose()?
            .unwrap_or(0);
        let mut v = int(sec)?.to_ne_bytes().to_vec();
        v.extend_from_slice(&usec.to_ne_bytes());
        return Ok(v);
    }
    // Positional or unknown named fields: ints in order.
    let mut v = Vec::new();
    for f in fields {
        v.extend_from_slice(&(int(&f.value)? as i32).to_ne_bytes());
    }
    Ok(v)
}

/// Total bytes of an iovec list: `[{iov_base=..., iov_len=10}, {..., 20}]`.
fn iov_len(e: &Expr) -> R<usize> {
    let ExprKind::List(items) = &e.kind else {
        return match &e.kind {
            ExprKind::Ellipsis => Ok(0),
            _ => Err(format!("expected an iovec array, found {e}")),
        };
    };
    let mut total = 0usize;
    for it in items {
        let ExprKind::Struct(fields) = &it.kind else {
            return Err(format!("expected an iovec, found {it}"));
        };
        let len = match field(fields, &["iov_len"]) {
            Some(l) => int(l)?,
            None => fields
                .last()
                .map(|f| int(&f.value))
                .transpose()?
                .unwrap_or(0),
        };
        total += usize::try_from(len).map_err(|_| "negative iov_len".to_string())?;
    }
    Ok(total)
}

/// The iovec list inside a msghdr literal.
fn msg_iov(e: &Expr) -> R<usize> {
    match &e.kind {
        ExprKind::Struct(fields) => field(fields, &["msg_iov"]).map_or(Ok(0), iov_len),
        _ => Err(format!("expected a msghdr, found {e}")),
    }
}

fn len_arg(call: &SyscallEvent, i: usize) -> R<usize> {
    let n = int(arg(call, i)?)?;
    usize::try_from(n).map_err(|_| format!("negative length {n}"))
}

fn errno(res: Result<i64, Errno>) -> Step {
    Step::Done(res, Vec::new())
}

/// The socket a descriptor is, on the script side (packetdrill's socket under test).
fn script_socket(r: &mut Runner<'_>, fd: i32) -> usize {
    match r.socket_by_fd(fd) {
        Some(i) => i,
        None => {
            r.sockets.push(ScriptSocket::new(Some(fd)));
            r.sockets.len() - 1
        }
    }
}

fn start(r: &mut Runner<'_>, call: &SyscallEvent) -> R<Step> {
    let name = call.name.as_str();
    match name {
        "socket" => {
            let dom = arg(call, 0)?;
            let domain = if dom.is_ellipsis() {
                super::exec::default_domain(r.s.ip_version)
            } else {
                int(dom)? as i32
            };
            let ty = int(arg(call, 1)?)? as i32;
            let proto = match call.args.get(2) {
                Some(p) if !p.is_ellipsis() => int(p)? as i32,
                _ => 0,
            };
            let res = r.posix.socket(&mut r.host, domain, ty, proto);
            if let Ok(fd) = res {
                let i = script_socket(r, fd);
                r.sockets[i] = ScriptSocket::new(Some(fd));
                r.under_test = Some(i);
            }
            Ok(errno(res.map(i64::from)))
        }
        "bind" => {
            let fd = fd(r, arg(call, 0)?)?;
            let addr = sockaddr(r, arg(call, 1)?, true)?;
            Ok(errno(r.posix.bind(&mut r.host, fd, addr).map(|()| 0)))
        }
        "listen" => {
            let fd = fd(r, arg(call, 0)?)?;
            let backlog = int(arg(call, 1)?)? as i32;
            let res = r.posix.listen(&mut r.host, fd, backlog);
            if res.is_ok() {
                let i = script_socket(r, fd);
                r.sockets[i].state = SockState::Listening;
                r.under_test = Some(i);
            }
            Ok(errno(res.map(|()| 0)))
        }
        "accept" | "accept4" => {
            let fd = fd(r, arg(call, 0)?)?;
            resume(r, Resume::Accept { fd })
        }
        "connect" => {
            let fd = fd(r, arg(call, 0)?)?;
            let addr = sockaddr(r, arg(call, 1)?, false)?;
            let res = r.posix.connect(&mut r.host, fd, addr);
            if res.is_ok() || res == Err(Errno::EINPROGRESS) {
                connecting(r, fd, addr);
            }
            match res {
                Err(Errno::EINPROGRESS) if !r.posix.is_nonblocking(fd) => {
                    Ok(Step::Block(Resume::Connect { fd }))
                }
                res => Ok(errno(res.map(|()| 0))),
            }
        }
        "read" | "recv" | "recvfrom" => {
            let fd = fd(r, arg(call, 0)?)?;
            let len = len_arg(call, 2)?;
            let flags = match call.args.get(3) {
                Some(f) if name != "read" => int(f)? as i32,
                _ => 0,
            };
            recv(r, fd, len, flags)
        }
        "readv" => {
            let fd = fd(r, arg(call, 0)?)?;
            let len = iov_len(arg(call, 1)?)?;
            recv(r, fd, len, 0)
        }
        "recvmsg" => {
            let fd = fd(r, arg(call, 0)?)?;
            let len = msg_iov(arg(call, 1)?)?;
            let flags = call.args.get(2).map(int).transpose()?.unwrap_or(0) as i32;
            recv(r, fd, len, flags)
        }
        "write" | "send" | "sendto" => {
            let fd = fd(r, arg(call, 0)?)?;
            let len = len_arg(call, 2)?;
            let flags = match call.args.get(3) {
                Some(f) if name != "write" => int(f)? as i32,
                _ => 0,
            };
            if name == "sendto" {
                if let Some(a) = call
                    .args
                    .get(4)
                    .filter(|a| !matches!(a.kind, ExprKind::Null))
                {
                    // An address on a connected TCP socket: FreeBSD says EISCONN (`...`,
                    // the script's peer, is taken as no address there).
                    let addr = sockaddr(r, a, false)?;
                    if !a.is_ellipsis()
                        && r.posix.conn_id(fd).is_some_and(|s| {
                            r.host.state(s).is_some_and(|st| st != TcpState::Closed)
                        })
                    {
                        return Ok(errno(Err(Errno::EISCONN)));
                    }
                    // On a socket not connected yet: an implied connect with the data
                    // (TCP Fast Open puts it in the SYN).
                    let fresh = r.posix.conn_id(fd).is_some_and(|s| {
                        r.host
                            .tcpcb(s)
                            .is_some_and(|tp| tp.t_state == TcpState::Closed && tp.iss == 0)
                    });
                    if fresh {
                        let data = vec![0u8; len];
                        let res = r.posix.sendto(&mut r.host, fd, &data, flags, addr);
                        let started = r.posix.conn_id(fd).is_some_and(|s| {
                            r.host.state(s).is_some_and(|st| st != TcpState::Closed)
                        });
                        if started {
                            connecting(r, fd, addr);
                        }
                        return Ok(errno(res.map(|n| n as i64)));
                    }
                }
            }
            send(r, fd, len, flags)
        }
        "writev" => {
            let fd = fd(r, arg(call, 0)?)?;
            let len = iov_len(arg(call, 1)?)?;
            send(r, fd, len, 0)
        }
        "sendmsg" => {
            let fd = fd(r, arg(call, 0)?)?;
            let len = msg_iov(arg(call, 1)?)?;
            let flags = call.args.get(2).map(int).transpose()?.unwrap_or(0) as i32;
            send(r, fd, len, flags)
        }
        "close" => {
            let fd = fd(r, arg(call, 0)?)?;
            Ok(errno(r.posix.close(&mut r.host, fd).map(|()| 0)))
        }
        "shutdown" => {
            let fd = fd(r, arg(call, 0)?)?;
            let how = int(arg(call, 1)?)? as i32;
            Ok(errno(r.posix.shutdown(&mut r.host, fd, how).map(|()| 0)))
        }
        "fcntl" => {
            let fd = fd(r, arg(call, 0)?)?;
            let cmd = int(arg(call, 1)?)? as i32;
            let a = call.args.get(2).map(int).transpose()?.unwrap_or(0) as i32;
            Ok(errno(r.posix.fcntl(fd, cmd, a).map(i64::from)))
        }
        "setsockopt" => {
            let fd = fd(r, arg(call, 0)?)?;
            let level = int(arg(call, 1)?)? as i32;
            let opt = int(arg(call, 2)?)? as i32;
            let mut val = opt_bytes(arg(call, 3)?, opt)?;
            if let Some(l) = call.args.get(4).filter(|l| !l.is_ellipsis()) {
                let l = usize::try_from(int(l)?).map_err(|_| "negative optlen".to_string())?;
                val.resize(l, 0);
            }
            Ok(errno(
                r.posix
                    .setsockopt(&mut r.host, fd, level, opt, &val)
                    .map(|()| 0),
            ))
        }
        "getsockopt" => getsockopt(r, call),
        "ioctl" => {
            let fd = fd(r, arg(call, 0)?)?;
            let req = int(arg(call, 1)?)? as u64 & 0xffff_ffff;
            let val = call.args.get(2);
            let input = match val.map(|v| &v.kind) {
                Some(ExprKind::List(items)) if req == FIONBIO || req == FIONBIO_LINUX => {
                    items.first().map(int).transpose()?.unwrap_or(0) as i32
                }
                _ => 0,
            };
            let res = r.posix.ioctl(&mut r.host, fd, req, input);
            let checks = match (res, val) {
                (Ok(v), Some(e)) if req != FIONBIO && req != FIONBIO_LINUX => vec![Check::Int {
                    what: "ioctl value",
                    expected: e.clone(),
                    actual: i64::from(v),
                }],
                _ => Vec::new(),
            };
            Ok(Step::Done(res.map(|_| 0), checks))
        }
        "poll" => {
            let ExprKind::List(items) = &arg(call, 0)?.kind else {
                return Err("poll needs an array of pollfd".into());
            };
            let mut fds = Vec::new();
            let mut expect = Vec::new();
            for it in items {
                let ExprKind::Struct(fields) = &it.kind else {
                    return Err(format!("expected a pollfd, found {it}"));
                };
                let f = field(fields, &["fd"]).ok_or("pollfd without fd")?;
                let ev = field(fields, &["events"])
                    .map(int)
                    .transpose()?
                    .unwrap_or(0);
                expect.push(field(fields, &["revents"]).cloned());
                fds.push(PollFd {
                    fd: fd(r, f)?,
                    events: ev as i16,
                    revents: 0,
                });
            }
            let timeout = int(arg(call, 2)?)?;
            let until_ns = (timeout >= 0).then(|| r.host.now() + timeout as u64 * 1_000_000);
            resume(
                r,
                Resume::Poll {
                    fds,
                    until_ns,
                    expect,
                },
            )
        }
        "getsockname" | "getpeername" => {
            let fd = fd(r, arg(call, 0)?)?;
            let res = if name == "getsockname" {
                r.posix.getsockname(&r.host, fd)
            } else {
                r.posix.getpeername(&r.host, fd)
            };
            let mut checks = Vec::new();
            if let (Ok(a), Some(e)) = (res, call.args.get(1)) {
                if !e.is_ellipsis() {
                    let want = sockaddr(r, e, name == "getsockname")?;
                    checks.push(Check::Bytes {
                        what: "socket address",
                        expected: want.to_string().into_bytes(),
                        actual: a.to_string().into_bytes(),
                    });
                }
            }
            Ok(Step::Done(res.map(|_| 0), checks))
        }
        other => Err(format!("unsupported system call {other}")),
    }
}

fn recv(r: &mut Runner<'_>, fd: i32, len: usize, flags: i32) -> R<Step> {
    resume(
        r,
        Resume::Recv {
            fd,
            len,
            flags,
            got: 0,
            waitall: flags & MSG_WAITALL != 0,
        },
    )
}

/// `fd` started connecting to `addr`: the script's socket under test, its peer known.
fn connecting(r: &mut Runner<'_>, fd: i32, addr: SocketAddr) {
    let i = script_socket(r, fd);
    let s = &mut r.sockets[i];
    s.state = SockState::ActiveConnecting;
    s.remote = Some(host_side(addr));
    s.local = None;
    r.under_test = Some(i);
}

/// The address as the host sees it: an IPv4-mapped IPv6 address is IPv4 on the wire.
fn host_side(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(a) => a
            .ip()
            .to_ipv4_mapped()
            .map_or(addr, |v4| SocketAddr::new(IpAddr::V4(v4), a.port())),
        a => a,
    }
}

fn send(r: &mut Runner<'_>, fd: i32, len: usize, flags: i32) -> R<Step> {
    resume(
        r,
        Resume::Send {
            fd,
            total: len,
            sent: 0,
            flags,
        },
    )
}

/// Whether a call on `fd` that would block should wait (a blocking descriptor, no
/// MSG_DONTWAIT). recv(MSG_OOB) never waits (FreeBSD soreceive_rcvoob: EWOULDBLOCK until
/// the urgent byte is there).
fn waits(r: &Runner<'_>, fd: i32, flags: i32) -> bool {
    !r.posix.is_nonblocking(fd)
        && flags & (MSG_DONTWAIT | plugtcp_host::posix::consts::MSG_OOB) == 0
}

fn resume(r: &mut Runner<'_>, what: Resume) -> R<Step> {
    Ok(match what {
        Resume::Accept { fd } => match r.posix.accept(&mut r.host, fd) {
            Err(Errno::EAGAIN) if waits(r, fd, 0) => Step::Block(Resume::Accept { fd }),
            Ok((nfd, peer)) => {
                // The accepted connection is the script's child socket with this peer.
                let peer_host = match peer {
                    SocketAddr::V6(a) => a
                        .ip()
                        .to_ipv4_mapped()
                        .map_or(peer, |v4| SocketAddr::new(IpAddr::V4(v4), a.port())),
                    a => a,
                };
                if let Some(i) = r.sockets.iter().rposition(|s| s.remote == Some(peer_host)) {
                    r.sockets[i].fd = Some(nfd);
                }
                errno(Ok(i64::from(nfd)))
            }
            Err(e) => errno(Err(e)),
        },
        Resume::Connect { fd } => match r.posix.connect_status(&r.host, fd) {
            None => Step::Block(Resume::Connect { fd }),
            Some(res) => errno(res.map(|()| 0)),
        },
        Resume::Recv {
            fd,
            len,
            flags,
            got,
            waitall,
        } => {
            let mut buf = vec![0u8; len - got];
            match r.posix.recv(&mut r.host, fd, &mut buf, flags) {
                Ok(n) if n > 0 && waitall && got + n < len && flags & MSG_PEEK == 0 => {
                    Step::Block(Resume::Recv {
                        fd,
                        len,
                        flags,
                        got: got + n,
                        waitall,
                    })
                }
                Ok(n) => errno(Ok((got + n) as i64)),
                Err(Errno::EAGAIN) if got > 0 => errno(Ok(got as i64)),
                Err(Errno::EAGAIN) if waits(r, fd, flags) => Step::Block(Resume::Recv {
                    fd,
                    len,
                    flags,
                    got,
                    waitall,
                }),
                Err(e) => errno(Err(e)),
            }
        }
        Resume::Send {
            fd,
            total,
            sent,
            flags,
        } => {
            let data = vec![0u8; total - sent];
            if total == 0 {
                return Ok(errno(
                    r.posix
                        .send(&mut r.host, fd, &data, flags)
                        .map(|n| n as i64),
                ));
            }
            match r.posix.send(&mut r.host, fd, &data, flags) {
                Ok(n) if sent + n < total && waits(r, fd, flags) => Step::Block(Resume::Send {
                    fd,
                    total,
                    sent: sent + n,
                    flags,
                }),
                Ok(n) => errno(Ok((sent + n) as i64)),
                Err(Errno::EAGAIN) if waits(r, fd, flags) => Step::Block(Resume::Send {
                    fd,
                    total,
                    sent,
                    flags,
                }),
                Err(_) if sent > 0 => errno(Ok(sent as i64)),
                Err(e) => errno(Err(e)),
            }
        }
        Resume::Poll {
            mut fds,
            until_ns,
            expect,
        } => {
            let n = r.posix.poll(&r.host, &mut fds);
            let expired = until_ns.is_some_and(|u| r.host.now() >= u);
            if n == 0 && !expired {
                Step::Block(Resume::Poll {
                    fds,
                    until_ns,
                    expect,
                })
            } else {
                let checks = fds
                    .iter()
                    .zip(expect)
                    .filter_map(|(p, e)| {
                        e.map(|expected| Check::Int {
                            what: "revents",
                            expected,
                            actual: i64::from(p.revents),
                        })
                    })
                    .collect();
                Step::Done(Ok(n as i64), checks)
            }
        }
    })
}

fn getsockopt(r: &mut Runner<'_>, call: &SyscallEvent) -> R<Step> {
    let fd = fd(r, arg(call, 0)?)?;
    let level = int(arg(call, 1)?)? as i32;
    let opt = int(arg(call, 2)?)? as i32;
    let want = arg(call, 3)?;
    let len_expr = call.args.get(4);
    let cap = match len_expr.map(|e| &e.kind) {
        Some(ExprKind::List(items)) if items.len() == 1 => int(&items[0])? as usize,
        Some(ExprKind::Integer { value, .. }) => *value as usize,
        _ => 256,
    };
    let mut buf = vec![0u8; cap.min(4096)];
    let res = r.posix.getsockopt(&mut r.host, fd, level, opt, &mut buf);
    let mut checks = Vec::new();
    if let Ok(n) = res {
        let got = buf[..n].to_vec();
        match &want.kind {
            ExprKind::Ellipsis | ExprKind::Null => {}
            ExprKind::List(items) if items.len() == 1 && n == 4 => checks.push(Check::Int {
                what: "getsockopt value",
                expected: items[0].clone(),
                actual: i64::from(i32::from_ne_bytes([got[0], got[1], got[2], got[3]])),
            }),
            ExprKind::Str { value, ellipsis } => {
                let actual: Vec<u8> =
                    if opt == sockopt::TCP_FUNCTION_BLK || opt == sockopt::TCP_FUNCTION_ALIAS {
                        parse_function_set(&got).map_or(got.clone(), |(n, _)| n.into_bytes())
                    } else {
                        got.iter().copied().take_while(|&c| c != 0).collect()
                    };
                let actual = if *ellipsis {
                    actual.into_iter().take(value.len()).collect()
                } else {
                    actual
                };
                checks.push(Check::Bytes {
                    what: "getsockopt value",
                    expected: value.clone().into_bytes(),
                    actual,
                });
            }
            ExprKind::Struct(fields)
                if field(fields, &["function_set_name"]).is_some() && level == IPPROTO_TCP =>
            {
                // The name always; pcbcnt (the block's connection count, as FreeBSD
                // reports it) only when the script gives a number for it.
                let Some(ExprKind::Str { value, .. }) =
                    field(fields, &["function_set_name"]).map(|e| &e.kind)
                else {
                    return Err("function_set_name must be a string".into());
                };
                let (name, cnt) = parse_function_set(&got).unwrap_or_default();
                checks.push(Check::Bytes {
                    what: "tcp_function_set name",
                    expected: value.clone().into_bytes(),
                    actual: name.into_bytes(),
                });
                if let Some(e) = field(fields, &["pcbcnt"]) {
                    checks.push(Check::Int {
                        what: "tcp_function_set pcbcnt",
                        expected: e.clone(),
                        actual: i64::from(cnt),
                    });
                }
            }
            _ => {
                let mut w = opt_bytes(want, opt)?;
                w.resize(n.max(w.len()), 0);
                let mut g = got.clone();
                g.resize(w.len(), 0);
                checks.push(Check::Bytes {
                    what: "getsockopt value",
                    expected: w,
                    actual: g,
                });
            }
        }
        if let Some(e) = len_expr {
            if let ExprKind::List(items) = &e.kind {
                if let Some(l) = items.first() {
                    checks.push(Check::Int {
                        what: "getsockopt length",
                        expected: l.clone(),
                        actual: n as i64,
                    });
                }
            }
        }
    }
    Ok(Step::Done(res.map(|_| 0), checks))
}
