//! Lexer and parser for [packetdrill] scripts (the TCP subset) producing a typed AST
//! that a runner can execute against plugtcp's TCP host on a virtual clock.
//!
//! Both dialects are accepted: Google's packetdrill and the nplab fork that FreeBSD's
//! `tcp-testsuite` uses. The crate depends on nothing else in plugtcp.
//!
//! # Entry point
//!
//! [`parse_script`]`(path_for_messages, text, defines)` returns a [`Script`] or a
//! [`ParseError`] that displays as packetdrill does:
//! `FILE:LINE: parse error at 'TOKEN': MESSAGE` or `FILE:LINE: semantic error: MESSAGE`.
//!
//! ```
//! use plugtcp_packetdrill::{parse_script, EventKind, PacketBody, TcpFlags, TimeSpec};
//!
//! let text = "\
//! --tolerance_usecs=10000
//! 0   socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
//! +0  setsockopt(3, SOL_SOCKET, SO_REUSEADDR, [1], 4) = 0
//! +0  bind(3, ..., ...) = 0
//! +0  listen(3, 1) = 0
//! +0  < S 0:0(0) win 65535 <mss 1460,sackOK,TS val 100 ecr 0,nop,wscale 7>
//! +0  > S. 0:0(0) ack 1 <mss 1460,nop,wscale 6,sackOK,TS val ... ecr 100>
//! +.1 < . 1:1(0) ack 1 win 257
//! +0  accept(3, ..., ...) = 4
//! +0...0.1 read(4, ..., 1000) = 1000
//! +.1 < P. 1:1001(1000) ack 1 win 257
//! *   > . 1:1(0) ack 1001
//! +0  `sysctl -w net.inet.tcp.x=1`
//! ";
//! let script = parse_script("example.pkt", text, &[]).unwrap();
//! assert_eq!(script.option("tolerance_usecs").unwrap().value.as_deref(), Some("10000"));
//! assert_eq!(script.events.len(), 12);
//! let synack = &script.events[5];
//! assert_eq!(synack.line, 7);
//! assert_eq!(synack.time, TimeSpec::Relative(0));
//! let EventKind::Packet(packet) = &synack.kind else { panic!() };
//! let PacketBody::Tcp(tcp) = &packet.body else { panic!() };
//! assert_eq!(tcp.flags, TcpFlags::SYN | TcpFlags::ACK);
//! assert_eq!(tcp.ack, Some(1));
//! assert_eq!(tcp.window, None); // not given: do not check
//! assert_eq!(tcp.options.to_string(), "<mss 1460,nop,wscale 6,sackOK,TS val ... ecr 100>");
//! ```
//!
//! # AST overview
//!
//! ```text
//! Script { path, options: [OptionLine], init_command, events: [Event], cleanup_command }
//! Event { line, time: TimeSpec, kind: EventKind }
//! EventKind::Packet(PacketEvent { direction, ip: IpSpec, body })
//!     body = PacketBody::Tcp(TcpSegmentSpec { ports, flags: TcpFlags, ace_notation,
//!                seq: SeqSpec, ack, window, urgent, options: TcpOptionsSpec,
//!                udp_encapsulation })
//!          | PacketBody::Icmp(IcmpSpec { type_name, code_name, mtu, echo_id, quoted })
//! EventKind::Syscall(SyscallEvent { name, args: [Expr], result: Expr, errno, note,
//!                                   blocking_end })
//! EventKind::Command(ShellCommand { line, command })
//! EventKind::Code(CodeBlock { line, text })
//! Expr { line, kind: ExprKind }   (integers, symbols, strings, |, [..], {..}, htons..)
//! ```
//!
//! # The language
//!
//! A script is: option lines, an optional init command, one or more events, an optional
//! cleanup command. Whitespace and newlines are not significant (an event may span
//! lines); comments are `// ...` and `/* ... */`.
//!
//! * **Options**: `--name=value` or `--name` ([`OptionLine`], typed view in
//!   [`Script::config`]).
//! * **Init / cleanup command**: `` `cmd` `` without a time before the first event /
//!   after the last one.
//! * **Preprocessor**: `#ifdef NAME`, `#ifndef NAME`, `#else`, `#endif` at the start of a
//!   line, nestable, driven by `defines` (plus `--define=NAME...` lines of the script);
//!   line numbers stay those of the original file.
//! * **Times** ([`TimeSpec`], microseconds): `0.100` absolute, `+0.1` relative, `*` any,
//!   `0.1~0.2` and `+0.1~+0.2` ranges (ranges and `*` on outbound packets only). A system
//!   call may block: `0.1...0.2 read(...)`, `+0...0.1 read(...)`.
//! * **Packets** ([`PacketEvent`]): `<` injected, `>` expected.
//!   * IP info after the direction, in `[...]` or `(...)`, comma-separated: `noecn`,
//!     `ect0`, `ect1`, `ect01`, `ce`, `ecn ect0`, `tos 0x10`, `class 0x28`,
//!     `dscp AF41|0x0a`, `ttl 64`, `hlim 64`, `flowlabel 0x12345` ([`IpSpec`]).
//!   * TCP: `[SRC > DST] FLAGS START:END(LEN)[!] [ack N] [win N] [urg N] [<options>]
//!     [/udp(SRC > DST)]`; `...(LEN)` ignores the sequence number. Flags are letters
//!     `F S R P . U E W A` (`A` is AccECN's AE), `-` for none, or an ACE digit `0`-`7`
//!     instead of `E`/`W`/`A` (`P5.`, `.6`) ([`TcpFlags`]).
//!   * TCP options in order ([`TcpOptionSpec`]): `nop`, `eol`, `mss N`, `wscale N|*`,
//!     `sackOK`, `sack L:R ...`, `TS val N|... ecr N[!]`, `FO [hex]`, `FOEXP`/`EXP-FO
//!     [hex]`, `md5 [valid|invalid|hex]`, `AccECN0|AccECN1 [EE0B n [ECEB n [EE1B n]]]`,
//!     `exp-AccECN0|1 ...`, Google `ECN e0b n ceb n e1b n`, `exp-tarr [R]`, and the
//!     plugtcp extension `opt KIND [hex]` for anything else; `<...>` means any options.
//!   * ICMP ([`IcmpSpec`]): `icmp TYPE [CODE] [mtu N] [id N]` with the quoted segment
//!     `[START:END(LEN)]` before `icmp` (nplab) or at the end (Google); names per IP
//!     version are resolved by [`icmp::resolve`].
//! * **System calls** ([`SyscallEvent`]): `name(args) = result [ERRNO [(text)]] [(note)]`
//!   with [`Expr`] arguments: integers (`-1`, `0x02`), `...`, `"strings"` (and
//!   `"prefix"...`), symbols, `A|B`, arrays `[1]`, struct literals `{name=v, ...}`,
//!   `{name(len)=v}` (msghdr), `{v, v}` (iovec), `htons(N)`, `htonl(N)`,
//!   `inet_addr("a")`, `inet6_addr("a")`, `NULL`.
//! * **Commands**: `` +0 `sysctl ...` `` ([`ShellCommand`]); **code**: `+0 %{ ... }%`
//!   ([`CodeBlock`], text verbatim).
//!
//! Values that are not written are `None` in the AST (for example no `win`: an outbound
//! packet's window is not checked, an inbound one gets the runner's default).
//! [`display`] prints all of it back in packetdrill notation.
//!
//! # Dialect differences handled
//!
//! * nplab: `...(LEN)` and `START:END(LEN)!` sequence forms, `TS val ...` and `ecr N!`,
//!   `/udp(S > D)` TCP-over-UDP, quoted ICMP segment before `icmp`, `(tos 0x..)`,
//!   `(class 0x..)`, `(hlim N)`, `dscp` names, `md5 valid`, `AccECN0/1`, `EXP-FO`,
//!   `exp-tarr`, `5.`-style ACE flags, `{function_set_name="rack", pcbcnt=0}`, `NULL`,
//!   `#ifdef`.
//! * Google: `wscale *`, `md5 HEX`, `FOEXP`, `urg N`, explicit `SRC > DST` ports, quoted
//!   ICMP segment after `mtu`, `id N`, `ECN e0b ...` AccECN option, `P.6`-style ACE
//!   flags, `inet6_addr`, `--define` substitution of words, cleanup command.
//! * Lenient where packetdrill is strict: keywords are contextual, an errno need not be
//!   followed by its text, notes may contain any tokens, an inbound packet may omit
//!   `win` (the runner picks a default).
//!
//! # Explicitly unsupported
//!
//! SCTP, UDP and UDPLite packets, GRE/MPLS/PSP/IP-in-IP encapsulation prefixes and ICMP
//! errors quoting non-TCP packets give [`ParseErrorKind::Unsupported`] (a parse error
//! naming the construct and line). SCTP-specific expression nodes are parsed as generic
//! struct literals and left for the runner to reject.
//!
//! [packetdrill]: https://github.com/google/packetdrill

pub mod ast;
mod config;
pub mod display;
mod error;
pub mod icmp;
mod lexer;
mod parser;
mod preprocess;

use std::collections::{HashMap, HashSet};

pub use ast::*;
pub use config::{IpVersion, ScriptConfig};
pub use error::{ParseError, ParseErrorKind};

/// Parses a packetdrill script.
///
/// `path_for_messages` only appears in errors. `defines` holds `NAME` or `NAME=VALUE`
/// entries: every name counts as defined for `#ifdef`, and a name with a value is
/// replaced by that value wherever it appears as a word (Google's `-D NAME=VALUE`).
pub fn parse_script(
    path_for_messages: &str,
    text: &str,
    defines: &[String],
) -> Result<Script, ParseError> {
    let mut defined = HashSet::new();
    let mut values = HashMap::new();
    for definition in defines
        .iter()
        .map(String::as_str)
        .chain(script_defines(text))
    {
        match definition.split_once('=') {
            Some((name, value)) => {
                defined.insert(name.to_string());
                values.insert(name.to_string(), value.to_string());
            }
            None => {
                defined.insert(definition.to_string());
            }
        }
    }
    // A UTF-8 byte order mark is not part of the script.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let text = preprocess::preprocess(path_for_messages, text, &defined)?;
    parser::parse(path_for_messages, &text, &values)
}

/// The `--define=NAME[=VALUE]` lines of the script, so they count for `#ifdef` too.
/// (Their word substitution is done by the parser, which sees them in order.)
fn script_defines(text: &str) -> impl Iterator<Item = &str> {
    text.lines().filter_map(|line| {
        let definition = line.trim().strip_prefix("--define=")?;
        definition.split_whitespace().next()
    })
}
