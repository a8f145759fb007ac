//! Printers in packetdrill notation. A runner prints expected and actual packets this
//! way; everything printed here parses back to the same AST (line numbers aside).

use std::fmt::{self, Display, Formatter};

use crate::ast::{
    AccEcnField, CodeBlock, Direction, EcnSpec, ErrnoSpec, Event, EventKind, Expr, ExprKind,
    IcmpSpec, IpSpec, Md5Spec, Micros, OptionLine, PacketBody, PacketEvent, PortPair,
    QuotedSegment, Script, SeqSpec, ShellCommand, StructField, SyscallEvent, TcpOptionSpec,
    TcpOptionsSpec, TcpSegmentSpec, TimeSpec,
};

/// Seconds with up to six decimals and no trailing zeros: `0`, `0.1`, `1.000001`.
pub fn format_seconds(micros: Micros) -> String {
    let whole = micros / 1_000_000;
    let fraction = micros % 1_000_000;
    if fraction == 0 {
        return whole.to_string();
    }
    let digits = format!("{fraction:06}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

impl Display for TimeSpec {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match *self {
            TimeSpec::Absolute(t) => write!(f, "{}", format_seconds(t)),
            TimeSpec::Relative(t) => write!(f, "+{}", format_seconds(t)),
            TimeSpec::Any => write!(f, "*"),
            TimeSpec::AbsoluteRange { start, end } => {
                write!(f, "{}~{}", format_seconds(start), format_seconds(end))
            }
            TimeSpec::RelativeRange { start, end } => {
                write!(f, "+{}~+{}", format_seconds(start), format_seconds(end))
            }
        }
    }
}

fn write_hex(f: &mut Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    bytes.iter().try_for_each(|b| write!(f, "{b:02x}"))
}

/// `mss 1460`, `TS val 100 ecr 0`, `sack 1:2 3:4`, `FO abcd1234`, ...
impl Display for TcpOptionSpec {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            TcpOptionSpec::Eol => write!(f, "eol"),
            TcpOptionSpec::Nop => write!(f, "nop"),
            TcpOptionSpec::Mss(mss) => write!(f, "mss {mss}"),
            TcpOptionSpec::WindowScale(Some(shift)) => write!(f, "wscale {shift}"),
            TcpOptionSpec::WindowScale(None) => write!(f, "wscale *"),
            TcpOptionSpec::SackPermitted => write!(f, "sackOK"),
            TcpOptionSpec::Sack(blocks) => {
                write!(f, "sack")?;
                blocks
                    .iter()
                    .try_for_each(|b| write!(f, " {}:{}", b.left, b.right))
            }
            TcpOptionSpec::Timestamp(ts) => {
                match ts.val {
                    Some(val) => write!(f, "TS val {val}")?,
                    None => write!(f, "TS val ...")?,
                }
                write!(f, " ecr {}", ts.ecr)?;
                if ts.ecr_absolute {
                    write!(f, "!")?;
                }
                Ok(())
            }
            TcpOptionSpec::FastOpen(cookie) => {
                write!(f, "FO")?;
                if !cookie.is_empty() {
                    write!(f, " ")?;
                    write_hex(f, cookie)?;
                }
                Ok(())
            }
            TcpOptionSpec::FastOpenExp(cookie) => {
                write!(f, "FOEXP")?;
                if !cookie.is_empty() {
                    write!(f, " ")?;
                    write_hex(f, cookie)?;
                }
                Ok(())
            }
            TcpOptionSpec::Md5(Md5Spec::Placeholder) => write!(f, "md5"),
            TcpOptionSpec::Md5(Md5Spec::Valid) => write!(f, "md5 valid"),
            TcpOptionSpec::Md5(Md5Spec::Invalid) => write!(f, "md5 invalid"),
            TcpOptionSpec::Md5(Md5Spec::Digest(digest)) => {
                write!(f, "md5 ")?;
                write_hex(f, digest)
            }
            TcpOptionSpec::AccEcn(spec) => {
                let prefix = if spec.experimental { "exp-" } else { "" };
                let order = spec.order.field_order();
                let number = if order[0] == AccEcnField::Ee0b { 0 } else { 1 };
                write!(f, "{prefix}AccECN{number}")?;
                for (field, value) in order.iter().zip(&spec.counters) {
                    let name = match field {
                        AccEcnField::Ee0b => "EE0B",
                        AccEcnField::Eceb => "ECEB",
                        AccEcnField::Ee1b => "EE1B",
                    };
                    write!(f, " {name} {value}")?;
                }
                Ok(())
            }
            TcpOptionSpec::AckRateRequest(None) => write!(f, "exp-tarr"),
            TcpOptionSpec::AckRateRequest(Some(rate)) => write!(f, "exp-tarr {rate}"),
            TcpOptionSpec::Raw { kind, data } => {
                write!(f, "opt {kind}")?;
                if !data.is_empty() {
                    write!(f, " ")?;
                    write_hex(f, data)?;
                }
                Ok(())
            }
        }
    }
}

/// `<mss 1460,nop,wscale 7>`, `<...>`, or nothing for an empty list.
impl Display for TcpOptionsSpec {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            TcpOptionsSpec::Any => write!(f, "<...>"),
            TcpOptionsSpec::List(list) if list.is_empty() => Ok(()),
            TcpOptionsSpec::List(list) => {
                write!(f, "<")?;
                for (i, option) in list.iter().enumerate() {
                    if i > 0 {
                        write!(f, ",")?;
                    }
                    write!(f, "{option}")?;
                }
                write!(f, ">")
            }
        }
    }
}

/// `1:1001(1000)`, `0:0(0)!`, `...(1000)`.
impl Display for SeqSpec {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match *self {
            SeqSpec::Relative { start, len } => {
                write!(f, "{start}:{}({len})", u64::from(start) + u64::from(len))
            }
            SeqSpec::Absolute { start, len } => {
                write!(f, "{start}:{}({len})!", u64::from(start) + u64::from(len))
            }
            SeqSpec::Ignored { len } => write!(f, "...({len})"),
        }
    }
}

fn ecn_name(ecn: EcnSpec) -> &'static str {
    match ecn {
        EcnSpec::NotEct => "noecn",
        EcnSpec::Ect0 => "ect0",
        EcnSpec::Ect1 => "ect1",
        EcnSpec::Ce => "ce",
        EcnSpec::Ect0OrEct1 => "ect01",
    }
}

/// `[ect0]` when only ECN is given, otherwise `(dscp 0x0a, ecn ect0, tos 0x20, ...)`;
/// nothing when empty.
impl Display for IpSpec {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return Ok(());
        }
        if let (Some(ecn), true) = (self.ecn, IpSpec { ecn: None, ..*self }.is_empty()) {
            return write!(f, "[{}]", ecn_name(ecn));
        }
        let mut items: Vec<String> = Vec::new();
        if let Some(dscp) = self.dscp {
            items.push(format!("dscp {dscp:#04x}"));
        }
        if let Some(ecn) = self.ecn {
            items.push(format!("ecn {}", ecn_name(ecn)));
        }
        if let Some(tos) = self.tos {
            items.push(format!("tos {tos:#04x}"));
        }
        if let Some(label) = self.flow_label {
            items.push(format!("flowlabel {label:#x}"));
        }
        if let Some(ttl) = self.ttl {
            items.push(format!("ttl {ttl}"));
        }
        write!(f, "({})", items.join(", "))
    }
}

impl Display for PortPair {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "{} > {}", self.src, self.dst)
    }
}

/// `S. 0:0(0) ack 1 win 65535 <mss 1460>` (without direction and IP info).
impl Display for TcpSegmentSpec {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        if let Some(ports) = self.ports {
            write!(f, "{ports} ")?;
        }
        if self.ace_notation {
            write!(f, "{}", self.flags.ace_notation())?;
        } else {
            write!(f, "{}", self.flags)?;
        }
        write!(f, " {}", self.seq)?;
        if let Some(ack) = self.ack {
            write!(f, " ack {ack}")?;
        }
        if let Some(window) = self.window {
            write!(f, " win {window}")?;
        }
        if let Some(urgent) = self.urgent {
            write!(f, " urg {urgent}")?;
        }
        if self.options != TcpOptionsSpec::none() {
            write!(f, " {}", self.options)?;
        }
        if let Some(ports) = self.udp_encapsulation {
            write!(f, "/udp({ports})")?;
        }
        Ok(())
    }
}

impl Display for QuotedSegment {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "[{}", self.seq)?;
        if let Some(ports) = self.udp_encapsulation {
            write!(f, "/udp({ports})")?;
        }
        write!(f, "]")
    }
}

/// `icmp unreachable frag_needed mtu 1200 [1:1461(1460)]`.
impl Display for IcmpSpec {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "icmp {}", self.type_name)?;
        if let Some(code) = &self.code_name {
            write!(f, " {code}")?;
        }
        if let Some(mtu) = self.mtu {
            write!(f, " mtu {mtu}")?;
        }
        if let Some(id) = self.echo_id {
            write!(f, " id {id}")?;
        }
        if let Some(quoted) = &self.quoted {
            write!(f, " {quoted}")?;
        }
        Ok(())
    }
}

/// `> [ect0] P. 1:1001(1000) ack 1`.
impl Display for PacketEvent {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let direction = match self.direction {
            Direction::Inbound => '<',
            Direction::Outbound => '>',
        };
        write!(f, "{direction}")?;
        if !self.ip.is_empty() {
            write!(f, " {}", self.ip)?;
        }
        match &self.body {
            PacketBody::Tcp(tcp) => write!(f, " {tcp}"),
            PacketBody::Icmp(icmp) => write!(f, " {icmp}"),
        }
    }
}

fn write_list<T: Display>(f: &mut Formatter<'_>, items: &[T]) -> fmt::Result {
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            write!(f, ", ")?;
        }
        write!(f, "{item}")?;
    }
    Ok(())
}

impl Display for Expr {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ExprKind::Ellipsis => write!(f, "..."),
            ExprKind::Integer { value, hex: true } if *value >= 0 => write!(f, "{value:#x}"),
            ExprKind::Integer { value, .. } => write!(f, "{value}"),
            ExprKind::Symbol(name) => write!(f, "{name}"),
            ExprKind::Str { value, ellipsis } => {
                write!(f, "\"{value}\"")?;
                if *ellipsis {
                    write!(f, "...")?;
                }
                Ok(())
            }
            ExprKind::Null => write!(f, "NULL"),
            ExprKind::BitOr(operands) => {
                for (i, operand) in operands.iter().enumerate() {
                    if i > 0 {
                        write!(f, "|")?;
                    }
                    write!(f, "{operand}")?;
                }
                Ok(())
            }
            ExprKind::List(items) => {
                write!(f, "[")?;
                write_list(f, items)?;
                write!(f, "]")
            }
            ExprKind::Struct(fields) => {
                write!(f, "{{")?;
                write_list(f, fields)?;
                write!(f, "}}")
            }
            ExprKind::Htons(inner) => write!(f, "htons({inner})"),
            ExprKind::Htonl(inner) => write!(f, "htonl({inner})"),
            ExprKind::InetAddr(address) => write!(f, "inet_addr(\"{address}\")"),
            ExprKind::Inet6Addr(address) => write!(f, "inet6_addr(\"{address}\")"),
        }
    }
}

impl Display for StructField {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        if let Some(name) = &self.name {
            write!(f, "{name}")?;
            if let Some(len) = &self.len {
                write!(f, "({len})")?;
            }
            write!(f, "=")?;
        }
        write!(f, "{}", self.value)
    }
}

/// `name(args) = result [ERRNO (text)] [(note)]`; the blocking end time is printed by
/// [`Event`] because it sits next to the start time.
impl Display for SyscallEvent {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "{}(", self.name)?;
        write_list(f, &self.args)?;
        write!(f, ") = {}", self.result)?;
        if let Some(ErrnoSpec { name, text }) = &self.errno {
            write!(f, " {name}")?;
            if let Some(text) = text {
                write!(f, " ({text})")?;
            }
        }
        if let Some(note) = &self.note {
            write!(f, " ({note})")?;
        }
        Ok(())
    }
}

impl Display for ShellCommand {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "`{}`", self.command)
    }
}

impl Display for CodeBlock {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "%{{{}}}%", self.text)
    }
}

/// `+0.1 > S. 0:0(0) ack 1`, `0.1...0.2 read(3, ..., 1000) = 1000`.
impl Display for Event {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.time)?;
        match &self.kind {
            EventKind::Syscall(call) => {
                if let Some(end) = call.blocking_end {
                    write!(f, "...{}", format_seconds(end))?;
                }
                write!(f, " {call}")
            }
            EventKind::Packet(packet) => write!(f, " {packet}"),
            EventKind::Command(command) => write!(f, " {command}"),
            EventKind::Code(code) => write!(f, " {code}"),
        }
    }
}

impl Display for OptionLine {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match &self.value {
            Some(value) if value.contains(char::is_whitespace) && !value.contains('"') => {
                write!(f, "--{}=\"{}\"", self.name, value)
            }
            Some(value) => write!(f, "--{}={}", self.name, value),
            None => write!(f, "--{}", self.name),
        }
    }
}

/// The whole script, one option or event per line.
impl Display for Script {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        for option in &self.options {
            writeln!(f, "{option}")?;
        }
        if let Some(command) = &self.init_command {
            writeln!(f, "{command}")?;
        }
        for event in &self.events {
            writeln!(f, "{event}")?;
        }
        if let Some(command) = &self.cleanup_command {
            writeln!(f, "{command}")?;
        }
        Ok(())
    }
}
