// grid_common.wgsl — prelude of the Grid recurrence kernels (Algorithm::Grid).
// Module = activations.wgsl + this file + grid_regs.wgsl (generated) + the entry file
// (grid_forward.wgsl or grid_backward.wgsl); see those headers for the equations.
//
// What it provides:
//   Params        as rnn_common.wgsl; Grid also reads _pad1 = S (slices of hidden units),
//                 _pad2 = U (units per slice), _pad3 = test hook (fail at barrier
//                 (_pad3 & 0xffffff) - 1, in the directions whose bit is set in _pad3 >> 24,
//                 all when none is)
//   WG, VB, SB    pipeline-overridable sizes (host plan, src/kernels/grid.rs)
//   gvec, gsb     workgroup memory: the vector the weight chunks multiply (one batch tile),
//                 the partial sums
//   grid_sync     the grid barrier: storageBarrier + arrival by compare-exchange on an atomic
//                 counter + a BOUNDED spin. A workgroup that waits too long freezes the
//                 counter with the POISON bit (compare-exchange against the incomplete count
//                 it saw), so no workgroup ever passes that barrier, and every workgroup has
//                 finished the step before it: the steps done by ALL workgroups are
//                 count / G (+1 when poisoned). The fallback dispatch resumes there.
//   steps_done    that number, read by the fallback
// Bindings: `p` (group 0, binding 0, uniform); grid_sync uses `sync` (atomic<u32>[1]),
// declared by the entry file (forward binding 8, backward binding 9).
// Memory plan: 16·VB + 4·SB + 4 bytes of workgroup memory, written before read.
// Limits: WG ≤ max invocations; the spin is bounded by MAX_SPIN iterations per barrier (the
// host counts them against the loop budget). Never hangs: on adapters whose workgroups are
// not co-resident (llvmpipe) the first barrier times out and the fallback runs the rest.

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

override WG: u32 = 64u;
override VB: u32 = 16u;
override SB: u32 = 16u;
var<workgroup> gvec: array<vec4<f32>, VB>;
var<workgroup> gsb: array<f32, SB>;
var<workgroup> wg_ok: u32;

const FALLBACK: u32 = 64u;
const STEP_MODE: u32 = 128u;
const POISON: u32 = 0x80000000u;
const MASK: u32 = 0x7fffffffu;
const MAX_SPIN: u32 = 4096u;

fn time_of(s: u32) -> u32 {
    return select(s, p.t_len - 1u - s, p.dir == 1u);
}

fn slot_before(t: u32) -> u32 {
    return (t + p.dir) % p.slots;
}

fn slot_after(t: u32) -> u32 {
    return (t + 1u - p.dir) % p.slots;
}

fn chunks(len: u32) -> u32 {
    return (len + CHUNK - 1u) / CHUNK;
}

fn vget(vrow: u32, bl: u32, k: u32) -> f32 {
    return gvec[bl * vrow + k / 4u][k % 4u];
}

fn fallback_mode() -> bool {
    return (p.flags & FALLBACK) != 0u;
}

fn flat_wid(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.y * nwg.x + wid.x;
}

// Steps every workgroup of the grid dispatches finished (counted from step 0).
fn steps_done(groups: u32) -> u32 {
    let c = atomicLoad(&sync[0]);
    return (c & MASK) / groups + select(0u, 1u, (c & POISON) != 0u);
}

// Grid barrier number `b` (0-based, counted across dispatches) among `groups` workgroups.
// Returns whether every workgroup arrived; false means the grid failed (all return false at
// the same barrier). Call in uniform control flow from every invocation.
fn grid_sync(lid: u32, b: u32, groups: u32) -> bool {
    storageBarrier();
    workgroupBarrier();
    if (lid == 0u) {
        var ok = false;
        var spins = 0u;
        var c = atomicLoad(&sync[0]);
        var arrived = false;
        // Test hook: this workgroup "never arrives" at barrier (_pad3 & 0xffffff) - 1, in
        // the directions _pad3 >> 24 names (a bit per direction; 0: every direction).
        let hook_dirs = p._pad3 >> 24u;
        let hook_dir = hook_dirs == 0u || ((hook_dirs >> p.dir) & 1u) == 1u;
        if ((p._pad3 & 0xffffffu) == b + 1u && hook_dir) {
            atomicOr(&sync[0], POISON);
            c = POISON;
        }
        loop {
            if ((c & POISON) != 0u || spins > MAX_SPIN) {
                break;
            }
            let r = atomicCompareExchangeWeak(&sync[0], c, c + 1u);
            if (r.exchanged) {
                c = c + 1u;
                arrived = true;
                break;
            }
            c = r.old_value;
            spins++;
        }
        if (!arrived && (c & POISON) == 0u) {
            // Could not even arrive: the barrier is incomplete without us, so poisoning it
            // keeps every workgroup on the same side.
            atomicOr(&sync[0], POISON);
        }
        let goal = (b + 1u) * groups;
        loop {
            if (!arrived) {
                break;
            }
            // Complete first: a frozen (poisoned) count never completes a later barrier.
            if ((c & MASK) >= goal) {
                ok = true;
                break;
            }
            if ((c & POISON) != 0u) {
                break;
            }
            spins++;
            if (spins > MAX_SPIN) {
                let r = atomicCompareExchangeWeak(&sync[0], c, c | POISON);
                if (r.exchanged) {
                    break;
                }
                c = r.old_value;
                continue;
            }
            c = atomicLoad(&sync[0]);
        }
        wg_ok = select(0u, 1u, ok);
    }
    let ok = workgroupUniformLoad(&wg_ok) == 1u;
    storageBarrier();
    return ok;
}

// Whether a barrier before `first` (this dispatch's first barrier) failed: then this grid
// dispatch does nothing. A failure at `first` itself still needs this workgroup's part of
// the step before it (it may start after the others gave up), so it runs up to there.
fn grid_failed(lid: u32, first: u32, groups: u32) -> bool {
    if (lid == 0u) {
        let c = atomicLoad(&sync[0]);
        wg_ok = select(1u, 0u, (c & POISON) != 0u && (c & MASK) / groups < first);
    }
    return workgroupUniformLoad(&wg_ok) == 0u;
}
