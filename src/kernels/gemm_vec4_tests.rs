//! The vec4 global loads of `gemm_tile.wgsl`: which load the host picks per operand
//! (`gemm_tile::loads`), and every tile variant against the CPU where the vec4 loads apply,
//! at ragged M, N, K (K = 1, K = 4·n + 1), transposed operands, aligned offsets and buffers
//! whose size is not a multiple of 16 bytes (the tail vec4 is partial).

use super::*;
use gemm_tile::{Load, Loads, loads};

/// The tile variants (all may use vec4 loads except `GpuScalar`, the reference path).
const TILE_KERNELS: [GemmKernel; 5] = [
    GemmKernel::Gpu,
    GemmKernel::GpuScalar,
    GemmKernel::Tile128,
    GemmKernel::Tile64,
    GemmKernel::SplitK,
];

/// The loads the host picks for `cs`, with buffers of exactly the length the views need.
fn chosen(ctx: &Context, cs: &Case) -> Loads {
    let (m, n, k) = cs.mnk;
    let abuf = buffers::zeros(ctx, "a", cs.a.len(m, k)).unwrap();
    let bbuf = buffers::zeros(ctx, "b", cs.b.len(k, n)).unwrap();
    let mat = |buf, s: Spec| {
        let (rs, cs) = s.strides();
        Mat {
            buf,
            off: s.off,
            rs,
            cs,
        }
    };
    loads(cs.mnk, &mat(&abuf, cs.a), &mat(&bbuf, cs.b))
}

/// Asserts the host reads A and B as `want`, then runs every tile variant against the CPU.
fn check(cs: &Case, want: (Load, Load)) {
    let ctx = ctx();
    let got = chosen(&ctx, cs);
    assert_eq!((got.a, got.b), want, "{:?}", cs.mnk);
    for kern in TILE_KERNELS {
        run(&ctx, kern, cs).unwrap_or_else(|e| panic!("{}: {e}", kern.name()));
    }
}

#[test]
fn the_loads_follow_the_alignment_the_host_can_prove() {
    let ctx = ctx();
    let f = |mnk, a, b| chosen(&ctx, &case(mnk, a, b));
    let l = |a, b| Loads { a, b };
    let (s, mn, kk) = (Load::Scalar, Load::Vec4Mn, Load::Vec4K);
    // X·W_ihᵀ: A row-major, B the transpose of a row-major matrix: both contiguous along k.
    assert_eq!(
        f((67, 45, 133), Spec::row(4, 136), Spec::tr(8, 136)),
        l(kk, kk)
    );
    // dGᵀ·X (weight gradients): A contiguous along m, B along n.
    assert_eq!(
        f((69, 50, 37), Spec::tr(4, 72), Spec::row(0, 52)),
        l(mn, mn)
    );
    // K = 1: nothing along k, but along m and n.
    assert_eq!(f((45, 38, 1), Spec::tr(0, 48), Spec::row(4, 40)), l(mn, mn));
    assert_eq!(f((45, 38, 1), Spec::row(0, 4), Spec::tr(0, 4)), l(s, s));
    // K = 3 < 4: no whole group along k.
    assert_eq!(f((9, 9, 3), Spec::row(0, 4), Spec::tr(0, 4)), l(s, s));
    // M, N < 4: no whole group along m / n.
    assert_eq!(f((3, 2, 8), Spec::tr(0, 4), Spec::row(0, 4)), l(s, s));
    // An odd offset or an odd other stride of one operand: that operand alone is scalar.
    assert_eq!(
        f((67, 45, 131), Spec::row(3, 132), Spec::tr(4, 136)),
        l(s, kk)
    );
    assert_eq!(
        f((67, 45, 131), Spec::row(0, 133), Spec::tr(4, 136)),
        l(s, kk)
    );
    assert_eq!(
        f((67, 45, 131), Spec::row(0, 132), Spec::tr(1, 131)),
        l(kk, s)
    );
    assert_eq!(f((69, 50, 37), Spec::tr(2, 72), Spec::row(0, 53)), l(s, s));
    // Strides no axis of which is 1 (a sliced view), and broadcasts.
    let buf = buffers::zeros(&ctx, "x", 4096).unwrap();
    let m = |off, rs, cs| Mat {
        buf: &buf,
        off,
        rs,
        cs,
    };
    assert_eq!(loads((8, 8, 8), &m(0, 8, 2), &m(0, 8, 2)), l(s, s));
    assert_eq!(loads((8, 8, 8), &m(0, 0, 0), &m(0, 8, 1)), l(s, mn));
    assert_eq!(loads((8, 8, 8), &m(0, 1, 0), &m(0, 0, 1)), l(mn, mn));
    assert_eq!(loads((8, 8, 8), &m(0, 0, 1), &m(0, 1, 0)), l(kk, kk));
    // A buffer under one vec4 (16 bytes) is never bound as vec4s.
    let small = buffers::zeros(&ctx, "small", 3).unwrap();
    let t = |buf| Mat {
        buf,
        off: 0,
        rs: 0,
        cs: 1,
    };
    assert_eq!(loads((1, 1, 4), &t(&small), &m(0, 1, 0)).a, s);
}

fn case(mnk: (usize, usize, usize), a: Spec, b: Spec) -> Case {
    Case {
        mnk,
        a,
        b,
        alpha: 1.0,
        beta: 0.0,
        bias: false,
    }
}

#[test]
fn vec4_along_k_for_both_operands_with_a_ragged_k_tail() {
    // The input projection X·W_ihᵀ; K = 4·33 + 1, buffers end inside a partial vec4.
    let cs = Case {
        bias: true,
        ..case((67, 45, 133), Spec::row(4, 136), Spec::tr(8, 136))
    };
    check(&cs, (Load::Vec4K, Load::Vec4K));
}

#[test]
fn vec4_along_m_and_n_for_weight_gradients() {
    // dW = dGᵀ·X accumulated: M = 4·17 + 1 and N = 4·12 + 2 cut the last groups.
    let cs = Case {
        beta: 1.0,
        ..case((69, 50, 37), Spec::tr(4, 72), Spec::row(0, 52))
    };
    check(&cs, (Load::Vec4Mn, Load::Vec4Mn));
}

#[test]
fn vec4_along_k_then_along_n_across_two_row_tiles() {
    // dX = dG·W: A along k (K = 4·2 + 1), B along n; M spans two 128 tiles.
    let cs = Case {
        alpha: 1.5,
        beta: 0.5,
        bias: true,
        ..case((130, 66, 9), Spec::row(0, 12), Spec::row(4, 68))
    };
    check(&cs, (Load::Vec4K, Load::Vec4Mn));
}

#[test]
fn vec4_along_m_then_along_k_with_both_operands_transposed() {
    let cs = Case {
        alpha: -2.0,
        beta: 0.0,
        bias: true,
        ..case((33, 70, 21), Spec::tr(8, 36), Spec::tr(0, 24))
    };
    check(&cs, (Load::Vec4Mn, Load::Vec4K));
}

#[test]
fn k_of_one_reads_vec4_along_m_and_n() {
    check(
        &case((45, 38, 1), Spec::tr(0, 48), Spec::row(4, 40)),
        (Load::Vec4Mn, Load::Vec4Mn),
    );
}

#[test]
fn one_aligned_operand_reads_vec4_beside_a_scalar_one() {
    // B's odd offset keeps it scalar; A alone reads vec4s (B's vec4 view binds a filler).
    check(
        &case((67, 45, 133), Spec::row(0, 136), Spec::tr(1, 136)),
        (Load::Vec4K, Load::Scalar),
    );
    check(
        &case((69, 50, 37), Spec::tr(3, 72), Spec::row(0, 52)),
        (Load::Scalar, Load::Vec4Mn),
    );
}

#[test]
fn operands_under_one_vec4_stay_scalar() {
    // A and B of 3 floats each and no bias: the vec4 views bind a filler buffer, one per
    // context (so repeated products keep their bind groups).
    let cs = case((1, 1, 3), Spec::row(0, 3), Spec::tr(0, 3));
    check(&cs, (Load::Scalar, Load::Scalar));
    let ctx = ctx();
    let filler = || ctx.pipelines.gemm_filler.lock().unwrap().clone();
    assert!(filler().is_none());
    run(&ctx, GemmKernel::Gpu, &cs).unwrap();
    let first = filler().expect("a filler for operands under one vec4");
    run(&ctx, GemmKernel::Gpu, &cs).unwrap();
    assert!(
        filler() == Some(first),
        "the filler is made once per context"
    );
}
