//! Every plugin crate is also an rlib that the host links statically (built-in plugins,
//! tests, the dispatch benchmark). Each of them defines abi_stable's root-module symbol,
//! whose name is fixed; release builds merge it into codegen units the host does use, so the
//! linker sees several definitions. The host never looks up its own root module (it only
//! reads that symbol from `.so` files it opens), so any one definition will do.
fn main() {
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-link-arg=-Wl,--allow-multiple-definition");
    }
}
