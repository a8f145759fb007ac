//! TCP options between `<` and `>`.

use super::Parser;
use crate::ast::{
    AccEcnField, AccEcnOrder, AccEcnSpec, Md5Spec, SackBlock, TcpOptionSpec, TcpOptionsSpec,
    TimestampSpec, MAX_TCP_OPTION_BYTES, MD5_DIGEST_LEN,
};
use crate::error::ParseError;
use crate::lexer::{Token, TokenKind};

/// Largest fast open cookies that fit the option space (packetdrill's limits).
const MAX_FAST_OPEN_COOKIE: usize = MAX_TCP_OPTION_BYTES - 2;
const MAX_FAST_OPEN_EXP_COOKIE: usize = MAX_TCP_OPTION_BYTES - 4;

impl<'a> Parser<'a> {
    /// `<...>` or `<opt, opt, ...>`, then the length checks packetdrill makes when it
    /// builds the packet (at most 40 bytes, a multiple of 4).
    pub(super) fn tcp_options(&mut self) -> Result<TcpOptionsSpec, ParseError> {
        let open = self.expect_punct('<', "before TCP options")?;
        if self.peek().kind == TokenKind::Ellipsis && self.peek_n(1).is_punct('>') {
            self.bump();
            self.bump();
            return Ok(TcpOptionsSpec::Any);
        }
        let mut options = Vec::new();
        let mut total = 0usize;
        loop {
            let option = self.tcp_option()?;
            total += option.wire_len();
            if total > MAX_TCP_OPTION_BYTES {
                return Err(self.semantic(open.line, "TCP option list too long"));
            }
            options.push(option);
            if self.eat_punct('>') {
                break;
            }
            self.expect_punct(',', "or '>' after a TCP option")?;
        }
        if !total.is_multiple_of(4) {
            return Err(self.semantic(
                open.line,
                format!(
                    "TCP options are not padded correctly to ensure TCP header is a multiple \
                     of 4 bytes: {} excess bytes",
                    total % 4
                ),
            ));
        }
        Ok(TcpOptionsSpec::List(options))
    }

    fn tcp_option(&mut self) -> Result<TcpOptionSpec, ParseError> {
        let token = self.peek().clone();
        if token.kind != TokenKind::Word {
            return Err(self.error_here("expected a TCP option (like nop, mss 1460, sackOK)"));
        }
        self.bump();
        let option =
            match token.text.as_str() {
                "nop" => TcpOptionSpec::Nop,
                "eol" => TcpOptionSpec::Eol,
                "mss" => TcpOptionSpec::Mss(self.integer_in("an MSS", "mss value out of range")?),
                "wscale" => {
                    if self.eat_punct('*') {
                        TcpOptionSpec::WindowScale(None)
                    } else {
                        TcpOptionSpec::WindowScale(Some(self.integer_in(
                            "a window scale shift count",
                            "window scale shift count out of range",
                        )?))
                    }
                }
                "sackOK" => TcpOptionSpec::SackPermitted,
                "sack" => TcpOptionSpec::Sack(self.sack_blocks()?),
                "TS" => TcpOptionSpec::Timestamp(self.timestamp()?),
                "FO" => TcpOptionSpec::FastOpen(self.fast_open_cookie(MAX_FAST_OPEN_COOKIE)?),
                "FOEXP" | "EXP-FO" | "exp-FO" => {
                    TcpOptionSpec::FastOpenExp(self.fast_open_cookie(MAX_FAST_OPEN_EXP_COOKIE)?)
                }
                "md5" => TcpOptionSpec::Md5(self.md5()?),
                "AccECN0" | "AccECN1" | "exp-AccECN0" | "exp-AccECN1" | "EXP-AccECN0"
                | "EXP-AccECN1" => TcpOptionSpec::AccEcn(self.acc_ecn(&token)?),
                "ECN" => TcpOptionSpec::AccEcn(self.acc_ecn(&token)?),
                "exp-tarr" => {
                    if matches!(self.peek().kind, TokenKind::Integer | TokenKind::HexInteger) {
                        let (rate, rate_token) = self.integer("an ACK rate")?;
                        let rate = u16::try_from(rate)
                            .ok()
                            .filter(|r| *r < (1 << 11))
                            .ok_or_else(|| {
                                self.semantic(rate_token.line, "exp-tarr: r out of range")
                            })?;
                        TcpOptionSpec::AckRateRequest(Some(rate))
                    } else {
                        TcpOptionSpec::AckRateRequest(None)
                    }
                }
                "opt" => {
                    let kind = self.integer_in("an option kind", "TCP option kind out of range")?;
                    let data = if self.option_data_follows() {
                        let data_token = self.bump();
                        hex_bytes(&data_token).ok_or_else(|| {
                            self.semantic(data_token.line, "option data is not a valid hex string")
                        })?
                    } else {
                        Vec::new()
                    };
                    TcpOptionSpec::Raw { kind, data }
                }
                _ => return Err(self.error_at(
                    &token,
                    "expected a TCP option (nop, eol, mss, wscale, sackOK, sack, TS, FO, FOEXP, \
                     md5, AccECN0, AccECN1, ECN, exp-tarr, opt)",
                )),
            };
        Ok(option)
    }

    /// One or more `LEFT:RIGHT`.
    fn sack_blocks(&mut self) -> Result<Vec<SackBlock>, ParseError> {
        let mut blocks = Vec::new();
        loop {
            let left = self.integer_in(
                "a SACK left edge",
                "TCP SACK left sequence number out of range",
            )?;
            self.expect_punct(':', "between SACK block edges")?;
            let right = self.integer_in(
                "a SACK right edge",
                "TCP SACK right sequence number out of range",
            )?;
            blocks.push(SackBlock { left, right });
            if self.peek().kind != TokenKind::Integer {
                return Ok(blocks);
            }
        }
    }

    /// After `TS`: `val (N|...) ecr N[!]`.
    fn timestamp(&mut self) -> Result<TimestampSpec, ParseError> {
        self.expect_word("val", "after 'TS'")?;
        let val = if self.eat_ellipsis() {
            None
        } else {
            Some(self.integer_in("a TS value", "ts val out of range")?)
        };
        self.expect_word("ecr", "after the TS value")?;
        let ecr = self.integer_in("a TS echo reply", "ecr val out of range")?;
        let ecr_absolute = self.eat_punct('!');
        Ok(TimestampSpec {
            val,
            ecr,
            ecr_absolute,
        })
    }

    /// Is the next token the data of the current option (rather than `,` or `>`)?
    fn option_data_follows(&self) -> bool {
        matches!(
            self.peek().kind,
            TokenKind::Word | TokenKind::Integer | TokenKind::HexInteger
        )
    }

    /// An optional hex cookie; empty means a cookie request.
    fn fast_open_cookie(&mut self, max_bytes: usize) -> Result<Vec<u8>, ParseError> {
        if !self.option_data_follows() {
            return Ok(Vec::new());
        }
        let token = self.bump();
        let digits = hex_digits(&token);
        if digits.len() % 2 == 1 {
            return Err(self.semantic(
                token.line,
                "TCP fast open cookie has an odd number of digits",
            ));
        }
        let cookie = hex_bytes(&token).ok_or_else(|| {
            self.semantic(token.line, "TCP fast open cookie is not a valid hex string")
        })?;
        if cookie.len() > max_bytes {
            return Err(self.semantic(
                token.line,
                format!(
                    "TCP fast open cookie of {} bytes exceeds maximum cookie length of {} bytes",
                    cookie.len(),
                    max_bytes
                ),
            ));
        }
        Ok(cookie)
    }

    /// After `md5`: nothing (placeholder), `valid`, `invalid` or a hex digest.
    fn md5(&mut self) -> Result<Md5Spec, ParseError> {
        if self.eat_word("valid") {
            return Ok(Md5Spec::Valid);
        }
        if self.eat_word("invalid") {
            return Ok(Md5Spec::Invalid);
        }
        if !self.option_data_follows() {
            return Ok(Md5Spec::Placeholder);
        }
        let token = self.bump();
        let digest = hex_bytes(&token)
            .ok_or_else(|| self.semantic(token.line, "TCP MD5 digest is not a valid hex string"))?;
        if digest.len() > MD5_DIGEST_LEN {
            return Err(self.semantic(token.line, "TCP MD5 digest longer than 16 bytes"));
        }
        Ok(Md5Spec::Digest(digest))
    }

    /// nplab `AccECN0 [EE0B n [ECEB n [EE1B n]]]` (and `AccECN1`, `exp-` variants) or
    /// Google `ECN [e0b n ceb n e1b n]` whose first counter picks the kind.
    fn acc_ecn(&mut self, keyword: &Token) -> Result<AccEcnSpec, ParseError> {
        let mut fields: Vec<(AccEcnField, u32)> = Vec::new();
        while let Some(field) =
            acc_ecn_field(&self.peek().text).filter(|_| self.peek().kind == TokenKind::Word)
        {
            let name = self.bump();
            let (value, value_token) = self.integer("an AccECN byte counter")?;
            let value = u32::try_from(value)
                .ok()
                .filter(|v| *v < (1 << 24))
                .ok_or_else(|| {
                    self.semantic(
                        value_token.line,
                        format!(
                            "{}: {} out of range",
                            keyword.text,
                            name.text.to_uppercase()
                        ),
                    )
                })?;
            fields.push((field, value));
            if fields.len() > 3 {
                return Err(self.semantic(name.line, format!("{}: illegal sequence", keyword.text)));
            }
        }
        let name = keyword.text.as_str();
        let order = if name.ends_with('1')
            || (name == "ECN" && fields.first().is_some_and(|(f, _)| *f == AccEcnField::Ee1b))
        {
            AccEcnOrder::Order1
        } else {
            AccEcnOrder::Order0
        };
        let expected = order.field_order();
        let in_order = fields
            .iter()
            .zip(expected.iter())
            .all(|((got, _), want)| got == want);
        if !in_order {
            return Err(self.semantic(keyword.line, format!("{}: illegal sequence", keyword.text)));
        }
        Ok(AccEcnSpec {
            order,
            experimental: name.starts_with("exp-") || name.starts_with("EXP-"),
            counters: fields.into_iter().map(|(_, v)| v).collect(),
        })
    }
}

fn acc_ecn_field(name: &str) -> Option<AccEcnField> {
    match name {
        "EE0B" | "e0b" => Some(AccEcnField::Ee0b),
        "ECEB" | "ceb" => Some(AccEcnField::Eceb),
        "EE1B" | "e1b" => Some(AccEcnField::Ee1b),
        _ => None,
    }
}

/// The hex digits of a cookie/digest token (`abcd1234`, `12345678`, `0xabcd`).
fn hex_digits(token: &Token) -> &str {
    match token.kind {
        TokenKind::HexInteger => token.text.strip_prefix("0x").unwrap_or(&token.text),
        _ => &token.text,
    }
}

/// Pairs of hex digits to bytes; `None` for an odd count or a non-hex character.
fn hex_bytes(token: &Token) -> Option<Vec<u8>> {
    let digits = hex_digits(token).as_bytes();
    if digits.len() % 2 == 1 {
        return None;
    }
    digits
        .chunks(2)
        .map(|pair| {
            let text = std::str::from_utf8(pair).ok()?;
            u8::from_str_radix(text, 16).ok()
        })
        .collect()
}
