//! Linux network namespaces for tests and benchmarks that use TUN devices: made with
//! `ip netns`, entered per thread with setns(2), deleted on drop, so traffic stays inside.

use std::io;
use std::os::fd::AsRawFd;
use std::process::{Command, Output};

/// A network namespace this process made; deleted when dropped.
pub struct Netns {
    name: String,
}

impl Netns {
    /// `ip netns add NAME`. Needs root (CAP_SYS_ADMIN) and iproute2.
    pub fn create(name: &str) -> io::Result<Netns> {
        let out = Command::new("ip").args(["netns", "add", name]).output()?;
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "ip netns add {name}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(Netns {
            name: name.to_string(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs a command inside the namespace.
    pub fn run(&self, args: &[&str]) -> io::Result<Output> {
        Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(args)
            .output()
    }

    /// Runs a command inside the namespace; an error carries its stderr.
    pub fn ok(&self, args: &[&str]) -> io::Result<()> {
        let out = self.run(args)?;
        if out.status.success() {
            Ok(())
        } else {
            Err(io::Error::other(format!(
                "{}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            )))
        }
    }

    /// Moves the calling thread into the namespace (sockets and TUN devices it opens then
    /// live there).
    pub fn enter(&self) -> io::Result<()> {
        enter(&self.name)
    }
}

/// Moves the calling thread into the namespace `name` (for threads that do not own it).
pub fn enter(name: &str) -> io::Result<()> {
    let f = std::fs::File::open(format!("/run/netns/{name}"))?;
    // SAFETY: a valid namespace fd; setns moves only this thread.
    if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}
