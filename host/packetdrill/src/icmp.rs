//! ICMP and ICMPv6 type and code names, as packetdrill spells them.
//!
//! The AST keeps the names as written because their meaning depends on the IP version,
//! which only the runner knows (from `--ip_version`). [`resolve`] maps them the way
//! packetdrill's `icmp_packet.c` does, including the `type_N` / `code_N` escapes.

use crate::ast::IcmpSpec;

/// Which ICMP the script's IP version uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IcmpVersion {
    /// ICMP for IPv4 (and IPv4-mapped IPv6).
    V4,
    /// ICMPv6.
    V6,
}

/// Wire values of an ICMP message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IcmpTypeCode {
    pub icmp_type: u8,
    pub code: u8,
}

type CodeTable = &'static [(&'static str, u8)];

const V4_UNREACHABLE_CODES: CodeTable = &[
    ("net_unreachable", 0),
    ("host_unreachable", 1),
    ("protocol_unreachable", 2),
    ("port_unreachable", 3),
    ("frag_needed", 4),
    ("source_route_failed", 5),
    ("net_unknown", 6),
    ("host_unknown", 7),
    ("source_host_isolated", 8),
    ("net_prohibited", 9),
    ("host_prohibited", 10),
    ("net_unreachable_for_tos", 11),
    ("host_unreachable_for_tos", 12),
    ("packet_filtered", 13),
    ("precedence_violation", 14),
    ("precedence_cutoff", 15),
];

/// Used by FreeBSD's tcp-testsuite (`icmp time_exceeded ttl_exceeded_in_transit`).
const V4_TIME_EXCEEDED_CODES: CodeTable = &[
    ("ttl_exceeded_in_transit", 0),
    ("fragment_reassembly_time_exceeded", 1),
];

const V4_TYPES: &[(&str, u8, CodeTable)] = &[
    ("echo_reply", 0, &[]),
    ("unreachable", 3, V4_UNREACHABLE_CODES),
    ("source_quench", 4, &[]),
    ("redirect", 5, &[]),
    ("echo_request", 8, &[]),
    ("time_exceeded", 11, V4_TIME_EXCEEDED_CODES),
    ("parameter_problem", 12, &[]),
    ("timestamp_request", 13, &[]),
    ("timestamp_reply", 14, &[]),
    ("information_request", 15, &[]),
    ("information_reply", 16, &[]),
    ("address_mask_request", 17, &[]),
    ("address_mask_reply", 18, &[]),
];

const V6_UNREACHABLE_CODES: CodeTable = &[
    ("net_unreachable", 0),
    ("no_route", 0),
    ("admin_prohibited", 1),
    ("not_neighbour", 2),
    ("address_unreachable", 3),
    ("port_unreachable", 4),
];

const V6_TIME_EXCEEDED_CODES: CodeTable = &[("exceeded_hop_limit", 0), ("exceeded_frag_time", 1)];

const V6_PARAMETER_PROBLEM_CODES: CodeTable = &[
    ("header_field", 0),
    ("unknown_next_header", 1),
    ("unknown_option", 2),
];

const V6_TYPES: &[(&str, u8, CodeTable)] = &[
    ("unreachable", 1, V6_UNREACHABLE_CODES),
    ("packet_too_big", 2, &[]),
    ("time_exceeded", 3, V6_TIME_EXCEEDED_CODES),
    ("parameter_problem", 4, V6_PARAMETER_PROBLEM_CODES),
];

/// `type_N` / `code_N` (tcpdump-inspired escapes for values without a name).
fn numbered(name: &str, prefix: &str) -> Option<u8> {
    name.strip_prefix(prefix)?.parse().ok()
}

/// Maps the names of `spec` to wire values and checks the MTU is allowed, with
/// packetdrill's error messages.
pub fn resolve(spec: &IcmpSpec, version: IcmpVersion) -> Result<IcmpTypeCode, String> {
    let types = match version {
        IcmpVersion::V4 => V4_TYPES,
        IcmpVersion::V6 => V6_TYPES,
    };
    let known = types.iter().find(|(name, _, _)| *name == spec.type_name);
    let (icmp_type, codes) = match (known, numbered(&spec.type_name, "type_")) {
        (Some((_, value, codes)), _) => (*value, *codes),
        (None, Some(value)) => (value, &[][..]),
        (None, None) => return Err(format!("bad ICMP type {}", spec.type_name)),
    };
    let code = match &spec.code_name {
        None => 0,
        Some(name) => numbered(name, "code_")
            .or_else(|| codes.iter().find(|(n, _)| n == name).map(|(_, v)| *v))
            .ok_or_else(|| format!("bad ICMP code {name}"))?,
    };
    if let Some(mtu) = spec.mtu {
        match version {
            IcmpVersion::V4 if icmp_type != 3 || code != 4 => {
                return Err("ICMPv4 MTU is only valid for unreachable-frag_needed".to_string())
            }
            IcmpVersion::V4 if mtu > u32::from(u16::MAX) => {
                return Err("ICMPv4 MTU out of 16-bit range".to_string())
            }
            IcmpVersion::V6 if icmp_type != 2 || code != 0 => {
                return Err("ICMPv6 MTU is only valid for packet_too_big-0".to_string())
            }
            _ => {}
        }
    }
    Ok(IcmpTypeCode { icmp_type, code })
}
