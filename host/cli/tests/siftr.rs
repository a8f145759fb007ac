//! siftr(4)-style traces: a CSV line per ACK a traced connection processes (TCP_SIFTR, the
//! writer API, `net.inet.siftr.*`), and `plugtcp plot`.

use plugtcp_host::conn_table::ConnId;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;

use plugtcp_abi::sockopt::{IPPROTO_TCP, TCP_SIFTR};
use plugtcp_abi::{Errno, TcpState};
use plugtcp_cli::builtins::BuiltinNet as _;
use plugtcp_host::siftr::{SiftrBuffer, COLUMNS, HEADER};
use plugtcp_io::sim::SimLinkConfig;
use plugtcp_io::simnet::{SimNet, ADDR_B};

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("plugtcp-siftr-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

/// 20 Mbit/s, 10 ms RTT, 1% loss each way, a small queue: slow start, losses and recovery
/// in a short transfer, deterministic from the seed.
fn lossy_net() -> SimNet {
    let mut cfg = SimLinkConfig::bdp_queue(20_000_000, 10_000_000);
    cfg.loss = 0.01;
    cfg.seed = 7;
    SimNet::builtin(cfg, 7)
}

/// Sends `len` bytes on each of `conns` (A's slots, connecting to B's listener `lid`),
/// reading on B, until every byte of every connection is acknowledged. No close, so the
/// connections and their traces are still there. Returns B's ends of the connections.
fn move_bytes(net: &mut SimNet, lid: usize, conns: &[ConnId], len: usize) -> Vec<ConnId> {
    let data = vec![0x5au8; len];
    let mut sent = vec![0usize; conns.len()];
    let mut accepted = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    let ok = net.run_until(60_000_000_000, |n| {
        while let Ok(s) = n.b.accept(lid) {
            accepted.push(s);
        }
        for &s in &accepted {
            while matches!(n.b.recv(s, &mut buf), Ok(k) if k > 0) {}
        }
        let mut done = true;
        for (i, &c) in conns.iter().enumerate() {
            if n.a.state(c) != Some(TcpState::Established) {
                done = false;
                continue;
            }
            while sent[i] < len {
                match n.a.send(c, &data[sent[i]..]) {
                    Ok(k) if k > 0 => sent[i] += k,
                    _ => break,
                }
            }
            let tp = n.a.tcpcb(c).unwrap();
            done &= sent[i] == len && tp.snd_una == tp.snd_max;
        }
        done
    });
    assert!(ok, "transfer did not finish");
    accepted
}

struct Line<'a>(Vec<&'a str>);

impl<'a> Line<'a> {
    fn col(&self, name: &str) -> &'a str {
        let i = HEADER
            .trim_end()
            .split(',')
            .position(|h| h == name)
            .unwrap_or_else(|| panic!("no column {name}"));
        self.0[i]
    }
    fn num(&self, name: &str) -> u64 {
        self.col(name).parse().unwrap()
    }
}

/// The lines after the header, each checked to have every column.
fn lines(text: &str) -> Vec<Line<'_>> {
    assert!(
        text.starts_with(HEADER),
        "header missing: {:?}",
        &text[..60.min(text.len())]
    );
    assert_eq!(HEADER.trim_end().split(',').count(), COLUMNS);
    text[HEADER.len()..]
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            assert_eq!(f.len(), COLUMNS, "line {l:?}");
            Line(f)
        })
        .collect()
}

#[test]
fn one_line_per_ack_the_sender_processed() {
    let mut net = lossy_net();
    let server: SocketAddr = (ADDR_B, 80).into();
    let lid = net.b.listen(server, 8).unwrap();
    // Traced from before the SYN, into memory.
    let c = net.a.socket(server, None).unwrap();
    let buf = SiftrBuffer::new();
    net.a.siftr_attach(c, Box::new(buf.clone())).unwrap();
    net.a.start_connect(c).unwrap();
    move_bytes(&mut net, lid, &[c], 600_000);
    net.a.siftr_flush(c).unwrap();
    let text = String::from_utf8(buf.contents()).unwrap();
    let ls = lines(&text);

    // Every packet B sent A carries ACK (the SYN-ACK too), and all of them belong to this
    // connection: one line per packet the link delivered to A.
    let delivered = net.link.b_to_a.stats().delivered;
    assert_eq!(ls.len() as u64, delivered);
    assert!(
        net.link.a_to_b.stats().dropped_loss > 0,
        "the run lost nothing"
    );

    let tp = net.a.tcpcb(c).unwrap().clone();
    let local = net.a.local_addr(c).unwrap();
    // Times never go back; every line names this connection.
    let mut prev = 0.0f64;
    for l in &ls {
        let t: f64 = l.col("time").parse().unwrap();
        assert!(t >= prev, "time went back: {t} after {prev}");
        prev = t;
        assert_eq!(l.col("lport"), local.port().to_string());
        assert_eq!(l.col("fport"), "80");
        assert_eq!(l.col("faddr"), ADDR_B.to_string());
    }
    // The bytes the lines say were acknowledged add up to the SYN and the data.
    let acked: u64 = ls.iter().map(|l| l.num("acked")).sum();
    assert_eq!(acked, 600_001);
    assert_eq!(tp.snd_una.wrapping_sub(tp.iss), 600_001);
    // The first line is the SYN-ACK (SYN_SENT -> ESTABLISHED, 1 byte acknowledged).
    assert_eq!(ls[0].num("acked"), 1);
    assert_eq!(ls[0].col("state"), "ESTABLISHED");
    // The last line is the Tcpcb as it is now.
    let last = ls.last().unwrap();
    assert_eq!(last.num("snd_cwnd"), tp.snd_cwnd as u64);
    assert_eq!(last.num("snd_ssthresh"), tp.snd_ssthresh as u64);
    assert_eq!(last.num("srtt_us"), tp.t_srtt as u64);
    assert_eq!(last.num("snd_una"), tp.snd_una as u64);
    assert_eq!(last.num("snd_max"), tp.snd_max as u64);
    assert_eq!(last.num("flight"), 0);
    assert_eq!(last.num("rexmits"), tp.t_sndrexmitpack);
    assert!(tp.t_sndrexmitpack > 0);
    // Slow start first, a recovery later.
    assert_eq!(ls[0].col("phase"), "SS");
    assert!(
        ls.iter().any(|l| l.col("phase") == "FR"),
        "no fast recovery traced"
    );
    // Detaching stops the trace.
    net.a.siftr_detach(c).unwrap();
    let mut opt = [0u8; 64];
    assert_eq!(net.a.getsockopt(c, IPPROTO_TCP, TCP_SIFTR, &mut opt), Ok(0));
}

#[test]
fn tcp_siftr_traces_only_its_connection() {
    let mut net = lossy_net();
    let server: SocketAddr = (ADDR_B, 80).into();
    let lid = net.b.listen(server, 8).unwrap();
    let c1 = net.a.connect(server, None).unwrap();
    let c2 = net.a.connect(server, None).unwrap();
    let path = tmp("c1.csv");
    let p = path.to_str().unwrap();
    net.a
        .setsockopt(c1, IPPROTO_TCP, TCP_SIFTR, p.as_bytes())
        .unwrap();
    let mut opt = [0u8; 256];
    let n = net
        .a
        .getsockopt(c1, IPPROTO_TCP, TCP_SIFTR, &mut opt)
        .unwrap();
    assert_eq!(&opt[..n], p.as_bytes());
    assert_eq!(
        net.a.getsockopt(c2, IPPROTO_TCP, TCP_SIFTR, &mut opt),
        Ok(0)
    );
    // A file that cannot be made is the open's errno; a slot with no socket EBADF.
    assert_eq!(
        net.a
            .setsockopt(c2, IPPROTO_TCP, TCP_SIFTR, b"/nonexistent-dir/x.csv"),
        Err(Errno::ENOENT)
    );
    let gone = net.a.new_conn().unwrap();
    net.a.abort(gone);
    assert_eq!(
        net.a.setsockopt(gone, IPPROTO_TCP, TCP_SIFTR, p.as_bytes()),
        Err(Errno::EBADF)
    );

    move_bytes(&mut net, lid, &[c1, c2], 300_000);
    // An empty value ends the trace and writes it out.
    net.a.setsockopt(c1, IPPROTO_TCP, TCP_SIFTR, b"").unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let ls = lines(&text);
    let p1 = net.a.local_addr(c1).unwrap().port().to_string();
    assert!(
        ls.iter().all(|l| l.col("lport") == p1),
        "another connection's line"
    );
    let acked: u64 = ls.iter().map(|l| l.num("acked")).sum();
    // Enabled after connect but before the SYN-ACK arrived: all of c1's bytes.
    assert_eq!(acked, 300_001);
    // Nothing more after it ended.
    move_bytes(&mut net, lid, &[c1], 1000);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
}

#[test]
fn sysctl_siftr_logs_the_filtered_port() {
    let mut net = lossy_net();
    let h = &mut net.a;
    assert_eq!(
        h.sysctl.get("net.inet.siftr.enabled").unwrap().to_string(),
        "0"
    );
    assert_eq!(
        h.sysctl.get("net.inet.siftr.logfile").unwrap().to_string(),
        "/var/log/siftr.log"
    );
    assert_eq!(
        h.sysctl
            .get("net.inet.siftr.port_filter")
            .unwrap()
            .to_string(),
        "0"
    );
    let names: Vec<String> = h
        .sysctl
        .list("net.inet.siftr")
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(
        names,
        [
            "net.inet.siftr.enabled",
            "net.inet.siftr.logfile",
            "net.inet.siftr.port_filter"
        ]
    );
    assert_eq!(
        h.sysctl.describe("net.inet.siftr.enabled").unwrap(),
        "switch siftr module operations on/off"
    );
    assert_eq!(
        h.sysctl_set("net.inet.siftr.enabled", "2"),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        h.sysctl_set("net.inet.siftr.port_filter", "65536"),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        h.sysctl_set("net.inet.siftr.port_filter", "x"),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        h.sysctl_set("net.inet.siftr.nosuch", "1"),
        Err(Errno::ENOENT)
    );
    // Enabling opens the log: a path that cannot be opened is refused and nothing changes.
    h.sysctl_set("net.inet.siftr.logfile", "/nonexistent-dir/siftr.log")
        .unwrap();
    assert_eq!(
        h.sysctl_set("net.inet.siftr.enabled", "1"),
        Err(Errno::ENOENT)
    );
    assert_eq!(
        h.sysctl.get("net.inet.siftr.enabled").unwrap().to_string(),
        "0"
    );

    let path = tmp("siftr.log");
    let _ = std::fs::remove_file(&path);
    h.sysctl_set("net.inet.siftr.logfile", path.to_str().unwrap())
        .unwrap();
    h.sysctl_set("net.inet.siftr.port_filter", "81").unwrap();
    h.sysctl_set("net.inet.siftr.enabled", "1").unwrap();

    let l80 = net.b.listen((ADDR_B, 80).into(), 8).unwrap();
    let l81 = net.b.listen((ADDR_B, 81).into(), 8).unwrap();
    let c80 = net.a.connect((ADDR_B, 80).into(), None).unwrap();
    let c81 = net.a.connect((ADDR_B, 81).into(), None).unwrap();
    move_bytes(&mut net, l80, &[c80], 200_000);
    move_bytes(&mut net, l81, &[c81], 200_000);
    // Disabling writes the log out and closes it.
    net.a.sysctl_set("net.inet.siftr.enabled", "0").unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let ls = lines(&text);
    assert!(!ls.is_empty());
    assert!(
        ls.iter().all(|l| l.col("fport") == "81"),
        "port_filter let another port through"
    );
    let acked: u64 = ls.iter().map(|l| l.num("acked")).sum();
    assert_eq!(acked, 200_001);
    let tp = net.a.tcpcb(c81).unwrap();
    assert_eq!(ls.last().unwrap().num("snd_cwnd"), tp.snd_cwnd as u64);
    // Off: nothing more is written. On again: appended after what is there, with no
    // second header.
    move_bytes(&mut net, l81, &[c81], 5000);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
    net.a.sysctl_set("net.inet.siftr.enabled", "1").unwrap();
    move_bytes(&mut net, l81, &[c81], 5000);
    net.a.siftr_log_flush().unwrap();
    let more = std::fs::read_to_string(&path).unwrap();
    assert!(more.len() > text.len() && more.starts_with(&text));
    assert_eq!(more.matches("time,laddr").count(), 1);
}

fn plugtcp(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_plugtcp"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn demo_trace_plots_as_png() {
    let trace = tmp("demo.csv");
    let png = tmp("demo.png");
    let out = plugtcp(&["demo", "--size", "8M", "--trace", trace.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&trace).unwrap();
    let ls = lines(&text);
    // Slow start, then a loss recovery (seed 1 loses packets in this transfer).
    assert_eq!(ls[0].col("phase"), "SS");
    assert!(ls.iter().any(|l| l.col("phase") == "FR"));
    let acked: u64 = ls.iter().map(|l| l.num("acked")).sum();
    // To the ACK of the last byte and the FIN: the SYN, 8 MiB, the FIN.
    assert_eq!(acked, (8 << 20) + 2);

    let out = plugtcp(&["plot", trace.to_str().unwrap(), "-o", png.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let b = std::fs::read(&png).unwrap();
    assert_eq!(&b[..8], b"\x89PNG\r\n\x1a\n");
    // IHDR first: width and height, 8-bit RGB.
    assert_eq!(&b[12..16], b"IHDR");
    let w = u32::from_be_bytes(b[16..20].try_into().unwrap());
    let h = u32::from_be_bytes(b[20..24].try_into().unwrap());
    assert_eq!((w, h), (1280, 800));
    assert_eq!((b[24], b[25]), (8, 2));
    assert!(b.len() > 20_000, "{} bytes: an empty picture?", b.len());
    assert!(b.ends_with(b"IEND\xae\x42\x60\x82"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(&format!("{} ACKs", ls.len())), "{stdout}");
}

#[test]
fn plot_refuses_a_bad_csv_in_one_line() {
    let png = tmp("bad.png");
    for (name, body, want) in [
        ("empty.csv", "", "empty file"),
        (
            "other.csv",
            "a,b,c\n1,2,3\n",
            "not a plugtcp siftr trace (no column 'time')",
        ),
        (
            "short.csv",
            &format!("{HEADER}1.0,2\n") as &str,
            "line 2: 2 fields",
        ),
        (
            "nan.csv",
            &format!(
                "{HEADER}0.1,10.0.0.1,1,10.0.0.2,2,ESTABLISHED,SS,x,1,1,1,1,1,1,1,1,1,1,1,1,1,1,base,newreno\n"
            ),
            "line 2: 'x' is not a number (snd_cwnd)",
        ),
        ("nolines.csv", HEADER, "no trace lines"),
    ] {
        let p = tmp(name);
        std::fs::write(&p, body).unwrap();
        let out = plugtcp(&["plot", p.to_str().unwrap(), "-o", png.to_str().unwrap()]);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with("plugtcp: plot: "), "{err}");
        assert!(err.contains(want), "{name}: {err}");
    }
    let out = plugtcp(&["plot", "/nonexistent.csv", "-o", png.to_str().unwrap()]);
    assert!(!out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stderr).lines().count(), 1);
}

/// The trace names the stack and CC module of every line, so a live switch shows where it
/// happened; `plugtcp plot` marks it.
#[test]
fn trace_names_stack_and_cc_and_marks_live_switches() {
    use plugtcp_abi::sockopt::{TCP_CONGESTION, TCP_FUNCTION_BLK};
    let mut net = lossy_net();
    let server: SocketAddr = (ADDR_B, 80).into();
    let lid = net.b.listen(server, 8).unwrap();
    let c = net.a.socket(server, None).unwrap();
    let buf = SiftrBuffer::new();
    net.a.siftr_attach(c, Box::new(buf.clone())).unwrap();
    net.a.start_connect(c).unwrap();
    let peer = move_bytes(&mut net, lid, &[c], 200_000)[0];
    let more = |net: &mut SimNet, len: usize| {
        let data = vec![0x5au8; len];
        let mut sent = 0;
        let mut buf = vec![0u8; 1 << 16];
        let ok = net.run_until(net.now + 30_000_000_000, |n| {
            while matches!(n.b.recv(peer, &mut buf), Ok(k) if k > 0) {}
            while sent < len {
                match n.a.send(c, &data[sent..]) {
                    Ok(k) if k > 0 => sent += k,
                    _ => break,
                }
            }
            let tp = n.a.tcpcb(c).unwrap();
            sent == len && tp.snd_una == tp.snd_max
        });
        assert!(ok, "transfer did not finish");
    };
    let t1 = net.now;
    net.a
        .setsockopt(c, IPPROTO_TCP, TCP_CONGESTION, b"cubic")
        .unwrap();
    more(&mut net, 200_000);
    let t2 = net.now;
    net.a
        .setsockopt(c, IPPROTO_TCP, TCP_FUNCTION_BLK, b"rack")
        .unwrap();
    more(&mut net, 200_000);
    net.a.siftr_flush(c).unwrap();
    let text = String::from_utf8(buf.contents()).unwrap();
    let ls = lines(&text);
    assert_eq!((ls[0].col("stack"), ls[0].col("cc")), ("base", "newreno"));
    let last = ls.last().unwrap();
    assert_eq!((last.col("stack"), last.col("cc")), ("rack", "cubic"));

    let t = plugtcp_host::siftr::parse_trace(&text).unwrap();
    assert_eq!((t.stack.as_str(), t.cc.as_str()), ("base", "newreno"));
    let names: Vec<&str> = t.switches.iter().map(|(_, n)| n.as_str()).collect();
    assert_eq!(names, ["base/cubic", "rack/cubic"]);
    // Each switch shows at the first ACK after it.
    assert!(t.switches[0].0 >= t1 as f64 / 1e9 && t.switches[0].0 < t2 as f64 / 1e9);
    assert!(t.switches[1].0 >= t2 as f64 / 1e9);

    // The plot draws the markers (purple dashes) where an unswitched trace has none.
    let png = plugtcp_cli::plot::render_png(&t, 1280, 800).unwrap();
    let mut plain = t.clone();
    plain.switches.clear();
    let png_plain = plugtcp_cli::plot::render_png(&plain, 1280, 800).unwrap();
    let purple = |png: &[u8]| {
        let dec = png::Decoder::new(std::io::Cursor::new(png));
        let mut r = dec.read_info().unwrap();
        let mut img = vec![0; r.output_buffer_size()];
        r.next_frame(&mut img).unwrap();
        img.chunks(3)
            .filter(|p| p[0] == 140 && p[1] == 40 && p[2] == 160)
            .count()
    };
    assert!(purple(&png) > 200, "{}", purple(&png));
    assert_eq!(purple(&png_plain), 0);
}
