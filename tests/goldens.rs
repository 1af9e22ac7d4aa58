//! Every LSTM, GRU, RNN and ConvLSTM2D golden in tests/data (PyTorch and Keras references, outputs and
//! gradients) through the library on the GPU and on the CPU reference, with the DESIGN.md §4 rule.

mod common;

use std::path::{Path, PathBuf};

use wgpu_rnn::golden::{Golden, compare, run_case, run_case_with};
use wgpu_rnn::{Algorithm, Backend};

/// Every golden in tests/data (LSTM, GRU, RNN, ConvLSTM2D).
fn goldens() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/data")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy().into_owned();
            [
                "torch_lstm_",
                "keras_lstm",
                "torch_gru_",
                "keras_gru_",
                "torch_rnn_",
                "keras_convlstm2d_",
            ]
            .iter()
            .any(|p| n.starts_with(p))
        })
        .collect();
    v.sort();
    v
}

fn check_all(backend: &Backend, algo: Algorithm) {
    let files = goldens();
    assert!(
        files.len() >= 17,
        "expected 7 LSTM, 5 GRU, 1 RNN and 4 ConvLSTM2D goldens, found {files:?}"
    );
    let compared = check_files(&files, backend, algo);
    assert!(compared >= 180, "only {compared} tensors compared");
}

/// Runs `files` with `algo`; fails naming every tensor out of tolerance; returns how many
/// tensors were compared.
fn check_files(files: &[PathBuf], backend: &Backend, algo: Algorithm) -> usize {
    let mut failures = Vec::new();
    let mut compared = 0;
    for f in files {
        let g = Golden::load(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        let reports =
            run_case_with(&g, backend, algo).unwrap_or_else(|e| panic!("{}: {e}", g.case));
        // Every output and gradient in the file must have been compared.
        let expected = g
            .tensors
            .keys()
            .filter(|k| ["out", "h_n", "c_n"].contains(&k.as_str()) || k.starts_with("grad_"))
            .count();
        assert_eq!(reports.len(), expected, "{}: compared tensors", g.case);
        for r in reports {
            compared += 1;
            if !r.pass {
                failures.push(format!(
                    "{} {}: max_abs {:e} > {:e}",
                    g.case, r.tensor, r.max_abs, r.tol
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    compared
}

#[test]
fn goldens_pass_on_gpu_persistent() {
    check_all(&common::gpu(), Algorithm::Persistent);
}

#[test]
fn goldens_pass_on_gpu_stepwise() {
    check_all(&common::gpu(), Algorithm::Stepwise);
}

#[test]
fn goldens_pass_on_gpu_resident() {
    check_all(&common::gpu(), Algorithm::Resident);
}

#[test]
fn goldens_pass_on_gpu_grid() {
    // On lavapipe a grid of more than one workgroup always ends in the fallback (DESIGN.md
    // §2); these small goldens plan a single slice, so this checks the grid path itself.
    check_all(&common::gpu(), Algorithm::Grid);
}

#[test]
fn convlstm_goldens_pass_on_gpu_tiled() {
    // The recurrent cells have no Tiled kernel (they would run their Auto choice, covered
    // below): the ConvLSTM2D goldens alone, forward and every gradient.
    let files: Vec<PathBuf> = goldens()
        .into_iter()
        .filter(|p| p.to_string_lossy().contains("keras_convlstm2d_"))
        .collect();
    assert!(
        files.len() >= 4,
        "expected 4 ConvLSTM2D goldens, found {files:?}"
    );
    let compared = check_files(&files, &common::gpu(), Algorithm::Tiled);
    assert!(compared >= 4 * 8, "only {compared} tensors compared");
}

#[test]
fn goldens_pass_on_gpu_auto() {
    check_all(&common::gpu(), Algorithm::Auto);
}

#[test]
fn goldens_pass_on_cpu() {
    check_all(&Backend::Cpu, Algorithm::Auto);
}

#[test]
fn comparison_rejects_a_perturbed_output() {
    // The pass rule must be able to fail: bump one element of `out` beyond 1e-5·max(1,|ref|).
    let f = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/torch_lstm_small.safetensors");
    let g = Golden::load(&f).unwrap();
    let want = &g.tensors["out"];
    let mut got = want.clone();
    got.as_slice_mut().unwrap()[3] += 2e-5;
    assert!(!compare("out", &got, want).pass);
    assert!(compare("out", want, want).pass);
    let mut nan = want.clone();
    nan.as_slice_mut().unwrap()[0] = f32::NAN;
    assert!(!compare("out", &nan, want).pass, "NaN must fail");
    // Gradients get the looser 1e-4 rule.
    let gw = &g.tensors["grad_x"];
    let mut gg = gw.clone();
    gg.as_slice_mut().unwrap()[0] += 5e-5;
    assert!(compare("grad_x", &gg, gw).pass);
}

#[test]
fn unsupported_cells_are_errors_not_skips() {
    let f = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/torch_lstm_small.safetensors");
    let mut g = Golden::load(&f).unwrap();
    g.config["cell"] = "gru_future".into();
    let e = run_case(&g, &Backend::Cpu).expect_err("must be an error");
    assert!(e.to_string().starts_with("unsupported: "), "{e}");
}
