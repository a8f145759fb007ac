//! One test (or a few) per grammar construct.

mod common;

use common::{packet, parse, parse_err, single_event, syscall, tcp};
use plugtcp_packetdrill::*;

fn int(value: i64) -> ExprKind {
    ExprKind::Integer { value, hex: false }
}

fn symbol(name: &str) -> ExprKind {
    ExprKind::Symbol(name.to_string())
}

fn options_of(line: &str) -> Vec<TcpOptionSpec> {
    match tcp(line).options {
        TcpOptionsSpec::List(list) => list,
        TcpOptionsSpec::Any => panic!("wildcard options"),
    }
}

// ---- options, comments, preprocessor ---------------------------------------------------

#[test]
fn option_lines() {
    let script = parse(
        "--tolerance_usecs=10000\n\
         --ip_version=ipv6\n\
         --dry_run\n\
         --tolerance_percent=12.5\n\
         --local_ip=fd3d:fa7b:d17d::1\n\
         --define=CC=\"reno\"\n\
         --init_scripts=\"a.sh b.sh\"\n\
         0 close(3) = 0\n",
    );
    let names: Vec<(&str, Option<&str>, u32)> = script
        .options
        .iter()
        .map(|o| (o.name.as_str(), o.value.as_deref(), o.line))
        .collect();
    assert_eq!(
        names,
        vec![
            ("tolerance_usecs", Some("10000"), 1),
            ("ip_version", Some("ipv6"), 2),
            ("dry_run", None, 3),
            ("tolerance_percent", Some("12.5"), 4),
            ("local_ip", Some("fd3d:fa7b:d17d::1"), 5),
            ("define", Some("CC=\"reno\""), 6),
            ("init_scripts", Some("a.sh b.sh"), 7),
        ]
    );
    let config = script.config().unwrap();
    assert_eq!(config.tolerance_usecs, Some(10_000));
    assert_eq!(config.ip_version, Some(IpVersion::Ipv6));
    assert_eq!(config.tolerance_percent, Some(12.5));
    assert!(config.dry_run);
    assert_eq!(
        config.defines,
        vec![("CC".to_string(), "\"reno\"".to_string())]
    );
}

#[test]
fn bad_typed_option_names_its_line() {
    let script = parse("--tolerance_usecs=10000\n--bind_port=70000\n0 close(3) = 0\n");
    assert_eq!(
        script.config().unwrap_err().to_string(),
        "test.pkt:2: semantic error: bad --bind_port: 70000"
    );
}

#[test]
fn comments_keep_line_numbers() {
    let script = parse(
        "// a comment\n\
         /* a block\n   comment */ 0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3 // trailing\n\
         +0 close(3) = 0 /* inline */\n",
    );
    assert_eq!(script.events[0].line, 3);
    assert_eq!(script.events[1].line, 4);
}

#[test]
fn ifdef_ifndef_else_nesting() {
    let text = "\
0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
#ifdef FreeBSD
+0 setsockopt(3, IPPROTO_TCP, TCP_FUNCTION_BLK, {function_set_name=\"rack\", pcbcnt=0}, 36) = 0
#ifndef Linux
+0 `sysctl -w net.inet.tcp.x=1`
#else
+0 `echo linux`
#endif
#else
+0 `echo not freebsd`
#endif
+0 close(3) = 0
";
    let freebsd = parse_script("t.pkt", text, &["FreeBSD".to_string()]).unwrap();
    let lines: Vec<u32> = freebsd.events.iter().map(|e| e.line).collect();
    assert_eq!(lines, vec![1, 3, 5, 12]);
    let both = parse_script("t.pkt", text, &["FreeBSD".into(), "Linux".into()]).unwrap();
    let lines: Vec<u32> = both.events.iter().map(|e| e.line).collect();
    assert_eq!(lines, vec![1, 3, 7, 12]);
    let neither = parse_script("t.pkt", text, &[]).unwrap();
    let lines: Vec<u32> = neither.events.iter().map(|e| e.line).collect();
    assert_eq!(lines, vec![1, 10, 12]);
}

#[test]
fn hash_lines_inside_code_blocks_are_not_directives() {
    let script = parse("0 %{\n# a python comment\n#else\nassert x == 1\n}%\n");
    let EventKind::Code(code) = &script.events[0].kind else {
        panic!()
    };
    assert_eq!(code.text, "\n# a python comment\n#else\nassert x == 1\n");
    assert_eq!(code.line, 1);
}

#[test]
fn script_define_lines_count_for_ifdef_and_substitute_words() {
    let script = parse(
        "--define=PORT=8080\n\
         #ifdef PORT\n\
         0 bind(3, {sa_family=AF_INET, sin_port=htons(PORT), sin_addr=inet_addr(\"192.0.2.1\")}, 16) = 0\n\
         #endif\n",
    );
    let call = match &script.events[0].kind {
        EventKind::Syscall(call) => call,
        other => panic!("{other:?}"),
    };
    let ExprKind::Struct(fields) = &call.args[1].kind else {
        panic!()
    };
    let ExprKind::Htons(port) = &fields[1].value.kind else {
        panic!()
    };
    assert_eq!(port.kind, int(8080));
}

#[test]
fn caller_defines_substitute_words() {
    let script = parse_script(
        "t.pkt",
        "0 setsockopt(3, SOL_TCP, TCP_CONGESTION, CC, 4) = 0\n",
        &["CC=\"cubic\"".to_string()],
    )
    .unwrap();
    let EventKind::Syscall(call) = &script.events[0].kind else {
        panic!()
    };
    assert_eq!(
        call.args[3].kind,
        ExprKind::Str {
            value: "cubic".into(),
            ellipsis: false
        }
    );
}

// ---- times ---------------------------------------------------------------------------

#[test]
fn time_forms() {
    let cases = [
        ("0.100 close(3) = 0", TimeSpec::Absolute(100_000)),
        ("2 close(3) = 0", TimeSpec::Absolute(2_000_000)),
        ("+0.1 close(3) = 0", TimeSpec::Relative(100_000)),
        ("+.001 close(3) = 0", TimeSpec::Relative(1_000)),
        ("+ 0.5 close(3) = 0", TimeSpec::Relative(500_000)),
        ("* > . 1:1(0) ack 1", TimeSpec::Any),
        (
            "0.1~0.2 > . 1:1(0) ack 1",
            TimeSpec::AbsoluteRange {
                start: 100_000,
                end: 200_000,
            },
        ),
        (
            "+0.1~+0.25 > . 1:1(0) ack 1",
            TimeSpec::RelativeRange {
                start: 100_000,
                end: 250_000,
            },
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(single_event(text).time, expected, "{text}");
    }
}

#[test]
fn blocking_call_end_times() {
    let absolute = single_event("0.1...0.2 read(3, ..., 1000) = 1000");
    assert_eq!(absolute.time, TimeSpec::Absolute(100_000));
    let EventKind::Syscall(call) = absolute.kind else {
        panic!()
    };
    assert_eq!(call.blocking_end, Some(200_000));
    let relative = single_event("+0...0.1 accept(3, ..., ...) = 4");
    assert_eq!(relative.time, TimeSpec::Relative(0));
    let EventKind::Syscall(call) = relative.kind else {
        panic!()
    };
    assert_eq!(call.blocking_end, Some(100_000));
    assert_eq!(syscall("+0 close(3) = 0").blocking_end, None);
}

// ---- packets ---------------------------------------------------------------------------

#[test]
fn directions() {
    assert_eq!(
        packet("0 < S 0:0(0) win 1000").direction,
        Direction::Inbound
    );
    assert_eq!(packet("0 > S 0:0(0)").direction, Direction::Outbound);
}

#[test]
fn ecn_codepoints() {
    let cases = [
        ("[noecn]", EcnSpec::NotEct),
        ("[ect0]", EcnSpec::Ect0),
        ("[ect1]", EcnSpec::Ect1),
        ("[ce]", EcnSpec::Ce),
        ("[ect01]", EcnSpec::Ect0OrEct1),
        ("(ecn ect1)", EcnSpec::Ect1),
    ];
    for (info, ecn) in cases {
        let p = packet(&format!("0 > {info} . 1:1(0) ack 1"));
        assert_eq!(
            p.ip,
            IpSpec {
                ecn: Some(ecn),
                ..IpSpec::default()
            },
            "{info}"
        );
    }
}

#[test]
fn ip_fields() {
    assert_eq!(packet("0 > (tos 0x10) S 0:0(0)").ip.tos, Some(0x10));
    assert_eq!(packet("0 > [tos 0x2] S 0:0(0)").ip.tos, Some(0x2));
    assert_eq!(packet("0 > (class 0x28) S 0:0(0)").ip.tos, Some(0x28));
    assert_eq!(packet("0 > (ttl 64) S 0:0(0)").ip.ttl, Some(64));
    assert_eq!(packet("0 > (hlim 3) S 0:0(0)").ip.ttl, Some(3));
    assert_eq!(
        packet("0 > (flowlabel 0x12345) S 0:0(0)").ip.flow_label,
        Some(0x12345)
    );
    assert_eq!(
        packet("0 > (dscp AF41, ecn ce, flowlabel 0x1, hlim 9) S 0:0(0)").ip,
        IpSpec {
            ecn: Some(EcnSpec::Ce),
            tos: None,
            dscp: Some(34),
            ttl: Some(9),
            flow_label: Some(1),
        }
    );
    assert_eq!(
        packet("0 > [ect0, ttl 64] S 0:0(0)").ip,
        IpSpec {
            ecn: Some(EcnSpec::Ect0),
            ttl: Some(64),
            ..IpSpec::default()
        }
    );
    assert!(packet("0 > S 0:0(0)").ip.is_empty());
}

#[test]
fn every_flag_letter() {
    let cases = [
        ("S", TcpFlags::SYN),
        ("F", TcpFlags::FIN),
        ("R", TcpFlags::RST),
        ("P", TcpFlags::PSH),
        (".", TcpFlags::ACK),
        ("U", TcpFlags::URG),
        ("E", TcpFlags::ECE),
        ("W", TcpFlags::CWR),
        ("A", TcpFlags::AE),
        ("-", TcpFlags::empty()),
        ("S.", TcpFlags::SYN | TcpFlags::ACK),
        ("FP.", TcpFlags::FIN | TcpFlags::PSH | TcpFlags::ACK),
        ("SEW", TcpFlags::SYN | TcpFlags::ECE | TcpFlags::CWR),
        ("R.", TcpFlags::RST | TcpFlags::ACK),
    ];
    for (notation, flags) in cases {
        let segment = tcp(&format!("0 > {notation} 1:1(0)"));
        assert_eq!(segment.flags, flags, "{notation}");
        assert!(!segment.ace_notation);
    }
}

#[test]
fn ace_digit_flags() {
    for (notation, ace, rest) in [
        ("5.", 5, TcpFlags::ACK),
        ("P5.", 5, TcpFlags::PSH | TcpFlags::ACK),
        (".6", 6, TcpFlags::ACK),
        ("P.6", 6, TcpFlags::PSH | TcpFlags::ACK),
        ("0.", 0, TcpFlags::ACK),
        ("F2.", 2, TcpFlags::FIN | TcpFlags::ACK),
        ("7", 7, TcpFlags::empty()),
    ] {
        let segment = tcp(&format!("0 > {notation} 1:1(0) ack 1"));
        assert!(segment.ace_notation, "{notation}");
        assert_eq!(segment.flags, rest.with_ace(ace), "{notation}");
    }
}

#[test]
fn sequence_forms() {
    assert_eq!(
        tcp("0 > P. 1:1001(1000) ack 1").seq,
        SeqSpec::Relative {
            start: 1,
            len: 1000
        }
    );
    assert_eq!(
        tcp("0 > R. 0:0(0)! ack 2").seq,
        SeqSpec::Absolute { start: 0, len: 0 }
    );
    assert_eq!(
        tcp("0 > P. ...(1000) ack 1").seq,
        SeqSpec::Ignored { len: 1000 }
    );
}

#[test]
fn ack_win_urg_are_optional() {
    let bare = tcp("0 > S 0:0(0)");
    assert_eq!((bare.ack, bare.window, bare.urgent), (None, None, None));
    assert_eq!(bare.options, TcpOptionsSpec::none());
    let full = tcp("0 < P.U 1:11(10) ack 0 win 0 urg 5");
    assert_eq!(
        (full.ack, full.window, full.urgent),
        (Some(0), Some(0), Some(5))
    );
    assert!(full.flags.contains(TcpFlags::URG));
}

#[test]
fn explicit_ports() {
    let segment = tcp("0 < 8080 > 40000 S 0:0(0) win 1000");
    assert_eq!(
        segment.ports,
        Some(PortPair {
            src: 8080,
            dst: 40000
        })
    );
    assert_eq!(segment.flags, TcpFlags::SYN);
}

#[test]
fn option_kinds() {
    let options = options_of(
        "0 > S 0:0(0) <mss 1460,nop,wscale 7,sackOK,TS val 100 ecr 0,nop,nop,sack 1:2 3:4>",
    );
    assert_eq!(
        options,
        vec![
            TcpOptionSpec::Mss(1460),
            TcpOptionSpec::Nop,
            TcpOptionSpec::WindowScale(Some(7)),
            TcpOptionSpec::SackPermitted,
            TcpOptionSpec::Timestamp(TimestampSpec {
                val: Some(100),
                ecr: 0,
                ecr_absolute: false
            }),
            TcpOptionSpec::Nop,
            TcpOptionSpec::Nop,
            TcpOptionSpec::Sack(vec![
                SackBlock { left: 1, right: 2 },
                SackBlock { left: 3, right: 4 }
            ]),
        ]
    );
}

#[test]
fn timestamp_variants() {
    let options = options_of("0 > . 1:1(0) ack 1 <nop,nop,TS val ... ecr 100!>");
    assert_eq!(
        options[2],
        TcpOptionSpec::Timestamp(TimestampSpec {
            val: None,
            ecr: 100,
            ecr_absolute: true
        })
    );
}

#[test]
fn wildcard_window_scale_and_any_options() {
    assert_eq!(
        options_of("0 > S 0:0(0) <wscale *,nop>")[0],
        TcpOptionSpec::WindowScale(None)
    );
    assert_eq!(
        tcp("0 > P. 1:1001(1000) ack 1 <...>").options,
        TcpOptionsSpec::Any
    );
}

#[test]
fn fast_open_options() {
    assert_eq!(
        options_of("0 > S 0:0(0) <FO,nop,nop>")[0],
        TcpOptionSpec::FastOpen(vec![])
    );
    assert_eq!(
        options_of("0 > S 0:0(0) <FO 12345678,nop,nop>")[0],
        TcpOptionSpec::FastOpen(vec![0x12, 0x34, 0x56, 0x78])
    );
    assert_eq!(
        options_of("0 > S 0:0(0) <FOEXP abcd1234>")[0],
        TcpOptionSpec::FastOpenExp(vec![0xab, 0xcd, 0x12, 0x34])
    );
    assert_eq!(
        options_of("0 > S 0:0(0) <EXP-FO>")[0],
        TcpOptionSpec::FastOpenExp(vec![])
    );
}

#[test]
fn md5_options() {
    let cases = [
        ("md5", Md5Spec::Placeholder),
        ("md5 valid", Md5Spec::Valid),
        ("md5 invalid", Md5Spec::Invalid),
        (
            "md5 000102030405060708090a0b0c0d0e0f",
            Md5Spec::Digest((0..16).collect()),
        ),
    ];
    for (text, spec) in cases {
        let options = options_of(&format!("0 > . 1:1(0) ack 1 <nop,nop,{text}>"));
        assert_eq!(options[2], TcpOptionSpec::Md5(spec), "{text}");
    }
}

#[test]
fn accecn_options() {
    assert_eq!(
        options_of("0 > . 1:1(0) ack 1 <AccECN0,nop,nop>")[0],
        TcpOptionSpec::AccEcn(AccEcnSpec {
            order: AccEcnOrder::Order0,
            experimental: false,
            counters: vec![]
        })
    );
    assert_eq!(
        options_of("0 > . 1:1(0) ack 1 <AccECN1 EE1B 7 ECEB 8 EE0B 9,nop>")[0],
        TcpOptionSpec::AccEcn(AccEcnSpec {
            order: AccEcnOrder::Order1,
            experimental: false,
            counters: vec![7, 8, 9]
        })
    );
    assert_eq!(
        options_of("0 > . 1:1(0) ack 1 <exp-AccECN0 EE0B 1 ECEB 2,nop,nop>")[0],
        TcpOptionSpec::AccEcn(AccEcnSpec {
            order: AccEcnOrder::Order0,
            experimental: true,
            counters: vec![1, 2]
        })
    );
    assert_eq!(
        options_of("0 > . 1:1(0) ack 1 <ECN e1b 1 ceb 0 e0b 1,nop>")[0],
        TcpOptionSpec::AccEcn(AccEcnSpec {
            order: AccEcnOrder::Order1,
            experimental: false,
            counters: vec![1, 0, 1]
        })
    );
}

#[test]
fn tarr_and_raw_options() {
    assert_eq!(
        options_of("0 > . 1:1(0) ack 1 <exp-tarr>")[0],
        TcpOptionSpec::AckRateRequest(None)
    );
    assert_eq!(
        options_of("0 > . 1:1(0) ack 1 <exp-tarr 3,nop,nop,nop>")[0],
        TcpOptionSpec::AckRateRequest(Some(3))
    );
    assert_eq!(
        options_of("0 > . 1:1(0) ack 1 <opt 30 0a0b>")[0],
        TcpOptionSpec::Raw {
            kind: 30,
            data: vec![0x0a, 0x0b]
        }
    );
    assert_eq!(
        options_of("0 > . 1:1(0) ack 1 <opt 99,nop,nop>")[0],
        TcpOptionSpec::Raw {
            kind: 99,
            data: vec![]
        }
    );
}

#[test]
fn udp_encapsulation_suffix() {
    let segment = tcp("0 < S 0:0(0) win 1000 <mss 1460>/udp(1 > 9811)");
    assert_eq!(
        segment.udp_encapsulation,
        Some(PortPair { src: 1, dst: 9811 })
    );
    let bare = tcp("0 < S 0:0(0) win 1000 /udp(2 > 3)");
    assert_eq!(bare.udp_encapsulation, Some(PortPair { src: 2, dst: 3 }));
}

#[test]
fn icmp_forms() {
    let PacketBody::Icmp(frag) =
        packet("0 < icmp unreachable frag_needed mtu 1200 [1:1461(1460)]").body
    else {
        panic!()
    };
    assert_eq!(
        frag,
        IcmpSpec {
            type_name: "unreachable".into(),
            code_name: Some("frag_needed".into()),
            mtu: Some(1200),
            echo_id: None,
            quoted: Some(QuotedSegment {
                seq: SeqSpec::Relative {
                    start: 1,
                    len: 1460
                },
                udp_encapsulation: None
            }),
        }
    );
    let PacketBody::Icmp(too_big) = packet("0 < icmp packet_too_big mtu 1280").body else {
        panic!()
    };
    assert_eq!(too_big.code_name, None);
    assert_eq!(
        icmp::resolve(&too_big, icmp::IcmpVersion::V6),
        Ok(icmp::IcmpTypeCode {
            icmp_type: 2,
            code: 0
        })
    );
    let PacketBody::Icmp(before) =
        packet("0 < [1:1(0)/udp(5 > 6)] icmp unreachable port_unreachable").body
    else {
        panic!()
    };
    assert_eq!(
        before.quoted.unwrap().udp_encapsulation,
        Some(PortPair { src: 5, dst: 6 })
    );
    let PacketBody::Icmp(echo) = packet("0 > icmp echo_reply id 7").body else {
        panic!()
    };
    assert_eq!(echo.echo_id, Some(7));
    let PacketBody::Icmp(numbered) = packet("0 < icmp type_3 code_4 mtu 576").body else {
        panic!()
    };
    assert_eq!(
        icmp::resolve(&numbered, icmp::IcmpVersion::V4),
        Ok(icmp::IcmpTypeCode {
            icmp_type: 3,
            code: 4
        })
    );
}

// ---- system calls ------------------------------------------------------------------------

#[test]
fn results_errno_and_notes() {
    let call = syscall("0 connect(3, ..., ...) = -1 EINPROGRESS (Operation now in progress)");
    assert_eq!(call.name, "connect");
    assert_eq!(call.result.kind, int(-1));
    assert_eq!(
        call.errno,
        Some(ErrnoSpec {
            name: "EINPROGRESS".into(),
            text: Some("Operation now in progress".into())
        })
    );
    assert_eq!(call.note, None);
    let bare_errno = syscall("0 read(3, ..., 10) = -1 EAGAIN");
    assert_eq!(bare_errno.errno.unwrap().text, None);
    let note = syscall("0 fcntl(3, F_GETFL) = 0x2 (flags O_RDWR)");
    assert_eq!(note.note.as_deref(), Some("flags O_RDWR"));
    assert_eq!(note.errno, None);
    let any = syscall("0 getsockopt(3, SOL_SOCKET, SO_ERROR, [...], [4]) = ...");
    assert!(any.result.is_ellipsis());
    let no_args = syscall("0 getpid() = 3");
    assert!(no_args.args.is_empty());
}

#[test]
fn scalar_expressions() {
    let call = syscall(
        "0 f(-5, 0x1f, \"abc\", \"pre\"..., SOL_SOCKET, O_RDWR|O_NONBLOCK|4, NULL, ...) = 0",
    );
    let kinds: Vec<ExprKind> = call.args.into_iter().map(|a| a.kind).collect();
    assert_eq!(
        kinds,
        vec![
            int(-5),
            ExprKind::Integer {
                value: 0x1f,
                hex: true
            },
            ExprKind::Str {
                value: "abc".into(),
                ellipsis: false
            },
            ExprKind::Str {
                value: "pre".into(),
                ellipsis: true
            },
            symbol("SOL_SOCKET"),
            ExprKind::BitOr(vec![
                Expr::new(1, symbol("O_RDWR")),
                Expr::new(1, symbol("O_NONBLOCK")),
                Expr::new(1, int(4)),
            ]),
            ExprKind::Null,
            ExprKind::Ellipsis,
        ]
    );
}

#[test]
fn arrays() {
    let call = syscall("0 f([1], [a, b], [], [[1, 2], [3]]) = 0");
    assert_eq!(
        call.args[0].kind,
        ExprKind::List(vec![Expr::new(1, int(1))])
    );
    assert_eq!(
        call.args[1].kind,
        ExprKind::List(vec![Expr::new(1, symbol("a")), Expr::new(1, symbol("b"))])
    );
    assert_eq!(call.args[2].kind, ExprKind::List(vec![]));
    assert!(matches!(&call.args[3].kind, ExprKind::List(outer) if outer.len() == 2));
}

fn fields(expr: &Expr) -> &[StructField] {
    match &expr.kind {
        ExprKind::Struct(fields) => fields,
        other => panic!("not a struct: {other:?}"),
    }
}

fn field_names(expr: &Expr) -> Vec<Option<&str>> {
    fields(expr).iter().map(|f| f.name.as_deref()).collect()
}

#[test]
fn struct_literals() {
    let linger = syscall("0 setsockopt(3, SOL_SOCKET, SO_LINGER, {l_onoff=1, l_linger=0}, 8) = 0");
    assert_eq!(
        field_names(&linger.args[3]),
        vec![Some("l_onoff"), Some("l_linger")]
    );

    let sockaddr = syscall(
        "0 connect(3, {sa_family=AF_INET, sin_port=htons(8080), sin_addr=inet_addr(\"192.0.2.1\")}, 16) = 0",
    );
    let f = fields(&sockaddr.args[1]);
    assert_eq!(f[0].value.kind, symbol("AF_INET"));
    assert_eq!(
        f[1].value.kind,
        ExprKind::Htons(Box::new(Expr::new(1, int(8080))))
    );
    assert_eq!(f[2].value.kind, ExprKind::InetAddr("192.0.2.1".into()));

    let poll = syscall("0 poll([{fd=3, events=POLLIN|POLLOUT, revents=POLLOUT}], 1, 0) = 1");
    let ExprKind::List(pollfds) = &poll.args[0].kind else {
        panic!()
    };
    assert_eq!(
        field_names(&pollfds[0]),
        vec![Some("fd"), Some("events"), Some("revents")]
    );

    let timeval =
        syscall("0 setsockopt(3, SOL_SOCKET, SO_RCVTIMEO, {tv_sec=1, tv_usec=500}, 16) = 0");
    assert_eq!(
        field_names(&timeval.args[3]),
        vec![Some("tv_sec"), Some("tv_usec")]
    );

    let function_set =
        syscall("0 getsockopt(3, IPPROTO_TCP, TCP_FUNCTION_BLK, {function_set_name=\"base\", pcbcnt=...}, [36]) = 0");
    assert!(fields(&function_set.args[3])[1].value.is_ellipsis());
}

#[test]
fn iovec_and_msghdr_forms() {
    let writev = syscall("0 writev(4, [{..., 10}, {iov_base=..., iov_len=20}], 2) = 30");
    let ExprKind::List(iov) = &writev.args[1].kind else {
        panic!()
    };
    assert_eq!(field_names(&iov[0]), vec![None, None]);
    assert_eq!(fields(&iov[0])[1].value.kind, int(10));
    assert_eq!(
        field_names(&iov[1]),
        vec![Some("iov_base"), Some("iov_len")]
    );

    let recvmsg = syscall(
        "0 recvmsg(4, {msg_name(...)=..., msg_iov(1)=[{iov_base=..., iov_len=1000}], \
         msg_control(0)=[], msg_flags=0}, 0) = 1000",
    );
    let f = fields(&recvmsg.args[1]);
    assert_eq!(
        field_names(&recvmsg.args[1]),
        vec![
            Some("msg_name"),
            Some("msg_iov"),
            Some("msg_control"),
            Some("msg_flags")
        ]
    );
    assert!(f[0].len.as_ref().unwrap().is_ellipsis());
    assert_eq!(f[1].len.as_ref().unwrap().as_int(), Some(1));
    assert_eq!(f[2].len.as_ref().unwrap().as_int(), Some(0));
    assert_eq!(f[2].value.kind, ExprKind::List(vec![]));
    assert!(f[3].len.is_none());
}

#[test]
fn network_order_helpers() {
    let call = syscall("0 f(htonl(0x01020304), htons(80), inet6_addr(\"2001:db8::1\")) = 0");
    assert_eq!(
        call.args[0].kind,
        ExprKind::Htonl(Box::new(Expr::new(
            1,
            ExprKind::Integer {
                value: 0x01020304,
                hex: true
            }
        )))
    );
    assert_eq!(call.args[2].kind, ExprKind::Inet6Addr("2001:db8::1".into()));
}

#[test]
fn expressions_carry_their_own_lines() {
    let call = syscall(
        "0 sendmsg(4, {msg_name(...)=...,\n msg_iov(1)=[{..., 1000}],\n msg_flags=0}, 0) = 1000",
    );
    let f = fields(&call.args[1]);
    assert_eq!((f[0].line, f[1].line, f[2].line), (1, 2, 3));
    assert_eq!(call.args[2].line, 3);
}

// ---- commands and code -----------------------------------------------------------------

#[test]
fn commands() {
    let script = parse(
        "`init command`\n\
         +0 `sysctl -w net.inet.tcp.x=1`\n\
         +0 `echo \\` escaped`\n\
         `cleanup`\n",
    );
    assert_eq!(
        script.init_command,
        Some(ShellCommand {
            line: 1,
            command: "init command".into()
        })
    );
    let EventKind::Command(command) = &script.events[0].kind else {
        panic!()
    };
    assert_eq!(command.command, "sysctl -w net.inet.tcp.x=1");
    let EventKind::Command(escaped) = &script.events[1].kind else {
        panic!()
    };
    assert_eq!(escaped.command, "echo \\` escaped");
    assert_eq!(script.cleanup_command.unwrap().line, 4);
}

#[test]
fn code_blocks_are_verbatim() {
    let event = single_event("+0 %{ assert tcpi_snd_cwnd == 10, tcpi_snd_cwnd }%");
    let EventKind::Code(code) = event.kind else {
        panic!()
    };
    assert_eq!(code.text, " assert tcpi_snd_cwnd == 10, tcpi_snd_cwnd ");
    assert_eq!(code.trimmed(), "assert tcpi_snd_cwnd == 10, tcpi_snd_cwnd");
}

#[test]
fn events_may_span_lines_and_share_lines() {
    let script = parse("0 socket(..., SOCK_STREAM,\n IPPROTO_TCP) = 3 +0 close(3)\n = 0");
    assert_eq!(script.events.len(), 2);
    assert_eq!(script.events[1].line, 2);
}

#[test]
fn inbound_packet_without_window_is_allowed() {
    assert_eq!(tcp("0 < . 1:1(0) ack 1").window, None);
}

#[test]
fn error_type_distinguishes_unsupported() {
    let err = parse_script("t.pkt", "0 > sctp: DATA[flgs=BE, len=1016, tsn=1]", &[]).unwrap_err();
    assert!(err.is_unsupported());
    assert!(!parse_script("t.pkt", "0 > @", &[])
        .unwrap_err()
        .is_unsupported());
    assert!(parse_err("0 < udp(100)").contains("unsupported: UDP packets"));
}
