//! System call argument and result expressions.
//!
//! Symbols (`SOL_SOCKET`, `O_NONBLOCK`, `POLLIN`, ...) are kept as names: the runner maps
//! them. Struct literals are one generic node covering every brace form the grammars
//! have (linger, pollfd, iovec, msghdr, sockaddr, tcp_function_set, timeval, epoll...).

/// An expression with the line it starts on (for `SCRIPT:LINE: error ...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expr {
    pub line: u32,
    pub kind: ExprKind,
}

impl Expr {
    pub fn new(line: u32, kind: ExprKind) -> Expr {
        Expr { line, kind }
    }

    /// The integer value if this is an integer literal.
    pub fn as_int(&self) -> Option<i64> {
        match self.kind {
            ExprKind::Integer { value, .. } => Some(value),
            _ => None,
        }
    }

    /// The name if this is a symbol.
    pub fn as_symbol(&self) -> Option<&str> {
        match &self.kind {
            ExprKind::Symbol(name) => Some(name),
            _ => None,
        }
    }

    /// True for `...`.
    pub fn is_ellipsis(&self) -> bool {
        matches!(self.kind, ExprKind::Ellipsis)
    }
}

/// The expression forms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExprKind {
    /// `...`: don't care (argument filled in by the runner, result not checked).
    Ellipsis,
    /// `1000`, `-1`, `0x02`; `hex` records the spelling for printing.
    Integer { value: i64, hex: bool },
    /// A bare name: `SOL_SOCKET`, `EINPROGRESS`, `AF_INET`.
    Symbol(String),
    /// `"text"`, raw as written (escapes are not interpreted, as in packetdrill);
    /// `"text"...` sets `ellipsis` (only the prefix is given).
    Str { value: String, ellipsis: bool },
    /// nplab `NULL`.
    Null,
    /// `A|B|C`: bitwise OR of two or more operands.
    BitOr(Vec<Expr>),
    /// `[a, b]`: an array (also used for a pointer to a single value, `[1]`).
    List(Vec<Expr>),
    /// `{name=value, ...}` or `{value, value}`: a struct literal.
    Struct(Vec<StructField>),
    /// `htons(N)`.
    Htons(Box<Expr>),
    /// `htonl(N)`.
    Htonl(Box<Expr>),
    /// `inet_addr("192.0.2.1")`.
    InetAddr(String),
    /// Google `inet6_addr("2001:db8::1")`.
    Inet6Addr(String),
}

/// One field of a struct literal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StructField {
    pub line: u32,
    /// `None` for positional fields (`{..., 1000}` iovec shorthand, Google `{a, b}`).
    pub name: Option<String>,
    /// The parenthesised length of msghdr-style fields: `msg_iov(1)=[...]`,
    /// `msg_name(...)=...`, `msg_control(0)=[]`, `sf_hdtr_headers(1)=[...]`.
    pub len: Option<Expr>,
    pub value: Expr,
}
