//! The table's own logic, without an adapter: ranking, the nearest entry, the octave bound,
//! reading a bench report, and the checks on a file.

use super::*;

fn adapter() -> TableAdapter {
    TableAdapter {
        name: "Test GPU".into(),
        backend: "Vulkan".into(),
        driver: "1.0".into(),
    }
}

fn ms(v: &[(&str, f64)]) -> BTreeMap<String, f64> {
    v.iter().map(|(k, x)| (k.to_string(), *x)).collect()
}

fn table() -> AutoTable {
    let mut t = AutoTable::new(adapter());
    let fwd = ("lstm", "forward");
    t.insert(
        fwd,
        (1, 100, 64),
        ms(&[("resident", 0.5), ("stepwise", 2.0)]),
    )
    .unwrap();
    t.insert(
        fwd,
        (64, 100, 256),
        ms(&[("grid", 3.0), ("stepwise", 1.5), ("persistent", 9.0)]),
    )
    .unwrap();
    t.insert(
        ("lstm", "forward_backward"),
        (1, 100, 64),
        ms(&[("persistent", 1.0), ("resident", 4.0)]),
    )
    .unwrap();
    t
}

#[test]
fn entries_rank_their_algorithms_fastest_first() {
    let t = table();
    assert_eq!(
        t.ranked("lstm", false, (64, 100, 256)),
        [Algorithm::Stepwise, Algorithm::Grid, Algorithm::Persistent]
    );
    assert_eq!(
        t.ranked("lstm", false, (1, 100, 64)),
        [Algorithm::Resident, Algorithm::Stepwise]
    );
    // The pass is part of the key: training looks at forward_backward rows only.
    assert_eq!(
        t.ranked("lstm", true, (1, 100, 64)),
        [Algorithm::Persistent, Algorithm::Resident]
    );
    // Another cell has no entries.
    assert!(t.ranked("gru", false, (1, 100, 64)).is_empty());
}

#[test]
fn the_nearest_entry_within_two_octaves_decides() {
    let t = table();
    // B2 H128: 1 + 1 octaves from B1 H64, far from B64 H256.
    assert_eq!(
        t.ranked("lstm", false, (2, 100, 128))[0],
        Algorithm::Resident
    );
    // B32 H128: 1 + 1 octaves from B64 H256.
    assert_eq!(
        t.ranked("lstm", false, (32, 100, 128))[0],
        Algorithm::Stepwise
    );
    // B4 H128: 2 + 1 = 3 octaves from B1 H64, 4 + 1 from B64 H256: nothing decides.
    assert!(t.ranked("lstm", false, (4, 100, 128)).is_empty());
    // Exactly two octaves still counts (B4 H64).
    assert_eq!(
        t.ranked("lstm", false, (4, 100, 64))[0],
        Algorithm::Resident
    );
    // No training entry near B64 H256.
    assert!(t.ranked("lstm", true, (64, 100, 256)).is_empty());
}

#[test]
fn insert_replaces_the_same_shape_and_refuses_bad_times() {
    let mut t = table();
    // Another sequence length is another entry; the nearest T decides between them.
    t.insert(
        ("lstm", "forward"),
        (1, 1000, 64),
        ms(&[("stepwise", 0.1), ("resident", 0.5)]),
    )
    .unwrap();
    assert_eq!(t.entries.len(), 4);
    assert_eq!(
        t.ranked("lstm", false, (1, 800, 64))[0],
        Algorithm::Stepwise
    );
    assert_eq!(
        t.ranked("lstm", false, (1, 120, 64))[0],
        Algorithm::Resident
    );
    // The same (cell, pass, B, T, H) replaces the entry.
    t.insert(
        ("lstm", "forward"),
        (1, 100, 64),
        ms(&[("grid", 0.1), ("resident", 0.5)]),
    )
    .unwrap();
    assert_eq!(t.entries.len(), 4);
    assert_eq!(t.ranked("lstm", false, (1, 100, 64))[0], Algorithm::Grid);
    for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        let r = t.insert(("rnn", "forward"), (1, 10, 8), ms(&[("grid", bad)]));
        assert!(matches!(r, Err(Error::Format(_))), "{bad}: {r:?}");
    }
    let r = t.insert(("rnn", "forward"), (1, 10, 8), ms(&[("cpu", 1.0)]));
    assert!(matches!(r, Err(Error::Format(m)) if m.contains("cpu")));
    let r = t.insert(("convlstm2d", "forward"), (1, 10, 8), ms(&[("grid", 1.0)]));
    assert!(matches!(r, Err(Error::Format(m)) if m.contains("cell")));
}

#[test]
fn a_bench_report_becomes_a_table_by_wall_time() {
    let row = |imp: &str, pass: &str, wall: Option<f64>, median: f64| {
        let mut r = serde_json::json!({
            "cell": "gru", "pass": pass, "B": 8, "T": 100, "I": 128, "H": 128,
            "impl": imp, "median_ms": median,
        });
        if let Some(w) = wall {
            r["wall_ms"] = serde_json::json!(w);
        }
        r
    };
    let mut dev_row = row("stepwise", "forward_backward", Some(1.0), 1.0);
    dev_row["device_wall_ms"] = serde_json::json!(6.0);
    let report = serde_json::json!({
        "adapter": {"name": "Test GPU", "backend": "Vulkan", "device_type": "DiscreteGpu",
                    "driver": "1.0"},
        "results": [
            // GPU time says persistent, wall time says stepwise: wall time wins.
            row("persistent", "forward", Some(3.0), 1.0),
            row("stepwise", "forward", Some(2.0), 1.5),
            row("cpu", "forward", None, 0.1),
            row("unfused", "forward", Some(0.1), 0.1),
            row("grid", "forward_backward", None, 4.0),
            row("resident", "forward_backward", None, 5.0),
            // device_wall_ms, where present, decides over wall_ms.
            dev_row,
            {"cell": "gemm", "pass": "forward", "M": 8, "K": 8, "N": 8, "impl": "gemm_gpu",
             "median_ms": 0.01},
        ],
    });
    let t = AutoTable::from_bench(&report).unwrap();
    assert_eq!(t.adapter, adapter());
    assert_eq!(t.entries.len(), 2);
    assert_eq!(
        t.ranked("gru", false, (8, 100, 128)),
        [Algorithm::Stepwise, Algorithm::Persistent]
    );
    assert_eq!(
        t.ranked("gru", true, (8, 100, 128)),
        [Algorithm::Grid, Algorithm::Resident, Algorithm::Stepwise]
    );
    // One shape timed at two input sizes would mix in one entry: refused, naming them.
    let mut other_i = row("grid", "forward", None, 1.0);
    other_i["I"] = serde_json::json!(64);
    let mut mixed = report.clone();
    mixed["results"].as_array_mut().unwrap().push(other_i);
    let e = AutoTable::from_bench(&mixed).unwrap_err().to_string();
    assert!(e.contains("I = 128 and I = 64"), "{e}");
    // A report with no recurrent algorithm row is an error naming what was missing.
    let empty = serde_json::json!({"adapter": report["adapter"], "results": []});
    assert!(
        matches!(AutoTable::from_bench(&empty), Err(Error::Format(m)) if m.contains("no lstm"))
    );
}

#[test]
fn a_saved_table_loads_back_and_a_tampered_one_is_refused() {
    let dir = std::env::temp_dir().join(format!("wgpu-rnn-auto-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("auto.json");
    let t = table();
    t.save(&path).unwrap();
    assert_eq!(AutoTable::load(&path).unwrap(), t);
    // A hand-edited ranking that contradicts the times is caught.
    let mut bad = t.clone();
    bad.entries[0].ranked.reverse();
    bad.save(&path).unwrap();
    assert!(matches!(AutoTable::load(&path), Err(Error::Format(m)) if m.contains("fastest first")));
    let mut bad = t.clone();
    bad.format = "other".into();
    bad.save(&path).unwrap();
    assert!(matches!(AutoTable::load(&path), Err(Error::Format(m)) if m.contains("format")));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn markdown_lists_every_entry_with_its_choice() {
    let md = table().markdown();
    assert!(
        md.contains("| lstm | forward | 64 | 100 | 256 | stepwise | — | 3.000 | 9.000 | 1.500 |")
    );
    assert_eq!(md.lines().filter(|l| l.starts_with("| lstm")).count(), 3);
}
