//! The block links the bbr CC module's crate (its BBR model), which defines abi_stable's
//! root-module symbol too, under the same fixed name. The linker takes the first
//! definition, which is this crate's own (its objects come before the rlibs it links), so
//! `libplugtcp_stack_bbr.so` exports the function block (host/cli/tests/bbr.rs loads it and
//! checks that); the crate's test binary needs the flag too.
fn main() {
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-link-arg=-Wl,--allow-multiple-definition");
    }
}
