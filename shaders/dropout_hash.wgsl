// dropout_hash.wgsl — the keep decision of every dropout mask drawn on the device, prepended to
// dropout.wgsl (Keras Dropout and the input `dropout` of recurrent layers) and to
// rec_dropout.wgsl (Keras `recurrent_dropout`), so both draw masks the same way.
//
//   drop_hash(m, seed) = mix32(mix32(m ^ seed_lo) ^ seed_hi)     (m: the mask element's index)
//   keep(m) = drop_hash(m, seed) ≥ threshold,  threshold = round(rate · 2^32)
//   so P(keep) = 1 - rate up to 2^-32; kept elements are scaled by 1 / (1 - rate).
// The host mirrors this bit for bit (kernels::dropout::host_keep), which lets tests and the CPU
// reference replay a mask the device drew.
//
// Bindings: none (functions only; the including file declares its own).
// Memory: registers only. Limits: none (no loops); the mix is statistically uniform for
// dropout, not cryptographic.

fn mix32(x0: u32) -> u32 {
    var x = x0;
    x = (x ^ (x >> 16u)) * 0x7feb352du;
    x = (x ^ (x >> 15u)) * 0x846ca68bu;
    return x ^ (x >> 16u);
}

fn drop_hash(m: u32, seed_lo: u32, seed_hi: u32) -> u32 {
    return mix32(mix32(m ^ seed_lo) ^ seed_hi);
}
