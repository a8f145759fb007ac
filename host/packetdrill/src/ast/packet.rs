//! Packet events: `<` injected and `>` expected TCP segments and ICMP errors.

use super::flags::TcpFlags;
use super::tcp_options::TcpOptionsSpec;

/// `<` or `>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// `<`: the runner injects this packet into the stack under test.
    Inbound,
    /// `>`: the stack under test must send a packet matching this.
    Outbound,
}

/// One packet line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PacketEvent {
    pub direction: Direction,
    /// IP-layer fields from `[...]` or `(...)` after the direction; all `None` when absent.
    pub ip: IpSpec,
    pub body: PacketBody,
}

/// What the packet carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PacketBody {
    Tcp(TcpSegmentSpec),
    Icmp(IcmpSpec),
}

/// IP header expectations. Every field is `None` when not written: the runner must not
/// check it (outbound) and uses its default (inbound).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IpSpec {
    /// `[noecn]`, `[ect0]`, `[ect1]`, `[ect01]`, `[ce]`, `(ecn ect0)`: the low two TOS bits.
    pub ecn: Option<EcnSpec>,
    /// `tos 0xNN` (IPv4) or `class 0xNN` (IPv6): the whole TOS / traffic class byte.
    pub tos: Option<u8>,
    /// nplab `dscp NAME|0xNN`: the upper six TOS bits (the DSCP value, not shifted).
    pub dscp: Option<u8>,
    /// `ttl N` (IPv4) or `hlim N` (IPv6).
    pub ttl: Option<u8>,
    /// `flowlabel 0xNNNNN` (IPv6, 20 bits).
    pub flow_label: Option<u32>,
}

impl IpSpec {
    pub fn is_empty(&self) -> bool {
        *self == IpSpec::default()
    }
}

/// The ECN codepoint of the IP header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EcnSpec {
    /// `noecn`: Not-ECT (00).
    NotEct,
    /// `ect0` (10).
    Ect0,
    /// `ect1` (01).
    Ect1,
    /// `ce` (11).
    Ce,
    /// `ect01`: either ECT(0) or ECT(1) (outbound only).
    Ect0OrEct1,
}

/// `SRC > DST` port numbers (Google `opt_port_info`, nplab `/udp(SRC > DST)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortPair {
    pub src: u16,
    pub dst: u16,
}

/// A TCP segment line: `[ports] FLAGS SEQ [ack N] [win N] [urg N] [<options>] [/udp(S > D)]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpSegmentSpec {
    /// Explicit TCP ports (`8080 > 4000 S. ...`); normally `None`: the runner uses the
    /// connection's ports.
    pub ports: Option<PortPair>,
    pub flags: TcpFlags,
    /// The flags were written with an AccECN ACE digit (`P5.`); only affects printing.
    pub ace_notation: bool,
    pub seq: SeqSpec,
    /// `ack N` as written (relative to the peer's ISN); `None` when not written
    /// (packetdrill then puts 0 in the ack field).
    pub ack: Option<u32>,
    /// `win N`; `None`: do not check (outbound) or use a default (inbound).
    pub window: Option<u16>,
    /// `urg N` (Google, nplab); `None` when not written.
    pub urgent: Option<u16>,
    pub options: TcpOptionsSpec,
    /// nplab TCP-over-UDP encapsulation `/udp(SRC > DST)`.
    pub udp_encapsulation: Option<PortPair>,
}

/// The sequence part `START:END(LEN)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqSpec {
    /// `1:1001(1000)`: relative to this side's ISN (the usual form).
    Relative { start: u32, len: u16 },
    /// nplab `0:0(0)!`: an absolute sequence number, not offset by the ISN.
    Absolute { start: u32, len: u16 },
    /// nplab `...(1000)`: do not check the sequence number, only the payload length.
    Ignored { len: u16 },
}

impl SeqSpec {
    /// The payload length.
    pub fn len(&self) -> u16 {
        match *self {
            SeqSpec::Relative { len, .. }
            | SeqSpec::Absolute { len, .. }
            | SeqSpec::Ignored { len } => len,
        }
    }

    /// True when there is no payload.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The start sequence number as written, if any.
    pub fn start(&self) -> Option<u32> {
        match *self {
            SeqSpec::Relative { start, .. } | SeqSpec::Absolute { start, .. } => Some(start),
            SeqSpec::Ignored { .. } => None,
        }
    }
}

/// An ICMP or ICMPv6 error: `icmp TYPE [CODE] [mtu N] [id N] [[START:END(LEN)]]`.
///
/// Names are kept as written; [`crate::icmp::resolve`] maps them per IP version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IcmpSpec {
    /// e.g. `unreachable`, `time_exceeded`, `packet_too_big`, `type_3`.
    pub type_name: String,
    /// e.g. `frag_needed`, `port_unreachable`, `code_4`; `None` means code 0.
    pub code_name: Option<String>,
    /// `mtu N` (frag_needed / packet_too_big).
    pub mtu: Option<u32>,
    /// Google `id N` (echo identifier).
    pub echo_id: Option<u16>,
    /// The TCP segment quoted inside the ICMP error. nplab writes it before `icmp`
    /// (`< [1:1(0)] icmp ...`), Google after (`... mtu 1200 [1:1461(1460)]`).
    pub quoted: Option<QuotedSegment>,
}

/// The offending TCP segment quoted in an ICMP error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotedSegment {
    pub seq: SeqSpec,
    /// nplab `[1:1(0)/udp(S > D)]` for an encapsulated segment.
    pub udp_encapsulation: Option<PortPair>,
}
