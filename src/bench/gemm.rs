//! `wgpu-rnn bench --cells gemm`: the GEMM kernels side by side at the LSTM input-projection
//! shape (M = B·T = 800, K = I = 128, N = 4H = 512, B = W_ihᵀ as a transposed view, bias row),
//! a square 512³ and, without `--quick`, 2048³ (both operands row-major); `--gemm-shapes`
//! replaces them with row-major shapes. Runs are interleaved — one run of every kernel per
//! round — so machine load shifts all kernels alike.

use super::{BenchResult, median};
use crate::context::Context;
use crate::error::Result;
use crate::kernels::gemm::{self, GemmKernel, Mat, Out};
use crate::kernels::{Recorder, buffers};

/// A GEMM case: (M, K, N) and whether B is the transposed view of an N×K matrix.
#[derive(Clone, Copy)]
struct Shape {
    m: usize,
    k: usize,
    n: usize,
    b_transposed: bool,
    bias: bool,
}

const DEFAULT_SHAPES: [Shape; 3] = [
    Shape {
        m: 800,
        k: 128,
        n: 512,
        b_transposed: true,
        bias: true,
    },
    Shape {
        m: 512,
        k: 512,
        n: 512,
        b_transposed: false,
        bias: false,
    },
    Shape {
        m: 2048,
        k: 2048,
        n: 2048,
        b_transposed: false,
        bias: false,
    },
];

/// The shapes to time: `custom` (row-major, no bias) or the defaults (the last, 2048³, only
/// without `quick`: it takes seconds per run on a software adapter).
fn shapes(custom: &[(usize, usize, usize)], quick: bool) -> Vec<Shape> {
    if !custom.is_empty() {
        return custom
            .iter()
            .map(|&(m, k, n)| Shape {
                m,
                k,
                n,
                b_transposed: false,
                bias: false,
            })
            .collect();
    }
    let n = if quick { 2 } else { 3 };
    DEFAULT_SHAPES.iter().take(n).copied().collect()
}

/// The kernels `impls` names (`gemm_plain16`, `gemm_tiled64`, `gemm_regblock`, `gemm_gpu`,
/// `gemm_tile128`, `gemm_tile64`, `gemm_splitk`, `gemm_gpu_scalar`), or by default every one.
pub(super) fn kernels(impls: &[String]) -> Vec<GemmKernel> {
    let named: Vec<GemmKernel> = GemmKernel::ALL
        .into_iter()
        .filter(|k| impls.iter().any(|i| i == k.name()))
        .collect();
    if named.is_empty() {
        GemmKernel::ALL.to_vec()
    } else {
        named
    }
}

fn fill(len: usize, seed: usize) -> Vec<f32> {
    (0..len)
        .map(|i| (((i * 7 + seed * 13) % 97) as f32 - 48.0) * 0.01)
        .collect()
}

/// One call's (time, timed on the GPU, wall time, dispatches).
type Call = (f64, bool, f64, usize);

/// One submit of one GEMM; GPU time when timestamps are on, else wall time to completion.
fn run_once(
    ctx: &Context,
    kernel: GemmKernel,
    s: &Shape,
    bufs: &[wgpu::Buffer; 4],
    gpu_timed: bool,
) -> Result<Call> {
    let [a, b, bias, c] = bufs;
    let t0 = std::time::Instant::now();
    let mut rec = Recorder::new(ctx);
    let bm = if s.b_transposed {
        Mat::rows_t(b, 0, s.k)
    } else {
        Mat::rows(b, 0, s.n)
    };
    gemm::record_with(
        &mut rec,
        kernel,
        (s.m, s.n, s.k),
        1.0,
        Mat::rows(a, 0, s.k),
        bm,
        0.0,
        Out {
            buf: c,
            off: 0,
            rs: s.n,
        },
        s.bias.then_some((bias, 0)),
    )?;
    let stats = rec.submit()?;
    ctx.wait("GEMM bench call")?;
    let wall = t0.elapsed().as_secs_f64() * 1e3;
    Ok(match (gpu_timed, stats.gpu_ms) {
        (true, Some(ms)) => (ms, true, wall, stats.dispatches),
        _ => (wall, false, wall, stats.dispatches),
    })
}

/// Times every kernel at every shape, interleaved, one warm-up round first.
pub(super) fn run(
    ctx: &Context,
    kernels: &[GemmKernel],
    (custom, quick): (&[(usize, usize, usize)], bool),
    runs: usize,
    gpu_timed: bool,
) -> Result<Vec<BenchResult>> {
    let mut out = Vec::new();
    for s in &shapes(custom, quick) {
        let bufs = [
            buffers::upload(ctx, "gemm a", &fill(s.m * s.k, 1))?,
            buffers::upload(ctx, "gemm b", &fill(s.k * s.n, 2))?,
            buffers::upload(ctx, "gemm bias", &fill(s.n, 3))?,
            buffers::zeros(ctx, "gemm c", s.m * s.n)?,
        ];
        // One warm-up round, then `runs` rounds with every kernel interleaved: per kernel,
        // each round's (time, timed on the GPU, wall time, dispatches).
        let sweep = |timed: bool| -> Result<Vec<Vec<Call>>> {
            let mut per = vec![Vec::with_capacity(runs); kernels.len()];
            for round in 0..=runs {
                for (i, &kern) in kernels.iter().enumerate() {
                    let r = run_once(ctx, kern, s, &bufs, timed)?;
                    if round > 0 {
                        per[i].push(r);
                    }
                }
            }
            Ok(per)
        };
        let timed = sweep(gpu_timed)?;
        // Wall times from calls with profiling off: a profiled submit also waits for the GPU
        // and reads its timestamps back, a round trip torch.matmul's clock lacks.
        let untimed = if gpu_timed {
            ctx.set_profiling(false);
            let r = sweep(false);
            ctx.set_profiling(true);
            r?
        } else {
            timed.clone()
        };
        let mut times: Vec<Vec<f64>> = timed
            .iter()
            .map(|v| v.iter().map(|r| r.0).collect())
            .collect();
        let mut walls: Vec<Vec<f64>> = untimed
            .iter()
            .map(|v| v.iter().map(|r| r.2).collect())
            .collect();
        let all_gpu: Vec<bool> = timed
            .iter()
            .map(|v| v.iter().all(|r| r.1) && gpu_timed)
            .collect();
        let dispatches: Vec<usize> = timed.iter().map(|v| v.last().map_or(1, |r| r.3)).collect();
        let flops = 2.0 * (s.m * s.n * s.k) as f64;
        for (i, kern) in kernels.iter().enumerate() {
            let (med, lo, hi) = median(&mut times[i]);
            out.push(BenchResult {
                cell: "gemm".into(),
                pass: "forward".into(),
                b: 1,
                t: 1,
                i: None,
                h: None,
                frame: None,
                filters: None,
                kernels: None,
                m: Some(s.m),
                k: Some(s.k),
                n: Some(s.n),
                implementation: kern.name().into(),
                median_ms: med,
                min_ms: lo,
                max_ms: hi,
                recurrence_ms: None,
                encode_ms: None,
                // Operands already live on the device, so wall_ms is that clock already.
                wall_ms: Some(median(&mut walls[i]).0),
                device_wall_ms: None,
                gflops: flops / med / 1e6,
                dispatches: dispatches[i],
                submits: 1,
                timing: if all_gpu[i] { "gpu_timestamps" } else { "wall" }.into(),
            });
        }
    }
    Ok(out)
}
