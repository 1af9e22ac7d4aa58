// step_tiled_forward.wgsl — the recurrent mat-vec of one Stepwise forward step, tiled for
// large B·H (shared by the LSTM, GRU and RNN tiled steps; appended after the cell's forward
// file, whose helpers the entry files {lstm,gru,rnn}_tiled_forward.wgsl call).
//
// Computes, for the step's time t (time_of(p.s_begin)), every batch row b of a 32-row tile
// and every unit j of a 32-unit tile, all G gates of the unit at once:
//   rec[b, j][g] = Σ_{k < P} h_{prev}[b, k] · W_hhᵀ[k, g·H + j]      g < G (LSTM 4, GRU 3, RNN 1)
// with h_prev the ring slot slot_before(t) of hseq and W_hhᵀ the forward's transposed copy in
// w_rec at p.wt_off (P × G·H, row-major). The cell update is the entry file's job.
//
// Bindings: those of the cell's forward file (rnn_common.wgsl's Params at group 0 binding 0;
//   read here: 2 w_rec (W_hhᵀ at p.wt_off) and 4 hseq (f32[S,B,P], the h ring)).
// Memory plan: per k tile of 16 (workgroup memory, 10 KiB): st_w [16][32] vec4 (the G gate
//   weights of each unit, one vec4 per (k, unit)) and st_h [16][8] vec4 (4 batch rows per
//   vec4). Each invocation keeps 4 batch rows × 4 gates in 4 vec4 registers; per k it reads
//   one vec4 of weights and one of h for 16 multiply-adds. W_hh is read from storage once per
//   step per batch tile (ceil(B/32) times per step), h once per unit tile.
// Workgroup layout: 256 invocations = 32 units (fastest) × 8 groups of 4 batch rows; grid
//   ceil(H/32)·ceil(B/32) workgroups flattened from a 2-D dispatch, unit tiles fastest.
// Limits: 10 KiB of workgroup memory, 256 invocations; loop iterations per invocation per
//   step ≈ ceil(P/16)·19 (checked by the launcher against the loop budget). Rows ≥ B and units
//   ≥ H read zeros and are not written.
// Caveats: barriers in uniform control flow only (every bound is from the uniform block or
//   the workgroup id); f32 accumulation in k order, so sums match the untiled step's up to
//   rounding (both add the same products in the same order).

const ST_UT: u32 = 32u;
const ST_KT: u32 = 16u;
var<workgroup> st_w: array<vec4<f32>, 512>;
var<workgroup> st_h: array<vec4<f32>, 128>;

// One invocation's part of a tile: unit j, first batch row b0, live (its workgroup is not a
// surplus one of a 2-D grid) and the recurrent sums of rows b0..b0+3 (one vec4 of gates each).
struct StTile {
    j: u32,
    b0: u32,
    live: bool,
    r0: vec4<f32>,
    r1: vec4<f32>,
    r2: vec4<f32>,
    r3: vec4<f32>,
}

fn st_forward(lid: u32, wid: vec3<u32>, nwg: vec3<u32>, gates: u32) -> StTile {
    let H = p.hidden;
    let P = p.out_size;
    let B = p.batch;
    let tiles_u = (H + ST_UT - 1u) / ST_UT;
    let tiles = tiles_u * ((B + 31u) / 32u);
    let flat = wid.y * nwg.x + wid.x;
    let tile = min(flat, tiles - 1u);
    let j0 = (tile % tiles_u) * ST_UT;
    let bt0 = (tile / tiles_u) * 32u;
    let u = lid % ST_UT;
    let rg = lid / ST_UT;
    let t = time_of(p.s_begin);
    let h_base = slot_before(t) * B;
    let GH = gates * H;
    var out: StTile;
    out.j = j0 + u;
    out.b0 = bt0 + 4u * rg;
    out.live = flat < tiles;
    out.r0 = vec4<f32>(0.0);
    out.r1 = vec4<f32>(0.0);
    out.r2 = vec4<f32>(0.0);
    out.r3 = vec4<f32>(0.0);
    for (var k0 = 0u; k0 < P; k0 += ST_KT) {
        // Weights: entry e = (k, unit); neighbouring invocations read neighbouring units.
        for (var e = lid; e < ST_KT * ST_UT; e += 256u) {
            let k = k0 + e / ST_UT;
            let jj = j0 + e % ST_UT;
            var w = vec4<f32>(0.0);
            if (k < P && jj < H) {
                let at = p.wt_off + k * GH + jj;
                for (var g = 0u; g < gates; g++) {
                    w[g] = w_rec[at + g * H];
                }
            }
            st_w[e] = w;
        }
        // h: entry e = (group of 4 rows, k); neighbouring invocations read neighbouring k.
        if (lid < ST_KT * 8u) {
            let k = k0 + lid % ST_KT;
            let b = bt0 + 4u * (lid / ST_KT);
            var v = vec4<f32>(0.0);
            if (k < P) {
                for (var i = 0u; i < 4u; i++) {
                    if (b + i < B) {
                        v[i] = hseq[(h_base + b + i) * P + k];
                    }
                }
            }
            st_h[(lid % ST_KT) * 8u + lid / ST_KT] = v;
        }
        workgroupBarrier();
        for (var k = 0u; k < ST_KT; k++) {
            let w = st_w[k * ST_UT + u];
            let hv = st_h[k * 8u + rg];
            out.r0 = fma(vec4<f32>(hv.x), w, out.r0);
            out.r1 = fma(vec4<f32>(hv.y), w, out.r1);
            out.r2 = fma(vec4<f32>(hv.z), w, out.r2);
            out.r3 = fma(vec4<f32>(hv.w), w, out.r3);
        }
        workgroupBarrier();
    }
    return out;
}

// Row i (0..3) of a tile's sums.
fn st_row(tl: StTile, i: u32) -> vec4<f32> {
    switch i {
        case 0u: { return tl.r0; }
        case 1u: { return tl.r1; }
        case 2u: { return tl.r2; }
        default: { return tl.r3; }
    }
}
