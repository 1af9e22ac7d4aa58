// convlstm_tiled_backward.wgsl — ConvLSTM2D backward through time as tiled implicit GEMMs
// ("Tiled"), gates i,f,c,o. Prelude: activations.wgsl, convlstm_tile.wgsl.
//
// R_t, the gradient reaching h_t from later steps, is the transposed recurrent convolution:
//   R_{T-1} = dy_h_n ;  R_{t-1}[y,x,ch] = Σ_{a,c,q} dZ_t[y+pt-a, x+pl-c, q] · rk[a,c,ch,q]
// = tile_conv over src = dZ_t (Q = 4F) with the kernel flipped (a' = kh-1-a) and
// off = (pt-(kh-1), pl-(kw-1)); vec column v = channels 4v..4v+3. At step t, with
// dh = R_t + dy_out[b,t] and ac = act(c_t) (derivatives from the saved activations):
//   dc = dc_in + dh⊙o⊙act'(c_t);  dc_out = dc⊙f
//   dZ = [dc⊙g⊙ract'(i) | dc⊙c_{t-1}⊙ract'(f) | dc⊙i⊙act'(g) | dh⊙ac⊙ract'(o)]
// dX of the input convolution (stride 1, any dilation) is the same gather:
//   dX[n,iy,ix,ch] = Σ_{a,c,o} dZ[n, iy+pad_top-a·dy, ix+pad_left-c·dx, o] · W[a,c,ch,o]
//
// Bindings (group 0):
//   0 p       uniform TileParams (convlstm_tile.wgsl); filters = F (dgrad: Cin)
//   1 wt      storage r   vec4[kh, kw, Q, nvp]  flipped kernel, convlstm_pack.wgsl `pack_flip`
//   2 gates   storage r   f32[B,T,Ho,Wo,4F]    activated gates saved by the training forward
//   3 cseq    storage r   f32[T+1,B,Ho,Wo,F]   c ring of the training forward (slot t = c_{t-1})
//   4 dy      storage r   f32[B,T,Ho,Wo,F]     upstream output gradient (processing order)
//   5 dgates  storage rw  f32[B,T,Ho,Wo,4F]    pre-activation gate gradients: step writes
//                                              frame t and reads frame t+1
//   6 state   storage rw  f32[2·B·Ho·Wo·F]     R (in dy_h_n, out dh0) then dc (in dy_c_n,
//                                              out dc0); dgrad: dX f32[B·T, rows, cols, Cin]
//   7 dgates4 storage rw  vec4[B·T·Ho·Wo·F]    dgates again, as vec4 (the halo's aligned
//                                              loads; Q = 4F, so flags bit 2 is set). dgrad:
//                                              the same when Cout % 4 == 0, else a 16-byte
//                                              placeholder it does not read (scalar loads)
// Entry points (workgroups of 128, grid as convlstm_tile.wgsl):
//   step    one step t: R_t (tile_conv over dZ_{t+1}, skipped when flags bit 1 is clear,
//           i.e. t = T-1) fused with the gate gradients of the 8 pixels × 4 channels each
//           invocation owns. frames = B, src_off = t+1, src_sb = T.
//   recur   the final pass: dh0 = R_{-1} from dZ_0 into state[0..B·Ho·Wo·F].
//   dgrad   dX for every frame (frames = B·T, src_off = 0, src_sb = 1), overwritten.
// Memory: dZ tile + halo and the weight tile in workgroup memory (convlstm_tile.wgsl);
// 8 vec4 accumulators (8 pixels × 4 channels) and the epilogue in registers.
// Limits: those of convlstm_tile.wgsl; dgrad needs stride 1 (host falls back otherwise).
// Caveats: f32 accumulation; one dispatch per step.

@group(0) @binding(2) var<storage, read> gates: array<f32>;
@group(0) @binding(3) var<storage, read> cseq: array<f32>;
@group(0) @binding(4) var<storage, read> dy: array<f32>;
@group(0) @binding(5) var<storage, read_write> dgates: array<f32>;
@group(0) @binding(6) var<storage, read_write> state: array<f32>;
@group(0) @binding(7) var<storage, read_write> dgates4: array<vec4<f32>>;

const HAS_NEXT: u32 = 2u;

fn src_value(i: u32) -> f32 {
    return dgates[i];
}

fn src_vec(i4: u32) -> vec4<f32> {
    return dgates4[i4];
}

// Gate gradients of one output (pixel `pix` of sequence b, channel ch) given R_t.
fn grad_update(b: u32, pix: u32, ch: u32, r_in: f32) {
    let F = p.filters;
    let fl = p.dr * p.dc * F;
    let n = p.batch * fl;
    let e = b * fl + pix * F + ch;
    var rr = state[e];
    if ((p.flags & HAS_NEXT) != 0u) {
        rr = r_in;
    }
    state[e] = rr;
    let at = ((b * p.t_len + p.t) * p.dr * p.dc + pix) * 4u * F + ch;
    let i = gates[at];
    let fg = gates[at + F];
    let g = gates[at + 2u * F];
    let o = gates[at + 3u * F];
    let c = cseq[((p.t + 1u) % p.slots) * n + e];
    let c_prev = cseq[(p.t % p.slots) * n + e];
    let ac = act(p.act, c);
    let dh = rr + dy[(b * p.t_len + p.t) * fl + pix * F + ch];
    let dc = state[n + e] + dh * o * act_grad(p.act, ac);
    state[n + e] = dc * fg;
    dgates[at] = dc * g * act_grad(p.ract, i);
    dgates[at + F] = dc * c_prev * act_grad(p.ract, fg);
    dgates[at + 2u * F] = dc * i * act_grad(p.act, g);
    dgates[at + 3u * F] = dh * ac * act_grad(p.ract, o);
}

@compute @workgroup_size(128, 1, 1)
fn step(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let t = tile_of(lid, wid, nwg);
    var acc = array<vec4<f32>, 8>();
    if ((p.flags & HAS_NEXT) != 0u) {
        acc = tile_conv(lid, t);
    }
    let y = t.y0 + t.ty;
    if (!tile_live(wid, nwg) || y >= p.dr) {
        return;
    }
    for (var j = 0u; j < PX; j++) {
        let x = tile_x(t, j);
        for (var k = 0u; k < 4u; k++) {
            let ch = (t.v0 + t.v) * 4u + k;
            if (x < p.dc && ch < p.filters) {
                grad_update(t.n, y * p.dc + x, ch, acc[j][k]);
            }
        }
    }
}

// Writes the 8 pixels × 4 channels of an invocation to state as [frames, dr, dc, filters].
fn store_plain(t: Tile, acc: array<vec4<f32>, 8>) {
    let y = t.y0 + t.ty;
    if (y >= p.dr) {
        return;
    }
    var a = acc;
    for (var j = 0u; j < PX; j++) {
        let x = tile_x(t, j);
        for (var k = 0u; k < 4u; k++) {
            let ch = (t.v0 + t.v) * 4u + k;
            if (x < p.dc && ch < p.filters) {
                state[((t.n * p.dr + y) * p.dc + x) * p.filters + ch] = a[j][k];
            }
        }
    }
}

@compute @workgroup_size(128, 1, 1)
fn recur(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let t = tile_of(lid, wid, nwg);
    let acc = tile_conv(lid, t);
    if (tile_live(wid, nwg)) {
        store_plain(t, acc);
    }
}

@compute @workgroup_size(128, 1, 1)
fn dgrad(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let t = tile_of(lid, wid, nwg);
    let acc = tile_conv(lid, t);
    if (tile_live(wid, nwg)) {
        store_plain(t, acc);
    }
}
