//! The typed AST: the contract between this parser and a runner.
//!
//! Every event carries the line of its time token, and every expression its own line,
//! so a runner can report `SCRIPT:LINE: error ...` for whatever part fails. Values a
//! script does not give are `None`, never a 0 that would be indistinguishable from a
//! written 0.

mod expr;
mod flags;
mod packet;
mod tcp_options;

pub use expr::{Expr, ExprKind, StructField};
pub use flags::{AceNotation, TcpFlags};
pub use packet::{
    Direction, EcnSpec, IcmpSpec, IpSpec, PacketBody, PacketEvent, PortPair, QuotedSegment,
    SeqSpec, TcpSegmentSpec,
};
pub use tcp_options::{
    AccEcnField, AccEcnOrder, AccEcnSpec, Md5Spec, SackBlock, TcpOptionSpec, TcpOptionsSpec,
    TimestampSpec, MAX_TCP_OPTION_BYTES, MD5_DIGEST_LEN,
};

/// Microseconds of script time.
pub type Micros = u64;

/// A parsed script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Script {
    /// The path given to the parser (for messages).
    pub path: String,
    /// `--name=value` / `--name` lines at the top, in order.
    pub options: Vec<OptionLine>,
    /// A command in backquotes without a time before the first event: run once before
    /// the test starts (packetdrill `init_command`).
    pub init_command: Option<ShellCommand>,
    pub events: Vec<Event>,
    /// A command in backquotes without a time after the last event: run at the end, even
    /// when the test fails (packetdrill `cleanup_command`).
    pub cleanup_command: Option<ShellCommand>,
}

impl Script {
    /// The last option line with this name (a later line overrides an earlier one).
    pub fn option(&self, name: &str) -> Option<&OptionLine> {
        self.options.iter().rev().find(|o| o.name == name)
    }
}

/// `--name=value` or `--name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionLine {
    pub line: u32,
    /// The name without the leading `--`.
    pub name: String,
    /// The value as written after `=` (quotes around a whole value removed).
    pub value: Option<String>,
}

/// One timed line of the script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Line of the time token.
    pub line: u32,
    pub time: TimeSpec,
    pub kind: EventKind,
}

/// When an event happens, as written, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeSpec {
    /// `0.100`: since the start of the test.
    Absolute(Micros),
    /// `+0.1`: after the previous event.
    Relative(Micros),
    /// `*`: any time (outbound packets only).
    Any,
    /// `0.1~0.2`: at some time in this window (outbound packets only).
    AbsoluteRange { start: Micros, end: Micros },
    /// `+0.1~+0.2`: in this window after the previous event (outbound packets only).
    RelativeRange { start: Micros, end: Micros },
}

/// What happens at an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    Packet(PacketEvent),
    Syscall(SyscallEvent),
    /// A timed shell command: ``+0 `sysctl -w net.inet.tcp.x=1` ``.
    Command(ShellCommand),
    /// A timed code block: `+0 %{ assert tcpi_snd_cwnd == 10 }%`.
    Code(CodeBlock),
}

/// The text between backquotes, raw (backslash escapes kept as written).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShellCommand {
    /// Line of the opening backquote.
    pub line: u32,
    pub command: String,
}

/// The text between `%{` and `}%`, verbatim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeBlock {
    /// Line of `%{`.
    pub line: u32,
    pub text: String,
}

impl CodeBlock {
    /// The text with spaces and tabs stripped at both ends, as packetdrill hands it to
    /// Python.
    pub fn trimmed(&self) -> &str {
        self.text.trim_matches([' ', '\t'])
    }
}

/// `[...END] name(args) = result [ERRNO [(text)]] [(note)]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyscallEvent {
    pub name: String,
    pub args: Vec<Expr>,
    /// Usually an integer or `...` (don't check).
    pub result: Expr,
    /// `EINPROGRESS (Operation now in progress)`.
    pub errno: Option<ErrnoSpec>,
    /// A parenthesised note after the result without an errno, e.g. `(flags O_RDWR)`.
    pub note: Option<String>,
    /// `START...END`: the call blocks until END. END uses the same time base as the
    /// event's start: when the start is relative (`+0...0.1`), END is relative to the
    /// same previous event.
    pub blocking_end: Option<Micros>,
}

/// The expected `errno` of a failing call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrnoSpec {
    /// e.g. `EINPROGRESS`.
    pub name: String,
    /// e.g. `Operation now in progress` (packetdrill prints it but does not compare it).
    pub text: Option<String>,
}
