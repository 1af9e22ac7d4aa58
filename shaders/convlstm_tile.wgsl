// convlstm_tile.wgsl — the tiled implicit-GEMM core of the ConvLSTM2D "Tiled" kernels (prelude of
// convlstm_tiled_forward.wgsl and convlstm_tiled_backward.wgsl, which define `src_value` and
// `src_vec`).
//
// One workgroup computes a tile of TH×TW output pixels of one frame n × TV vec4 columns
// (8×16 × 8, or 8×32 × 4: TV is a pipeline constant, TW = 128 / TV), as an implicit GEMM
// (M = pixels, N = 4·vec columns, K = kh·kw·Q):
//   acc[y, x, v] = Σ_{a<kh, c<kw, q<Q} src[n, y0 + off_y + (y-y0) + a·dil_y,
//                                          x0 + off_x + (x-x0) + c·dil_x, q] · wt[a, c, q, v]
// (src is 0 outside its sr×sc frame). The including file picks what that is:
//   forward   src = h_{t-1} (Q = F), v = filter f, the vec4 = its 4 gates i,f,c,o
//             (off = -pad: the recurrent conv, stride 1, "same");
//   backward  src = dZ_{t+1} (Q = 4F), v = a group of 4 channels, weights flipped (a' = kh-1-a)
//             (the transposed recurrent conv), or src = dZ of all frames with the input
//             kernel flipped (dX, stride 1, any dilation).
// wt is packed by convlstm_pack.wgsl: vec4 [kh, kw, Q, nvp], nvp = vec columns padded to TV,
// so weight loads are aligned vec4s with no bounds checks.
//
// Bindings (group 0) shared by the including files:
//   0 p   uniform TileParams (dynamic offset)
//   1 wt  storage r  vec4<f32>[kh·kw·Q·nvp]   packed weights (see above)
// The including file also binds src twice: as f32 (`src_value`, masked scalar loads) and as
// vec4 (`src_vec`), the latter read only when flags bit 2 (VEC_SRC) is set, i.e. when Q is a
// multiple of 4 so every channel group of 4 starts on a 16-byte boundary.
// Memory plan: per Q chunk of KC = 8 channels (zero past Q), the src tile plus its halo
// [(TH + (kh-1)·dil_y) × (TW + (kw-1)·dil_x) pixels × 2 vec4] is staged in workgroup memory
// `halo` (vec4 over channels: pixel p's channels q0+4k..+3 at halo[2p + k]; ≤ 1024 vec4), with
// aligned vec4 loads from storage (VEC_SRC) or masked scalar loads; then per kernel row a the
// weight tile [kw × KC × TV] vec4 in `wtile` (≤ 512 vec4). Each src and weight element is read
// from storage once per workgroup.
// Registers: 8 vec4 accumulators (8 pixels × one vec column). Inner step (one tap c, one
// channel vec4 k): 4 weight vec4 loads (channels 4k..4k+3 of the invocation's column) + 8 halo
// vec4 loads (its 8 pixels) feed 32 vec4 FMAs = 128 multiply-adds: 10.7 per workgroup-memory
// load (the scalar-halo version before it: 16 per 5 loads, 3.2).
// Workgroup layout: 128 invocations: v = lid % TV (vec column), pixel group pg = lid / TV →
// row ty = pg / S, first column gx = pg % S (S = 16 / TV groups per row); the group owns the
// 8 columns gx + j·S (j < 8), interleaved with its row's other groups: each aligned block of
// 8 lanes (what NVIDIA serves per pass of a 16-byte shared load) reads one pixel (TV = 8) or
// two neighbouring ones (TV = 4; halo vec4s 2 apart: distinct banks) without padding the
// halo, and the epilogue's stores of neighbouring lanes are neighbours in memory.
// Grid (flattened 2-D): n × tiles_y × tiles_x × vec tiles, vec tile fastest (neighbouring
// workgroups share the halo in cache).
// Limits (host-checked, kernels/convlstm_tiled.rs): halo pixels·2 ≤ 1024 vec4, kw·KC·TV ≤ 512
// vec4 (kw ≤ 8 at TV = 8, ≤ 16 at TV = 4), loop iterations per invocation under the llvmpipe
// budget (DESIGN.md §5), u32 indexing. 24 KiB of workgroup memory (the halo pool holds every
// kernel the scalar-halo version's did). Barriers in uniform control flow only (every loop
// bound and branch comes from the uniform block or a constant).
// Caveats: f32 accumulation in a different order than the CPU reference (rounding only).

struct TileParams {
    frames: u32,    // n: frames of this dispatch (B for a step, B·T for dX)
    src_off: u32,   // src frame of n: src_off + n·src_sb
    src_sb: u32,
    sr: u32,        // src frame rows, cols, channels (Q)
    sc: u32,
    q: u32,
    dr: u32,        // output frame rows, cols
    dc: u32,
    kh: u32,
    kw: u32,
    dil_y: u32,
    dil_x: u32,
    off_y: i32,     // src row of output row y at tap a = y + off_y + a·dil_y
    off_x: i32,
    nv: u32,        // vec columns (forward: F filters; backward: ceil(C/4) channel groups)
    nvp: u32,       // nv padded to TV (packed weight row length)
    // Extras of the including files.
    t: u32,         // the step
    t_len: u32,
    batch: u32,
    slots: u32,
    filters: u32,   // F (backward dX: Cin)
    act: u32,
    ract: u32,
    flags: u32,     // bit 2: VEC_SRC; bits 0-1: the including file's
}

@group(0) @binding(0) var<uniform> p: TileParams;
@group(0) @binding(1) var<storage, read> wt: array<vec4<f32>>;

const TH: u32 = 8u;
// Vec columns per workgroup, 8 or 4 (a pipeline constant the host picks to leave fewer
// columns idle); the pixel tile is TH × TW with TW = 128 / TV (16 or 32) so that 128
// invocations always own 8 pixels × 1 vec column each.
override TV: u32 = 8u;
// Pixels per invocation.
const PX: u32 = 8u;
// Channels per staged chunk, and vec4s per halo pixel.
const KC: u32 = 8u;
const KV: u32 = 2u;
const WG: u32 = 128u;
const HALO: u32 = 1024u;
const WT: u32 = 512u;
const VEC_SRC: u32 = 4u;

var<workgroup> halo: array<vec4<f32>, HALO>;
var<workgroup> wtile: array<vec4<f32>, WT>;

// Where a workgroup's tile lies and which outputs one invocation owns: row ty, columns
// gx + j·s (j < PX) of the tile, vec column v.
struct Tile {
    n: u32,
    y0: u32,
    x0: u32,
    v0: u32,
    ty: u32,
    gx: u32,
    s: u32,
    v: u32,
}

fn tile_of(lid: u32, wid: vec3<u32>, nwg: vec3<u32>) -> Tile {
    let flat = wid.y * nwg.x + wid.x;
    let tw = WG / TV;
    let vt = (p.nv + TV - 1u) / TV;
    let tx = (p.dc + tw - 1u) / tw;
    let ty = (p.dr + TH - 1u) / TH;
    var t: Tile;
    t.v0 = (flat % vt) * TV;
    let r = flat / vt;
    t.x0 = (r % tx) * tw;
    t.y0 = ((r / tx) % ty) * TH;
    // Past the last frame (a rounded-up grid): clamp, and the epilogue masks it out.
    t.n = min(r / (tx * ty), p.frames - 1u);
    t.v = lid % TV;
    t.s = tw / PX;
    let pg = lid / TV;
    t.ty = pg / t.s;
    t.gx = pg % t.s;
    return t;
}

// Output column of the invocation's pixel j.
fn tile_x(t: Tile, j: u32) -> u32 {
    return t.x0 + t.gx + j * t.s;
}

// Whether the workgroup lies inside the dispatch (a rounded-up grid has spare workgroups).
fn tile_live(wid: vec3<u32>, nwg: vec3<u32>) -> bool {
    let tw = WG / TV;
    let vt = (p.nv + TV - 1u) / TV;
    let tiles = vt * ((p.dc + tw - 1u) / tw) * ((p.dr + TH - 1u) / TH);
    return wid.y * nwg.x + wid.x < tiles * p.frames;
}

// Channels q..q+3 of src element i (its channel q, q = a multiple of 4), 0 past Q.
fn src_load(i: u32, q: u32) -> vec4<f32> {
    var v = vec4<f32>(0.0);
    if ((p.flags & VEC_SRC) != 0u) {
        // Q % 4 == 0: the group is whole or absent, and i is a multiple of 4.
        if (q < p.q) {
            v = src_vec(i / 4u);
        }
    } else {
        for (var m = 0u; m < 4u; m++) {
            if (q + m < p.q) {
                v[m] = src_value(i + m);
            }
        }
    }
    return v;
}

// acc + Σ_m h[m]·w_m: one channel vec4 of one pixel against the invocation's 4 weight vec4s.
fn mac(acc: vec4<f32>, h: vec4<f32>, w0: vec4<f32>, w1: vec4<f32>, w2: vec4<f32>, w3: vec4<f32>) -> vec4<f32> {
    return acc + h.x * w0 + h.y * w1 + h.z * w2 + h.w * w3;
}

// The implicit GEMM of the tile; returns the 8 pixels' accumulators (pixel j at column
// tile_x(t, j)). Every invocation of the workgroup must call it (barriers inside).
fn tile_conv(lid: u32, t: Tile) -> array<vec4<f32>, 8> {
    let hy = TH + (p.kh - 1u) * p.dil_y;
    let hx = WG / TV + (p.kw - 1u) * p.dil_x;
    let nh = hy * hx * KV;
    let nw = p.kw * KC * TV;
    let frame = p.src_off + t.n * p.src_sb;
    let oy = i32(t.y0) + p.off_y;
    let ox = i32(t.x0) + p.off_x;
    // Halo vec4s between an invocation's neighbouring pixels.
    let ds = t.s * KV;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    var acc4 = vec4<f32>(0.0);
    var acc5 = vec4<f32>(0.0);
    var acc6 = vec4<f32>(0.0);
    var acc7 = vec4<f32>(0.0);
    for (var q0 = 0u; q0 < p.q; q0 += KC) {
        workgroupBarrier();
        for (var e = lid; e < nh; e += WG) {
            let k = e % KV;
            let px = (e / KV) % hx;
            let py = e / (KV * hx);
            let y = oy + i32(py);
            let x = ox + i32(px);
            var v = vec4<f32>(0.0);
            if (y >= 0 && x >= 0 && y < i32(p.sr) && x < i32(p.sc)) {
                let q = q0 + 4u * k;
                v = src_load(((frame * p.sr + u32(y)) * p.sc + u32(x)) * p.q + q, q);
            }
            halo[e] = v;
        }
        for (var a = 0u; a < p.kh; a++) {
            if (a > 0u) {
                workgroupBarrier();
            }
            for (var e = lid; e < nw; e += WG) {
                let vv = e % TV;
                let cc = (e / TV) % KC;
                let c = e / (TV * KC);
                let qq = min(q0 + cc, p.q - 1u);
                var w = wt[((a * p.kw + c) * p.q + qq) * p.nvp + t.v0 + vv];
                if (q0 + cc >= p.q) {
                    w = vec4<f32>(0.0);
                }
                wtile[e] = w;
            }
            workgroupBarrier();
            let row = ((t.ty + a * p.dil_y) * hx + t.gx) * KV;
            for (var c = 0u; c < p.kw; c++) {
                let col = row + c * p.dil_x * KV;
                for (var k = 0u; k < KV; k++) {
                    let wb = (c * KC + 4u * k) * TV + t.v;
                    let w0 = wtile[wb];
                    let w1 = wtile[wb + TV];
                    let w2 = wtile[wb + 2u * TV];
                    let w3 = wtile[wb + 3u * TV];
                    let h = col + k;
                    acc0 = mac(acc0, halo[h], w0, w1, w2, w3);
                    acc1 = mac(acc1, halo[h + ds], w0, w1, w2, w3);
                    acc2 = mac(acc2, halo[h + 2u * ds], w0, w1, w2, w3);
                    acc3 = mac(acc3, halo[h + 3u * ds], w0, w1, w2, w3);
                    acc4 = mac(acc4, halo[h + 4u * ds], w0, w1, w2, w3);
                    acc5 = mac(acc5, halo[h + 5u * ds], w0, w1, w2, w3);
                    acc6 = mac(acc6, halo[h + 6u * ds], w0, w1, w2, w3);
                    acc7 = mac(acc7, halo[h + 7u * ds], w0, w1, w2, w3);
                }
            }
        }
    }
    return array<vec4<f32>, 8>(acc0, acc1, acc2, acc3, acc4, acc5, acc6, acc7);
}
