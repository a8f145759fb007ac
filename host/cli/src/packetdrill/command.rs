//! Backtick commands. The FreeBSD tools scripts use act on the host under test, not on
//! the machine the runner runs on: `sysctl` reads and writes the host's tree, `sockstat`
//! lists its sockets (the rest of a pipeline, `| grep ... | wc -l`, runs in the shell on
//! that listing), `tcpdrop` drops one of its connections. Anything else goes to `sh -c`,
//! and a non-zero exit status fails the script, as in packetdrill.

use std::io::Write;
use std::net::SocketAddr;
use std::process::{Command, Stdio};

use plugtcp_abi::stack::tcpi_off;

use super::exec::Runner;
use plugtcp_host::conn_table::ConnId;
use plugtcp_host::socket::table::ConnKey;

/// Runs one command line.
pub(crate) fn run(r: &mut Runner<'_>, line: u32, cmd: &str) -> Result<(), String> {
    let cmd = cmd.trim();
    let (first, rest) = match cmd.split_once('|') {
        Some((a, b)) => (a.trim(), Some(b.trim())),
        None => (cmd, None),
    };
    let words: Vec<&str> = first.split_whitespace().collect();
    let own = match words.first().copied() {
        Some("sysctl") => Some(sysctl(r, &words[1..])?),
        Some("sockstat") => Some(sockstat(r, &words[1..])),
        Some("tcpdrop") => Some(tcpdrop(r, &words[1..])?),
        _ => None,
    };
    match (own, rest) {
        (Some(out), None) => {
            r.note(line, format!("output: {}", out.trim_end()));
            Ok(())
        }
        (Some(out), Some(pipeline)) => shell(pipeline, Some(&out)),
        (None, _) => shell(cmd, None),
    }
}

fn shell(cmd: &str, stdin: Option<&str>) -> Result<(), String> {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run sh: {e}"))?;
    if let (Some(text), Some(mut w)) = (stdin, child.stdin.take()) {
        let _ = w.write_all(text.as_bytes());
    }
    let out = child.wait_with_output().map_err(|e| format!("sh: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "non-zero exit status {} from `{cmd}`{}",
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .next()
                .map(|l| format!(": {l}"))
                .unwrap_or_default()
        ))
    }
}

/// sysctl(8) on the host's tree: `[-w] [-n] [-q] NAME[=VALUE] ...`.
fn sysctl(r: &mut Runner<'_>, args: &[&str]) -> Result<String, String> {
    let mut names_only = false;
    let mut quiet = false;
    let mut out = String::new();
    for a in args {
        match *a {
            "-w" => {}
            "-n" => names_only = true,
            "-q" => quiet = true,
            a if a.starts_with('-') => return Err(format!("sysctl: unsupported flag {a}")),
            a => match a.split_once('=') {
                Some((name, value)) => {
                    let old = r
                        .host
                        .sysctl_set(name, value)
                        .map_err(|e| format!("sysctl: {name}: {}", e.message()))?;
                    // A write-only node (fastopen.setkey) has no value to show.
                    let new = r
                        .host
                        .sysctl
                        .get(name)
                        .map(|v| v.to_string())
                        .unwrap_or_default();
                    if !quiet {
                        out.push_str(&format!("{name}: {old} -> {new}\n"));
                    }
                }
                None => {
                    let v = r
                        .host
                        .sysctl
                        .get(a)
                        .map_err(|_| format!("sysctl: unknown oid '{a}'"))?;
                    if names_only {
                        out.push_str(&format!("{v}\n"));
                    } else {
                        out.push_str(&format!("{a}: {v}\n"));
                    }
                }
            },
        }
    }
    Ok(out)
}

/// sockstat(1)'s table for the host: `[-4] [-6] [-c] [-l] [-s] [-P tcp] [-p PORTS]`.
fn sockstat(r: &mut Runner<'_>, args: &[&str]) -> String {
    let (mut v4, mut v6, mut connected, mut listening, mut states) =
        (false, false, false, false, false);
    let mut ports: Vec<u16> = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match *a {
            "-P" => {
                it.next();
            }
            "-p" => {
                if let Some(list) = it.next() {
                    ports.extend(list.split(',').filter_map(|p| p.parse::<u16>().ok()));
                }
            }
            a if a.starts_with('-') => {
                for c in a.chars().skip(1) {
                    match c {
                        '4' => v4 = true,
                        '6' => v6 = true,
                        'c' => connected = true,
                        'l' => listening = true,
                        's' => states = true,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    if !v4 && !v6 {
        v4 = true;
        v6 = true;
    }
    if !connected && !listening {
        connected = true;
        listening = true;
    }
    let fam_ok = |a: &SocketAddr| (a.is_ipv4() && v4) || (a.is_ipv6() && v6);
    let port_ok = |l: &SocketAddr, f: Option<&SocketAddr>| {
        ports.is_empty()
            || ports.contains(&l.port())
            || f.is_some_and(|f| ports.contains(&f.port()))
    };
    let mut out = String::from(
        "USER     COMMAND    PID   FD  PROTO  LOCAL ADDRESS         FOREIGN ADDRESS      ",
    );
    if states {
        out.push_str("PATH STATE");
    }
    out.push('\n');
    let row = |fd: String, proto: &str, l: String, f: String, st: &str| {
        let mut s = format!("root     plugtcp    1     {fd:<3} {proto:<6} {l:<21} {f:<20} ");
        if states {
            s.push_str(st);
        }
        s.push('\n');
        s
    };
    let fd_of = |r: &Runner<'_>, slot: Option<ConnId>, lid: Option<usize>| {
        r.posix
            .open_fds()
            .into_iter()
            .find(|&fd| {
                (slot.is_some() && r.posix.conn_id(fd) == slot)
                    || (lid.is_some() && r.posix.listener(fd) == lid)
            })
            .map_or("??".to_string(), |fd| fd.to_string())
    };
    if listening {
        for (lid, l) in r.host.listeners.iter().enumerate() {
            let Some(l) = l else { continue };
            if !fam_ok(&l.addr) || !port_ok(&l.addr, None) {
                continue;
            }
            let proto = if l.addr.is_ipv4() { "tcp4" } else { "tcp6" };
            let local = if l.addr.ip().is_unspecified() {
                format!("*:{}", l.addr.port())
            } else {
                l.addr.to_string()
            };
            out.push_str(&row(
                fd_of(r, None, Some(lid)),
                proto,
                local,
                "*:*".into(),
                "LISTEN",
            ));
        }
    }
    if connected {
        for id in r.host.conns.ids() {
            let Some(c) = r.host.conns.get_by_id(id) else {
                continue;
            };
            let (l, f) = (c.side.local, c.side.remote);
            if f.port() == 0 || !fam_ok(&l) || !port_ok(&l, Some(&f)) {
                continue;
            }
            let proto = if l.is_ipv4() { "tcp4" } else { "tcp6" };
            let st = c.state().name();
            out.push_str(&row(
                fd_of(r, Some(id), None),
                proto,
                l.to_string(),
                f.to_string(),
                st,
            ));
        }
    }
    out
}

/// tcpdrop(8): `LADDR LPORT FADDR FPORT` or `LADDR:LPORT FADDR:FPORT`.
fn tcpdrop(r: &mut Runner<'_>, args: &[&str]) -> Result<String, String> {
    let addr = |ip: &str, port: &str| -> Result<SocketAddr, String> {
        let ip = ip.trim_start_matches('[').trim_end_matches(']');
        format!("[{ip}]:{port}")
            .parse::<SocketAddr>()
            .or_else(|_| format!("{ip}:{port}").parse())
            .map_err(|_| format!("tcpdrop: bad address {ip} {port}"))
    };
    let split = |a: &str| -> Result<SocketAddr, String> {
        let (ip, port) = a
            .rsplit_once(['.', ':'])
            .ok_or_else(|| format!("tcpdrop: bad address {a}"))?;
        addr(ip, port)
    };
    let (local, remote) = match args {
        [la, lp, fa, fp] => (addr(la, lp)?, addr(fa, fp)?),
        [l, f] => (split(l)?, split(f)?),
        _ => return Err("usage: tcpdrop laddr lport faddr fport".into()),
    };
    let slot = r
        .host
        .table
        .lookup_conn(&ConnKey::new(local, remote))
        .ok_or_else(|| format!("tcpdrop: {local} {remote}: No such process"))?;
    r.host
        .tcpdrop(slot)
        .map_err(|e| format!("tcpdrop: {local} {remote}: {}", e.message()))?;
    Ok(format!("{local} {remote} dropped\n"))
}

/// The named fields of FreeBSD's `struct tcp_info` in `bytes` (as getsockopt gave it),
/// with the Linux names that mean the same thing.
pub(crate) fn tcp_info_fields(bytes: &[u8]) -> Vec<(&'static str, i64)> {
    let u32_at = |off: usize| {
        bytes.get(off..off + 4).map_or(0, |b| {
            i64::from(u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
        })
    };
    let byte = |off: usize| bytes.get(off).copied().map_or(0, i64::from);
    let wscale = byte(tcpi_off::WSCALE);
    let state = byte(tcpi_off::STATE);
    let mut v = vec![
        ("tcpi_state", state),
        ("tcpi_options", byte(tcpi_off::OPTIONS)),
        ("tcpi_snd_wscale", wscale & 0x0f),
        ("tcpi_rcv_wscale", wscale >> 4),
        ("tcpi_rto", u32_at(tcpi_off::RTO)),
        ("tcpi_snd_mss", u32_at(tcpi_off::SND_MSS)),
        ("tcpi_rcv_mss", u32_at(tcpi_off::RCV_MSS)),
        ("tcpi_last_data_recv", u32_at(tcpi_off::LAST_DATA_RECV)),
        ("tcpi_rtt", u32_at(tcpi_off::RTT)),
        ("tcpi_rttvar", u32_at(tcpi_off::RTTVAR)),
        ("tcpi_snd_ssthresh", u32_at(tcpi_off::SND_SSTHRESH)),
        ("tcpi_snd_cwnd", u32_at(tcpi_off::SND_CWND)),
        ("tcpi_rcv_space", u32_at(tcpi_off::RCV_SPACE)),
        ("tcpi_snd_wnd", u32_at(tcpi_off::SND_WND)),
        ("tcpi_snd_bwnd", u32_at(tcpi_off::SND_BWND)),
        ("tcpi_snd_nxt", u32_at(tcpi_off::SND_NXT)),
        ("tcpi_rcv_nxt", u32_at(tcpi_off::RCV_NXT)),
        ("tcpi_toe_tid", u32_at(tcpi_off::TOE_TID)),
        ("tcpi_snd_rexmitpack", u32_at(tcpi_off::SND_REXMITPACK)),
        ("tcpi_rcv_ooopack", u32_at(tcpi_off::RCV_OOOPACK)),
        ("tcpi_snd_zerowin", u32_at(tcpi_off::SND_ZEROWIN)),
        ("tcpi_delivered_ce", u32_at(tcpi_off::DELIVERED_CE)),
        ("tcpi_received_ce", u32_at(tcpi_off::RECEIVED_CE)),
        ("tcpi_total_tlp", u32_at(tcpi_off::TOTAL_TLP)),
        ("tcpi_total_tlp_bytes", u32_at(tcpi_off::TOTAL_TLP_BYTES)),
        ("tcpi_snd_una", u32_at(tcpi_off::SND_UNA)),
        ("tcpi_snd_max", u32_at(tcpi_off::SND_MAX)),
        ("tcpi_rcv_numsacks", u32_at(tcpi_off::RCV_NUMSACKS)),
        ("tcpi_rcv_adv", u32_at(tcpi_off::RCV_ADV)),
        ("tcpi_dupacks", u32_at(tcpi_off::DUPACKS)),
    ];
    // Linux's name for the same counter.
    v.push(("tcpi_total_retrans", u32_at(tcpi_off::SND_REXMITPACK)));
    v
}
