//! Loading plugin files: the search path, opening a shared library, and turning every way it
//! can fail into one line that names the file and the reason.

use std::path::{Path, PathBuf};

use abi_stable::library::{lib_header_from_path, LibraryError};
use plugtcp_abi::{PluginModuleRef, ABI_VERSION};

/// Why a plugin file was refused.
#[derive(Debug)]
pub enum LoadFailure {
    Missing,
    NotAPlugin(String),
    AbiMismatch(String),
    /// It loaded, but registering it failed with this errno (a taken name, say).
    Refused(plugtcp_abi::Errno),
}

/// A refused plugin file and the reason.
#[derive(Debug)]
pub struct LoadError {
    pub path: PathBuf,
    pub failure: LoadFailure,
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let p = self.path.display();
        match &self.failure {
            LoadFailure::Missing => write!(f, "{p}: no such file"),
            LoadFailure::NotAPlugin(why) => write!(f, "{p}: not a plugtcp plugin: {why}"),
            LoadFailure::AbiMismatch(why) => write!(f, "{p}: incompatible plugin ABI: {why}"),
            LoadFailure::Refused(e) => write!(f, "{p}: registration refused: {e}"),
        }
    }
}

impl std::error::Error for LoadError {}

impl LoadError {
    pub fn errno(&self) -> plugtcp_abi::Errno {
        use plugtcp_abi::Errno;
        match self.failure {
            LoadFailure::Missing => Errno::ENOENT,
            LoadFailure::NotAPlugin(_) | LoadFailure::AbiMismatch(_) => Errno::EINVAL,
            LoadFailure::Refused(e) => e,
        }
    }
}

fn first_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("")
        .to_owned()
}

/// Opens `path` and checks its root module against this framework's ABI (version and
/// layout). The library stays loaded for the life of the process (see DESIGN.md: Rust cdylibs
/// are never unloaded).
pub fn open_plugin(path: &Path) -> Result<PluginModuleRef, LoadError> {
    let fail = |failure| LoadError {
        path: path.to_owned(),
        failure,
    };
    if !path.exists() {
        return Err(fail(LoadFailure::Missing));
    }
    if path.is_dir() {
        return Err(fail(LoadFailure::NotAPlugin("is a directory".into())));
    }
    let header = lib_header_from_path(path).map_err(|e| {
        fail(match e {
            LibraryError::OpenError { err, .. } => {
                let msg = err.to_string();
                // dlerror repeats the path; keep only the part after it.
                let why = msg.rsplit_once(": ").map_or(msg.as_str(), |(_, w)| w);
                LoadFailure::NotAPlugin(format!(
                    "not a loadable shared library ({})",
                    first_line(why)
                ))
            }
            LibraryError::GetSymbolError { .. } => {
                LoadFailure::NotAPlugin("the library exports no plugtcp root module".into())
            }
            LibraryError::InvalidAbiHeader(h) => {
                LoadFailure::AbiMismatch(format!("built with an incompatible abi_stable ({h:?})"))
            }
            other => LoadFailure::NotAPlugin(first_line(&other.to_string())),
        })
    })?;
    let loaded = match header.init_root_module::<PluginModuleRef>() {
        Err(LibraryError::AbiInstability(e)) => match header.layout() {
            // A plugin built against an earlier patch of this ABI: its prefix types (the
            // descriptors it exports, the host interface it calls) may be shorter than ours,
            // and every other type must be the same. abi_stable's checker accepts an
            // implementation with *more* prefix fields than the interface (a newer
            // library), so the older plugin is checked with the roles swapped; the fields
            // appended since then read as absent through the prefix accessors.
            Some(theirs)
                if abi_stable::abi_stability::check_layout_compatibility(
                    theirs,
                    <PluginModuleRef as abi_stable::StableAbi>::LAYOUT,
                )
                .is_ok() =>
            {
                // SAFETY: the swapped check above proved the layouts compatible in the way
                // prefix types allow (see the comment); the version was checked too.
                unsafe { header.init_root_module_with_unchecked_layout::<PluginModuleRef>() }
            }
            _ => Err(LibraryError::AbiInstability(e)),
        },
        other => other,
    };
    loaded.map_err(|e| {
        fail(match e {
            LibraryError::IncompatibleVersionNumber { actual_version, .. } => LoadFailure::AbiMismatch(format!(
                "built against framework ABI {actual_version}, this host speaks ABI {ABI_VERSION}"
            )),
            LibraryError::ParseVersionError(v) => LoadFailure::AbiMismatch(format!("unreadable ABI version ({v})")),
            LibraryError::AbiInstability(_) => LoadFailure::AbiMismatch(format!(
                "root module layout differs from framework ABI {ABI_VERSION} (rebuild the plugin against this framework)"
            )),
            other => LoadFailure::NotAPlugin(first_line(&other.to_string())),
        })
    })
}

/// Where plugin files are looked for: `--plugin-dir` (in order), then each directory of
/// `PLUGTCP_PLUGIN_PATH` (colon-separated), then the directory of the running executable.
#[derive(Clone, Debug, Default)]
pub struct SearchPath {
    pub dirs: Vec<PathBuf>,
}

/// File-name prefixes of plugins that are loaded automatically from the search path.
pub const AUTOLOAD_PREFIXES: [&str; 2] = ["libplugtcp_stack_", "libplugtcp_cc_"];

impl SearchPath {
    pub fn new(plugin_dirs: &[PathBuf], env_path: Option<&str>, exe_dir: Option<PathBuf>) -> Self {
        let mut dirs: Vec<PathBuf> = plugin_dirs.to_vec();
        if let Some(p) = env_path {
            dirs.extend(p.split(':').filter(|s| !s.is_empty()).map(PathBuf::from));
        }
        dirs.extend(exe_dir);
        let mut seen = std::collections::HashSet::new();
        dirs.retain(|d| seen.insert(d.clone()));
        SearchPath { dirs }
    }

    /// The standard path for this process (reads `PLUGTCP_PLUGIN_PATH` and the executable).
    pub fn from_env(plugin_dirs: &[PathBuf]) -> Self {
        let env = std::env::var("PLUGTCP_PLUGIN_PATH").ok();
        let exe_dir = std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf));
        Self::new(plugin_dirs, env.as_deref(), exe_dir)
    }

    /// Resolves what a user typed after `kldload`: a path (anything with a `/` or ending in
    /// `.so`) is taken as it is; a bare name like `cubic` is looked up as
    /// `libplugtcp_cc_cubic.so` or `libplugtcp_stack_cubic.so` in the search path.
    pub fn resolve(&self, what: &str) -> PathBuf {
        if what.contains('/') || what.ends_with(".so") {
            return PathBuf::from(what);
        }
        let candidates = [
            format!("libplugtcp_cc_{what}.so"),
            format!("libplugtcp_stack_{what}.so"),
        ];
        for d in &self.dirs {
            for c in &candidates {
                let p = d.join(c);
                if p.is_file() {
                    return p;
                }
            }
        }
        PathBuf::from(what)
    }

    /// Plugin files to load at start-up: `libplugtcp_{stack,cc}_*.so` in each directory; the
    /// first directory that has a given file name wins.
    pub fn autoload_files(&self) -> Vec<PathBuf> {
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        for d in &self.dirs {
            let Ok(rd) = std::fs::read_dir(d) else {
                continue;
            };
            let mut files: Vec<PathBuf> = rd
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    let n = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
                    n.ends_with(".so") && AUTOLOAD_PREFIXES.iter().any(|pre| n.starts_with(pre))
                })
                .collect();
            files.sort();
            for f in files {
                if seen.insert(f.file_name().map(|n| n.to_owned())) {
                    out.push(f);
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(p: &Path) {
        std::fs::write(p, b"").unwrap();
    }

    #[test]
    fn search_order_resolution_and_autoload() {
        let root = std::env::temp_dir().join(format!("plugtcp-sp-{}", std::process::id()));
        let (a, b, exe) = (root.join("a"), root.join("b"), root.join("exe"));
        for d in [&a, &b, &exe] {
            std::fs::create_dir_all(d).unwrap();
        }
        touch(&b.join("libplugtcp_cc_x.so"));
        touch(&exe.join("libplugtcp_cc_x.so"));
        touch(&exe.join("libplugtcp_stack_y.so"));
        touch(&exe.join("libplugtcp_testplugin_z.so"));
        touch(&a.join("notes.txt"));
        let env = format!("{}::{}", b.display(), a.display());
        let sp = SearchPath::new(std::slice::from_ref(&a), Some(&env), Some(exe.clone()));
        // --plugin-dir first, then PLUGTCP_PLUGIN_PATH (empty entries skipped, repeats
        // dropped), then the executable's directory.
        assert_eq!(sp.dirs, [a.clone(), b.clone(), exe.clone()]);
        assert_eq!(
            sp.resolve("x"),
            b.join("libplugtcp_cc_x.so"),
            "first directory wins"
        );
        assert_eq!(sp.resolve("y"), exe.join("libplugtcp_stack_y.so"));
        assert_eq!(
            sp.resolve("./x.so"),
            PathBuf::from("./x.so"),
            "paths are taken as given"
        );
        assert_eq!(sp.resolve("nosuch"), PathBuf::from("nosuch"));
        // Autoload: only the two plugin prefixes, each file name once, earliest directory.
        assert_eq!(
            sp.autoload_files(),
            [
                b.join("libplugtcp_cc_x.so"),
                exe.join("libplugtcp_stack_y.so")
            ]
        );
        std::fs::remove_dir_all(&root).unwrap();
    }
}
