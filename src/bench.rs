//! The benchmark behind `wgpu-rnn bench`: every cell, forward and forward+backward, per
//! implementation (GPU Persistent, Stepwise, Resident, CPU reference; LSTM also the unfused
//! per-op GPU baseline), medians of several runs
//! after a warm-up, in the JSON schema the README documents so runs from different vendors
//! (and `bench/pytorch_baseline.py`) can be joined side by side. The `gemm` cell times the
//! GEMM kernels alone (`bench/gemm.rs`).

mod device_wall;
mod gemm;
mod options;
mod report;

pub use options::{
    BenchOptions, CELLS, IMPLS, Impl, MAX_RUNS, impl_names, parse_gemm_shapes, parse_shapes,
};
pub use report::{compare, table};

use options::check_shape_memory;

use std::time::Instant;

use ndarray::{Array3, Array5};
use serde::Serialize;

use crate::algorithm::Algorithm;
use crate::error::{Error, Result};
use crate::kernels::RecordStats;
use crate::layers::Backend;
use crate::layers::convlstm::{Activation, ConvLstm2d, ConvLstm2dConfig, Padding};
use crate::layers::convlstm_stack::ConvLstm2dStack;
use crate::layers::gru::{Gru, GruConfig};
use crate::layers::lstm::{Lstm, LstmConfig};
use crate::layers::simple_rnn::{SimpleRnn, SimpleRnnConfig};

/// The adapter a report was measured on.
#[derive(Clone, Debug, Serialize)]
pub struct AdapterJson {
    pub name: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
}

/// One measurement (see the README for every field).
#[derive(Clone, Debug, Serialize)]
pub struct BenchResult {
    pub cell: String,
    pub pass: String,
    #[serde(rename = "B")]
    pub b: usize,
    #[serde(rename = "T")]
    pub t: usize,
    #[serde(rename = "I", skip_serializing_if = "Option::is_none")]
    pub i: Option<usize>,
    #[serde(rename = "H", skip_serializing_if = "Option::is_none")]
    pub h: Option<usize>,
    /// ConvLSTM2D: `[rows, cols, channels]` of the input frame.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frame: Option<[usize; 3]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filters: Option<usize>,
    /// ConvLSTM2D: the kernel size of each stacked layer (`[3]`: one 3×3 layer; `[5, 3, 1]`:
    /// the Keras next-frame example's three layers), all "same", `filters` each.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernels: Option<Vec<usize>>,
    /// GEMM rows: C is M×N, the inner dimension K (B = T = 1).
    #[serde(rename = "M", skip_serializing_if = "Option::is_none")]
    pub m: Option<usize>,
    #[serde(rename = "K", skip_serializing_if = "Option::is_none")]
    pub k: Option<usize>,
    #[serde(rename = "N", skip_serializing_if = "Option::is_none")]
    pub n: Option<usize>,
    #[serde(rename = "impl")]
    pub implementation: String,
    pub median_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
    /// The time-loop part alone (GPU timestamps), median.
    pub recurrence_ms: Option<f64>,
    /// Host time to record and submit one forward (GPU), median.
    pub encode_ms: Option<f64>,
    /// GPU rows: median wall time of one whole call (upload, submit, wait, read-back), the
    /// clock bench/pytorch_baseline.py uses.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wall_ms: Option<f64>,
    /// GPU rows (recurrent cells, ConvLSTM2D): median wall time with the input already on
    /// the device and the outputs left there (record, one submit, wait), the like-for-like
    /// clock of PyTorch's baseline, whose tensors live on the GPU.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_wall_ms: Option<f64>,
    pub gflops: f64,
    pub dispatches: usize,
    pub submits: usize,
    /// "gpu_timestamps" or "wall".
    pub timing: String,
}

/// A whole run.
#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    pub adapter: AdapterJson,
    pub crate_version: String,
    pub results: Vec<BenchResult>,
}

/// One measured call: its time (GPU or wall) and what it recorded.
struct Sample {
    ms: f64,
    /// Wall time of the whole call (upload, record, submit, wait, read-back).
    wall: f64,
    rec_ms: Option<f64>,
    stats: RecordStats,
}

fn median(v: &mut [f64]) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

/// Runs `f` once to warm up, then `runs` times; each call returns the stats of its submits.
/// With GPU timestamps (`gpu_timed`, on `backend`'s profiling context) the wall times come
/// from another warm-up and `runs` calls with profiling off: a profiled submit waits for
/// the GPU and reads its timestamps back, a round trip no user's call pays.
fn measure(
    runs: usize,
    (gpu_timed, backend): (bool, &Backend),
    mut f: impl FnMut() -> Result<Vec<RecordStats>>,
) -> Result<(Vec<Sample>, bool)> {
    let mut out = timed_calls(runs, gpu_timed, &mut f)?;
    if let (true, Backend::Gpu(ctx)) = (gpu_timed, backend) {
        ctx.set_profiling(false);
        let walls = timed_calls(runs, false, &mut f);
        ctx.set_profiling(true);
        for (s, w) in out.0.iter_mut().zip(walls?.0) {
            s.wall = w.wall;
        }
    }
    Ok(out)
}

/// One warm-up call, then `runs` measured ones.
fn timed_calls(
    runs: usize,
    gpu_timed: bool,
    f: &mut impl FnMut() -> Result<Vec<RecordStats>>,
) -> Result<(Vec<Sample>, bool)> {
    f()?;
    let mut out = Vec::with_capacity(runs);
    let mut all_gpu = gpu_timed;
    for _ in 0..runs {
        let t0 = Instant::now();
        let stats = f()?;
        let wall = t0.elapsed().as_secs_f64() * 1e3;
        let gpu: Option<f64> = stats.iter().map(|s| s.gpu_ms).sum();
        let rec: Option<f64> = stats.iter().map(|s| s.recurrence_ms).sum();
        all_gpu &= gpu.is_some();
        let mut total = RecordStats::default();
        for s in &stats {
            total.dispatches += s.dispatches;
            total.submits += s.submits;
            total.encode_ms += s.encode_ms;
        }
        out.push(Sample {
            ms: if gpu_timed { gpu.unwrap_or(wall) } else { wall },
            wall,
            rec_ms: rec,
            stats: total,
        });
    }
    Ok((out, all_gpu))
}

/// Shape and cost of one benchmark case.
struct Case {
    cell: &'static str,
    b: usize,
    t: usize,
    i: Option<usize>,
    h: Option<usize>,
    frame: Option<[usize; 3]>,
    filters: Option<usize>,
    kernels: Option<Vec<usize>>,
    /// Forward FLOPs (DESIGN.md §6); forward+backward counts 3×.
    flops: f64,
}

fn recurrent_cases(cell: &'static str, gates: usize, opts: &BenchOptions) -> Vec<Case> {
    let shapes: &[(usize, usize, usize, usize)] = if !opts.shapes.is_empty() {
        &opts.shapes
    } else if opts.quick {
        &[(8, 100, 128, 128)]
    } else {
        &[(64, 100, 256, 256), (1, 1000, 64, 64), (256, 50, 512, 512)]
    };
    shapes
        .iter()
        .map(|&(b, t, i, h)| Case {
            cell,
            b,
            t,
            i: Some(i),
            h: Some(h),
            frame: None,
            filters: None,
            kernels: None,
            flops: 2.0 * (t * b * (i + h) * gates * h) as f64,
        })
        .collect()
}

/// ConvLSTM2D shapes (issue 12, `bench/pytorch_convlstm.py` times the same): `--quick` the
/// small one (B2 T10 32×32×1 F16 3×3); otherwise that one, the Moving-MNIST model's layer (B8
/// T10 64×64×1 F40 3×3) and the Keras next-frame example's stack (B8 T10 64×64×1, three layers of
/// 64 filters, 5×5 / 3×3 / 1×1). All "same", return_sequences.
fn convlstm_cases(quick: bool) -> Vec<Case> {
    let shapes: &[(usize, usize, usize, usize, &[usize])] = if quick {
        &[(2, 10, 32, 16, &[3])]
    } else {
        &[
            (2, 10, 32, 16, &[3]),
            (8, 10, 64, 40, &[3]),
            (8, 10, 64, 64, &[5, 3, 1]),
        ]
    };
    shapes
        .iter()
        .map(|&(b, t, side, f, kernels)| {
            // Forward FLOPs: 2·B·T·Ho·Wo·4F·k²·(Cin + F) per layer.
            let mut cin = 1;
            let mut flops = 0.0;
            for &k in kernels {
                flops += 2.0 * (b * t * side * side * 4 * f * k * k * (cin + f)) as f64;
                cin = f;
            }
            Case {
                cell: "convlstm2d",
                b,
                t,
                i: None,
                h: None,
                frame: Some([side, side, 1]),
                filters: Some(f),
                kernels: Some(kernels.to_vec()),
                flops,
            }
        })
        .collect()
}

/// The layers of a ConvLSTM2D bench case: "same", return_sequences; a stack uses relu as the
/// Keras example does.
fn convlstm_layers(case: &Case, backend: &Backend, algo: Algorithm) -> Result<Vec<ConvLstm2d>> {
    let [rows, cols, mut cin] = case.frame.unwrap_or([1, 1, 1]);
    let f = case.filters.unwrap_or(1);
    let kernels = case.kernels.clone().unwrap_or_else(|| vec![3]);
    let mut layers = Vec::new();
    for (n, &k) in kernels.iter().enumerate() {
        let mut cfg = ConvLstm2dConfig::new(rows, cols, cin, f, (k, k));
        cfg.padding = Padding::Same;
        cfg.return_sequences = true;
        if kernels.len() > 1 {
            cfg.activation = Activation::Relu;
        }
        let mut l = ConvLstm2d::new(cfg, backend.clone(), 1 + n as u64)?;
        l.set_algorithm(algo);
        layers.push(l);
        cin = f;
    }
    Ok(layers)
}

/// Two closures per implementation: forward, and forward+backward.
type Passes<'a> = (
    Box<dyn FnMut() -> Result<Vec<RecordStats>> + 'a>,
    Box<dyn FnMut() -> Result<Vec<RecordStats>> + 'a>,
);

fn boxed<'a>(
    f: impl FnMut() -> Result<Vec<RecordStats>> + 'a,
) -> Box<dyn FnMut() -> Result<Vec<RecordStats>> + 'a> {
    Box::new(f)
}

macro_rules! h_passes {
    ($l:expr, $x:expr) => {{
        let (l, x) = ($l, $x);
        let fwd = boxed(move || {
            l.forward(x.view(), None, None)
                .map(|_| vec![l.last_stats()])
        });
        let fb = boxed(move || {
            let (y, tr) = l.forward_train(x.view(), None, None)?;
            let s1 = l.last_stats();
            l.backward(&tr, y.out.view(), None)
                .map(|_| vec![s1, l.last_stats()])
        });
        (fwd, fb)
    }};
}

/// Runs every case of `opts` on `gpu` and the CPU reference.
pub fn run(opts: &BenchOptions, gpu: &Backend) -> Result<BenchReport> {
    let Backend::Gpu(ctx) = gpu else {
        return Err(Error::Config(
            "bench needs a GPU backend (the CPU reference runs beside it)".into(),
        ));
    };
    opts.validate()?;
    for &(b, t, i, h) in &opts.shapes {
        check_shape_memory(b, t, i, h)?;
    }
    let runs = opts.runs.max(5);
    let timed = ctx.has_timestamps();
    ctx.set_profiling(timed);
    let a = ctx.adapter();
    let mut report = BenchReport {
        adapter: AdapterJson {
            name: a.name.clone(),
            backend: a.backend.clone(),
            device_type: a.device_type.clone(),
            driver: a.driver.clone(),
        },
        crate_version: env!("CARGO_PKG_VERSION").to_string(),
        results: Vec::new(),
    };
    for cell in &opts.cells {
        if cell == "gemm" {
            let kernels = gemm::kernels(&opts.impls);
            report.results.extend(gemm::run(
                ctx,
                &kernels,
                (&opts.gemm_shapes, opts.quick),
                runs,
                timed,
            )?);
            continue;
        }
        let cases = match cell.as_str() {
            "lstm" => recurrent_cases("lstm", 4, opts),
            "gru" => recurrent_cases("gru", 3, opts),
            "rnn" => recurrent_cases("rnn", 1, opts),
            "convlstm2d" => convlstm_cases(opts.quick),
            other => {
                return Err(Error::Config(format!(
                    "unknown cell {other:?}: expected one of {}",
                    CELLS.join(", ")
                )));
            }
        };
        for case in cases {
            for &(name, imp) in IMPLS {
                let (backend, algo) = match imp {
                    Impl::Gpu(a) => (gpu.clone(), a),
                    Impl::Cpu => (Backend::Cpu, Algorithm::Auto),
                    Impl::Unfused => continue,
                };
                // ConvLSTM2D has no Resident or Grid kernel and the recurrent cells no Tiled
                // one (either would time its Auto choice under another name).
                let alt = name == "resident" || name == "grid";
                let conv = case.cell == "convlstm2d";
                if !opts.wants(name) || (alt && conv) || (name == "tiled" && !conv) {
                    continue;
                }
                let on_gpu = matches!(backend, Backend::Gpu(_));
                let r = bench_case(&case, backend, algo, runs, on_gpu && timed);
                // GPU rows also get the like-for-like clock of PyTorch's baseline.
                let r = r.and_then(|mut v| {
                    if on_gpu {
                        let d = device_wall::measure(&case, gpu, algo, runs)?;
                        for (res, ms) in v.iter_mut().zip(d) {
                            res.device_wall_ms = Some(ms);
                        }
                    }
                    Ok(v)
                });
                match r {
                    Ok(mut v) => {
                        for res in &mut v {
                            res.implementation = name.to_string();
                        }
                        report.results.extend(v);
                    }
                    // An algorithm that cannot run at this shape is skipped by name.
                    Err(Error::Limit(msg) | Error::Unsupported(msg)) => {
                        eprintln!("bench: {} {name} skipped: {msg}", case.cell)
                    }
                    Err(e) => return Err(e),
                }
            }
            if case.cell == "lstm" && opts.wants("unfused") {
                report
                    .results
                    .extend(bench_unfused(&case, gpu, runs, timed)?);
            }
        }
    }
    ctx.set_profiling(false);
    if report.results.is_empty() {
        return Err(Error::Config(format!(
            "nothing was measured: cells {:?} with implementations {:?} (see the lines above \
             for implementations skipped at a limit)",
            opts.cells, opts.impls
        )));
    }
    Ok(report)
}

/// The unfused baseline (LSTM; per step one GEMM and one dispatch per element-wise op, one
/// submit), forward and forward+backward, beside the fused implementations.
fn bench_unfused(
    case: &Case,
    gpu: &Backend,
    runs: usize,
    gpu_timed: bool,
) -> Result<Vec<BenchResult>> {
    let (i, h) = (case.i.unwrap_or(1), case.h.unwrap_or(1));
    let l = Lstm::new(LstmConfig::new(i, h), gpu.clone(), 1)?;
    let x = Array3::from_shape_fn((case.t, case.b, i), |(t, b, k)| {
        ((t * 31 + b * 7 + k) as f32 * 0.01).sin()
    });
    let (fwd, all_gpu) = measure(runs, (gpu_timed, gpu), || {
        l.forward_unfused_baseline(x.view())
            .map(|_| vec![l.last_stats()])
    })?;
    let (both, all_gpu_b) = measure(runs, (gpu_timed, gpu), || {
        l.forward_backward_unfused_baseline(x.view())
            .map(|_| vec![l.last_stats()])
    })?;
    Ok(vec![
        summarize(case, "forward", 1.0, &fwd, all_gpu, gpu_timed, "unfused"),
        summarize(
            case,
            "forward_backward",
            3.0,
            &both,
            all_gpu_b,
            gpu_timed,
            "unfused",
        ),
    ])
}

/// The recurrent cells' bench input `(T, B, I)`.
fn rec_input(case: &Case) -> Array3<f32> {
    Array3::from_shape_fn((case.t, case.b, case.i.unwrap_or(1)), |(t, b, i)| {
        ((t * 31 + b * 7 + i) as f32 * 0.01).sin()
    })
}

/// ConvLSTM2D's bench input `(B, T, rows, cols, C)`.
fn conv_input(case: &Case) -> Array5<f32> {
    let [rows, cols, cin] = case.frame.unwrap_or([1, 1, 1]);
    Array5::from_shape_fn((case.b, case.t, rows, cols, cin), |(b, t, y, x, _)| {
        ((b + t * 3 + y * x) as f32 * 0.05).sin()
    })
}

fn bench_case(
    case: &Case,
    backend: Backend,
    algo: Algorithm,
    runs: usize,
    gpu_timed: bool,
) -> Result<Vec<BenchResult>> {
    let (mut l1, mut l2, mut l3, l4);
    let prof = backend.clone();
    let x3 = rec_input(case);
    let (mut fwd, mut fb): Passes<'_> = match case.cell {
        "lstm" => {
            l1 = Lstm::new(
                LstmConfig::new(case.i.unwrap_or(1), case.h.unwrap_or(1)),
                backend,
                1,
            )?;
            l1.set_algorithm(algo);
            let (l, x) = (&l1, &x3);
            let fwd = boxed(move || {
                l.forward(x.view(), None, None)
                    .map(|_| vec![l.last_stats()])
            });
            let fb = boxed(move || {
                let (y, tr) = l.forward_train(x.view(), None, None)?;
                let s1 = l.last_stats();
                l.backward(&tr, y.out.view(), None)
                    .map(|_| vec![s1, l.last_stats()])
            });
            (fwd, fb)
        }
        "gru" => {
            l2 = Gru::new(
                GruConfig::new(case.i.unwrap_or(1), case.h.unwrap_or(1)),
                backend,
                1,
            )?;
            l2.set_algorithm(algo);
            h_passes!(&l2, &x3)
        }
        "rnn" => {
            l3 = SimpleRnn::new(
                SimpleRnnConfig::new(case.i.unwrap_or(1), case.h.unwrap_or(1)),
                backend,
                1,
            )?;
            l3.set_algorithm(algo);
            h_passes!(&l3, &x3)
        }
        _ => {
            l4 = ConvLstm2dStack::new(convlstm_layers(case, &backend, algo)?)?;
            let x5 = conv_input(case);
            let l = &l4;
            let x5b = x5.clone();
            let fwd = boxed(move || l.forward(x5.view()).map(|_| vec![l.last_stats()]));
            let fb = boxed(move || {
                let (y, tr) = l.forward_train(x5b.view())?;
                let s1 = l.last_stats();
                l.backward(&tr, y.out.view())
                    .map(|_| vec![s1, l.last_stats()])
            });
            (fwd, fb)
        }
    };
    let mut out = Vec::new();
    for (pass, f, mult) in [
        ("forward", &mut fwd, 1.0),
        ("forward_backward", &mut fb, 3.0),
    ] {
        let (samples, all_gpu) = measure(runs, (gpu_timed, &prof), f)?;
        out.push(summarize(
            case, pass, mult, &samples, all_gpu, gpu_timed, "",
        ));
    }
    Ok(out)
}

/// One result row from the samples of one (case, pass, implementation).
fn summarize(
    case: &Case,
    pass: &str,
    mult: f64,
    samples: &[Sample],
    all_gpu: bool,
    gpu_timed: bool,
    implementation: &str,
) -> BenchResult {
    let mut ms: Vec<f64> = samples.iter().map(|s| s.ms).collect();
    let (med, lo, hi) = median(&mut ms);
    let mut rec: Vec<f64> = samples.iter().filter_map(|s| s.rec_ms).collect();
    let mut enc: Vec<f64> = samples.iter().map(|s| s.stats.encode_ms).collect();
    let mut wall: Vec<f64> = samples.iter().map(|s| s.wall).collect();
    let on_gpu = samples.iter().any(|s| s.stats.submits > 0);
    BenchResult {
        cell: case.cell.into(),
        pass: pass.into(),
        b: case.b,
        t: case.t,
        i: case.i,
        h: case.h,
        frame: case.frame,
        filters: case.filters,
        kernels: case.kernels.clone(),
        m: None,
        k: None,
        n: None,
        implementation: implementation.into(),
        median_ms: med,
        min_ms: lo,
        max_ms: hi,
        recurrence_ms: (rec.len() == samples.len() && !rec.is_empty()).then(|| median(&mut rec).0),
        encode_ms: on_gpu.then(|| median(&mut enc).0),
        wall_ms: on_gpu.then(|| median(&mut wall).0),
        device_wall_ms: None,
        gflops: mult * case.flops / med / 1e6,
        dispatches: samples[0].stats.dispatches,
        submits: samples[0].stats.submits,
        timing: if all_gpu && gpu_timed {
            "gpu_timestamps"
        } else {
            "wall"
        }
        .into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compare_joins_rows_present_in_both_reports() {
        let a = serde_json::json!({"adapter": {"name": "gpu"}, "results": [
            {"cell": "lstm", "pass": "forward", "B": 8, "T": 100, "I": 128, "H": 128, "impl": "stepwise", "median_ms": 10.0},
            {"cell": "lstm", "pass": "forward", "B": 8, "T": 100, "I": 128, "H": 128, "impl": "persistent", "median_ms": 5.0},
            {"cell": "gru", "pass": "forward", "B": 8, "T": 100, "I": 128, "H": 128, "impl": "stepwise", "median_ms": 7.0}]});
        let b = serde_json::json!({"adapter": {"name": "torch"}, "results": [
            {"cell": "lstm", "pass": "forward", "B": 8, "T": 100, "I": 128, "H": 128, "impl": "torch-cpu", "median_ms": 20.0}]});
        let t = compare(&a, &b).unwrap();
        assert!(t.contains("lstm forward B8 T100 I128 H128: a [stepwise 10.00, persistent 5.00] | b [torch-cpu 20.00] | b/a 4.00"), "{t}");
        assert!(
            !t.contains("gru"),
            "rows missing from one report are left out: {t}"
        );
        assert!(compare(&a, &serde_json::json!({"results": 3})).is_err());
    }
}
