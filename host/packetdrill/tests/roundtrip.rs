//! The printers write packetdrill notation that the parser reads back unchanged.

mod common;

use common::{assert_round_trips, parse, single_event};
use plugtcp_packetdrill::*;

#[test]
fn flags_print_in_packetdrill_notation() {
    let cases = [
        (TcpFlags::SYN, "S"),
        (TcpFlags::SYN | TcpFlags::ACK, "S."),
        (TcpFlags::PSH | TcpFlags::ACK, "P."),
        (TcpFlags::FIN | TcpFlags::ACK, "F."),
        (TcpFlags::RST, "R"),
        (TcpFlags::SYN | TcpFlags::ECE | TcpFlags::CWR, "SEW"),
        (TcpFlags::ACK, "."),
        (TcpFlags::empty(), "-"),
        (
            TcpFlags::SYN | TcpFlags::ECE | TcpFlags::CWR | TcpFlags::AE,
            "SEWA",
        ),
        (TcpFlags::URG | TcpFlags::ACK, "U."),
    ];
    for (flags, text) in cases {
        assert_eq!(flags.to_string(), text);
    }
    let p5 = (TcpFlags::PSH | TcpFlags::ACK).with_ace(5);
    assert_eq!(p5.ace_notation().to_string(), "P5.");
    assert_eq!(TcpFlags::ACK.ace_notation().to_string(), "0.");
}

#[test]
fn every_flag_combination_round_trips_in_both_notations() {
    for bits in 0..=0x1ffu16 {
        let flags = TcpFlags::from_bits(bits);
        assert_eq!(
            TcpFlags::parse(&flags.to_string()),
            Ok((flags, false)),
            "{flags}"
        );
        let ace = flags.ace_notation().to_string();
        assert_eq!(TcpFlags::parse(&ace), Ok((flags, true)), "{ace}");
    }
}

#[test]
fn options_print_in_packetdrill_notation() {
    let options = TcpOptionsSpec::List(vec![
        TcpOptionSpec::Mss(1460),
        TcpOptionSpec::Nop,
        TcpOptionSpec::WindowScale(Some(7)),
        TcpOptionSpec::SackPermitted,
        TcpOptionSpec::Timestamp(TimestampSpec {
            val: Some(100),
            ecr: 0,
            ecr_absolute: false,
        }),
    ]);
    assert_eq!(
        options.to_string(),
        "<mss 1460,nop,wscale 7,sackOK,TS val 100 ecr 0>"
    );
    assert_eq!(TcpOptionsSpec::Any.to_string(), "<...>");
    assert_eq!(TcpOptionsSpec::none().to_string(), "");
}

/// Packet lines in the printers' canonical form print back exactly.
#[test]
fn packet_lines_print_back_exactly() {
    let lines = [
        "+0 > S 0:0(0) <mss 1460,nop,wscale 7,sackOK,TS val 100 ecr 0>",
        "+0 < S. 0:0(0) ack 1 win 65535 <mss 1460,sackOK,eol,eol>",
        "0.1 > [ect0] P. 1:1001(1000) ack 1",
        "* > [noecn] SEWA 0:0(0) win 65535 <mss 1460,nop,wscale 6,sackOK,TS val ... ecr 0>",
        "+0 > [ect0] P5. 1461:2921(1460) ack 1",
        "+0 < (dscp 0x22, ecn ce, flowlabel 0x12345, ttl 9) . 1:1(0) ack 1 win 257",
        "+0 > (tos 0x20) F. 2921:2921(0) ack 1 win 65535",
        "+0 > R. 0:0(0)! ack 2 win 0 <nop,nop,md5 valid>/udp(9811 > 1)",
        "+0 > P. ...(1000) ack 1 <...>",
        "+0 < 8080 > 40000 PU. 1:11(10) ack 1 win 100 urg 3",
        "+0 > . 1:1(0) ack 1 <nop,nop,TS val 5 ecr 7!>",
        "+0 > S 0:0(0) <FO,nop,nop>",
        "+0 > S 0:0(0) <FO abcd1234,nop,nop>",
        "+0 > S 0:0(0) <FOEXP 0102,nop,nop>",
        "+0 > . 1:1(0) ack 1 <nop,nop,md5 000102030405060708090a0b0c0d0e0f>",
        "+0 > . 1:1(0) ack 1 <nop,nop,md5>",
        "+0 > W. 1:1(0) ack 1 <AccECN1 EE1B 1 ECEB 0 EE0B 1,nop>",
        "+0 > W. 1:1(0) ack 1 <exp-AccECN0,exp-tarr 3,nop,nop,nop>",
        "+0 > . 1:1(0) ack 1 <nop,nop,sack 1001:2001 3001:4001>",
        "+0 > S 0:0(0) <wscale *,nop>",
        "+0 > . 1:1(0) ack 1 <opt 30 0a0b>",
        "+0 < icmp unreachable frag_needed mtu 1200 [1:1461(1460)]",
        "+0 < icmp time_exceeded exceeded_hop_limit [0:0(0)/udp(1 > 2)]",
        "+0 > icmp echo_reply id 7",
        "+0.1~+0.2 > . 1:1(0) ack 1",
        "1~2.5 > . 1:1(0) ack 1",
    ];
    for line in lines {
        let event = single_event(line);
        assert_eq!(event.to_string(), line);
    }
}

#[test]
fn syscall_lines_print_back_exactly() {
    let lines = [
        "0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3",
        "+0 connect(3, ..., ...) = -1 EINPROGRESS (Operation now in progress)",
        "+0 read(3, ..., 10) = -1 EAGAIN",
        "+0 fcntl(3, F_GETFL) = 0x2 (flags O_RDWR)",
        "+0 fcntl(3, F_SETFL, O_RDWR|O_NONBLOCK) = 0",
        "0.1...0.2 read(4, ..., 1000) = 1000",
        "+0...0.1 accept(3, ..., ...) = 4",
        "+0 setsockopt(3, SOL_SOCKET, SO_LINGER, {onoff=1, linger=0}, 8) = 0",
        "+0 poll([{fd=3, events=POLLIN, revents=POLLIN}], 1, 0) = 1",
        "+0 sendmsg(4, {msg_name(...)=..., msg_iov(1)=[{..., 1000}], msg_flags=0}, 0) = 1000",
        "+0 connect(3, {sa_family=AF_INET, sin_port=htons(8080), sin_addr=inet_addr(\"192.0.2.1\")}, 16) = 0",
        "+0 write(3, \"abc\"..., 3) = 3",
        "+0 f(NULL, [], [[1], [2]], htonl(0x1020304), inet6_addr(\"::1\"), {}) = ...",
        "+0 getsockopt(3, IPPROTO_TCP, TCP_FUNCTION_BLK, {function_set_name=\"rack\", pcbcnt=...}, [36]) = 0",
    ];
    for line in lines {
        assert_eq!(single_event(line).to_string(), line);
    }
}

#[test]
fn whole_scripts_round_trip() {
    let script = parse(
        "--tolerance_usecs=10000\n\
         --init_scripts=\"a.sh b.sh\"\n\
         `init`\n\
         0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n\
         +0 %{ assert x == 1 }%\n\
         +0 `sysctl -w a=1`\n\
         +0 > S 0:0(0) <mss 1460>\n\
         `cleanup`\n",
    );
    assert_round_trips(&script);
}

#[test]
fn times_print_without_trailing_zeros() {
    assert_eq!(display::format_seconds(0), "0");
    assert_eq!(display::format_seconds(100_000), "0.1");
    assert_eq!(display::format_seconds(1_000_001), "1.000001");
    assert_eq!(TimeSpec::Relative(2_500).to_string(), "+0.0025");
}
