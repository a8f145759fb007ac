//! Typed access to the option lines packetdrill knows (config.c in both forks).
//!
//! The AST keeps options as strings; this is a convenience for the runner. Defaults are
//! not applied here: packetdrill's are listed on each field so the runner can choose.

use crate::ast::{OptionLine, Script};
use crate::error::ParseError;

/// `--ip_version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpVersion {
    Ipv4,
    /// `ipv4-mapped-ipv6` (Google) / `ipv4_mapped_ipv6` (nplab): AF_INET6 sockets,
    /// IPv4 on the wire.
    Ipv4MappedIpv6,
    Ipv6,
}

/// The options packetdrill interprets, parsed. Unknown options are left in
/// [`Script::options`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ScriptConfig {
    /// `--ip_version` (packetdrill default ipv4 on nplab, the host's on Google).
    pub ip_version: Option<IpVersion>,
    /// `--tolerance_usecs` (default 4000).
    pub tolerance_usecs: Option<u64>,
    /// `--tolerance_percent` (default 5 on FreeBSD, 12.5 elsewhere).
    pub tolerance_percent: Option<f64>,
    /// `--bind_port` (default 8080).
    pub bind_port: Option<u16>,
    /// `--connect_port` (default 8080).
    pub connect_port: Option<u16>,
    /// `--local_ip` (default 192.168.0.1 / fd3d:fa7b:d17d::1 on nplab).
    pub local_ip: Option<String>,
    /// `--remote_ip` (default 192.0.2.1/24 / 2001:DB8::1/32).
    pub remote_ip: Option<String>,
    /// `--gateway_ip`.
    pub gateway_ip: Option<String>,
    /// `--netmask_ip`.
    pub netmask_ip: Option<String>,
    /// `--mss` (Google).
    pub mss: Option<u32>,
    /// `--mtu`.
    pub mtu: Option<u32>,
    /// `--tcp_ts_tick_usecs` (default 0: outbound TS val not checked).
    pub tcp_ts_tick_usecs: Option<u64>,
    /// `--tcp_ts_ecr_scaled` (Google).
    pub tcp_ts_ecr_scaled: bool,
    /// `--non_fatal=packet`.
    pub non_fatal_packet: bool,
    /// `--non_fatal=syscall`.
    pub non_fatal_syscall: bool,
    /// `--tcp_md5_secret` (nplab).
    pub tcp_md5_secret: Option<String>,
    /// `--udp_encapsulation=tcp|sctp` (nplab).
    pub udp_encapsulation: Option<String>,
    /// `--define=NAME=VALUE` in order.
    pub defines: Vec<(String, String)>,
    /// `--dry_run`.
    pub dry_run: bool,
}

impl Script {
    /// Interprets the known options; errors name the option's line.
    pub fn config(&self) -> Result<ScriptConfig, ParseError> {
        let mut config = ScriptConfig::default();
        for option in &self.options {
            apply(&self.path, option, &mut config)?;
        }
        Ok(config)
    }
}

fn apply(path: &str, option: &OptionLine, config: &mut ScriptConfig) -> Result<(), ParseError> {
    let bad = || {
        ParseError::semantic(
            path,
            option.line,
            format!(
                "bad --{}: {}",
                option.name,
                option.value.as_deref().unwrap_or("")
            ),
        )
    };
    let value = || option.value.clone().ok_or_else(bad);
    let number = |v: String| v.trim().parse::<u64>().map_err(|_| bad());
    match option.name.as_str() {
        "ip_version" => {
            config.ip_version = Some(match value()?.as_str() {
                "ipv4" => IpVersion::Ipv4,
                "ipv4-mapped-ipv6" | "ipv4_mapped_ipv6" => IpVersion::Ipv4MappedIpv6,
                "ipv6" => IpVersion::Ipv6,
                _ => return Err(bad()),
            })
        }
        "tolerance_usecs" => config.tolerance_usecs = Some(number(value()?)?),
        "tolerance_percent" => {
            config.tolerance_percent = Some(value()?.trim().parse::<f64>().map_err(|_| bad())?)
        }
        "bind_port" => config.bind_port = Some(port(number(value()?)?).ok_or_else(bad)?),
        "connect_port" => config.connect_port = Some(port(number(value()?)?).ok_or_else(bad)?),
        "local_ip" => config.local_ip = Some(value()?),
        "remote_ip" => config.remote_ip = Some(value()?),
        "gateway_ip" => config.gateway_ip = Some(value()?),
        "netmask_ip" => config.netmask_ip = Some(value()?),
        "mss" => config.mss = Some(u32::try_from(number(value()?)?).map_err(|_| bad())?),
        "mtu" => config.mtu = Some(u32::try_from(number(value()?)?).map_err(|_| bad())?),
        "tcp_ts_tick_usecs" => config.tcp_ts_tick_usecs = Some(number(value()?)?),
        "tcp_ts_ecr_scaled" => config.tcp_ts_ecr_scaled = true,
        "non_fatal" => {
            for kind in value()?.split([',', ' ']).filter(|k| !k.is_empty()) {
                match kind {
                    "packet" => config.non_fatal_packet = true,
                    "syscall" => config.non_fatal_syscall = true,
                    _ => {}
                }
            }
        }
        "tcp_md5_secret" => config.tcp_md5_secret = Some(value()?),
        "udp_encapsulation" => config.udp_encapsulation = Some(value()?),
        "define" => {
            let definition = value()?;
            let (name, value) = definition.split_once('=').unwrap_or((&definition, ""));
            config.defines.push((name.to_string(), value.to_string()));
        }
        "dry_run" => config.dry_run = true,
        _ => {}
    }
    Ok(())
}

fn port(value: u64) -> Option<u16> {
    u16::try_from(value).ok().filter(|p| *p != 0)
}
