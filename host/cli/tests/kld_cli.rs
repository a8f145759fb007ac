//! `plugtcp kldload/kldstat/kldunload` as a user runs them.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::target_dir;

fn plugtcp(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_plugtcp"))
        .args(args)
        .env_remove("PLUGTCP_PLUGIN_PATH")
        .output()
        .expect("run plugtcp")
}

fn stderr_line(o: &Output) -> String {
    let e = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(e.lines().count(), 1, "exactly one line on stderr: {e:?}");
    e.trim().to_owned()
}

#[test]
fn kldstat_lists_newreno_from_its_so() {
    let o = plugtcp(&["kldstat"]);
    assert!(o.status.success());
    let out = String::from_utf8_lossy(&o.stdout);
    let so = target_dir().join("libplugtcp_cc_newreno.so");
    let line = out
        .lines()
        .find(|l| l.contains(" newreno "))
        .unwrap_or_else(|| panic!("no newreno in:\n{out}"));
    assert!(line.contains(" cc "), "{line}");
    assert!(
        line.ends_with(so.to_str().unwrap()),
        "loaded from the .so, not the builtin: {line}"
    );
    // The JSON form says the same.
    let o = plugtcp(&["kldstat", "--json"]);
    let rows: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let nr = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "newreno")
        .unwrap();
    assert_eq!(nr["kind"], "cc");
    assert_eq!(nr["pcbs"], 0);
    assert_eq!(nr["file"], so.to_str().unwrap());
}

#[test]
fn kldload_missing_file() {
    let o = plugtcp(&["kldload", "/nonexistent/libplugtcp_cc_nothing.so"]);
    assert!(!o.status.success());
    let line = stderr_line(&o);
    assert!(
        line.contains("/nonexistent/libplugtcp_cc_nothing.so") && line.contains("no such file"),
        "{line}"
    );
}

#[test]
fn kldload_file_that_is_not_a_library() {
    let dir = std::env::temp_dir().join(format!("plugtcp-kld-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("libplugtcp_cc_garbage.so");
    std::fs::write(&f, b"this is not an ELF file\n").unwrap();
    let o = plugtcp(&["--no-autoload", "kldload", f.to_str().unwrap()]);
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(!o.status.success());
    let line = stderr_line(&o);
    assert!(line.contains(f.to_str().unwrap()), "{line}");
    assert!(
        line.contains("not a plugtcp plugin") && line.contains("not a loadable shared library"),
        "{line}"
    );
}

#[test]
fn kldload_shared_library_that_is_not_a_plugin() {
    // A real shared library without our root module: the C math library.
    let libm = [
        "/lib/x86_64-linux-gnu/libm.so.6",
        "/usr/lib/x86_64-linux-gnu/libm.so.6",
        "/lib64/libm.so.6",
    ]
    .into_iter()
    .find(|p| Path::new(p).exists())
    .expect("libm on this machine");
    let o = plugtcp(&["--no-autoload", "kldload", libm]);
    assert!(!o.status.success());
    let line = stderr_line(&o);
    assert!(
        line.contains(libm) && line.contains("exports no plugtcp root module"),
        "{line}"
    );
}

#[test]
fn kldload_plugin_built_against_another_abi_version() {
    let so = target_dir().join("libplugtcp_testplugin_old_abi_cc.so");
    assert!(
        so.exists(),
        "fixture not built: run `cargo build --workspace` first"
    );
    let o = plugtcp(&["kldload", so.to_str().unwrap()]);
    assert!(!o.status.success());
    let line = stderr_line(&o);
    assert!(line.contains(so.to_str().unwrap()), "{line}");
    assert!(
        line.contains("incompatible plugin ABI") && line.contains("0.0.7"),
        "{line}"
    );
    assert!(line.contains(plugtcp_abi::ABI_VERSION), "{line}");
}

#[test]
fn kldload_by_name_and_duplicate() {
    // Autoload already registered newreno from the search path: loading it again is refused.
    let o = plugtcp(&["kldload", "newreno"]);
    assert!(!o.status.success());
    let line = stderr_line(&o);
    assert!(
        line.contains("libplugtcp_cc_newreno.so") && line.contains("EEXIST"),
        "{line}"
    );
    // Without autoload the bare name resolves on the search path and loads from the file.
    let o = plugtcp(&["--no-autoload", "kldload", "newreno"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("loaded cc newreno from") && out.contains("libplugtcp_cc_newreno.so"),
        "{out}"
    );
    let so = target_dir().join("libplugtcp_testplugin_panic_cc.so");
    let o = plugtcp(&["kldload", so.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("loaded cc panicky"));
}

#[test]
fn kldunload_rules_from_the_cli() {
    let o = plugtcp(&["kldunload", "newreno"]);
    assert!(!o.status.success());
    assert!(
        stderr_line(&o).contains("EBUSY"),
        "the default CC cannot be unloaded"
    );
    let o = plugtcp(&["kldunload", "nosuch"]);
    assert!(!o.status.success());
    assert!(stderr_line(&o).contains("ENOENT"));
}

#[test]
fn plugin_dir_and_env_path_are_searched() {
    let o = Command::new(env!("CARGO_BIN_EXE_plugtcp"))
        .args(["--plugin-dir", "/nonexistent-dir", "kldstat", "--json"])
        .env("PLUGTCP_PLUGIN_PATH", target_dir())
        .output()
        .unwrap();
    assert!(o.status.success());
    let rows: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(rows
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["name"] == "newreno"));
}
