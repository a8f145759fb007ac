//! Test fixture: build 2 of the "reloadcc" module (see ../../reload-cc-module.rs).

include!("../../reload-cc-module.rs");
