//! The `ferrocluster` binary run as a real process.
#![allow(dead_code)] // each test binary uses a different part of the harness

use std::path::Path;
use std::process::{Command, Output};

/// Runs `ferrocluster --quiet ARGS`.
pub fn ferrocluster(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ferrocluster")).arg("--quiet").args(args).output().unwrap()
}

/// Its stdout, after asserting it succeeded.
pub fn ok(args: &[&str]) -> String {
    let out = ferrocluster(args);
    assert!(out.status.success(), "{args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

pub fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}
