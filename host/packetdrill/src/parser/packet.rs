//! Packet lines: direction, IP info, TCP segment or ICMP error.

use super::Parser;
use crate::ast::{
    Direction, EcnSpec, IcmpSpec, IpSpec, PacketBody, PacketEvent, PortPair, QuotedSegment,
    SeqSpec, TcpFlags, TcpOptionsSpec, TcpSegmentSpec,
};
use crate::error::ParseError;
use crate::lexer::{Token, TokenKind};

/// Protocols and encapsulations that follow the direction in packetdrill but that this
/// crate does not parse, with the name used in the error.
const UNSUPPORTED_PACKETS: &[(&str, &str)] = &[
    ("sctp", "SCTP packets"),
    ("udp", "UDP packets"),
    ("udplite", "UDPLite packets"),
    ("gre", "GRE encapsulation"),
    ("GREv0", "GRE encapsulation"),
    ("mpls", "MPLS encapsulation"),
    ("psp", "PSP encapsulation"),
    ("ipv4", "IP-in-IP encapsulation prefix"),
    ("ipv6", "IP-in-IP encapsulation prefix"),
];

/// Payloads the ICMP quoted-packet brackets may name that are not TCP.
const UNSUPPORTED_QUOTED: &[(&str, &str)] = &[
    ("sctp", "ICMP errors quoting SCTP packets"),
    ("udp", "ICMP errors quoting UDP packets"),
    ("udplite", "ICMP errors quoting UDPLite packets"),
    ("raw", "ICMP errors quoting raw IP packets"),
];

const EXPECTED_IP_FIELD: &str = "expected an IP field (noecn, ect0, ect1, ect01, ce, ecn, tos, \
                                 class, dscp, ttl, hlim, flowlabel)";

/// Named DSCP code points (nplab `dscp CS1`, `dscp AF41`, ...).
const DSCP_NAMES: &[(&str, u8)] = &[
    ("CS0", 0),
    ("CS1", 8),
    ("CS2", 16),
    ("CS3", 24),
    ("CS4", 32),
    ("CS5", 40),
    ("CS6", 48),
    ("CS7", 56),
    ("AF11", 10),
    ("AF12", 12),
    ("AF13", 14),
    ("AF21", 18),
    ("AF22", 20),
    ("AF23", 22),
    ("AF31", 26),
    ("AF32", 28),
    ("AF33", 30),
    ("AF41", 34),
    ("AF42", 36),
    ("AF43", 38),
    ("EF", 46),
    ("VOICE_ADMIT", 44),
    ("LE", 1),
];

impl<'a> Parser<'a> {
    pub(super) fn packet(&mut self) -> Result<PacketEvent, ParseError> {
        let line = self.peek().line;
        let direction = self.packet_direction()?;
        let mut ip: Option<IpSpec> = None;
        let mut quoted_before: Option<QuotedSegment> = None;

        // nplab writes the quoted segment of an ICMP error right after the direction;
        // both dialects allow IP info in `[...]` or `(...)`.
        loop {
            if self.at_punct('[') && self.quoted_segment_follows() {
                if quoted_before.is_some() {
                    return Err(self.error_here("the quoted segment is given twice"));
                }
                quoted_before = Some(self.quoted_segment()?);
            } else if (self.at_punct('[') || self.at_punct('(')) && ip.is_none() {
                ip = Some(self.ip_info()?);
            } else {
                break;
            }
        }
        let ip = ip.unwrap_or_default();
        if ip.ecn == Some(EcnSpec::Ect0OrEct1) && direction == Direction::Inbound {
            return Err(self.semantic(line, "[ect01] can only be used with outbound packets"));
        }

        let token = self.peek().clone();
        if let Some((_, construct)) = UNSUPPORTED_PACKETS
            .iter()
            .find(|(word, _)| token.is_word(word))
        {
            return Err(ParseError::unsupported(
                self.path,
                token.line,
                &token.text,
                construct,
            ));
        }
        let body = if self.eat_word("icmp") {
            PacketBody::Icmp(self.icmp(quoted_before)?)
        } else if quoted_before.is_some() {
            return Err(self.error_here("expected 'icmp' after the quoted segment"));
        } else {
            PacketBody::Tcp(self.tcp_segment(line, direction)?)
        };
        Ok(PacketEvent {
            direction,
            ip,
            body,
        })
    }

    /// At `[`: does a quoted segment (`[1:1(0)]`, `[...(0)]`, `[udp(..)]`) follow rather
    /// than IP info (`[ect0]`)?
    fn quoted_segment_follows(&self) -> bool {
        let first = self.peek_n(1);
        let second = self.peek_n(2);
        match first.kind {
            TokenKind::Integer => second.is_punct(':'),
            TokenKind::Ellipsis => second.is_punct('('),
            TokenKind::Word => UNSUPPORTED_QUOTED.iter().any(|(w, _)| first.text == *w),
            _ => false,
        }
    }

    /// `[START:END(LEN) [/udp(S > D)]]`.
    fn quoted_segment(&mut self) -> Result<QuotedSegment, ParseError> {
        self.expect_punct('[', "before the quoted segment")?;
        let token = self.peek().clone();
        if let Some((_, construct)) = UNSUPPORTED_QUOTED.iter().find(|(w, _)| token.is_word(w)) {
            return Err(ParseError::unsupported(
                self.path,
                token.line,
                &token.text,
                construct,
            ));
        }
        let seq = self.seq()?;
        let udp_encapsulation = self.udp_encapsulation()?;
        self.expect_punct(']', "after the quoted segment")?;
        Ok(QuotedSegment {
            seq,
            udp_encapsulation,
        })
    }

    /// `[ip_info]` or `(ip_info)`: comma-separated IP fields in any order.
    fn ip_info(&mut self) -> Result<IpSpec, ParseError> {
        let close = if self.eat_punct('[') {
            ']'
        } else {
            self.expect_punct('(', "before IP fields")?;
            ')'
        };
        let mut ip = IpSpec::default();
        loop {
            self.ip_field(&mut ip)?;
            if self.eat_punct(close) {
                break;
            }
            self.expect_punct(',', &format!("or '{close}' after an IP field"))?;
        }
        if ip.tos.is_some() && (ip.ecn.is_some() || ip.dscp.is_some()) {
            return Err(self.semantic(
                self.peek().line,
                "tos/class cannot be combined with ecn or dscp",
            ));
        }
        Ok(ip)
    }

    fn ip_field(&mut self, ip: &mut IpSpec) -> Result<(), ParseError> {
        let token = self.peek().clone();
        if token.kind != TokenKind::Word {
            return Err(self.error_here(EXPECTED_IP_FIELD));
        }
        match token.text.as_str() {
            "noecn" | "ect0" | "ect1" | "ect01" | "ce" => {
                let ecn = self.ecn_codepoint()?;
                self.set_once(&mut ip.ecn, ecn, &token)
            }
            "ecn" => {
                self.bump();
                let ecn = self.ecn_codepoint()?;
                self.set_once(&mut ip.ecn, ecn, &token)
            }
            "tos" | "class" => {
                self.bump();
                let range = format!("{} out of range for 8 bits", token.text);
                let tos = self.integer_in::<u8>("a TOS/traffic class value", &range)?;
                self.set_once(&mut ip.tos, tos, &token)
            }
            "dscp" => {
                self.bump();
                let dscp = self.dscp_value()?;
                self.set_once(&mut ip.dscp, dscp, &token)
            }
            "ttl" | "hlim" => {
                self.bump();
                let range = format!("{} out of range", token.text);
                let ttl = self.integer_in::<u8>("a TTL/hop limit", &range)?;
                self.set_once(&mut ip.ttl, ttl, &token)
            }
            "flowlabel" => {
                self.bump();
                let (value, value_token) = self.integer("a flow label")?;
                let label = u32::try_from(value)
                    .ok()
                    .filter(|v| *v < (1 << 20))
                    .ok_or_else(|| {
                        self.semantic(value_token.line, "flowlabel out of range for 20 bits")
                    })?;
                self.set_once(&mut ip.flow_label, label, &token)
            }
            _ => Err(self.error_here(EXPECTED_IP_FIELD)),
        }
    }

    /// Stores an IP field, rejecting a second value for the same field.
    fn set_once<T>(&self, slot: &mut Option<T>, value: T, field: &Token) -> Result<(), ParseError> {
        if slot.replace(value).is_some() {
            return Err(self.semantic(field.line, format!("{} given twice", field.text)));
        }
        Ok(())
    }

    fn ecn_codepoint(&mut self) -> Result<EcnSpec, ParseError> {
        let ecn = match self.peek().text.as_str() {
            "noecn" => EcnSpec::NotEct,
            "ect0" => EcnSpec::Ect0,
            "ect1" => EcnSpec::Ect1,
            "ect01" => EcnSpec::Ect0OrEct1,
            "ce" => EcnSpec::Ce,
            _ => return Err(self.error_here("expected noecn, ect0, ect1, ect01 or ce")),
        };
        if self.peek().kind != TokenKind::Word {
            return Err(self.error_here("expected noecn, ect0, ect1, ect01 or ce"));
        }
        self.bump();
        Ok(ecn)
    }

    fn dscp_value(&mut self) -> Result<u8, ParseError> {
        let token = self.peek().clone();
        if token.kind == TokenKind::Word {
            let found = DSCP_NAMES
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(&token.text));
            return match found {
                Some((_, value)) => {
                    self.bump();
                    Ok(*value)
                }
                None => Err(self.error_here(
                    "expected a DSCP name (CS0-CS7, AF11-AF43, EF, VOICE_ADMIT, LE) or value",
                )),
            };
        }
        let (value, value_token) = self.integer("a DSCP value")?;
        u8::try_from(value)
            .ok()
            .filter(|v| *v < 64)
            .ok_or_else(|| self.semantic(value_token.line, "dscp out of range for 6 bits"))
    }

    /// `[SRC > DST] FLAGS SEQ [ack N] [win N] [urg N] [<options>] [/udp(S > D)]`.
    fn tcp_segment(
        &mut self,
        line: u32,
        direction: Direction,
    ) -> Result<TcpSegmentSpec, ParseError> {
        let ports = if self.peek().kind == TokenKind::Integer
            && self.peek_n(1).is_punct('>')
            && self.peek_n(2).kind == TokenKind::Integer
        {
            Some(self.port_pair("src port out of range", "dst port out of range")?)
        } else {
            None
        };
        let (flags, ace_notation) = self.tcp_flags(line)?;
        let seq = self.seq()?;
        let ack = if self.eat_word("ack") {
            Some(self.integer_in::<u32>("an ack number", "TCP ack sequence number out of range")?)
        } else {
            None
        };
        let window = if self.eat_word("win") {
            Some(self.integer_in::<u16>("a window", "TCP window value out of range")?)
        } else {
            None
        };
        let urgent = if self.eat_word("urg") {
            Some(self.integer_in::<u16>("an urgent pointer", "urg_ptr value out of range")?)
        } else {
            None
        };
        let options = if self.at_punct('<') {
            let options_line = self.peek().line;
            let options = self.tcp_options()?;
            if options == TcpOptionsSpec::Any && direction == Direction::Inbound {
                return Err(self.semantic(
                    options_line,
                    "<...> for TCP options can only be used with outbound packets",
                ));
            }
            options
        } else {
            TcpOptionsSpec::none()
        };
        let udp_encapsulation = self.udp_encapsulation()?;
        Ok(TcpSegmentSpec {
            ports,
            flags,
            ace_notation,
            seq,
            ack,
            window,
            urgent,
            options,
            udp_encapsulation,
        })
    }

    /// `INTEGER > INTEGER`.
    fn port_pair(&mut self, src_message: &str, dst_message: &str) -> Result<PortPair, ParseError> {
        let src = self.integer_in::<u16>("a source port", src_message)?;
        self.expect_punct('>', "between the ports")?;
        let dst = self.integer_in::<u16>("a destination port", dst_message)?;
        Ok(PortPair { src, dst })
    }

    /// nplab `/udp(SRC > DST)` after a TCP segment.
    fn udp_encapsulation(&mut self) -> Result<Option<PortPair>, ParseError> {
        if !self.eat_punct('/') {
            return Ok(None);
        }
        self.expect_word("udp", "after '/' (UDP encapsulation)")?;
        self.expect_punct('(', "after 'udp'")?;
        let ports = self.port_pair(
            "UDP source port out of range",
            "UDP destination port out of range",
        )?;
        self.expect_punct(')', "after the UDP ports")?;
        Ok(Some(ports))
    }

    /// The flags word. It may be split over several touching tokens (`S.` is a word and
    /// a dot, `P.6` a word and a float, `5.` an integer and a dot), so we glue touching
    /// word/number/dot tokens and validate the result.
    fn tcp_flags(&mut self, line: u32) -> Result<(TcpFlags, bool), ParseError> {
        if self.eat_punct('-') {
            return Ok((TcpFlags::empty(), false));
        }
        let first = self.peek().clone();
        let is_flag_piece = |kind: TokenKind| {
            matches!(
                kind,
                TokenKind::Word | TokenKind::Integer | TokenKind::Float | TokenKind::Punct('.')
            )
        };
        if !is_flag_piece(first.kind) {
            return Err(self.error_here("expected TCP flags (like S, S., P., F., R, ., -)"));
        }
        let mut notation = String::new();
        let mut end = first.start;
        while is_flag_piece(self.peek().kind) && (notation.is_empty() || self.peek().start == end) {
            let piece = self.bump();
            end = piece.end;
            notation.push_str(&piece.text);
        }
        TcpFlags::parse(&notation).map_err(|message| self.semantic(line, message))
    }

    /// `START:END(LEN)`, nplab `START:END(LEN)!` and `...(LEN)`.
    pub(super) fn seq(&mut self) -> Result<SeqSpec, ParseError> {
        if self.eat_ellipsis() {
            self.expect_punct('(', "after '...' (payload length)")?;
            let len =
                self.integer_in::<u16>("a payload length", "TCP payload size out of range")?;
            self.expect_punct(')', "after the payload length")?;
            return Ok(SeqSpec::Ignored { len });
        }
        if self.peek().kind != TokenKind::Integer {
            return Err(self.error_here("expected a TCP sequence range like 1:1001(1000)"));
        }
        let (start, start_token) = self.integer("a start sequence number")?;
        self.expect_punct(':', "in the TCP sequence range START:END(LEN)")?;
        let (end, end_token) = self.integer("an end sequence number")?;
        self.expect_punct('(', "before the payload length")?;
        let (len, len_token) = self.integer("a payload length")?;
        self.expect_punct(')', "after the payload length")?;
        let start32 = u32::try_from(start).map_err(|_| {
            self.semantic(start_token.line, "TCP start sequence number out of range")
        })?;
        if u32::try_from(end).is_err() {
            return Err(self.semantic(end_token.line, "TCP end sequence number out of range"));
        }
        let len16 = u16::try_from(len)
            .map_err(|_| self.semantic(len_token.line, "TCP payload size out of range"))?;
        if i128::from(end) != i128::from(start) + i128::from(len) {
            return Err(self.semantic(
                start_token.line,
                "inconsistent TCP sequence numbers and payload size",
            ));
        }
        if self.eat_punct('!') {
            Ok(SeqSpec::Absolute {
                start: start32,
                len: len16,
            })
        } else {
            Ok(SeqSpec::Relative {
                start: start32,
                len: len16,
            })
        }
    }

    /// After `icmp`: `TYPE [CODE] [mtu N] [id N] [[quoted]]`.
    fn icmp(&mut self, quoted_before: Option<QuotedSegment>) -> Result<IcmpSpec, ParseError> {
        if self.peek().kind != TokenKind::Word {
            return Err(self.error_here("expected an ICMP type (like unreachable)"));
        }
        let type_name = self.bump().text;
        let code_name =
            if self.peek().kind == TokenKind::Word && !self.at_word("mtu") && !self.at_word("id") {
                Some(self.bump().text)
            } else {
                None
            };
        let mtu = if self.eat_word("mtu") {
            Some(self.integer_in::<u32>("an MTU", "ICMP MTU out of range")?)
        } else {
            None
        };
        let echo_id = if self.eat_word("id") {
            Some(self.integer_in::<u16>("an ICMP echo id", "ICMP echo id out of range")?)
        } else {
            None
        };
        let quoted = if self.at_punct('[') {
            if quoted_before.is_some() {
                return Err(self.error_here("the quoted segment is given twice"));
            }
            Some(self.quoted_segment()?)
        } else {
            quoted_before
        };
        Ok(IcmpSpec {
            type_name,
            code_name,
            mtu,
            echo_id,
            quoted,
        })
    }
}
