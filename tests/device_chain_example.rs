//! `examples/device_chain.rs` (built by `cargo test`) trains Embedding → LSTM → Dense on a
//! user-owned device: it must print one host read-back per step and halve the loss.

use std::path::PathBuf;
use std::process::Command;

mod common;

fn example() -> PathBuf {
    common::example_bin("device_chain")
}

#[test]
fn device_chain_reads_back_once_per_step_and_learns() {
    let run = Command::new(example()).output().expect("example runs");
    let out = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "exit {:?}\n{out}\n{}",
        run.status,
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(
        out.lines().any(|l| l == "host read-backs per step: 1"),
        "{out}"
    );
    let line = out
        .lines()
        .find_map(|l| l.strip_prefix("loss: "))
        .unwrap_or_else(|| panic!("no loss line in\n{out}"));
    let (a, b) = line.split_once(" -> ").expect("loss: A -> B");
    let (a, b): (f32, f32) = (a.parse().unwrap(), b.parse().unwrap());
    assert!(a > 0.5 && b < 0.5 * a, "loss {a} -> {b} did not halve");
}
