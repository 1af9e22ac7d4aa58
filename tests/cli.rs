//! The `wgpu-rnn verify` contract of DESIGN.md §3: one JSON object per compared tensor, a
//! final `N passed, M failed` line, exit status 0 only when everything passed.

use std::path::Path;
use std::process::Command;

fn data(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
        .display()
        .to_string()
}

fn run(args: &[&str]) -> (bool, Vec<String>) {
    let out = Command::new(env!("CARGO_BIN_EXE_wgpu-rnn"))
        .args(args)
        .output()
        .expect("run wgpu-rnn");
    let text = String::from_utf8(out.stdout).expect("utf8");
    (
        out.status.success(),
        text.lines().map(str::to_string).collect(),
    )
}

#[test]
fn verify_prints_json_lines_and_a_summary() {
    for backend in ["gpu", "cpu"] {
        let (ok, lines) = run(&[
            "verify",
            "--backend",
            backend,
            &data("torch_lstm_small.safetensors"),
            &data("keras_lstm.safetensors"),
        ]);
        assert!(ok, "{backend}: {lines:?}");
        let (summary, json) = lines.split_last().expect("output");
        // small: out h_n c_n + grad_x h0 c0 + 4 params = 10; keras: 3 + 3 + 3 = 9
        assert_eq!(summary, "19 passed, 0 failed", "{backend}");
        for l in json {
            let v: serde_json::Value = serde_json::from_str(l).expect("JSON line");
            assert_eq!(v["backend"], backend);
            assert_eq!(v["pass"], true);
            assert!(
                v["max_abs"].as_f64().unwrap()
                    <= 1e-4 * v["ref_max_abs"].as_f64().unwrap().max(1.0)
            );
            assert!(v["case"].as_str().unwrap().contains("lstm"));
            assert!(v["tensor"].is_string());
        }
    }
}

#[test]
fn verify_forces_the_named_algorithm() {
    let all = [
        "torch_lstm_proj.safetensors",
        "torch_gru_bidir_2layer.safetensors",
        "keras_gru_reset_before.safetensors",
        "torch_rnn_tanh_2layer.safetensors",
    ];
    let files: Vec<String> = all.iter().map(|f| data(f)).collect();
    for algo in ["resident", "persistent", "stepwise", "auto"] {
        let mut args = vec!["verify", "--algorithm", algo];
        args.extend(files.iter().map(String::as_str));
        let (ok, lines) = run(&args);
        assert!(ok, "{algo}: {lines:?}");
        let summary = lines.last().expect("summary");
        assert!(summary.ends_with(" passed, 0 failed"), "{algo}: {summary}");
    }
    // An unknown name is an error that names the choices, not a silent default.
    let out = Command::new(env!("CARGO_BIN_EXE_wgpu-rnn"))
        .args(["verify", "--algorithm", "fastest", &files[0]])
        .output()
        .expect("run wgpu-rnn");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("resident"));
}

#[test]
fn verify_fails_on_a_bad_file() {
    let dir = std::env::temp_dir().join("wgpu_rnn_cli_test");
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("not_a_golden.safetensors");
    std::fs::write(&bad, b"garbage").unwrap();
    let (ok, lines) = run(&[
        "verify",
        "--backend",
        "cpu",
        &data("torch_lstm_small.safetensors"),
        bad.to_str().unwrap(),
    ]);
    assert!(!ok, "a broken file must make verify fail");
    assert_eq!(lines.last().unwrap(), "10 passed, 1 failed");
    let err: serde_json::Value = serde_json::from_str(&lines[lines.len() - 2]).unwrap();
    assert_eq!(err["pass"], false);
    assert!(err["error"].is_string());
}

#[test]
fn unknown_adapter_name_is_reported() {
    let out = Command::new(env!("CARGO_BIN_EXE_wgpu-rnn"))
        .arg("info")
        .env("WGPU_RNN_ADAPTER", "no-such-adapter-xyz")
        .output()
        .expect("run wgpu-rnn");
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("WGPU_RNN_ADAPTER=\"no-such-adapter-xyz\" matches none"),
        "{text}"
    );
}

#[test]
fn info_names_the_chosen_adapter() {
    let (ok, lines) = run(&["info"]);
    assert!(ok, "{lines:?}");
    assert!(lines.iter().any(|l| l.starts_with("chosen: ")));
    assert!(
        lines
            .iter()
            .any(|l| l.contains("max_compute_workgroup_storage_size"))
    );
}

#[test]
fn bench_writes_the_documented_json() {
    let json = std::env::temp_dir().join("wgpu_rnn_bench_test.json");
    let (ok, lines) = run(&[
        "bench",
        "--quick",
        "--cells",
        "rnn",
        "--runs",
        "5",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(ok, "{lines:?}");
    assert!(lines[0].starts_with("adapter: "), "{lines:?}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    for k in ["name", "backend", "device_type", "driver"] {
        assert!(v["adapter"][k].is_string(), "adapter.{k}");
    }
    assert!(v["crate_version"].is_string());
    let results = v["results"].as_array().unwrap();
    // 5 implementations × (forward, forward_backward) at the quick shape.
    assert_eq!(results.len(), 10, "{results:?}");
    for r in results {
        assert_eq!(r["cell"], "rnn");
        assert_eq!(
            (
                r["B"].as_u64(),
                r["T"].as_u64(),
                r["I"].as_u64(),
                r["H"].as_u64()
            ),
            (Some(8), Some(100), Some(128), Some(128))
        );
        let (lo, med, hi) = (
            r["min_ms"].as_f64().unwrap(),
            r["median_ms"].as_f64().unwrap(),
            r["max_ms"].as_f64().unwrap(),
        );
        assert!(0.0 < lo && lo <= med && med <= hi, "{r}");
        assert!(r["gflops"].as_f64().unwrap() > 0.0);
        let imp = r["impl"].as_str().unwrap();
        assert!(["persistent", "stepwise", "resident", "grid", "cpu"].contains(&imp));
        let gpu = imp != "cpu";
        assert_eq!(r["submits"].as_u64().unwrap() > 0, gpu, "{r}");
        assert_eq!(r["encode_ms"].is_number(), gpu, "{r}");
        // GPU rows carry the wall time of a whole call (submit and read-back included).
        assert_eq!(r["wall_ms"].is_number(), gpu, "{r}");
        // ... and the wall time with the input on the device and the outputs left there.
        assert_eq!(r["device_wall_ms"].is_number(), gpu, "{r}");
        if gpu {
            assert!(r["device_wall_ms"].as_f64().unwrap() > 0.0, "{r}");
            assert!(
                r["wall_ms"].as_f64().unwrap() >= r["encode_ms"].as_f64().unwrap(),
                "{r}"
            );
        }
        assert!(["gpu_timestamps", "wall"].contains(&r["timing"].as_str().unwrap()));
        if r["timing"] == "gpu_timestamps" {
            assert!(r["recurrence_ms"].as_f64().unwrap() <= med, "{r}");
        }
    }
    let stepwise_fwd = results
        .iter()
        .find(|r| r["impl"] == "stepwise" && r["pass"] == "forward")
        .unwrap();
    assert_eq!(stepwise_fwd["dispatches"], 101, "1 GEMM + 100 steps");
    assert_eq!(stepwise_fwd["submits"], 1);
    let resident_fwd = results
        .iter()
        .find(|r| r["impl"] == "resident" && r["pass"] == "forward")
        .unwrap();
    assert_eq!(
        resident_fwd["dispatches"], 2,
        "1 GEMM + all 100 steps in one dispatch"
    );
}

#[test]
fn bench_gemm_times_the_named_kernels_at_both_shapes() {
    let json = std::env::temp_dir().join("wgpu_rnn_bench_gemm_test.json");
    // --quick leaves out 2048³ (seconds per run on a software adapter).
    let (ok, lines) = run(&[
        "bench",
        "--quick",
        "--cells",
        "gemm",
        "--impls",
        "gemm_tiled64,gemm_regblock",
        "--runs",
        "5",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(ok, "{lines:?}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let results = v["results"].as_array().unwrap();
    let got: Vec<(String, u64, u64, u64)> = results
        .iter()
        .map(|r| {
            assert_eq!(
                (r["cell"].as_str(), r["B"].as_u64()),
                (Some("gemm"), Some(1))
            );
            assert!(r["gflops"].as_f64().unwrap() > 0.0, "{r}");
            assert!(r["wall_ms"].as_f64().unwrap() > 0.0, "{r}");
            let u = |k: &str| r[k].as_u64().unwrap();
            (
                r["impl"].as_str().unwrap().to_string(),
                u("M"),
                u("K"),
                u("N"),
            )
        })
        .collect();
    let want: Vec<(String, u64, u64, u64)> = [(800, 128, 512), (512, 512, 512)]
        .iter()
        .flat_map(|&(m, k, n)| ["gemm_tiled64", "gemm_regblock"].map(|i| (i.to_string(), m, k, n)))
        .collect();
    assert_eq!(got, want);
    // Reports with GEMM rows join by shape.
    let p = json.to_str().unwrap();
    let (ok, lines) = run(&["compare", p, p]);
    assert!(ok, "{lines:?}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("gemm forward M800 K128 N512: ")),
        "{lines:?}"
    );
}

#[test]
fn bench_gemm_shapes_replace_the_defaults_and_bad_ones_are_refused() {
    let json = std::env::temp_dir().join("wgpu_rnn_bench_gemm_shapes_test.json");
    let (ok, lines) = run(&[
        "bench",
        "--cells",
        "gemm",
        "--impls",
        "gemm_regblock",
        "--gemm-shapes",
        "33,7,5;1,1,9",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(ok, "{lines:?}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let got: Vec<(u64, u64, u64)> = v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let u = |k: &str| r[k].as_u64().unwrap();
            (u("M"), u("K"), u("N"))
        })
        .collect();
    assert_eq!(got, vec![(33, 7, 5), (1, 1, 9)]);
    for bad in ["", "1,2", "0,1,1", "a,b,c"] {
        let (ok, lines) = run(&["bench", "--cells", "gemm", "--gemm-shapes", bad]);
        assert!(!ok, "--gemm-shapes {bad:?} was accepted: {lines:?}");
    }
}

#[test]
fn compare_joins_two_reports() {
    let dir = std::env::temp_dir().join("wgpu_rnn_compare_test");
    std::fs::create_dir_all(&dir).unwrap();
    let row = |imp: &str, ms: f64| serde_json::json!({"cell": "gru", "pass": "forward_backward", "B": 8, "T": 100, "I": 128, "H": 128, "impl": imp, "median_ms": ms});
    let a = serde_json::json!({"adapter": {"name": "A"}, "results": [row("stepwise", 3.0)]});
    let b = serde_json::json!({"adapter": {"name": "B"}, "results": [row("cudnn-fp32", 6.0), row("cudnn-tf32", 4.5)]});
    let (pa, pb) = (dir.join("a.json"), dir.join("b.json"));
    std::fs::write(&pa, a.to_string()).unwrap();
    std::fs::write(&pb, b.to_string()).unwrap();
    let (ok, lines) = run(&["compare", pa.to_str().unwrap(), pb.to_str().unwrap()]);
    assert!(ok, "{lines:?}");
    assert_eq!(lines[0], "a: A");
    assert!(lines[2].ends_with("b/a 1.50"), "{lines:?}");
    let (ok, _) = run(&[
        "compare",
        pa.to_str().unwrap(),
        dir.join("missing.json").to_str().unwrap(),
    ]);
    assert!(!ok, "a missing report must fail");
}
