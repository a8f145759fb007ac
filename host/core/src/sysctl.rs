//! The `net.inet.tcp.*` sysctl tree, modelled on FreeBSD tcp(4), syncache(4) and mod_cc(4).
//!
//! Three kinds of names live here:
//! * tunables: one static table entry and one field of [`TcpTunables`] each, both generated from
//!   the single `mib_table!` list below so they cannot drift apart. Hot paths read them through
//!   [`SysctlTree::snapshot`] without any lookup or lock.
//! * host-provided names ([`HOST_ENTRIES`]): MIB variables whose value is run-time state of the
//!   host (counters, lists, TFO key installation, the stack/CC selection). The table documents
//!   them; they exist (as in FreeBSD, where an OID appears only with its subsystem) once the host
//!   registers a [`DynamicNode`] under that name.
//! * free dynamic nodes, e.g. CC module parameters such as `net.inet.tcp.cc.newreno.beta`.
//!
//! Units follow FreeBSD's sysctl interface: timers in milliseconds (we assume `hz` = 1000, so one
//! tick is one millisecond), sizes in bytes, unless an entry says otherwise.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};

use arc_swap::{ArcSwap, Guard};

use plugtcp_abi::Errno;

/// The common prefix of every name in this tree.
pub const PREFIX: &str = "net.inet.tcp.";

/// FreeBSD `TCP_MINMSS`: the floor `mssdflt`/`v6mssdflt` writes are checked against.
pub const TCP_MINMSS: i64 = 216;
/// FreeBSD `TCP_MAXRXTSHIFT`: the ceiling of `syncache.rexmtlimit`.
pub const TCP_MAXRXTSHIFT: i64 = 12;

const INT_MAX: i64 = i32::MAX as i64;
const UINT_MAX: i64 = u32::MAX as i64;
/// The MSS option is 16 bits wide, so larger MSS values are meaningless.
const MSS_MAX: i64 = 65535;

/// A value as read from or printed by sysctl(8).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SysctlValue {
    Int(i64),
    Str(String),
}

impl fmt::Display for SysctlValue {
    /// Formats the value part of a sysctl(8) line (`name: value`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SysctlValue::Int(v) => write!(f, "{v}"),
            SysctlValue::Str(s) => f.write_str(s),
        }
    }
}

/// The C type behind a MIB variable, which decides parsing and the implicit range.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `int`.
    Int,
    /// `u_int`: negative input is rejected (FreeBSD's sysctl(8) would wrap it through strtoul).
    UInt,
    /// An `int` used as a boolean. plugtcp only accepts 0 and 1, which is stricter than FreeBSD's
    /// `SYSCTL_INT` (any value, non-zero meaning true) but catches typos.
    Bool,
    /// A string.
    Str,
    /// Opaque data or a formatted list (host-provided only).
    Opaque,
}

/// Who may write a variable.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Access {
    /// `CTLFLAG_RW`.
    ReadWrite,
    /// `CTLFLAG_RDTUN`: settable only at start-up ([`SysctlTree::with_loader_tunables`], the
    /// loader(8) equivalent); a run-time write gets EPERM.
    Tunable,
    /// `CTLFLAG_RD`: a constant or a statistic; every write gets EPERM.
    ReadOnly,
    /// `CTLFLAG_WR`: a command (`fastopen.setkey`); reading it is EINVAL, as FreeBSD's
    /// handlers answer, and listings leave it out.
    WriteOnly,
}

/// Extra validation run on the modified copy of the tunables before it is published; it may
/// look at other variables, which is where cross-variable checks go.
pub type Check = fn(&TcpTunables) -> Result<(), Errno>;

/// One tunable MIB variable: a static table row bound to one [`TcpTunables`] field.
pub struct MibEntry {
    /// Full name, e.g. `net.inet.tcp.mssdflt`.
    pub name: &'static str,
    /// The [`TcpTunables`] field name (the path after `net.inet.tcp.` with dots turned into `_`).
    pub field: &'static str,
    pub kind: Kind,
    /// Inclusive range accepted on write (ignored for strings).
    pub min: i64,
    pub max: i64,
    pub access: Access,
    /// Whether plugtcp acts on the variable (otherwise it is accepted and reported only).
    pub acts: bool,
    /// Only in the older man pages (001/004), not in the newest tcp(4) (002).
    pub legacy: bool,
    /// One-line description, as `sysctl -d` prints it.
    pub description: &'static str,
    pub check: Option<Check>,
    get: fn(&TcpTunables) -> SysctlValue,
    set: fn(&mut TcpTunables, SysctlValue) -> Result<(), Errno>,
}

impl MibEntry {
    /// FreeBSD's default, taken from `TcpTunables::default()` so it cannot disagree with it.
    pub fn default_value(&self) -> SysctlValue {
        (self.get)(&TcpTunables::default())
    }

    /// Reads this variable out of a snapshot.
    pub fn read(&self, t: &TcpTunables) -> SysctlValue {
        (self.get)(t)
    }
}

impl fmt::Debug for MibEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MibEntry")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("min", &self.min)
            .field("max", &self.max)
            .field("access", &self.access)
            .field("acts", &self.acts)
            .field("legacy", &self.legacy)
            .finish()
    }
}

/// Conversion between a [`TcpTunables`] field type and [`SysctlValue`].
trait FieldValue: Sized {
    type Init;
    fn init(v: Self::Init) -> Self;
    fn to_value(&self) -> SysctlValue;
    fn from_value(v: SysctlValue) -> Option<Self>;
}

impl FieldValue for i64 {
    type Init = i64;
    fn init(v: i64) -> i64 {
        v
    }
    fn to_value(&self) -> SysctlValue {
        SysctlValue::Int(*self)
    }
    fn from_value(v: SysctlValue) -> Option<i64> {
        match v {
            SysctlValue::Int(i) => Some(i),
            SysctlValue::Str(_) => None,
        }
    }
}

impl FieldValue for String {
    type Init = &'static str;
    fn init(v: &'static str) -> String {
        v.to_owned()
    }
    fn to_value(&self) -> SysctlValue {
        SysctlValue::Str(self.clone())
    }
    fn from_value(v: SysctlValue) -> Option<String> {
        match v {
            SysctlValue::Str(s) => Some(s),
            SysctlValue::Int(_) => None,
        }
    }
}

/// The implicit range of a kind, unless the entry gives one.
macro_rules! kind_range {
    (Int) => {
        (i32::MIN as i64, INT_MAX)
    };
    (UInt) => {
        (0, UINT_MAX)
    };
    (Bool) => {
        (0, 1)
    };
    (Str) => {
        (0, 0)
    };
    ($kind:ident, $min:expr, $max:expr) => {
        ($min, $max)
    };
}

macro_rules! opt_check {
    () => {
        None
    };
    ($check:path) => {
        Some($check as Check)
    };
}

/// The one declarative list of tunables: generates [`TcpTunables`], its `Default` and
/// [`TUNABLES`].
macro_rules! mib_table {
    ($(
        $(#[doc = $doc:literal])*
        $field:ident : $ty:ty = $default:expr ;
        $name:literal, $kind:ident $(($min:expr, $max:expr))?, $access:ident,
        acts: $acts:literal, legacy: $legacy:literal,
        $(check: $check:path,)?
        $desc:literal;
    )*) => {
        /// Typed copy of every tunable `net.inet.tcp.*` variable, for lock-free reads on hot
        /// paths. Field names are the MIB path after `net.inet.tcp.` with `.` turned into `_`.
        /// `Default` is FreeBSD's default (see each field for the source of the value).
        #[derive(Clone, Debug, PartialEq, Eq)]
        pub struct TcpTunables {
            $( $(#[doc = $doc])* pub $field: $ty, )*
        }

        impl Default for TcpTunables {
            fn default() -> Self {
                Self { $( $field: <$ty as FieldValue>::init($default), )* }
            }
        }

        /// Every tunable MIB variable, in declaration order (see [`SysctlTree::list`] for name
        /// order).
        pub static TUNABLES: &[MibEntry] = &[ $(
            MibEntry {
                name: concat!("net.inet.tcp.", $name),
                field: stringify!($field),
                kind: Kind::$kind,
                min: kind_range!($kind $(, $min, $max)?).0,
                max: kind_range!($kind $(, $min, $max)?).1,
                access: Access::$access,
                acts: $acts,
                legacy: $legacy,
                description: $desc,
                check: opt_check!($($check)?),
                get: |t: &TcpTunables| FieldValue::to_value(&t.$field),
                set: |t: &mut TcpTunables, v: SysctlValue| {
                    t.$field = FieldValue::from_value(v).ok_or(Errno::EINVAL)?;
                    Ok(())
                },
            },
        )* ];
    };
}

mib_table! {
    /// 002 ("the kernel will periodically send..."); FreeBSD `tcp_always_keepalive = 1`.
    /// Not acted on: keepalives go only to SO_KEEPALIVE sockets; nothing reads this.
    always_keepalive: i64 = 1;
    "always_keepalive", Bool, ReadWrite, acts: true, legacy: false,
    "Assume SO_KEEPALIVE on all TCP connections";

    /// 002 / blackhole(4): 0 off, 1 no RST for SYNs to closed ports, 2 no RST at all. Default 0.
    blackhole: i64 = 0;
    "blackhole", Int(0, 2), ReadWrite, acts: true, legacy: false,
    "Do not send RST on segments to closed ports";

    /// 002 / blackhole(4): apply `blackhole` to segments from this host's own addresses
    /// too. FreeBSD default 0.
    blackhole_local: i64 = 0;
    "blackhole_local", Bool, ReadWrite, acts: true, legacy: false,
    "Enforce net.inet.tcp.blackhole for locally originated packets";

    /// mod_cc(4): Alternative Backoff with ECN (RFC 8511). FreeBSD default 0.
    cc_abe: i64 = 0;
    "cc.abe", Bool, ReadWrite, acts: true, legacy: false,
    "Enable draft-ietf-tcpm-alternativebackoff-ecn (TCP Alternative Backoff with ECN)";

    /// mod_cc(4): with ABE, also apply the reduced backoff on loss. FreeBSD default 0.
    cc_abe_frlossreduce: i64 = 0;
    "cc.abe_frlossreduce", Bool, ReadWrite, acts: true, legacy: false,
    "Apply standard beta instead of ABE-beta during ECN-signalled congestion recovery episodes if loss also needs to be repaired";

    /// mod_cc(4) / RFC 9406 MIN_RTT_THRESH (us). FreeBSD default 4000.
    cc_hystartplusplus_minrtt_thresh: i64 = 4_000;
    "cc.hystartplusplus.minrtt_thresh", Int(0, INT_MAX), ReadWrite, acts: true, legacy: false,
    "HyStart++ minimum RTT increase that counts as delay growth (usec)";

    /// mod_cc(4) / RFC 9406 MAX_RTT_THRESH (us). FreeBSD default 16000.
    cc_hystartplusplus_maxrtt_thresh: i64 = 16_000;
    "cc.hystartplusplus.maxrtt_thresh", Int(0, INT_MAX), ReadWrite, acts: true, legacy: false,
    "HyStart++ maximum RTT increase threshold (usec)";

    /// mod_cc(4) / RFC 9406 N_RTT_SAMPLE. FreeBSD default 8.
    cc_hystartplusplus_n_rttsamples: i64 = 8;
    "cc.hystartplusplus.n_rttsamples", Int(1, INT_MAX), ReadWrite, acts: true, legacy: false,
    "HyStart++ RTT samples needed per round before a decision";

    /// mod_cc(4) / RFC 9406 CSS_GROWTH_DIVISOR. FreeBSD default 4.
    cc_hystartplusplus_css_growth_div: i64 = 4;
    "cc.hystartplusplus.css_growth_div", Int(1, INT_MAX), ReadWrite, acts: true, legacy: false,
    "HyStart++ divisor of slow start growth in Conservative Slow Start";

    /// mod_cc(4) / RFC 9406 CSS_ROUNDS. FreeBSD default 5.
    cc_hystartplusplus_css_rounds: i64 = 5;
    "cc.hystartplusplus.css_rounds", Int(1, INT_MAX), ReadWrite, acts: true, legacy: false,
    "HyStart++ rounds of Conservative Slow Start before leaving slow start";

    /// FreeBSD rack(4) `net.inet.tcp.rack.reorder_thresh`: RACK's reordering window is
    /// min_rtt >> this (2: a quarter, RFC 8985's). Default 2.
    rack_reorder_thresh: i64 = 2;
    "rack.reorder_thresh", Int(0, 31), ReadWrite, acts: true, legacy: false,
    "Shift of min_rtt that makes RACK's reordering window";

    /// rack(4) `reorder_fade` (us): reordering last seen longer ago than this is forgotten
    /// (the window goes back to its base). Default 60 s.
    rack_reorder_fade: i64 = 60_000_000;
    "rack.reorder_fade", Int(0, INT_MAX), ReadWrite, acts: false, legacy: false,
    "Time after which seen reordering is forgotten (usec), 0 never";

    /// rack(4) `pktdelay` (ms) added to RACK's loss timer. Default 1.
    rack_pktdelay: i64 = 1;
    "rack.pktdelay", Int(0, INT_MAX), ReadWrite, acts: true, legacy: false,
    "Extra time added to the RACK reordering timer (ms)";

    /// rack(4) `tlp.limit`: tail loss probes in a row before the RTO takes over. Default 2.
    rack_tlp_limit: i64 = 2;
    "rack.tlp.limit", Int(0, 128), ReadWrite, acts: true, legacy: false,
    "How many TLPs in a row may be sent without progress, 0 no TLP";

    /// rack(4) `timers.tlpminto` (us): the shortest probe timeout. Default 10 ms.
    rack_timers_tlpminto: i64 = 10_000;
    "rack.timers.tlpminto", Int(0, INT_MAX), ReadWrite, acts: true, legacy: false,
    "Minimum tail loss probe timeout (usec)";

    /// 002 (ms). FreeBSD `TCPTV_DELACK` = hz/25 = 40 ms. Writes below 1 tick are EINVAL, as in
    /// FreeBSD's `sysctl_msec_to_ticks`.
    delacktime: i64 = 40;
    "delacktime", Int(1, INT_MAX), ReadWrite, acts: true, legacy: false,
    "Time before a delayed ACK is sent (ms)";

    /// 002. FreeBSD default 1.
    delayed_ack: i64 = 1;
    "delayed_ack", Bool, ReadWrite, acts: true, legacy: false,
    "Delay ACK to try and piggyback it onto a data packet";

    /// 002 says "disabled by default" (FreeBSD 14.0 later changed the code default to 1; the
    /// man page wins here).
    do_lrd: i64 = 0;
    "do_lrd", Bool, ReadWrite, acts: true, legacy: false,
    "Perform Lost Retransmission Detection";

    /// 002 "(default is true)".
    do_prr: i64 = 1;
    "do_prr", Bool, ReadWrite, acts: true, legacy: false,
    "Enable Proportional Rate Reduction per RFC 6937";

    /// 002 "(default is false)".
    do_prr_conservative: i64 = 0;
    "do_prr_conservative", Bool, ReadWrite, acts: true, legacy: false,
    "Do conservative Proportional Rate Reduction";

    /// 002. FreeBSD default 1. plugtcp has no mbuf pressure signal, hence acts false.
    do_tcpdrain: i64 = 1;
    "do_tcpdrain", Bool, ReadWrite, acts: false, legacy: false,
    "Enable tcp_drain routine for extra help when low on mbufs";

    /// 002. FreeBSD default 0.
    drop_synfin: i64 = 0;
    "drop_synfin", Bool, ReadWrite, acts: true, legacy: false,
    "Drop TCP packets with SYN+FIN set";

    /// 002: 0 off, 1 request and accept, 2 accept only "(default)".
    ecn_enable: i64 = 2;
    "ecn.enable", Int(0, 2), ReadWrite, acts: true, legacy: false,
    "TCP ECN support";

    /// 002. FreeBSD default 1.
    ecn_maxretries: i64 = 1;
    "ecn.maxretries", Int(0, INT_MAX), ReadWrite, acts: true, legacy: false,
    "Max retries before giving up on ECN";

    /// 002. FreeBSD default 0.
    fast_finwait2_recycle: i64 = 0;
    "fast_finwait2_recycle", Bool, ReadWrite, acts: true, legacy: false,
    "Recycle closed FIN_WAIT_2 connections faster";

    /// 002 "The default is 0".
    fastopen_acceptany: i64 = 0;
    "fastopen.acceptany", Bool, ReadWrite, acts: true, legacy: false,
    "Accept any non-empty cookie";

    /// 002 "The default is 120" (seconds). FreeBSD rejects values above UINT_MAX / hz.
    fastopen_autokey: i64 = 120;
    "fastopen.autokey", UInt(0, UINT_MAX / 1000), ReadWrite, acts: true, legacy: false,
    "Number of seconds between auto-generation of a new key; zero disables";

    /// 002; FreeBSD `TCP_FASTOPEN_CCACHE_BUCKET_LIMIT_DEFAULT` = 16.
    fastopen_ccache_bucket_limit: i64 = 16;
    "fastopen.ccache_bucket_limit", UInt(1, UINT_MAX / 2), ReadWrite, acts: true, legacy: false,
    "Max entries per bucket in client cookie cache";

    /// 002 "Read-only", loader-tunable; FreeBSD `TCP_FASTOPEN_CCACHE_BUCKETS_DEFAULT` = 2048,
    /// which FreeBSD requires to be a power of two.
    fastopen_ccache_buckets: i64 = 2048;
    "fastopen.ccache_buckets", UInt(1, UINT_MAX), Tunable, acts: true, legacy: false,
    check: check_fastopen_ccache_buckets,
    "Client cookie cache number of buckets";

    /// 002 "The default is 0".
    fastopen_client_enable: i64 = 0;
    "fastopen.client_enable", Bool, ReadWrite, acts: true, legacy: false,
    "Enable/disable TCP Fast Open client functionality";

    /// 002 "Read-only"; FreeBSD `TCP_FASTOPEN_KEY_LEN` = 16 (SipHash key length).
    fastopen_keylen: i64 = 16;
    "fastopen.keylen", UInt, ReadOnly, acts: true, legacy: false,
    "Key length in bytes";

    /// 002 "Read-only"; FreeBSD `TCP_FASTOPEN_MAX_KEYS` = 2.
    fastopen_maxkeys: i64 = 2;
    "fastopen.maxkeys", UInt, ReadOnly, acts: true, legacy: false,
    "Maximum number of keys supported";

    /// 002 "The default number of concurrent pre-shared keys is 2" (`TCP_RFC7413_MAX_PSKS`).
    fastopen_maxpsks: i64 = 2;
    "fastopen.maxpsks", UInt, ReadOnly, acts: true, legacy: false,
    "Maximum number of pre-shared keys supported";

    /// 002 names `TCP_FASTOPEN_PATH_DISABLE_TIME_DEFAULT`, which is 900 seconds in FreeBSD.
    fastopen_path_disable_time: i64 = 900;
    "fastopen.path_disable_time", UInt(0, UINT_MAX / 1000), ReadWrite, acts: true, legacy: false,
    "Seconds a TFO failure disables a {client_ip, server_ip, server_port} path";

    /// 002 "The default is 0".
    fastopen_psk_enable: i64 = 0;
    "fastopen.psk_enable", Bool, ReadWrite, acts: true, legacy: false,
    "Enable/disable TCP Fast Open server pre-shared key mode";

    /// 002 "The default is 0".
    fastopen_server_enable: i64 = 0;
    "fastopen.server_enable", Bool, ReadWrite, acts: true, legacy: false,
    "Enable/disable TCP Fast Open server functionality";

    /// 002 "Defaults to 60 seconds"; FreeBSD `TCPTV_FINWAIT2_TIMEOUT`, exported in ms.
    finwait2_timeout: i64 = 60_000;
    "finwait2_timeout", Int(1, INT_MAX), ReadWrite, acts: true, legacy: false,
    "FIN-WAIT2 timeout (ms)";

    /// 002 "Default is true".
    functions_inherit_listen_socket_stack: i64 = 1;
    "functions_inherit_listen_socket_stack", Bool, ReadWrite, acts: true, legacy: false,
    "Inherit listen socket's stack";

    /// 002 "Defaults to 30"; a loader tunable (`CTLFLAG_RDTUN`) in FreeBSD.
    hostcache_bucketlimit: i64 = 30;
    "hostcache.bucketlimit", UInt(1, UINT_MAX), Tunable, acts: true, legacy: false,
    "Per-bucket hash limit for hostcache";

    /// 002 "Defaults to hashsize * bucketlimit" = 512 * 30; loader tunable. When the loader sets
    /// hashsize or bucketlimit but not this, it is recomputed.
    hostcache_cachelimit: i64 = 512 * 30;
    "hostcache.cachelimit", UInt(1, UINT_MAX), Tunable, acts: true, legacy: false,
    "Overall entry limit for hostcache";

    /// 002 "(default)" is 1.
    hostcache_enable: i64 = 1;
    "hostcache.enable", Bool, ReadWrite, acts: true, legacy: false,
    "Enable the TCP hostcache";

    /// 002 "Defaults to 3600 (1 hour)" (seconds).
    hostcache_expire: i64 = 3600;
    "hostcache.expire", Int(0, INT_MAX), ReadWrite, acts: true, legacy: false,
    "Expire time of TCP hostcache entries (s)";

    /// 002 "Defaults to 512"; "has to be a power of two, or will be rejected". Loader tunable.
    hostcache_hashsize: i64 = 512;
    "hostcache.hashsize", UInt(1, UINT_MAX), Tunable, acts: true, legacy: false,
    check: check_hostcache_hashsize,
    "Size of TCP hostcache hashtable";

    /// 002 "Defaults to 300 (5 minutes)" (seconds).
    hostcache_prune: i64 = 300;
    "hostcache.prune", Int(0, INT_MAX), ReadWrite, acts: true, legacy: false,
    "Time between purge runs (s)";

    /// 002: 0 "(default)", 1 purge all on next prune, 2 also reseed the hash salt.
    hostcache_purge: i64 = 0;
    "hostcache.purge", Int(0, 2), ReadWrite, acts: true, legacy: false,
    "Expire all entries on next purge run";

    /// 002. FreeBSD default 1. Needs ICMP delivered to TCP, hence acts false for now.
    icmp_may_rst: i64 = 1;
    "icmp_may_rst", Bool, ReadWrite, acts: true, legacy: false,
    "Certain ICMP unreachable messages may abort connections in SYN_SENT";

    /// FreeBSD default 1000 ms: the window in which challenge ACKs are counted (RFC 5961
    /// section 7 throttling, tcp_send_challenge_ack).
    ack_war_timewindow: i64 = 1000;
    "ack_war_timewindow", Int(0, INT_MAX), ReadWrite, acts: true, legacy: false,
    "Time interval in ms used to limit the number (ack_war_cnt) of challenge ACKs sent per TCP connection";

    /// FreeBSD default 5: challenge ACKs per ack_war_timewindow (0 = unlimited).
    ack_war_cnt: i64 = 5;
    "ack_war_cnt", Int(0, INT_MAX), ReadWrite, acts: true, legacy: false,
    "Maximum number of challenge ACKs sent per TCP connection during the time interval (ack_war_timewindow)";

    /// FreeBSD default 2 (tcp_input.c V_tcp_abc_l_var): RFC 3465's L, segments per ACK in
    /// slow start.
    abc_l_var: i64 = 2;
    "abc_l_var", Int(1, 65535), ReadWrite, acts: true, legacy: false,
    "Cap the max cwnd increment during slow-start to this number of segments";

    /// FreeBSD default 1: appropriate byte counting (RFC 3465) in congestion avoidance.
    /// Not acted on: ABC is always on in the CC modules (abc_l_var bounds it).
    rfc3465: i64 = 1;
    "rfc3465", Bool, ReadWrite, acts: false, legacy: false,
    "Enable RFC 3465 (Appropriate Byte Counting)";

    /// 002 "The default value is 10 as suggested by RFC 6928". 0 falls back to rfc3390.
    initcwnd_segments: i64 = 10;
    "initcwnd_segments", Int(0, INT_MAX), ReadWrite, acts: true, legacy: false,
    "Slow-start flight size (initial congestion window) in number of segments";

    /// 002 "Default is false".
    insecure_rst: i64 = 0;
    "insecure_rst", Bool, ReadWrite, acts: true, legacy: false,
    "Follow RFC793 instead of RFC5961 criteria for accepting RST packets";

    /// 002 "Default is false".
    insecure_syn: i64 = 0;
    "insecure_syn", Bool, ReadWrite, acts: true, legacy: false,
    "Follow RFC793 instead of RFC5961 criteria for accepting SYN packets";

    /// 002 "By default, this variable is set to zero" (seconds; 0 = never reseed).
    isn_reseed_interval: i64 = 0;
    "isn_reseed_interval", Int(0, INT_MAX), ReadWrite, acts: true, legacy: false,
    "Seconds between reseeding of ISN secret";

    /// 002 "The default is 8 packets".
    keepcnt: i64 = 8;
    "keepcnt", Int(0, INT_MAX), ReadWrite, acts: true, legacy: false,
    "Number of keepalive probes to send";

    /// 002 "The default is 7200000 msec".
    keepidle: i64 = 7_200_000;
    "keepidle", Int(1, INT_MAX), ReadWrite, acts: true, legacy: false,
    "time before keepalive probes begin (ms)";

    /// 002 "The default is 75000 msec".
    keepinit: i64 = 75_000;
    "keepinit", Int(1, INT_MAX), ReadWrite, acts: true, legacy: false,
    "time to establish connection (ms)";

    /// 002 "The default is 75000 msec".
    keepintvl: i64 = 75_000;
    "keepintvl", Int(1, INT_MAX), ReadWrite, acts: true, legacy: false,
    "time between keepalive probes (ms)";

    /// 002: 1 logs SYNs to closed ports, 2 every segment to one; "(default is 0, i.e., the
    /// logging is disabled)"; any other value also disables. Lines go to `Host::take_log`.
    log_in_vain: i64 = 0;
    "log_in_vain", Int, ReadWrite, acts: true, legacy: false,
    "Log all incoming TCP segments to closed ports";

    /// 002: kern.ipc.maxsockets / 5. plugtcp assumes maxsockets = 65536, giving 13107;
    /// 0 asks for kern.ipc.maxsockets / 5 (FreeBSD's sysctl_maxtcptw).
    maxtcptw: i64 = 65536 / 5;
    "maxtcptw", Int(0, INT_MAX), ReadWrite, acts: true, legacy: false,
    "Maximum number of compressed TCP TIME_WAIT entries";

    /// 002 (no default stated); FreeBSD `TCP_MINMSS` = 216.
    minmss: i64 = TCP_MINMSS;
    "minmss", Int(0, MSS_MAX), ReadWrite, acts: true, legacy: false,
    "Minimum TCP Maximum Segment Size";

    /// 002 (ms, no default stated); FreeBSD `TCPTV_MSL` = 30 s.
    msl: i64 = 30_000;
    "msl", Int(1, INT_MAX), ReadWrite, acts: true, legacy: false,
    "Maximum segment lifetime (ms)";

    /// 002 (no default stated); FreeBSD `TCP_MSS` = 536. FreeBSD rejects values below
    /// `TCP_MINMSS`; the upper bound is ours (16-bit MSS option).
    mssdflt: i64 = 536;
    "mssdflt", Int(TCP_MINMSS, MSS_MAX), ReadWrite, acts: true, legacy: false,
    "Default TCP Maximum Segment Size";

    /// 002 spells it "newcwd", a typo: FreeBSD's OID is `newcwv` (RFC 7661). Default 0.
    newcwv: i64 = 0;
    "newcwv", Bool, ReadWrite, acts: false, legacy: false,
    "Enable New Congestion Window Validation per RFC7661";

    /// 002. FreeBSD default 0.
    nolocaltimewait: i64 = 0;
    "nolocaltimewait", Bool, ReadWrite, acts: true, legacy: false,
    "Do not create compressed TCP TIME_WAIT entries for local connections";

    /// 002. FreeBSD default 1: IPv4 segments carry DF (ICMP "fragmentation needed" then
    /// lowers the MSS, see `icmp.rs`); 0: they do not, each with its own IP ID.
    path_mtu_discovery: i64 = 1;
    "path_mtu_discovery", Bool, ReadWrite, acts: true, legacy: false,
    "Enable Path MTU Discovery";

    /// 002: 0 off, 1 all, 2 random sampling. FreeBSD default 2 (only with `options STATS`;
    /// recalled from tcp_subr.c, not stated in 002).
    perconn_stats_enable: i64 = 2;
    "perconn_stats_enable", Int(0, 2), ReadWrite, acts: false, legacy: false,
    "Enable per-connection TCP stats gathering";

    /// 002: CSV of template_spec=percent. FreeBSD default empty.
    perconn_stats_sample_rates: String = "";
    "perconn_stats_sample_rates", Str, ReadWrite, acts: false, legacy: false,
    check: check_sample_rates,
    "TCP stats per template sampling rates, in % resolution";

    /// 002 (ms); FreeBSD `TCPTV_PERSMAX` = 60 s.
    persmax: i64 = 60_000;
    "persmax", Int(1, INT_MAX), ReadWrite, acts: true, legacy: false,
    "maximum persistence interval (ms)";

    /// 002 (ms); FreeBSD `TCPTV_PERSMIN` = 5 s.
    persmin: i64 = 5_000;
    "persmin", Int(1, INT_MAX), ReadWrite, acts: true, legacy: false,
    "minimum persistence interval (ms)";

    /// 002: 0 off, 1 IPv4+IPv6, 2 IPv4 only, 3 IPv6 only. FreeBSD default 0.
    pmtud_blackhole_detection: i64 = 0;
    "pmtud_blackhole_detection", Int(0, 3), ReadWrite, acts: true, legacy: false,
    "Path MTU Discovery Black Hole Detection Enabled";

    /// 002; FreeBSD default 1200.
    pmtud_blackhole_mss: i64 = 1200;
    "pmtud_blackhole_mss", Int(0, MSS_MAX), ReadWrite, acts: true, legacy: false,
    "Path MTU Discovery Black Hole Detection lowered MSS";

    /// 002: limit per reassembly queue; FreeBSD `tcp_reass_maxqueuelen` = 100.
    /// Not acted on: the reassembly queue is bounded by the receive window, not by this.
    reass_maxqueuelen: i64 = 100;
    "reass.maxqueuelen", UInt, ReadWrite, acts: true, legacy: false,
    "Maximum number of TCP Segments per Reassembly Queue";

    /// 002 "can be adjusted as a tunable"; FreeBSD uses nmbclusters / 16. plugtcp assumes
    /// nmbclusters = 262144, giving 16384.
    /// Not acted on: the reassembly queue is bounded by the receive window, not by this.
    reass_maxsegments: i64 = 262_144 / 16;
    "reass.maxsegments", Int(0, INT_MAX), Tunable, acts: true, legacy: false,
    "Global maximum number of TCP Segments in Reassembly Queue";

    /// 002. FreeBSD default 1.
    recvbuf_auto: i64 = 1;
    "recvbuf_auto", Bool, ReadWrite, acts: true, legacy: false,
    "Enable automatic receive buffer sizing";

    /// 002. FreeBSD default 2 MB.
    recvbuf_max: i64 = 2 * 1024 * 1024;
    "recvbuf_max", Int(1, INT_MAX), ReadWrite, acts: true, legacy: false,
    "Max size of automatic receive buffer";

    /// 002. FreeBSD default 64 kB.
    recvspace: i64 = 65_536;
    "recvspace", Int(1, INT_MAX), ReadWrite, acts: true, legacy: false,
    "Initial receive socket buffer size";

    /// 002. FreeBSD default 0.
    require_unique_port: i64 = 0;
    "require_unique_port", Bool, ReadWrite, acts: false, legacy: false,
    "Require globally-unique ephemeral port for outgoing connections";

    /// 002. FreeBSD default 0.
    /// Not acted on: retransmitted SYNs keep their options.
    rexmit_drop_options: i64 = 0;
    "rexmit_drop_options", Bool, ReadWrite, acts: false, legacy: false,
    "Drop TCP options from 3rd and later retransmitted SYN";

    /// 002 (ms); FreeBSD `TCPTV_RTOBASE` = 1 s.
    rexmit_initial: i64 = 1_000;
    "rexmit_initial", Int(1, INT_MAX), ReadWrite, acts: true, legacy: false,
    "Initial Retransmission Timeout (ms)";

    /// 002 "near-0 minimum" (ms); FreeBSD `TCPTV_MIN` = hz/33 = 30 ms.
    rexmit_min: i64 = 30;
    "rexmit_min", Int(1, INT_MAX), ReadWrite, acts: true, legacy: false,
    "Minimum Retransmission Timeout (ms)";

    /// 002 "we use 200ms of slop"; FreeBSD `TCPTV_CPU_VAR` = hz/5.
    rexmit_slop: i64 = 200;
    "rexmit_slop", Int(1, INT_MAX), ReadWrite, acts: true, legacy: false,
    "Retransmission Timer Slop (ms)";

    /// 002 "(default is true)". FreeBSD also takes 2 (window scaling only) and 3 (timestamps
    /// only).
    rfc1323: i64 = 1;
    "rfc1323", Int(0, 3), ReadWrite, acts: true, legacy: false,
    "Enable rfc1323 (high performance TCP) extensions";

    /// 002. FreeBSD default 1.
    /// Not acted on: limited transmit is always on.
    rfc3042: i64 = 1;
    "rfc3042", Bool, ReadWrite, acts: false, legacy: false,
    "Enable RFC 3042 (Limited Transmit)";

    /// 002. FreeBSD default 1.
    /// Not acted on: the initial window comes from initcwnd_segments.
    rfc3390: i64 = 1;
    "rfc3390", Bool, ReadWrite, acts: false, legacy: false,
    "Enable RFC 3390 (Increasing TCP's Initial Congestion Window)";

    /// 002. FreeBSD default 1.
    sack_enable: i64 = 1;
    "sack.enable", Bool, ReadWrite, acts: true, legacy: false,
    "Enable/Disable TCP SACK support";

    /// 002 "Defaults to 65536".
    /// Not acted on: holes are bounded per connection (sack.maxholes) only.
    sack_globalmaxholes: i64 = 65_536;
    "sack.globalmaxholes", Int(0, INT_MAX), ReadWrite, acts: true, legacy: false,
    "Global maximum number of TCP SACK holes";

    /// 002 "Defaults to 128".
    sack_maxholes: i64 = 128;
    "sack.maxholes", Int(0, INT_MAX), ReadWrite, acts: true, legacy: false,
    "Maximum number of TCP SACK holes allowed per connection";

    /// 002 "(default is true)". `rfc6675_pipe` is an alias of this variable.
    /// Not acted on: RFC 6675 recovery is always used.
    sack_revised: i64 = 1;
    "sack.revised", Bool, ReadWrite, acts: false, legacy: false,
    "Use revised SACK loss recovery per RFC 6675";

    /// 002. FreeBSD default 1.
    sendbuf_auto: i64 = 1;
    "sendbuf_auto", Bool, ReadWrite, acts: true, legacy: false,
    "Enable automatic send buffer sizing";

    /// 002. FreeBSD default 0.
    /// Not acted on: nothing reads it.
    sendbuf_auto_lowat: i64 = 0;
    "sendbuf_auto_lowat", Bool, ReadWrite, acts: false, legacy: false,
    "Modify threshold for auto send buffer growth to account for SO_SNDLOWAT";

    /// 002. FreeBSD default 8 kB.
    sendbuf_inc: i64 = 8_192;
    "sendbuf_inc", Int(1, INT_MAX), ReadWrite, acts: true, legacy: false,
    "Incrementor step size of automatic send buffer";

    /// 002. FreeBSD default 2 MB.
    sendbuf_max: i64 = 2 * 1024 * 1024;
    "sendbuf_max", Int(1, INT_MAX), ReadWrite, acts: true, legacy: false,
    "Max size of automatic send buffer";

    /// 002. FreeBSD default 32 kB.
    sendspace: i64 = 32_768;
    "sendspace", Int(1, INT_MAX), ReadWrite, acts: true, legacy: false,
    "Initial send socket buffer size";

    /// syncache(4): loader tunable; FreeBSD `TCP_SYNCACHE_BUCKETLIMIT` = 30.
    syncache_bucketlimit: i64 = 30;
    "syncache.bucketlimit", UInt(1, UINT_MAX), Tunable, acts: true, legacy: false,
    "Per-bucket hash limit for syncache";

    /// syncache(4): loader tunable; FreeBSD hashsize * bucketlimit = 512 * 30. When the loader
    /// sets hashsize or bucketlimit but not this, it is recomputed.
    syncache_cachelimit: i64 = 512 * 30;
    "syncache.cachelimit", UInt(1, UINT_MAX), Tunable, acts: true, legacy: false,
    "Overall entry limit for syncache";

    /// syncache(4): loader tunable; FreeBSD `TCP_SYNCACHE_HASHSIZE` = 512 (power of two;
    /// FreeBSD falls back to 512 otherwise, plugtcp rejects).
    syncache_hashsize: i64 = 512;
    "syncache.hashsize", UInt(1, UINT_MAX), Tunable, acts: true, legacy: false,
    check: check_syncache_hashsize,
    "Size of TCP syncache hashtable";

    /// syncache(4): SYN|ACK retransmits; FreeBSD default 3, writes above `TCP_MAXRXTSHIFT`
    /// are EINVAL.
    syncache_rexmtlimit: i64 = 3;
    "syncache.rexmtlimit", UInt(0, TCP_MAXRXTSHIFT), ReadWrite, acts: true, legacy: false,
    "Limit on SYN/ACK retransmissions";

    /// syncache(4): send RST when socket creation fails on the final ACK. FreeBSD default 1.
    /// Not acted on: nothing reads it.
    syncache_rst_on_sock_fail: i64 = 1;
    "syncache.rst_on_sock_fail", Bool, ReadWrite, acts: false, legacy: false,
    "Send reset on socket allocation failure";

    /// 002 "enabled by default".
    syncookies: i64 = 1;
    "syncookies", Bool, ReadWrite, acts: true, legacy: false,
    "Use TCP SYN cookies if the syncache overflows";

    /// 002 / syncookies(4). FreeBSD default 0.
    syncookies_only: i64 = 0;
    "syncookies_only", Bool, ReadWrite, acts: true, legacy: false,
    "Use only TCP SYN cookies";

    /// 002 "(read-only)", loader tunable. FreeBSD auto-sizes from maxsockets with a floor of
    /// 512; plugtcp uses 512. Must be a power of two.
    tcbhashsize: i64 = 512;
    "tcbhashsize", Int(1, INT_MAX), Tunable, acts: false, legacy: false,
    check: check_tcbhashsize,
    "Size of TCP control-block hashtable";

    /// 002 "the default is 1". The SYN cache and the engine drop a segment without a
    /// timestamp on a connection that agreed to them when it is 0.
    tolerate_missing_ts: i64 = 1;
    "tolerate_missing_ts", Bool, ReadWrite, acts: true, legacy: false,
    "Tolerate missing TCP timestamps";

    /// 002 "Default is to use per connection offsets".
    ts_offset_per_conn: i64 = 1;
    "ts_offset_per_conn", Bool, ReadWrite, acts: true, legacy: false,
    "Initialize TCP timestamps per connection instead of per host pair";

    /// 002. FreeBSD default 1. The host is the NIC: it cuts TSO segments into packets.
    tso: i64 = 1;
    "tso", Bool, ReadWrite, acts: true, legacy: false,
    "Enable TCP Segmentation Offload";

    /// 002 "Supported values are between 8 and 1024. The default is 8."
    udp_tunneling_overhead: i64 = 8;
    "udp_tunneling_overhead", UInt(8, 1024), ReadWrite, acts: true, legacy: false,
    "Additional overhead for UDP tunneling (RFC 6951)";

    /// 002 "The default is 0" (disabled); a UDP port number otherwise.
    udp_tunneling_port: i64 = 0;
    "udp_tunneling_port", UInt(0, 65535), ReadWrite, acts: true, legacy: false,
    "Local UDP port for TCP over UDP tunneling (RFC 6951), 0 disables";

    /// 002 (no default stated); FreeBSD `TCP6_MSS` = 1220, floor `TCP_MINMSS` as for mssdflt.
    v6mssdflt: i64 = 1220;
    "v6mssdflt", Int(TCP_MINMSS, MSS_MAX), ReadWrite, acts: true, legacy: false,
    "Default TCP Maximum Segment Size for IPv6";

    /// 002; FreeBSD default 1220.
    v6pmtud_blackhole_mss: i64 = 1220;
    "v6pmtud_blackhole_mss", Int(0, MSS_MAX), ReadWrite, acts: true, legacy: false,
    "Path MTU Discovery IPv6 Black Hole Detection lowered MSS";

    /// Legacy (004): inflight limiting. FreeBSD 5/6 default 1; removed in FreeBSD 7.
    inflight_enable: i64 = 1;
    "inflight.enable", Bool, ReadWrite, acts: false, legacy: true,
    "Enable automatic window limiting";

    /// Legacy (004). FreeBSD default 0.
    inflight_debug: i64 = 0;
    "inflight.debug", Bool, ReadWrite, acts: false, legacy: true,
    "Debug TCP inflight calculations";

    /// Legacy (004): bytes. FreeBSD default 6144.
    inflight_min: i64 = 6_144;
    "inflight.min", Int(0, INT_MAX), ReadWrite, acts: false, legacy: true,
    "Lower-bound for TCP inflight window";

    /// Legacy (004): bytes. FreeBSD default TCP_MAXWIN << TCP_MAX_WINSHIFT.
    inflight_max: i64 = 65_535 << 14;
    "inflight.max", Int(0, INT_MAX), ReadWrite, acts: false, legacy: true,
    "Upper-bound for TCP inflight window";

    /// Legacy (004): "The default value of 20 represents 2 maximal packets".
    inflight_stab: i64 = 20;
    "inflight.stab", Int(0, INT_MAX), ReadWrite, acts: false, legacy: true,
    "Inflight Algorithm Stabilization 20 = 2 packets";

    /// Legacy (004). FreeBSD 5/6 `ss_fltsz_local` = 4.
    local_slowstart_flightsize: i64 = 4;
    "local_slowstart_flightsize", Int(1, INT_MAX), ReadWrite, acts: false, legacy: true,
    "Slow start flight size for local networks";

    /// Legacy (004): RFC 2582 NewReno fast recovery. FreeBSD default 1.
    newreno: i64 = 1;
    "newreno", Bool, ReadWrite, acts: false, legacy: true,
    "Enable NewReno Algorithms";

    /// Legacy (004). FreeBSD default 3.
    sack_initburst: i64 = 3;
    "sack.initburst", Int(0, INT_MAX), ReadWrite, acts: false, legacy: true,
    "Initial number of packets in burst on SACK recovery";

    /// Legacy (001, under TCP_MD5SIG). FreeBSD default 1.
    signature_verify_input: i64 = 1;
    "signature_verify_input", Bool, ReadWrite, acts: false, legacy: true,
    "Verify RFC2385 digests on inbound traffic";

    /// Legacy (004). FreeBSD 5/6 `ss_fltsz` = 1.
    slowstart_flightsize: i64 = 1;
    "slowstart_flightsize", Int(1, INT_MAX), ReadWrite, acts: false, legacy: true,
    "Slow start flight size";
}

fn check_power_of_two(v: i64) -> Result<(), Errno> {
    if v > 0 && (v & (v - 1)) == 0 {
        Ok(())
    } else {
        Err(Errno::EINVAL)
    }
}

fn check_hostcache_hashsize(t: &TcpTunables) -> Result<(), Errno> {
    check_power_of_two(t.hostcache_hashsize)
}

fn check_syncache_hashsize(t: &TcpTunables) -> Result<(), Errno> {
    check_power_of_two(t.syncache_hashsize)
}

fn check_tcbhashsize(t: &TcpTunables) -> Result<(), Errno> {
    check_power_of_two(t.tcbhashsize)
}

fn check_fastopen_ccache_buckets(t: &TcpTunables) -> Result<(), Errno> {
    check_power_of_two(t.fastopen_ccache_buckets)
}

/// `perconn_stats_sample_rates`: empty, or a CSV of `template_spec=percent` with percent 0..=100.
fn check_sample_rates(t: &TcpTunables) -> Result<(), Errno> {
    let s = &t.perconn_stats_sample_rates;
    if s.is_empty() {
        return Ok(());
    }
    for pair in s.split(',') {
        let (spec, pct) = pair.split_once('=').ok_or(Errno::EINVAL)?;
        let pct: u8 = pct.parse().map_err(|_| Errno::EINVAL)?;
        if spec.is_empty() || pct > 100 {
            return Err(Errno::EINVAL);
        }
    }
    Ok(())
}

/// A MIB variable whose value is host run-time state: it appears once the host registers a
/// [`DynamicNode`] under its name.
#[derive(Debug)]
pub struct HostEntry {
    pub name: &'static str,
    pub kind: Kind,
    pub access: Access,
    pub description: &'static str,
}

const fn host(
    name: &'static str,
    kind: Kind,
    access: Access,
    description: &'static str,
) -> HostEntry {
    HostEntry {
        name,
        kind,
        access,
        description,
    }
}

/// MIB variables named in 002 (and mod_cc(4)/syncache(4)) that only the host can compute.
pub static HOST_ENTRIES: &[HostEntry] = &[
    host(
        "net.inet.tcp.cc.algorithm",
        Kind::Str,
        Access::ReadWrite,
        "Default congestion control algorithm",
    ),
    host(
        "net.inet.tcp.cc.available",
        Kind::Str,
        Access::ReadOnly,
        "List available congestion control algorithms",
    ),
    host(
        "net.inet.tcp.fastopen.ccache_list",
        Kind::Opaque,
        Access::ReadOnly,
        "List of all client cookie cache entries",
    ),
    host(
        "net.inet.tcp.fastopen.numkeys",
        Kind::UInt,
        Access::ReadOnly,
        "Number of keys installed",
    ),
    host(
        "net.inet.tcp.fastopen.numpsks",
        Kind::UInt,
        Access::ReadOnly,
        "Number of pre-shared keys installed",
    ),
    host(
        "net.inet.tcp.fastopen.setkey",
        Kind::Opaque,
        Access::WriteOnly,
        "Install a new key",
    ),
    host(
        "net.inet.tcp.fastopen.setpsk",
        Kind::Opaque,
        Access::WriteOnly,
        "Install a new pre-shared key",
    ),
    host(
        "net.inet.tcp.functions_available",
        Kind::Str,
        Access::ReadOnly,
        "list available TCP Function sets",
    ),
    host(
        "net.inet.tcp.functions_default",
        Kind::Str,
        Access::ReadWrite,
        "Set/get the default TCP functions",
    ),
    host(
        "net.inet.tcp.hostcache.count",
        Kind::UInt,
        Access::ReadOnly,
        "Current number of entries in hostcache",
    ),
    host(
        "net.inet.tcp.hostcache.histo",
        Kind::Opaque,
        Access::ReadOnly,
        "Print a histogram of hostcache hashbucket utilization",
    ),
    host(
        "net.inet.tcp.hostcache.list",
        Kind::Str,
        Access::ReadOnly,
        "List of all hostcache entries",
    ),
    host(
        "net.inet.tcp.hostcache.purgenow",
        Kind::Int,
        Access::ReadWrite,
        "Immediately purge all entries",
    ),
    host(
        "net.inet.tcp.pcbcount",
        Kind::UInt,
        Access::ReadOnly,
        "Number of active PCBs",
    ),
    host(
        "net.inet.tcp.reass.cursegments",
        Kind::UInt,
        Access::ReadOnly,
        "Global number of TCP Segments currently in Reassembly Queue",
    ),
    host(
        "net.inet.tcp.sack.globalholes",
        Kind::Int,
        Access::ReadOnly,
        "Global number of TCP SACK holes currently allocated",
    ),
    host(
        "net.inet.tcp.syncache.count",
        Kind::UInt,
        Access::ReadOnly,
        "Current number of entries in syncache",
    ),
    // siftr(4), in `crate::siftr`.
    host(
        "net.inet.siftr.enabled",
        Kind::Bool,
        Access::ReadWrite,
        "switch siftr module operations on/off",
    ),
    host(
        "net.inet.siftr.logfile",
        Kind::Str,
        Access::ReadWrite,
        "file to save siftr log messages to",
    ),
    host(
        "net.inet.siftr.port_filter",
        Kind::UInt,
        Access::ReadWrite,
        "enable packet filter on a TCP port",
    ),
];

/// A second name for a tunable (FreeBSD registers both OIDs on the same variable).
#[derive(Debug)]
pub struct AliasEntry {
    pub name: &'static str,
    pub target: &'static str,
    pub description: &'static str,
}

/// 002: `rfc6675_pipe` is "Deprecated and superseded by sack.revised"; FreeBSD 14 points both
/// OIDs at the same variable.
pub static ALIASES: &[AliasEntry] = &[AliasEntry {
    name: "net.inet.tcp.rfc6675_pipe",
    target: "net.inet.tcp.sack.revised",
    description: "Use calculated pipe/in-flight bytes per RFC 6675 (deprecated, see sack.revised)",
}];

/// A node whose value is computed or stored outside the tunables (CC module parameters, host
/// state). Called without any tree lock held, so it may call back into the tree.
pub trait DynamicNode: Send + Sync {
    fn get(&self) -> SysctlValue;
    /// Parses and applies `v`; EINVAL when it does not parse or is out of range.
    fn set(&self, v: &str) -> Result<(), Errno>;
    fn description(&self) -> String;
    fn read_only(&self) -> bool;
    /// The values `set` accepts, inclusive, when it is a numeric range (an EINVAL then says
    /// so).
    fn range(&self) -> Option<(i64, i64)> {
        None
    }
}

#[derive(Clone, Copy)]
enum Static {
    Tunable(&'static MibEntry),
    Alias(&'static AliasEntry, &'static MibEntry),
    Host(&'static HostEntry),
}

/// Name index over the static tables, built once.
fn static_index() -> &'static BTreeMap<&'static str, Static> {
    static INDEX: OnceLock<BTreeMap<&'static str, Static>> = OnceLock::new();
    INDEX.get_or_init(|| {
        let mut m = BTreeMap::new();
        for e in TUNABLES {
            m.insert(e.name, Static::Tunable(e));
        }
        for a in ALIASES {
            if let Some(t) = TUNABLES.iter().find(|e| e.name == a.target) {
                m.insert(a.name, Static::Alias(a, t));
            }
        }
        for h in HOST_ENTRIES {
            m.insert(h.name, Static::Host(h));
        }
        m
    })
}

/// Looks up the tunable table entry of a name (aliases resolve to their target).
pub fn tunable_entry(name: &str) -> Option<&'static MibEntry> {
    match static_index().get(name)? {
        Static::Tunable(e) | Static::Alias(_, e) => Some(e),
        Static::Host(_) => None,
    }
}

/// Parses an integer as FreeBSD's sysctl(8) does (`strtoimax(s, &end, 0)` with the whole string
/// consumed): optional sign, then `0x` hex, leading-`0` octal, or decimal.
pub fn parse_int(s: &str) -> Result<i64, Errno> {
    let (neg, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let (radix, digits) =
        if let Some(h) = body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
            (16, h)
        } else if body.len() > 1 && body.starts_with('0') {
            (8, &body[1..])
        } else {
            (10, body)
        };
    // from_str_radix would accept a second sign; digits must be digits only.
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Errno::EINVAL);
    }
    let mag = i128::from_str_radix(digits, radix).map_err(|_| Errno::EINVAL)?;
    let v = if neg { -mag } else { mag };
    i64::try_from(v).map_err(|_| Errno::EINVAL)
}

/// Parses `value` for `e` and checks its type range.
fn parse_for(e: &MibEntry, value: &str) -> Result<SysctlValue, Errno> {
    match e.kind {
        Kind::Str | Kind::Opaque => Ok(SysctlValue::Str(value.to_owned())),
        Kind::Int | Kind::UInt | Kind::Bool => {
            if e.kind == Kind::UInt && value.starts_with('-') {
                return Err(Errno::EINVAL);
            }
            let v = parse_int(value)?;
            if v < e.min || v > e.max {
                return Err(Errno::EINVAL);
            }
            Ok(SysctlValue::Int(v))
        }
    }
}

/// Parses, stores and checks one value into `t` (no access check).
fn apply(t: &mut TcpTunables, e: &MibEntry, value: &str) -> Result<(), Errno> {
    let v = parse_for(e, value)?;
    (e.set)(t, v)?;
    match e.check {
        Some(check) => check(t),
        None => Ok(()),
    }
}

/// Roots besides `net.inet.tcp.` that the host hangs dynamic nodes on: siftr(4)'s
/// `net.inet.siftr.*` (host state, so never tunables), `kern.ipc.maxsockbuf` and
/// `kern.ipc.maxsockets`.
pub const OTHER_ROOTS: &[&str] = &["net.inet.siftr.", "kern.ipc."];

/// Names must be `net.inet.tcp.` (or one of [`OTHER_ROOTS`]) followed by non-empty
/// `[A-Za-z0-9_]` components.
fn valid_name(name: &str) -> bool {
    let rest = std::iter::once(PREFIX)
        .chain(OTHER_ROOTS.iter().copied())
        .find_map(|root| name.strip_prefix(root));
    match rest {
        Some(rest) => rest
            .split('.')
            .all(|c| !c.is_empty() && c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')),
        None => false,
    }
}

/// Whether `name` is `prefix` or lies under the node `prefix` (sysctl(8) argument matching).
fn under(name: &str, prefix: &str) -> bool {
    let p = prefix.strip_suffix('.').unwrap_or(prefix);
    p.is_empty()
        || name == p
        || (name.starts_with(p) && name.as_bytes().get(p.len()) == Some(&b'.'))
}

type DynMap = BTreeMap<String, Arc<dyn DynamicNode>>;

/// The `net.inet.tcp` sysctl tree.
pub struct SysctlTree {
    current: ArcSwap<TcpTunables>,
    /// Serializes writers so that concurrent `set`s do not lose each other's update.
    writer: Mutex<()>,
    dynamic: RwLock<DynMap>,
}

impl Default for SysctlTree {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for SysctlTree {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SysctlTree")
            .field("tunables", &self.current.load())
            .finish()
    }
}

impl SysctlTree {
    /// A tree holding FreeBSD's defaults.
    pub fn new() -> Self {
        Self::from_tunables(TcpTunables::default())
    }

    fn from_tunables(t: TcpTunables) -> Self {
        SysctlTree {
            current: ArcSwap::from_pointee(t),
            writer: Mutex::new(()),
            dynamic: RwLock::new(BTreeMap::new()),
        }
    }

    /// Builds a tree with loader(8)-style start-up settings applied in order. Unlike run-time
    /// [`set`](Self::set), `Access::Tunable` variables may be set here; `Access::ReadOnly`
    /// ones still get EPERM. As in FreeBSD, `hostcache.cachelimit` / `syncache.cachelimit`
    /// follow hashsize * bucketlimit unless given explicitly.
    pub fn with_loader_tunables(settings: &[(&str, &str)]) -> Result<Self, Errno> {
        let mut t = TcpTunables::default();
        for (name, value) in settings {
            let e = tunable_entry(name).ok_or(Errno::ENOENT)?;
            if e.access == Access::ReadOnly {
                return Err(Errno::EPERM);
            }
            apply(&mut t, e, value)?;
        }
        let given = |n: &str| settings.iter().any(|(name, _)| *name == n);
        if !given("net.inet.tcp.hostcache.cachelimit") {
            t.hostcache_cachelimit = t
                .hostcache_hashsize
                .saturating_mul(t.hostcache_bucketlimit)
                .min(UINT_MAX);
        }
        if !given("net.inet.tcp.syncache.cachelimit") {
            t.syncache_cachelimit = t
                .syncache_hashsize
                .saturating_mul(t.syncache_bucketlimit)
                .min(UINT_MAX);
        }
        Ok(Self::from_tunables(t))
    }

    /// Lock-free snapshot of the tunables for hot paths; hold it only briefly.
    pub fn snapshot(&self) -> Guard<Arc<TcpTunables>> {
        self.current.load()
    }

    /// Lock-free snapshot that may be kept (e.g. per connection).
    pub fn load_full(&self) -> Arc<TcpTunables> {
        self.current.load_full()
    }

    fn dyn_read(&self) -> std::sync::RwLockReadGuard<'_, DynMap> {
        self.dynamic.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn dyn_node(&self, name: &str) -> Option<Arc<dyn DynamicNode>> {
        self.dyn_read().get(name).cloned()
    }

    /// Reads a variable. ENOENT for an unknown name or a host entry the host has not registered.
    pub fn get(&self, name: &str) -> Result<SysctlValue, Errno> {
        match static_index().get(name) {
            Some(Static::Tunable(e)) | Some(Static::Alias(_, e)) => {
                Ok((e.get)(&self.current.load()))
            }
            Some(Static::Host(h)) if h.access == Access::WriteOnly => {
                self.dyn_node(name).ok_or(Errno::ENOENT)?;
                Err(Errno::EINVAL)
            }
            Some(Static::Host(_)) | None => {
                self.dyn_node(name).map(|n| n.get()).ok_or(Errno::ENOENT)
            }
        }
    }

    /// The range of values a numeric variable takes, inclusive (what an EINVAL for an
    /// out-of-range value should name), if it has one.
    pub fn range(&self, name: &str) -> Option<(i64, i64)> {
        match static_index().get(name) {
            Some(Static::Tunable(e)) | Some(Static::Alias(_, e)) => match e.kind {
                Kind::Int | Kind::UInt | Kind::Bool => Some((e.min, e.max)),
                Kind::Str | Kind::Opaque => None,
            },
            Some(Static::Host(_)) | None => self.dyn_node(name).and_then(|n| n.range()),
        }
    }

    /// Writes a variable as `sysctl name=value` does and returns the old value. ENOENT unknown
    /// name, EPERM read-only (including loader tunables), EINVAL unparsable or out of range.
    pub fn set(&self, name: &str, value: &str) -> Result<SysctlValue, Errno> {
        match static_index().get(name) {
            Some(Static::Tunable(e)) | Some(Static::Alias(_, e)) => self
                .set_many(&[(e.name, value)])
                .map(|mut old| old.remove(0)),
            Some(Static::Host(h)) => {
                let node = self.dyn_node(name).ok_or(Errno::ENOENT)?;
                if !matches!(h.access, Access::ReadWrite | Access::WriteOnly) {
                    return Err(Errno::EPERM);
                }
                Self::set_dynamic(node.as_ref(), value)
            }
            None => {
                let node = self.dyn_node(name).ok_or(Errno::ENOENT)?;
                Self::set_dynamic(node.as_ref(), value)
            }
        }
    }

    fn set_dynamic(node: &dyn DynamicNode, value: &str) -> Result<SysctlValue, Errno> {
        if node.read_only() {
            return Err(Errno::EPERM);
        }
        let old = node.get();
        node.set(value)?;
        Ok(old)
    }

    /// Writes several tunables as one atomic update: readers see all of them or none. Only
    /// tunables (and their aliases) qualify; any error leaves everything unchanged. Returns the
    /// old values in order.
    pub fn set_many(&self, settings: &[(&str, &str)]) -> Result<Vec<SysctlValue>, Errno> {
        let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let cur = self.current.load_full();
        let mut next = (*cur).clone();
        let mut old = Vec::with_capacity(settings.len());
        for (name, value) in settings {
            let e = tunable_entry(name).ok_or(Errno::ENOENT)?;
            if e.access != Access::ReadWrite {
                return Err(Errno::EPERM);
            }
            old.push((e.get)(&next));
            apply(&mut next, e, value)?;
        }
        self.current.store(Arc::new(next));
        Ok(old)
    }

    /// `sysctl -a` / `sysctl net.inet.tcp.sack`: every existing name equal to or under
    /// `prefix` (empty or `net.inet.tcp` for all), in name order.
    pub fn list(&self, prefix: &str) -> Vec<(String, SysctlValue)> {
        let t = self.current.load_full();
        let write_only = |n: &str| matches!(static_index().get(n), Some(Static::Host(h)) if h.access == Access::WriteOnly);
        let dynamic: Vec<(String, Arc<dyn DynamicNode>)> = self
            .dyn_read()
            .iter()
            .filter(|(n, _)| under(n, prefix) && !write_only(n))
            .map(|(n, node)| (n.clone(), Arc::clone(node)))
            .collect();
        // The dynamic lock is released before calling into nodes.
        let mut out: BTreeMap<String, SysctlValue> = dynamic
            .into_iter()
            .map(|(n, node)| (n, node.get()))
            .collect();
        for (name, s) in static_index() {
            if !under(name, prefix) {
                continue;
            }
            match s {
                Static::Tunable(e) | Static::Alias(_, e) => {
                    out.insert((*name).to_owned(), (e.get)(&t));
                }
                Static::Host(_) => {} // present only if registered, already collected
            }
        }
        out.into_iter().collect()
    }

    /// `sysctl -d name`.
    pub fn describe(&self, name: &str) -> Result<Cow<'static, str>, Errno> {
        match static_index().get(name) {
            Some(Static::Tunable(e)) => Ok(Cow::Borrowed(e.description)),
            Some(Static::Alias(a, _)) => Ok(Cow::Borrowed(a.description)),
            Some(Static::Host(h)) => match self.dyn_node(name) {
                Some(_) => Ok(Cow::Borrowed(h.description)),
                None => Err(Errno::ENOENT),
            },
            None => self
                .dyn_node(name)
                .map(|n| Cow::Owned(n.description()))
                .ok_or(Errno::ENOENT),
        }
    }

    /// Adds a run-time node. EINVAL for a malformed name (must be `net.inet.tcp.` + components);
    /// EEXIST if the name is taken, is an interior node of existing names, or lies under an
    /// existing leaf. Names of [`HOST_ENTRIES`] are free until registered.
    pub fn register_dynamic(&self, name: &str, node: Arc<dyn DynamicNode>) -> Result<(), Errno> {
        if !valid_name(name) {
            return Err(Errno::EINVAL);
        }
        let mut dynamic = self.dynamic.write().unwrap_or_else(PoisonError::into_inner);
        if dynamic.contains_key(name) {
            return Err(Errno::EEXIST);
        }
        let clashes = |other: &str| {
            (other == name && !matches!(static_index().get(other), Some(Static::Host(_))))
                || (other.len() > name.len() && under(other, name))
                || (name.len() > other.len() && under(name, other))
        };
        if static_index().keys().any(|n| clashes(n)) || dynamic.keys().any(|n| clashes(n)) {
            return Err(Errno::EEXIST);
        }
        dynamic.insert(name.to_owned(), node);
        Ok(())
    }

    /// Removes a run-time node; ENOENT if it is not registered.
    pub fn unregister_dynamic(&self, name: &str) -> Result<(), Errno> {
        let mut dynamic = self.dynamic.write().unwrap_or_else(PoisonError::into_inner);
        dynamic.remove(name).map(|_| ()).ok_or(Errno::ENOENT)
    }
}

/// docs/sysctls.md: every tunable of [`TUNABLES`] with FreeBSD's default, its range, who may
/// write it, whether plugtcp acts on it and its description. Generated, so the document and
/// the tree cannot drift apart (host/cli/tests/sysctl_docs.rs compares them).
pub fn markdown_table() -> String {
    use std::fmt::Write as _;
    let mut rows: Vec<&MibEntry> = TUNABLES.iter().collect();
    rows.sort_by_key(|e| e.name);
    let acting = rows.iter().filter(|e| e.acts).count();
    let mut out = String::from(
        "# net.inet.tcp sysctls\n\n\
         Generated from `TUNABLES` in host/core/src/sysctl.rs; `host/cli/tests/sysctl_docs.rs` fails when \
         this file and the table disagree (`PLUGTCP_BLESS=1 cargo test --release -p \
         plugtcp --test sysctl_docs` rewrites it).\n\n\
         Every MIB variable of FreeBSD's tcp(4) that means something in a userspace stack, with \
         FreeBSD's default. **acts**: yes when plugtcp's behaviour follows the value; no when \
         the value is accepted, range-checked and reported only. **access**: `rw`; `tunable` \
         (loader only: set with `--sysctl` at start-up, EPERM later); `ro` (EPERM). \
         **tcp(4)**: `older` for variables found only in older editions of the man page. \
         Bad values are EINVAL, unknown names ENOENT.\n\n",
    );
    let _ = writeln!(
        out,
        "{} variables, {} of which act.\n\n\
         | variable | default | range | access | acts | tcp(4) | description |\n\
         | --- | --- | --- | --- | --- | --- | --- |",
        rows.len(),
        acting
    );
    for e in rows {
        let default = match e.default_value() {
            SysctlValue::Str(s) if s.is_empty() => "(empty)".to_owned(),
            SysctlValue::Str(s) => format!("`{s}`"),
            v => v.to_string(),
        };
        let range = match e.kind {
            Kind::Bool => "0, 1".to_owned(),
            Kind::Str => "string".to_owned(),
            Kind::Opaque => "opaque".to_owned(),
            Kind::Int | Kind::UInt => format!("{} to {}", e.min, e.max),
        };
        let access = match e.access {
            Access::ReadWrite => "rw",
            Access::Tunable => "tunable",
            Access::ReadOnly => "ro",
            Access::WriteOnly => "wo",
        };
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} | {} | {} | {} |",
            e.name.strip_prefix(PREFIX).unwrap_or(e.name),
            default,
            range,
            access,
            if e.acts { "yes" } else { "no" },
            if e.legacy { "older" } else { "current" },
            e.description.replace('|', "\\|")
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

    const N: &str = "net.inet.tcp.";

    fn name(s: &str) -> String {
        format!("{N}{s}")
    }

    /// A CC-module-style integer parameter with a range.
    struct IntNode {
        v: AtomicI64,
        min: i64,
        max: i64,
        ro: bool,
    }

    impl DynamicNode for IntNode {
        fn get(&self) -> SysctlValue {
            SysctlValue::Int(self.v.load(Ordering::Relaxed))
        }
        fn set(&self, v: &str) -> Result<(), Errno> {
            let v = parse_int(v)?;
            if v < self.min || v > self.max {
                return Err(Errno::EINVAL);
            }
            self.v.store(v, Ordering::Relaxed);
            Ok(())
        }
        fn description(&self) -> String {
            "newreno beta".to_owned()
        }
        fn read_only(&self) -> bool {
            self.ro
        }
    }

    fn int_node(v: i64, ro: bool) -> Arc<IntNode> {
        Arc::new(IntNode {
            v: AtomicI64::new(v),
            min: 1,
            max: 100,
            ro,
        })
    }

    #[test]
    fn table_has_unique_names_and_one_entry_per_field() {
        let mut names = HashSet::new();
        for n in TUNABLES
            .iter()
            .map(|e| e.name)
            .chain(HOST_ENTRIES.iter().map(|h| h.name))
            .chain(ALIASES.iter().map(|a| a.name))
        {
            assert!(names.insert(n), "duplicate {n}");
            assert!(valid_name(n), "malformed {n}");
        }
        // Every field has exactly one entry, and the field is the path with '.' -> '_'.
        let dbg = format!("{:?}", TcpTunables::default());
        let field_count = dbg.matches(": ").count();
        assert_eq!(field_count, TUNABLES.len());
        let mut fields = HashSet::new();
        for e in TUNABLES {
            assert!(fields.insert(e.field), "field {} twice", e.field);
            assert_eq!(e.name.strip_prefix(N).unwrap().replace('.', "_"), e.field);
            assert!(
                dbg.contains(&format!(" {}: ", e.field)),
                "{} not a field",
                e.field
            );
        }
        for a in ALIASES {
            assert!(
                tunable_entry(a.target).is_some(),
                "alias {} dangles",
                a.name
            );
        }
    }

    #[test]
    fn every_name_of_002_is_known() {
        // Each `.It Va` of 002's MIB section, minus pure nodes (cc, cc.newreno, hostcache,
        // syncache). "newcwd" is 002's typo of newcwv.
        let va = "always_keepalive blackhole blackhole_local delacktime delayed_ack do_lrd do_prr \
            do_prr_conservative do_tcpdrain drop_synfin ecn.enable ecn.maxretries \
            fast_finwait2_recycle fastopen.acceptany fastopen.autokey fastopen.ccache_bucket_limit \
            fastopen.ccache_buckets fastopen.ccache_list fastopen.client_enable fastopen.keylen \
            fastopen.maxkeys fastopen.maxpsks fastopen.numkeys fastopen.numpsks \
            fastopen.path_disable_time fastopen.psk_enable fastopen.server_enable fastopen.setkey \
            fastopen.setpsk finwait2_timeout functions_available functions_default \
            functions_inherit_listen_socket_stack hostcache.bucketlimit hostcache.cachelimit \
            hostcache.count hostcache.enable hostcache.expire hostcache.hashsize hostcache.histo \
            hostcache.list hostcache.prune hostcache.purge hostcache.purgenow icmp_may_rst \
            initcwnd_segments insecure_rst insecure_syn isn_reseed_interval keepcnt keepidle \
            keepinit keepintvl log_in_vain maxtcptw minmss msl mssdflt newcwv nolocaltimewait \
            path_mtu_discovery pcbcount perconn_stats_enable perconn_stats_sample_rates persmax \
            persmin pmtud_blackhole_detection pmtud_blackhole_mss reass.cursegments \
            reass.maxqueuelen reass.maxsegments recvbuf_auto recvbuf_max recvspace \
            require_unique_port rexmit_drop_options rexmit_initial rexmit_min rexmit_slop rfc1323 \
            rfc3042 rfc3390 rfc6675_pipe sack.enable sack.globalholes sack.globalmaxholes \
            sack.maxholes sack.revised sendbuf_auto sendbuf_auto_lowat sendbuf_inc sendbuf_max \
            sendspace syncookies syncookies_only tcbhashsize tolerate_missing_ts \
            ts_offset_per_conn tso udp_tunneling_overhead udp_tunneling_port v6mssdflt \
            v6pmtud_blackhole_mss";
        for v in va.split_whitespace() {
            let n = name(v);
            assert!(static_index().contains_key(n.as_str()), "{n} missing");
            if let Some(e) = tunable_entry(&n) {
                assert!(!e.legacy, "{n} is in 002, not legacy");
            }
        }
    }

    #[test]
    fn defaults_read_back_and_rewrite() {
        let tree = SysctlTree::new();
        for e in TUNABLES {
            let d = e.default_value();
            assert_eq!(tree.get(e.name).unwrap(), d, "{}", e.name);
            if let SysctlValue::Int(v) = d {
                assert!(
                    v >= e.min && v <= e.max,
                    "{} default out of its range",
                    e.name
                );
            }
            let r = tree.set(e.name, &d.to_string());
            match e.access {
                Access::ReadWrite => assert_eq!(r, Ok(d.clone()), "{}", e.name),
                _ => assert_eq!(r, Err(Errno::EPERM), "{}", e.name),
            }
            assert_eq!(tree.get(e.name).unwrap(), d);
        }
        assert_eq!(*tree.load_full(), TcpTunables::default());
    }

    #[test]
    fn known_defaults() {
        let t = TcpTunables::default();
        assert_eq!((t.mssdflt, t.minmss, t.v6mssdflt), (536, 216, 1220));
        assert_eq!(
            (t.delacktime, t.rexmit_initial, t.rexmit_min, t.rexmit_slop),
            (40, 1000, 30, 200)
        );
        assert_eq!(
            (t.keepinit, t.keepidle, t.keepintvl, t.keepcnt),
            (75_000, 7_200_000, 75_000, 8)
        );
        assert_eq!((t.persmin, t.persmax, t.msl), (5_000, 60_000, 30_000));
        assert_eq!(
            (t.ecn_enable, t.initcwnd_segments, t.syncache_cachelimit),
            (2, 10, 15_360)
        );
        assert_eq!(
            (t.recvspace, t.sendspace, t.udp_tunneling_overhead),
            (65_536, 32_768, 8)
        );
    }

    #[test]
    fn set_then_get_and_hot_path_sees_it() {
        let tree = SysctlTree::new();
        assert_eq!(
            tree.set(&name("delacktime"), "100"),
            Ok(SysctlValue::Int(40))
        );
        assert_eq!(tree.get(&name("delacktime")), Ok(SysctlValue::Int(100)));
        assert_eq!(tree.snapshot().delacktime, 100);
        // sysctl(8) parses with base 0.
        tree.set(&name("keepcnt"), "0x10").unwrap();
        assert_eq!(tree.snapshot().keepcnt, 16);
        tree.set(&name("keepcnt"), "010").unwrap();
        assert_eq!(tree.snapshot().keepcnt, 8);
        tree.set(&name("perconn_stats_sample_rates"), "foo=10,bar=100")
            .unwrap();
        assert_eq!(
            tree.get(&name("perconn_stats_sample_rates"))
                .unwrap()
                .to_string(),
            "foo=10,bar=100"
        );
        assert_eq!(
            tree.set(&name("perconn_stats_sample_rates"), "foo=101"),
            Err(Errno::EINVAL)
        );
    }

    #[test]
    fn rejects_garbage_and_out_of_range() {
        let tree = SysctlTree::new();
        let o = name("udp_tunneling_overhead");
        assert_eq!(tree.set(&o, "7"), Err(Errno::EINVAL));
        assert_eq!(tree.set(&o, "1025"), Err(Errno::EINVAL));
        assert!(tree.set(&o, "8").is_ok());
        assert!(tree.set(&o, "1024").is_ok());
        assert_eq!(tree.get(&o), Ok(SysctlValue::Int(1024)));
        for bad in [
            "",
            "abc",
            "12x",
            "1 ",
            " 1",
            "--1",
            "+-1",
            "0x",
            "1.5",
            "99999999999999999999999",
        ] {
            assert_eq!(
                tree.set(&name("keepcnt"), bad),
                Err(Errno::EINVAL),
                "{bad:?}"
            );
        }
        assert_eq!(tree.set(&name("sack.maxholes"), "-1"), Err(Errno::EINVAL));
        assert_eq!(
            tree.set(&name("udp_tunneling_port"), "-0"),
            Err(Errno::EINVAL)
        ); // u_int
        assert_eq!(tree.set(&name("sack.enable"), "2"), Err(Errno::EINVAL)); // bool
        assert_eq!(tree.set(&name("mssdflt"), "215"), Err(Errno::EINVAL)); // < TCP_MINMSS
        assert_eq!(tree.set(&name("delacktime"), "0"), Err(Errno::EINVAL)); // < 1 tick
        assert_eq!(
            tree.set(&name("syncache.rexmtlimit"), "13"),
            Err(Errno::EINVAL)
        );
        // Failed writes change nothing.
        assert_eq!(
            *tree.load_full(),
            TcpTunables {
                udp_tunneling_overhead: 1024,
                ..Default::default()
            }
        );
    }

    #[test]
    fn eperm_and_enoent() {
        let tree = SysctlTree::new();
        assert_eq!(
            tree.set(&name("syncache.hashsize"), "1024"),
            Err(Errno::EPERM)
        );
        assert_eq!(tree.set(&name("fastopen.keylen"), "16"), Err(Errno::EPERM));
        assert_eq!(tree.get(&name("nosuch")), Err(Errno::ENOENT));
        assert_eq!(tree.set(&name("nosuch"), "1"), Err(Errno::ENOENT));
        assert_eq!(tree.describe(&name("nosuch")), Err(Errno::ENOENT));
        assert_eq!(tree.get("net.inet.tcp"), Err(Errno::ENOENT)); // a node, not a variable
                                                                  // Host entries do not exist until registered.
        assert_eq!(tree.get(&name("pcbcount")), Err(Errno::ENOENT));
        assert_eq!(
            tree.describe(&name("mssdflt")).unwrap(),
            "Default TCP Maximum Segment Size"
        );
    }

    #[test]
    fn loader_tunables() {
        let tree = SysctlTree::with_loader_tunables(&[
            ("net.inet.tcp.syncache.hashsize", "1024"),
            ("net.inet.tcp.hostcache.cachelimit", "100"),
            ("net.inet.tcp.mssdflt", "1460"),
        ])
        .unwrap();
        let t = tree.snapshot();
        assert_eq!(
            (t.syncache_hashsize, t.syncache_cachelimit),
            (1024, 1024 * 30)
        );
        assert_eq!((t.hostcache_cachelimit, t.mssdflt), (100, 1460));
        let e = |s: &[(&str, &str)]| SysctlTree::with_loader_tunables(s).err();
        assert_eq!(
            e(&[("net.inet.tcp.syncache.hashsize", "1000")]),
            Some(Errno::EINVAL)
        );
        assert_eq!(
            e(&[("net.inet.tcp.hostcache.hashsize", "0")]),
            Some(Errno::EINVAL)
        );
        assert_eq!(
            e(&[("net.inet.tcp.fastopen.keylen", "8")]),
            Some(Errno::EPERM)
        );
        assert_eq!(e(&[("net.inet.tcp.nosuch", "8")]), Some(Errno::ENOENT));
    }

    #[test]
    fn alias_shares_the_variable() {
        let tree = SysctlTree::new();
        assert_eq!(
            tree.set(&name("rfc6675_pipe"), "0"),
            Ok(SysctlValue::Int(1))
        );
        assert_eq!(tree.get(&name("sack.revised")), Ok(SysctlValue::Int(0)));
        assert_eq!(tree.snapshot().sack_revised, 0);
        assert!(tree
            .describe(&name("rfc6675_pipe"))
            .unwrap()
            .contains("deprecated"));
    }

    #[test]
    fn dynamic_nodes() {
        let tree = SysctlTree::new();
        let beta = name("cc.newreno.beta");
        tree.register_dynamic(&beta, int_node(50, false)).unwrap();
        assert_eq!(
            tree.register_dynamic(&beta, int_node(1, false)),
            Err(Errno::EEXIST)
        );
        assert_eq!(
            tree.register_dynamic(&name("mssdflt"), int_node(1, false)),
            Err(Errno::EEXIST)
        );
        assert_eq!(
            tree.register_dynamic(&name("rfc6675_pipe"), int_node(1, false)),
            Err(Errno::EEXIST)
        );
        assert_eq!(
            tree.register_dynamic(&name("sack"), int_node(1, false)),
            Err(Errno::EEXIST)
        );
        assert_eq!(
            tree.register_dynamic(&name("mssdflt.x"), int_node(1, false)),
            Err(Errno::EEXIST)
        );
        assert_eq!(
            tree.register_dynamic(&name("cc.newreno"), int_node(1, false)),
            Err(Errno::EEXIST)
        );
        assert_eq!(
            tree.register_dynamic("kern.foo", int_node(1, false)),
            Err(Errno::EINVAL)
        );
        assert_eq!(
            tree.register_dynamic(&name("a..b"), int_node(1, false)),
            Err(Errno::EINVAL)
        );

        assert_eq!(tree.get(&beta), Ok(SysctlValue::Int(50)));
        assert_eq!(tree.set(&beta, "70"), Ok(SysctlValue::Int(50)));
        assert_eq!(tree.get(&beta), Ok(SysctlValue::Int(70)));
        assert_eq!(tree.set(&beta, "101"), Err(Errno::EINVAL));
        assert_eq!(tree.describe(&beta).unwrap(), "newreno beta");

        // Host entries: registrable once, read-only per table or node.
        tree.register_dynamic(&name("pcbcount"), int_node(3, false))
            .unwrap();
        assert_eq!(
            tree.register_dynamic(&name("pcbcount"), int_node(3, false)),
            Err(Errno::EEXIST)
        );
        assert_eq!(tree.get(&name("pcbcount")), Ok(SysctlValue::Int(3)));
        assert_eq!(tree.set(&name("pcbcount"), "4"), Err(Errno::EPERM));
        assert_eq!(
            tree.describe(&name("pcbcount")).unwrap(),
            "Number of active PCBs"
        );
        tree.register_dynamic(&name("cc.newreno.beta_ecn"), int_node(80, true))
            .unwrap();
        assert_eq!(
            tree.set(&name("cc.newreno.beta_ecn"), "81"),
            Err(Errno::EPERM)
        );

        let cc = tree.list(&name("cc"));
        let names: Vec<&str> = cc.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "net.inet.tcp.cc.abe",
                "net.inet.tcp.cc.abe_frlossreduce",
                "net.inet.tcp.cc.hystartplusplus.css_growth_div",
                "net.inet.tcp.cc.hystartplusplus.css_rounds",
                "net.inet.tcp.cc.hystartplusplus.maxrtt_thresh",
                "net.inet.tcp.cc.hystartplusplus.minrtt_thresh",
                "net.inet.tcp.cc.hystartplusplus.n_rttsamples",
                "net.inet.tcp.cc.newreno.beta",
                "net.inet.tcp.cc.newreno.beta_ecn"
            ]
        );
        assert!(tree
            .list("")
            .iter()
            .any(|(n, v)| n == "net.inet.tcp.pcbcount" && *v == SysctlValue::Int(3)));

        tree.unregister_dynamic(&beta).unwrap();
        assert_eq!(tree.unregister_dynamic(&beta), Err(Errno::ENOENT));
        assert_eq!(tree.get(&beta), Err(Errno::ENOENT));
        tree.register_dynamic(&beta, int_node(1, false)).unwrap();
    }

    /// A node that reads the tree from inside `get`: must not deadlock.
    struct Reentrant(Arc<SysctlTree>);
    impl DynamicNode for Reentrant {
        fn get(&self) -> SysctlValue {
            SysctlValue::Int(self.0.list(&name("sack")).len() as i64)
        }
        fn set(&self, _: &str) -> Result<(), Errno> {
            Err(Errno::EINVAL)
        }
        fn description(&self) -> String {
            String::new()
        }
        fn read_only(&self) -> bool {
            true
        }
    }

    #[test]
    fn node_may_call_back_into_tree() {
        let tree = Arc::new(SysctlTree::new());
        tree.register_dynamic(&name("x.count"), Arc::new(Reentrant(Arc::clone(&tree))))
            .unwrap();
        assert!(!tree.list("").is_empty());
        assert_eq!(tree.get(&name("x.count")), Ok(SysctlValue::Int(5)));
    }

    #[test]
    fn list_order_and_prefix() {
        let tree = SysctlTree::new();
        let all = tree.list("");
        assert_eq!(all, tree.list("net.inet.tcp"));
        assert_eq!(all, tree.list("net.inet.tcp."));
        assert_eq!(all.len(), TUNABLES.len() + ALIASES.len());
        assert!(all.windows(2).all(|w| w[0].0 < w[1].0));
        let sack: Vec<String> = tree
            .list(&name("sack"))
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(
            sack,
            [
                "enable",
                "globalmaxholes",
                "initburst",
                "maxholes",
                "revised"
            ]
            .map(|s| name(&format!("sack.{s}")))
        );
        // A leaf name lists itself; a string prefix that is not a node boundary lists nothing.
        assert_eq!(
            tree.list(&name("mssdflt")),
            vec![(name("mssdflt"), SysctlValue::Int(536))]
        );
        assert!(tree.list(&name("mss")).is_empty());
        assert!(tree.list("net.inet.udp").is_empty());
    }

    #[test]
    fn readers_never_see_a_torn_struct() {
        let tree = Arc::new(SysctlTree::new());
        // Invariant kept by every writer: keepidle == 1000 * keepintvl.
        tree.set_many(&[(&name("keepidle"), "1000"), (&name("keepintvl"), "1")])
            .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let start = Arc::new(std::sync::Barrier::new(3));
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let (tree, stop, start) =
                    (Arc::clone(&tree), Arc::clone(&stop), Arc::clone(&start));
                std::thread::spawn(move || {
                    let mut seen = 0u32;
                    start.wait();
                    // Keep reading until the writer is done, and at least a few times.
                    while !stop.load(Ordering::Relaxed) || seen < 100 {
                        let s = tree.snapshot();
                        let idle = s.keepidle;
                        std::thread::yield_now();
                        assert_eq!(idle, 1000 * s.keepintvl);
                        assert_eq!(idle, s.keepidle, "a snapshot changed under its reader");
                        seen += 1;
                    }
                    seen
                })
            })
            .collect();
        let held = tree.load_full();
        start.wait();
        for i in 2..300 {
            let (idle, intvl) = ((1000 * i).to_string(), i.to_string());
            tree.set_many(&[(&name("keepidle"), &idle), (&name("keepintvl"), &intvl)])
                .unwrap();
        }
        // A failing batch publishes nothing.
        assert_eq!(
            tree.set_many(&[(&name("keepidle"), "5"), (&name("keepintvl"), "0")]),
            Err(Errno::EINVAL)
        );
        stop.store(true, Ordering::Relaxed);
        for r in readers {
            assert!(r.join().unwrap() > 0);
        }
        assert_eq!((held.keepidle, held.keepintvl), (1000, 1));
        assert_eq!(
            (tree.snapshot().keepidle, tree.snapshot().keepintvl),
            (299_000, 299)
        );
    }
}
