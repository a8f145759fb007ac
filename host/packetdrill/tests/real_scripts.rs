//! Excerpts of real scripts (tests/scripts/) parse to the expected AST and round-trip
//! through the printers.

mod common;

use common::{assert_round_trips, parse};
use plugtcp_packetdrill::*;

fn load(name: &str) -> Script {
    let path = format!("{}/tests/scripts/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap();
    let script = parse_script(name, &text, &[]).unwrap_or_else(|e| panic!("{e}"));
    assert_round_trips(&script);
    script
}

fn tcp_of(event: &Event) -> &TcpSegmentSpec {
    match &event.kind {
        EventKind::Packet(PacketEvent {
            body: PacketBody::Tcp(tcp),
            ..
        }) => tcp,
        other => panic!("line {}: not a TCP packet: {other:?}", event.line),
    }
}

fn packet_of(event: &Event) -> &PacketEvent {
    match &event.kind {
        EventKind::Packet(p) => p,
        other => panic!("line {}: not a packet: {other:?}", event.line),
    }
}

fn syscall_of(event: &Event) -> &SyscallEvent {
    match &event.kind {
        EventKind::Syscall(s) => s,
        other => panic!("line {}: not a syscall: {other:?}", event.line),
    }
}

fn event_at(script: &Script, line: u32) -> &Event {
    script
        .events
        .iter()
        .find(|e| e.line == line)
        .unwrap_or_else(|| panic!("no event on line {line}"))
}

#[test]
fn every_script_parses_and_round_trips() {
    let dir = format!("{}/tests/scripts", env!("CARGO_MANIFEST_DIR"));
    let mut count = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "pkt") {
            load(path.file_name().unwrap().to_str().unwrap());
            count += 1;
        }
    }
    assert!(count >= 10, "only {count} scripts");
}

#[test]
fn nplab_ecn1snd1() {
    let script = load("nplab_ecn1snd1.pkt");
    assert!(script.init_command.is_none());
    assert_eq!(
        script.cleanup_command.as_ref().map(|c| c.command.as_str()),
        Some("sysctl net.inet.tcp.ecn.enable=2")
    );
    let connect = syscall_of(event_at(&script, 9));
    assert_eq!(connect.result.as_int(), Some(-1));
    assert_eq!(connect.errno, None);

    let syn = event_at(&script, 11);
    let p = packet_of(syn);
    assert_eq!(p.direction, Direction::Outbound);
    assert_eq!(p.ip.ecn, Some(EcnSpec::NotEct));
    let tcp = tcp_of(syn);
    assert_eq!(tcp.flags, TcpFlags::SYN | TcpFlags::ECE | TcpFlags::CWR);
    assert_eq!(
        tcp.options,
        TcpOptionsSpec::List(vec![
            TcpOptionSpec::Mss(1460),
            TcpOptionSpec::Nop,
            TcpOptionSpec::WindowScale(Some(6)),
            TcpOptionSpec::SackPermitted,
            TcpOptionSpec::Timestamp(TimestampSpec {
                val: None,
                ecr: 0,
                ecr_absolute: false
            }),
        ])
    );
    let data = event_at(&script, 15);
    assert_eq!(packet_of(data).ip.ecn, Some(EcnSpec::Ect0));
    assert_eq!(
        tcp_of(data).seq,
        SeqSpec::Relative {
            start: 1,
            len: 1000
        }
    );
    assert_eq!(packet_of(event_at(&script, 18)).ip.ecn, Some(EcnSpec::Ce));
    assert_eq!(
        tcp_of(event_at(&script, 17)).flags,
        TcpFlags::CWR | TcpFlags::ACK
    );
}

#[test]
fn nplab_accecn_digits() {
    let script = load("nplab_accecn_count.pkt");
    assert_eq!(script.option("tolerance_usecs").unwrap().line, 4);
    let syn = tcp_of(event_at(&script, 11));
    assert_eq!(
        syn.flags,
        TcpFlags::SYN | TcpFlags::ECE | TcpFlags::CWR | TcpFlags::AE
    );
    assert!(!syn.ace_notation);
    let five = tcp_of(event_at(&script, 16));
    assert!(five.ace_notation);
    assert_eq!(five.flags, TcpFlags::ACK | TcpFlags::ECE | TcpFlags::AE);
    assert_eq!(five.flags.ace(), 5);
    let p5 = tcp_of(event_at(&script, 17));
    assert_eq!(
        p5.flags,
        TcpFlags::PSH | TcpFlags::ACK | TcpFlags::ECE | TcpFlags::AE
    );
    let zero = tcp_of(event_at(&script, 19));
    assert_eq!(zero.flags, TcpFlags::ACK);
    assert!(zero.ace_notation);
    let fin = tcp_of(event_at(&script, 22));
    assert_eq!(fin.flags, TcpFlags::FIN | TcpFlags::ACK | TcpFlags::CWR);
    assert_eq!(event_at(&script, 6).time, TimeSpec::Absolute(0));
}

#[test]
fn nplab_icmp_quoted_before() {
    let script = load("nplab_icmp_port_unreachable_ipv4.pkt");
    let fcntl = syscall_of(event_at(&script, 9));
    assert_eq!(
        fcntl.result.kind,
        ExprKind::Integer {
            value: 2,
            hex: true
        }
    );
    assert_eq!(fcntl.note.as_deref(), Some("flags O_RDWR"));
    let connect = syscall_of(event_at(&script, 11));
    assert_eq!(
        connect.errno,
        Some(ErrnoSpec {
            name: "EINPROGRESS".into(),
            text: Some("Operation now in progress".into())
        })
    );
    let icmp = match &packet_of(event_at(&script, 13)).body {
        PacketBody::Icmp(icmp) => icmp.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(icmp.type_name, "unreachable");
    assert_eq!(icmp.code_name.as_deref(), Some("port_unreachable"));
    assert_eq!(
        icmp.quoted,
        Some(QuotedSegment {
            seq: SeqSpec::Relative {
                start: 4294967295,
                len: 0
            },
            udp_encapsulation: None
        })
    );
    assert_eq!(
        icmp::resolve(&icmp, icmp::IcmpVersion::V4),
        Ok(icmp::IcmpTypeCode {
            icmp_type: 3,
            code: 3
        })
    );
    let config = script.config().unwrap();
    assert_eq!(config.ip_version, Some(IpVersion::Ipv4));
    assert_eq!(config.tolerance_usecs, Some(50_000));
}

#[test]
fn nplab_icmpv6_names() {
    let script = load("nplab_icmp_ttl_exceeded_ipv6.pkt");
    let PacketBody::Icmp(icmp) = &packet_of(event_at(&script, 10)).body else {
        panic!()
    };
    assert_eq!(
        icmp::resolve(icmp, icmp::IcmpVersion::V6),
        Ok(icmp::IcmpTypeCode {
            icmp_type: 3,
            code: 0
        })
    );
    assert!(icmp::resolve(icmp, icmp::IcmpVersion::V4).is_err());
}

#[test]
fn nplab_md5_and_udp_encapsulation() {
    let script = load("nplab_md5_udp.pkt");
    let init = script.init_command.as_ref().unwrap();
    assert_eq!(init.line, 11);
    assert!(init.command.starts_with("kldstat -q -m tcpmd5"));
    assert!(init.command.ends_with("| setkey -c"));
    assert_eq!(
        script.cleanup_command.as_ref().unwrap().command,
        "setkey -F"
    );
    let config = script.config().unwrap();
    assert!(config.non_fatal_syscall);
    assert_eq!(config.tcp_md5_secret.as_deref(), Some("secret"));
    assert_eq!(config.udp_encapsulation.as_deref(), Some("tcp"));

    let syn = tcp_of(event_at(&script, 18));
    assert_eq!(syn.options.wire_len(), Some(40));
    let TcpOptionsSpec::List(options) = &syn.options else {
        panic!()
    };
    assert_eq!(options.last(), Some(&TcpOptionSpec::Md5(Md5Spec::Valid)));

    let fin = tcp_of(event_at(&script, 21));
    assert_eq!(fin.udp_encapsulation, Some(PortPair { src: 1, dst: 9811 }));
    let rst = tcp_of(event_at(&script, 22));
    assert_eq!(rst.seq, SeqSpec::Absolute { start: 0, len: 0 });
    assert_eq!(rst.window, Some(0));
    assert_eq!(rst.ack, Some(2));
    assert_eq!(rst.udp_encapsulation, Some(PortPair { src: 9811, dst: 1 }));
}

#[test]
fn nplab_ip_fields() {
    let tos = load("nplab_tos_active_ipv4.pkt");
    assert_eq!(packet_of(event_at(&tos, 9)).ip.tos, Some(0x20));
    assert_eq!(packet_of(event_at(&tos, 10)).ip.tos, Some(0x28));
    let class = load("nplab_traffic_class_passive_ipv6.pkt");
    assert_eq!(packet_of(event_at(&class, 10)).ip.tos, Some(0x28));
    assert_eq!(packet_of(event_at(&class, 11)).ip.tos, Some(0x20));
    let hlim = load("nplab_hoplimit_active_ipv6.pkt");
    assert_eq!(packet_of(event_at(&hlim, 8)).ip.ttl, Some(4));
    assert_eq!(packet_of(event_at(&hlim, 9)).ip.ttl, Some(3));
}

#[test]
fn nplab_blocking_connect_and_spaced_relative_times() {
    let script = load("nplab_snd_syn_rtx_keepinit.pkt");
    assert_eq!(event_at(&script, 9).time, TimeSpec::Relative(0));
    let connect = event_at(&script, 11);
    assert_eq!(connect.time, TimeSpec::Absolute(1_000_000));
    let call = syscall_of(connect);
    assert_eq!(call.blocking_end, Some(6_000_000));
    assert_eq!(call.errno.as_ref().unwrap().name, "ETIMEDOUT");
    assert_eq!(event_at(&script, 14).time, TimeSpec::Relative(3_000_000));
}

#[test]
fn nplab_tcp_function_set() {
    let script = load("nplab_rack_function_blk.pkt");
    let call = syscall_of(event_at(&script, 10));
    assert_eq!(call.args[2].as_symbol(), Some("TCP_FUNCTION_BLK"));
    let ExprKind::Struct(fields) = &call.args[3].kind else {
        panic!("{:?}", call.args[3])
    };
    assert_eq!(fields[0].name.as_deref(), Some("function_set_name"));
    assert_eq!(
        fields[0].value.kind,
        ExprKind::Str {
            value: "rack".into(),
            ellipsis: false
        }
    );
    assert_eq!(fields[1].name.as_deref(), Some("pcbcnt"));
    assert_eq!(fields[1].line, 11);
    assert_eq!(fields[1].value.as_int(), Some(0));
}

#[test]
fn google_blocking_reads() {
    let script = load("google_blocking_read.pkt");
    let read = event_at(&script, 15);
    assert_eq!(read.time, TimeSpec::Relative(0));
    assert_eq!(syscall_of(read).blocking_end, Some(100_000));
    let read2 = event_at(&script, 18);
    assert_eq!(read2.time, TimeSpec::Relative(100_000));
    assert_eq!(syscall_of(read2).blocking_end, Some(200_000));
    // No `win` on the expected SYN-ACK: not checked.
    assert_eq!(tcp_of(event_at(&script, 11)).window, None);
}

#[test]
fn google_sendmsg_and_fast_open() {
    let script = load("google_sendmsg_fastopen.pkt");
    assert!(script
        .init_command
        .as_ref()
        .unwrap()
        .command
        .contains("set_sysctls.py"));
    assert_eq!(
        script.cleanup_command.as_ref().unwrap().command,
        "/tmp/sysctl_restore_${PPID}.sh"
    );
    let TcpOptionsSpec::List(request) = &tcp_of(event_at(&script, 10)).options else {
        panic!()
    };
    assert!(request.contains(&TcpOptionSpec::FastOpen(vec![])));
    let TcpOptionsSpec::List(reply) = &tcp_of(event_at(&script, 11)).options else {
        panic!()
    };
    assert!(reply.contains(&TcpOptionSpec::FastOpen(vec![0xab, 0xcd, 0x12, 0x34])));
    let EventKind::Code(code) = &event_at(&script, 13).kind else {
        panic!()
    };
    assert_eq!(
        code.trimmed(),
        "assert (tcpi_options & TCPI_OPT_SYN_DATA) == 0, tcpi_options"
    );
    let sendmsg = syscall_of(event_at(&script, 15));
    assert_eq!(sendmsg.blocking_end, Some(20_000));
    let ExprKind::Struct(fields) = &sendmsg.args[1].kind else {
        panic!()
    };
    assert_eq!(fields.len(), 3);
    assert_eq!(fields[0].name.as_deref(), Some("msg_name"));
    assert!(fields[0].len.as_ref().unwrap().is_ellipsis());
    assert!(fields[0].value.is_ellipsis());
    assert_eq!(fields[1].name.as_deref(), Some("msg_iov"));
    assert_eq!(fields[1].len.as_ref().unwrap().as_int(), Some(3));
    assert_eq!(fields[1].line, 16);
    let ExprKind::List(iovecs) = &fields[1].value.kind else {
        panic!()
    };
    assert_eq!(iovecs.len(), 3);
    let ExprKind::BitOr(flags) = &sendmsg.args[2].kind else {
        panic!()
    };
    assert_eq!(flags[1].as_symbol(), Some("MSG_FASTOPEN"));
}

#[test]
fn google_icmp_quoted_after() {
    let script = load("google_icmp_frag_needed.pkt");
    let PacketBody::Icmp(icmp) = &packet_of(event_at(&script, 7)).body else {
        panic!()
    };
    assert_eq!(icmp.mtu, Some(840));
    assert_eq!(
        icmp.quoted.unwrap().seq,
        SeqSpec::Relative {
            start: 0,
            len: 1000
        }
    );
    assert!(icmp::resolve(icmp, icmp::IcmpVersion::V4).is_ok());
    assert!(icmp::resolve(icmp, icmp::IcmpVersion::V6).is_err());
    assert_eq!(event_at(&script, 9).time, TimeSpec::Relative(1_000));
}

#[test]
fn google_accecn() {
    let script = load("google_accecn_synack_ce.pkt");
    let connect = event_at(&script, 8);
    assert_eq!(connect.time, TimeSpec::Relative(2_000));
    assert_eq!(syscall_of(connect).blocking_end, Some(52_000));
    let synack = tcp_of(event_at(&script, 10));
    let TcpOptionsSpec::List(options) = &synack.options else {
        panic!()
    };
    assert_eq!(
        options[1],
        TcpOptionSpec::AccEcn(AccEcnSpec {
            order: AccEcnOrder::Order0,
            experimental: false,
            counters: vec![1, 0, 1]
        })
    );
    let ack = tcp_of(event_at(&script, 11));
    assert_eq!(ack.flags, TcpFlags::ACK | TcpFlags::CWR | TcpFlags::AE);
    let TcpOptionsSpec::List(options) = &ack.options else {
        panic!()
    };
    let TcpOptionSpec::AccEcn(spec) = &options[0] else {
        panic!()
    };
    assert_eq!(spec.order, AccEcnOrder::Order1);
    assert_eq!(spec.counter(AccEcnField::Ee1b), Some(1));
    let p6 = tcp_of(event_at(&script, 13));
    assert_eq!(p6.flags.ace(), 6);
    assert!(p6.flags.contains(TcpFlags::PSH | TcpFlags::ACK));
    let ranged = event_at(&script, 15);
    assert_eq!(
        ranged.time,
        TimeSpec::RelativeRange {
            start: 1_000_000,
            end: 1_100_000
        }
    );
}

#[test]
fn google_epoll_structs() {
    let script = load("google_epoll.pkt");
    let lowat = syscall_of(event_at(&script, 12));
    let ExprKind::List(items) = &lowat.args[3].kind else {
        panic!()
    };
    assert_eq!(
        items[0].kind,
        ExprKind::Integer {
            value: 0xffff_ffff,
            hex: true
        }
    );
    let ctl = syscall_of(event_at(&script, 14));
    let ExprKind::Struct(fields) = &ctl.args[3].kind else {
        panic!()
    };
    assert_eq!(fields[0].name.as_deref(), Some("events"));
    assert!(matches!(&fields[0].value.kind, ExprKind::BitOr(v) if v.len() == 3));
    assert_eq!(fields[1].value.as_int(), Some(4));
}

#[test]
fn script_with_only_one_event_parses() {
    let script = parse("0 close(3) = 0\n");
    assert_eq!(script.events.len(), 1);
}

#[test]
fn google_md5_digest() {
    let script = load("google_md5_digest.pkt");
    let TcpOptionsSpec::List(options) = &tcp_of(event_at(&script, 13)).options else {
        panic!()
    };
    assert_eq!(
        options[0],
        TcpOptionSpec::Md5(Md5Spec::Digest((0..16).collect()))
    );
    // The commented-out command on line 14 is not an event.
    assert_eq!(event_at(&script, 15).time, TimeSpec::Relative(10_000));
}

#[test]
fn google_tw_reuse_options_and_init_command() {
    let script = load("google_tw_reuse.pkt");
    let config = script.config().unwrap();
    assert_eq!(config.bind_port, Some(57005));
    assert_eq!(config.tcp_ts_tick_usecs, Some(1000));
    assert_eq!(config.tolerance_percent, Some(1.0));
    let init = script.init_command.as_ref().unwrap();
    assert_eq!(init.line, 9);
    assert!(init.command.starts_with("\n../../common/defaults.sh\n"));
    assert!(init.command.contains("# global enable"));
    let socket = syscall_of(event_at(&script, 14));
    assert!(matches!(&socket.args[1].kind, ExprKind::BitOr(v) if v.len() == 2));
    let synack = tcp_of(event_at(&script, 19));
    let TcpOptionsSpec::List(options) = &synack.options else {
        panic!()
    };
    assert_eq!(
        options[2],
        TcpOptionSpec::Timestamp(TimestampSpec {
            val: Some(3001),
            ecr: 1001,
            ecr_absolute: false
        })
    );
}
