//! Issue 15: no crash on any input. Every probe of the issue ends as a typed error naming the
//! value and the limit (or a correct result); the GPU keeps NaN/inf exactly as the CPU does;
//! malformed golden and safetensors bytes give typed errors, never a panic.

mod common;
#[path = "support/nan_parity.rs"]
mod nan_parity;
#[path = "support/robust_files.rs"]
mod robust_files;
#[path = "support/train.rs"]
mod train_support;

use std::path::{Path, PathBuf};
use std::process::Command;

use ndarray::{Array3, Array5};
use wgpu_rnn::data::npy;
use wgpu_rnn::golden::{Golden, run_case};
use wgpu_rnn::weights::safetensors_io;
use wgpu_rnn::{
    Algorithm, Backend, ConvLstm2d, ConvLstm2dConfig, Error, Gru, GruConfig, Lstm, LstmConfig,
    Padding,
};

/// A typed `Limit` error whose message names `needle`.
fn assert_limit<T>(r: wgpu_rnn::Result<T>, needle: &str) {
    match r {
        Err(Error::Limit(m)) => assert!(m.contains(needle), "{m} lacks {needle:?}"),
        Err(e) => panic!("expected a Limit error naming {needle:?}, got {e:?}"),
        Ok(_) => panic!("expected a Limit error naming {needle:?}, got Ok"),
    }
}

// ------------------------------------------------------------- 1. sizes before allocation

#[test]
fn huge_recurrent_configs_are_limit_errors_not_aborts() {
    // Each of these aborted or panicked before: sizes are checked before allocating.
    assert_limit(
        Lstm::new(LstmConfig::new(1, 1_000_000_000), Backend::Cpu, 0),
        "the limit is",
    );
    let mut deep = LstmConfig::new(1, 1);
    deep.num_layers = 1_000_000_000;
    assert_limit(Lstm::new(deep, Backend::Cpu, 0), "1000000000 layer(s)");
    assert_limit(
        Gru::new(GruConfig::new(1, 1_000_000_000), Backend::Cpu, 0),
        "3 gate(s)",
    );
    assert_limit(
        Lstm::new(LstmConfig::new(1, usize::MAX / 2), Backend::Cpu, 0),
        "does not fit",
    );
    assert_limit(
        Lstm::new(LstmConfig::new(usize::MAX, 2), Backend::Cpu, 0),
        "does not fit",
    );
    // The same through the GPU backend: refused before any buffer is made.
    assert_limit(
        Lstm::new(LstmConfig::new(1, 1_000_000_000), common::gpu(), 0),
        "of host memory",
    );
    // Just under the cap still works (a small layer, to show the check is not too eager).
    Lstm::new(LstmConfig::new(3, 4), Backend::Cpu, 0).unwrap();
}

#[test]
fn huge_convlstm_configs_are_limit_errors_not_aborts() {
    assert_limit(
        ConvLstm2d::new(
            ConvLstm2dConfig::new(4, 4, 1, 1_000_000, (3, 3)),
            Backend::Cpu,
            0,
        ),
        "ConvLSTM2D parameters",
    );
    let mut wide = ConvLstm2dConfig::new(4, 4, 1, 2, (usize::MAX, 1));
    wide.padding = Padding::Same;
    assert_limit(ConvLstm2d::new(wide, Backend::Cpu, 0), "does not fit");
    let huge_frame = ConvLstm2dConfig::new(1 << 20, 1 << 20, 1, 1, (1, 1));
    assert_limit(ConvLstm2d::new(huge_frame, Backend::Cpu, 0), "pixels");
}

#[test]
fn golden_with_a_billion_layers_is_a_limit_error() {
    let path = robust_files::golden_with("billion_layers", |c| {
        c["num_layers"] = 1_000_000_000.into();
    });
    let g = Golden::load(&path).unwrap();
    assert_limit(run_case(&g, &Backend::Cpu), "1000000000 layer(s)");
    // The CLI reports it as a failed case, exit status 1, no abort.
    let out = robust_files::run_bounded(
        Command::new(env!("CARGO_BIN_EXE_wgpu-rnn"))
            .args(["verify", "--backend", "cpu"])
            .arg(&path),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("limit exceeded") && text.contains("0 passed, 1 failed"),
        "{text}"
    );
}

#[test]
fn bench_with_a_huge_shape_is_a_limit_error() {
    let out = robust_files::run_bounded(Command::new(env!("CARGO_BIN_EXE_wgpu-rnn")).args([
        "bench",
        "--cells",
        "rnn",
        "--impls",
        "cpu",
        "--shapes",
        "1000000000,1000000000,1,1",
    ]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("limit exceeded") && err.contains("T 1000000000 x B 1000000000"),
        "{err}"
    );
}

// ------------------------------------------------------------- 3. next_frame data and arguments

#[cfg(feature = "render")]
mod next_frame {
    use super::*;

    fn run(args: &[&str], data: Option<&Path>) -> (bool, String) {
        let out_dir = robust_files::tmp(&format!("nf_out_{}", args.join("_")));
        let mut cmd = Command::new(robust_files::example("next_frame"));
        cmd.args(args).arg("--out").arg(&out_dir);
        if let Some(d) = data {
            cmd.arg("--data").arg(d);
        }
        let out = robust_files::run_bounded(&mut cmd);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    /// A Moving-MNIST-layout file (T, N, H, W) uint8.
    fn npy_file(name: &str, shape: (usize, usize, usize, usize)) -> PathBuf {
        let a = ndarray::Array4::<u8>::from_shape_fn(shape, |(t, n, y, x)| {
            ((t * 31 + n * 7 + y * 3 + x) % 256) as u8
        });
        let path = robust_files::tmp(name);
        npy::write_u8(&path, a.view()).unwrap();
        path
    }

    #[test]
    fn bad_arguments_fail_before_training_naming_the_value() {
        for (args, needle) in [
            (vec!["--quick", "--epochs", "0"], "--epochs 0"),
            (vec!["--quick", "--train", "0"], "--train 0"),
            (vec!["--quick", "--train", "5"], "at least one batch of 8"),
            (vec!["--quick", "--heldout", "0"], "--heldout 0"),
            (vec!["--quick", "--lr", "NaN"], "--lr NaN"),
            (vec!["--quick", "--filters", "100000"], "limit exceeded"),
        ] {
            let (ok, text) = run(&args, None);
            assert!(!ok, "{args:?} succeeded:\n{text}");
            assert!(text.contains(needle), "{args:?}: {text}");
            assert!(!text.contains("epoch 1"), "{args:?} trained:\n{text}");
            assert!(!text.contains("panicked"), "{args:?}: {text}");
        }
    }

    #[test]
    fn bad_data_files_fail_before_training_naming_the_problem() {
        for (name, shape, needle) in [
            ("nf_empty.npy", (20, 0, 64, 64), "0 sequence(s)"),
            ("nf_one_seq.npy", (20, 1, 64, 64), "1 sequence(s)"),
            (
                "nf_few_seqs.npy",
                (20, 6, 64, 64),
                "at least one training batch of 8",
            ),
            ("nf_one_frame.npy", (1, 40, 64, 64), "1 frame(s)"),
            (
                "nf_tiny_frames.npy",
                (20, 40, 2, 2),
                "smaller than the 4x downscale",
            ),
        ] {
            let path = npy_file(name, shape);
            let (ok, text) = run(&["--quick", "--epochs", "1"], Some(&path));
            assert!(!ok, "{name} succeeded:\n{text}");
            assert!(text.contains(needle), "{name}: {text}");
            assert!(!text.contains("epoch 1"), "{name} trained:\n{text}");
            assert!(!text.contains("panicked"), "{name}: {text}");
        }
    }

    /// Fewer than 20 frames (it panicked on `end <= axis_len`) and 4x4 frames (the GIF scale
    /// failed after training) now train and write their outputs.
    #[test]
    fn short_sequences_and_small_frames_train_and_write_outputs() {
        let path = npy_file("nf_short.npy", (4, 12, 16, 16));
        let (ok, text) = run(
            &["--quick", "--epochs", "1", "--train", "8", "--heldout", "2"],
            Some(&path),
        );
        assert!(ok, "{text}");
        assert!(text.contains("sequences of 4 frames 4x4"), "{text}");
        assert!(text.contains("epoch 1: train BCE"), "{text}");
    }

    #[test]
    fn rollout_of_zero_steps_is_a_config_error() {
        use std::sync::Arc;
        use wgpu_rnn::models::{ConvLstmLayerSpec, NextFrameConfig, NextFrameModel};
        use wgpu_rnn::train::OptimizerConfig;
        let Backend::Gpu(ctx) = common::gpu() else {
            unreachable!()
        };
        let cfg = NextFrameConfig {
            rows: 4,
            cols: 4,
            channels: 1,
            layers: vec![ConvLstmLayerSpec {
                filters: 2,
                kernel: (3, 3),
            }],
            head_kernel: (3, 3),
            head_bias_init: 0.0,
            optimizer: OptimizerConfig::adam(1e-3),
            seed: 1,
        };
        let model = NextFrameModel::new(Arc::clone(&ctx), cfg).unwrap();
        let x = Array5::<f32>::zeros((1, 2, 4, 4, 1));
        match model.rollout(x.view(), 0) {
            Err(Error::Config(m)) => assert!(m.contains("rollout steps is 0"), "{m}"),
            other => panic!("expected a Config error, got {other:?}"),
        }
        assert_eq!(model.rollout(x.view(), 2).unwrap().dim(), (1, 2, 4, 4, 1));
    }
}

// ------------------------------------------------------------- 4. special files never hang

#[cfg(unix)]
mod special_files {
    use super::*;

    #[test]
    fn verify_compare_and_next_frame_refuse_a_fifo() {
        let fifo = robust_files::fifo("probe.fifo");
        let bin = env!("CARGO_BIN_EXE_wgpu-rnn");
        let verify = robust_files::run_bounded(
            Command::new(bin)
                .args(["verify", "--backend", "cpu"])
                .arg(&fifo),
        );
        let text = String::from_utf8_lossy(&verify.stdout);
        assert!(!verify.status.success() && text.contains("FIFO"), "{text}");
        let compare =
            robust_files::run_bounded(Command::new(bin).arg("compare").arg(&fifo).arg(&fifo));
        let summary = robust_files::run_bounded(Command::new(bin).arg("summary").arg(&fifo));
        let err = String::from_utf8_lossy(&summary.stderr);
        assert!(!summary.status.success() && err.contains("FIFO"), "{err}");
        let err = String::from_utf8_lossy(&compare.stderr);
        assert!(!compare.status.success() && err.contains("FIFO"), "{err}");
        #[cfg(feature = "render")]
        {
            let out = robust_files::run_bounded(
                Command::new(robust_files::example("next_frame"))
                    .args(["--quick", "--data"])
                    .arg(&fifo)
                    .arg("--out")
                    .arg(robust_files::tmp("fifo_out")),
            );
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success() && err.contains("FIFO"), "{err}");
        }
        // And through the library: every file reader checks the kind first.
        for e in [
            Golden::load(&fifo).err().unwrap(),
            safetensors_io::read(&fifo).err().unwrap(),
            npy::read_u8(&fifo).err().unwrap(),
            npy::load_moving_mnist(&fifo, None).err().unwrap(),
        ] {
            assert!(
                matches!(&e, Error::Io { msg, .. } if msg.contains("FIFO")),
                "{e}"
            );
        }
        let dir = std::env::temp_dir();
        let e = safetensors_io::read(&dir).err().unwrap();
        assert!(e.to_string().contains("a directory"), "{e}");
    }
}

// ------------------------------------------------------------- 5. nothing silently accepted

#[test]
fn bench_rejects_unknown_impls_and_empty_lists_naming_the_value() {
    let bin = env!("CARGO_BIN_EXE_wgpu-rnn");
    for (args, needle) in [
        (
            vec!["bench", "--impls", "foo"],
            "unknown implementation \"foo\"",
        ),
        (vec!["bench", "--impls", ""], "names no implementation"),
        (vec!["bench", "--cells", "foo"], "unknown cell \"foo\""),
        (vec!["bench", "--cells", ""], "no cell to bench"),
        (
            vec!["bench", "--shapes", ""],
            "--shapes \"\" names no shape",
        ),
        (vec!["bench", "--shapes", "8,x,1,1"], "8,x,1,1"),
        (
            vec!["bench", "--shapes", "8,0,1,1"],
            "four positive numbers",
        ),
        (
            vec!["bench", "--runs", "1000000000000"],
            "runs 1000000000000",
        ),
    ] {
        let out = robust_files::run_bounded(Command::new(bin).args(&args));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    // The accepted names come from one list that new algorithms extend.
    let names = wgpu_rnn::bench::impl_names();
    for n in ["persistent", "stepwise", "unfused", "cpu", "gemm_regblock"] {
        assert!(names.contains(&n), "{names:?}");
    }
}

#[test]
fn unknown_x_layout_is_a_format_error() {
    let path = robust_files::golden_with("bad_layout", |c| c["x_layout"] = "ITB".into());
    let g = Golden::load(&path).unwrap();
    match run_case(&g, &Backend::Cpu) {
        Err(Error::Format(m)) => assert!(m.contains("x_layout \"ITB\""), "{m}"),
        other => panic!("expected a Format error, got {:?}", other.map(|r| r.len())),
    }
    let path = robust_files::golden_with("num_layout", |c| c["x_layout"] = 3.into());
    let g = Golden::load(&path).unwrap();
    assert!(matches!(run_case(&g, &Backend::Cpu), Err(Error::Format(_))));
}

#[test]
fn compare_rejects_malformed_rows_naming_the_value() {
    let row = |b: serde_json::Value, med: serde_json::Value| {
        serde_json::json!({"adapter": {"name": "x"}, "results": [
            {"cell": "lstm", "pass": "forward", "B": b, "T": 10, "I": 4, "H": 4,
             "impl": "stepwise", "median_ms": med}]})
    };
    let good = row(8.into(), 1.5.into());
    assert!(
        wgpu_rnn::bench::compare(&good, &good)
            .unwrap()
            .contains("b/a 1.00")
    );
    for (bad, needle) in [
        (
            row("eight".into(), 1.5.into()),
            "B = \"eight\" is not a positive integer",
        ),
        (row(8.into(), 0.into()), "median_ms = 0"),
        (row(8.into(), (-1.0).into()), "median_ms = -1.0"),
        (row(8.into(), "fast".into()), "median_ms = \"fast\""),
        (
            serde_json::json!({"results": [{"cell": "lstm", "pass": "forward", "B": 8,
                "T": 10, "impl": "x", "median_ms": 1.0}]}),
            "no I, H or frame",
        ),
    ] {
        for (a, b) in [(&good, &bad), (&bad, &good)] {
            match wgpu_rnn::bench::compare(a, b) {
                Err(Error::Format(m)) => assert!(m.contains(needle), "{m} lacks {needle}"),
                other => panic!("expected a Format error naming {needle}, got {other:?}"),
            }
        }
    }
    // Through the CLI: a non-JSON file and a malformed row both fail with a message.
    let bin = env!("CARGO_BIN_EXE_wgpu-rnn");
    let (a, b) = (
        robust_files::tmp("cmp_a.json"),
        robust_files::tmp("cmp_b.json"),
    );
    std::fs::write(&a, serde_json::to_string(&good).unwrap()).unwrap();
    std::fs::write(&b, serde_json::to_string(&row(8.into(), 0.into())).unwrap()).unwrap();
    let out = robust_files::run_bounded(Command::new(bin).arg("compare").arg(&a).arg(&b));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("median_ms = 0"),
        "{err}"
    );
}

// ------------------------------------------------------------- 6. messages

#[test]
fn messages_state_the_violation_and_the_limit() {
    // An NPY file holding only the magic is truncated, not "bad magic".
    match npy::moving_mnist_from_bytes(b"\x93NUMPY", None) {
        Err(Error::Data(m)) => {
            assert!(
                m.contains("truncated inside its header") && !m.contains("magic"),
                "{m}"
            )
        }
        other => panic!("expected a Data error, got {other:?}"),
    }
    // Persistent: "needs N floats of workgroup memory, the limit is 4000".
    let mut l = Lstm::new(LstmConfig::new(1, 1500), common::gpu(), 1).unwrap();
    l.set_algorithm(Algorithm::Persistent);
    let e = l
        .forward(Array3::<f32>::zeros((1, 1, 1)).view(), None, None)
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("needs proj_or_hidden + 2*hidden = 4500 floats of workgroup memory (hidden_size 1500), the limit is 4000"),
        "{e}"
    );
    // Host-memory limits name the need and the cap in bytes.
    let e = Lstm::new(LstmConfig::new(1, 1_000_000_000), Backend::Cpu, 0)
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("needs ") && e.contains("bytes") && e.contains("the limit is"),
        "{e}"
    );
}

// ------------------------------------------------------------- proptest: mutated files

#[path = "support/mutated_files.rs"]
mod mutated_files;

/// A sequence whose output or gates would pass the host-memory cap is refused before the
/// forward pass allocates them (the input itself is a cheap broadcast view here).
#[test]
fn forward_on_a_sequence_too_large_for_memory_is_a_limit_error() {
    // 40 MB of input; the output alone would be 40 GB.
    let x = Array3::<f32>::zeros((100_000, 100, 1));
    for backend in [Backend::Cpu, common::gpu()] {
        let l = Lstm::new(LstmConfig::new(1, 1024), backend, 0).unwrap();
        assert_limit(l.forward(x.view(), None, None), "T 100000 x B 100");
    }
}

/// The other constructors of the same kind: feed-forward layers, the conv head and the
/// digit generator check their sizes against the cap too.
#[test]
fn other_huge_sizes_are_limit_errors() {
    use wgpu_rnn::Activation;
    use wgpu_rnn::data::{MovingDigitsConfig, generate};
    use wgpu_rnn::nn::{ConvHeadConfig, DenseConfig};
    assert_limit(
        DenseConfig::new(100_000, 100_000, Activation::Linear),
        "dense weight [100000, 100000]",
    );
    assert_limit(
        ConvHeadConfig::new(1 << 20, 1 << 20, (3, 3), Activation::Linear),
        "conv head kernel",
    );
    assert_limit(
        generate(MovingDigitsConfig::default(), 1_000_000_000),
        "1000000000 sequences",
    );
    let mut deep = GruConfig::new(2, 2);
    deep.num_layers = usize::MAX;
    assert_limit(Gru::new(deep, Backend::Cpu, 0), "does not fit");
}

/// A dilation so large that the shaders' i32 tap index would wrap: the GPU refuses it with a
/// Limit error instead of reading a wrong pixel; the CPU reference computes it (every tap but
/// the centre falls in the padding).
#[test]
fn convlstm_dilation_beyond_i32_indexing_is_a_limit_error_on_the_gpu() {
    let mut cfg = ConvLstm2dConfig::new(4, 4, 1, 2, (3, 3));
    cfg.padding = Padding::Same;
    cfg.dilation_rate = (1 << 31, 1);
    let x = Array5::<f32>::from_elem((1, 2, 4, 4, 1), 0.5);
    let cpu = ConvLstm2d::new(cfg, Backend::Cpu, 1).unwrap();
    let y = cpu.forward(x.view(), None).unwrap();
    assert!(y.out.iter().all(|v| v.is_finite()));
    let gpu = ConvLstm2d::new(cfg, common::gpu(), 1).unwrap();
    assert_limit(gpu.forward(x.view(), None), "largest index the shaders use");
}

/// Training losses keep NaN the same way on both backends: a NaN prediction makes the loss
/// NaN (the BCE clamp on probabilities used to turn it into ε on the CPU).
#[test]
fn losses_propagate_nan_like_the_cpu() {
    use wgpu_rnn::train::{LossKind, cpu_loss};
    let p = [0.2f32, f32::NAN, 0.7, 0.4];
    let t = [0.0f32, 1.0, 1.0, 0.0];
    for kind in [
        LossKind::Mse,
        LossKind::Mae,
        LossKind::BinaryCrossEntropy { from_logits: true },
        LossKind::BinaryCrossEntropy { from_logits: false },
        LossKind::SoftmaxCrossEntropy,
    ] {
        let shape = [2, 2];
        let (gl, gg) = train_support::gpu_loss(kind, &shape, &p, &t);
        let pa = train_support::arr(&shape, &p);
        let ta = train_support::arr(&shape, &t);
        let (cl, cg) = cpu_loss(kind, pa.view(), ta.view()).unwrap();
        assert!(
            gl.is_nan() && cl.is_nan(),
            "{kind:?}: loss {gl} on the GPU, {cl} on the CPU"
        );
        for (i, (g, c)) in gg.iter().zip(cg.iter()).enumerate() {
            assert_eq!(g.is_nan(), c.is_nan(), "{kind:?} grad[{i}]: {g} vs {c}");
            if c.is_finite() {
                assert!(
                    (g - c).abs() <= 1e-5 + 1e-4 * c.abs(),
                    "{kind:?} grad[{i}]: {g} vs {c}"
                );
            }
        }
    }
}
