//! A measured Auto table on lavapipe: `Algorithm::Auto` runs the table's fastest algorithm
//! that fits (seen in `RecordStats::algorithms`, with the forced algorithm's exact numbers),
//! falls back to the next-ranked one or to the built-in rules, and a table from another
//! adapter is refused. The `tune` and `info` commands end to end.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

use ndarray::Array3;
use wgpu_rnn::auto_table::{AUTO_TABLE_ENV, AutoTable, TableAdapter};
use wgpu_rnn::{Algorithm, Algorithms, Backend, Context, Error, Lstm, LstmConfig};

fn gpu() -> (Backend, Arc<Context>) {
    let ctx = Arc::new(
        Context::new().expect("GPU tests need an adapter (scripts/test.sh installs lavapipe)"),
    );
    (Backend::Gpu(ctx.clone()), ctx)
}

fn adapter_of(ctx: &Context) -> TableAdapter {
    let a = ctx.adapter();
    TableAdapter {
        name: a.name.clone(),
        backend: a.backend.clone(),
        driver: a.driver.clone(),
    }
}

fn ms(v: &[(&str, f64)]) -> BTreeMap<String, f64> {
    v.iter().map(|(k, x)| (k.to_string(), *x)).collect()
}

fn one(a: Algorithm) -> Algorithms {
    [a].into_iter().collect()
}

/// Forward output, then (training) every gradient, with the algorithms each submission ran.
fn run(
    backend: &Backend,
    (b, t, i, h): (usize, usize, usize, usize),
    algo: Algorithm,
    train: bool,
) -> (Vec<f32>, Algorithms, Algorithms) {
    let mut l = Lstm::new(LstmConfig::new(i, h), backend.clone(), 7).unwrap();
    l.set_algorithm(algo);
    let x = common::rand3((t, b, i), 3, 1.0);
    if !train {
        let y = l.forward(x.view(), None, None).unwrap();
        let v = y.out.iter().copied().collect();
        return (v, l.last_stats().algorithms, Algorithms::default());
    }
    let (y, trace) = l.forward_train(x.view(), None, None).unwrap();
    let fwd = l.last_stats().algorithms;
    let dy = Array3::from_elem(y.out.dim(), 0.5f32);
    let g = l.backward(&trace, dy.view(), None).unwrap();
    let bwd = l.last_stats().algorithms;
    let mut v: Vec<f32> = y.out.iter().copied().collect();
    v.extend(g.dx.iter().copied());
    for a in g.weights.values() {
        v.extend(a.iter().copied());
    }
    (v, fwd, bwd)
}

#[test]
fn auto_follows_a_table_measured_on_this_adapter() {
    let (backend, ctx) = gpu();
    let shape = (2, 6, 4, 8);
    // Without a table, lavapipe's built-in rule: Resident for this small LSTM.
    let (_, before, _) = run(&backend, shape, Algorithm::Auto, false);
    assert_eq!(before, one(Algorithm::Resident));

    let mut t = AutoTable::new(adapter_of(&ctx));
    t.insert(
        ("lstm", "forward"),
        (2, 6, 8),
        ms(&[("grid", 1.0), ("persistent", 2.0), ("stepwise", 3.0)]),
    )
    .unwrap();
    t.insert(
        ("lstm", "forward_backward"),
        (2, 6, 8),
        ms(&[("persistent", 1.0), ("stepwise", 2.0)]),
    )
    .unwrap();
    ctx.set_auto_table(Some(t)).unwrap();

    // Forward: the table's fastest, Grid, with exactly Grid's numbers.
    let (auto, algos, _) = run(&backend, shape, Algorithm::Auto, false);
    let (grid, forced, _) = run(&backend, shape, Algorithm::Grid, false);
    assert_eq!(algos, one(Algorithm::Grid));
    assert_eq!(forced, one(Algorithm::Grid));
    assert_eq!(auto, grid);
    // Training looks at the forward_backward entry: Persistent forward and backward.
    let (auto, f, b) = run(&backend, shape, Algorithm::Auto, true);
    let (pers, ..) = run(&backend, shape, Algorithm::Persistent, true);
    assert_eq!(
        (f, b),
        (one(Algorithm::Persistent), one(Algorithm::Persistent))
    );
    assert_eq!(auto, pers);
    // A shape more than two octaves away is left to the built-in rule again.
    let (_, far, _) = run(&backend, (16, 6, 4, 8), Algorithm::Auto, false);
    assert_ne!(far, one(Algorithm::Grid));
    // Removing the table restores the rule.
    ctx.set_auto_table(None).unwrap();
    let (_, after, _) = run(&backend, shape, Algorithm::Auto, false);
    assert_eq!(after, before);
}

#[test]
fn an_entry_that_cannot_run_falls_to_the_next_ranked_algorithm() {
    let (backend, ctx) = gpu();
    // Resident cannot hold an LSTM with H = 256 on lavapipe (1024 invocations: `info`).
    let shape = (1, 3, 4, 256);
    let forced = {
        let mut l = Lstm::new(LstmConfig::new(4, 256), backend.clone(), 7).unwrap();
        l.set_algorithm(Algorithm::Resident);
        l.forward(common::rand3((3, 1, 4), 3, 1.0).view(), None, None)
    };
    assert!(matches!(forced, Err(Error::Limit(_))), "{forced:?}");
    let (_, rule, _) = run(&backend, shape, Algorithm::Auto, false);
    assert_eq!(rule, one(Algorithm::Stepwise));
    let mut t = AutoTable::new(adapter_of(&ctx));
    t.insert(
        ("lstm", "forward"),
        (1, 3, 256),
        ms(&[("resident", 1.0), ("persistent", 2.0), ("stepwise", 3.0)]),
    )
    .unwrap();
    ctx.set_auto_table(Some(t)).unwrap();
    let (auto, algos, _) = run(&backend, shape, Algorithm::Auto, false);
    let (pers, ..) = run(&backend, shape, Algorithm::Persistent, false);
    assert_eq!(algos, one(Algorithm::Persistent));
    assert_eq!(auto, pers);
}

#[test]
fn a_table_from_another_adapter_is_refused() {
    let (_, ctx) = gpu();
    let mut other = adapter_of(&ctx);
    other.name = "Some Other GPU".into();
    let mut t = AutoTable::new(other);
    t.insert(("rnn", "forward"), (1, 1, 8), ms(&[("grid", 1.0)]))
        .unwrap();
    match ctx.set_auto_table(Some(t)) {
        Err(Error::Config(m)) => {
            assert!(
                m.contains("Some Other GPU") && m.contains(&ctx.adapter().name),
                "{m}"
            )
        }
        other => panic!("expected a Config error, got {other:?}"),
    }
    assert!(ctx.auto_table().is_none());
}

fn cli(args: &[&str], env: Option<&PathBuf>) -> (bool, String, String) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_wgpu-rnn"));
    c.args(args);
    match env {
        Some(p) => c.env(AUTO_TABLE_ENV, p),
        None => c.env_remove(AUTO_TABLE_ENV),
    };
    let out = c.output().expect("run wgpu-rnn");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn tune_measures_writes_and_info_loads_the_table() {
    let dir = std::env::temp_dir().join(format!("wgpu-rnn-tune-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("auto.json");
    let o = out.to_str().unwrap();
    let (ok, text, err) = cli(
        &["tune", "--cells", "rnn", "--shapes", "1,4,4,4", "--out", o],
        None,
    );
    assert!(ok, "{err}");
    let t = AutoTable::load(&out).unwrap();
    assert_eq!(t.entries.len(), 2, "{t:?}");
    for e in &t.entries {
        assert_eq!((e.cell.as_str(), e.b, e.t, e.h), ("rnn", 1, 4, 4));
        // Every algorithm runs this shape on lavapipe, and the ranking is by time
        // (`load` rejects any other order).
        assert_eq!(e.ms.len(), 4, "{e:?}");
        assert!(text.contains(&format!(
            "| rnn | {} | 1 | 4 | 4 | {} |",
            e.pass, e.ranked[0]
        )));
    }
    let (ok, text, err) = cli(&["info"], Some(&out));
    assert!(ok, "{err}");
    assert!(text.contains("auto table: 2 measured entries"), "{text}");
    // A table for another adapter is left unused (the variable is process-wide; a host may
    // open several adapters), and `info` says why, naming the variable and both adapters.
    let mut other = t.clone();
    other.adapter.name = "Some Other GPU".into();
    other.save(&out).unwrap();
    let (ok, text, err) = cli(&["info"], Some(&out));
    assert!(ok, "{err}");
    let line = text
        .lines()
        .find(|l| l.starts_with("auto table: none ("))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        line.contains(AUTO_TABLE_ENV) && line.contains("Some Other GPU"),
        "{line}"
    );
    // A file that is not a table is an error: `info` cannot open the context.
    std::fs::write(&out, "{}").unwrap();
    let (ok, text, _) = cli(&["info"], Some(&out));
    assert!(!ok && text.contains(AUTO_TABLE_ENV), "{text}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn tune_builds_a_table_from_a_bench_report() {
    let dir = std::env::temp_dir().join(format!("wgpu-rnn-tune-from-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let report = dir.join("bench.json");
    let row = |imp: &str, wall: f64| {
        serde_json::json!({"cell": "lstm", "pass": "forward", "B": 64, "T": 100, "I": 256,
            "H": 256, "impl": imp, "median_ms": 1.0, "wall_ms": wall})
    };
    let v = serde_json::json!({
        "adapter": {"name": "NVIDIA H200", "backend": "Vulkan", "device_type": "DiscreteGpu",
                    "driver": "NVIDIA 580"},
        "results": [row("stepwise", 6.1), row("grid", 2.5), row("persistent", 26.0),
                    row("cpu", 900.0)],
    });
    std::fs::write(&report, serde_json::to_string(&v).unwrap()).unwrap();
    let out = dir.join("auto.json");
    let (ok, text, err) = cli(
        &[
            "tune",
            "--from",
            report.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
        None,
    );
    assert!(ok, "{err}");
    assert!(
        text.contains("| lstm | forward | 64 | 100 | 256 | grid |"),
        "{text}"
    );
    let t = AutoTable::load(&out).unwrap();
    assert_eq!(t.adapter.name, "NVIDIA H200");
    assert_eq!(
        t.ranked("lstm", false, (64, 100, 256)),
        [Algorithm::Grid, Algorithm::Stepwise, Algorithm::Persistent]
    );
    // A report that is not JSON is an error naming the file.
    std::fs::write(&report, "not json").unwrap();
    let (ok, _, err) = cli(
        &[
            "tune",
            "--from",
            report.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
        None,
    );
    assert!(!ok && err.contains("bench.json"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
