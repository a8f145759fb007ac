//! Parse errors, displayed exactly the way packetdrill prints them so that tools and
//! people that read packetdrill output can read ours.

use std::fmt;

/// A script that could not be parsed.
///
/// Displays as packetdrill does:
/// `FILE:LINE: parse error at 'TOKEN': MESSAGE` or `FILE:LINE: semantic error: MESSAGE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// The path given to [`crate::parse_script`], used only for messages.
    pub path: String,
    /// 1-based line in the original file (before `#ifdef` processing).
    pub line: u32,
    /// What went wrong.
    pub kind: ParseErrorKind,
}

/// The three ways a script can be rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseErrorKind {
    /// The text does not follow the grammar; `token` is the offending token as written
    /// (empty at end of file).
    Syntax { token: String, message: String },
    /// The text follows the grammar but a value is invalid (out of range, inconsistent).
    Semantic { message: String },
    /// A construct packetdrill has but this crate deliberately does not parse (SCTP,
    /// UDP, UDPLite, GRE, MPLS, PSP, IP-in-IP). Displayed as a parse error so a runner
    /// can still print it verbatim, but distinguishable so it can skip the script.
    Unsupported { token: String, construct: String },
}

impl ParseError {
    pub(crate) fn syntax(path: &str, line: u32, token: &str, message: impl Into<String>) -> Self {
        ParseError {
            path: path.to_string(),
            line,
            kind: ParseErrorKind::Syntax {
                token: token.to_string(),
                message: message.into(),
            },
        }
    }

    pub(crate) fn semantic(path: &str, line: u32, message: impl Into<String>) -> Self {
        ParseError {
            path: path.to_string(),
            line,
            kind: ParseErrorKind::Semantic {
                message: message.into(),
            },
        }
    }

    pub(crate) fn unsupported(path: &str, line: u32, token: &str, construct: &str) -> Self {
        ParseError {
            path: path.to_string(),
            line,
            kind: ParseErrorKind::Unsupported {
                token: token.to_string(),
                construct: construct.to_string(),
            },
        }
    }

    /// True for constructs this parser recognises but does not support (e.g. SCTP).
    pub fn is_unsupported(&self) -> bool {
        matches!(self.kind, ParseErrorKind::Unsupported { .. })
    }

    /// The message part, without the `FILE:LINE:` prefix.
    pub fn message(&self) -> String {
        match &self.kind {
            ParseErrorKind::Syntax { message, .. } => message.clone(),
            ParseErrorKind::Semantic { message } => message.clone(),
            ParseErrorKind::Unsupported { construct, .. } => unsupported_message(construct),
        }
    }
}

fn unsupported_message(construct: &str) -> String {
    format!("unsupported: {construct} (plugtcp-packetdrill parses TCP scripts only)")
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ParseErrorKind::Syntax { token, message } => write!(
                f,
                "{}:{}: parse error at '{}': {}",
                self.path, self.line, token, message
            ),
            ParseErrorKind::Semantic { message } => {
                write!(
                    f,
                    "{}:{}: semantic error: {}",
                    self.path, self.line, message
                )
            }
            ParseErrorKind::Unsupported { token, construct } => write!(
                f,
                "{}:{}: parse error at '{}': {}",
                self.path,
                self.line,
                token,
                unsupported_message(construct)
            ),
        }
    }
}

impl std::error::Error for ParseError {}
