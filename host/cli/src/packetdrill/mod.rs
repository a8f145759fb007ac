//! `plugtcp packetdrill`: runs packetdrill scripts against one plugtcp host on the virtual
//! clock, the script playing the remote peer. A ten-second script runs in milliseconds and
//! gives the same result every time.
//!
//! - `plugtcp_packetdrill` (host/packetdrill): the script language, parsed to an AST
//! - [`exec`]: the event loop (time, packets in and out, blocking calls)
//! - [`packet`]: building injected packets and reading the host's
//! - [`syscall`]: system calls through the POSIX socket layer ([`plugtcp_host::posix`])
//! - [`command`]: backtick commands (`sysctl`, `sockstat`, `tcpdrop`, the shell)
//! - [`code`]: the `%{ }%` assertions, evaluated without Python
//! - [`symbols`]: the names scripts use

pub mod code;
pub mod command;
pub mod exec;
pub mod packet;
pub mod symbols;
pub mod syscall;

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use plugtcp_packetdrill::{parse_script, IpVersion, Script};

/// How to run scripts: packetdrill's command-line options plus plugtcp's own. A field
/// left `None` takes the script's `--option` line, else packetdrill's default.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    pub ip_version: Option<IpVersion>,
    pub tolerance_usecs: Option<u64>,
    pub tolerance_percent: Option<f64>,
    pub tcp_ts_tick_usecs: Option<u64>,
    pub local_ip: Option<String>,
    pub remote_ip: Option<String>,
    pub bind_port: Option<u16>,
    pub connect_port: Option<u16>,
    /// `--non_fatal=packet,syscall`: such failures are warnings.
    pub non_fatal: Vec<String>,
    /// `--define NAME[=VALUE]` for `#ifdef` and word substitution.
    pub defines: Vec<String>,
    /// Each outbound script packet matches exactly one packet the host sent (no merging
    /// of consecutive segments, Google's default with a TSO device).
    pub strict_segments: bool,
    /// Function block and CC module new connections get (`functions_default`,
    /// `cc.algorithm`).
    pub stack: Option<String>,
    pub cc: Option<String>,
    /// Record every event with its virtual time in the report.
    pub verbose: bool,
    /// Write every packet in and out to this pcap file.
    pub pcap: Option<PathBuf>,
    /// Seed of the host's secrets and ports (fixed: runs repeat).
    pub seed: u64,
}

/// The settings a script runs with, the command line's over the script's over
/// packetdrill's defaults.
#[derive(Clone, Debug)]
pub struct Settings {
    pub ip_version: IpVersion,
    /// The host's address and the script's (the remote peer's), as the wire has them.
    pub local_ip: IpAddr,
    pub remote_ip: IpAddr,
    pub bind_port: u16,
    pub connect_port: u16,
    pub tolerance_usecs: u64,
    pub tolerance_percent: f64,
    pub tcp_ts_tick_usecs: u64,
    pub non_fatal_packet: bool,
    pub non_fatal_syscall: bool,
    pub strict_segments: bool,
    /// `--tcp_md5_secret` (nplab): the TCP-MD5 key for the script's peer, as the test
    /// harness's setkey(8) would install it in the SADB.
    pub tcp_md5_secret: Option<String>,
}

impl Settings {
    /// Combines `opts` with the script's own option lines. Errors name the bad value.
    pub fn resolve(opts: &RunOptions, script: &Script) -> Result<Settings, String> {
        let sc = script.config().map_err(|e| e.to_string())?;
        let ip_version = opts.ip_version.or(sc.ip_version).unwrap_or(IpVersion::Ipv4);
        let v6_wire = ip_version == IpVersion::Ipv6;
        let ip = |given: Option<&String>, dflt: &str| -> Result<IpAddr, String> {
            let text = given.map_or(dflt, String::as_str);
            // packetdrill takes "192.0.2.1/24": the prefix length does not matter here.
            let addr = text.split('/').next().unwrap_or(text);
            let parsed: IpAddr = addr
                .parse()
                .map_err(|_| format!("bad IP address: {text}"))?;
            // An IPv4-mapped address goes on the wire as IPv4.
            Ok(match parsed {
                IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(parsed, IpAddr::V4),
                v4 => v4,
            })
        };
        let (dlocal, dremote) = if v6_wire {
            ("fd3d:fa7b:d17d::1", "2001:db8::1")
        } else {
            ("192.168.0.1", "192.0.2.1")
        };
        let local_ip = ip(opts.local_ip.as_ref().or(sc.local_ip.as_ref()), dlocal)?;
        let remote_ip = ip(opts.remote_ip.as_ref().or(sc.remote_ip.as_ref()), dremote)?;
        if local_ip.is_ipv6() != v6_wire || remote_ip.is_ipv6() != v6_wire {
            return Err(format!(
                "--local_ip {local_ip} and --remote_ip {remote_ip} do not fit --ip_version"
            ));
        }
        let non_fatal = |what: &str| {
            opts.non_fatal
                .iter()
                .any(|n| n.split(',').any(|k| k == what))
        };
        Ok(Settings {
            ip_version,
            local_ip,
            remote_ip,
            bind_port: opts.bind_port.or(sc.bind_port).unwrap_or(8080),
            connect_port: opts.connect_port.or(sc.connect_port).unwrap_or(8080),
            tolerance_usecs: opts.tolerance_usecs.or(sc.tolerance_usecs).unwrap_or(4000),
            tolerance_percent: opts
                .tolerance_percent
                .or(sc.tolerance_percent)
                .unwrap_or(0.0),
            tcp_ts_tick_usecs: opts.tcp_ts_tick_usecs.or(sc.tcp_ts_tick_usecs).unwrap_or(0),
            non_fatal_packet: sc.non_fatal_packet || non_fatal("packet"),
            non_fatal_syscall: sc.non_fatal_syscall || non_fatal("syscall"),
            strict_segments: opts.strict_segments,
            tcp_md5_secret: sc.tcp_md5_secret.clone(),
        })
    }
}

/// How a script ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Pass,
    Fail,
    /// It failed, and a `.exfail` file beside it says it is expected to.
    ExpectedFail,
    /// It passed although a `.exfail` file says it should fail (counted as a failure, so
    /// the file gets removed).
    UnexpectedPass,
}

impl Verdict {
    pub fn ok(self) -> bool {
        matches!(self, Verdict::Pass | Verdict::ExpectedFail)
    }

    pub fn label(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "FAIL",
            Verdict::ExpectedFail => "expected failure",
            Verdict::UnexpectedPass => "UNEXPECTED PASS",
        }
    }
}

/// The result of one script.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ScriptReport {
    pub path: String,
    pub verdict: Verdict,
    /// `SCRIPT:LINE: error ...` with the expected and actual packets, when it failed.
    pub error: Option<String>,
    /// Failures made non-fatal by `--non_fatal`, and other warnings.
    pub warnings: Vec<String>,
    /// With `verbose`: every event with its virtual time.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub log: Vec<String>,
    /// Script time at the end, in microseconds.
    pub virtual_usecs: u64,
}

/// Whether a `.exfail` file marks `path` as expected to fail (`X.pkt.exfail` or
/// `X.exfail`, as FreeBSD's runner looks for).
pub fn expected_to_fail(path: &Path) -> bool {
    let mut beside = path.as_os_str().to_owned();
    beside.push(".exfail");
    Path::new(&beside).exists() || path.with_extension("exfail").exists()
}

/// The names `#ifdef` sees besides `--define`: `FreeBSD` (the host behaves as FreeBSD, as
/// nplab's runner defines its OS) and the function block under test in capitals (`BASE`
/// unless `--stack` names another), so one script can say where stacks differ.
pub fn implicit_defines(opts: &RunOptions) -> Vec<String> {
    let stack = opts.stack.as_deref().unwrap_or("base");
    vec!["FreeBSD".to_string(), stack.to_ascii_uppercase()]
}

/// Runs the script in `text` (named `path` in messages).
pub fn run_text(path: &str, text: &str, opts: &RunOptions) -> ScriptReport {
    let mut defines = implicit_defines(opts);
    defines.extend(opts.defines.iter().cloned());
    let outcome = match parse_script(path, text, &defines) {
        Err(e) => exec::Outcome::failed(e.to_string()),
        Ok(script) => match Settings::resolve(opts, &script) {
            Err(e) => exec::Outcome::failed(format!("{path}: {e}")),
            Ok(settings) => exec::Runner::new(&script, settings, opts).run(),
        },
    };
    ScriptReport {
        path: path.to_string(),
        verdict: if outcome.error.is_none() {
            Verdict::Pass
        } else {
            Verdict::Fail
        },
        error: outcome.error,
        warnings: outcome.warnings,
        log: outcome.log,
        virtual_usecs: outcome.virtual_usecs,
    }
}

/// Runs the script file at `path`, honouring a `.exfail` file beside it.
pub fn run_file(path: &Path, opts: &RunOptions) -> ScriptReport {
    let name = path.display().to_string();
    let mut report = match std::fs::read_to_string(path) {
        Ok(text) => run_text(&name, &text, opts),
        Err(e) => ScriptReport {
            path: name.clone(),
            verdict: Verdict::Fail,
            error: Some(format!("{name}: cannot read the script: {e}")),
            warnings: Vec::new(),
            log: Vec::new(),
            virtual_usecs: 0,
        },
    };
    if expected_to_fail(path) {
        report.verdict = match report.verdict {
            Verdict::Pass => Verdict::UnexpectedPass,
            _ => Verdict::ExpectedFail,
        };
    }
    report
}
