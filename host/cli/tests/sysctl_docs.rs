//! docs/sysctls.md, and the same table in docs/configuration.md between
//! `<!-- sysctls:begin -->` and `<!-- sysctls:end -->`, are generated from the sysctl table
//! (`TUNABLES`): this fails when they disagree, so the documents cannot drift.
//! `PLUGTCP_BLESS=1` rewrites both.

use std::path::PathBuf;

use plugtcp_host::sysctl::{markdown_table, SysctlValue, PREFIX, TUNABLES};

fn doc_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/sysctls.md")
}

/// The manual's page on sysctls, which carries the same table.
fn manual_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/configuration.md")
}

const BEGIN: &str = "<!-- sysctls:begin -->\n\n";
const END: &str = "<!-- sysctls:end -->";

/// The table alone (from its header row on), as docs/configuration.md carries it.
fn table_rows(doc: &str) -> String {
    let start = doc.find("\n| ").map_or(doc.len(), |i| i + 1);
    doc[start..].to_owned()
}

#[test]
fn manual_carries_the_same_table() {
    let manual = manual_path();
    let text = std::fs::read_to_string(&manual).unwrap();
    let want = table_rows(&markdown_table());
    let (Some(b), Some(e)) = (text.find(BEGIN), text.find(END)) else {
        panic!("docs/configuration.md has no {BEGIN:?} ... {END:?} section");
    };
    let have = &text[b + BEGIN.len()..e];
    if have != want && std::env::var_os("PLUGTCP_BLESS").is_some() {
        let new = format!("{}{want}{}", &text[..b + BEGIN.len()], &text[e..]);
        std::fs::write(&manual, new).unwrap();
        return;
    }
    assert!(
        have == want,
        "docs/configuration.md's sysctl table disagrees with TUNABLES (PLUGTCP_BLESS=1 \
         regenerates it)"
    );
}

#[test]
fn docs_table_matches_tunables() {
    let want = markdown_table();
    let path = doc_path();
    if std::env::var_os("PLUGTCP_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &want).unwrap();
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    if have != want {
        let diff = have
            .lines()
            .zip(want.lines())
            .find(|(a, b)| a != b)
            .map_or_else(
                || "(lengths differ)".to_owned(),
                |(a, b)| format!("file: {a}\ntable: {b}"),
            );
        panic!(
            "{} disagrees with sysctl.rs TUNABLES (PLUGTCP_BLESS=1 regenerates it); first \
             difference:\n{diff}",
            path.display()
        );
    }
    // One row per tunable, each with its default and acts flag as the tree has them.
    for e in TUNABLES {
        let short = e.name.strip_prefix(PREFIX).unwrap();
        let row = have
            .lines()
            .find(|l| l.starts_with(&format!("| `{short}` |")))
            .unwrap_or_else(|| panic!("no row for {}", e.name));
        let cells: Vec<&str> = row.split(" | ").collect();
        let default = match e.default_value() {
            SysctlValue::Int(v) => v.to_string(),
            SysctlValue::Str(s) if s.is_empty() => "(empty)".into(),
            SysctlValue::Str(s) => format!("`{s}`"),
        };
        assert_eq!(cells[1], default, "{row}");
        assert_eq!(cells[4], if e.acts { "yes" } else { "no" }, "{row}");
    }
    let rows = have.lines().filter(|l| l.starts_with("| `")).count();
    assert_eq!(rows, TUNABLES.len());
}
