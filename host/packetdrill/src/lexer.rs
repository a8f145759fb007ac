//! Turns script text into tokens, following packetdrill's flex rules closely:
//! longest match, `-` glued to digits makes a negative number, `0x` makes a hex
//! number, a run of letters/digits/underscores that is not a number is a word.
//!
//! Unlike flex we keep keywords as plain words and let the parser match them by
//! context, and every token remembers its byte span so the parser can tell whether two
//! tokens touch (TCP flags such as `P.6` or `5.` are several tokens written together).

use crate::error::ParseError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenKind {
    /// `[A-Za-z0-9_]+` that is not a number (plus a few dashed keywords).
    Word,
    /// `-?[0-9]+`.
    Integer,
    /// `0x[0-9a-fA-F]+`.
    HexInteger,
    /// `-?[0-9]*.[0-9]+`.
    Float,
    /// `a.b.c.d`.
    Ipv4,
    /// `"..."`; the text includes the quotes.
    Str,
    /// `` `...` ``; the text includes the backquotes.
    BackQuoted,
    /// `%{ ... }%`; the text includes the delimiters.
    Code,
    /// `...`.
    Ellipsis,
    /// `--name` or `--name=value`.
    OptionFlag,
    /// Any other single character.
    Punct(char),
    Eof,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Token {
    pub kind: TokenKind,
    /// The source text of the token.
    pub text: String,
    /// Line of the first character.
    pub line: u32,
    /// Byte offsets in the (preprocessed) source.
    pub start: usize,
    pub end: usize,
}

impl Token {
    pub fn is_punct(&self, c: char) -> bool {
        self.kind == TokenKind::Punct(c)
    }

    pub fn is_word(&self, word: &str) -> bool {
        self.kind == TokenKind::Word && self.text == word
    }

    /// The content between the delimiters of a string, command or code block.
    pub fn inner_text(&self) -> &str {
        let (open, close) = match self.kind {
            TokenKind::Str => ("\"", "\""),
            TokenKind::BackQuoted => ("`", "`"),
            TokenKind::Code => ("%{", "}%"),
            _ => ("", ""),
        };
        self.text
            .strip_prefix(open)
            .and_then(|t| t.strip_suffix(close))
            .unwrap_or("")
    }
}

/// Words containing `-` that are single keywords (nplab spellings).
const DASHED_WORDS: &[&str] = &[
    "EXP-FO",
    "exp-FO",
    "exp-AccECN0",
    "exp-AccECN1",
    "EXP-AccECN0",
    "EXP-AccECN1",
    "exp-tarr",
    "I-DATA",
];

/// Tokenizes the whole text; the result always ends with an [`TokenKind::Eof`] token.
pub(crate) fn tokenize(path: &str, src: &str) -> Result<Vec<Token>, ParseError> {
    let mut lexer = Lexer {
        path,
        src,
        pos: 0,
        line: 1,
        tokens: Vec::new(),
    };
    lexer.run()?;
    Ok(lexer.tokens)
}

struct Lexer<'a> {
    path: &'a str,
    src: &'a str,
    pos: usize,
    line: u32,
    tokens: Vec<Token>,
}

fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

impl<'a> Lexer<'a> {
    fn rest(&self) -> &'a str {
        self.src.get(self.pos..).unwrap_or("")
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn peek_at(&self, n: usize) -> Option<char> {
        self.rest().chars().nth(n)
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        if c == '\n' {
            self.line = self.line.saturating_add(1);
        }
        Some(c)
    }

    fn bump_while(&mut self, pred: impl Fn(char) -> bool) {
        while self.peek().is_some_and(&pred) {
            self.bump();
        }
    }

    fn push(&mut self, kind: TokenKind, start: usize, line: u32) {
        let text = self.src.get(start..self.pos).unwrap_or("").to_string();
        self.tokens.push(Token {
            kind,
            text,
            line,
            start,
            end: self.pos,
        });
    }

    fn error(&self, line: u32, token: &str, message: &str) -> ParseError {
        ParseError::syntax(self.path, line, token, message)
    }

    fn run(&mut self) -> Result<(), ParseError> {
        while let Some(c) = self.peek() {
            let start = self.pos;
            let line = self.line;
            let next = self.peek_at(1);
            match c {
                ' ' | '\t' | '\n' | '\r' | '\x0b' | '\x0c' => {
                    self.bump();
                }
                '/' if next == Some('/') => self.bump_while(|c| c != '\n'),
                '/' if next == Some('*') => self.block_comment(line)?,
                '%' if next == Some('{') => self.delimited("%{", "}%", TokenKind::Code, line)?,
                '"' => self.quoted('"', TokenKind::Str, line)?,
                '`' => self.quoted('`', TokenKind::BackQuoted, line)?,
                '-' if next == Some('-') && self.peek_at(2).is_some_and(is_word_char) => {
                    self.option_flag(start, line)
                }
                '.' if next == Some('.') && self.peek_at(2) == Some('.') => {
                    for _ in 0..3 {
                        self.bump();
                    }
                    self.push(TokenKind::Ellipsis, start, line);
                }
                _ if self.starts_number() => self.number(start, line),
                _ if is_word_char(c) => self.word(start, line),
                _ => {
                    self.bump();
                    self.push(TokenKind::Punct(c), start, line);
                }
            }
        }
        let end = self.pos;
        self.tokens.push(Token {
            kind: TokenKind::Eof,
            text: String::new(),
            line: self.line,
            start: end,
            end,
        });
        Ok(())
    }

    fn block_comment(&mut self, line: u32) -> Result<(), ParseError> {
        match self.rest().get(2..).and_then(|r| r.find("*/")) {
            Some(offset) => {
                let end = self.pos + 2 + offset + 2;
                while self.pos < end && self.bump().is_some() {}
                Ok(())
            }
            None => Err(self.error(line, "/*", "unterminated comment (missing '*/')")),
        }
    }

    fn delimited(
        &mut self,
        open: &str,
        close: &str,
        kind: TokenKind,
        line: u32,
    ) -> Result<(), ParseError> {
        let start = self.pos;
        match self.rest().get(open.len()..).and_then(|r| r.find(close)) {
            Some(offset) => {
                let end = self.pos + open.len() + offset + close.len();
                while self.pos < end && self.bump().is_some() {}
                self.push(kind, start, line);
                Ok(())
            }
            None => Err(self.error(
                line,
                open,
                &format!("unterminated code block (missing '{close}')"),
            )),
        }
    }

    /// A string or command: up to the closing delimiter, a backslash escaping the next
    /// character (kept in the text, as packetdrill does).
    fn quoted(&mut self, delimiter: char, kind: TokenKind, line: u32) -> Result<(), ParseError> {
        let start = self.pos;
        self.bump();
        loop {
            match self.bump() {
                Some('\\') => {
                    self.bump();
                }
                Some(c) if c == delimiter => {
                    self.push(kind, start, line);
                    return Ok(());
                }
                Some(_) => {}
                None => {
                    let what = if kind == TokenKind::Str {
                        "unterminated string (missing '\"')"
                    } else {
                        "unterminated command (missing '`')"
                    };
                    return Err(self.error(line, &delimiter.to_string(), what));
                }
            }
        }
    }

    /// `--name` or `--name=value`; the value runs to the next blank, except inside
    /// quotes, so `--define=CC="reno"` and `--tolerance_percent=12.5` stay whole.
    fn option_flag(&mut self, start: usize, line: u32) {
        self.bump();
        self.bump();
        self.bump_while(is_word_char);
        if self.peek() == Some('=') {
            self.bump();
            while let Some(c) = self.peek() {
                if c.is_whitespace() {
                    break;
                }
                if c == '"' || c == '`' {
                    self.bump();
                    while let Some(inner) = self.bump() {
                        if inner == '\\' {
                            self.bump();
                        } else if inner == c || inner == '\n' {
                            break;
                        }
                    }
                } else {
                    self.bump();
                }
            }
        }
        self.push(TokenKind::OptionFlag, start, line);
    }

    fn starts_number(&self) -> bool {
        let digit = |c: Option<char>| c.is_some_and(|c| c.is_ascii_digit());
        match self.peek() {
            Some(c) if c.is_ascii_digit() => true,
            Some('.') => digit(self.peek_at(1)),
            Some('-') => {
                digit(self.peek_at(1)) || (self.peek_at(1) == Some('.') && digit(self.peek_at(2)))
            }
            _ => false,
        }
    }

    fn number(&mut self, start: usize, line: u32) {
        let negative = self.peek() == Some('-');
        if !negative && self.peek().is_some_and(|c| c.is_ascii_digit()) {
            // A run like `1234abcd` or `0x1f` is a word or a hex number, not digits.
            let run: String = self
                .rest()
                .chars()
                .take_while(|&c| is_word_char(c))
                .collect();
            if !run.chars().all(|c| c.is_ascii_digit()) {
                self.bump_while(is_word_char);
                let hex = run
                    .strip_prefix("0x")
                    .is_some_and(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_hexdigit()));
                let kind = if hex {
                    TokenKind::HexInteger
                } else {
                    TokenKind::Word
                };
                self.push(kind, start, line);
                return;
            }
        }
        if negative {
            self.bump();
        }
        self.bump_while(|c| c.is_ascii_digit());
        let fraction_follows =
            self.peek() == Some('.') && self.peek_at(1).is_some_and(|c| c.is_ascii_digit());
        if !fraction_follows {
            self.push(TokenKind::Integer, start, line);
            return;
        }
        if !negative && self.ipv4_follows(start) {
            return;
        }
        self.bump();
        self.bump_while(|c| c.is_ascii_digit());
        self.push(TokenKind::Float, start, line);
    }

    /// At `a.` of a possible `a.b.c.d`: consumes and pushes it if it is one.
    fn ipv4_follows(&mut self, start: usize) -> bool {
        let text = self.src.get(start..).unwrap_or("");
        let mut groups = 0;
        let mut len = 0;
        let mut digits_in_group = 0;
        for c in text.chars() {
            if c.is_ascii_digit() {
                digits_in_group += 1;
            } else if c == '.' && digits_in_group > 0 && groups < 3 {
                groups += 1;
                digits_in_group = 0;
            } else {
                break;
            }
            len += 1;
        }
        if groups != 3 || digits_in_group == 0 {
            return false;
        }
        let line = self.line;
        while self.pos < start + len && self.bump().is_some() {}
        self.push(TokenKind::Ipv4, start, line);
        true
    }

    fn word(&mut self, start: usize, line: u32) {
        self.bump_while(is_word_char);
        let word = self.src.get(start..self.pos).unwrap_or("");
        if self.peek() == Some('-') {
            let after: String = self
                .rest()
                .chars()
                .skip(1)
                .take_while(|&c| is_word_char(c))
                .collect();
            let dashed = format!("{word}-{after}");
            if DASHED_WORDS.contains(&dashed.as_str()) {
                self.bump();
                self.bump_while(is_word_char);
            }
        }
        self.push(TokenKind::Word, start, line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(src: &str) -> Vec<(TokenKind, String)> {
        tokenize("t", src)
            .unwrap()
            .into_iter()
            .map(|t| (t.kind, t.text))
            .collect()
    }

    #[test]
    fn numbers_words_and_punctuation() {
        use TokenKind::*;
        assert_eq!(
            kinds("1:1001(1000) -1 0x1f .5 1a 192.0.2.1 0...0.1 P.6 5."),
            vec![
                (Integer, "1".into()),
                (Punct(':'), ":".into()),
                (Integer, "1001".into()),
                (Punct('('), "(".into()),
                (Integer, "1000".into()),
                (Punct(')'), ")".into()),
                (Integer, "-1".into()),
                (HexInteger, "0x1f".into()),
                (Float, ".5".into()),
                (Word, "1a".into()),
                (Ipv4, "192.0.2.1".into()),
                (Integer, "0".into()),
                (Ellipsis, "...".into()),
                (Float, "0.1".into()),
                (Word, "P".into()),
                (Float, ".6".into()),
                (Integer, "5".into()),
                (Punct('.'), ".".into()),
                (Eof, "".into()),
            ]
        );
    }

    #[test]
    fn options_comments_and_delimited_text() {
        use TokenKind::*;
        let toks = kinds("--a=1 --define=CC=\"x y\" // c\n/* d\n */ `ls` %{ x }% \"s\" exp-tarr");
        assert_eq!(
            toks,
            vec![
                (OptionFlag, "--a=1".into()),
                (OptionFlag, "--define=CC=\"x y\"".into()),
                (BackQuoted, "`ls`".into()),
                (Code, "%{ x }%".into()),
                (Str, "\"s\"".into()),
                (Word, "exp-tarr".into()),
                (Eof, "".into()),
            ]
        );
    }

    #[test]
    fn lines_are_counted_from_token_starts() {
        let toks = tokenize("t", "a\n`x\ny`\nb").unwrap();
        let lines: Vec<u32> = toks.iter().map(|t| t.line).collect();
        assert_eq!(lines, vec![1, 2, 4, 4]);
    }
}
