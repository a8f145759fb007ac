//! Evaluator for the Python subset found in packetdrill `%{ ... }%` code blocks.
//!
//! packetdrill hands these blocks to Python with the socket's `tcp_info` fields (`tcpi_*`)
//! and some constants in scope. Real scripts only assert on and print those values, so this
//! module evaluates that subset itself and the runner needs no Python:
//!
//! - Statements, separated by newlines or `;`: `assert EXPR` and `assert EXPR, MSG`,
//!   `NAME = EXPR` and augmented assignment (`NAME += EXPR`, ...), `pass`, `print(...)` (also
//!   the Python 2 statement form `print a, b` that older scripts use) and bare expressions.
//!   `#` starts a comment; indentation and blank lines are ignored; newlines inside brackets
//!   and after `\` continue a statement.
//! - Expressions with Python's precedence and semantics: `or` and `and` (short-circuiting and
//!   yielding an operand), `not`, chained comparisons (`a <= b <= c`), `|`, `^`, `&`, `<<`,
//!   `>>`, `+`, `-`, `*`, `/` (true division), `//` and `%` (floored), unary `-`, `+`, `~`,
//!   `**` and parentheses.
//! - Values: integers (held in `i128`; overflow is an error, never a wrap), `True`, `False`,
//!   floats (from `/`, `**` or float literals), strings (for messages; `+`, and `%` formatting
//!   with `%d %i %u %x %X %o %s %r %f %%`, the `-` and `0` flags, width and precision), `None`
//!   and flat tuples.
//! - Built-in functions `abs`, `min`, `max`, `int`, `str`, `repr`, `len` and `print`.
//!
//! Names resolve to variables assigned earlier in the block, then through [`Names`]; any other
//! name is a `NameError`. Other Python (`if`, `for`, `def`, `import`, `lambda`, lists, attribute
//! access, ...) is an error naming the construct. [`run`] never panics: nesting is limited to
//! [`MAX_DEPTH`] levels and strings to a megabyte.
//!
//! ```ignore
//! let names = |name: &str| (name == "tcpi_snd_cwnd").then_some(7);
//! let err = code::run("\nassert tcpi_snd_cwnd == 10, tcpi_snd_cwnd\n", &names).unwrap_err();
//! assert_eq!(
//!     err.to_string(),
//!     "line 2: assertion failed: tcpi_snd_cwnd == 10 (tcpi_snd_cwnd = 7): 7"
//! );
//! ```

use std::cmp::Ordering;
use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::rc::Rc;

/// Deepest nesting of brackets and unary operators accepted; it bounds every recursion.
pub const MAX_DEPTH: usize = 64;
/// Longest string a block may build, so repeated `s = s + s` cannot exhaust memory.
const MAX_STR: usize = 1 << 20;

/// The value of a name the script reads (a tcp_info field or a constant), if known.
pub trait Names {
    /// Returns the value of `name`, or `None` if the name is unknown (a `NameError`).
    fn lookup(&self, name: &str) -> Option<i64>;
}

/// Any `Fn(&str) -> Option<i64>` resolves names; write closures as `|name: &str| ...`.
impl<F: Fn(&str) -> Option<i64>> Names for F {
    fn lookup(&self, name: &str) -> Option<i64> {
        self(name)
    }
}

/// What running a code block produced.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct CodeOutput {
    /// Everything `print` wrote, each call ending in a newline.
    pub printed: String,
}

/// Why a code block failed: `line` is the 1-based line within the block's text.
#[derive(Debug, Clone, PartialEq)]
pub struct CodeError {
    /// Line of the failing statement (for syntax errors, of the offending token).
    pub line: usize,
    /// What went wrong, e.g. `assertion failed: tcpi_snd_cwnd == 10 (tcpi_snd_cwnd = 7)`.
    pub message: String,
}

impl fmt::Display for CodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for CodeError {}

/// Runs the code block `code`, reading names it does not assign through `names`.
///
/// The whole block is parsed before anything runs, as Python compiles it first. A failed
/// assertion's message holds its source text, the values of the names it used and the value
/// of its message expression, if any.
pub fn run(code: &str, names: &dyn Names) -> Result<CodeOutput, CodeError> {
    let stmts = Parser::new(code)?.block()?;
    let mut interp = Interp {
        names,
        vars: HashMap::new(),
        out: String::new(),
    };
    for (line, stmt) in &stmts {
        let at_line = |message| CodeError {
            line: *line,
            message,
        };
        interp.exec(stmt).map_err(at_line)?;
    }
    Ok(CodeOutput {
        printed: interp.out,
    })
}

// ---------------------------------------------------------------------------------------------
// Tokenizer

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Lit(Value),
    Name(String),
    Op(&'static str),
    Newline,
    End,
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    line: usize,
    /// Where the token is in the source, for error messages and assertion text.
    span: Range<usize>,
}

/// Longest first, so that `**=` is not read as `**` then `=`.
const OPS: [&str; 45] = [
    "**=", "//=", "<<=", ">>=", "**", "//", "<<", ">>", "<=", ">=", "==", "!=", "+=", "-=", "*=",
    "/=", "%=", "&=", "|=", "^=", "->", ":=", "(", ")", "[", "]", "{", "}", ",", ":", ".", ";",
    "@", "=", "+", "-", "*", "/", "%", "&", "|", "^", "~", "<", ">",
];

/// Binary operators by precedence, loosest first; `**` is handled on its own.
const LEVELS: [&[&str]; 6] = [
    &["|"],
    &["^"],
    &["&"],
    &["<<", ">>"],
    &["+", "-"],
    &["*", "/", "//", "%", "@"],
];

/// The functions a block may call.
const BUILTINS: [&str; 8] = ["abs", "min", "max", "int", "str", "repr", "len", "print"];

/// Keywords of the Python statements and operators this subset leaves out.
const UNSUPPORTED: [&str; 26] = [
    "if", "elif", "else", "for", "while", "def", "class", "return", "import", "from", "lambda",
    "with", "try", "except", "finally", "raise", "del", "global", "nonlocal", "yield", "async",
    "await", "break", "continue", "in", "is",
];

fn tokenize(src: &str) -> Result<Vec<Token>, CodeError> {
    let (mut toks, mut i, mut line, mut depth) = (Vec::new(), 0, 1, 0usize);
    while let Some(c) = src[i..].chars().next() {
        let (start, rest) = (i, &src[i..]);
        let err = |message| CodeError { line, message };
        let tok = match c {
            // Python joins the lines inside brackets.
            '\n' if depth > 0 => {
                (i, line) = (i + 1, line + 1);
                continue;
            }
            '\n' => {
                (i, line) = (i + 1, line + 1);
                Tok::Newline
            }
            ' ' | '\t' | '\r' | '\x0c' => {
                i += 1;
                continue;
            }
            '#' => {
                i += rest.find('\n').unwrap_or(rest.len());
                continue;
            }
            '\\' if rest[1..].starts_with('\n') || rest[1..].starts_with("\r\n") => {
                i += if rest[1..].starts_with('\n') { 2 } else { 3 };
                line += 1;
                continue;
            }
            '"' | '\'' => {
                let (s, len) = lex_string(rest, c).map_err(err)?;
                i += len;
                Tok::Lit(Value::Str(s.into()))
            }
            c if c.is_ascii_digit()
                || (c == '.' && rest.as_bytes().get(1).is_some_and(u8::is_ascii_digit)) =>
            {
                let (v, len) = lex_number(rest).map_err(err)?;
                i += len;
                Tok::Lit(v)
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                let len = rest
                    .bytes()
                    .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
                    .count();
                i += len;
                if src[i..].starts_with(['"', '\'']) {
                    return Err(err(format!(
                        "unsupported: string prefix `{}`",
                        &rest[..len]
                    )));
                }
                Tok::Name(rest[..len].to_string())
            }
            _ => {
                let Some(op) = OPS.into_iter().find(|op| rest.starts_with(op)) else {
                    return Err(err(format!("syntax error: unexpected character {c:?}")));
                };
                match op {
                    "(" | "[" | "{" => depth += 1,
                    ")" | "]" | "}" => depth = depth.saturating_sub(1),
                    _ => {}
                }
                i += op.len();
                Tok::Op(op)
            }
        };
        // A newline belongs to the line it ends.
        let line = if tok == Tok::Newline { line - 1 } else { line };
        let span = start..i;
        toks.push(Token { tok, line, span });
    }
    let span = i..i;
    toks.push(Token {
        tok: Tok::End,
        line,
        span,
    });
    Ok(toks)
}

/// Lexes the string literal opening `rest`; returns its value and length in bytes.
fn lex_string(rest: &str, quote: char) -> Result<(String, usize), String> {
    let mut out = String::new();
    let mut chars = rest.char_indices().skip(1);
    while let Some((j, c)) = chars.next() {
        match c {
            '\n' => break,
            c if c == quote => return Ok((out, j + 1)),
            '\\' => match chars.next().map(|(_, c)| c) {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some('r') => out.push('\r'),
                Some('0') => out.push('\0'),
                Some(c @ ('\\' | '\'' | '"')) => out.push(c),
                Some('\n') | None => break,
                // Python keeps unknown escapes as written.
                Some(c) => out.extend(['\\', c]),
            },
            c => out.push(c),
        }
    }
    Err("syntax error: unterminated string literal".into())
}

/// Lexes the number opening `rest`; returns its value and length in bytes.
fn lex_number(rest: &str) -> Result<(Value, usize), String> {
    let b = rest.as_bytes();
    let scan = |from: usize, ok: fn(&u8) -> bool| {
        let tail = b.get(from..).unwrap_or(&[]);
        from + tail.iter().take_while(|c| ok(c) || **c == b'_').count()
    };
    let radix = match b.get(..2) {
        Some([b'0', b'x' | b'X']) => 16,
        Some([b'0', b'o' | b'O']) => 8,
        Some([b'0', b'b' | b'B']) => 2,
        _ => 10,
    };
    let (mut len, mut float) = (scan(0, u8::is_ascii_digit), false);
    if radix != 10 {
        len = scan(2, u8::is_ascii_alphanumeric);
    } else {
        if b.get(len) == Some(&b'.') {
            float = true;
            len = scan(len + 1, u8::is_ascii_digit);
        }
        let exp = len + 1 + usize::from(matches!(b.get(len + 1), Some(b'+' | b'-')));
        if matches!(b.get(len), Some(b'e' | b'E')) && b.get(exp).is_some_and(u8::is_ascii_digit) {
            float = true;
            len = scan(exp, u8::is_ascii_digit);
        }
    }
    let (text, full) = (&rest[..len], &rest[..scan(len, u8::is_ascii_alphanumeric)]);
    let bad = || format!("syntax error: invalid numeric literal `{full}`");
    // Python allows single `_`s between digits and right after a `0x`-style prefix.
    let digits = match radix {
        10 => text,
        _ => text[2..].strip_prefix('_').unwrap_or(&text[2..]),
    };
    if full.len() > len
        || digits.is_empty()
        || digits.starts_with('_')
        || digits.ends_with('_')
        || digits.contains("__")
    {
        return Err(bad());
    }
    if float {
        let v = text.replace('_', "").parse().map_err(|_| bad())?;
        return Ok((Value::Float(v), len));
    }
    if radix == 10 && text.starts_with('0') && text.bytes().any(|c| c != b'0' && c != b'_') {
        return Err(format!(
            "syntax error: leading zeros in `{text}` (write 0o for octal)"
        ));
    }
    let mut v: i128 = 0;
    for c in digits.chars().filter(|&c| c != '_') {
        let d = c.to_digit(radix).ok_or_else(bad)?;
        v = v
            .checked_mul(radix.into())
            .and_then(|v| v.checked_add(d.into()))
            .ok_or_else(|| format!("OverflowError: integer literal `{text}` exceeds 128 bits"))?;
    }
    Ok((Value::Int(v), len))
}

// ---------------------------------------------------------------------------------------------
// Syntax tree and parser

/// Operators are kept as their symbols. Chains (`1 + 2 - 3`, `a < b <= c`) are stored flat,
/// not as nested nodes, so a long chain cannot make evaluation or drop recurse deeply.
#[derive(Debug)]
enum Expr {
    Const(Value),
    Name(String),
    Tuple(Vec<Expr>),
    Call(String, Vec<Expr>),
    /// `-`, `+`, `~` or `not`.
    Unary(&'static str, Box<Expr>),
    /// `and` or `or`.
    BoolOp(&'static str, Vec<Expr>),
    Compare(Box<Expr>, Vec<(&'static str, Expr)>),
    Binary(Box<Expr>, Vec<(&'static str, Expr)>),
}

#[derive(Debug)]
enum Stmt {
    Assert {
        cond: Expr,
        text: String,
        msg: Option<Expr>,
    },
    /// `op` is the binary operator of an augmented assignment such as `+=`.
    Assign {
        name: String,
        op: Option<&'static str>,
        value: Expr,
    },
    Print(Vec<Expr>),
    Expr(Expr),
    Pass,
}

struct Parser<'a> {
    src: &'a str,
    toks: Vec<Token>,
    pos: usize,
    depth: usize,
    /// Returned when peeking past the end, which `tokenize`'s final `End` token prevents.
    end: Token,
}

impl<'a> Parser<'a> {
    fn new(src: &'a str) -> Result<Self, CodeError> {
        let (toks, tok, span) = (tokenize(src)?, Tok::End, src.len()..src.len());
        let end = Token { tok, line: 1, span };
        Ok(Parser {
            src,
            toks,
            pos: 0,
            depth: 0,
            end,
        })
    }

    fn peek_at(&self, n: usize) -> &Token {
        let last = self.toks.last().unwrap_or(&self.end);
        self.toks.get(self.pos + n).unwrap_or(last)
    }

    fn peek(&self) -> &Token {
        self.peek_at(0)
    }

    fn peek_op(&self) -> Option<&'static str> {
        match self.peek().tok {
            Tok::Op(op) => Some(op),
            _ => None,
        }
    }

    fn is_kw(&self, kw: &str) -> bool {
        matches!(&self.peek().tok, Tok::Name(n) if n == kw)
    }

    fn next(&mut self) -> Token {
        let t = self.peek().clone();
        self.pos = (self.pos + 1).min(self.toks.len());
        t
    }

    fn eat_op(&mut self, op: &str) -> bool {
        let found = self.peek_op() == Some(op);
        if found {
            self.next();
        }
        found
    }

    fn at_stmt_end(&self) -> bool {
        matches!(self.peek().tok, Tok::End | Tok::Newline | Tok::Op(";"))
    }

    fn error_at(&self, t: &Token, what: &str) -> CodeError {
        let found = match t.tok {
            Tok::Newline => "end of line".to_string(),
            Tok::End => "end of block".to_string(),
            _ => format!("`{}`", self.src.get(t.span.clone()).unwrap_or("?")),
        };
        let message = format!("syntax error at {found}: {what}");
        CodeError {
            line: t.line,
            message,
        }
    }

    fn unsupported(&self, what: &str) -> CodeError {
        let message = format!("unsupported: {what}");
        CodeError {
            line: self.peek().line,
            message,
        }
    }

    fn expect_op(&mut self, op: &str) -> Result<(), CodeError> {
        if self.eat_op(op) {
            Ok(())
        } else {
            Err(self.error_at(self.peek(), &format!("expected `{op}`")))
        }
    }

    /// Runs `f` one nesting level deeper; every recursion in the parser goes through here.
    fn nested<T>(&mut self, f: fn(&mut Self) -> Result<T, CodeError>) -> Result<T, CodeError> {
        if self.depth >= MAX_DEPTH {
            let what = format!("expression nested more than {MAX_DEPTH} levels deep");
            return Err(self.unsupported(&what));
        }
        self.depth += 1;
        let r = f(self);
        self.depth -= 1;
        r
    }

    fn block(mut self) -> Result<Vec<(usize, Stmt)>, CodeError> {
        let mut stmts = Vec::new();
        loop {
            match self.peek().tok {
                Tok::End => return Ok(stmts),
                Tok::Newline | Tok::Op(";") => {
                    self.next();
                }
                _ => {
                    stmts.push((self.peek().line, self.statement()?));
                    if !self.at_stmt_end() {
                        return Err(self.error_at(self.peek(), "expected end of statement"));
                    }
                }
            }
        }
    }

    fn statement(&mut self) -> Result<Stmt, CodeError> {
        let name = match &self.peek().tok {
            Tok::Name(n) => n.clone(),
            _ => String::new(),
        };
        let next_op = match self.peek_at(1).tok {
            Tok::Op(op) => op,
            _ => "",
        };
        // `=`, or an augmented assignment such as `+=` (but not `==`, `<=`, ...).
        let assign = match next_op.strip_suffix('=') {
            Some("") => Some(None),
            Some(op) if op == "**" || (op != "@" && LEVELS.iter().any(|l| l.contains(&op))) => {
                Some(Some(op))
            }
            _ => None,
        };
        Ok(match name.as_str() {
            "assert" => {
                self.next();
                let start = self.peek().span.start;
                let cond = self.expr()?;
                let end = self
                    .toks
                    .get(self.pos.saturating_sub(1))
                    .map_or(start, |t| t.span.end);
                let text = self.src.get(start..end).unwrap_or("").to_string();
                let msg = if self.eat_op(",") {
                    Some(self.expr()?)
                } else {
                    None
                };
                Stmt::Assert { cond, text, msg }
            }
            "pass" => {
                self.next();
                Stmt::Pass
            }
            // Python 2's print statement, still found in older scripts.
            "print" if next_op != "(" && assign.is_none() => {
                self.next();
                let args = if self.at_stmt_end() {
                    Vec::new()
                } else {
                    self.expr_list()?.0
                };
                Stmt::Print(args)
            }
            kw if UNSUPPORTED.contains(&kw) => {
                let what =
                    format!("`{kw}` (only assert, assignment, print and pass are supported)");
                return Err(self.unsupported(&what));
            }
            _ if !name.is_empty() && assign.is_some() => {
                self.pos += 2;
                let value = self.expr_or_tuple()?;
                Stmt::Assign {
                    name,
                    op: assign.flatten(),
                    value,
                }
            }
            _ => {
                let e = self.expr_or_tuple()?;
                if self.peek_op().is_some_and(|op| op.ends_with('=')) {
                    return Err(self.unsupported("assignment to anything but a single name"));
                }
                Stmt::Expr(e)
            }
        })
    }

    /// Comma-separated expressions, and whether there was a comma (which makes a tuple).
    fn expr_list(&mut self) -> Result<(Vec<Expr>, bool), CodeError> {
        let (mut items, mut comma) = (vec![self.expr()?], false);
        while self.eat_op(",") {
            comma = true;
            if self.at_stmt_end() || self.peek_op() == Some(")") {
                break;
            }
            items.push(self.expr()?);
        }
        Ok((items, comma))
    }

    fn expr_or_tuple(&mut self) -> Result<Expr, CodeError> {
        match self.expr_list()? {
            (mut items, false) if items.len() == 1 => Ok(items.remove(0)),
            (items, _) => Ok(Expr::Tuple(items)),
        }
    }

    fn expr(&mut self) -> Result<Expr, CodeError> {
        let e = self.bool_op("or")?;
        if self.is_kw("if") {
            return Err(self.unsupported("conditional expressions (`a if c else b`)"));
        }
        Ok(e)
    }

    /// An `or` chain of `and` chains of `not_test`s.
    fn bool_op(&mut self, kw: &'static str) -> Result<Expr, CodeError> {
        let operand = |p: &mut Self| match kw {
            "or" => p.bool_op("and"),
            _ => p.not_test(),
        };
        let mut operands = vec![operand(self)?];
        while self.is_kw(kw) {
            self.next();
            operands.push(operand(self)?);
        }
        match operands.len() {
            1 => Ok(operands.remove(0)),
            _ => Ok(Expr::BoolOp(kw, operands)),
        }
    }

    fn not_test(&mut self) -> Result<Expr, CodeError> {
        if !self.is_kw("not") {
            return self.comparison();
        }
        self.next();
        Ok(Expr::Unary("not", Box::new(self.nested(Self::not_test)?)))
    }

    fn comparison(&mut self) -> Result<Expr, CodeError> {
        let first = self.binary(0)?;
        let mut rest = Vec::new();
        loop {
            let not_in =
                self.is_kw("not") && matches!(&self.peek_at(1).tok, Tok::Name(n) if n == "in");
            if self.is_kw("in") || self.is_kw("is") || not_in {
                return Err(self.unsupported("the `in`, `not in` and `is` operators"));
            }
            match self.peek_op() {
                Some(op @ ("==" | "!=" | "<" | "<=" | ">" | ">=")) => {
                    self.next();
                    rest.push((op, self.binary(0)?));
                }
                _ if rest.is_empty() => return Ok(first),
                _ => return Ok(Expr::Compare(Box::new(first), rest)),
            }
        }
    }

    fn binary(&mut self, level: usize) -> Result<Expr, CodeError> {
        let Some(ops) = LEVELS.get(level) else {
            return self.factor();
        };
        let first = self.binary(level + 1)?;
        let mut rest = Vec::new();
        while let Some(op) = self.peek_op().filter(|op| ops.contains(op)) {
            if op == "@" {
                return Err(self.unsupported("the `@` operator"));
            }
            self.next();
            rest.push((op, self.binary(level + 1)?));
        }
        if rest.is_empty() {
            Ok(first)
        } else {
            Ok(Expr::Binary(Box::new(first), rest))
        }
    }

    fn factor(&mut self) -> Result<Expr, CodeError> {
        if let Some(op @ ("-" | "+" | "~")) = self.peek_op() {
            self.next();
            return Ok(Expr::Unary(op, Box::new(self.nested(Self::factor)?)));
        }
        let base = self.primary()?;
        if !self.eat_op("**") {
            return Ok(base);
        }
        // Right-associative, and binding tighter than a unary minus on its left.
        let exp = self.nested(Self::factor)?;
        Ok(Expr::Binary(Box::new(base), vec![("**", exp)]))
    }

    fn primary(&mut self) -> Result<Expr, CodeError> {
        let t = self.next();
        let e = match t.tok.clone() {
            Tok::Lit(Value::Str(s)) => {
                // Adjacent string literals concatenate, as in Python.
                let mut s = s.to_string();
                while let Tok::Lit(Value::Str(more)) = &self.peek().tok {
                    s.push_str(more);
                    self.next();
                }
                Expr::Const(Value::Str(s.into()))
            }
            Tok::Lit(v) => Expr::Const(v),
            Tok::Name(n) => match n.as_str() {
                "True" => Expr::Const(Value::Bool(true)),
                "False" => Expr::Const(Value::Bool(false)),
                "None" => Expr::Const(Value::None),
                kw if UNSUPPORTED.contains(&kw) => {
                    let message = format!("unsupported: `{kw}`");
                    return Err(CodeError {
                        line: t.line,
                        message,
                    });
                }
                "and" | "or" | "not" | "assert" | "pass" => {
                    return Err(self.error_at(&t, "expected an expression"))
                }
                f if self.peek_op() == Some("(") && !BUILTINS.contains(&f) => {
                    let what = format!("function `{f}` (only {})", BUILTINS.join(", "));
                    return Err(self.unsupported(&what));
                }
                _ if self.eat_op("(") => Expr::Call(n, self.nested(Self::call_args)?),
                _ => Expr::Name(n),
            },
            Tok::Op("(") if self.eat_op(")") => Expr::Const(Value::Tuple(Rc::new([]))),
            Tok::Op("(") => {
                let e = self.nested(Self::expr_or_tuple)?;
                self.expect_op(")")?;
                e
            }
            Tok::Op("[") => return Err(self.unsupported("list literals")),
            Tok::Op("{") => return Err(self.unsupported("dict and set literals")),
            _ => return Err(self.error_at(&t, "expected an expression")),
        };
        match self.peek_op() {
            Some("(") => Err(self.unsupported("calling anything but a built-in function")),
            Some("[") => Err(self.unsupported("subscripts")),
            Some(".") => Err(self.unsupported("attribute access")),
            _ => Ok(e),
        }
    }

    fn call_args(&mut self) -> Result<Vec<Expr>, CodeError> {
        let mut args = Vec::new();
        while !self.eat_op(")") {
            if matches!(self.peek().tok, Tok::Name(_)) && self.peek_at(1).tok == Tok::Op("=") {
                return Err(self.unsupported("keyword arguments"));
            }
            if matches!(self.peek_op(), Some("*" | "**")) {
                return Err(self.unsupported("argument unpacking"));
            }
            args.push(self.expr()?);
            if !self.eat_op(",") {
                self.expect_op(")")?;
                break;
            }
        }
        Ok(args)
    }
}

// ---------------------------------------------------------------------------------------------
// Values and operations

/// Strings and tuples are shared, so copying values around is cheap.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    None,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(Rc<str>),
    Tuple(Rc<[Value]>),
}

#[derive(Debug, Clone, Copy)]
enum Num {
    I(i128),
    F(f64),
}

impl Num {
    fn to_f64(self) -> f64 {
        match self {
            Num::I(i) => i as f64,
            Num::F(x) => x,
        }
    }
}

type Eval<T> = Result<T, String>;

/// The numeric view of a value; a `bool` is an `int` in Python.
fn num(v: &Value) -> Option<Num> {
    match *v {
        Value::Bool(b) => Some(Num::I(b.into())),
        Value::Int(i) => Some(Num::I(i)),
        Value::Float(x) => Some(Num::F(x)),
        _ => None,
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::None => "NoneType",
        Value::Bool(_) => "bool",
        Value::Int(_) => "int",
        Value::Float(_) => "float",
        Value::Str(_) => "str",
        Value::Tuple(_) => "tuple",
    }
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::None => false,
        Value::Bool(b) => *b,
        Value::Int(i) => *i != 0,
        Value::Float(x) => *x != 0.0,
        Value::Str(s) => !s.is_empty(),
        Value::Tuple(t) => !t.is_empty(),
    }
}

fn too_long() -> String {
    format!("MemoryError: text longer than {MAX_STR} bytes")
}

/// Appends `str(v)`, or `repr(v)`, to `out`; fails once `out` grows past the size limit.
fn render(v: &Value, repr: bool, out: &mut String) -> Eval<()> {
    match v {
        Value::None => out.push_str("None"),
        Value::Bool(b) => out.push_str(if *b { "True" } else { "False" }),
        Value::Int(i) => out.push_str(&i.to_string()),
        Value::Float(x) => out.push_str(&float_repr(*x)),
        Value::Str(s) if repr => {
            out.push('\'');
            for c in s.chars() {
                match c {
                    '\\' | '\'' => out.extend(['\\', c]),
                    '\n' => out.push_str("\\n"),
                    c => out.push(c),
                }
            }
            out.push('\'');
        }
        Value::Str(s) => out.push_str(s),
        Value::Tuple(items) => {
            out.push('(');
            for (i, item) in items.iter().enumerate() {
                out.push_str(if i > 0 { ", " } else { "" });
                render(item, true, out)?;
            }
            out.push_str(if items.len() == 1 { ",)" } else { ")" });
        }
    }
    if out.len() > MAX_STR {
        return Err(too_long());
    }
    Ok(())
}

fn to_str(v: &Value, repr: bool) -> Eval<String> {
    let mut s = String::new();
    render(v, repr, &mut s)?;
    Ok(s)
}

/// Python's `repr(float)`: the shortest round-trip digits, in exponent form outside
/// [1e-4, 1e16), with the exponent written as C does (`1e+16`).
fn float_repr(x: f64) -> String {
    match x {
        _ if x.is_nan() => "nan".to_string(),
        _ if x.is_infinite() => if x > 0.0 { "inf" } else { "-inf" }.to_string(),
        _ if x == 0.0 || (1e-4..1e16).contains(&x.abs()) => {
            let s = x.to_string();
            if s.contains('.') {
                s
            } else {
                s + ".0"
            }
        }
        _ => {
            let s = format!("{x:e}");
            let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
            let (sign, digits) = exp.strip_prefix('-').map_or(('+', exp), |d| ('-', d));
            format!("{mantissa}e{sign}{digits:0>2}")
        }
    }
}

fn unary(op: &str, v: &Value) -> Eval<Value> {
    Ok(match (op, num(v)) {
        ("not", _) => Value::Bool(!truthy(v)),
        ("-", Some(Num::I(i))) => Value::Int(i.checked_neg().ok_or("OverflowError: -(-2**127)")?),
        ("-", Some(Num::F(x))) => Value::Float(-x),
        ("+", Some(Num::I(i))) => Value::Int(i),
        ("+", Some(Num::F(x))) => Value::Float(x),
        ("~", Some(Num::I(i))) => Value::Int(!i),
        _ => {
            let t = type_name(v);
            return Err(format!("TypeError: bad operand type for unary {op}: '{t}'"));
        }
    })
}

fn binary(op: &str, a: &Value, b: &Value) -> Eval<Value> {
    match (op, a, b) {
        ("+", Value::Str(x), Value::Str(y)) if x.len() + y.len() > MAX_STR => Err(too_long()),
        ("+", Value::Str(x), Value::Str(y)) => Ok(Value::Str(format!("{x}{y}").into())),
        ("%", Value::Str(f), _) => Ok(Value::Str(format_percent(f, b)?.into())),
        // `&`, `|` and `^` of two bools give a bool in Python.
        ("&", Value::Bool(x), Value::Bool(y)) => Ok(Value::Bool(x & y)),
        ("|", Value::Bool(x), Value::Bool(y)) => Ok(Value::Bool(x | y)),
        ("^", Value::Bool(x), Value::Bool(y)) => Ok(Value::Bool(x ^ y)),
        _ => match (num(a), num(b)) {
            (Some(Num::I(x)), Some(Num::I(y))) => int_op(op, x, y),
            (Some(x), Some(y)) if !matches!(op, "|" | "^" | "&" | "<<" | ">>") => {
                float_op(op, x.to_f64(), y.to_f64())
            }
            _ => {
                let (ta, tb) = (type_name(a), type_name(b));
                Err(format!(
                    "TypeError: unsupported operand type(s) for {op}: '{ta}' and '{tb}'"
                ))
            }
        },
    }
}

fn int_op(op: &str, x: i128, y: i128) -> Eval<Value> {
    // Python floors the quotient, so a nonzero remainder takes the divisor's sign.
    let floor_fix = |r: i128| r != 0 && (r < 0) != (y < 0);
    let r = match op {
        "+" => x.checked_add(y),
        "-" => x.checked_sub(y),
        "*" => x.checked_mul(y),
        "|" => Some(x | y),
        "^" => Some(x ^ y),
        "&" => Some(x & y),
        "<<" | ">>" if y < 0 => return Err("ValueError: negative shift count".into()),
        "<<" if x == 0 => Some(0),
        // Shifting back must restore `x`, or bits (or the sign) were lost.
        "<<" => u32::try_from(y)
            .ok()
            .filter(|&s| s < 128 && (x << s) >> s == x)
            .map(|s| x << s),
        ">>" => Some(x >> y.min(127)),
        "/" if y == 0 => return Err("ZeroDivisionError: division by zero".into()),
        "/" => return Ok(Value::Float(x as f64 / y as f64)),
        "//" | "%" if y == 0 => {
            return Err("ZeroDivisionError: integer division or modulo by zero".into())
        }
        // Only `i128::MIN // -1` overflows; `wrapping_rem` gives its remainder, 0.
        "//" => x
            .checked_div(y)
            .map(|q| q - i128::from(floor_fix(x.wrapping_rem(y)))),
        "%" => Some(x.wrapping_rem(y)).map(|r| if floor_fix(r) { r + y } else { r }),
        "**" if y < 0 && x == 0 => {
            return Err("ZeroDivisionError: 0 cannot be raised to a negative power".into())
        }
        "**" if y < 0 => return Ok(Value::Float((x as f64).powf(y as f64))),
        "**" => checked_pow(x, y.unsigned_abs()),
        _ => return Err(format!("unsupported: the `{op}` operator")),
    };
    r.map(Value::Int)
        .ok_or_else(|| format!("OverflowError: {x} {op} {y} does not fit in 128 bits"))
}

/// Square-and-multiply, so that huge exponents of 0, 1 or -1 still finish at once.
fn checked_pow(mut base: i128, mut exp: u128) -> Option<i128> {
    let mut acc: i128 = 1;
    while exp > 0 {
        if exp & 1 == 1 {
            acc = acc.checked_mul(base)?;
        }
        exp >>= 1;
        if exp > 0 {
            base = base.checked_mul(base)?;
        }
    }
    Some(acc)
}

fn float_op(op: &str, x: f64, y: f64) -> Eval<Value> {
    // Python's floored `//` and `%`: the remainder takes the divisor's sign.
    let divmod = || {
        let r = match x % y {
            0.0 => 0.0f64.copysign(y),
            r if (r < 0.0) != (y < 0.0) => r + y,
            r => r,
        };
        let q = ((x - r) / y).round();
        (if q == 0.0 { 0.0f64.copysign(x / y) } else { q }, r)
    };
    Ok(Value::Float(match op {
        "+" => x + y,
        "-" => x - y,
        "*" => x * y,
        "/" | "//" | "%" if y == 0.0 => {
            return Err("ZeroDivisionError: float division by zero".into())
        }
        "/" => x / y,
        "//" => divmod().0,
        "%" => divmod().1,
        "**" if x == 0.0 && y < 0.0 => {
            return Err("ZeroDivisionError: 0.0 cannot be raised to a negative power".into())
        }
        "**" if x < 0.0 && y.fract() != 0.0 => {
            return Err("unsupported: complex result of a negative number ** a fraction".into())
        }
        "**" => x.powf(y),
        _ => {
            return Err(format!(
                "TypeError: unsupported operand type(s) for {op}: 'float'"
            ))
        }
    }))
}

/// Compares exactly, as Python does, even where converting the int to a float would round.
fn num_cmp(a: Num, b: Num) -> Option<Ordering> {
    let int_float = |i: i128, f: f64| {
        let (floor, limit) = (f.floor(), 2f64.powi(127));
        match floor {
            _ if f.is_nan() => None,
            _ if floor >= limit => Some(Ordering::Less),
            _ if floor < -limit => Some(Ordering::Greater),
            _ if f > floor => Some(i.cmp(&(floor as i128)).then(Ordering::Less)),
            _ => Some(i.cmp(&(floor as i128))),
        }
    };
    match (a, b) {
        (Num::I(x), Num::I(y)) => Some(x.cmp(&y)),
        (Num::F(x), Num::F(y)) => x.partial_cmp(&y),
        (Num::I(x), Num::F(y)) => int_float(x, y),
        (Num::F(x), Num::I(y)) => int_float(y, x).map(Ordering::reverse),
    }
}

fn equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Str(x), Value::Str(y)) => x == y,
        (Value::None, Value::None) => true,
        (Value::Tuple(x), Value::Tuple(y)) => {
            x.len() == y.len() && x.iter().zip(y.iter()).all(|(p, q)| equal(p, q))
        }
        _ => match (num(a), num(b)) {
            (Some(x), Some(y)) => num_cmp(x, y) == Some(Ordering::Equal),
            _ => false,
        },
    }
}

fn compare(op: &str, a: &Value, b: &Value) -> Eval<bool> {
    let ord = match (op, a, b) {
        ("==", _, _) => return Ok(equal(a, b)),
        ("!=", _, _) => return Ok(!equal(a, b)),
        (_, Value::Str(x), Value::Str(y)) => Some(x.cmp(y)),
        _ => match (num(a), num(b)) {
            (Some(x), Some(y)) => num_cmp(x, y),
            _ => {
                let (ta, tb) = (type_name(a), type_name(b));
                let m = format!("'{op}' not supported between instances of '{ta}' and '{tb}'");
                return Err(format!("TypeError: {m}"));
            }
        },
    };
    // A NaN makes every ordering false.
    Ok(ord.is_some_and(|o| match op {
        "<" => o.is_lt(),
        "<=" => o.is_le(),
        ">" => o.is_gt(),
        _ => o.is_ge(),
    }))
}

/// `fmt % arg`: printf-style formatting of a tuple of values or a single value.
fn format_percent(fmt: &str, arg: &Value) -> Eval<String> {
    /// Reads a width or precision, bounded so that `%999999999d` cannot exhaust memory.
    fn number(chars: &mut std::iter::Peekable<std::str::Chars>) -> Eval<usize> {
        let mut n = 0;
        while let Some(d) = chars.next_if(char::is_ascii_digit) {
            n = n * 10 + d as usize - '0' as usize;
            if n > 1000 {
                return Err("ValueError: format width or precision over 1000".into());
            }
        }
        Ok(n)
    }
    let mut args = match arg {
        Value::Tuple(t) => &t[..],
        v => std::slice::from_ref(v),
    }
    .iter();
    let (mut out, mut chars) = (String::new(), fmt.chars().peekable());
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let (mut left, mut zero) = (false, false);
        while let Some(flag) = chars.next_if(|c| matches!(c, '-' | '0')) {
            (left, zero) = (left || flag == '-', zero || flag == '0');
        }
        let width = number(&mut chars)?;
        let precision = match chars.next_if_eq(&'.') {
            Some(_) => Some(number(&mut chars)?),
            None => None,
        };
        // Python accepts and ignores C's length modifiers.
        while chars.next_if(|c| matches!(c, 'l' | 'h' | 'L')).is_some() {}
        let conv = chars.next().ok_or("ValueError: incomplete format")?;
        if conv == '%' {
            out.push('%');
            continue;
        }
        let v = args
            .next()
            .ok_or("TypeError: not enough arguments for format string")?;
        let (sign, body) = convert(conv, precision, v)?;
        let fill = width.saturating_sub(sign.len() + body.chars().count());
        let (pad, zeros) = (" ".repeat(fill), "0".repeat(fill));
        let numeric = conv != 's' && conv != 'r';
        out += &match (left, zero && numeric) {
            (true, _) => format!("{sign}{body}{pad}"),
            (false, true) => format!("{sign}{zeros}{body}"),
            (false, false) => format!("{pad}{sign}{body}"),
        };
        if out.len() > MAX_STR {
            return Err(too_long());
        }
    }
    if args.next().is_some() {
        return Err("TypeError: not all arguments converted during string formatting".into());
    }
    Ok(out)
}

/// One `%` conversion of `v`: its sign and the rest, to be padded.
fn convert(conv: char, precision: Option<usize>, v: &Value) -> Eval<(&'static str, String)> {
    let sign = |negative: bool| if negative { "-" } else { "" };
    let real = || {
        let t = type_name(v);
        format!("TypeError: %{conv} format: a real number is required, not {t}")
    };
    match (conv, num(v)) {
        ('s' | 'r', _) => {
            let s = to_str(v, conv == 'r')?;
            Ok((
                "",
                s.chars().take(precision.unwrap_or(usize::MAX)).collect(),
            ))
        }
        ('d' | 'i' | 'u' | 'x' | 'X' | 'o', Some(n)) => {
            let n = match n {
                Num::I(i) => i,
                // `%d` truncates a float; `%x` and `%o` refuse one.
                Num::F(x) if "diu".contains(conv) && x.abs() < 1e38 => x.trunc() as i128,
                Num::F(_) => return Err(real()),
            };
            let a = n.unsigned_abs();
            let digits = match conv {
                'x' => format!("{a:x}"),
                'X' => format!("{a:X}"),
                'o' => format!("{a:o}"),
                _ => a.to_string(),
            };
            let p = precision.unwrap_or(0);
            Ok((sign(n < 0), format!("{digits:0>p$}")))
        }
        ('f', Some(n)) => {
            let x = n.to_f64();
            let body = match x {
                _ if x.is_nan() => "nan".to_string(),
                _ if x.is_infinite() => "inf".to_string(),
                _ => format!("{:.*}", precision.unwrap_or(6), x.abs()),
            };
            Ok((sign(x.is_sign_negative() && !x.is_nan()), body))
        }
        ('d' | 'i' | 'u' | 'x' | 'X' | 'o' | 'f', None) => Err(real()),
        _ => Err(format!("ValueError: unsupported format character '{conv}'")),
    }
}

// ---------------------------------------------------------------------------------------------
// Interpreter

struct Interp<'a> {
    names: &'a dyn Names,
    vars: HashMap<String, Value>,
    out: String,
}

impl Interp<'_> {
    fn lookup(&self, name: &str) -> Eval<Value> {
        if let Some(v) = self.vars.get(name) {
            return Ok(v.clone());
        }
        match self.names.lookup(name) {
            Some(v) => Ok(Value::Int(v.into())),
            None => Err(format!("NameError: name '{name}' is not defined")),
        }
    }

    fn exec(&mut self, stmt: &Stmt) -> Eval<()> {
        match stmt {
            Stmt::Pass => {}
            Stmt::Expr(e) => {
                self.eval(e)?;
            }
            Stmt::Print(args) => self.print(args)?,
            Stmt::Assign { name, op, value } => {
                let mut v = self.eval(value)?;
                if let Some(op) = op {
                    v = binary(op, &self.lookup(name)?, &v)?;
                }
                self.vars.insert(name.clone(), v);
            }
            Stmt::Assert { cond, text, msg } => {
                if truthy(&self.eval(cond)?) {
                    return Ok(());
                }
                let mut m = format!("assertion failed: {text}");
                let mut names = Vec::new();
                collect_names(cond, &mut names);
                // Names that short-circuiting skipped may be unknown; leave those out.
                let value = |n: &str| to_str(&self.lookup(n).ok()?, true).ok();
                let values: Vec<_> = names
                    .iter()
                    .filter_map(|n| Some(format!("{n} = {}", value(n)?)))
                    .collect();
                if !values.is_empty() {
                    m += &format!(" ({})", values.join(", "));
                }
                if let Some(msg) = msg {
                    m += ": ";
                    m += &to_str(&self.eval(msg)?, false)?;
                }
                return Err(m);
            }
        }
        Ok(())
    }

    fn eval_all(&mut self, exprs: &[Expr]) -> Eval<Vec<Value>> {
        exprs.iter().map(|e| self.eval(e)).collect()
    }

    fn print(&mut self, args: &[Expr]) -> Eval<()> {
        for (i, v) in self.eval_all(args)?.iter().enumerate() {
            self.out.push_str(if i > 0 { " " } else { "" });
            render(v, false, &mut self.out)?;
        }
        self.out.push('\n');
        Ok(())
    }

    fn eval(&mut self, e: &Expr) -> Eval<Value> {
        Ok(match e {
            Expr::Const(v) => v.clone(),
            Expr::Name(n) => self.lookup(n)?,
            Expr::Tuple(items) => {
                let vals = self.eval_all(items)?;
                // Flat tuples keep comparing and printing linear in the values' size.
                if vals.iter().any(|v| matches!(v, Value::Tuple(_))) {
                    return Err("unsupported: nested tuples".into());
                }
                Value::Tuple(vals.into())
            }
            Expr::Call(f, args) if f == "print" => {
                self.print(args)?;
                Value::None
            }
            Expr::Call(f, args) => builtin(f, self.eval_all(args)?)?,
            Expr::Unary(op, e) => unary(op, &self.eval(e)?)?,
            // `and` yields the first false operand, `or` the first true one, else the last.
            Expr::BoolOp(op, operands) => {
                let mut v = Value::None;
                for o in operands {
                    v = self.eval(o)?;
                    if truthy(&v) == (*op == "or") {
                        break;
                    }
                }
                v
            }
            Expr::Compare(first, rest) => {
                let mut left = self.eval(first)?;
                for (op, e) in rest {
                    let right = self.eval(e)?;
                    if !compare(op, &left, &right)? {
                        return Ok(Value::Bool(false));
                    }
                    left = right;
                }
                Value::Bool(true)
            }
            Expr::Binary(first, rest) => {
                let mut v = self.eval(first)?;
                for (op, e) in rest {
                    v = binary(op, &v, &self.eval(e)?)?;
                }
                v
            }
        })
    }
}

/// The names `e` reads, in order of first use, for assertion messages.
fn collect_names<'e>(e: &'e Expr, out: &mut Vec<&'e str>) {
    match e {
        Expr::Name(n) if !out.contains(&n.as_str()) => out.push(n),
        Expr::Name(_) | Expr::Const(_) => {}
        Expr::Tuple(items) | Expr::Call(_, items) | Expr::BoolOp(_, items) => {
            items.iter().for_each(|i| collect_names(i, out));
        }
        Expr::Unary(_, e) => collect_names(e, out),
        Expr::Compare(first, rest) | Expr::Binary(first, rest) => {
            collect_names(first, out);
            rest.iter().for_each(|(_, e)| collect_names(e, out));
        }
    }
}

fn builtin(f: &str, args: Vec<Value>) -> Eval<Value> {
    if f == "min" || f == "max" {
        let items = match args.as_slice() {
            [Value::Tuple(t)] => t.to_vec(),
            _ => args,
        };
        let mut items = items.into_iter();
        let mut best = items
            .next()
            .ok_or_else(|| format!("ValueError: {f}() arg is an empty sequence"))?;
        let better = if f == "min" { "<" } else { ">" };
        for v in items {
            if compare(better, &v, &best)? {
                best = v;
            }
        }
        return Ok(best);
    }
    let [v] = args.as_slice() else {
        let n = args.len();
        return Err(format!(
            "TypeError: {f}() takes exactly one argument ({n} given)"
        ));
    };
    Ok(match (f, v, num(v)) {
        ("abs", _, Some(Num::I(i))) => Value::Int(i.checked_abs().ok_or("OverflowError: abs")?),
        ("abs", _, Some(Num::F(x))) => Value::Float(x.abs()),
        ("int", _, Some(Num::I(i))) => Value::Int(i),
        ("int", _, Some(Num::F(x))) if x.abs() < 1e38 => Value::Int(x.trunc() as i128),
        ("int", _, Some(Num::F(_))) => return Err("OverflowError: float too large for int".into()),
        ("int", Value::Str(s), _) => {
            Value::Int(s.trim().parse().map_err(|_| {
                format!("ValueError: invalid literal for int() with base 10: '{s}'")
            })?)
        }
        ("str" | "repr", _, _) => Value::Str(to_str(v, f == "repr")?.into()),
        ("len", Value::Str(s), _) => Value::Int(s.chars().count() as i128),
        ("len", Value::Tuple(t), _) => Value::Int(t.len() as i128),
        _ => {
            let t = type_name(v);
            return Err(format!("TypeError: bad argument type for {f}(): '{t}'"));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(name: &str) -> Option<i64> {
        Some(match name {
            "tcpi_snd_cwnd" | "tcpi_options" => 7,
            "tcpi_rtt" => 20_000,
            "tcpi_rttvar" => 5_000,
            "tcpi_rto" => 204_000,
            "tcpi_ca_state" | "TCP_CA_Open" | "tcpi_unacked" => 0,
            "TCPI_OPT_TIMESTAMPS" => 1,
            "TCPI_OPT_SACK" => 2,
            "TCPI_OPT_WSCALE" => 4,
            "TCPI_OPT_ECN" => 8,
            _ => return None,
        })
    }

    fn ok(code: &str) -> String {
        let out = run(code, &names).unwrap_or_else(|e| panic!("{code:?}: {e}"));
        out.printed
    }

    fn err(code: &str) -> String {
        run(code, &names).expect_err(code).to_string()
    }

    /// Checks that each expression's `repr` is what Python prints.
    fn check(cases: &[(&str, &str)]) {
        for (expr, want) in cases {
            let got = ok(&format!("print(repr(({expr})))"));
            assert_eq!(got.trim_end(), *want, "{expr}");
        }
    }

    /// Checks that each statement fails with a message containing the given text.
    fn check_err(cases: &[(&str, &str)]) {
        for (code, want) in cases {
            let e = err(code);
            assert!(e.contains(want), "{code}: {e}");
        }
    }

    #[test]
    fn operators_and_precedence() {
        check(&[
            ("1 + 2 * 3 - 4", "3"),
            ("(1 + 2) * 3", "9"),
            ("2 ** 3 ** 2", "512"),
            ("-2 ** 2", "-4"),
            ("2 ** -1", "0.5"),
            ("-+~5", "6"),
            ("1 + 2 << 3", "24"),
            ("1 << 100 >> 98", "4"),
            ("-1 >> 200", "-1"),
            ("6 & 3, 6 | 3, 6 ^ 3, ~0", "(2, 7, 5, -1)"),
            ("1 | 2 ^ 3 & 6", "1"),
            ("1 | 6 ^ 3", "5"),
            ("TCPI_OPT_SACK | TCPI_OPT_ECN", "10"),
            ("0x_ff + 0o17 + 0b101 + 1_000", "1275"),
            ("True + True, True & False", "(2, False)"),
            ("'a' 'b' + \"c\"", "'abc'"),
            (
                "1.5e3 + .5, 1e16, 1e-5, 0.1 + 0.2",
                "(1500.5, 1e+16, 1e-05, 0.30000000000000004)",
            ),
            (
                "abs(-3), min(3, 1, 2), max((4, 9)), min(2, 1.5)",
                "(3, 1, 9, 1.5)",
            ),
            (
                "int(-7 / 2), int('12'), len('abc'), str(12)",
                "(-3, 12, 3, '12')",
            ),
        ]);
        check(&[("(1,)", "(1,)"), ("()", "()"), ("None", "None")]);
    }

    #[test]
    fn python_division() {
        check(&[
            ("-7 // 2, -7 % 2", "(-4, 1)"),
            ("7 // -2, 7 % -2", "(-4, -1)"),
            ("-7 // -2, -7 % -2", "(3, -1)"),
            ("7 / 2, 4 / 2, -7 / 2", "(3.5, 2.0, -3.5)"),
            ("-7.5 // 2, -7.5 % 2", "(-4.0, 0.5)"),
            ("7 / 2 == 3.5", "True"),
        ]);
        for expr in ["1 // 0", "1 % 0", "1 / 0", "1.0 // 0", "0 ** -1"] {
            check_err(&[(&format!("x = {expr}"), "ZeroDivisionError")]);
        }
    }

    #[test]
    fn comparisons() {
        check(&[
            ("1 < 2 < 3, 1 < 3 < 2", "(True, False)"),
            ("200000 <= tcpi_rto <= 250000", "True"),
            ("3 > 2 == 2, 1 < 2 == True", "(True, False)"),
            ("1 == 1.0, 1 != 2, '1' == 1", "(True, True, False)"),
            ("'a' < 'b', (1, 2) == (1, 2)", "(True, True)"),
            ("1e400 > 2 ** 126, 1e400 - 1e400 == 0", "(True, False)"),
            (
                "2 ** 64 + 1 > 2.0 ** 64, 2 ** 64 == 2.0 ** 64, -1 < -0.5",
                "(True, True, True)",
            ),
        ]);
        check_err(&[("x = 'a' < 1", "TypeError: '<' not supported")]);
    }

    #[test]
    fn boolean_operators_short_circuit() {
        check(&[
            ("0 or 5, 3 and 5, 1 and 0 or 2", "(5, 5, 2)"),
            ("0 and undefined, 1 or undefined", "(0, 1)"),
            ("not 0, not 3 == 4", "(True, True)"),
            ("not (tcpi_options & TCPI_OPT_ECN)", "True"),
            ("tcpi_rtt > 0 and tcpi_rttvar < 100000", "True"),
        ]);
        check_err(&[("x = 1 and undefined", "name 'undefined' is not defined")]);
    }

    #[test]
    fn overflow_is_an_error() {
        check(&[
            ("2 ** 126", &(1i128 << 126).to_string()),
            ("1 ** 10 ** 30", "1"),
        ]);
        for expr in [
            "2 ** 127",
            "1 << 127",
            "-(-2 ** 127)",
            "2 ** 126 * 4",
            "2 ** 64 // 1 * 2 ** 64",
        ] {
            check_err(&[(&format!("x = {expr}"), "OverflowError")]);
        }
        check_err(&[(
            "x = 340282366920938463463374607431768211456",
            "exceeds 128 bits",
        )]);
    }

    #[test]
    fn assert_reports_text_names_and_message() {
        assert_eq!(ok("assert tcpi_snd_cwnd == 7"), "");
        assert_eq!(
            err("\nassert tcpi_snd_cwnd == 10, tcpi_snd_cwnd\n"),
            "line 2: assertion failed: tcpi_snd_cwnd == 10 (tcpi_snd_cwnd = 7): 7"
        );
        assert_eq!(
            err("assert tcpi_options == (TCPI_OPT_SACK | TCPI_OPT_ECN), 'opts %x' % tcpi_options"),
            "line 1: assertion failed: tcpi_options == (TCPI_OPT_SACK | TCPI_OPT_ECN) \
             (tcpi_options = 7, TCPI_OPT_SACK = 2, TCPI_OPT_ECN = 8): opts 7"
        );
        assert_eq!(err("assert 1 > 2"), "line 1: assertion failed: 1 > 2");
        // The message is only evaluated when the assertion fails.
        assert_eq!(ok("assert 1, undefined"), "");
    }

    #[test]
    fn assignment_then_use() {
        assert_eq!(
            ok("srtt = tcpi_rtt; assert srtt // 1000 == 20; print(srtt)"),
            "20000\n"
        );
        assert_eq!(ok("x = 5\nx += 3\nx <<= 1\nprint(x)"), "16\n");
        assert_eq!(ok("tcpi_rtt = 1; t = tcpi_rtt, 2; print(t)"), "(1, 2)\n");
        assert_eq!(
            err("x = 1\nx = x - 2\nassert x > 0, x"),
            "line 3: assertion failed: x > 0 (x = -1): -1"
        );
    }

    #[test]
    fn print_formatting() {
        assert_eq!(ok("print(\"rtt %d\" % tcpi_rtt)"), "rtt 20000\n");
        assert_eq!(
            ok("print('%s=%u %x %X %o' % ('a', 10, 255, 255, 8))"),
            "a=10 ff FF 10\n"
        );
        assert_eq!(
            ok("print('[%5d|%-5d|%05d|%.3d]' % (42, 42, -42, 7))"),
            "[   42|42   |-0042|007]\n"
        );
        assert_eq!(
            ok("print('%.2f %f %r %.1s %%' % (2.5, -1, 'q', 'ab'))"),
            "2.50 -1.000000 'q' a %\n"
        );
        assert_eq!(ok("print('%d' % 3.9, '%ld' % -1)"), "3 -1\n");
        assert_eq!(
            ok("print('a', 1, True, None, 2.0)\nprint()"),
            "a 1 True None 2.0\n\n"
        );
        assert_eq!(
            ok("print \"TCP CA state: \",tcpi_ca_state"),
            "TCP CA state:  0\n"
        );
        check_err(&[
            ("print('%d %d' % 1)", "not enough arguments"),
            ("print('%d' % (1, 2))", "not all arguments converted"),
            ("print('%x' % 1.5)", "real number is required"),
            ("print('%q' % 1)", "unsupported format character 'q'"),
        ]);
    }

    #[test]
    fn errors_name_the_problem() {
        assert_eq!(
            err("assert tcpi_bogus == 1"),
            "line 1: NameError: name 'tcpi_bogus' is not defined"
        );
        check_err(&[
            (
                "x = 'a' + 1",
                "TypeError: unsupported operand type(s) for +: 'str' and 'int'",
            ),
            ("s = 'x' * 2", "TypeError"),
            ("if x: pass", "unsupported: `if`"),
            ("for i in x: pass", "unsupported: `for`"),
            ("while 1: pass", "unsupported: `while`"),
            ("def f(): pass", "unsupported: `def`"),
            ("import os", "unsupported: `import`"),
            ("x = lambda: 1", "unsupported: `lambda`"),
            ("x = [1, 2]", "unsupported: list literals"),
            ("x = {1: 2}", "unsupported: dict and set literals"),
            ("x = os.path", "unsupported: attribute access"),
            ("x = (1)[0]", "unsupported: subscripts"),
            ("x = 1 if 2 else 3", "unsupported: conditional expressions"),
            ("x = 1 in (1, 2)", "unsupported: the `in`"),
            ("x = f'{x}'", "unsupported: string prefix `f`"),
            (
                "a, b = 1, 2",
                "unsupported: assignment to anything but a single name",
            ),
            ("print(1, end='')", "unsupported: keyword arguments"),
            ("x = foo(1)", "unsupported: function `foo`"),
            ("x = 2 @ 3", "unsupported: the `@` operator"),
            ("x = ((1, 2), 3)", "unsupported: nested tuples"),
        ]);
    }

    #[test]
    fn syntax_errors_name_token_and_line() {
        for (code, want) in [
            (
                "pass\nassert 1 +\n",
                "line 2: syntax error at end of line: expected an expression",
            ),
            (
                "x = (1 + 2",
                "line 1: syntax error at end of block: expected `)`",
            ),
            (
                "\n\nx = 1 2",
                "line 3: syntax error at `2`: expected end of statement",
            ),
            (
                "x = 012",
                "line 1: syntax error: leading zeros in `012` (write 0o for octal)",
            ),
            (
                "x = 'abc",
                "line 1: syntax error: unterminated string literal",
            ),
            (
                "x = 1 $ 2",
                "line 1: syntax error: unexpected character '$'",
            ),
            (
                "x = 0x",
                "line 1: syntax error: invalid numeric literal `0x`",
            ),
            (
                "x = 12ab",
                "line 1: syntax error: invalid numeric literal `12ab`",
            ),
            // The whole block is parsed first, so nothing runs before the bad line.
            (
                "print(1)\nassert (",
                "line 2: syntax error at end of block: expected an expression",
            ),
        ] {
            assert_eq!(err(code), want, "{code}");
        }
    }

    #[test]
    fn blocks_lines_separators_and_comments() {
        let block = "
            assert tcpi_ca_state == TCP_CA_Open, tcpi_ca_state  # comment 'with quote
            assert tcpi_unacked == 0 ; print('#not a comment')
            x = (1 +
                 2)   # brackets join lines
            y = x + \\
                1
            assert y == 4
            assert tcpi_snd_cwnd == 10, tcpi_snd_cwnd
            assert False
        ";
        assert_eq!(
            err(block),
            "line 9: assertion failed: tcpi_snd_cwnd == 10 (tcpi_snd_cwnd = 7): 7"
        );
        assert_eq!(ok("  \n# only a comment\n;; pass ;\n\n"), "");
        assert_eq!(ok(" assert tcpi_rtt > 0 and tcpi_rttvar < 100000 "), "");
    }

    #[test]
    fn nesting_and_sizes_are_bounded() {
        let deep =
            |open: &str, close: &str, n| format!("x = {}1{}", open.repeat(n), close.repeat(n));
        assert_eq!(ok(&deep("(", ")", MAX_DEPTH - 1)), "");
        for code in [
            deep("(", ")", 100_000),
            deep("-", "", 100_000),
            deep("not ", "", 10_000),
            deep("2 ** ", "", 10_000),
            deep("abs(", ")", 10_000),
        ] {
            assert!(err(&code).contains("nested more than 64 levels"));
        }
        // Long flat chains are fine: they are stored as lists, not nested nodes.
        assert_eq!(
            ok(&format!("print({}1)", "1 + ".repeat(100_000))),
            "100001\n"
        );
        check_err(&[(
            &format!("s = 'ab'{}", "\ns = s + s".repeat(30)),
            "MemoryError",
        )]);
        check_err(&[("x = '%2000d' % 1", "over 1000")]);
    }

    /// Random programs and mutated examples must never make `run` panic or hang.
    #[test]
    fn fuzz_never_panics() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut rand = move |n: usize| {
            // xorshift64
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        let pieces = [
            "assert ",
            "print",
            "(",
            ")",
            "tcpi_rtt",
            "x",
            " = ",
            "1",
            "0x",
            "_",
            "//",
            "%",
            "**",
            " and ",
            " or ",
            "not ",
            "<=",
            "==",
            ",",
            ";",
            "\n",
            "'",
            "\"",
            "#",
            "\\",
            "-",
            "~",
            "é",
            "+=",
            "[",
            ".",
            "1e",
            "99999999999999999999999999999999999999999",
            "%d",
            "<<",
            "'%-5.2f' % ",
            ">>",
            "2 ** 200",
            "abs",
            "min",
            "max",
            "int",
            "1e400",
            " if ",
            "0",
            "/",
        ];
        let examples = [
            "+0 %{ assert tcpi_snd_cwnd == 10 }%",
            "assert tcpi_options == (TCPI_OPT_TIMESTAMPS | TCPI_OPT_SACK | TCPI_OPT_ECN)",
            "assert tcpi_ca_state == TCP_CA_Open, tcpi_ca_state\nassert tcpi_unacked == 0\n",
            "assert 200000 <= tcpi_rto <= 250000, tcpi_rto",
            "print(\"rtt %d\" % tcpi_rtt)",
            "assert not (tcpi_options & TCPI_OPT_SACK)",
            "srtt = tcpi_rtt; assert srtt // 1000 == 20",
            "print('%-8s|%08.3f|%o' % ('a', -1.5, 8), 1 / 3, min((1, 2.5)), -7 % 3)",
        ];
        for round in 0..20_000 {
            let mut chars: Vec<char> = match round % 2 {
                0 => examples[rand(examples.len())].chars().collect(),
                _ => Vec::new(),
            };
            for _ in 0..1 + rand(8) {
                let at = rand(chars.len() + 1);
                match rand(4) {
                    0 if at < chars.len() => {
                        chars.drain(at..(at + 1 + rand(4)).min(chars.len()));
                    }
                    1 if at < chars.len() => chars[at] = char::from(32 + rand(95) as u8),
                    _ => drop(chars.splice(at..at, pieces[rand(pieces.len())].chars())),
                }
            }
            let _ = run(&chars.into_iter().collect::<String>(), &names);
        }
    }
}
