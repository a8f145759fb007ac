//! Scenario files: what a lab experiment is (see docs/lab.md for the format).
//!
//! A scenario is TOML: `[[link]]` tables in path order (one is a dumbbell, several a chain),
//! `[[flow]]` tables (each its own pair of hosts, CC module, stack, RTT, sysctls and
//! application), seeds for repetitions and a `[sweep]` table whose keys name fields and whose
//! arrays give the values to try. Errors name the file, the line and the field.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::units::{Dur, QueueSize, Rate, Size};

/// One experiment, after sweeps are applied.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// How long each run lasts (flows stop at the latest then).
    pub duration: Dur,
    /// Time series resolution.
    #[serde(default = "default_sample")]
    pub sample: Dur,
    /// First seed and the number of repetitions (seeds `seed`, `seed + 1`, ...).
    #[serde(default = "default_seed")]
    pub seed: u64,
    #[serde(default = "one")]
    pub repetitions: u32,
    /// Each run starts each flow up to this much later than written, drawn from the run's
    /// seed (default: one RTT of the flow when there are several repetitions, else 0), so
    /// repetitions differ even on a link without loss or jitter.
    #[serde(default)]
    pub start_spread: Option<Dur>,
    /// The RTT a queue given in BDPs is measured with (default: the smallest flow RTT).
    #[serde(default)]
    pub bdp_rtt: Option<Dur>,
    /// Sysctls set on every host before its flow's own.
    #[serde(default)]
    pub sysctls: BTreeMap<String, SysctlValue>,
    #[serde(rename = "link")]
    pub links: Vec<LinkSpec>,
    #[serde(rename = "flow")]
    pub flows: Vec<FlowSpec>,
    /// Field paths (`flow.cc`, `link.queue`, `flow.1.rtt`) and the values each takes; the
    /// runs are their cartesian product. Applied before the rest is read.
    #[serde(default, skip_serializing)]
    pub sweep: toml::Table,
}

fn default_sample() -> Dur {
    Dur(100_000_000)
}
fn default_seed() -> u64 {
    1
}
fn one() -> u32 {
    1
}
fn default_queue() -> QueueSize {
    QueueSize::Bdp(1.0)
}
fn default_cc() -> String {
    "newreno".into()
}
fn default_stack() -> String {
    "base".into()
}
fn default_count() -> u32 {
    1
}

/// A sysctl value as written: a string or a number.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(untagged)]
pub enum SysctlValue {
    Int(i64),
    Str(String),
}

impl std::fmt::Display for SysctlValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SysctlValue::Int(i) => write!(f, "{i}"),
            SysctlValue::Str(s) => f.write_str(s),
        }
    }
}

/// The queue discipline of a link's queue.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum QdiscKind {
    #[default]
    DropTail,
    Red,
    Codel,
    FqCodel,
    Pie,
    /// DCTCP-style: CE-mark above `step.threshold`, drop-tail otherwise.
    Step,
}

impl QdiscKind {
    pub fn name(self) -> &'static str {
        match self {
            QdiscKind::DropTail => "drop_tail",
            QdiscKind::Red => "red",
            QdiscKind::Codel => "codel",
            QdiscKind::FqCodel => "fq_codel",
            QdiscKind::Pie => "pie",
            QdiscKind::Step => "step",
        }
    }
}

/// One link of the path (both directions; only the forward one, senders to receivers, has
/// the queue discipline and the loss; the reverse direction has the same rate and delay
/// and an unlimited FIFO).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LinkSpec {
    #[serde(default)]
    pub name: String,
    /// Capacity; or `trace`, `generated_trace` or `schedule` instead.
    #[serde(default)]
    pub bandwidth: Option<Rate>,
    /// One-way propagation delay.
    #[serde(default)]
    pub delay: Dur,
    /// Extra delay drawn uniformly up to this (never reordering).
    #[serde(default)]
    pub jitter: Dur,
    /// Probability that a forward packet is lost before the queue.
    #[serde(default)]
    pub loss: f64,
    #[serde(default = "default_queue")]
    pub queue: QueueSize,
    #[serde(default)]
    pub qdisc: QdiscKind,
    /// AQMs mark ECT packets CE instead of dropping, and every host negotiates ECN.
    #[serde(default)]
    pub ecn: bool,
    #[serde(default)]
    pub red: Option<RedSpec>,
    #[serde(default)]
    pub codel: Option<CodelSpec>,
    #[serde(default)]
    pub fq_codel: Option<FqCodelSpec>,
    #[serde(default)]
    pub pie: Option<PieSpec>,
    #[serde(default)]
    pub step: Option<StepSpec>,
    /// A Mahimahi trace file (relative to the scenario file): one line per 1500-byte
    /// delivery opportunity, in milliseconds.
    #[serde(default)]
    pub trace: Option<PathBuf>,
    /// A cellular-like trace plugtcp generates (deterministic per seed).
    #[serde(default)]
    pub generated_trace: Option<GeneratedTrace>,
    /// Capacity over time: `[{ at = "0s", bandwidth = "50Mbit" }, ...]`.
    #[serde(default)]
    pub schedule: Option<Vec<ScheduleStep>>,
}

#[derive(Clone, Debug, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RedSpec {
    pub min: Option<QueueSize>,
    pub max: Option<QueueSize>,
    pub max_p: Option<f64>,
    pub wq: Option<f64>,
    #[serde(default)]
    pub gentle: bool,
}

#[derive(Clone, Debug, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct CodelSpec {
    pub target: Option<Dur>,
    pub interval: Option<Dur>,
}

#[derive(Clone, Debug, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct FqCodelSpec {
    pub target: Option<Dur>,
    pub interval: Option<Dur>,
    pub flows: Option<u32>,
    pub quantum: Option<u32>,
}

#[derive(Clone, Debug, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct PieSpec {
    pub target: Option<Dur>,
    pub tupdate: Option<Dur>,
    pub alpha: Option<f64>,
    pub beta: Option<f64>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StepSpec {
    /// Mark above this queue (DCTCP's K).
    pub threshold: QueueSize,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GeneratedTrace {
    pub mean: Rate,
    /// 0: constant rate; 1: swings as wide as the mean.
    #[serde(default = "half")]
    pub variability: f64,
    #[serde(default)]
    pub seed: u64,
    /// Length before it repeats.
    #[serde(default = "sixty_s")]
    pub period: Dur,
}

fn half() -> f64 {
    0.5
}
fn sixty_s() -> Dur {
    Dur(60_000_000_000)
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleStep {
    pub at: Dur,
    pub bandwidth: Rate,
}

/// What a flow's application does.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum AppKind {
    /// Always has data to send (until `size` bytes, if given).
    #[default]
    Bulk,
    /// Sends for `on`, is silent for `off`, and again.
    OnOff,
    /// The client sends `request` bytes, the server answers `response` bytes, the client
    /// waits `think` and asks again.
    RequestResponse,
}

/// One flow (or `count` identical ones), each on a host pair of its own.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FlowSpec {
    #[serde(default)]
    pub name: String,
    #[serde(default = "default_cc")]
    pub cc: String,
    #[serde(default = "default_stack")]
    pub stack: String,
    /// Base RTT (default: twice the path's one-way delay): an access link adds what the
    /// path does not.
    #[serde(default)]
    pub rtt: Option<Dur>,
    #[serde(default)]
    pub start: Dur,
    /// The flow closes then (default: the end of the run).
    #[serde(default)]
    pub stop: Option<Dur>,
    /// Bytes to send; the flow completes when they are delivered (flow completion time).
    #[serde(default)]
    pub size: Option<Size>,
    #[serde(default = "default_count")]
    pub count: u32,
    /// The i-th of `count` flows starts `i * stagger` after `start`.
    #[serde(default)]
    pub stagger: Dur,
    #[serde(default)]
    pub sysctls: BTreeMap<String, SysctlValue>,
    #[serde(default)]
    pub app: AppKind,
    /// on_off: how long it sends and how long it rests.
    #[serde(default)]
    pub on: Option<Dur>,
    #[serde(default)]
    pub off: Option<Dur>,
    /// request_response: sizes and the pause between exchanges.
    #[serde(default)]
    pub request: Option<Size>,
    #[serde(default)]
    pub response: Option<Size>,
    #[serde(default)]
    pub think: Option<Dur>,
}

/// A scenario error: where and what.
#[derive(Debug, Clone, PartialEq)]
pub struct ScenarioError {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub field: Option<String>,
    pub message: String,
}

impl std::fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
        }
        write!(f, ": ")?;
        if let Some(field) = &self.field {
            write!(f, "{field}: ")?;
        }
        write!(f, "{}", self.message)
    }
}

/// One run point of a sweep: the scenario with the sweep's values in, and what they were.
#[derive(Clone, Debug)]
pub struct SweepPoint {
    /// `cc=cubic queue=1bdp`, or `base` without a sweep.
    pub label: String,
    pub values: Vec<(String, String)>,
    pub scenario: Scenario,
}

/// A loaded scenario file: its sweep points, each validated.
#[derive(Clone, Debug)]
pub struct ScenarioFile {
    pub path: PathBuf,
    pub name: String,
    pub points: Vec<SweepPoint>,
}

/// Reads and checks `path`.
pub fn load(path: &Path) -> Result<ScenarioFile, ScenarioError> {
    load_with(path, &[])
}

/// As [`load`], with `overrides` (`lab run --set flow.cc=mine`): field paths as `[sweep]`
/// takes them, each set before the sweep is applied.
pub fn load_with(
    path: &Path,
    overrides: &[(String, String)],
) -> Result<ScenarioFile, ScenarioError> {
    let text = std::fs::read_to_string(path).map_err(|e| ScenarioError {
        file: path.to_path_buf(),
        line: None,
        field: None,
        message: e.to_string(),
    })?;
    parse_with(path, &text, overrides)
}

/// A `--set` value as TOML (`0.01`, `true`, `[1, 2]`), or else the text itself (`mine`,
/// `4bdp`).
pub fn override_value(text: &str) -> toml::Value {
    toml::from_str::<toml::Table>(&format!("v = {text}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(text.to_string()))
}

/// Line (1-based) of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// Parses `text` (read from `path`, which relative trace paths are resolved against).
pub fn parse(path: &Path, text: &str) -> Result<ScenarioFile, ScenarioError> {
    parse_with(path, text, &[])
}

/// As [`parse`], with overrides (see [`load_with`]).
pub fn parse_with(
    path: &Path,
    text: &str,
    overrides: &[(String, String)],
) -> Result<ScenarioFile, ScenarioError> {
    let err = |line: Option<usize>, field: Option<String>, message: String| ScenarioError {
        file: path.to_path_buf(),
        line,
        field,
        message,
    };
    let locator = Locator::new(text);
    let from_toml = |e: toml::de::Error| {
        let line = e.span().map(|s| line_of(text, s.start));
        let (field, message) = split_field(e.message());
        err(
            line,
            field.or_else(|| line.and_then(|l| locator.field_at(l))),
            message,
        )
    };
    // The file as written: syntax and field errors come with their spans.
    let mut base: Scenario = toml::from_str(text).map_err(from_toml)?;
    let mut table: toml::Table = toml::from_str(text).map_err(from_toml)?;
    for (key, value) in overrides {
        let set_err = |m: String| err(None, Some(format!("--set {key}")), m);
        set_path(&mut table, key, &override_value(value)).map_err(set_err)?;
        base = toml::Value::Table(table.clone())
            .try_into()
            .map_err(|e: toml::de::Error| set_err(e.message().trim().to_string()))?;
    }
    validate(&base, path, &locator)?;

    let mut points = Vec::new();
    // Axes in the order the file gives them (the labels read as written).
    let mut axes: Vec<(&String, &Vec<toml::Value>)> = Vec::new();
    for (key, values) in &base.sweep {
        let Some(values) = values.as_array() else {
            return Err(err(
                locator.sweep_line(key),
                Some(format!("sweep.{key}")),
                "expected an array of values".into(),
            ));
        };
        axes.push((key, values));
    }
    for (key, values) in &axes {
        if values.is_empty() {
            return Err(err(
                locator.sweep_line(key),
                Some(format!("sweep.{key}")),
                "no values to sweep over".into(),
            ));
        }
    }
    let total: usize = axes.iter().map(|(_, v)| v.len()).product();
    if total > 10_000 {
        return Err(err(
            locator.sweep_line(axes[0].0),
            Some("sweep".into()),
            format!("{total} runs: more than 10000"),
        ));
    }
    for n in 0..total {
        let mut doc = table.clone();
        doc.remove("sweep");
        let mut values = Vec::new();
        let mut rest = n;
        for (key, vals) in &axes {
            let v = &vals[rest % vals.len()];
            rest /= vals.len();
            set_path(&mut doc, key, v)
                .map_err(|m| err(locator.sweep_line(key), Some(format!("sweep.{key}")), m))?;
            values.push((short_key(key), value_text(v)));
        }
        let scenario: Scenario =
            toml::Value::Table(doc)
                .try_into()
                .map_err(|e: toml::de::Error| {
                    let (field, message) = split_field(e.message());
                    // The axis the message names, else the first.
                    let axis = axes
                        .iter()
                        .find(|(k, _)| message.contains(&format!("`{}`", short_key(k))))
                        .or(axes.first());
                    err(
                        axis.and_then(|(k, _)| locator.sweep_line(k)),
                        field.or_else(|| axis.map(|(k, _)| format!("sweep.{k}"))),
                        format!("{message} (with {})", describe(&values)),
                    )
                })?;
        validate(&scenario, path, &locator).map_err(|mut e| {
            e.message = format!("{} (with {})", e.message, describe(&values));
            e
        })?;
        let label = if values.is_empty() {
            "base".to_string()
        } else {
            describe(&values)
        };
        points.push(SweepPoint {
            label,
            values,
            scenario,
        });
    }
    let name = if base.name.is_empty() {
        path.file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "scenario".into())
    } else {
        base.name.clone()
    };
    Ok(ScenarioFile {
        path: path.to_path_buf(),
        name,
        points,
    })
}

fn describe(values: &[(String, String)]) -> String {
    values
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `flow.1.cc` -> `cc`; `link.queue` -> `queue`: what a legend shows.
fn short_key(key: &str) -> String {
    key.rsplit('.')
        .find(|p| p.parse::<usize>().is_err())
        .unwrap_or(key)
        .to_string()
}

fn value_text(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// serde's messages for our structs read "unknown field `x`, expected ..." or "invalid
/// value ...": the field name is pulled out when the message has one in backquotes first.
fn split_field(message: &str) -> (Option<String>, String) {
    let message = message.trim().to_string();
    (None, message)
}

/// Sets `key` (`flow.cc`: every flow's cc; `flow.1.cc`: the second flow's; `duration`) in
/// `doc`.
fn set_path(doc: &mut toml::Table, key: &str, v: &toml::Value) -> Result<(), String> {
    let parts: Vec<&str> = key.split('.').collect();
    fn go(node: &mut toml::Value, parts: &[&str], v: &toml::Value) -> Result<(), String> {
        let Some((&first, rest)) = parts.split_first() else {
            *node = v.clone();
            return Ok(());
        };
        match node {
            toml::Value::Table(t) => {
                if rest.is_empty() {
                    t.insert(first.to_string(), v.clone());
                    return Ok(());
                }
                let child = t
                    .get_mut(first)
                    .ok_or_else(|| format!("there is no `{first}` to set"))?;
                go(child, rest, v)
            }
            toml::Value::Array(a) => {
                if let Ok(i) = first.parse::<usize>() {
                    let n = a.len();
                    let child = a
                        .get_mut(i)
                        .ok_or_else(|| format!("index {i} is past the {n} entries"))?;
                    go(child, rest, v)
                } else {
                    for child in a.iter_mut() {
                        go(child, parts, v)?;
                    }
                    Ok(())
                }
            }
            _ => Err(format!("`{first}` is not inside a table")),
        }
    }
    let mut root = toml::Value::Table(std::mem::take(doc));
    let r = go(&mut root, &parts, v);
    if let toml::Value::Table(t) = root {
        *doc = t;
    }
    r
}

/// Finds the lines of `[[link]]`/`[[flow]]` tables and their fields, and of sweep keys, for
/// errors found after parsing.
struct Locator {
    /// (section, index) -> (header line, field -> line).
    tables: BTreeMap<(String, usize), (usize, BTreeMap<String, usize>)>,
    top: BTreeMap<String, usize>,
    sweep: BTreeMap<String, usize>,
}

impl Locator {
    fn new(text: &str) -> Self {
        let mut tables: BTreeMap<(String, usize), (usize, BTreeMap<String, usize>)> =
            BTreeMap::new();
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        let mut top = BTreeMap::new();
        let mut sweep = BTreeMap::new();
        let mut current: Option<(String, usize)> = None;
        let mut in_sweep = false;
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let l = raw.trim();
            if let Some(name) = l.strip_prefix("[[").and_then(|r| r.split("]]").next()) {
                let name = name.trim().to_string();
                let n = counts.entry(name.clone()).or_insert(0);
                current = Some((name.clone(), *n));
                tables.insert((name, *n), (line, BTreeMap::new()));
                *n += 1;
                in_sweep = false;
                continue;
            }
            if let Some(name) = l.strip_prefix('[').and_then(|r| r.split(']').next()) {
                in_sweep = name.trim() == "sweep";
                // A sub-table of the last [[link]] (`[link.codel]`) stays with it.
                let sub = current
                    .as_ref()
                    .is_some_and(|(s, _)| name.trim().starts_with(&format!("{s}.")));
                if !sub {
                    current = None;
                }
                continue;
            }
            let Some((key, _)) = l.split_once('=') else {
                continue;
            };
            let key = key.trim().trim_matches('"').to_string();
            if in_sweep {
                sweep.insert(key, line);
            } else if let Some(c) = &current {
                if let Some((_, fields)) = tables.get_mut(c) {
                    fields.entry(key).or_insert(line);
                }
            } else {
                top.entry(key).or_insert(line);
            }
        }
        Locator { tables, top, sweep }
    }

    /// The line of `field` in the `index`-th `[[section]]` (or of its header).
    fn line(&self, section: &str, index: usize, field: &str) -> Option<usize> {
        let (header, fields) = self.tables.get(&(section.to_string(), index))?;
        Some(fields.get(field).copied().unwrap_or(*header))
    }

    /// The field written on `line`: `link[0].bandwidth`, `duration`, `sweep.flow.cc`.
    fn field_at(&self, line: usize) -> Option<String> {
        for ((section, index), (_, fields)) in &self.tables {
            if let Some((k, _)) = fields.iter().find(|(_, &l)| l == line) {
                return Some(format!("{section}[{index}].{k}"));
            }
        }
        if let Some((k, _)) = self.sweep.iter().find(|(_, &l)| l == line) {
            return Some(format!("sweep.{k}"));
        }
        self.top
            .iter()
            .find(|(_, &l)| l == line)
            .map(|(k, _)| k.clone())
    }

    fn top_line(&self, field: &str) -> Option<usize> {
        self.top.get(field).copied()
    }

    fn sweep_line(&self, key: &str) -> Option<usize> {
        self.sweep.get(key).copied()
    }
}

/// Checks what the types cannot: consistent fields, names a run needs, files that exist.
fn validate(s: &Scenario, path: &Path, loc: &Locator) -> Result<(), ScenarioError> {
    let err_at = |line: Option<usize>, field: String, message: String| ScenarioError {
        file: path.to_path_buf(),
        line,
        field: Some(field),
        message,
    };
    if s.duration.0 == 0 {
        return Err(err_at(
            loc.top_line("duration"),
            "duration".into(),
            "must be more than 0".into(),
        ));
    }
    if s.sample.0 < 1_000_000 || s.sample > s.duration {
        return Err(err_at(
            loc.top_line("sample"),
            "sample".into(),
            "must be between 1ms and the duration".into(),
        ));
    }
    if s.repetitions == 0 || s.repetitions > 1000 {
        return Err(err_at(
            loc.top_line("repetitions"),
            "repetitions".into(),
            "must be 1 to 1000".into(),
        ));
    }
    if s.links.is_empty() {
        return Err(err_at(
            None,
            "link".into(),
            "a scenario needs at least one [[link]]".into(),
        ));
    }
    if s.flows.is_empty() {
        return Err(err_at(
            None,
            "flow".into(),
            "a scenario needs at least one [[flow]]".into(),
        ));
    }
    let path_delay: u64 = s.links.iter().map(|l| l.delay.0).sum();
    for (i, l) in s.links.iter().enumerate() {
        let at = |f: &str| loc.line("link", i, f);
        let field = |f: &str| format!("link[{i}].{f}");
        let capacities = [
            l.bandwidth.is_some(),
            l.trace.is_some(),
            l.generated_trace.is_some(),
            l.schedule.is_some(),
        ]
        .iter()
        .filter(|&&b| b)
        .count();
        if capacities != 1 {
            return Err(err_at(
                at("bandwidth"),
                field("bandwidth"),
                "give exactly one of bandwidth, trace, generated_trace, schedule".into(),
            ));
        }
        if l.bandwidth == Some(super::units::Rate(0)) {
            return Err(err_at(
                at("bandwidth"),
                field("bandwidth"),
                "must be more than 0".into(),
            ));
        }
        if !(0.0..1.0).contains(&l.loss) {
            return Err(err_at(
                at("loss"),
                field("loss"),
                format!("{} is not a probability below 1", l.loss),
            ));
        }
        if let Some(t) = &l.trace {
            let full = resolve(path, t);
            if !full.is_file() {
                return Err(err_at(
                    at("trace"),
                    field("trace"),
                    format!("no such file: {}", full.display()),
                ));
            }
        }
        if let Some(g) = &l.generated_trace {
            // One line per 1500-byte opportunity: bounded so a trace fits in memory.
            let lines = g.mean.0 as f64 * g.period.secs() / 12_000.0;
            if lines > 50e6 {
                return Err(err_at(
                    at("generated_trace"),
                    field("generated_trace"),
                    format!("{lines:.0} opportunities: more than 50 million (shorten the period)"),
                ));
            }
            if g.mean.0 < 12_000 || !(0.0..=1.0).contains(&g.variability) || g.period.0 < 1_000_000
            {
                return Err(err_at(
                    at("generated_trace"),
                    field("generated_trace"),
                    "mean at least 12kbit, variability 0 to 1, period at least 1ms".into(),
                ));
            }
        }
        if let Some(steps) = &l.schedule {
            if steps.is_empty() || steps[0].at.0 != 0 {
                return Err(err_at(
                    at("schedule"),
                    field("schedule"),
                    "the first step is at 0s".into(),
                ));
            }
            if steps.windows(2).any(|w| w[1].at <= w[0].at)
                || steps.iter().any(|s| s.bandwidth.0 == 0)
            {
                return Err(err_at(
                    at("schedule"),
                    field("schedule"),
                    "steps in increasing time, each with a bandwidth above 0".into(),
                ));
            }
        }
        let wrong_params = [
            ("red", l.red.is_some(), QdiscKind::Red),
            ("codel", l.codel.is_some(), QdiscKind::Codel),
            ("fq_codel", l.fq_codel.is_some(), QdiscKind::FqCodel),
            ("pie", l.pie.is_some(), QdiscKind::Pie),
            ("step", l.step.is_some(), QdiscKind::Step),
        ];
        for (name, given, kind) in wrong_params {
            if given && l.qdisc != kind {
                return Err(err_at(
                    at(name),
                    field(name),
                    format!("parameters of {name}, but the qdisc is {}", l.qdisc.name()),
                ));
            }
        }
        if l.qdisc == QdiscKind::Step && l.step.is_none() {
            return Err(err_at(
                at("qdisc"),
                field("step"),
                "qdisc = \"step\" needs step = { threshold = ... }".into(),
            ));
        }
        if let Some(r) = &l.red {
            if r.max_p.is_some_and(|p| !(p > 0.0 && p <= 1.0)) {
                return Err(err_at(
                    at("red"),
                    field("red.max_p"),
                    "0 < max_p <= 1".into(),
                ));
            }
        }
    }
    for (i, f) in s.flows.iter().enumerate() {
        let at = |k: &str| loc.line("flow", i, k);
        let field = |k: &str| format!("flow[{i}].{k}");
        if f.count == 0 || f.count > 256 {
            return Err(err_at(at("count"), field("count"), "1 to 256".into()));
        }
        if let Some(rtt) = f.rtt {
            if rtt.0 < 2 * path_delay {
                return Err(err_at(
                    at("rtt"),
                    field("rtt"),
                    format!(
                        "{rtt} is less than the path's own round trip ({})",
                        Dur(2 * path_delay)
                    ),
                ));
            }
        }
        if f.start >= s.duration {
            return Err(err_at(
                at("start"),
                field("start"),
                format!(
                    "{} is not before the end of the run ({})",
                    f.start, s.duration
                ),
            ));
        }
        if let Some(stop) = f.stop {
            if stop <= f.start {
                return Err(err_at(
                    at("stop"),
                    field("stop"),
                    "must be after start".into(),
                ));
            }
        }
        if f.size.is_some_and(|s| s.0 == 0) {
            return Err(err_at(
                at("size"),
                field("size"),
                "must be more than 0".into(),
            ));
        }
        let (need, forbid): (&[&str], &[&str]) = match f.app {
            AppKind::Bulk => (&[], &["on", "off", "request", "response", "think"]),
            AppKind::OnOff => (&["on", "off"], &["request", "response", "think"]),
            AppKind::RequestResponse => (&["request", "response"], &["on", "off"]),
        };
        let has = |k: &str| match k {
            "on" => f.on.is_some(),
            "off" => f.off.is_some(),
            "request" => f.request.is_some(),
            "response" => f.response.is_some(),
            "think" => f.think.is_some(),
            _ => false,
        };
        for k in need {
            if !has(k) {
                return Err(err_at(
                    at("app"),
                    field(k),
                    format!("app = \"{}\" needs `{k}`", app_name(f.app)),
                ));
            }
        }
        for k in forbid {
            if has(k) {
                return Err(err_at(
                    at(k),
                    field(k),
                    format!("not used by app = \"{}\"", app_name(f.app)),
                ));
            }
        }
        if f.app == AppKind::OnOff && f.on.is_some_and(|d| d.0 == 0) {
            return Err(err_at(at("on"), field("on"), "must be more than 0".into()));
        }
        if f.app == AppKind::RequestResponse
            && (f.request.is_some_and(|s| s.0 == 0) || f.response.is_some_and(|s| s.0 == 0))
        {
            return Err(err_at(
                at("request"),
                field("request"),
                "request and response sizes must be more than 0".into(),
            ));
        }
        if f.cc.is_empty() || f.stack.is_empty() {
            return Err(err_at(at("cc"), field("cc"), "empty name".into()));
        }
    }
    Ok(())
}

pub fn app_name(a: AppKind) -> &'static str {
    match a {
        AppKind::Bulk => "bulk",
        AppKind::OnOff => "on_off",
        AppKind::RequestResponse => "request_response",
    }
}

/// A path in a scenario, relative to the scenario file's directory.
pub fn resolve(scenario: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        scenario.parent().unwrap_or(Path::new(".")).join(p)
    }
}

impl Scenario {
    /// One-way delay of the whole path.
    pub fn path_delay_ns(&self) -> u64 {
        self.links.iter().map(|l| l.delay.0).sum()
    }

    /// The base RTT of flow `f`.
    pub fn flow_rtt_ns(&self, f: &FlowSpec) -> u64 {
        f.rtt.map_or(2 * self.path_delay_ns(), |r| r.0)
    }

    /// The RTT BDP-sized queues are measured with.
    pub fn bdp_rtt_ns(&self) -> u64 {
        self.bdp_rtt.map(|d| d.0).unwrap_or_else(|| {
            self.flows
                .iter()
                .map(|f| self.flow_rtt_ns(f))
                .min()
                .unwrap_or(0)
        })
    }

    /// Every flow, `count` expanded: (spec index, copy, spec).
    pub fn expanded_flows(&self) -> Vec<(usize, u32, &FlowSpec)> {
        self.flows
            .iter()
            .enumerate()
            .flat_map(|(i, f)| (0..f.count).map(move |c| (i, c, f)))
            .collect()
    }

    /// The seeds of the repetitions.
    pub fn seeds(&self) -> Vec<u64> {
        (0..self.repetitions as u64)
            .map(|i| self.seed.wrapping_add(i))
            .collect()
    }
}

impl FlowSpec {
    /// The flow's display name: its `name`, or `cc/stack`.
    pub fn label(&self, copy: u32) -> String {
        let base = if self.name.is_empty() {
            format!("{}/{}", self.cc, self.stack)
        } else {
            self.name.clone()
        };
        if self.count > 1 {
            format!("{base}#{}", copy + 1)
        } else {
            base
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
name = "t"
duration = "10s"

[[link]]
bandwidth = "100Mbit"
delay = "10ms"
queue = "1bdp"

[[flow]]
cc = "cubic"
rtt = "40ms"
count = 2

[sweep]
"flow.cc" = ["cubic", "newreno"]
"link.queue" = ["0.5bdp", "4bdp"]
"#;

    #[test]
    fn sweeps_make_the_product() {
        let f = parse(Path::new("t.toml"), GOOD).unwrap();
        assert_eq!(f.points.len(), 4);
        assert_eq!(f.points[0].label, "cc=cubic queue=0.5bdp");
        assert_eq!(f.points[3].label, "cc=newreno queue=4bdp");
        assert_eq!(f.points[3].scenario.flows[0].cc, "newreno");
        assert_eq!(f.points[3].scenario.links[0].queue, QueueSize::Bdp(4.0));
        assert_eq!(f.points[0].scenario.expanded_flows().len(), 2);
    }

    #[test]
    fn overrides_set_fields_before_the_sweep() {
        let sets = [
            ("flow.rtt".to_string(), "60ms".to_string()),
            ("link.loss".to_string(), "0.01".to_string()),
        ];
        let f = parse_with(Path::new("t.toml"), GOOD, &sets).unwrap();
        assert_eq!(f.points.len(), 4);
        assert_eq!(f.points[2].scenario.flows[0].rtt, Some(Dur(60_000_000)));
        assert_eq!(f.points[2].scenario.links[0].loss, 0.01);
        let bad = [("link.loss".to_string(), "lots".to_string())];
        let e = parse_with(Path::new("t.toml"), GOOD, &bad).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("--set link.loss"), "{e}");
    }

    #[test]
    fn errors_name_the_file_line_and_field() {
        let bad = GOOD.replace("delay = \"10ms\"", "delya = \"10ms\"");
        let e = parse(Path::new("x.toml"), &bad).unwrap_err();
        assert_eq!(e.line, Some(7), "{e}");
        assert!(e.to_string().starts_with("x.toml:7: "), "{e}");
        assert!(e.message.contains("delya"), "{e}");

        let bad = GOOD.replace("rtt = \"40ms\"", "rtt = \"10ms\"");
        let e = parse(Path::new("x.toml"), &bad).unwrap_err();
        assert_eq!(e.line, Some(12), "{e}");
        assert_eq!(e.field.as_deref(), Some("flow[0].rtt"));

        let bad = GOOD.replace("bandwidth = \"100Mbit\"", "bandwidth = \"100 furlongs\"");
        let e = parse(Path::new("x.toml"), &bad).unwrap_err();
        assert_eq!(e.line, Some(6), "{e}");
        assert_eq!(e.field.as_deref(), Some("link[0].bandwidth"), "{e}");
        assert!(e.message.contains("unknown rate unit"), "{e}");

        let bad = GOOD.replace("\"link.queue\"", "\"link.qeueu\"");
        let e = parse(Path::new("x.toml"), &bad).unwrap_err();
        assert_eq!(e.line, Some(17), "{e}");

        let bad = GOOD.replace("count = 2", "count = 2\napp = \"on_off\"");
        let e = parse(Path::new("x.toml"), &bad).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("flow[0].on"), "{e}");
    }
}
