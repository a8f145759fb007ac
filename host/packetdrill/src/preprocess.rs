//! `#ifdef NAME` / `#ifndef NAME` / `#else` / `#endif` line directives.
//!
//! nplab's lexer once recognised only `#ifdef <OS>` ... `#endif` blocks (OS names Linux,
//! FreeBSD, NetBSD, OpenBSD, no nesting); its later config registers the OS name as a
//! define. We implement the general C-preprocessor form driven by the caller's defines:
//! nesting allowed, `#else` allowed once per block. Directive lines and lines of inactive
//! branches are replaced by empty lines so line numbers stay those of the original file.
//!
//! A `#` only starts a directive at the beginning of a line (after blanks) that is not
//! inside a `/* */` comment, a `%{ }%` code block (Python comments start with `#`), a
//! backquoted command or a string. Any other `#` line is left for the lexer to reject.

use std::collections::HashSet;

use crate::error::ParseError;

/// The multi-line constructs a directive must not be recognised inside.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Context {
    Normal,
    BlockComment,
    Code,
    BackQuote,
    Str,
}

/// One open `#ifdef`/`#ifndef`.
struct Conditional {
    line: u32,
    directive: &'static str,
    /// Whether the enclosing text is active.
    parent_active: bool,
    /// Whether the condition held.
    condition: bool,
    in_else: bool,
}

impl Conditional {
    fn active(&self) -> bool {
        self.parent_active && (self.condition != self.in_else)
    }
}

/// Applies the directives; `defined` holds the symbol names that count as defined.
pub(crate) fn preprocess(
    path: &str,
    text: &str,
    defined: &HashSet<String>,
) -> Result<String, ParseError> {
    let mut out = String::with_capacity(text.len());
    let mut stack: Vec<Conditional> = Vec::new();
    let mut context = Context::Normal;
    let mut line_no: u32 = 0;

    for raw_line in text.split_inclusive('\n') {
        line_no = line_no.saturating_add(1);
        let (body, ending) = split_line_ending(raw_line);
        let active = stack.last().is_none_or(Conditional::active);

        if context == Context::Normal {
            if let Some(directive) = Directive::parse(body) {
                apply_directive(path, line_no, directive, defined, &mut stack)?;
                out.push_str(ending);
                continue;
            }
        }
        context = scan_context(body, context);
        if active {
            out.push_str(body);
        }
        out.push_str(ending);
    }

    if let Some(open) = stack.last() {
        return Err(ParseError::syntax(
            path,
            open.line,
            open.directive,
            format!("unterminated {} (missing #endif)", open.directive),
        ));
    }
    Ok(out)
}

fn split_line_ending(line: &str) -> (&str, &str) {
    let body = line.trim_end_matches(['\n', '\r']);
    let ending = line.get(body.len()..).unwrap_or("");
    (body, ending)
}

enum Directive<'a> {
    IfDef {
        name: Option<&'a str>,
        negated: bool,
    },
    Else,
    EndIf,
}

impl<'a> Directive<'a> {
    /// Recognises the four directives; anything else is not a directive.
    fn parse(line: &'a str) -> Option<Directive<'a>> {
        let rest = line.trim_start().strip_prefix('#')?;
        let mut words = rest.split_whitespace();
        let keyword = words.next()?;
        let name = words.next().filter(|w| !w.starts_with("//"));
        match keyword {
            "ifdef" => Some(Directive::IfDef {
                name,
                negated: false,
            }),
            "ifndef" => Some(Directive::IfDef {
                name,
                negated: true,
            }),
            "else" => Some(Directive::Else),
            "endif" => Some(Directive::EndIf),
            _ => None,
        }
    }
}

fn apply_directive(
    path: &str,
    line: u32,
    directive: Directive<'_>,
    defined: &HashSet<String>,
    stack: &mut Vec<Conditional>,
) -> Result<(), ParseError> {
    match directive {
        Directive::IfDef { name, negated } => {
            let keyword = if negated { "#ifndef" } else { "#ifdef" };
            let Some(name) = name else {
                return Err(ParseError::syntax(
                    path,
                    line,
                    keyword,
                    format!("{keyword} needs a symbol name"),
                ));
            };
            let parent_active = stack.last().is_none_or(Conditional::active);
            stack.push(Conditional {
                line,
                directive: keyword,
                parent_active,
                condition: defined.contains(name) != negated,
                in_else: false,
            });
        }
        Directive::Else => match stack.last_mut() {
            Some(open) if !open.in_else => open.in_else = true,
            Some(_) => return Err(ParseError::syntax(path, line, "#else", "#else after #else")),
            None => {
                return Err(ParseError::syntax(
                    path,
                    line,
                    "#else",
                    "#else without #ifdef",
                ))
            }
        },
        Directive::EndIf => {
            if stack.pop().is_none() {
                return Err(ParseError::syntax(
                    path,
                    line,
                    "#endif",
                    "#endif without #ifdef",
                ));
            }
        }
    }
    Ok(())
}

/// Follows which multi-line construct (if any) is open at the end of `line`.
fn scan_context(line: &str, mut context: Context) -> Context {
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        context = match context {
            Context::Normal => match c {
                '/' if chars.peek() == Some(&'/') => return Context::Normal,
                '/' if chars.peek() == Some(&'*') => {
                    chars.next();
                    Context::BlockComment
                }
                '%' if chars.peek() == Some(&'{') => {
                    chars.next();
                    Context::Code
                }
                '`' => Context::BackQuote,
                '"' => Context::Str,
                _ => Context::Normal,
            },
            Context::BlockComment => {
                if c == '*' && chars.peek() == Some(&'/') {
                    chars.next();
                    Context::Normal
                } else {
                    Context::BlockComment
                }
            }
            Context::Code => {
                if c == '}' && chars.peek() == Some(&'%') {
                    chars.next();
                    Context::Normal
                } else {
                    Context::Code
                }
            }
            Context::BackQuote | Context::Str => {
                let close = if context == Context::BackQuote {
                    '`'
                } else {
                    '"'
                };
                if c == '\\' {
                    chars.next();
                    context
                } else if c == close {
                    Context::Normal
                } else {
                    context
                }
            }
        };
    }
    context
}
