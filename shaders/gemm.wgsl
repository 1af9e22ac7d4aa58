// gemm.wgsl — general strided matrix product, the non-recurrent half of every cell.
//
// Computes, for m < M, n < N:
//   C[c_off + m*c_rs + n] = alpha * Σ_{k_begin ≤ k < k_end} A(m,k)·B(k,n)
//                           + beta * C[...]            (beta == 0: C is not read)
//                           + bias[bias_off + n]       (only when has_bias == 1)
//   with A(m,k) = a[a_off + m*a_rs + k*a_cs] and B(k,n) = b[b_off + k*b_rs + n*b_cs].
// Element strides express transposes and column slices without copies, so one kernel
// serves: the input projection G_x = X·W_ihᵀ + b (all T steps at once), the weight
// gradients dW = dGᵀ·X after the backward loop, dX = dG·W_ih, and bias gradients
// (A = a single 1.0 with a_rs = a_cs = 0, i.e. a column sum).
// The launcher splits long K into several dispatches ([k_begin, k_end) chunks, beta = 1
// after the first) so one invocation never runs more than the loop budget (DESIGN.md §5).
//
// Bindings (group 0):
//   0 p     uniform Params (dynamic offset)               parameters above
//   1 a     storage read  f32[]                            left operand
//   2 b     storage read  f32[]                            right operand
//   3 bias  storage read  f32[]                            row vector added to every row (may be a dummy)
//   4 c     storage read_write f32[]                       result (accumulated when beta != 0)
//
// Memory plan: a 64×16 tile of A and a 16×64 tile of B in workgroup memory (8 KiB);
// each invocation keeps a 4×4 block of C in registers (four vec4 accumulators).
// Workgroup 16×16 = 256 invocations; grid: (ceil(N/64)·ceil(M/64)) workgroups, flattened
// from a 2-D dispatch (x + y·num_workgroups.x), tile row = id / ceil(N/64).
// Limits: none beyond buffer sizes; K per dispatch bounded by the launcher.
// Caveats: loads are scalar; each tile loader walks the operand's contiguous axis so
// neighbouring invocations read neighbouring addresses for row-major and transposed layouts;
// f32 accumulation in k order within a tile.

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

const TM: u32 = 64u;
const TN: u32 = 64u;
const TK: u32 = 16u;

// k-major tiles: the inner product reads 4 consecutive rows (cols) per k.
var<workgroup> a_tile: array<f32, 1024>; // [TK][TM]
var<workgroup> b_tile: array<f32, 1024>; // [TK][TN]

@compute @workgroup_size(16, 16, 1)
fn gemm(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let tiles_n = (p.n + TN - 1u) / TN;
    let tiles_m = (p.m + TM - 1u) / TM;
    let flat = wid.y * nwg.x + wid.x;
    // Surplus workgroups of a 2-D grid clamp to a valid tile and write nothing; they still
    // take part in every barrier (barriers stay in uniform control flow).
    let live = flat < tiles_n * tiles_m;
    let tile = min(flat, tiles_n * tiles_m - 1u);
    let row0 = (tile / tiles_n) * TM;
    let col0 = (tile % tiles_n) * TN;
    let tid = lid.y * 16u + lid.x;

    let a_mwalk = p.a_rs == 1u && p.a_cs != 1u;
    let b_kwalk = p.b_rs == 1u && p.b_cs != 1u;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);

    for (var k0 = p.k_begin; k0 < p.k_end; k0 += TK) {
        for (var i = 0u; i < 4u; i++) {
            let e = tid + i * 256u;
            // Neighbouring invocations load neighbouring addresses: along k for a row-major
            // A, along m for a transposed one (a_rs = 1), likewise for B.
            var r = e / TK;
            var kk = e % TK;
            if (a_mwalk) {
                r = e % TM;
                kk = e / TM;
            }
            let gr = row0 + r;
            let gk = k0 + kk;
            var v = 0.0;
            if (gr < p.m && gk < p.k_end) {
                v = a[p.a_off + gr * p.a_rs + gk * p.a_cs];
            }
            a_tile[kk * TM + r] = v;
            var kb = e / TN;
            var cc = e % TN;
            if (b_kwalk) {
                kb = e % TK;
                cc = e / TK;
            }
            let gkb = k0 + kb;
            let gc = col0 + cc;
            var w = 0.0;
            if (gkb < p.k_end && gc < p.n) {
                w = b[p.b_off + gkb * p.b_rs + gc * p.b_cs];
            }
            b_tile[kb * TN + cc] = w;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TK; kk++) {
            let ar = kk * TM + lid.y * 4u;
            let bc = kk * TN + lid.x * 4u;
            let bv = vec4<f32>(b_tile[bc], b_tile[bc + 1u], b_tile[bc + 2u], b_tile[bc + 3u]);
            acc0 += a_tile[ar] * bv;
            acc1 += a_tile[ar + 1u] * bv;
            acc2 += a_tile[ar + 2u] * bv;
            acc3 += a_tile[ar + 3u] * bv;
        }
        workgroupBarrier();
    }

    if (!live) {
        return;
    }
    for (var i = 0u; i < 4u; i++) {
        let r = row0 + lid.y * 4u + i;
        if (r >= p.m) {
            continue;
        }
        var accv = acc0;
        if (i == 1u) { accv = acc1; }
        if (i == 2u) { accv = acc2; }
        if (i == 3u) { accv = acc3; }
        for (var j = 0u; j < 4u; j++) {
            let cc = col0 + lid.x * 4u + j;
            if (cc >= p.n) {
                continue;
            }
            let idx = p.c_off + r * p.c_rs + cc;
            var v = p.alpha * accv[j];
            if (p.has_bias == 1u) {
                v += bias[p.bias_off + cc];
            }
            if (p.beta != 0.0) {
                v += p.beta * c[idx];
            }
            c[idx] = v;
        }
    }
}
