//! The control socket: a Unix stream socket, readable and writable by its owner only, through
//! which `plugtcp kldload|kldstat|kldunload|sysctl|sockstat|tcpsso|tcpdrop --control PATH` act on a running
//! host (`plugtcp serve --control PATH`). The same commands run in-process without it, and
//! both ways go through [`execute`], so they print the same thing.
//!
//! Protocol: one request per connection, a JSON [`ControlCmd`] on one line; the answer is a
//! JSON [`Reply`] on one line.

use std::fmt::Write as _;
use std::io::{self, BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use plugtcp_abi::sockopt::{self, IPPROTO_TCP};
use plugtcp_abi::Errno;

use plugtcp_host::conn_table::ConnId;
use plugtcp_host::Host;

/// A command for a host.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub enum ControlCmd {
    Kldload {
        what: String,
    },
    Kldstat {
        json: bool,
    },
    Kldunload {
        name: String,
        force: bool,
    },
    Sysctl {
        all: bool,
        describe: bool,
        names: Vec<String>,
    },
    /// The connections, as `ss -ti` shows them: 4-tuple, state, stack, CC, then cwnd,
    /// ssthresh, rtt/rttvar, rto, mss, windows, bytes and retransmissions.
    Sockstat {
        json: bool,
    },
    /// tcpdrop(8): drop the connection with this 4-tuple (a RST to the peer).
    Tcpdrop {
        local: SocketAddr,
        remote: SocketAddr,
    },
    /// TCP-MD5 keys, as setkey(8)'s tcp-md5 entries in FreeBSD's SADB: one store for every
    /// shard.
    Md5key {
        action: Md5Action,
    },
    /// tcpsso(8): a socket option on the connection with this 4-tuple.
    Tcpsso {
        local: SocketAddr,
        remote: SocketAddr,
        option: String,
        value: String,
    },
}

/// What `md5key` does: add (or replace) the key for a peer address or prefix
/// (`ADDR` or `ADDR/LEN`), delete it, or list the peers that have keys (never the keys).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub enum Md5Action {
    Add { peer: String, key: String },
    Del { peer: String },
    List,
}

/// `ADDR` or `ADDR/LEN`.
fn parse_peer(s: &str) -> Result<(std::net::IpAddr, Option<u8>), String> {
    let (a, p) = match s.split_once('/') {
        Some((a, p)) => (
            a,
            Some(p.parse::<u8>().map_err(|_| format!("bad prefix: {s}"))?),
        ),
        None => (s, None),
    };
    Ok((a.parse().map_err(|_| format!("bad address: {s}"))?, p))
}

fn md5key(h: &mut Host, action: &Md5Action, r: &mut Reply) {
    let done = match action {
        Md5Action::Add { peer, key } => parse_peer(peer).and_then(|(a, p)| {
            h.md5_key_set(a, p, key.as_bytes())
                .map_err(|e| format!("{peer}: {e}"))
                .map(|()| format!("added {peer}"))
        }),
        Md5Action::Del { peer } => parse_peer(peer).and_then(|(a, p)| {
            h.md5_key_del(a, p)
                .map_err(|e| format!("{peer}: {e}"))
                .map(|()| format!("deleted {peer}"))
        }),
        Md5Action::List => Ok(h
            .md5_key_list()
            .iter()
            .map(|(a, p)| format!("{a}/{p}"))
            .collect::<Vec<_>>()
            .join("\n")),
    };
    match done {
        Ok(out) if out.is_empty() => {}
        Ok(out) => {
            let _ = writeln!(r.stdout, "{out}");
        }
        Err(e) => r.fail(format!("md5key: {e}")),
    }
}

/// What a command printed and its exit status.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Reply {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Reply {
    fn fail(&mut self, msg: impl std::fmt::Display) {
        let _ = writeln!(self.stderr, "plugtcp: {msg}");
        self.code = 1;
    }
}

/// Socket options tcpsso knows by name: (name, level, option, takes a string).
const OPTIONS: &[(&str, i32, i32, bool)] = &[
    ("TCP_CONGESTION", IPPROTO_TCP, sockopt::TCP_CONGESTION, true),
    (
        "TCP_FUNCTION_BLK",
        IPPROTO_TCP,
        sockopt::TCP_FUNCTION_BLK,
        true,
    ),
    ("TCP_NODELAY", IPPROTO_TCP, sockopt::TCP_NODELAY, false),
    ("TCP_KEEPIDLE", IPPROTO_TCP, sockopt::TCP_KEEPIDLE, false),
    ("TCP_KEEPINTVL", IPPROTO_TCP, sockopt::TCP_KEEPINTVL, false),
    ("TCP_KEEPCNT", IPPROTO_TCP, sockopt::TCP_KEEPCNT, false),
    (
        "TCP_USER_TIMEOUT",
        IPPROTO_TCP,
        sockopt::TCP_USER_TIMEOUT,
        false,
    ),
    ("TCP_QUICKACK", IPPROTO_TCP, sockopt::TCP_QUICKACK, false),
];

/// Runs a command on `h`.
pub fn execute(h: &mut Host, cmd: &ControlCmd) -> Reply {
    execute_sharded(&mut [h], cmd)
}

/// Runs a command on a host split into shards (`hosts`, at least one): the plugin and
/// sysctl commands act once, through the first shard, on what all shards share; sockstat
/// lists every shard's connections; tcpdrop and tcpsso find the connection wherever it is.
pub fn execute_sharded(hosts: &mut [&mut Host], cmd: &ControlCmd) -> Reply {
    let mut r = Reply::default();
    match cmd {
        ControlCmd::Sockstat { json } => r.stdout = sockstat(hosts, *json),
        ControlCmd::Tcpdrop { local, remote } => {
            let found = hosts
                .iter_mut()
                .find_map(|h| find_conn(h, *local, *remote).ok().map(|id| (h, id)));
            match found.ok_or(Errno::ESRCH).and_then(|(h, id)| h.tcpdrop(id)) {
                Ok(()) => {
                    let _ = writeln!(r.stdout, "{local} {remote}: dropped");
                }
                Err(e) => r.fail(format!("tcpdrop: {local} {remote}: {e}")),
            }
        }
        ControlCmd::Tcpsso {
            local,
            remote,
            option,
            value,
        } => {
            let owner = hosts
                .iter_mut()
                .find(|h| find_conn(h, *local, *remote).is_ok());
            let done = match owner {
                Some(h) => tcpsso(h, *local, *remote, option, value),
                None => Err(Errno::ESRCH),
            };
            if let Err(e) = done {
                r.fail(format!("tcpsso: {local} {remote} {option}={value}: {e}"));
            } else {
                let _ = writeln!(r.stdout, "{local} {remote}: {option} = {value}");
            }
        }
        ControlCmd::Kldunload { name, force } => {
            match Host::kldunload_sharded(hosts, name, *force) {
                Ok(()) => {
                    let _ = writeln!(r.stdout, "unloaded {name}");
                }
                Err(e) => r.fail(format!("kldunload: {name}: {e}")),
            }
        }
        _ => {
            if let Some(h) = hosts.first_mut() {
                return execute_shared(h, cmd);
            }
            r.fail("no host");
        }
    }
    r
}

/// The commands that act on what every shard shares (the registry, the sysctl tree).
fn execute_shared(h: &mut Host, cmd: &ControlCmd) -> Reply {
    let mut r = Reply::default();
    match cmd {
        ControlCmd::Kldload { what } => match h.kldload(what) {
            Ok((kind, names)) => {
                let _ = writeln!(
                    r.stdout,
                    "loaded {} {} from {}",
                    kind.name(),
                    names.join(","),
                    h.search_path.resolve(what).display()
                );
            }
            Err(e) => r.fail(format!("kldload: {e}")),
        },
        ControlCmd::Kldstat { json } => r.stdout = kldstat(h, *json),
        ControlCmd::Md5key { action } => md5key(h, action, &mut r),
        ControlCmd::Sysctl {
            all,
            describe,
            names,
        } => sysctl(h, *all, *describe, names, &mut r),
        ControlCmd::Sockstat { .. }
        | ControlCmd::Tcpdrop { .. }
        | ControlCmd::Tcpsso { .. }
        | ControlCmd::Kldunload { .. } => return execute_sharded(&mut [h], cmd),
    }
    r
}

/// The slot of the connection with this 4-tuple; ESRCH when there is none (as FreeBSD's
/// tcpsso and tcpdrop sysctls answer).
fn find_conn(h: &Host, local: SocketAddr, remote: SocketAddr) -> Result<ConnId, Errno> {
    h.conns
        .ids()
        .find(|&id| {
            h.conns
                .get_by_id(id)
                .is_some_and(|c| c.side.local == local && c.side.remote == remote)
        })
        .ok_or(Errno::ESRCH)
}

fn tcpsso(
    h: &mut Host,
    local: SocketAddr,
    remote: SocketAddr,
    option: &str,
    value: &str,
) -> Result<(), Errno> {
    let slot = find_conn(h, local, remote)?;
    let &(_, level, name, string) = OPTIONS
        .iter()
        .find(|o| o.0.eq_ignore_ascii_case(option))
        .ok_or(Errno::ENOPROTOOPT)?;
    if string {
        h.setsockopt(slot, level, name, value.as_bytes())
    } else {
        let v: i32 = value.parse().map_err(|_| Errno::EINVAL)?;
        h.setsockopt(slot, level, name, &v.to_ne_bytes())
    }
}

/// One connection as `sockstat` shows it (from its TCP_INFO: what the stack reports).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct SockRow {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub state: String,
    pub stack: String,
    pub cc: String,
    pub cwnd: u32,
    pub ssthresh: u32,
    pub srtt_us: u32,
    pub rttvar_us: u32,
    pub rto_us: u32,
    /// Send MSS.
    pub mss: u32,
    /// The peer's window, and the window this end offers (tcpi_rcv_space).
    pub snd_wnd: u32,
    pub rcv_wnd: u32,
    /// Window scale shifts, when scaling is in use.
    pub snd_wscale: u8,
    pub rcv_wscale: u8,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub bytes_retrans: u64,
    /// Retransmitted segments in all, and the current backoff (consecutive timeouts).
    pub retransmits: u64,
    pub rxtshift: u32,
    /// Bytes sent and not yet acknowledged.
    pub unacked: u32,
    /// The host's pacing rate for it, bytes/s of IP packets (0: not paced).
    #[serde(default)]
    pub pacing_rate: u64,
    /// The shard the connection lives in (0 on a host that is not split).
    #[serde(default)]
    pub shard: usize,
}

pub fn sock_rows(h: &mut Host) -> Vec<SockRow> {
    let slots: Vec<ConnId> = h.conns.ids().collect();
    let mut rows = Vec::with_capacity(slots.len());
    for slot in slots {
        // A stack whose info hook fails still gets a row, from the control block.
        let info = match h.tcp_info(slot) {
            Ok(i) => i,
            Err(_) => match h.tcpcb(slot) {
                Some(tp) => plugtcp_abi::stack::TcpInfo::from_tcpcb(tp),
                None => continue,
            },
        };
        let Some(c) = h.conns.get_by_id(slot) else {
            continue;
        };
        let tp = &c.ctx.tp;
        rows.push(SockRow {
            local: c.side.local,
            remote: c.side.remote,
            state: tp.t_state.name().to_string(),
            stack: c.stack_name(),
            cc: c.cc().map_or_else(String::new, |m| m.name.clone()),
            cwnd: info.tcpi_snd_cwnd,
            ssthresh: info.tcpi_snd_ssthresh,
            srtt_us: info.tcpi_rtt,
            rttvar_us: info.tcpi_rttvar,
            rto_us: info.tcpi_rto,
            mss: info.tcpi_snd_mss,
            snd_wnd: info.tcpi_snd_wnd,
            rcv_wnd: info.tcpi_rcv_space,
            snd_wscale: info.tcpi_snd_wscale,
            rcv_wscale: info.tcpi_rcv_wscale,
            bytes_sent: tp.t_snd_bytes,
            bytes_received: tp.t_rcv_bytes,
            bytes_retrans: tp.t_rexmit_bytes,
            retransmits: tp.t_sndrexmitpack,
            rxtshift: tp.t_rxtshift,
            unacked: tp.flight_size(),
            pacing_rate: c.side.pacer.as_ref().map_or(0, |p| p.rate()),
            shard: 0,
        });
    }
    rows
}

/// `ss -ti`'s shape: a line per connection (state, addresses, stack, CC), then its TCP
/// state indented on the next line as `name:value` pairs. Times in ms, windows in bytes.
fn sockstat(hosts: &mut [&mut Host], json: bool) -> String {
    let sharded = hosts.len() > 1;
    let mut rows = Vec::new();
    for (i, h) in hosts.iter_mut().enumerate() {
        rows.extend(sock_rows(h).into_iter().map(|r| SockRow { shard: i, ..r }));
    }
    if json {
        return serde_json::to_string_pretty(&rows).unwrap_or_default() + "\n";
    }
    let mut out = format!(
        "{:<12} {:<40} {:<40} {:<8} {}\n",
        "State", "Local", "Remote", "Stack", "CC"
    );
    let ms = |us: u32| us as f64 / 1000.0;
    for r in rows {
        let _ = writeln!(
            out,
            "{:<12} {:<40} {:<40} {:<8} {}",
            r.state,
            r.local.to_string(),
            r.remote.to_string(),
            r.stack,
            r.cc
        );
        let ssthresh = if r.ssthresh >= plugtcp_abi::tcpcb::TCP_INITIAL_SSTHRESH {
            String::new()
        } else {
            format!(" ssthresh:{}", r.ssthresh)
        };
        let _ = writeln!(
            out,
            "\t wscale:{},{} rto:{:.3} rtt:{:.3}/{:.3} mss:{} cwnd:{}{ssthresh} \
             bytes_sent:{} bytes_retrans:{} bytes_received:{} unacked:{} \
             retrans:{}/{} snd_wnd:{} rcv_wnd:{}{}{}",
            r.snd_wscale,
            r.rcv_wscale,
            ms(r.rto_us),
            ms(r.srtt_us),
            ms(r.rttvar_us),
            r.mss,
            r.cwnd,
            r.bytes_sent,
            r.bytes_retrans,
            r.bytes_received,
            r.unacked,
            r.rxtshift,
            r.retransmits,
            r.snd_wnd,
            r.rcv_wnd,
            if r.pacing_rate > 0 {
                // ss's form: bits per second.
                format!(" pacing_rate {}bps", r.pacing_rate.saturating_mul(8))
            } else {
                String::new()
            },
            if sharded {
                format!(" shard:{}", r.shard)
            } else {
                String::new()
            }
        );
    }
    out
}

fn kldstat(h: &Host, json: bool) -> String {
    let rows = h.kldstat();
    if json {
        return serde_json::to_string_pretty(&rows).unwrap_or_default() + "\n";
    }
    let mut out = format!(
        "{:>3} {:<5} {:<16} {:<20} {:<8} {:>5} File\n",
        "Id", "Kind", "Name", "Aliases", "Version", "PCBs"
    );
    for r in rows {
        let aliases = if r.aliases.is_empty() {
            "-".to_owned()
        } else {
            r.aliases.join(",")
        };
        let name = if r.being_removed {
            format!("{} (removing)", r.name)
        } else {
            r.name
        };
        let _ = writeln!(
            out,
            "{:>3} {:<5} {:<16} {:<20} {:<8} {:>5} {}",
            r.id, r.kind, name, aliases, r.version, r.pcbs, r.file
        );
    }
    out
}

fn sysctl(h: &mut Host, all: bool, describe: bool, names: &[String], r: &mut Reply) {
    let names: Vec<String> = if all || names.is_empty() {
        vec!["net.inet.tcp".into()]
    } else {
        names.to_vec()
    };
    for n in names {
        if let Some((k, v)) = n.split_once('=') {
            match h.sysctl_set(k, v) {
                Ok(old) => {
                    let new = h.sysctl.get(k).map(|v| v.to_string()).unwrap_or_default();
                    let _ = writeln!(r.stdout, "{k}: {old} -> {new}");
                }
                Err(e) => match (e, h.sysctl.range(k)) {
                    // A value out of range (or not a number) names the range, a module's
                    // parameter included; an EINVAL from a check across variables does not.
                    (Errno::EINVAL, Some((lo, hi)))
                        if v.trim().parse::<i64>().is_err()
                            || !(lo..=hi).contains(&v.trim().parse::<i64>().unwrap_or(lo)) =>
                    {
                        r.fail(format!("sysctl: {k}: {e}: takes {lo} to {hi}"))
                    }
                    _ => r.fail(format!("sysctl: {k}: {e}")),
                },
            }
        } else if describe {
            match h.sysctl.describe(&n) {
                Ok(d) => {
                    let _ = writeln!(r.stdout, "{n}: {d}");
                }
                Err(e) => r.fail(format!("sysctl: {n}: {e}")),
            }
        } else {
            match h.sysctl.get(&n) {
                Ok(v) => {
                    let _ = writeln!(r.stdout, "{n}: {v}");
                }
                Err(Errno::ENOENT) => {
                    let rows = h.sysctl.list(&n);
                    if rows.is_empty() {
                        r.fail(format!("sysctl: unknown oid '{n}': {}", Errno::ENOENT));
                    }
                    for (k, v) in rows {
                        let _ = writeln!(r.stdout, "{k}: {v}");
                    }
                }
                Err(e) => r.fail(format!("sysctl: {n}: {e}")),
            }
        }
    }
}

/// The listening end, polled by the host's loop between packet batches.
pub struct ControlServer {
    listener: UnixListener,
    path: PathBuf,
}

impl ControlServer {
    /// Binds `path` with mode 0600. A stale socket file (nobody listening) is replaced; a
    /// live one is EADDRINUSE.
    pub fn bind(path: &Path) -> io::Result<Self> {
        if path.exists() {
            if UnixStream::connect(path).is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("{}: another host is listening there", path.display()),
                ));
            }
            std::fs::remove_file(path)?;
        }
        let listener = UnixListener::bind(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        listener.set_nonblocking(true)?;
        Ok(ControlServer {
            listener,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Answers every request waiting. A client that sends garbage gets an error reply; one
    /// that stalls is dropped after a second, and the host carries on.
    pub fn poll(&mut self, h: &mut Host) {
        self.poll_with(|cmd| execute(h, cmd));
    }

    /// As [`ControlServer::poll`], each command run by `run` (which finds the hosts: the
    /// runtime locks its shards only when a request has come).
    pub fn poll_with(&mut self, mut run: impl FnMut(&ControlCmd) -> Reply) {
        while let Ok((stream, _)) = self.listener.accept() {
            let _ = serve_one(stream, &mut run);
        }
    }

    /// The listening socket (to wait on it with poll(2)).
    pub fn as_raw_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        self.listener.as_raw_fd()
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn serve_one(stream: UnixStream, run: &mut dyn FnMut(&ControlCmd) -> Reply) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(1)))?;
    let mut line = String::new();
    BufReader::new(&stream).read_line(&mut line)?;
    let reply = match serde_json::from_str::<ControlCmd>(&line) {
        Ok(cmd) => run(&cmd),
        Err(e) => {
            let mut r = Reply::default();
            r.fail(format!("bad control request: {e}"));
            r
        }
    };
    let mut w = &stream;
    w.write_all(serde_json::to_string(&reply)?.as_bytes())?;
    w.write_all(b"\n")
}

/// Sends one command to the host listening on `path`.
pub fn request(path: &Path, cmd: &ControlCmd) -> io::Result<Reply> {
    let stream = UnixStream::connect(path).map_err(|e| {
        // The errno by name, as the other commands report theirs (EACCES: another user's
        // socket, ECONNREFUSED: no host behind it).
        let why = match e.raw_os_error().map(Errno) {
            Some(n) if n.name() != "E?" => n.to_string(),
            _ => e.to_string(),
        };
        io::Error::new(e.kind(), format!("{}: {why}", path.display()))
    })?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut w = &stream;
    w.write_all(serde_json::to_string(cmd)?.as_bytes())?;
    w.write_all(b"\n")?;
    let mut line = String::new();
    BufReader::new(&stream).read_line(&mut line)?;
    serde_json::from_str(&line).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}
