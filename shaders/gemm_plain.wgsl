// gemm_plain.wgsl — textbook 16×16-tile shared-memory matrix product. Benchmark baseline
// only (`wgpu-rnn bench --cells gemm`, impl "gemm_plain16"); production GEMMs use gemm.wgsl
// or gemm_regblock.wgsl (chosen per adapter in src/kernels/gemm.rs).
//
// Computes, for m < M, n < N (same contract as gemm.wgsl):
//   C[c_off + m*c_rs + n] = alpha * Σ_{k_begin ≤ k < k_end} A(m,k)·B(k,n)
//                           + beta * C[...]            (beta == 0: C is not read)
//                           + bias[bias_off + n]       (only when has_bias == 1)
//   with A(m,k) = a[a_off + m*a_rs + k*a_cs] and B(k,n) = b[b_off + k*b_rs + n*b_cs].
//
// Bindings (group 0):
//   0 p     uniform Params (dynamic offset)               parameters above
//   1 a     storage read  f32[]                            left operand
//   2 b     storage read  f32[]                            right operand
//   3 bias  storage read  f32[]                            row vector added to every row (may be a dummy)
//   4 c     storage read_write f32[]                       result (accumulated when beta != 0)
//
// Memory plan: one 16×16 tile of A and one of B in workgroup memory (2 KiB); each invocation
// loads one element of each per K step of 16 and keeps one output in a register.
// Workgroup 16×16 = 256 invocations, one per output of a 16×16 C tile; grid:
// ceil(N/16)·ceil(M/16) workgroups, flattened from a 2-D dispatch.
// Limits: none beyond buffer sizes; K per dispatch bounded by the launcher (K_CHUNK).
// Caveats: deliberately unoptimised (scalar loads, two barriers per 16 k).

struct Params {
    m: u32,
    n: u32,
    k_begin: u32,
    k_end: u32,
    a_off: u32,
    a_rs: u32,
    a_cs: u32,
    b_off: u32,
    b_rs: u32,
    b_cs: u32,
    c_off: u32,
    c_rs: u32,
    bias_off: u32,
    has_bias: u32,
    alpha: f32,
    beta: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> c: array<f32>;

const T: u32 = 16u;

var<workgroup> a_tile: array<f32, 256>; // [row][k]
var<workgroup> b_tile: array<f32, 256>; // [k][col]

@compute @workgroup_size(16, 16, 1)
fn gemm_plain(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let tiles_n = (p.n + T - 1u) / T;
    let tiles_m = (p.m + T - 1u) / T;
    let flat = wid.y * nwg.x + wid.x;
    // Surplus workgroups of a 2-D grid still reach every barrier, then write nothing.
    let live = flat < tiles_n * tiles_m;
    let tile = min(flat, tiles_n * tiles_m - 1u);
    let row = (tile / tiles_n) * T + lid.y;
    let col = (tile % tiles_n) * T + lid.x;

    var acc = 0.0;
    for (var k0 = p.k_begin; k0 < p.k_end; k0 += T) {
        let ka = k0 + lid.x;
        var av = 0.0;
        if (row < p.m && ka < p.k_end) {
            av = a[p.a_off + row * p.a_rs + ka * p.a_cs];
        }
        a_tile[lid.y * T + lid.x] = av;
        let kb = k0 + lid.y;
        var bv = 0.0;
        if (kb < p.k_end && col < p.n) {
            bv = b[p.b_off + kb * p.b_rs + col * p.b_cs];
        }
        b_tile[lid.y * T + lid.x] = bv;
        workgroupBarrier();
        for (var kk = 0u; kk < T; kk++) {
            acc += a_tile[lid.y * T + kk] * b_tile[kk * T + lid.x];
        }
        workgroupBarrier();
    }

    if (!live || row >= p.m || col >= p.n) {
        return;
    }
    let idx = p.c_off + row * p.c_rs + col;
    var v = p.alpha * acc;
    if (p.has_bias == 1u) {
        v += bias[p.bias_off + col];
    }
    if (p.beta != 0.0) {
        v += p.beta * c[idx];
    }
    c[idx] = v;
}
