//! A hand-written recursive-descent parser over the token list.
//!
//! The grammar is packetdrill's (nplab and Google dialects merged); see the crate docs.
//! Keywords are matched by context rather than reserved, which accepts a superset of
//! what flex/bison accept but never changes the meaning of a valid script.

mod packet;
mod syscall;
mod tcp_options;

use std::collections::HashMap;

use crate::ast::{
    CodeBlock, Direction, Event, EventKind, Micros, OptionLine, Script, ShellCommand, TimeSpec,
};
use crate::error::ParseError;
use crate::lexer::{tokenize, Token, TokenKind};

/// Deepest nesting of `[`, `{` and `(` in expressions before we give up.
const MAX_EXPR_DEPTH: usize = 64;

/// Parses preprocessed text. `defines` maps symbol names to replacement text (Google's
/// `--define NAME=VALUE`); names without a value are not substituted.
pub(crate) fn parse(
    path: &str,
    text: &str,
    defines: &HashMap<String, String>,
) -> Result<Script, ParseError> {
    let tokens = tokenize(path, text)?;
    let mut parser = Parser {
        path,
        tokens,
        pos: 0,
        depth: 0,
    };
    parser.script(defines)
}

pub(crate) struct Parser<'a> {
    path: &'a str,
    /// Always ends with an `Eof` token.
    tokens: Vec<Token>,
    pos: usize,
    depth: usize,
}

impl<'a> Parser<'a> {
    // ---- token access -------------------------------------------------------------

    fn peek(&self) -> &Token {
        self.peek_n(0)
    }

    /// The token `n` ahead; the final `Eof` token when past the end.
    fn peek_n(&self, n: usize) -> &Token {
        let last = self.tokens.len().saturating_sub(1);
        let index = self.pos.saturating_add(n).min(last);
        // The lexer always appends Eof, so `tokens` is never empty.
        &self.tokens[index]
    }

    fn bump(&mut self) -> Token {
        let token = self.peek().clone();
        if self.pos + 1 < self.tokens.len() {
            self.pos += 1;
        }
        token
    }

    fn at_eof(&self) -> bool {
        self.peek().kind == TokenKind::Eof
    }

    fn at_punct(&self, c: char) -> bool {
        self.peek().is_punct(c)
    }

    fn at_word(&self, word: &str) -> bool {
        self.peek().is_word(word)
    }

    /// Consumes the punctuation `c` if it is next.
    fn eat_punct(&mut self, c: char) -> bool {
        if self.at_punct(c) {
            self.bump();
            true
        } else {
            false
        }
    }

    /// Consumes `...` if it is next.
    fn eat_ellipsis(&mut self) -> bool {
        if self.peek().kind == TokenKind::Ellipsis {
            self.bump();
            true
        } else {
            false
        }
    }

    fn eat_word(&mut self, word: &str) -> bool {
        if self.at_word(word) {
            self.bump();
            true
        } else {
            false
        }
    }

    fn expect_punct(&mut self, c: char, context: &str) -> Result<Token, ParseError> {
        if self.at_punct(c) {
            Ok(self.bump())
        } else {
            Err(self.error_here(format!("expected '{c}' {context}")))
        }
    }

    fn expect_word(&mut self, word: &str, context: &str) -> Result<Token, ParseError> {
        if self.at_word(word) {
            Ok(self.bump())
        } else {
            Err(self.error_here(format!("expected '{word}' {context}")))
        }
    }

    // ---- errors -------------------------------------------------------------------

    /// A syntax error at the next token.
    fn error_here(&self, message: impl Into<String>) -> ParseError {
        let token = self.peek();
        let message = message.into();
        let message = if token.kind == TokenKind::Eof {
            format!("{message} (unexpected end of file)")
        } else {
            message
        };
        ParseError::syntax(self.path, token.line, &token.text, message)
    }

    fn error_at(&self, token: &Token, message: impl Into<String>) -> ParseError {
        ParseError::syntax(self.path, token.line, &token.text, message)
    }

    fn semantic(&self, line: u32, message: impl Into<String>) -> ParseError {
        ParseError::semantic(self.path, line, message)
    }

    // ---- numbers ------------------------------------------------------------------

    /// The value of an integer token (decimal or hex).
    fn int_value(&self, token: &Token) -> Result<i64, ParseError> {
        let value = match token.kind {
            TokenKind::Integer => token.text.parse::<i64>().ok(),
            TokenKind::HexInteger => token
                .text
                .strip_prefix("0x")
                .and_then(|digits| i64::from_str_radix(digits, 16).ok()),
            _ => return Err(self.error_at(token, "expected a number")),
        };
        value.ok_or_else(|| self.semantic(token.line, "number out of range"))
    }

    /// Consumes a decimal or hex integer.
    fn integer(&mut self, what: &str) -> Result<(i64, Token), ParseError> {
        match self.peek().kind {
            TokenKind::Integer | TokenKind::HexInteger => {
                let token = self.bump();
                Ok((self.int_value(&token)?, token))
            }
            _ => Err(self.error_here(format!("expected {what}"))),
        }
    }

    /// Consumes an integer that must fit `T`; `range_message` is packetdrill's text.
    fn integer_in<T: TryFrom<i64>>(
        &mut self,
        what: &str,
        range_message: &str,
    ) -> Result<T, ParseError> {
        let (value, token) = self.integer(what)?;
        T::try_from(value).map_err(|_| self.semantic(token.line, range_message))
    }

    // ---- script structure -----------------------------------------------------------

    fn script(&mut self, defines: &HashMap<String, String>) -> Result<Script, ParseError> {
        let mut script = Script {
            path: self.path.to_string(),
            options: Vec::new(),
            init_command: None,
            events: Vec::new(),
            cleanup_command: None,
        };
        let mut defines = defines.clone();
        while self.peek().kind == TokenKind::OptionFlag {
            let option = self.option_line();
            if option.name == "define" {
                if let Some((name, value)) = option.value.as_deref().and_then(|v| v.split_once('='))
                {
                    defines.insert(name.to_string(), value.to_string());
                }
            }
            script.options.push(option);
        }
        self.substitute_defines(&defines);

        if self.peek().kind == TokenKind::BackQuoted {
            script.init_command = Some(self.shell_command());
        }
        while !self.at_eof() {
            match self.peek().kind {
                TokenKind::BackQuoted => {
                    let token = self.peek().clone();
                    let command = self.shell_command();
                    if !self.at_eof() {
                        return Err(self.error_at(
                            &token,
                            "a command without a time is only allowed before the first event \
                             or after the last one",
                        ));
                    }
                    script.cleanup_command = Some(command);
                }
                TokenKind::OptionFlag => {
                    return Err(self.error_here("options must come before all events"))
                }
                _ => script.events.push(self.event()?),
            }
        }
        if script.events.is_empty() {
            return Err(self.error_here("the script has no events"));
        }
        Ok(script)
    }

    fn option_line(&mut self) -> OptionLine {
        let token = self.bump();
        let body = token.text.strip_prefix("--").unwrap_or(&token.text);
        let (name, value) = match body.split_once('=') {
            Some((name, value)) => (name, Some(unquote_option_value(value).to_string())),
            None => (body, None),
        };
        OptionLine {
            line: token.line,
            name: name.to_string(),
            value,
        }
    }

    /// Replaces defined words by their values, as Google's lexer does. The value is
    /// re-lexed so `PORT=8080` yields a number; a multi-token value stays one word.
    fn substitute_defines(&mut self, defines: &HashMap<String, String>) {
        if defines.is_empty() {
            return;
        }
        for token in self.tokens.iter_mut().skip(self.pos) {
            if token.kind != TokenKind::Word {
                continue;
            }
            let Some(value) = defines.get(&token.text) else {
                continue;
            };
            let replacement = tokenize("", value)
                .ok()
                .and_then(|toks| match toks.as_slice() {
                    [single, eof] if eof.kind == TokenKind::Eof => Some(single.kind),
                    _ => None,
                });
            token.kind = replacement.unwrap_or(TokenKind::Word);
            token.text = value.clone();
        }
    }

    fn shell_command(&mut self) -> ShellCommand {
        let token = self.bump();
        ShellCommand {
            line: token.line,
            command: token.inner_text().to_string(),
        }
    }

    // ---- events -------------------------------------------------------------------

    fn event(&mut self) -> Result<Event, ParseError> {
        let line = self.peek().line;
        let time = self.time_spec()?;
        let kind = match self.peek().kind {
            TokenKind::Punct('<') | TokenKind::Punct('>') => EventKind::Packet(self.packet()?),
            TokenKind::BackQuoted => EventKind::Command(self.shell_command()),
            TokenKind::Code => {
                let token = self.bump();
                EventKind::Code(CodeBlock {
                    line: token.line,
                    text: token.inner_text().to_string(),
                })
            }
            TokenKind::Ellipsis | TokenKind::Word => EventKind::Syscall(self.syscall()?),
            _ => return Err(self.error_here(
                "expected a packet ('<' or '>'), a system call, a `command` or a %{ code }% block",
            )),
        };
        self.check_time_use(line, &time, &kind)?;
        Ok(Event { line, time, kind })
    }

    /// packetdrill only allows `*` and time ranges on expected (outbound) packets.
    fn check_time_use(
        &self,
        line: u32,
        time: &TimeSpec,
        kind: &EventKind,
    ) -> Result<(), ParseError> {
        let outbound_packet = matches!(
            kind,
            EventKind::Packet(p) if p.direction == Direction::Outbound
        );
        match time {
            TimeSpec::Any if !outbound_packet => Err(self.semantic(
                line,
                "event time <star> can only be used with outbound packets",
            )),
            TimeSpec::AbsoluteRange { .. } | TimeSpec::RelativeRange { .. } if !outbound_packet => {
                Err(self.semantic(
                    line,
                    "event time range can only be used with outbound packets",
                ))
            }
            _ => Ok(()),
        }
    }

    fn time_spec(&mut self) -> Result<TimeSpec, ParseError> {
        let line = self.peek().line;
        let spec = if self.eat_punct('*') {
            TimeSpec::Any
        } else if self.eat_punct('+') {
            let start = self.time()?;
            if self.eat_punct('~') {
                if !self.eat_punct('+') {
                    return Err(
                        self.error_here("a relative time range must be written +START~+END")
                    );
                }
                TimeSpec::RelativeRange {
                    start,
                    end: self.time()?,
                }
            } else {
                TimeSpec::Relative(start)
            }
        } else if matches!(self.peek().kind, TokenKind::Integer | TokenKind::Float) {
            let start = self.time()?;
            if self.eat_punct('~') {
                if self.at_punct('+') {
                    return Err(self.error_here("an absolute time range must be written START~END"));
                }
                TimeSpec::AbsoluteRange {
                    start,
                    end: self.time()?,
                }
            } else {
                TimeSpec::Absolute(start)
            }
        } else {
            return Err(self.error_here("expected an event time (like 0.100, +0.1, * or 0.1~0.2)"));
        };
        if let TimeSpec::AbsoluteRange { start, end } | TimeSpec::RelativeRange { start, end } =
            spec
        {
            if end < start {
                return Err(self.semantic(line, "time range is backwards"));
            }
        }
        Ok(spec)
    }

    /// Seconds, integer or decimal, converted exactly to microseconds (digits past the
    /// sixth decimal are dropped, as packetdrill's conversion truncates).
    fn time(&mut self) -> Result<Micros, ParseError> {
        if !matches!(self.peek().kind, TokenKind::Integer | TokenKind::Float) {
            return Err(self.error_here("expected a time in seconds"));
        }
        let token = self.bump();
        if token.text.starts_with('-') {
            return Err(self.semantic(token.line, "negative time"));
        }
        seconds_to_micros(&token.text).ok_or_else(|| self.semantic(token.line, "time out of range"))
    }

    fn packet_direction(&mut self) -> Result<Direction, ParseError> {
        if self.eat_punct('<') {
            Ok(Direction::Inbound)
        } else if self.eat_punct('>') {
            Ok(Direction::Outbound)
        } else {
            Err(self.error_here("expected '<' or '>'"))
        }
    }

    /// Enters one level of expression nesting.
    fn enter_nested(&mut self) -> Result<(), ParseError> {
        if self.depth >= MAX_EXPR_DEPTH {
            return Err(self.error_here("expression nested too deeply"));
        }
        self.depth += 1;
        Ok(())
    }

    fn leave_nested(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }
}

/// `"x"` or `` `x` `` around a whole option value are removed, as the grammar does for
/// `--name="value"`; inner quotes (`--define=CC="reno"`) stay.
fn unquote_option_value(value: &str) -> &str {
    for quote in ['"', '`'] {
        if let Some(inner) = value
            .strip_prefix(quote)
            .and_then(|v| v.strip_suffix(quote))
        {
            return inner;
        }
    }
    value
}

/// `12`, `0.100`, `.5` → microseconds.
fn seconds_to_micros(text: &str) -> Option<Micros> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let whole: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let mut micros: u64 = 0;
    for (i, c) in fraction.chars().enumerate() {
        let digit = u64::from(c.to_digit(10)?);
        if i < 6 {
            micros = micros * 10 + digit;
        }
    }
    for _ in fraction.len()..6 {
        micros *= 10;
    }
    whole.checked_mul(1_000_000)?.checked_add(micros)
}

#[cfg(test)]
mod tests {
    use super::seconds_to_micros;

    #[test]
    fn seconds_convert_exactly() {
        assert_eq!(seconds_to_micros("0"), Some(0));
        assert_eq!(seconds_to_micros("0.1"), Some(100_000));
        assert_eq!(seconds_to_micros(".001"), Some(1_000));
        assert_eq!(seconds_to_micros("1.0000019"), Some(1_000_001));
        assert_eq!(seconds_to_micros("12"), Some(12_000_000));
        assert_eq!(seconds_to_micros("99999999999999999"), None);
    }
}
