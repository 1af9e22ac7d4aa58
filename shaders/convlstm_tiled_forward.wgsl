// convlstm_tiled_forward.wgsl — ConvLSTM2D forward step as a tiled implicit GEMM ("Tiled"), gates
// i,f,c,o, Keras semantics, channels_last. Prelude: activations.wgsl, convlstm_tile.wgsl.
//
// Per step t (one dispatch; go_backwards is a host-side time flip of x), for every pixel
// (b, y, x) and filter f:
//   z = zx[b,t,y,x,·f] + Σ_{a,c,ch} h_{t-1}[b, y+a-pt, x+c-pl, ch] · rk[a,c,ch,·f]
//   i,f,o = ract(z_i,z_f,z_o)   g = act(z_c)   c = f⊙c_prev + i⊙g   h = o⊙act(c)
// pt = (kh-1)/2, pl = (kw-1)/2 (TF "same": extra padding bottom/right). The recurrent conv is
// tile_conv with src = h_{t-1} (Q = F), vec column v = filter, vec4 = its 4 gates, so each
// invocation ends with all 4 gates of its 8 pixels and the cell update is its epilogue.
//
// Bindings (group 0):
//   0 p     uniform TileParams (convlstm_tile.wgsl): frames = B, src_off = (t % slots)·B,
//           src_sb = 1, sr×sc = dr×dc = Ho×Wo, q = F, off = (-pt, -pl), nv = F, t, slots
//   1 wt    storage r   vec4[kh, kw, F, nvp]  rk packed by convlstm_pack.wgsl `pack_gates`
//   2 zx    storage rw  f32[B,T,Ho,Wo,4F]     in: input-conv output (+ bias); out when
//                                             training (flags bit 0): activated gates
//   3 hseq  storage rw  f32[S,B,Ho,Wo,F]      h ring: slot t holds h_{t-1} (S = T+1 training,
//                                             2 otherwise); reads slot t, writes slot t+1
//   4 cseq  storage rw  f32[S,B,Ho,Wo,F]      c ring, same slots
//   5 out   storage rw  f32[B,T,Ho,Wo,F]      output sequence (processing order)
//   6 hseq4 storage rw  vec4[S·B·Ho·Wo·F/4]   hseq again, as vec4 (the halo's aligned loads),
//                                             when F % 4 == 0 (flags bit 2); else a 16-byte
//                                             placeholder the kernel does not read
// Entry point `step`: one step; workgroups of 128 (see convlstm_tile.wgsl for the tile).
// Memory: h tile + halo and the weight tile in workgroup memory (convlstm_tile.wgsl);
// 8 vec4 accumulators (8 pixels × 4 gates of one filter) and the epilogue in registers; rk
// read once per workgroup per step.
// Limits: those of convlstm_tile.wgsl (kw ≤ 8, or 16 when TV = 4; halo ≤ 1024 vec4).
// Caveats: one dependent dispatch per step (the recurrent conv needs the neighbours' h).

@group(0) @binding(2) var<storage, read_write> zx: array<f32>;
@group(0) @binding(3) var<storage, read_write> hseq: array<f32>;
@group(0) @binding(4) var<storage, read_write> cseq: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;
@group(0) @binding(6) var<storage, read_write> hseq4: array<vec4<f32>>;

const TRAIN: u32 = 1u;

fn src_value(i: u32) -> f32 {
    return hseq[i];
}

fn src_vec(i4: u32) -> vec4<f32> {
    return hseq4[i4];
}

// Gates and state update of one output (pixel `pix` of sequence b, filter f).
fn cell_update(b: u32, pix: u32, f: u32, rec: vec4<f32>) {
    let F = p.filters;
    let fl = p.dr * p.dc * F;
    let at = ((b * p.t_len + p.t) * p.dr * p.dc + pix) * 4u * F + f;
    let i = act(p.ract, zx[at] + rec.x);
    let fg = act(p.ract, zx[at + F] + rec.y);
    let g = act(p.act, zx[at + 2u * F] + rec.z);
    let o = act(p.ract, zx[at + 3u * F] + rec.w);
    if ((p.flags & TRAIN) != 0u) {
        zx[at] = i;
        zx[at + F] = fg;
        zx[at + 2u * F] = g;
        zx[at + 3u * F] = o;
    }
    let e = b * fl + pix * F + f;
    let rs = p.t % p.slots;
    let ws = (p.t + 1u) % p.slots;
    let c = fg * cseq[rs * p.batch * fl + e] + i * g;
    let h = o * act(p.act, c);
    cseq[ws * p.batch * fl + e] = c;
    hseq[ws * p.batch * fl + e] = h;
    out[(b * p.t_len + p.t) * fl + pix * F + f] = h;
}

@compute @workgroup_size(128, 1, 1)
fn step(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let t = tile_of(lid, wid, nwg);
    var acc = tile_conv(lid, t);
    let f = t.v0 + t.v;
    let y = t.y0 + t.ty;
    if (!tile_live(wid, nwg) || f >= p.filters || y >= p.dr) {
        return;
    }
    for (var j = 0u; j < PX; j++) {
        let x = tile_x(t, j);
        if (x < p.dc) {
            cell_update(t.n, y * p.dc + x, f, acc[j]);
        }
    }
}
