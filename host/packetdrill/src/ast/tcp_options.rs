//! TCP options as written between `<` and `>`, kept in order so the runner can build
//! (or compare) them byte for byte, padding included.

/// The options part of a TCP packet line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TcpOptionsSpec {
    /// `<...>`: any options (only allowed on outbound packets; not checked).
    Any,
    /// Exactly these options in this order. Empty when the line has no `<...>`, which
    /// means the packet carries no options (packetdrill checks that too).
    List(Vec<TcpOptionSpec>),
}

impl TcpOptionsSpec {
    /// No options at all.
    pub fn none() -> TcpOptionsSpec {
        TcpOptionsSpec::List(Vec::new())
    }

    /// Bytes these options take on the wire (`None` for [`TcpOptionsSpec::Any`]).
    pub fn wire_len(&self) -> Option<usize> {
        match self {
            TcpOptionsSpec::Any => None,
            TcpOptionsSpec::List(list) => Some(list.iter().map(TcpOptionSpec::wire_len).sum()),
        }
    }
}

/// One TCP option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TcpOptionSpec {
    /// `eol` (kind 0).
    Eol,
    /// `nop` (kind 1).
    Nop,
    /// `mss N` (kind 2).
    Mss(u16),
    /// `wscale N` (kind 3); `wscale *` (Google) gives `None`: any shift count.
    WindowScale(Option<u8>),
    /// `sackOK` (kind 4).
    SackPermitted,
    /// `sack L:R L:R ...` (kind 5); edges as written (relative to the ISN).
    Sack(Vec<SackBlock>),
    /// `TS val V ecr E` (kind 8).
    Timestamp(TimestampSpec),
    /// `FO [cookie]` (kind 34, RFC 7413); an empty cookie is a cookie request.
    FastOpen(Vec<u8>),
    /// Experimental fast open (kind 254, ExID 0xF989): Google `FOEXP [cookie]`,
    /// nplab `EXP-FO [cookie]`.
    FastOpenExp(Vec<u8>),
    /// TCP MD5 signature (kind 19, RFC 2385).
    Md5(Md5Spec),
    /// AccECN option (kind 172/174, or experimental kind 254 with ExID 0xACC0/0xACC1).
    AccEcn(AccEcnSpec),
    /// nplab `exp-tarr [R]`: TCP ACK rate request (kind 254, ExID 0x00AC).
    AckRateRequest(Option<u16>),
    /// plugtcp extension `opt KIND [HEXBYTES]`: any other option, raw.
    Raw { kind: u8, data: Vec<u8> },
}

impl TcpOptionSpec {
    /// Bytes this option takes on the wire.
    pub fn wire_len(&self) -> usize {
        match self {
            TcpOptionSpec::Eol | TcpOptionSpec::Nop => 1,
            TcpOptionSpec::Mss(_) => 4,
            TcpOptionSpec::WindowScale(_) => 3,
            TcpOptionSpec::SackPermitted => 2,
            TcpOptionSpec::Sack(blocks) => 2 + 8 * blocks.len(),
            TcpOptionSpec::Timestamp(_) => 10,
            TcpOptionSpec::FastOpen(cookie) => 2 + cookie.len(),
            TcpOptionSpec::FastOpenExp(cookie) => 4 + cookie.len(),
            TcpOptionSpec::Md5(Md5Spec::Digest(digest)) => 2 + digest.len(),
            TcpOptionSpec::Md5(_) => 2 + MD5_DIGEST_LEN,
            TcpOptionSpec::AccEcn(spec) => {
                let header = if spec.experimental { 4 } else { 2 };
                header + 3 * spec.counters.len()
            }
            TcpOptionSpec::AckRateRequest(rate) => 4 + usize::from(rate.is_some()),
            TcpOptionSpec::Raw { kind, data } if *kind <= 1 && data.is_empty() => 1,
            TcpOptionSpec::Raw { data, .. } => 2 + data.len(),
        }
    }
}

/// Length of an MD5 digest in bytes.
pub const MD5_DIGEST_LEN: usize = 16;

/// Most bytes of options a TCP header can hold.
pub const MAX_TCP_OPTION_BYTES: usize = 40;

/// One SACK block: `left:right`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SackBlock {
    pub left: u32,
    pub right: u32,
}

/// `TS val V ecr E`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimestampSpec {
    /// `None` for nplab's `val ...`: do not check TSval.
    pub val: Option<u32>,
    pub ecr: u32,
    /// nplab `ecr N!`: the echo reply is absolute, not relative to the peer's first TSval.
    pub ecr_absolute: bool,
}

/// The MD5 option's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Md5Spec {
    /// plugtcp extension `md5`: an 18-byte option whose 16-byte digest the runner fills in
    /// (inbound) or does not compare (outbound).
    Placeholder,
    /// nplab `md5 valid`: a digest computed with `--tcp_md5_secret` (must verify).
    Valid,
    /// `md5 invalid`: a digest that must not verify.
    Invalid,
    /// Google `md5 HEX`: these digest bytes exactly (at most 16).
    Digest(Vec<u8>),
}

/// Which of the two AccECN option kinds (field order) is meant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccEcnOrder {
    /// AccECN0 (kind 172): EE0B, ECEB, EE1B.
    Order0,
    /// AccECN1 (kind 174): EE1B, ECEB, EE0B.
    Order1,
}

impl AccEcnOrder {
    /// The counter names in wire order for this kind.
    pub fn field_order(self) -> [AccEcnField; 3] {
        match self {
            AccEcnOrder::Order0 => [AccEcnField::Ee0b, AccEcnField::Eceb, AccEcnField::Ee1b],
            AccEcnOrder::Order1 => [AccEcnField::Ee1b, AccEcnField::Eceb, AccEcnField::Ee0b],
        }
    }
}

/// The three AccECN byte counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccEcnField {
    /// Bytes received with ECT(0).
    Ee0b,
    /// Bytes received with CE.
    Eceb,
    /// Bytes received with ECT(1).
    Ee1b,
}

/// An AccECN option: nplab `AccECN0 EE0B n ECEB n EE1B n`, Google `ECN e0b n ceb n e1b n`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccEcnSpec {
    pub order: AccEcnOrder,
    /// The experimental encoding (kind 254 with an ExID), nplab `exp-AccECN0`.
    pub experimental: bool,
    /// 0 to 3 counters (24-bit) in wire order, named by [`AccEcnOrder::field_order`].
    pub counters: Vec<u32>,
}

impl AccEcnSpec {
    /// The value of one counter, if present.
    pub fn counter(&self, field: AccEcnField) -> Option<u32> {
        let position = self.order.field_order().iter().position(|f| *f == field)?;
        self.counters.get(position).copied()
    }
}
