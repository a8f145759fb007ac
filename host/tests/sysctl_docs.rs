//! docs/sysctls.md is generated from the sysctl table (`TUNABLES`): this fails when the two
//! disagree, so the document cannot drift. `PLUGTCP_BLESS=1` rewrites the file.

use std::path::PathBuf;

use plugtcp_host::sysctl::{markdown_table, SysctlValue, PREFIX, TUNABLES};

fn doc_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .join("docs/sysctls.md")
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
