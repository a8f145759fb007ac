//! System call lines and their expressions.

use super::Parser;
use crate::ast::{ErrnoSpec, Expr, ExprKind, StructField, SyscallEvent};
use crate::error::ParseError;
use crate::lexer::TokenKind;

impl<'a> Parser<'a> {
    /// `[... END] name(args) = result [ERRNO [(text)]] [(note)]`.
    pub(super) fn syscall(&mut self) -> Result<SyscallEvent, ParseError> {
        let blocking_end = if self.eat_ellipsis() {
            Some(self.time()?)
        } else {
            None
        };
        if self.peek().kind != TokenKind::Word {
            return Err(self.error_here("expected a system call name"));
        }
        let name = self.bump().text;
        self.expect_punct('(', "after the system call name")?;
        let args = self.expr_list(')')?;
        self.expect_punct('=', "and the expected result after the system call")?;
        let result = self.expr()?;
        let errno = if self.peek().kind == TokenKind::Word {
            let name = self.bump().text;
            let text = if self.at_punct('(') {
                Some(self.note()?)
            } else {
                None
            };
            Some(ErrnoSpec { name, text })
        } else {
            None
        };
        let note = if self.at_punct('(') {
            Some(self.note()?)
        } else {
            None
        };
        Ok(SyscallEvent {
            name,
            args,
            result,
            errno,
            note,
            blocking_end,
        })
    }

    /// `( words )`: the tokens' texts joined by single spaces.
    fn note(&mut self) -> Result<String, ParseError> {
        let open = self.expect_punct('(', "before a note")?;
        let mut words: Vec<String> = Vec::new();
        let mut depth = 0usize;
        loop {
            let token = self.peek().clone();
            match token.kind {
                TokenKind::Eof => {
                    return Err(self.error_at(&open, "unterminated note (missing ')')"));
                }
                TokenKind::Punct(')') if depth == 0 => {
                    self.bump();
                    return Ok(words.join(" "));
                }
                TokenKind::Punct(')') => depth -= 1,
                TokenKind::Punct('(') => depth += 1,
                _ => {}
            }
            self.bump();
            words.push(token.text);
        }
    }

    /// Comma-separated expressions up to and including `close` (may be empty).
    fn expr_list(&mut self, close: char) -> Result<Vec<Expr>, ParseError> {
        let mut items = Vec::new();
        if self.eat_punct(close) {
            return Ok(items);
        }
        loop {
            items.push(self.expr()?);
            if self.eat_punct(close) {
                return Ok(items);
            }
            self.expect_punct(',', &format!("or '{close}' after an expression"))?;
        }
    }

    /// `operand ('|' operand)*`.
    pub(super) fn expr(&mut self) -> Result<Expr, ParseError> {
        let first = self.operand()?;
        if !self.at_punct('|') {
            return Ok(first);
        }
        let line = first.line;
        let mut operands = vec![first];
        while self.eat_punct('|') {
            operands.push(self.operand()?);
        }
        Ok(Expr::new(line, ExprKind::BitOr(operands)))
    }

    fn operand(&mut self) -> Result<Expr, ParseError> {
        let token = self.peek().clone();
        let line = token.line;
        let kind = match token.kind {
            TokenKind::Ellipsis => {
                self.bump();
                ExprKind::Ellipsis
            }
            TokenKind::Integer | TokenKind::HexInteger => {
                self.bump();
                ExprKind::Integer {
                    value: self.int_value(&token)?,
                    hex: token.kind == TokenKind::HexInteger,
                }
            }
            TokenKind::Str => {
                self.bump();
                let ellipsis = self.eat_ellipsis();
                ExprKind::Str {
                    value: token.inner_text().to_string(),
                    ellipsis,
                }
            }
            TokenKind::Punct('[') => {
                self.bump();
                self.enter_nested()?;
                let items = self.expr_list(']');
                self.leave_nested();
                ExprKind::List(items?)
            }
            TokenKind::Punct('{') => {
                self.bump();
                self.enter_nested()?;
                let fields = self.struct_fields();
                self.leave_nested();
                ExprKind::Struct(fields?)
            }
            TokenKind::Word => return self.word_operand(),
            _ => return Err(self.error_here("expected an expression")),
        };
        Ok(Expr::new(line, kind))
    }

    /// A symbol, `NULL`, or one of the functions the grammars know.
    fn word_operand(&mut self) -> Result<Expr, ParseError> {
        let token = self.bump();
        let line = token.line;
        let kind = match token.text.as_str() {
            "NULL" => ExprKind::Null,
            "htons" | "htonl" if self.at_punct('(') => {
                self.bump();
                self.enter_nested()?;
                let inner = self.expr();
                self.leave_nested();
                let inner = inner?;
                self.expect_punct(')', &format!("after the {} argument", token.text))?;
                let max = if token.text == "htons" {
                    i64::from(u16::MAX)
                } else {
                    i64::from(u32::MAX)
                };
                if inner.as_int().is_some_and(|v| !(0..=max).contains(&v)) {
                    return Err(self.semantic(inner.line, "number out of range"));
                }
                if token.text == "htons" {
                    ExprKind::Htons(Box::new(inner))
                } else {
                    ExprKind::Htonl(Box::new(inner))
                }
            }
            "inet_addr" | "inet6_addr" if self.at_punct('(') => {
                self.bump();
                if self.peek().kind != TokenKind::Str {
                    return Err(self.error_here("expected a quoted address"));
                }
                let address = self.bump().inner_text().to_string();
                self.expect_punct(')', "after the address")?;
                if token.text == "inet_addr" {
                    ExprKind::InetAddr(address)
                } else {
                    ExprKind::Inet6Addr(address)
                }
            }
            _ => ExprKind::Symbol(token.text),
        };
        Ok(Expr::new(line, kind))
    }

    /// After `{`: `name=expr`, `name(len)=expr` or `expr`, comma-separated, up to `}`.
    fn struct_fields(&mut self) -> Result<Vec<StructField>, ParseError> {
        let mut fields = Vec::new();
        if self.eat_punct('}') {
            return Ok(fields);
        }
        loop {
            fields.push(self.struct_field()?);
            if self.eat_punct('}') {
                return Ok(fields);
            }
            self.expect_punct(',', "or '}' after a struct field")?;
        }
    }

    fn struct_field(&mut self) -> Result<StructField, ParseError> {
        let token = self.peek().clone();
        let line = token.line;
        if token.kind == TokenKind::Word && self.peek_n(1).is_punct('=') {
            self.bump();
            self.bump();
            return Ok(StructField {
                line,
                name: Some(token.text),
                len: None,
                value: self.expr()?,
            });
        }
        if token.kind == TokenKind::Word
            && self.peek_n(1).is_punct('(')
            && self.named_len_field_follows()
        {
            self.bump();
            self.bump();
            self.enter_nested()?;
            let len = self.expr();
            self.leave_nested();
            let len = len?;
            self.expect_punct(')', "after the field length")?;
            self.expect_punct('=', "after the field length")?;
            return Ok(StructField {
                line,
                name: Some(token.text),
                len: Some(len),
                value: self.expr()?,
            });
        }
        Ok(StructField {
            line,
            name: None,
            len: None,
            value: self.expr()?,
        })
    }

    /// At `name (`: is this `name(len)=value` rather than a call such as `htons(80)`?
    fn named_len_field_follows(&self) -> bool {
        // Bounded so adversarial input cannot make parsing quadratic.
        const MAX_LOOKAHEAD: usize = 256;
        let mut depth = 0usize;
        for n in 1..MAX_LOOKAHEAD {
            let token = self.peek_n(n);
            match token.kind {
                TokenKind::Eof => return false,
                TokenKind::Punct('(') => depth += 1,
                TokenKind::Punct(')') => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        return self.peek_n(n + 1).is_punct('=');
                    }
                }
                _ => {}
            }
        }
        false
    }
}
