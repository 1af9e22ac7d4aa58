// step_tiled_backward.wgsl — the recurrent mat-vec of one Stepwise backward step, tiled for
// large B·H (shared by the LSTM, GRU and RNN tiled steps; appended after the cell's backward
// file, whose helpers the entry files {lstm,gru,rnn}_tiled_backward.wgsl call).
//
// Computes, for the next-processed step s+1 (time t1 = time_of(p.s_begin + 1), only when
// s+1 < T; else 0), every batch row b of a 32-row tile and every unit j of a 32-unit tile:
//   rec[b, j] = Σ_{g < K} dG[t1, b, col(g)] · W_hh[g, j]
// with W_hh (G·H × P, row-major) at the start of w_rec, K the W_hh rows the cell's dG feeds
// (LSTM 4H, GRU reset-after 3H, RNN H) and col(g) = g + (g ≥ gap ? H : 0) its dG column
// (GRU reset-after skips the direct-h block: gap = 2H; others gap = K), rows of width `width`.
// The cell's own rule (LSTM/RNN: used only when step s+1 was active; GRU: added to the
// direct part) and the gate gradients are the entry file's job.
//
// Bindings: those of the cell's backward file (rnn_common.wgsl's Params at group 0 binding 0;
//   read here: 2 w_rec (W_hh) and 6 dgates (f32[T,B,width], written by the previous step)).
// Memory plan: per k tile of 32 (workgroup memory, 8 KiB): sb_w [32][32] f32 (W_hh rows ×
//   units) and sb_g [32][8] vec4 (4 batch rows of dG per vec4). Each invocation keeps its 4
//   rows' sums in one vec4; per k it reads one weight and one vec4 of dG. W_hh is read from
//   storage once per step per batch tile.
// Workgroup layout: 256 invocations = 32 units (fastest) × 8 groups of 4 batch rows; grid
//   ceil(H/32)·ceil(B/32) workgroups flattened from a 2-D dispatch, unit tiles fastest.
// Limits: 8 KiB of workgroup memory, 256 invocations; loop iterations per invocation per
//   step ≈ ceil(K/32)·38 (checked by the launcher). No projection (P = H): the LSTM with
//   projection keeps the untiled kernels. Rows ≥ B and units ≥ H read zeros, write nothing.
// Caveats: barriers in uniform control flow only; f32 accumulation in g order (as the
//   untiled step).

const SB_UT: u32 = 32u;
const SB_KT: u32 = 32u;
var<workgroup> sb_w: array<f32, 1024>;
var<workgroup> sb_g: array<vec4<f32>, 256>;

struct SbTile {
    j: u32,
    b0: u32,
    live: bool,
    rec: vec4<f32>,
}

fn sb_backward(lid: u32, wid: vec3<u32>, nwg: vec3<u32>, kdim: u32, gap: u32, width: u32) -> SbTile {
    let H = p.hidden;
    let P = p.out_size;
    let B = p.batch;
    let tiles_u = (H + SB_UT - 1u) / SB_UT;
    let tiles = tiles_u * ((B + 31u) / 32u);
    let flat = wid.y * nwg.x + wid.x;
    let tile = min(flat, tiles - 1u);
    let j0 = (tile % tiles_u) * SB_UT;
    let bt0 = (tile / tiles_u) * 32u;
    let u = lid % SB_UT;
    let rg = lid / SB_UT;
    let s_next = p.s_begin + 1u;
    // The first processed step has no successor: K = 0 (uniform for the whole dispatch).
    let kk = select(0u, kdim, s_next < p.t_len);
    let t1 = time_of(min(s_next, p.t_len - 1u));
    var out: SbTile;
    out.j = j0 + u;
    out.b0 = bt0 + 4u * rg;
    out.live = flat < tiles;
    out.rec = vec4<f32>(0.0);
    for (var k0 = 0u; k0 < kk; k0 += SB_KT) {
        // Weights: entry e = (row g, unit); neighbouring invocations read neighbouring units.
        for (var e = lid; e < SB_KT * SB_UT; e += 256u) {
            let g = k0 + e / SB_UT;
            let jj = j0 + e % SB_UT;
            var w = 0.0;
            if (g < kk && jj < H) {
                w = w_rec[g * P + jj];
            }
            sb_w[e] = w;
        }
        // dG: entry e = (group of 4 rows, k); neighbouring invocations read neighbouring g.
        {
            let g = k0 + lid % SB_KT;
            let b = bt0 + 4u * (lid / SB_KT);
            let col = g + select(0u, H, g >= gap);
            var v = vec4<f32>(0.0);
            if (g < kk) {
                for (var i = 0u; i < 4u; i++) {
                    if (b + i < B) {
                        v[i] = dgates[(t1 * B + b + i) * width + col];
                    }
                }
            }
            sb_g[(lid % SB_KT) * 8u + lid / SB_KT] = v;
        }
        workgroupBarrier();
        for (var k = 0u; k < SB_KT; k++) {
            out.rec = fma(sb_g[k * 8u + rg], vec4<f32>(sb_w[k * SB_UT + u]), out.rec);
        }
        workgroupBarrier();
    }
    return out;
}
