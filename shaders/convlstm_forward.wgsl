// convlstm_forward.wgsl — ConvLSTM2D recurrence (Keras semantics, channels_last), gates i,f,c,o.
//
// The input convolution of all T frames runs first (conv.wgsl, implicit GEMM, bias added once):
//   zx[b,t,y,x,:] = conv(x_t, kernel; strides, padding, dilation) + bias          (4F values)
// Per step t (go_backwards is a host-side time flip of x):
//   z = zx[b,t,y,x] + conv(h_{t-1}, recurrent_kernel; stride 1, "same")[y,x]
//   i,f,o = ract(z_i,z_f,z_o)   g = act(z_c)   c = f⊙c_prev + i⊙g   h = o⊙act(c)
// "same" with stride 1: rows y+a-pt for a < kh, pt = (kh-1)/2 (TF: extra padding bottom/right).
//
// Bindings (group 0):
//   0 p      uniform CellParams (dynamic offset)
//   1 zx     storage rw  f32[B,T,Ho,Wo,4F]  in: input-conv output; out (train): activated gates
//   2 rk     storage r   f32[kh,kw,F,4F]    recurrent kernel (Keras layout)
//   3 hseq   storage rw  f32[S,B,Ho,Wo,F]   h ring: slot t holds h before step t (S = T+1 when
//                                           training, 2 otherwise)
//   4 cseq   storage rw  f32[S,B,Ho,Wo,F]   c ring
//   5 out    storage rw  f32[B,T,Ho,Wo,F]   output sequence (processing order)
// Entry points:
//   step        one step, one invocation per (b, y, x, f) (64 per workgroup): the recurrent
//               convolution for that pixel (kh·kw·F taps × 4 gates, h read from the ring)
//               fused with the gates and the state update.
//   persistent  one workgroup of 256 per sequence b runs n_steps steps with the whole h frame
//               in workgroup memory (pool: h [Ho·Wo·F] | new h [Ho·Wo·F]); needs
//               2·Ho·Wo·F ≤ 4000; c stays in the ring (each invocation owns its elements).
// Memory: registers hold one output's 4 gate sums; workgroup pool (persistent only).
// Limits: persistent as above; the host chunks n_steps under the loop budget (DESIGN.md §5);
// step has kh·kw·F iterations per invocation. Barriers only in uniform control flow.

struct CellParams {
    t_len: u32,
    batch: u32,
    rows: u32,      // Ho
    cols: u32,      // Wo
    filters: u32,   // F
    kh: u32,
    kw: u32,
    s_begin: u32,
    n_steps: u32,
    slots: u32,
    act: u32,       // activation code (activations.wgsl)
    ract: u32,      // recurrent_activation code
    flags: u32,     // bit 0: training (save activations)
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: CellParams;
@group(0) @binding(1) var<storage, read_write> zx: array<f32>;
@group(0) @binding(2) var<storage, read> rk: array<f32>;
@group(0) @binding(3) var<storage, read_write> hseq: array<f32>;
@group(0) @binding(4) var<storage, read_write> cseq: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

const TRAIN: u32 = 1u;
const WG: u32 = 256u;
const POOL: u32 = 4000u;
var<workgroup> pool: array<f32, POOL>;

fn frame_len() -> u32 {
    return p.rows * p.cols * p.filters;
}

// 4 gate sums of the recurrent convolution at (y, x) for filter f; h read via `from_pool`
// (workgroup copy of sequence b's frame at pool offset 0) or from ring slot `slot`.
fn rec_conv(b: u32, y: u32, x: u32, f: u32, slot: u32, from_pool: bool) -> vec4<f32> {
    let F = p.filters;
    let G = 4u * F;
    let pt = (p.kh - 1u) / 2u;
    let pl = (p.kw - 1u) / 2u;
    let base = (slot * p.batch + b) * frame_len();
    var acc = vec4<f32>(0.0);
    for (var a = 0u; a < p.kh; a++) {
        let iy = i32(y + a) - i32(pt);
        if (iy < 0 || iy >= i32(p.rows)) {
            continue;
        }
        for (var c = 0u; c < p.kw; c++) {
            let ix = i32(x + c) - i32(pl);
            if (ix < 0 || ix >= i32(p.cols)) {
                continue;
            }
            let h_at = (u32(iy) * p.cols + u32(ix)) * F;
            let w_at = (a * p.kw + c) * F * G + f;
            for (var ch = 0u; ch < F; ch++) {
                var hv = 0.0;
                if (from_pool) {
                    hv = pool[h_at + ch];
                } else {
                    hv = hseq[base + h_at + ch];
                }
                let w = w_at + ch * G;
                acc += hv * vec4<f32>(rk[w], rk[w + F], rk[w + 2u * F], rk[w + 3u * F]);
            }
        }
    }
    return acc;
}

// Gates and state update for one output; returns (c, h).
fn cell(b: u32, t: u32, pix: u32, f: u32, rec: vec4<f32>, c_prev: f32) -> vec2<f32> {
    let F = p.filters;
    let at = ((b * p.t_len + t) * p.rows * p.cols + pix) * 4u * F + f;
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
    let c = fg * c_prev + i * g;
    return vec2<f32>(c, o * act(p.act, c));
}

@compute @workgroup_size(64, 1, 1)
fn step(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let e = (wid.y * nwg.x + wid.x) * 64u + lid;
    let fl = frame_len();
    if (e >= p.batch * fl) {
        return;
    }
    let b = e / fl;
    let r = e % fl;
    let f = r % p.filters;
    let pix = r / p.filters;
    let t = p.s_begin;
    let rs = t % p.slots;
    let ws = (t + 1u) % p.slots;
    let rec = rec_conv(b, pix / p.cols, pix % p.cols, f, rs, false);
    let ch = cell(b, t, pix, f, rec, cseq[rs * p.batch * fl + e]);
    cseq[ws * p.batch * fl + e] = ch.x;
    hseq[ws * p.batch * fl + e] = ch.y;
    out[(b * p.t_len + t) * fl + r] = ch.y;
}

@compute @workgroup_size(256, 1, 1)
fn persistent(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let b = wid.y * nwg.x + wid.x;
    let fl = frame_len();
    let live = b < p.batch;
    let rs0 = p.s_begin % p.slots;
    for (var e = lid; e < fl; e += WG) {
        var v = 0.0;
        if (live) {
            v = hseq[(rs0 * p.batch + b) * fl + e];
        }
        pool[e] = v;
    }
    workgroupBarrier();
    for (var i = 0u; i < p.n_steps; i++) {
        let t = p.s_begin + i;
        let rs = t % p.slots;
        let ws = (t + 1u) % p.slots;
        for (var e = lid; e < fl; e += WG) {
            if (live) {
                let f = e % p.filters;
                let pix = e / p.filters;
                let rec = rec_conv(b, pix / p.cols, pix % p.cols, f, 0u, true);
                let ch = cell(b, t, pix, f, rec, cseq[(rs * p.batch + b) * fl + e]);
                cseq[(ws * p.batch + b) * fl + e] = ch.x;
                pool[fl + e] = ch.y;
            }
        }
        workgroupBarrier();
        for (var e = lid; e < fl; e += WG) {
            if (live) {
                let h = pool[fl + e];
                pool[e] = h;
                hseq[(ws * p.batch + b) * fl + e] = h;
                out[(b * p.t_len + t) * fl + e] = h;
            }
        }
        workgroupBarrier();
    }
}
