//! Files and processes for the robustness tests: temporary paths, golden files with an edited
//! config, FIFOs, and child processes that must finish within a bound (a hang fails the test
//! instead of blocking it).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use wgpu_rnn::weights::safetensors_io;

/// How long a probed command may run before it counts as hung.
const BOUND: Duration = Duration::from_secs(120);

/// A path in this test binary's scratch directory.
pub fn tmp(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("robustness");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// A checked-in test file.
pub fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

/// `target/<profile>/examples/NAME`, built by `cargo test` (or `cargo build --example NAME`).
pub fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let bin = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>")
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} is missing: run `cargo test` (it builds the examples) or `cargo build --example {name}`",
        bin.display()
    );
    bin
}

/// Runs `cmd` with no stdin; kills it and fails the test if it runs past [`BOUND`].
pub fn run_bounded(cmd: &mut Command) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let start = Instant::now();
    loop {
        if child.try_wait().expect("wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if start.elapsed() > BOUND {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "{cmd:?} hung for {BOUND:?}:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A named pipe (FIFO) nobody writes to: reading it would block forever.
#[cfg(unix)]
pub fn fifo(name: &str) -> PathBuf {
    let path = tmp(name);
    let _ = std::fs::remove_file(&path);
    let ok = Command::new("mkfifo")
        .arg(&path)
        .status()
        .expect("mkfifo")
        .success();
    assert!(ok, "mkfifo {}", path.display());
    path
}

/// `torch_lstm_small.safetensors` with its config edited by `edit`, written to a temporary
/// file (each `name` its own file, so tests running in parallel do not collide).
pub fn golden_with(name: &str, edit: impl FnOnce(&mut serde_json::Value)) -> PathBuf {
    let file = safetensors_io::read(&data("torch_lstm_small.safetensors")).unwrap();
    let mut config: serde_json::Value = serde_json::from_str(&file.metadata["config"]).unwrap();
    edit(&mut config);
    let mut meta = file.metadata.clone();
    meta.insert("config".into(), config.to_string());
    let path = tmp(&format!(
        "{name}_{:?}.safetensors",
        std::thread::current().id()
    ));
    safetensors_io::write(&path, &file.tensors, Some(meta)).unwrap();
    path
}

/// Byte spans of the decimal numbers in `text` (the shapes and offsets of a header).
pub fn number_spans(text: &str) -> Vec<(usize, usize)> {
    let b = text.as_bytes();
    let mut spans = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_digit() {
            let s = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            spans.push((s, i));
        } else {
            i += 1;
        }
    }
    spans
}
