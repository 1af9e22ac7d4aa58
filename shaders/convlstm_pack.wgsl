// convlstm_pack.wgsl — repacks a Keras ConvLSTM2D kernel (kh, kw, C, Q) into the vec4 layout the
// tiled kernels (convlstm_tile.wgsl) stage with aligned loads and no bounds checks. Run once per
// recorded forward/backward (the weights may have changed in place since).
//
//   pack_gates  (forward, recurrent kernel: C = F, Q = 4F)
//               dst[((a·kw + c)·C + ch)·nvp + f] = (src[a,c,ch,f], src[a,c,ch,F+f],
//                                                   src[a,c,ch,2F+f], src[a,c,ch,3F+f])
//               for f < F, 0 for F ≤ f < nvp: the 4 gates i,f,c,o of filter f.
//   pack_flip   (backward, recurrent or input kernel)
//               dst[((a·kw + c)·Q + q)·nvp + v] = (src[kh-1-a, kw-1-c, 4v+k, q])_{k<4},
//               0 where 4v+k ≥ C: the kernel flipped for the transposed convolution, 4
//               channels per vec4.
//
// Bindings (group 0):
//   0 p    uniform PackParams (dynamic offset)
//   1 src  storage r   f32[kh, kw, C, Q]   Keras kernel
//   2 dst  storage rw  vec4<f32>[total]    packed kernel (total = kh·kw·C·nvp or kh·kw·Q·nvp)
// Memory: registers only; one invocation per dst vec4, 64 per workgroup (flattened grid).
// Limits: u32 indexing (host-checked). Caveats: none (a pure copy).

struct PackParams {
    kh: u32,
    kw: u32,
    c: u32,
    q: u32,
    filters: u32,
    nvp: u32,
    total: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: PackParams;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<vec4<f32>>;

@compute @workgroup_size(64, 1, 1)
fn pack_gates(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let e = (wid.y * nwg.x + wid.x) * 64u + lid;
    if (e >= p.total) {
        return;
    }
    let f = e % p.nvp;
    let row = e / p.nvp; // (a·kw + c)·C + ch
    var v = vec4<f32>(0.0);
    if (f < p.filters) {
        let at = row * p.q + f;
        let F = p.filters;
        v = vec4<f32>(src[at], src[at + F], src[at + 2u * F], src[at + 3u * F]);
    }
    dst[e] = v;
}

@compute @workgroup_size(64, 1, 1)
fn pack_flip(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let e = (wid.y * nwg.x + wid.x) * 64u + lid;
    if (e >= p.total) {
        return;
    }
    let v = e % p.nvp;
    let q = (e / p.nvp) % p.q;
    let tap = e / (p.nvp * p.q);
    let c = tap % p.kw;
    let a = tap / p.kw;
    let stap = (p.kh - 1u - a) * p.kw + (p.kw - 1u - c);
    var out = vec4<f32>(0.0);
    for (var k = 0u; k < 4u; k++) {
        let ch = v * 4u + k;
        if (ch < p.c) {
            out[k] = src[(stap * p.c + ch) * p.q + q];
        }
    }
    dst[e] = out;
}
