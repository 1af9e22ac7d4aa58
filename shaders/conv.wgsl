// conv.wgsl — 2-D convolutions of ConvLSTM2D outside the time loop, channels_last, Keras/TF
// semantics (cross-correlation, no kernel flip; `same` padding puts the extra row/column at
// the bottom/right, so only pad_top/pad_left are needed here).
//
// Frames: output frame n = b·T + t (rows m = (n·Ho + oy)·Wo + ox); its source frame is
// src_off + b·src_sb + t·src_st in a [frames, rows, cols, cin] buffer, so one kernel reads x
// (sb = T, st = 1) or the h ring of the forward (sb = 1, st = B) without copies.
// Im2col, never materialised: A(m, k) = src[frame, oy·sy + a·dy - pad_top, ox·sx + c·dx - pad_left, ch]
// with k = (a·kw + c)·cin + ch (the row of a Keras kernel (kh, kw, cin, cout) flattened).
//
// Entry points:
//   conv_gemm   Y[m, o] = Σ_k A(m,k)·W[k, o] + bias[o] (+ beta·Y)   — input conv of all T frames
//               at once (implicit GEMM). Binding `w` = kernel [K, cout], `g` unused.
//   conv_wgrad  dW[k, o] = Σ_m A(m,k)·G[m, o] (+ beta·dW) over m in [k_begin, k_end) — weight
//               gradient after the backward loop (input kernel from x, recurrent from the h ring).
//   wgrad_direct  the same dW without tiles, for dW small next to the reduction (ConvLSTM2D:
//               9·Cin×4F against B·T·Ho·Wo rows): one invocation per (k, 4 outputs, frame
//               split), looping over its frames' pixels with no divisions and no barriers;
//               k = K (when has_bias = 1) is a row of ones, i.e. db = Σ_m G[m, :]. Partials go
//               to dst[split·(K+has_bias)·cout ..]; split_len = frames per split; needs
//               cout % 4 = 0 and split_len·Ho·Wo under the loop budget (host checks).
//   split_sum   dst[i] = Σ_{s < frames} src[src_off + s·src_sb + i] (+ beta·dst[i]) for
//               i < k_end: sums the split partials in a fixed order (deterministic).
//   conv_dgrad  dX[frame, iy, ix, ch] = Σ_{a,c,o} G[m(oy,ox), o]·W[k(a,c,ch), o] where
//               oy·sy = iy + pad_top - a·dy (and likewise x) — the input gradient, one invocation
//               per input element (gather, no atomics), accumulated when beta = 1.
//
// Bindings (group 0):
//   0 p     uniform ConvParams (dynamic offset)
//   1 src   storage r   f32[frames, rows, cols, cin]   conv input (x or the h ring)
//   2 w     storage r   f32[kh·kw·cin, cout]           kernel (gemm, dgrad)
//   3 g     storage r   f32[M, cout]                   gate gradients (wgrad, dgrad)
//   4 bias  storage r   f32[cout]                      (gemm, has_bias = 1)
//   5 dst   storage rw  f32[...]                       Y [M, cout] / dW [K, cout] / dX [frames, rows, cols, cin]
// Memory: wgrad_direct and split_sum: registers only (a vec4 accumulator), 64 invocations.
// GEMM entries keep a 64×16 A tile and a 16×64 B tile in workgroup memory (8 KiB) and
// a 4×4 block of results per invocation in registers; 16×16 invocations, one 64×64 tile per
// workgroup (flattened 2-D grid). conv_dgrad: 64 invocations, registers only.
// Limits: u32 indexing; K per GEMM dispatch is chunked by the host under the loop budget.
// Caveats: scalar strided loads; f32 accumulation.

struct ConvParams {
    frames: u32,    // output frames (B·T)
    t_len: u32,     // T: frame n = b·T + t
    src_sb: u32,
    src_st: u32,
    src_off: u32,
    rows: u32,
    cols: u32,
    cin: u32,
    out_rows: u32,
    out_cols: u32,
    cout: u32,
    kh: u32,
    kw: u32,
    sy: u32,
    sx: u32,
    dy: u32,
    dx: u32,
    pad_top: u32,
    pad_left: u32,
    k_begin: u32,
    k_end: u32,
    has_bias: u32,
    beta: f32,
    split_len: u32, // wgrad_direct: frames per split
}

@group(0) @binding(0) var<uniform> p: ConvParams;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read> g: array<f32>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;
@group(0) @binding(5) var<storage, read_write> dst: array<f32>;

const TM: u32 = 64u;
const TN: u32 = 64u;
const TK: u32 = 16u;
var<workgroup> a_tile: array<f32, 1024>; // [TK][TM]
var<workgroup> b_tile: array<f32, 1024>; // [TK][TN]

fn m_count() -> u32 {
    return p.frames * p.out_rows * p.out_cols;
}

fn k_count() -> u32 {
    return p.kh * p.kw * p.cin;
}

// The implicit im2col element A(m, k), 0 in the padding.
fn im2col(m: u32, k: u32) -> f32 {
    let hw = p.out_rows * p.out_cols;
    let n = m / hw;
    let rem = m % hw;
    let oy = rem / p.out_cols;
    let ox = rem % p.out_cols;
    let a = k / (p.kw * p.cin);
    let c = (k / p.cin) % p.kw;
    let ch = k % p.cin;
    let iy = i32(oy * p.sy + a * p.dy) - i32(p.pad_top);
    let ix = i32(ox * p.sx + c * p.dx) - i32(p.pad_left);
    if (iy < 0 || ix < 0 || iy >= i32(p.rows) || ix >= i32(p.cols)) {
        return 0.0;
    }
    let frame = p.src_off + (n / p.t_len) * p.src_sb + (n % p.t_len) * p.src_st;
    return src[((frame * p.rows + u32(iy)) * p.cols + u32(ix)) * p.cin + ch];
}

// One 64×64 tile of C[rows, cout] = Σ_kk A'(row, kk)·B'(kk, col), where the entry decides
// what A' and B' are (`wgrad`: A' = im2colᵀ, B' = G; else A' = im2col, B' = W).
fn tiled(lid: vec3<u32>, wid: vec3<u32>, nwg: vec3<u32>, wgrad: bool) {
    let rows = select(m_count(), k_count(), wgrad);
    let tiles_n = (p.cout + TN - 1u) / TN;
    let tiles = tiles_n * ((rows + TM - 1u) / TM);
    let flat = wid.y * nwg.x + wid.x;
    let live = flat < tiles;
    let tile = min(flat, tiles - 1u);
    let row0 = (tile / tiles_n) * TM;
    let col0 = (tile % tiles_n) * TN;
    let tid = lid.y * 16u + lid.x;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var k0 = p.k_begin; k0 < p.k_end; k0 += TK) {
        for (var i = 0u; i < 4u; i++) {
            let e = tid + i * 256u;
            let r = e / TK;
            let kk = e % TK;
            let gr = row0 + r;
            let gk = k0 + kk;
            var v = 0.0;
            if (gr < rows && gk < p.k_end) {
                if (wgrad) {
                    v = im2col(gk, gr);
                } else {
                    v = im2col(gr, gk);
                }
            }
            a_tile[kk * TM + r] = v;
            let kb = e / TN;
            let cc = e % TN;
            let gkb = k0 + kb;
            let gc = col0 + cc;
            var u = 0.0;
            if (gkb < p.k_end && gc < p.cout) {
                if (wgrad) {
                    u = g[gkb * p.cout + gc];
                } else {
                    u = w[gkb * p.cout + gc];
                }
            }
            b_tile[kb * TN + cc] = u;
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
        if (r >= rows) {
            continue;
        }
        var accv = acc0;
        if (i == 1u) { accv = acc1; }
        if (i == 2u) { accv = acc2; }
        if (i == 3u) { accv = acc3; }
        for (var j = 0u; j < 4u; j++) {
            let cc = col0 + lid.x * 4u + j;
            if (cc >= p.cout) {
                continue;
            }
            let idx = r * p.cout + cc;
            var v = accv[j];
            if (p.has_bias == 1u) {
                v += bias[cc];
            }
            if (p.beta != 0.0) {
                v += p.beta * dst[idx];
            }
            dst[idx] = v;
        }
    }
}

@compute @workgroup_size(16, 16, 1)
fn conv_gemm(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    tiled(lid, wid, nwg, false);
}

@compute @workgroup_size(16, 16, 1)
fn conv_wgrad(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    tiled(lid, wid, nwg, true);
}

@compute @workgroup_size(64, 1, 1)
fn wgrad_direct(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let e = (wid.y * nwg.x + wid.x) * 64u + lid;
    let kc = k_count();
    let kq = kc + p.has_bias;
    let o4n = p.cout / 4u;
    let per_split = kq * o4n;
    let splits = (p.frames + p.split_len - 1u) / p.split_len;
    if (e >= per_split * splits) {
        return;
    }
    let split = e / per_split;
    let r = e % per_split;
    let o0 = (r % o4n) * 4u;
    let k = r / o4n;
    let n0 = split * p.split_len;
    let n1 = min(p.frames, n0 + p.split_len);
    let hw = p.out_rows * p.out_cols;
    var acc = vec4<f32>(0.0);
    if (k == kc) {
        for (var m = n0 * hw; m < n1 * hw; m++) {
            let gm = m * p.cout + o0;
            acc += vec4<f32>(g[gm], g[gm + 1u], g[gm + 2u], g[gm + 3u]);
        }
    } else {
        let a = k / (p.kw * p.cin);
        let c = (k / p.cin) % p.kw;
        let ch = k % p.cin;
        for (var n = n0; n < n1; n++) {
            let frame = p.src_off + (n / p.t_len) * p.src_sb + (n % p.t_len) * p.src_st;
            for (var oy = 0u; oy < p.out_rows; oy++) {
                let iy = i32(oy * p.sy + a * p.dy) - i32(p.pad_top);
                if (iy < 0 || iy >= i32(p.rows)) {
                    continue;
                }
                let src_row = (frame * p.rows + u32(iy)) * p.cols;
                let g_row = (n * p.out_rows + oy) * p.out_cols;
                for (var ox = 0u; ox < p.out_cols; ox++) {
                    let ix = i32(ox * p.sx + c * p.dx) - i32(p.pad_left);
                    if (ix < 0 || ix >= i32(p.cols)) {
                        continue;
                    }
                    let v = src[(src_row + u32(ix)) * p.cin + ch];
                    let gm = (g_row + ox) * p.cout + o0;
                    acc += v * vec4<f32>(g[gm], g[gm + 1u], g[gm + 2u], g[gm + 3u]);
                }
            }
        }
    }
    let out = (split * kq + k) * p.cout + o0;
    dst[out] = acc.x;
    dst[out + 1u] = acc.y;
    dst[out + 2u] = acc.z;
    dst[out + 3u] = acc.w;
}

@compute @workgroup_size(64, 1, 1)
fn split_sum(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = (wid.y * nwg.x + wid.x) * 64u + lid;
    if (i >= p.k_end) {
        return;
    }
    var acc = 0.0;
    for (var s = 0u; s < p.frames; s++) {
        acc += src[p.src_off + s * p.src_sb + i];
    }
    if (p.beta != 0.0) {
        acc += p.beta * dst[i];
    }
    dst[i] = acc;
}

@compute @workgroup_size(64, 1, 1)
fn conv_dgrad(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let e = (wid.y * nwg.x + wid.x) * 64u + lid;
    let total = p.frames * p.rows * p.cols * p.cin;
    if (e >= total) {
        return;
    }
    let ch = e % p.cin;
    let ix = (e / p.cin) % p.cols;
    let iy = (e / (p.cin * p.cols)) % p.rows;
    let n = e / (p.cin * p.cols * p.rows);
    var acc = 0.0;
    for (var a = 0u; a < p.kh; a++) {
        let ty = i32(iy + p.pad_top) - i32(a * p.dy);
        if (ty < 0 || u32(ty) % p.sy != 0u || u32(ty) / p.sy >= p.out_rows) {
            continue;
        }
        let oy = u32(ty) / p.sy;
        for (var c = 0u; c < p.kw; c++) {
            let tx = i32(ix + p.pad_left) - i32(c * p.dx);
            if (tx < 0 || u32(tx) % p.sx != 0u || u32(tx) / p.sx >= p.out_cols) {
                continue;
            }
            let ox = u32(tx) / p.sx;
            let g_at = ((n * p.out_rows + oy) * p.out_cols + ox) * p.cout;
            let w_at = ((a * p.kw + c) * p.cin + ch) * p.cout;
            for (var o = 0u; o < p.cout; o++) {
                acc += g[g_at + o] * w[w_at + o];
            }
        }
    }
    if (p.beta != 0.0) {
        acc += p.beta * dst[e];
    }
    dst[e] = acc;
}
