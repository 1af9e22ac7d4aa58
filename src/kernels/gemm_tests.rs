//! Every GEMM variant against a CPU matmul at ragged shapes, every operand view (row-major,
//! transposed, broadcast row), offsets, accumulate, bias, alpha, K = 0 and K chunking.

use super::*;
use crate::context::Context;
use crate::kernels::buffers;

#[path = "gemm_vec4_tests.rs"]
mod vec4;

/// One operand as the test lays it out in memory: `rows × cols` logical, stored row-major
/// (`transposed == false`, leading dimension `ld ≥ cols`) or as the transpose of a stored
/// `cols × rows` matrix (`ld ≥ rows`), starting at element `off`.
#[derive(Clone, Copy)]
struct Spec {
    transposed: bool,
    off: usize,
    ld: usize,
}

impl Spec {
    fn row(off: usize, ld: usize) -> Self {
        Self {
            transposed: false,
            off,
            ld,
        }
    }
    fn tr(off: usize, ld: usize) -> Self {
        Self {
            transposed: true,
            off,
            ld,
        }
    }
    /// Element strides (rs, cs) of the logical matrix.
    fn strides(self) -> (usize, usize) {
        if self.transposed {
            (1, self.ld)
        } else {
            (self.ld, 1)
        }
    }
    fn len(self, rows: usize, cols: usize) -> usize {
        let (rs, cs) = self.strides();
        self.off + (rows.max(1) - 1) * rs + (cols.max(1) - 1) * cs + 1
    }
}

fn data(len: usize, seed: u32) -> Vec<f32> {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(12_345);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x % 2001) as f32 / 1000.0 - 1.0
        })
        .collect()
}

struct Case {
    mnk: (usize, usize, usize),
    a: Spec,
    b: Spec,
    alpha: f32,
    beta: f32,
    bias: bool,
}

fn run(ctx: &Context, kernel: GemmKernel, cs: &Case) -> Result<()> {
    let (m, n, k) = cs.mnk;
    let av = data(cs.a.len(m, k), 1);
    let bv = data(cs.b.len(k, n), 2);
    let biasv = data(n + 3, 3);
    let (c_off, c_rs) = (7, n + 2);
    let cv = data(c_off + m * c_rs, 4);
    let (ars, acs) = cs.a.strides();
    let (brs, bcs) = cs.b.strides();
    let mut want = cv.clone();
    for r in 0..m {
        for j in 0..n {
            let dot: f64 = (0..k)
                .map(|kk| {
                    f64::from(av[cs.a.off + r * ars + kk * acs])
                        * f64::from(bv[cs.b.off + kk * brs + j * bcs])
                })
                .sum();
            let idx = c_off + r * c_rs + j;
            let mut v = f64::from(cs.alpha) * dot + f64::from(cs.beta) * f64::from(cv[idx]);
            if cs.bias {
                v += f64::from(biasv[3 + j]);
            }
            want[idx] = v as f32;
        }
    }
    let (abuf, bbuf) = (
        buffers::upload(ctx, "a", &av)?,
        buffers::upload(ctx, "b", &bv)?,
    );
    let biasbuf = buffers::upload(ctx, "bias", &biasv)?;
    let cbuf = buffers::upload(ctx, "c", &cv)?;
    let mut rec = Recorder::new(ctx);
    let mat = |buf, s: Spec| {
        let (rs, cs) = s.strides();
        Mat {
            buf,
            off: s.off,
            rs,
            cs,
        }
    };
    record_with(
        &mut rec,
        kernel,
        cs.mnk,
        cs.alpha,
        mat(&abuf, cs.a),
        mat(&bbuf, cs.b),
        cs.beta,
        Out {
            buf: &cbuf,
            off: c_off,
            rs: c_rs,
        },
        cs.bias.then_some((&biasbuf, 3)),
    )?;
    rec.submit()?;
    let got = buffers::read_f32(ctx, &[(&cbuf, 0, cv.len())])?.remove(0);
    let tol = 1e-4 * (k as f32).sqrt().max(1.0);
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert!(
            (g - w).abs() <= tol * w.abs().max(1.0),
            "{} {:?}: C[{i}] = {g}, want {w}",
            kernel.name(),
            cs.mnk
        );
    }
    Ok(())
}

fn ctx() -> Context {
    Context::new().expect("GPU tests need an adapter (scripts/test.sh installs lavapipe)")
}

fn all(cs: &Case) {
    let ctx = ctx();
    for kern in GemmKernel::ALL {
        run(&ctx, kern, cs).unwrap_or_else(|e| panic!("{}: {e}", kern.name()));
    }
}

#[test]
fn ragged_row_times_transposed_with_bias_is_the_input_projection() {
    // Row starts at multiples of 4: the vec4-along-k entries run, with a K tail of 3.
    all(&Case {
        mnk: (67, 45, 131),
        a: Spec::row(0, 132),
        b: Spec::tr(4, 136),
        alpha: 1.0,
        beta: 0.0,
        bias: true,
    });
}

#[test]
fn row_times_row_with_aligned_rows_reads_b_as_vec4_along_n() {
    // The gemm_rb_kn entry: A along k, B along n (N % 4 == 0), K tail of 3, accumulate.
    all(&Case {
        mnk: (67, 44, 131),
        a: Spec::row(0, 132),
        b: Spec::row(4, 48),
        alpha: 1.5,
        beta: 1.0,
        bias: true,
    });
}

#[test]
fn vec4_entries_are_chosen_only_where_the_strides_allow() {
    let ctx = ctx();
    let buf = buffers::zeros(&ctx, "x", 4).unwrap();
    let m = |off, rs, cs| Mat {
        buf: &buf,
        off,
        rs,
        cs,
    };
    let kk = Some(Vec4Layout::Kk);
    let kn = Some(Vec4Layout::Kn);
    assert_eq!(vec4_layout(&m(0, 128, 1), &m(0, 1, 128), 512, 128), kk);
    assert_eq!(vec4_layout(&m(0, 128, 1), &m(0, 1, 128), 512, 3), None);
    assert_eq!(vec4_layout(&m(0, 128, 1), &m(4, 512, 1), 512, 128), kn);
    assert_eq!(vec4_layout(&m(0, 128, 1), &m(4, 512, 1), 510, 128), None);
    assert_eq!(vec4_layout(&m(2, 128, 1), &m(0, 1, 128), 512, 128), None);
    assert_eq!(vec4_layout(&m(0, 130, 1), &m(0, 1, 128), 512, 128), None);
    assert_eq!(vec4_layout(&m(0, 1, 128), &m(0, 512, 1), 512, 128), None);
    assert_eq!(vec4_layout(&m(0, 0, 0), &m(0, 512, 1), 512, 128), None);
    assert_eq!(vec4_layout(&m(0, 128, 1), &m(0, 1, 130), 512, 128), None);
}

#[test]
fn unaligned_offsets_fall_back_to_scalar_loads() {
    all(&Case {
        mnk: (67, 45, 131),
        a: Spec::row(3, 133),
        b: Spec::tr(1, 131),
        alpha: 0.5,
        beta: 1.0,
        bias: false,
    });
}

#[test]
fn transposed_a_and_row_b_accumulate_like_weight_gradients() {
    all(&Case {
        mnk: (45, 67, 131),
        a: Spec::tr(2, 50),
        b: Spec::row(5, 70),
        alpha: 1.0,
        beta: 1.0,
        bias: false,
    });
}

#[test]
fn both_transposed_and_row_times_row() {
    all(&Case {
        mnk: (33, 70, 19),
        a: Spec::tr(0, 40),
        b: Spec::tr(0, 19),
        alpha: -2.0,
        beta: 0.5,
        bias: true,
    });
    all(&Case {
        mnk: (130, 9, 64),
        a: Spec::row(0, 64),
        b: Spec::row(0, 9),
        alpha: 1.0,
        beta: 0.0,
        bias: false,
    });
}

#[test]
fn broadcast_row_sums_columns_like_bias_gradients() {
    // A = a single 1.0 with zero strides: C = column sums of B.
    let ctx = ctx();
    for kern in GemmKernel::ALL {
        let ones = buffers::upload(&ctx, "ones", &[1.0f32]).unwrap();
        let bv = data(50 * 13, 9);
        let bbuf = buffers::upload(&ctx, "b", &bv).unwrap();
        let cbuf = buffers::zeros(&ctx, "c", 13).unwrap();
        let mut rec = Recorder::new(&ctx);
        let a = Mat {
            buf: &ones,
            off: 0,
            rs: 0,
            cs: 0,
        };
        let out = Out {
            buf: &cbuf,
            off: 0,
            rs: 13,
        };
        record_with(
            &mut rec,
            kern,
            (1, 13, 50),
            1.0,
            a,
            Mat::rows(&bbuf, 0, 13),
            0.0,
            out,
            None,
        )
        .unwrap();
        rec.submit().unwrap();
        let got = buffers::read_f32(&ctx, &[(&cbuf, 0, 13)])
            .unwrap()
            .remove(0);
        for j in 0..13 {
            let want: f32 = (0..50).map(|r| bv[r * 13 + j]).sum();
            assert!((got[j] - want).abs() < 1e-4, "{}: {j}", kern.name());
        }
    }
}

#[test]
fn short_k_with_tiny_buffers_uses_scalar_loads() {
    // K < 4: aligned strides but buffers shorter than one vec4 must not take a vec4 entry.
    all(&Case {
        mnk: (1, 4, 3),
        a: Spec::row(0, 4),
        b: Spec::tr(0, 4),
        alpha: 1.0,
        beta: 0.0,
        bias: false,
    });
}

#[test]
fn empty_k_applies_beta_and_bias() {
    all(&Case {
        mnk: (5, 6, 0),
        a: Spec::row(0, 4),
        b: Spec::tr(0, 4),
        alpha: 1.0,
        beta: 0.5,
        bias: true,
    });
}

#[test]
fn long_k_is_chunked() {
    // K spans two dispatches (K_CHUNK); the second accumulates into the first's result.
    all(&Case {
        mnk: (3, 5, K_CHUNK + 37),
        a: Spec::row(0, K_CHUNK + 40),
        b: Spec::tr(0, K_CHUNK + 40),
        alpha: 1.0,
        beta: 1.0,
        bias: true,
    });
    all(&Case {
        mnk: (3, 8, K_CHUNK + 5),
        a: Spec::row(0, K_CHUNK + 8),
        b: Spec::row(0, 8),
        alpha: 1.0,
        beta: 0.0,
        bias: false,
    });
    all(&Case {
        mnk: (3, 5, K_CHUNK + 3),
        a: Spec::tr(0, 3),
        b: Spec::row(1, 5),
        alpha: 1.0,
        beta: 0.0,
        bias: false,
    });
}

#[test]
fn k_of_one_and_tiles_in_both_directions() {
    // K = 1 (a rank-1 update), and M, N spanning two 128 tiles with ragged edges.
    all(&Case {
        mnk: (130, 131, 1),
        a: Spec::row(1, 3),
        b: Spec::tr(2, 1),
        alpha: 1.0,
        beta: 0.0,
        bias: true,
    });
    all(&Case {
        mnk: (131, 129, 37),
        a: Spec::tr(3, 140),
        b: Spec::row(1, 133),
        alpha: 0.75,
        beta: 1.0,
        bias: false,
    });
}

/// C = act(alpha·A·B + bias + beta·C) through `gemm_tile` with every forcing, against f64,
/// with scalar loads (unaligned views) and with vec4 loads (aligned views).
#[test]
fn tile_kernels_apply_the_activation_after_bias_and_beta() {
    activation_epilogue(Spec::row(2, 47), Spec::tr(1, 45), gemm_tile::Loads::SCALAR);
    let v4 = gemm_tile::Load::Vec4K;
    activation_epilogue(
        Spec::row(4, 48),
        Spec::tr(0, 48),
        gemm_tile::Loads { a: v4, b: v4 },
    );
}

fn activation_epilogue(a_spec: Spec, b_spec: Spec, want: gemm_tile::Loads) {
    let ctx = ctx();
    let (m, n, k) = (70, 37, 45);
    let av = data(a_spec.len(m, k), 11);
    let bv = data(b_spec.len(k, n), 12);
    let biasv = data(n, 13);
    let cv = data(m * n, 14);
    let abuf = buffers::upload(&ctx, "a", &av).unwrap();
    let bbuf = buffers::upload(&ctx, "b", &bv).unwrap();
    let biasbuf = buffers::upload(&ctx, "bias", &biasv).unwrap();
    let (ars, acs) = a_spec.strides();
    let (brs, bcs) = b_spec.strides();
    let view = |buf, off, rs, cs| Mat { buf, off, rs, cs };
    let chosen = gemm_tile::loads(
        (m, n, k),
        &view(&abuf, a_spec.off, ars, acs),
        &view(&bbuf, b_spec.off, brs, bcs),
    );
    assert_eq!(chosen, want);
    // Activation codes of activations.wgsl: 1 relu, 2 sigmoid, 0 tanh.
    type Act = (u32, fn(f64) -> f64);
    let acts: [Act; 3] = [
        (1, |x| x.max(0.0)),
        (2, |x| 1.0 / (1.0 + (-x).exp())),
        (0, f64::tanh),
    ];
    let forces = [
        gemm_tile::Force::Auto,
        gemm_tile::Force::Tile(Tile::T128),
        gemm_tile::Force::Tile(Tile::T64),
        gemm_tile::Force::SplitK,
    ];
    for (code, f) in acts {
        for force in forces {
            let cbuf = buffers::upload(&ctx, "c", &cv).unwrap();
            let mut rec = Recorder::new(&ctx);
            let mat = |buf, s: Spec| {
                let (rs, cs) = s.strides();
                Mat {
                    buf,
                    off: s.off,
                    rs,
                    cs,
                }
            };
            gemm_tile::record(
                &mut rec,
                force,
                true,
                (m, n, k),
                1.25,
                mat(&abuf, a_spec),
                mat(&bbuf, b_spec),
                0.5,
                Out {
                    buf: &cbuf,
                    off: 0,
                    rs: n,
                },
                Some((&biasbuf, 0)),
                code,
            )
            .unwrap();
            rec.submit().unwrap();
            let got = buffers::read_f32(&ctx, &[(&cbuf, 0, m * n)])
                .unwrap()
                .remove(0);
            for r in 0..m {
                for j in 0..n {
                    let dot: f64 = (0..k)
                        .map(|q| {
                            f64::from(av[a_spec.off + r * ars + q * acs])
                                * f64::from(bv[b_spec.off + q * brs + j * bcs])
                        })
                        .sum();
                    let pre = 1.25 * dot + f64::from(biasv[j]) + 0.5 * f64::from(cv[r * n + j]);
                    let want = f(pre);
                    let g = f64::from(got[r * n + j]);
                    assert!(
                        (g - want).abs() <= 1e-5 + 1e-4 * want.abs(),
                        "act {code} {force:?}: C[{r},{j}] = {g}, want {want}"
                    );
                }
            }
        }
    }
}

#[test]
fn the_tile_plan_follows_its_rule() {
    use gemm_tile::{Plan, TARGET_GROUPS, plan};
    let big = usize::MAX;
    let p = |tile, slices| Plan { tile, slices };
    let auto = gemm_tile::Force::Auto;
    // The LSTM input projection: 64-tile (13·8 = 104 workgroups), K too short to split.
    assert_eq!(plan((800, 512, 128), auto, big), p(Tile::T64, 1));
    // 512³: 64 tiles of 64, split in 2 (K/256 = 2).
    assert_eq!(plan((512, 512, 512), auto, big), p(Tile::T64, 2));
    // 2048³: 256 tiles of 128, no split.
    assert_eq!(plan((2048, 2048, 2048), auto, big), p(Tile::T128, 1));
    // dW_ih at B256 T50 H512: M 2048, N 512, K 12800: 64 tiles of 128, split in 2.
    assert_eq!(plan((2048, 512, 12_800), auto, big), p(Tile::T128, 2));
    // A tiny dW (one tile) with long K: split to TARGET_GROUPS/1 capped at 16.
    assert_eq!(plan((16, 16, 100_000), auto, big), p(Tile::T128, 16));
    // Forced split-K keeps ≥ 2 slices even for tiny K; forced tiles never split.
    assert_eq!(plan((5, 6, 3), gemm_tile::Force::SplitK, big).slices, 2);
    assert_eq!(
        plan((16, 16, 100_000), gemm_tile::Force::Tile(Tile::T64), big),
        p(Tile::T64, 1)
    );
    // Scratch limited to 3·M·N floats: at most 3 slices; below 2 no split at all.
    assert_eq!(plan((16, 16, 40_000), auto, 3 * 256).slices, 3);
    assert_eq!(plan((16, 16, 10_000), auto, 256).slices, 1);
    // Slices never exceed what gives TARGET_GROUPS workgroups (9 tiles → 15 slices)...
    let q = plan((300, 300, 100_000), auto, big);
    assert!(q.slices * 9 <= TARGET_GROUPS + 9, "{q:?}");
    // ... unless K needs more to keep every slice within one dispatch's K budget.
    assert_eq!(plan((300, 300, 1 << 20), auto, big).slices, 64);
}

#[test]
fn the_generated_tile_shader_is_up_to_date() {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = std::process::Command::new("python3")
        .arg(format!("{root}/scripts/gen_gemm_tile.py"))
        .arg("--stdout")
        .output()
        .expect("python3 runs scripts/gen_gemm_tile.py");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let want = String::from_utf8(out.stdout).unwrap();
    let have = std::fs::read_to_string(format!("{root}/shaders/gemm_tile.wgsl")).unwrap();
    assert!(
        want == have,
        "shaders/gemm_tile.wgsl differs from scripts/gen_gemm_tile.py's output: rerun it"
    );
}

/// Split-K products recorded back to back share one scratch buffer (grown once, then kept),
/// and each still reads only its own partial sums.
#[test]
fn split_k_products_in_one_recording_share_the_scratch() {
    let ctx = ctx();
    let shapes = [(40, 30, 600), (70, 50, 520), (40, 30, 600)];
    let mut rec = Recorder::new(&ctx);
    let mut outs = Vec::new();
    for (i, &(m, n, k)) in shapes.iter().enumerate() {
        let av = data(m * k, 20 + i as u32);
        let bv = data(k * n, 30 + i as u32);
        let abuf = buffers::upload(&ctx, "a", &av).unwrap();
        let bbuf = buffers::upload(&ctx, "b", &bv).unwrap();
        let cbuf = buffers::zeros(&ctx, "c", m * n).unwrap();
        record_with(
            &mut rec,
            GemmKernel::SplitK,
            (m, n, k),
            1.0,
            Mat::rows(&abuf, 0, k),
            Mat::rows(&bbuf, 0, n),
            0.0,
            Out {
                buf: &cbuf,
                off: 0,
                rs: n,
            },
            None,
        )
        .unwrap();
        outs.push((av, bv, cbuf));
    }
    let held = ctx.pipelines.gemm_scratch.lock().unwrap().clone().unwrap();
    rec.submit().unwrap();
    for (&(m, n, k), (av, bv, cbuf)) in shapes.iter().zip(&outs) {
        let got = buffers::read_f32(&ctx, &[(cbuf, 0, m * n)])
            .unwrap()
            .remove(0);
        for r in 0..m {
            for j in 0..n {
                let want: f64 = (0..k)
                    .map(|q| f64::from(av[r * k + q]) * f64::from(bv[q * n + j]))
                    .sum();
                let g = f64::from(got[r * n + j]);
                assert!(
                    (g - want).abs() <= 1e-4 * want.abs().max(1.0),
                    "{m}x{n}: {g} vs {want}"
                );
            }
        }
    }
    // The largest product (70·50 floats × its slices) sized it; a smaller one reuses it.
    let again = gemm_tile::plan((40, 30, 600), gemm_tile::Force::SplitK, usize::MAX).slices;
    assert!(held.size() >= (again * 40 * 30 * 4) as u64);
    let mut rec = Recorder::new(&ctx);
    let (av, bv, cbuf) = &outs[0];
    let (abuf, bbuf) = (
        buffers::upload(&ctx, "a", av).unwrap(),
        buffers::upload(&ctx, "b", bv).unwrap(),
    );
    record_with(
        &mut rec,
        GemmKernel::SplitK,
        (40, 30, 600),
        1.0,
        Mat::rows(&abuf, 0, 600),
        Mat::rows(&bbuf, 0, 30),
        0.0,
        Out {
            buf: cbuf,
            off: 0,
            rs: 30,
        },
        None,
    )
    .unwrap();
    let now = ctx.pipelines.gemm_scratch.lock().unwrap().clone().unwrap();
    assert!(
        now == held,
        "a smaller split-K product must reuse the scratch buffer"
    );
    rec.submit().unwrap();
}
