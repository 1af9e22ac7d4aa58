// convlstm_backward.wgsl — ConvLSTM2D backward through time (BPTT), reversed loop, gates i,f,c,o.
//
// R_t, the gradient reaching h_t from later steps, is the recurrent convolution transposed:
//   R_{T-1} = dy_h_n ;  R_{t-1}[y,x,ch] = Σ_{a,c,q} dZ_t[y-a+pt, x-c+pl, q] · rk[a,c,ch,q]
// At step t with dh = R_t + dy_out[b,t] and ac = act(c_t):
//   dc = dc_in + dh⊙o⊙act'(c_t);  dc_out = dc⊙f
//   dZ = [dc⊙g⊙ract'(i) | dc⊙c_{t-1}⊙ract'(f) | dc⊙i⊙act'(g) | dh⊙ac⊙ract'(o)]
// (derivatives from the saved activations, activations.wgsl). Kernel, recurrent-kernel, bias
// and input gradients are computed after the loop from dgates (conv.wgsl, gemm.wgsl).
//
// Bindings (group 0):
//   0 p       uniform CellParams (dynamic offset; same block as convlstm_forward.wgsl)
//   1 gates   storage r   f32[B,T,Ho,Wo,4F]  activated gates saved by the training forward
//   2 rk      storage r   f32[kh,kw,F,4F]
//   3 cseq    storage r   f32[T+1,B,Ho,Wo,F] c ring of the training forward (slot t = c_{t-1})
//   4 dy      storage r   f32[B,T,Ho,Wo,F]   upstream output gradient (processing order)
//   5 dgates  storage rw  f32[B,T,Ho,Wo,4F]  output: pre-activation gate gradients
//   6 state   storage rw  f32[2·B·Ho·Wo·F]   R (in dy_h_n, out dh0) then dc (in dy_c_n, out dc0)
// Entry points:
//   fused   one step, one invocation per (b, y, x, f): R from dZ of step t+1 (kh·kw·4F taps),
//           then the gate gradients; no cross-invocation wait.
//   recur   the final pass: dh0 = R_{-1} from dZ of step 0.
// Memory: registers only. Limits: kh·kw·4F loop iterations per invocation.
// Caveats: f32 accumulation; the reversed loop is one dispatch per step (Stepwise).

struct CellParams {
    t_len: u32,
    batch: u32,
    rows: u32,
    cols: u32,
    filters: u32,
    kh: u32,
    kw: u32,
    s_begin: u32,
    n_steps: u32,
    slots: u32,
    act: u32,
    ract: u32,
    flags: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: CellParams;
@group(0) @binding(1) var<storage, read> gates: array<f32>;
@group(0) @binding(2) var<storage, read> rk: array<f32>;
@group(0) @binding(3) var<storage, read> cseq: array<f32>;
@group(0) @binding(4) var<storage, read> dy: array<f32>;
@group(0) @binding(5) var<storage, read_write> dgates: array<f32>;
@group(0) @binding(6) var<storage, read_write> state: array<f32>;

fn frame_len() -> u32 {
    return p.rows * p.cols * p.filters;
}

// R at (b, y, x, ch) from the gate gradients of step t1 (the transposed recurrent conv).
fn recur_at(b: u32, t1: u32, y: u32, x: u32, ch: u32) -> f32 {
    let F = p.filters;
    let G = 4u * F;
    let pt = (p.kh - 1u) / 2u;
    let pl = (p.kw - 1u) / 2u;
    let frame = (b * p.t_len + t1) * p.rows * p.cols;
    var acc = 0.0;
    for (var a = 0u; a < p.kh; a++) {
        let oy = i32(y + pt) - i32(a);
        if (oy < 0 || oy >= i32(p.rows)) {
            continue;
        }
        for (var c = 0u; c < p.kw; c++) {
            let ox = i32(x + pl) - i32(c);
            if (ox < 0 || ox >= i32(p.cols)) {
                continue;
            }
            let g_at = (frame + u32(oy) * p.cols + u32(ox)) * G;
            let w_at = ((a * p.kw + c) * F + ch) * G;
            for (var q = 0u; q < G; q++) {
                acc += dgates[g_at + q] * rk[w_at + q];
            }
        }
    }
    return acc;
}

@compute @workgroup_size(64, 1, 1)
fn fused(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let e = (wid.y * nwg.x + wid.x) * 64u + lid;
    let fl = frame_len();
    let n = p.batch * fl;
    if (e >= n) {
        return;
    }
    let b = e / fl;
    let r = e % fl;
    let f = r % p.filters;
    let pix = r / p.filters;
    let t = p.s_begin;
    var rr = state[e];
    if (t + 1u < p.t_len) {
        rr = recur_at(b, t + 1u, pix / p.cols, pix % p.cols, f);
    }
    state[e] = rr;
    let F = p.filters;
    let at = ((b * p.t_len + t) * p.rows * p.cols + pix) * 4u * F + f;
    let i = gates[at];
    let fg = gates[at + F];
    let g = gates[at + 2u * F];
    let o = gates[at + 3u * F];
    let c = cseq[((t + 1u) % p.slots) * n + e];
    let c_prev = cseq[(t % p.slots) * n + e];
    let ac = act(p.act, c);
    let dh = rr + dy[(b * p.t_len + t) * fl + r];
    let dc = state[n + e] + dh * o * act_grad(p.act, ac);
    state[n + e] = dc * fg;
    dgates[at] = dc * g * act_grad(p.ract, i);
    dgates[at + F] = dc * c_prev * act_grad(p.ract, fg);
    dgates[at + 2u * F] = dc * i * act_grad(p.act, g);
    dgates[at + 3u * F] = dh * ac * act_grad(p.ract, o);
}

@compute @workgroup_size(64, 1, 1)
fn recur(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let e = (wid.y * nwg.x + wid.x) * 64u + lid;
    let fl = frame_len();
    if (e >= p.batch * fl) {
        return;
    }
    let r = e % fl;
    let pix = r / p.filters;
    state[e] = recur_at(e / fl, 0u, pix / p.cols, pix % p.cols, r % p.filters);
}
