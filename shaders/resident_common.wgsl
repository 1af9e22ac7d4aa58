// resident_common.wgsl — prelude of the Resident recurrence kernels (Algorithm::Resident).
// Module = activations.wgsl + this file + resident_regs.wgsl (generated) + the entry file
// (resident_forward.wgsl or resident_backward.wgsl); see those headers for the equations.
//
// What it provides:
//   Params         the same parameter block as rnn_common.wgsl (kernels::rec::Params; a unit
//                  test checks the two declarations are identical)
//   WG, VB, SB     pipeline-overridable sizes, set by the host per shape (src/kernels/resident.rs):
//                  WG invocations per workgroup (≥ the weight slots), VB vec4 of the vector
//                  buffer, SB f32 of the scratch buffer
//   vbuf, sbuf     the workgroup memory: vbuf holds the vectors the register-resident weight
//                  chunks multiply (h, or the gate gradients), sbuf partial sums and state
//   time_of, slot_before, slot_after   as in rnn_common.wgsl
// Bindings: only `p` (group 0, binding 0, uniform, dynamic offset).
// Memory plan: 16·VB + 4·SB + 4·VS bytes of workgroup memory, every byte written by the
// kernel before it is read (pipelines skip the zero-fill).
// Limits: WG ≤ max invocations, 16·VB + 4·SB ≤ max workgroup storage (checked by the host).

struct Params {
    t_len: u32,     // T
    batch: u32,     // B
    hidden: u32,    // H
    out_size: u32,  // P: projection size, or H
    dir: u32,       // 0 forward, 1 reverse
    s_begin: u32,   // first processing step of this dispatch (backward: the highest)
    n_steps: u32,   // steps in this dispatch
    slots: u32,     // S: state-ring length
    stride: u32,    // row stride of the output (forward) or of dy (backward)
    col: u32,       // first column of this direction in that row
    b_tile: u32,    // persistent kernels: batch rows per workgroup
    flags: u32,     // cell-specific bits
    wt_off: u32,    // offset in w_rec of W_hhᵀ (P × G·H), the forward kernels' copy whose
                    // loads are contiguous across neighbouring units (coalesced / vectorised)
    _pad1: u32,     // Grid (grid_common.wgsl): slices S, units per slice U, test hook
    _pad2: u32,
    _pad3: u32,
    acts: u32,      // activation codes (activations.wgsl): bits 0-7 the candidate and output
                    // activation (tanh), bits 8-15 the gates' (sigmoid)
    rmask: u32,     // recurrent dropout (training; Persistent and Stepwise only): offset in
                    // `lens` (u32) of this layer-direction's masks f32[G,B,P]; 0 = none
    _pad5: u32,
    _pad6: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

override WG: u32 = 256u;
override VB: u32 = 16u;
override SB: u32 = 16u;
// STAGED = 1 (every backend but Vulkan): vset writes the scalar mirror vstage (VS = 4·VB
// floats) instead of one component of a vbuf vec4, and vsync copies the mirror into vbuf as
// whole vec4s before each mat-vec. WGSL lets a store to one component access the whole
// vector, and DXC and Metal may compile it as a read-modify-write that loses a neighbour's
// component; naga's SPIR-V stores the scalar, so Vulkan keeps STAGED = 0 (no extra barrier).
override STAGED: u32 = 0u;
override VS: u32 = 1u;
var<workgroup> vbuf: array<vec4<f32>, VB>;
var<workgroup> sbuf: array<f32, SB>;
var<workgroup> vstage: array<f32, VS>;

fn time_of(s: u32) -> u32 {
    return select(s, p.t_len - 1u - s, p.dir == 1u);
}

fn slot_before(t: u32) -> u32 {
    return (t + p.dir) % p.slots;
}

fn slot_after(t: u32) -> u32 {
    return (t + 1u - p.dir) % p.slots;
}

// Chunks of CHUNK floats covering a row of `len` floats.
fn chunks(len: u32) -> u32 {
    return (len + CHUNK - 1u) / CHUNK;
}

// Writes component k of the vector of batch row bl (rows of `vrow` vec4) at vec4 offset `base`
// (STAGED: into the mirror; the mat-vec sees it after the next vsync).
fn vset(base: u32, vrow: u32, bl: u32, k: u32, x: f32) {
    let i = base + bl * vrow + k / 4u;
    if (STAGED != 0u) {
        vstage[4u * i + k % 4u] = x;
    } else {
        vbuf[i][k % 4u] = x;
    }
}

// Writes the whole vec4 i of vbuf (and of the mirror when STAGED).
fn vput(i: u32, v: vec4<f32>) {
    vbuf[i] = v;
    if (STAGED != 0u) {
        vstage[4u * i] = v.x;
        vstage[4u * i + 1u] = v.y;
        vstage[4u * i + 2u] = v.z;
        vstage[4u * i + 3u] = v.w;
    }
}

// STAGED: vbuf ← the mirror, whole vec4s, then a barrier. Called after the barrier that
// ends a phase and before each mat-vec; vget keeps reading the values before the phase's
// vsets, as without staging (every vget in these kernels reads an element no vset of the
// same phase has written). Uniform control flow (STAGED is a pipeline constant).
fn vsync(lid: u32) {
    if (STAGED != 0u) {
        for (var i = lid; i < VB; i += WG) {
            vbuf[i] = vec4<f32>(vstage[4u * i], vstage[4u * i + 1u], vstage[4u * i + 2u],
                                vstage[4u * i + 3u]);
        }
        workgroupBarrier();
    }
}

fn vget(base: u32, vrow: u32, bl: u32, k: u32) -> f32 {
    return vbuf[base + bl * vrow + k / 4u][k % 4u];
}

// Zeroes vbuf[from..to) (vec4 units), spread over the workgroup.
fn vzero(lid: u32, lo: u32, hi: u32) {
    for (var i = lo + lid; i < hi; i += WG) {
        vput(i, vec4<f32>(0.0));
    }
}
