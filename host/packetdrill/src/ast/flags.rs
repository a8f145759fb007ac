//! The TCP flags bitset and its packetdrill notation.
//!
//! packetdrill writes flags as letters in the style of tcpdump: `S` SYN, `F` FIN, `R`
//! RST, `P` PSH, `.` ACK, `U` URG, `E` ECE, `W` CWR and `A` AE (AccECN), `-` for none.
//! AccECN scripts may instead give the 3-bit ACE field (AE,CWR,ECE) as one digit 0-7
//! (`P5.`, `.6`); a digit may not be combined with `E`, `W` or `A`.

use std::fmt;
use std::ops::{BitOr, BitOrAssign};

/// TCP header flags, with bit values as on the wire (AE is bit 8, the former NS bit).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TcpFlags(u16);

impl TcpFlags {
    pub const FIN: TcpFlags = TcpFlags(0x001);
    pub const SYN: TcpFlags = TcpFlags(0x002);
    pub const RST: TcpFlags = TcpFlags(0x004);
    pub const PSH: TcpFlags = TcpFlags(0x008);
    pub const ACK: TcpFlags = TcpFlags(0x010);
    pub const URG: TcpFlags = TcpFlags(0x020);
    pub const ECE: TcpFlags = TcpFlags(0x040);
    pub const CWR: TcpFlags = TcpFlags(0x080);
    pub const AE: TcpFlags = TcpFlags(0x100);

    const ALL_BITS: u16 = 0x1ff;

    /// Letters in printing order; ACK is printed last as `.`, the way scripts write it.
    const LETTERS: [(char, TcpFlags); 8] = [
        ('F', TcpFlags::FIN),
        ('S', TcpFlags::SYN),
        ('R', TcpFlags::RST),
        ('P', TcpFlags::PSH),
        ('U', TcpFlags::URG),
        ('E', TcpFlags::ECE),
        ('W', TcpFlags::CWR),
        ('A', TcpFlags::AE),
    ];

    /// No flags (written `-`).
    pub const fn empty() -> TcpFlags {
        TcpFlags(0)
    }

    /// Flags from the 9 wire bits; other bits are dropped.
    pub const fn from_bits(bits: u16) -> TcpFlags {
        TcpFlags(bits & Self::ALL_BITS)
    }

    pub const fn bits(self) -> u16 {
        self.0
    }

    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub const fn contains(self, other: TcpFlags) -> bool {
        self.0 & other.0 == other.0
    }

    pub fn insert(&mut self, other: TcpFlags) {
        self.0 |= other.0;
    }

    pub fn remove(&mut self, other: TcpFlags) {
        self.0 &= !other.0;
    }

    /// The AccECN ACE field: AE, CWR and ECE read as a 3-bit number.
    pub const fn ace(self) -> u8 {
        (((self.0 >> 8) & 1) << 2 | ((self.0 >> 7) & 1) << 1 | ((self.0 >> 6) & 1)) as u8
    }

    /// These flags with AE, CWR and ECE replaced by the ACE value `ace` (taken mod 8).
    pub const fn with_ace(self, ace: u8) -> TcpFlags {
        let cleared = self.0 & !(Self::ECE.0 | Self::CWR.0 | Self::AE.0);
        let ace = ace as u16;
        TcpFlags(cleared | (ace & 1) << 6 | ((ace >> 1) & 1) << 7 | ((ace >> 2) & 1) << 8)
    }

    /// Parses packetdrill flag notation (`S.`, `SEW`, `P5.`, `.6`, `-`, `.`).
    ///
    /// Returns the flags and whether the ACE digit notation was used. The error text is
    /// packetdrill's (`Invalid TCP flag: 'X'`, `Conflicting TCP flag: 'X'`).
    pub fn parse(notation: &str) -> Result<(TcpFlags, bool), String> {
        if notation == "-" {
            return Ok((TcpFlags::empty(), false));
        }
        let mut flags = TcpFlags::empty();
        let mut ace: Option<u8> = None;
        let mut ecn_letter = false;
        for c in notation.chars() {
            match c {
                '.' => flags.insert(TcpFlags::ACK),
                '0'..='7' => {
                    if ace.is_some() || ecn_letter {
                        return Err(format!("Conflicting TCP flag: '{c}'"));
                    }
                    ace = Some(c as u8 - b'0');
                }
                _ => match Self::LETTERS.iter().find(|(letter, _)| *letter == c) {
                    Some((_, flag)) => {
                        if matches!(c, 'E' | 'W' | 'A') {
                            if ace.is_some() {
                                return Err(format!("Conflicting TCP flag: '{c}'"));
                            }
                            ecn_letter = true;
                        }
                        flags.insert(*flag);
                    }
                    None => return Err(format!("Invalid TCP flag: '{c}'")),
                },
            }
        }
        match ace {
            Some(value) => Ok((flags.with_ace(value), true)),
            None => Ok((flags, false)),
        }
    }

    /// A displayable form using the ACE digit instead of `E`, `W`, `A` (`P5.`).
    pub fn ace_notation(self) -> AceNotation {
        AceNotation(self)
    }

    fn fmt_letters(self, f: &mut fmt::Formatter<'_>, with_ecn_letters: bool) -> fmt::Result {
        for (letter, flag) in Self::LETTERS {
            let is_ecn = matches!(letter, 'E' | 'W' | 'A');
            if self.contains(flag) && (with_ecn_letters || !is_ecn) {
                write!(f, "{letter}")?;
            }
        }
        if !with_ecn_letters {
            write!(f, "{}", self.ace())?;
        }
        if self.contains(TcpFlags::ACK) {
            write!(f, ".")?;
        }
        Ok(())
    }
}

/// [`TcpFlags`] displayed with the AccECN ACE digit (see [`TcpFlags::ace_notation`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AceNotation(pub TcpFlags);

impl fmt::Display for AceNotation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt_letters(f, false)
    }
}

/// Letters in the order `FSRPUEWA` followed by `.` for ACK; `-` when empty.
impl fmt::Display for TcpFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return write!(f, "-");
        }
        self.fmt_letters(f, true)
    }
}

impl fmt::Debug for TcpFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TcpFlags({self})")
    }
}

impl BitOr for TcpFlags {
    type Output = TcpFlags;
    fn bitor(self, rhs: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 | rhs.0)
    }
}

impl BitOrAssign for TcpFlags {
    fn bitor_assign(&mut self, rhs: TcpFlags) {
        self.0 |= rhs.0;
    }
}
