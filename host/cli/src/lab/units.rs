//! The units a scenario file writes quantities in: durations ("30s", "100ms"), rates
//! ("100Mbit", "1.5Gbit"), sizes ("10MB", "64KiB") and queue sizes ("100p", "1.5bdp" or a
//! size). Each parses from a string (a bare number is seconds, bits/s or bytes) and keeps the
//! text it came from, so reports show what the researcher wrote.

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use std::fmt;

const NS_PER_SEC: f64 = 1e9;

/// Splits "12.5Mbit" into (12.5, "Mbit").
fn number_and_unit(s: &str) -> Result<(f64, &str), String> {
    let s = s.trim();
    let end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '_'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(end);
    let num: String = num.chars().filter(|&c| c != '_').collect();
    let v: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` does not start with a number"))?;
    if !v.is_finite() || v < 0.0 {
        return Err(format!("`{s}` is not a non-negative number"));
    }
    Ok((v, unit.trim()))
}

/// A duration in nanoseconds of virtual (or, for `--kernel`, real) time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Dur(pub u64);

impl Dur {
    pub fn parse(s: &str) -> Result<Self, String> {
        let (v, unit) = number_and_unit(s)?;
        let scale = match unit {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" | "" => NS_PER_SEC,
            "min" => 60.0 * NS_PER_SEC,
            _ => {
                return Err(format!(
                    "`{s}`: unknown time unit `{unit}` (ns, us, ms, s, min)"
                ))
            }
        };
        let ns = v * scale;
        if ns > u64::MAX as f64 / 4.0 {
            return Err(format!("`{s}` is too long"));
        }
        Ok(Dur(ns.round() as u64))
    }
    pub fn secs(self) -> f64 {
        self.0 as f64 / NS_PER_SEC
    }
    pub fn ms(self) -> f64 {
        self.0 as f64 / 1e6
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ns = self.0;
        if ns.is_multiple_of(1_000_000_000) {
            write!(f, "{}s", ns / 1_000_000_000)
        } else if ns.is_multiple_of(1_000_000) {
            write!(f, "{}ms", ns / 1_000_000)
        } else if ns.is_multiple_of(1_000) {
            write!(f, "{}us", ns / 1_000)
        } else {
            write!(f, "{ns}ns")
        }
    }
}

/// A rate in bits per second.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Rate(pub u64);

impl Rate {
    pub fn parse(s: &str) -> Result<Self, String> {
        let (v, unit) = number_and_unit(s)?;
        let u = unit.to_ascii_lowercase();
        let u = u.strip_suffix("/s").unwrap_or(&u);
        let scale = match u {
            "" | "bit" | "bps" => 1.0,
            "kbit" | "kbps" => 1e3,
            "mbit" | "mbps" => 1e6,
            "gbit" | "gbps" => 1e9,
            _ => {
                return Err(format!(
                    "`{s}`: unknown rate unit `{unit}` (bit, kbit, Mbit, Gbit; bits per second)"
                ))
            }
        };
        let bps = v * scale;
        if bps > 1e13 {
            return Err(format!("`{s}` is above 10 Tbit/s"));
        }
        Ok(Rate(bps.round() as u64))
    }
    pub fn mbps(self) -> f64 {
        self.0 as f64 / 1e6
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        if b >= 1_000_000_000 && b.is_multiple_of(1_000_000) {
            write!(f, "{}Gbit", b as f64 / 1e9)
        } else if b >= 1_000_000 && b.is_multiple_of(1_000) {
            write!(f, "{}Mbit", b as f64 / 1e6)
        } else if b >= 1_000 {
            write!(f, "{}kbit", b as f64 / 1e3)
        } else {
            write!(f, "{b}bit")
        }
    }
}

/// A size in bytes ("1500", "64KB", "1MiB"; K = 1000, Ki = 1024).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Size(pub u64);

impl Size {
    pub fn parse(s: &str) -> Result<Self, String> {
        let (v, unit) = number_and_unit(s)?;
        let scale = size_scale(unit).ok_or_else(|| {
            format!("`{s}`: unknown size unit `{unit}` (B, KB, MB, GB, KiB, MiB, GiB)")
        })?;
        let b = v * scale;
        if b > 1e15 {
            return Err(format!("`{s}` is above 1 PB"));
        }
        Ok(Size(b.round() as u64))
    }
}

fn size_scale(unit: &str) -> Option<f64> {
    Some(match unit {
        "" | "B" | "b" => 1.0,
        "KB" | "kB" | "K" | "k" => 1e3,
        "MB" | "M" => 1e6,
        "GB" | "G" => 1e9,
        "KiB" | "Ki" => 1024.0,
        "MiB" | "Mi" => 1024.0 * 1024.0,
        "GiB" | "Gi" => 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    })
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        if b >= 1_000_000 && b.is_multiple_of(1_000) {
            write!(f, "{}MB", b as f64 / 1e6)
        } else if b >= 1_000 && b.is_multiple_of(1_000) {
            write!(f, "{}KB", b / 1_000)
        } else {
            write!(f, "{b}B")
        }
    }
}

/// A queue size: packets ("100p"), bandwidth-delay products ("1.5bdp") or bytes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum QueueSize {
    Packets(u64),
    Bdp(f64),
    Bytes(u64),
}

impl QueueSize {
    pub fn parse(s: &str) -> Result<Self, String> {
        let (v, unit) = number_and_unit(s)?;
        match unit.to_ascii_lowercase().as_str() {
            "p" | "pkt" | "pkts" | "packets" => {
                if v.fract() != 0.0 {
                    return Err(format!("`{s}`: a whole number of packets"));
                }
                Ok(QueueSize::Packets(v as u64))
            }
            "bdp" | "bdps" => Ok(QueueSize::Bdp(v)),
            _ => Size::parse(s).map(|b| QueueSize::Bytes(b.0)).map_err(|_| {
                format!("`{s}`: a queue is packets (100p), BDPs (1.5bdp) or bytes (64KB)")
            }),
        }
    }

    /// Bytes for a link whose BDP is `bdp` bytes, counting `mtu`-byte packets.
    pub fn bytes(&self, bdp: u64, mtu: u64) -> u64 {
        match *self {
            QueueSize::Packets(n) => n * mtu,
            QueueSize::Bdp(f) => (bdp as f64 * f).round() as u64,
            QueueSize::Bytes(b) => b,
        }
    }
}

impl fmt::Display for QueueSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueueSize::Packets(n) => write!(f, "{n}p"),
            QueueSize::Bdp(b) => write!(f, "{b}bdp"),
            QueueSize::Bytes(b) => write!(f, "{}", Size(*b)),
        }
    }
}

/// Serde for all four: a string (or a bare number) through `parse`, written back as text.
macro_rules! serde_via_parse {
    ($t:ty, $what:literal) => {
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> Visitor<'de> for V {
                    type Value = $t;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str($what)
                    }
                    fn visit_str<E: de::Error>(self, s: &str) -> Result<$t, E> {
                        <$t>::parse(s).map_err(E::custom)
                    }
                    fn visit_i64<E: de::Error>(self, v: i64) -> Result<$t, E> {
                        <$t>::parse(&v.to_string()).map_err(E::custom)
                    }
                    fn visit_u64<E: de::Error>(self, v: u64) -> Result<$t, E> {
                        <$t>::parse(&v.to_string()).map_err(E::custom)
                    }
                    fn visit_f64<E: de::Error>(self, v: f64) -> Result<$t, E> {
                        <$t>::parse(&v.to_string()).map_err(E::custom)
                    }
                }
                d.deserialize_any(V)
            }
        }
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
    };
}

serde_via_parse!(Dur, "a duration such as \"30s\" or \"100ms\"");
serde_via_parse!(Rate, "a rate such as \"100Mbit\"");
serde_via_parse!(Size, "a size such as \"10MB\" or \"64KiB\"");
serde_via_parse!(
    QueueSize,
    "a queue size such as \"100p\", \"1bdp\" or \"64KB\""
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_parse_and_print() {
        assert_eq!(Dur::parse("30s").unwrap(), Dur(30_000_000_000));
        assert_eq!(Dur::parse("2.5ms").unwrap(), Dur(2_500_000));
        assert_eq!(Dur::parse("100ms").unwrap().to_string(), "100ms");
        assert!(Dur::parse("3 parsecs")
            .unwrap_err()
            .contains("unknown time unit"));
        assert_eq!(Rate::parse("100Mbit").unwrap(), Rate(100_000_000));
        assert_eq!(Rate::parse("1.5gbit").unwrap(), Rate(1_500_000_000));
        assert_eq!(Rate::parse("100Mbit").unwrap().to_string(), "100Mbit");
        assert_eq!(Size::parse("64KiB").unwrap(), Size(65536));
        assert_eq!(Size::parse("10MB").unwrap(), Size(10_000_000));
        assert_eq!(QueueSize::parse("100p").unwrap(), QueueSize::Packets(100));
        assert_eq!(QueueSize::parse("0.5bdp").unwrap(), QueueSize::Bdp(0.5));
        assert_eq!(QueueSize::parse("64KB").unwrap(), QueueSize::Bytes(64_000));
        assert!(QueueSize::parse("lots").is_err());
        assert!(Rate::parse("-3Mbit").is_err());
    }
}
