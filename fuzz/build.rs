//! The plugin crates linked statically each define abi_stable's root-module symbol (see
//! host/cli/build.rs): any one definition will do.
fn main() {
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-link-arg=-Wl,--allow-multiple-definition");
    }
}
