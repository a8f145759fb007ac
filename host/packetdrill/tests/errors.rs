//! Rejected scripts give packetdrill-style messages with the right file and line.

mod common;

use common::parse_err;
use plugtcp_packetdrill::parse_script;

const PREFIX: &str = "0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n+0 bind(3, ..., ...) = 0\n";

/// Two good lines, then `tail` starting on line 3.
fn err_on_line_3(tail: &str) -> String {
    parse_err(&format!("{PREFIX}{tail}"))
}

#[test]
fn bad_token() {
    assert_eq!(
        err_on_line_3("+0 listen(3, 1) = 0 @\n"),
        "test.pkt:3: parse error at '@': expected an event time (like 0.100, +0.1, * or 0.1~0.2)"
    );
    assert_eq!(
        err_on_line_3("+0 > S 0:0(0) win 1 <nop,nop,TS val 1 ecr 2 3>\n"),
        "test.pkt:3: parse error at '3': expected ',' or '>' after a TCP option"
    );
    assert_eq!(
        err_on_line_3("+0 > S 0:0(0) <bogus>\n"),
        "test.pkt:3: parse error at 'bogus': expected a TCP option (nop, eol, mss, wscale, \
         sackOK, sack, TS, FO, FOEXP, md5, AccECN0, AccECN1, ECN, exp-tarr, opt)"
    );
    assert_eq!(
        err_on_line_3("+0 listen(3 1) = 0\n"),
        "test.pkt:3: parse error at '1': expected ',' or ')' after an expression"
    );
}

#[test]
fn error_at_end_of_file() {
    assert_eq!(
        err_on_line_3("+0 > S 0:0(0) ack"),
        "test.pkt:3: parse error at '': expected an ack number (unexpected end of file)"
    );
}

#[test]
fn unterminated_blocks_report_their_opening_line() {
    assert_eq!(
        err_on_line_3("+0 %{ x = 1\n\n\n"),
        "test.pkt:3: parse error at '%{': unterminated code block (missing '}%')"
    );
    assert_eq!(
        err_on_line_3("/* never closed\n+0 close(3) = 0\n"),
        "test.pkt:3: parse error at '/*': unterminated comment (missing '*/')"
    );
    assert_eq!(
        err_on_line_3("+0 write(3, \"abc, 3) = 3\n"),
        "test.pkt:3: parse error at '\"': unterminated string (missing '\"')"
    );
    assert_eq!(
        err_on_line_3("+0 `sysctl -w x=1\n+0 close(3) = 0\n"),
        "test.pkt:3: parse error at '`': unterminated command (missing '`')"
    );
    assert_eq!(
        err_on_line_3("+0 close(3) = 0 (no closing parenthesis\n"),
        "test.pkt:3: parse error at '(': unterminated note (missing ')')"
    );
}

#[test]
fn unknown_time_forms() {
    assert_eq!(
        err_on_line_3("+1~2 > S 0:0(0)\n"),
        "test.pkt:3: parse error at '2': a relative time range must be written +START~+END"
    );
    assert_eq!(
        err_on_line_3("1~+2 > S 0:0(0)\n"),
        "test.pkt:3: parse error at '+': an absolute time range must be written START~END"
    );
    assert_eq!(
        parse_err("0 > S 0:0(0)\n\nabc close(3) = 0\n"),
        "test.pkt:3: parse error at 'abc': expected an event time (like 0.100, +0.1, * or 0.1~0.2)"
    );
    // As in packetdrill, a word after a result is read as its errno.
    assert_eq!(
        err_on_line_3("abc close(3) = 0\n"),
        "test.pkt:3: parse error at 'close': expected an event time (like 0.100, +0.1, * or 0.1~0.2)"
    );
    assert_eq!(
        err_on_line_3("+x close(3) = 0\n"),
        "test.pkt:3: parse error at 'x': expected a time in seconds"
    );
}

#[test]
fn unbalanced_preprocessor_directives() {
    assert_eq!(
        err_on_line_3("#ifdef FreeBSD\n+0 close(3) = 0\n"),
        "test.pkt:3: parse error at '#ifdef': unterminated #ifdef (missing #endif)"
    );
    assert_eq!(
        err_on_line_3("#ifndef Linux\n#ifdef FreeBSD\n#endif\n"),
        "test.pkt:3: parse error at '#ifndef': unterminated #ifndef (missing #endif)"
    );
    assert_eq!(
        err_on_line_3("+0 close(3) = 0\n#endif\n"),
        "test.pkt:4: parse error at '#endif': #endif without #ifdef"
    );
    assert_eq!(
        err_on_line_3("#else\n"),
        "test.pkt:3: parse error at '#else': #else without #ifdef"
    );
    assert_eq!(
        err_on_line_3("#ifdef A\n#else\n#else\n#endif\n"),
        "test.pkt:5: parse error at '#else': #else after #else"
    );
    assert_eq!(
        err_on_line_3("#ifdef\n#endif\n"),
        "test.pkt:3: parse error at '#ifdef': #ifdef needs a symbol name"
    );
}

#[test]
fn unsupported_constructs_name_the_construct() {
    assert_eq!(
        err_on_line_3("+0 > sctp: DATA[flgs=BE, len=1016, tsn=1, sid=0, ssn=0, ppid=0]\n"),
        "test.pkt:3: parse error at 'sctp': unsupported: SCTP packets \
         (plugtcp-packetdrill parses TCP scripts only)"
    );
    let cases = [
        ("+0 < udp(100)\n", "udp", "UDP packets"),
        ("+0 < udplite(10, 8)\n", "udplite", "UDPLite packets"),
        ("+0 < gre: S 0:0(0)\n", "gre", "GRE encapsulation"),
        (
            "+0 < mpls (label 1, tc 0, [S], ttl 1): S 0:0(0)\n",
            "mpls",
            "MPLS encapsulation",
        ),
        ("+0 < psp: S 0:0(0)\n", "psp", "PSP encapsulation"),
        (
            "+0 > ipv4 192.0.2.1 > 192.168.0.1: S 0:0(0)\n",
            "ipv4",
            "IP-in-IP encapsulation prefix",
        ),
        (
            "+0 < [udp(100)] icmp unreachable port_unreachable\n",
            "udp",
            "ICMP errors quoting UDP packets",
        ),
    ];
    for (tail, token, construct) in cases {
        assert_eq!(
            err_on_line_3(tail),
            format!(
                "test.pkt:3: parse error at '{token}': unsupported: {construct} \
                 (plugtcp-packetdrill parses TCP scripts only)"
            ),
            "{tail}"
        );
    }
}

#[test]
fn semantic_errors() {
    let cases = [
        ("-1 close(3) = 0", "negative time"),
        ("0.2~0.1 > S 0:0(0)", "time range is backwards"),
        (
            "* close(3) = 0",
            "event time <star> can only be used with outbound packets",
        ),
        (
            "* < S 0:0(0) win 10",
            "event time <star> can only be used with outbound packets",
        ),
        (
            "+0~+1 close(3) = 0",
            "event time range can only be used with outbound packets",
        ),
        (
            "+0 < S 0:0(0) win 10 <...>",
            "<...> for TCP options can only be used with outbound packets",
        ),
        (
            "+0 < [ect01] S 0:0(0) win 10",
            "[ect01] can only be used with outbound packets",
        ),
        (
            "+0 > S 1:1001(999)",
            "inconsistent TCP sequence numbers and payload size",
        ),
        (
            "+0 > S 4294967296:4294967296(0)",
            "TCP start sequence number out of range",
        ),
        ("+0 > S 0:70000(70000)", "TCP payload size out of range"),
        (
            "+0 > S. 0:0(0) ack 4294967296",
            "TCP ack sequence number out of range",
        ),
        ("+0 > S 0:0(0) win 65536", "TCP window value out of range"),
        ("+0 > S 0:0(0) <mss 65536>", "mss value out of range"),
        (
            "+0 > S 0:0(0) <wscale 256,nop>",
            "window scale shift count out of range",
        ),
        (
            "+0 > S 0:0(0) <sackOK>",
            "TCP options are not padded correctly to ensure TCP header is a multiple of 4 \
             bytes: 2 excess bytes",
        ),
        (
            "+0 > S 0:0(0) <sack 1:2 3:4 5:6 7:8 9:10>",
            "TCP option list too long",
        ),
        (
            "+0 > S 0:0(0) <FO 123>",
            "TCP fast open cookie has an odd number of digits",
        ),
        (
            "+0 > S 0:0(0) <FO xyzw>",
            "TCP fast open cookie is not a valid hex string",
        ),
        (
            "+0 > S. 0:0(0) <AccECN0 ECEB 1,nop,nop>",
            "AccECN0: illegal sequence",
        ),
        (
            "+0 > S. 0:0(0) <AccECN0 EE0B 16777216,nop,nop>",
            "AccECN0: EE0B out of range",
        ),
        ("+0 > SX 0:0(0)", "Invalid TCP flag: 'X'"),
        ("+0 > SE5 0:0(0)", "Conflicting TCP flag: '5'"),
        ("+0 > 56. 0:0(0)", "Conflicting TCP flag: '6'"),
        ("+0 > (tos 0x100) S 0:0(0)", "tos out of range for 8 bits"),
        (
            "+0 > (flowlabel 0x100000) S 0:0(0)",
            "flowlabel out of range for 20 bits",
        ),
        ("+0 > (ttl 1, hlim 2) S 0:0(0)", "hlim given twice"),
        (
            "+0 > (tos 0x1, ect0) S 0:0(0)",
            "tos/class cannot be combined with ecn or dscp",
        ),
        (
            "+0 < S 0:0(0) win 1/udp(1 > 65536)",
            "UDP destination port out of range",
        ),
        ("+0 f(htons(65536)) = 0", "number out of range"),
        ("+0 f(99999999999999999999) = 0", "number out of range"),
    ];
    for (tail, message) in cases {
        assert_eq!(
            err_on_line_3(&format!("{tail}\n")),
            format!("test.pkt:3: semantic error: {message}"),
            "{tail}"
        );
    }
}

#[test]
fn structure_errors() {
    assert_eq!(
        parse_err("--tolerance_usecs=1000\n// only options\n"),
        "test.pkt:3: parse error at '': the script has no events (unexpected end of file)"
    );
    assert_eq!(
        err_on_line_3("--late=1\n"),
        "test.pkt:3: parse error at '--late=1': options must come before all events"
    );
    assert_eq!(
        err_on_line_3("`middle`\n+0 close(3) = 0\n"),
        "test.pkt:3: parse error at '`middle`': a command without a time is only allowed \
         before the first event or after the last one"
    );
}

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    let deep = format!("0 f({}1{}) = 0", "[".repeat(100_000), "]".repeat(100_000));
    assert_eq!(
        parse_err(&deep),
        "test.pkt:1: parse error at '[': expression nested too deeply"
    );
    let braces = format!("0 f({}) = 0", "{a=".repeat(10_000));
    assert!(parse_err(&braces).contains("nested too deeply"));
}

#[test]
fn path_is_used_verbatim() {
    let err = parse_script("dir/some script.pkt", "0 > @", &[]).unwrap_err();
    assert_eq!(err.path, "dir/some script.pkt");
    assert_eq!(err.line, 1);
    assert!(err
        .to_string()
        .starts_with("dir/some script.pkt:1: parse error at '@'"));
}
