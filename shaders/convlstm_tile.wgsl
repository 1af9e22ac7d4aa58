// convlstm_tile.wgsl — the tiled implicit-GEMM core of the ConvLSTM2D "Tiled" kernels (prelude of
// convlstm_tiled_forward.wgsl and convlstm_tiled_backward.wgsl, which define `src_value`).
//
// One workgroup computes a tile of TH×TW output pixels of one frame n × TV vec4 columns
// (8×8 × 8, or 8×16 × 4: TV is a pipeline constant), as an implicit GEMM (M = pixels,
// N = 4·vec columns, K = kh·kw·Q):
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
// Memory plan: per Q chunk of KC = 8 channels, the src tile plus its halo
// [(TH + (kh-1)·dil_y) × (TW + (kw-1)·dil_x) × KC] is staged in workgroup memory `halo`
// (pixel stride KCP = 9 floats, so the two pixel groups of a row, 4 pixels apart, read
// different banks; ≤ 2304 floats), then per kernel row a the weight tile [kw × KC × TV] vec4
// in `wtile` (≤ 512 vec4); each src and weight element is read from storage once per
// workgroup.
// Registers: 4 vec4 accumulators (4 pixels × one vec column).
// Workgroup layout: 128 invocations: v = lid % TV (vec column), pixel group pg = lid / TV →
// row ty = pg / (TW/4), columns tx0 = (pg % (TW/4))·4 .. +4. Grid (flattened 2-D): n ×
// tiles_y × tiles_x × vec tiles, vec tile fastest (neighbouring workgroups share the halo
// in cache).
// Limits (host-checked, kernels/convlstm_tiled.rs): halo pixels·KCP ≤ 2304 floats,
// kw·KC·TV ≤ 512 vec4 (kw ≤ 8 at TV = 8, ≤ 16 at TV = 4), loop iterations per invocation under the llvmpipe budget
// (DESIGN.md §5), u32 indexing. 17 KiB of workgroup memory. Barriers in uniform control flow only (every
// loop bound comes from the uniform block).
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
    flags: u32,
}

@group(0) @binding(0) var<uniform> p: TileParams;
@group(0) @binding(1) var<storage, read> wt: array<vec4<f32>>;

const TH: u32 = 8u;
// Vec columns per workgroup, 8 or 4 (a pipeline constant the host picks to leave fewer
// columns idle); the pixel tile is TH × TW with TW = 64 / TV (8 or 16) so that 128
// invocations always own 4 pixels × 1 vec column each.
override TV: u32 = 8u;
const KC: u32 = 8u;
const KCP: u32 = 9u;
const WG: u32 = 128u;
const HALO: u32 = 2304u;
const WT: u32 = 512u;

var<workgroup> halo: array<f32, HALO>;
var<workgroup> wtile: array<vec4<f32>, WT>;

// Where a workgroup's tile lies and which outputs one invocation owns.
struct Tile {
    n: u32,
    y0: u32,
    x0: u32,
    v0: u32,
    ty: u32,
    tx0: u32,
    v: u32,
}

fn tile_of(lid: u32, wid: vec3<u32>, nwg: vec3<u32>) -> Tile {
    let flat = wid.y * nwg.x + wid.x;
    let tw = 64u / TV;
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
    let pg = lid / TV;
    t.ty = pg / (tw / 4u);
    t.tx0 = (pg % (tw / 4u)) * 4u;
    return t;
}

// Whether the workgroup lies inside the dispatch (a rounded-up grid has spare workgroups).
fn tile_live(wid: vec3<u32>, nwg: vec3<u32>) -> bool {
    let tw = 64u / TV;
    let vt = (p.nv + TV - 1u) / TV;
    let tiles = vt * ((p.dc + tw - 1u) / tw) * ((p.dr + TH - 1u) / TH);
    return wid.y * nwg.x + wid.x < tiles * p.frames;
}

// The implicit GEMM of the tile; returns the 4 pixels' accumulators (pixel j at column
// tx0 + j). Every invocation of the workgroup must call it (barriers inside).
fn tile_conv(lid: u32, t: Tile) -> array<vec4<f32>, 4> {
    let hy = TH + (p.kh - 1u) * p.dil_y;
    let hx = 64u / TV + (p.kw - 1u) * p.dil_x;
    let nh = hy * hx * KC;
    let nw = p.kw * KC * TV;
    let frame = p.src_off + t.n * p.src_sb;
    let oy = i32(t.y0) + p.off_y;
    let ox = i32(t.x0) + p.off_x;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var q0 = 0u; q0 < p.q; q0 += KC) {
        workgroupBarrier();
        for (var e = lid; e < nh; e += WG) {
            let cc = e % KC;
            let px = (e / KC) % hx;
            let py = e / (KC * hx);
            let y = oy + i32(py);
            let x = ox + i32(px);
            var v = 0.0;
            if (q0 + cc < p.q && y >= 0 && x >= 0 && y < i32(p.sr) && x < i32(p.sc)) {
                v = src_value(((frame * p.sr + u32(y)) * p.sc + u32(x)) * p.q + q0 + cc);
            }
            halo[(py * hx + px) * KCP + cc] = v;
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
            let row = (t.ty + a * p.dil_y) * hx + t.tx0;
            for (var c = 0u; c < p.kw; c++) {
                let col = row + c * p.dil_x;
                for (var cc = 0u; cc < KC; cc++) {
                    let w = wtile[(c * KC + cc) * TV + t.v];
                    acc0 += halo[col * KCP + cc] * w;
                    acc1 += halo[(col + 1u) * KCP + cc] * w;
                    acc2 += halo[(col + 2u) * KCP + cc] * w;
                    acc3 += halo[(col + 3u) * KCP + cc] * w;
                }
            }
        }
    }
    return array<vec4<f32>, 4>(acc0, acc1, acc2, acc3);
}
