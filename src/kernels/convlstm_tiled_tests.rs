//! Tile geometry and launch checks of the tiled ConvLSTM2D kernels (no adapter needed
//! unless a test says so).

use super::*;

fn values(n: usize, seed: u32) -> Vec<f32> {
    (0..n)
        .map(|i| (((i as u32).wrapping_mul(2_654_435_761) ^ seed) % 1000) as f32 / 500.0 - 1.0)
        .collect()
}

/// Every kernel the scalar-halo tile ran still runs: all kh, kw ≤ 8, the tall 17×1 and
/// 13×5 (whose halo needs the full 1024-vec4 pool) at small and large F (both load
/// paths), the wide 1×16 where the 4-column tile is picked; a kernel wider than the
/// weight tile is refused by name.
#[test]
fn the_tiles_hold_every_kernel_up_to_8x8() {
    use crate::Activation;
    let ctx = Context::new().expect("a wgpu adapter (lavapipe in CI) is required");
    let shape = |kernel, filters| CellShape {
        b: 2,
        t: 3,
        rows: 64,
        cols: 64,
        filters,
        kernel,
        activation: Activation::Tanh,
        recurrent_activation: Activation::Sigmoid,
    };
    let mut kernels: Vec<(usize, usize)> = (1..=8)
        .flat_map(|kh| (1..=8).map(move |kw| (kh, kw)))
        .collect();
    kernels.extend([(17, 1), (13, 5), (1, 16)]);
    for &k in &kernels {
        for f in [1, 2, 3, 5, 12, 16, 40, 64, 128] {
            if k.1 > 8 && f > 3 {
                // Only the 4-column tile (picked where it idles fewer columns, as
                // before: F ≤ 3 here) holds a kernel wider than 8.
                continue;
            }
            fits(&ctx, &shape(k, f)).unwrap_or_else(|e| panic!("{k:?} F {f}: {e}"));
        }
    }
    let e = fits(&ctx, &shape((3, 9), 16)).unwrap_err().to_string();
    assert!(e.contains("kernel width <= 8"), "{e}");
}

/// dX from [`dgrad`] against its f64 definition, `|got - want| ≤ 1e-5 + 1e-4·|want|`.
fn check_dgrad(ctx: &Context, g: &ConvGeom, frames: usize, cout: usize) {
    assert!(dgrad_fits(ctx, g, frames, cout));
    let grad = values(frames * g.out_rows * g.out_cols * cout, 5);
    let w = values(g.kernel.0 * g.kernel.1 * g.cin * cout, 9);
    let mut want = vec![0.0f64; frames * g.rows * g.cols * g.cin];
    for n in 0..frames {
        for oy in 0..g.out_rows {
            for ox in 0..g.out_cols {
                for a in 0..g.kernel.0 {
                    for c in 0..g.kernel.1 {
                        let iy = (oy + a * g.dilation.0) as isize - g.pad.0 as isize;
                        let ix = (ox + c * g.dilation.1) as isize - g.pad.1 as isize;
                        if iy < 0 || ix < 0 || iy >= g.rows as isize || ix >= g.cols as isize {
                            continue;
                        }
                        let m = (n * g.out_rows + oy) * g.out_cols + ox;
                        let at = ((n * g.rows + iy as usize) * g.cols + ix as usize) * g.cin;
                        for ch in 0..g.cin {
                            let wr = ((a * g.kernel.1 + c) * g.cin + ch) * cout;
                            for o in 0..cout {
                                want[at + ch] +=
                                    f64::from(grad[m * cout + o]) * f64::from(w[wr + o]);
                            }
                        }
                    }
                }
            }
        }
    }
    let grad_b = buffers::upload(ctx, "grad", &grad).unwrap();
    let w_b = buffers::upload(ctx, "w", &w).unwrap();
    let dst = buffers::upload(ctx, "dx", &vec![7.0f32; want.len()]).unwrap();
    let mut rec = Recorder::new(ctx);
    dgrad(&mut rec, g, frames, cout, &grad_b, &w_b, &dst).unwrap();
    rec.submit().unwrap();
    let got = buffers::read_f32(ctx, &[(&dst, 0, want.len())]).unwrap();
    for (i, (&x, &r)) in got[0].iter().zip(&want).enumerate() {
        assert!(
            (f64::from(x) - r).abs() <= 1e-5 + 1e-4 * r.abs(),
            "cout {cout}, element {i}: {x} vs {r}"
        );
    }
}

/// The tiled dX against its definition (f64), on a geometry that fills no tile: 9×11
/// frames, Cin 18 (5 vec columns), dilation (2, 1), valid rows / padded columns; with 12
/// gate channels (the halo staged with vec4 loads) and 13 (masked scalar loads).
#[test]
fn tiled_dgrad_matches_the_definition() {
    let ctx = Context::new().expect("a wgpu adapter (lavapipe in CI) is required");
    let g = ConvGeom {
        rows: 9,
        cols: 11,
        cin: 18,
        out_rows: 5,
        out_cols: 11,
        kernel: (3, 2),
        strides: (1, 1),
        dilation: (2, 1),
        pad: (0, 1),
    };
    let frames = 3;
    for cout in [12, 13] {
        assert_eq!(dgrad_geom(&g, frames, cout).vec_src(), cout == 12);
        check_dgrad(&ctx, &g, frames, cout);
    }
    let cout = 12;
    // Below 16 input channels or with strides, dX takes the direct gather.
    assert!(!dgrad_fits(&ctx, &ConvGeom { cin: 15, ..g }, frames, cout));
    let strided = ConvGeom {
        strides: (2, 1),
        dilation: (1, 1),
        out_rows: 4,
        ..g
    };
    assert!(!dgrad_fits(&ctx, &strided, frames, cout));
}
