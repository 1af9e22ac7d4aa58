//! A Keras recurrent layer (LSTM, GRU both `reset_after` modes, SimpleRNN) on the CPU, with
//! Keras' semantics and weight layout: `kernel (I, G·U)`, `recurrent_kernel (U, G·U)`, gates
//! LSTM i,f,c,o / GRU z,r,h, applied as `x·kernel`.
//!
//! Masking follows `keras.src.backend.*.rnn`: every step is computed, then where the mask is
//! false the states keep their previous value and the output is the previous output (0 before
//! the first step), or 0 with `zero_output_for_mask`. With `go_backwards` the input and mask
//! are walked from the last step and the sequence output is returned in that (reversed)
//! order. The cells here are Keras', not the crate's PyTorch-layout `cpu::` cells, because
//! Keras masks may sit anywhere in a sequence (pre-padding), which length-based packing cannot
//! express.
//!
//! Recurrent dropout (training) follows keras/src/layers/rnn/{lstm,gru,simple_rnn}.py: a layer
//! with `recurrent_dropout > 0` runs its cell's `implementation=1` path, where each gate block
//! has its own mask (LSTM i,f,c,o; GRU z,r,h; SimpleRNN one), each `(B, U)`, drawn once per
//! call (`DropoutRNNCell`) and applied to h_{t-1} where it feeds that block's slice of
//! `recurrent_kernel`: `h_tm1_g = h_tm1 * rec_dp_mask[g]`. GRU's update
//! `h = z * h_tm1 + (1 - z) * hh` uses the unmasked h_tm1; reset_after=False resets the masked
//! one (`r * h_tm1_h`). [`forward_dropout`] takes the masks (a replay of what the device drew).

use ndarray::{Array2, Array3, ArrayView2, ArrayView3, ArrayViewD, Axis, Zip, s};

use crate::cpu::Real;
use crate::models::keras::spec::{CellKind, RnnSpec};

/// One direction's weights, Keras layout.
pub(crate) struct RnnWeights<'a, T> {
    pub(crate) kernel: ArrayView2<'a, T>,
    pub(crate) recurrent: ArrayView2<'a, T>,
    /// `(G·U,)`, or `(2, G·U)` for GRU `reset_after` (input row, recurrent row).
    pub(crate) bias: Option<ArrayViewD<'a, T>>,
}

impl<T: Real> RnnWeights<'_, T> {
    /// `(input bias, recurrent bias)`, each `(G·U,)` (zeros where absent).
    fn biases(&self, g: usize) -> (ndarray::Array1<T>, ndarray::Array1<T>) {
        let zeros = ndarray::Array1::zeros(g);
        match &self.bias {
            None => (zeros.clone(), zeros),
            Some(b) if b.ndim() == 2 => (
                b.index_axis(Axis(0), 0)
                    .to_owned()
                    .into_shape_with_order(g)
                    .unwrap_or(zeros.clone()),
                b.index_axis(Axis(0), 1)
                    .to_owned()
                    .into_shape_with_order(g)
                    .unwrap_or(zeros),
            ),
            Some(b) => (
                b.to_owned()
                    .into_shape_with_order(g)
                    .unwrap_or(zeros.clone()),
                zeros,
            ),
        }
    }
}

/// What backward needs from one step (all `(B, ·)`).
struct StepCache<T> {
    h_prev: Array2<T>,
    /// LSTM: activated gates `[i|f|g|o]`; GRU: `[z|r|hh]`; SimpleRNN: `h_new`.
    gates: Array2<T>,
    /// LSTM: `c_prev`; GRU reset_after: the recurrent h block before the reset; GRU
    /// reset_before: `r ⊙ h_prev`.
    aux: Array2<T>,
    /// LSTM: `act(c_new)`.
    act_c: Array2<T>,
}

/// Saved activations of one forward, for [`backward`].
pub(crate) struct RnnTape<T> {
    x: Array3<T>,
    mask: Option<Array2<bool>>,
    steps: Vec<StepCache<T>>,
    /// Recurrent-dropout masks, one `(B, U)` per gate block in Keras' order.
    rec_masks: Option<Vec<Array2<T>>>,
}

/// The outputs of one forward.
pub(crate) struct RnnRun<T> {
    /// `(B, T, U)` in processing order (reversed for `go_backwards`), as Keras returns it.
    pub(crate) seq: Array3<T>,
    /// The last processed step's output `(B, U)`.
    pub(crate) last: Array2<T>,
    /// Final states (`[h, c]` for the LSTM, `[h]` otherwise).
    pub(crate) states: Vec<Array2<T>>,
    pub(crate) tape: RnnTape<T>,
}

fn time(spec: &RnnSpec, step: usize, steps: usize) -> usize {
    if spec.go_backwards {
        steps - 1 - step
    } else {
        step
    }
}

/// Runs the layer over `x (B, T, I)` with an optional mask `(B, T)`, from `init` states
/// (`[h, c]` / `[h]`, each `(B, U)`; zeros when `None`). The output carried through masked
/// steps starts at 0 whatever the states, as in Keras.
#[allow(dead_code)] // the mask-free entry: tests, and callers without recurrent dropout
pub(crate) fn forward<T: Real>(
    spec: &RnnSpec,
    w: &RnnWeights<T>,
    x: ArrayView3<T>,
    mask: Option<&Array2<bool>>,
    init: Option<&[Array2<T>]>,
) -> RnnRun<T> {
    forward_dropout(spec, w, x, mask, init, None)
}

/// Σ_g (h ⊙ m_g) · R[:, block g] over gate blocks `blocks` of width `u`, side by side: the
/// recurrent pre-activations of those blocks under recurrent dropout.
fn masked_rec<T: Real>(
    h: &Array2<T>,
    r: ArrayView2<T>,
    masks: &[Array2<T>],
    u: usize,
    blocks: std::ops::Range<usize>,
) -> Array2<T> {
    let mut out = Array2::<T>::zeros((h.nrows(), blocks.len() * u));
    for (i, g) in blocks.enumerate() {
        let hm = h * &masks[g];
        out.slice_mut(s![.., i * u..(i + 1) * u])
            .assign(&hm.dot(&r.slice(s![.., g * u..(g + 1) * u])));
    }
    out
}

/// [`forward`] with recurrent dropout: `rec_masks` holds one `(B, U)` mask per gate block in
/// Keras' order (LSTM i,f,c,o; GRU z,r,h; SimpleRNN one), applied at every step (module doc).
pub(crate) fn forward_dropout<T: Real>(
    spec: &RnnSpec,
    w: &RnnWeights<T>,
    x: ArrayView3<T>,
    mask: Option<&Array2<bool>>,
    init: Option<&[Array2<T>]>,
    rec_masks: Option<&[Array2<T>]>,
) -> RnnRun<T> {
    let (b, steps, _) = x.dim();
    let u = spec.units;
    let g = spec.cell.gates() * u;
    let (b_in, b_rec) = w.biases(g);
    let (act, ract) = (spec.activation, spec.recurrent_activation);
    let state = |i: usize| {
        init.and_then(|s| s.get(i))
            .filter(|a| a.dim() == (b, u))
            .cloned()
            .unwrap_or_else(|| Array2::<T>::zeros((b, u)))
    };
    let mut h = state(0);
    let mut c = state(1);
    let mut out_prev = Array2::<T>::zeros((b, u));
    let mut seq = Array3::<T>::zeros((b, steps, u));
    let mut caches = Vec::with_capacity(steps);
    let one = T::one();
    for step in 0..steps {
        let t = time(spec, step, steps);
        let xt = x.slice(s![.., t, ..]);
        let xk = xt.dot(&w.kernel) + &b_in;
        let (h_new, c_new, cache) = match spec.cell {
            CellKind::Lstm { .. } => {
                let rec = match rec_masks {
                    Some(m) => masked_rec(&h, w.recurrent, m, u, 0..4),
                    None => h.dot(&w.recurrent),
                };
                let mut z = xk + rec + &b_rec;
                for (j, mut col) in z.axis_iter_mut(Axis(1)).enumerate() {
                    let a = if (2 * u..3 * u).contains(&j) {
                        act
                    } else {
                        ract
                    };
                    col.mapv_inplace(|v| a.apply(v));
                }
                let (i, f) = (z.slice(s![.., ..u]), z.slice(s![.., u..2 * u]));
                let (gg, o) = (z.slice(s![.., 2 * u..3 * u]), z.slice(s![.., 3 * u..]));
                let c_new = &f * &c + &i * &gg;
                let act_c = c_new.mapv(|v| act.apply(v));
                let h_new = &o * &act_c;
                let cache = StepCache {
                    h_prev: h.clone(),
                    aux: c.clone(),
                    act_c,
                    gates: z,
                };
                (h_new, c_new, cache)
            }
            CellKind::Gru { reset_after } => {
                let rk = match (reset_after, rec_masks) {
                    (true, None) => h.dot(&w.recurrent) + &b_rec,
                    (true, Some(m)) => masked_rec(&h, w.recurrent, m, u, 0..3) + &b_rec,
                    (false, _) => {
                        let mut rk = Array2::zeros((b, g));
                        let zr = match rec_masks {
                            Some(m) => masked_rec(&h, w.recurrent, m, u, 0..2),
                            None => h.dot(&w.recurrent.slice(s![.., ..2 * u])),
                        };
                        rk.slice_mut(s![.., ..2 * u]).assign(&zr);
                        rk
                    }
                };
                let z = (&xk.slice(s![.., ..u]) + &rk.slice(s![.., ..u])).mapv(|v| ract.apply(v));
                let r = (&xk.slice(s![.., u..2 * u]) + &rk.slice(s![.., u..2 * u]))
                    .mapv(|v| ract.apply(v));
                let (rec_h, aux) = if reset_after {
                    let rh = rk.slice(s![.., 2 * u..]).to_owned();
                    (&r * &rh, rh)
                } else {
                    // Keras: `r * h_tm1_h`, h_tm1_h = h_tm1 * rec_dp_mask[2].
                    let rh_in = match rec_masks {
                        Some(m) => &r * &(&h * &m[2]),
                        None => &r * &h,
                    };
                    (rh_in.dot(&w.recurrent.slice(s![.., 2 * u..])), rh_in)
                };
                let hh = (&xk.slice(s![.., 2 * u..]) + &rec_h).mapv(|v| act.apply(v));
                let h_new = &z * &h + &(z.mapv(|v| one - v) * &hh);
                let mut gates = Array2::zeros((b, g));
                gates.slice_mut(s![.., ..u]).assign(&z);
                gates.slice_mut(s![.., u..2 * u]).assign(&r);
                gates.slice_mut(s![.., 2 * u..]).assign(&hh);
                let cache = StepCache {
                    h_prev: h.clone(),
                    gates,
                    aux,
                    act_c: Array2::zeros((0, 0)),
                };
                (h_new, c.clone(), cache)
            }
            CellKind::SimpleRnn => {
                let rec = match rec_masks {
                    Some(m) => masked_rec(&h, w.recurrent, m, u, 0..1),
                    None => h.dot(&w.recurrent),
                };
                let h_new = (xk + rec).mapv(|v| act.apply(v));
                let cache = StepCache {
                    h_prev: h.clone(),
                    gates: h_new.clone(),
                    aux: Array2::zeros((0, 0)),
                    act_c: Array2::zeros((0, 0)),
                };
                (h_new, c.clone(), cache)
            }
        };
        caches.push(cache);
        let mut out = h_new.clone();
        for bi in 0..b {
            let keep = mask.is_none_or(|m| m[[bi, t]]);
            if keep {
                h.row_mut(bi).assign(&h_new.row(bi));
                c.row_mut(bi).assign(&c_new.row(bi));
            } else if spec.zero_output_for_mask {
                out.row_mut(bi).fill(T::zero());
            } else {
                out.row_mut(bi).assign(&out_prev.row(bi));
            }
        }
        seq.slice_mut(s![.., step, ..]).assign(&out);
        out_prev = out;
    }
    let states = if matches!(spec.cell, CellKind::Lstm { .. }) {
        vec![h, c]
    } else {
        vec![h]
    };
    RnnRun {
        seq,
        last: out_prev,
        states,
        tape: RnnTape {
            x: x.to_owned(),
            mask: mask.cloned(),
            steps: caches,
            rec_masks: rec_masks.map(<[_]>::to_vec),
        },
    }
}

/// Gradients of one direction: `dx (B, T, I)` and `[kernel, recurrent_kernel, bias]` (bias
/// shaped like the layer's, absent without `use_bias`).
pub(crate) struct RnnGrads<T> {
    pub(crate) dx: Array3<T>,
    pub(crate) kernel: Array2<T>,
    pub(crate) recurrent: Array2<T>,
    pub(crate) bias: Option<ndarray::ArrayD<T>>,
}

/// Backward of [`forward`] given the gradient of the sequence output (processing order) and/or
/// of the last output.
pub(crate) fn backward<T: Real>(
    spec: &RnnSpec,
    w: &RnnWeights<T>,
    tape: &RnnTape<T>,
    d_seq: Option<ArrayView3<T>>,
    d_last: Option<ArrayView2<T>>,
) -> RnnGrads<T> {
    let (b, steps, i_dim) = tape.x.dim();
    let u = spec.units;
    let g = spec.cell.gates() * u;
    let (act, ract) = (spec.activation, spec.recurrent_activation);
    let (zero, one) = (T::zero(), T::one());
    let mut dx = Array3::<T>::zeros((b, steps, i_dim));
    let mut dk = Array2::<T>::zeros((i_dim, g));
    let mut dr = Array2::<T>::zeros((u, g));
    let mut db_in = ndarray::Array1::<T>::zeros(g);
    let mut db_rec = ndarray::Array1::<T>::zeros(g);
    // dL/d(state h), dL/d(state c), and dL/d(previous output) carried through masked steps.
    let mut gh = Array2::<T>::zeros((b, u));
    let mut gc = Array2::<T>::zeros((b, u));
    let mut gout = Array2::<T>::zeros((b, u));
    for step in (0..steps).rev() {
        let t = time(spec, step, steps);
        let cache = &tape.steps[step];
        let mut go = gout.clone();
        if let Some(d) = &d_seq {
            go.scaled_add(T::one(), &d.slice(s![.., step, ..]));
        }
        if step == steps - 1
            && let Some(d) = &d_last
        {
            go.scaled_add(T::one(), d);
        }
        // Gradients reaching the new h and c of this step, zero where the step is masked.
        let mut dh = &go + &gh;
        let mut dc = gc.clone();
        let mut masked = vec![false; b];
        for (bi, m) in masked.iter_mut().enumerate() {
            if tape.mask.as_ref().is_some_and(|mk| !mk[[bi, t]]) {
                *m = true;
                dh.row_mut(bi).fill(zero);
                dc.row_mut(bi).fill(zero);
                if !spec.zero_output_for_mask {
                    gout.row_mut(bi).assign(&go.row(bi));
                } else {
                    gout.row_mut(bi).fill(zero);
                }
            } else {
                gout.row_mut(bi).fill(zero);
            }
        }
        // dpx: d(x·K + b_in); dpr: d of the recurrent pre-activations (operand per block).
        let (dpx, dpr, mut dh_prev, dc_prev) = match spec.cell {
            CellKind::Lstm { .. } => {
                let z = &cache.gates;
                let (i, f) = (z.slice(s![.., ..u]), z.slice(s![.., u..2 * u]));
                let (gg, o) = (z.slice(s![.., 2 * u..3 * u]), z.slice(s![.., 3 * u..]));
                let d_o = &dh * &cache.act_c;
                let mut dct = &dh * &o;
                Zip::from(&mut dct)
                    .and(&cache.act_c)
                    .for_each(|d, &a| *d = *d * act.derivative_from_output(a));
                dct.scaled_add(T::one(), &dc);
                let mut dz = Array2::<T>::zeros((b, g));
                let parts = [
                    (&dct * &gg, i, ract),
                    (&dct * &cache.aux, f, ract),
                    (&dct * &i, gg, act),
                    (d_o, o, ract),
                ];
                for (k, (d, y, a)) in parts.into_iter().enumerate() {
                    let mut blk = dz.slice_mut(s![.., k * u..(k + 1) * u]);
                    Zip::from(&mut blk)
                        .and(&d)
                        .and(&y)
                        .for_each(|o, &d, &y| *o = d * a.derivative_from_output(y));
                }
                let dc_prev = &dct * &f;
                (dz.clone(), dz, Array2::zeros((b, u)), dc_prev)
            }
            CellKind::Gru { reset_after } => {
                let gt = &cache.gates;
                let (z, r, hh) = (
                    gt.slice(s![.., ..u]),
                    gt.slice(s![.., u..2 * u]),
                    gt.slice(s![.., 2 * u..]),
                );
                let mut dpz = &dh * &(&cache.h_prev - &hh);
                Zip::from(&mut dpz)
                    .and(&z)
                    .for_each(|d, &y| *d = *d * ract.derivative_from_output(y));
                let mut dph = &dh * &z.mapv(|v| one - v);
                Zip::from(&mut dph)
                    .and(&hh)
                    .for_each(|d, &y| *d = *d * act.derivative_from_output(y));
                let mut dpx = Array2::<T>::zeros((b, g));
                let mut dpr = Array2::<T>::zeros((b, g));
                let mut direct = &dh * &z;
                let mut dpr_r = if reset_after {
                    // rec_h = r ⊙ (h·R_h + b_rh): dr = dph ⊙ (h·R_h + b_rh).
                    dpr.slice_mut(s![.., 2 * u..]).assign(&(&dph * &r));
                    &dph * &cache.aux
                } else {
                    // rec_h = (r ⊙ m_h ⊙ h)·R_h (m_h = 1 without recurrent dropout).
                    let d_rh_in = dph.dot(&w.recurrent.slice(s![.., 2 * u..]).t());
                    let h_in = match &tape.rec_masks {
                        Some(m) => {
                            direct.scaled_add(T::one(), &(&(&d_rh_in * &r) * &m[2]));
                            &cache.h_prev * &m[2]
                        }
                        None => {
                            direct.scaled_add(T::one(), &(&d_rh_in * &r));
                            cache.h_prev.clone()
                        }
                    };
                    dpr.slice_mut(s![.., 2 * u..]).assign(&dph);
                    &d_rh_in * &h_in
                };
                Zip::from(&mut dpr_r)
                    .and(&r)
                    .for_each(|d, &y| *d = *d * ract.derivative_from_output(y));
                for (k, blk) in [&dpz, &dpr_r, &dph].into_iter().enumerate() {
                    dpx.slice_mut(s![.., k * u..(k + 1) * u]).assign(blk);
                }
                dpr.slice_mut(s![.., ..u]).assign(&dpz);
                dpr.slice_mut(s![.., u..2 * u]).assign(&dpr_r);
                (dpx, dpr, direct, dc.clone())
            }
            CellKind::SimpleRnn => {
                let mut dp = dh.clone();
                Zip::from(&mut dp)
                    .and(&cache.gates)
                    .for_each(|d, &y| *d = *d * act.derivative_from_output(y));
                (dp.clone(), dp, Array2::zeros((b, u)), dc.clone())
            }
        };
        let xt = tape.x.slice(s![.., t, ..]);
        dk.scaled_add(T::one(), &xt.t().dot(&dpx));
        db_in.scaled_add(T::one(), &dpx.sum_axis(Axis(0)));
        db_rec.scaled_add(T::one(), &dpr.sum_axis(Axis(0)));
        dx.slice_mut(s![.., t, ..]).assign(&dpx.dot(&w.kernel.t()));
        match (spec.cell, &tape.rec_masks) {
            (CellKind::Gru { reset_after: false }, None) => {
                let (a, bb) = (dpr.slice(s![.., ..2 * u]), dpr.slice(s![.., 2 * u..]));
                dr.slice_mut(s![.., ..2 * u])
                    .scaled_add(one, &cache.h_prev.t().dot(&a));
                dr.slice_mut(s![.., 2 * u..])
                    .scaled_add(one, &cache.aux.t().dot(&bb));
                dh_prev.scaled_add(T::one(), &a.dot(&w.recurrent.slice(s![.., ..2 * u]).t()));
            }
            (_, None) => {
                dr.scaled_add(T::one(), &cache.h_prev.t().dot(&dpr));
                dh_prev.scaled_add(T::one(), &dpr.dot(&w.recurrent.t()));
            }
            (cell, Some(m)) => {
                // Block g read (h ⊙ m_g): dR_g += (h ⊙ m_g)ᵀ·dP_g, dh += (dP_g·R_gᵀ) ⊙ m_g;
                // GRU reset_after=False's candidate block read the (masked) aux rows.
                let masked_blocks = match cell {
                    CellKind::Gru { reset_after: false } => {
                        let bb = dpr.slice(s![.., 2 * u..]);
                        dr.slice_mut(s![.., 2 * u..])
                            .scaled_add(one, &cache.aux.t().dot(&bb));
                        2
                    }
                    _ => g / u,
                };
                for (k, mk) in m.iter().enumerate().take(masked_blocks) {
                    let cols = s![.., k * u..(k + 1) * u];
                    let dp = dpr.slice(cols);
                    let hm = &cache.h_prev * mk;
                    dr.slice_mut(cols).scaled_add(one, &hm.t().dot(&dp));
                    let back = dp.dot(&w.recurrent.slice(cols).t());
                    dh_prev.scaled_add(one, &(&back * mk));
                }
            }
        }
        for (bi, &m) in masked.iter().enumerate() {
            if !m {
                gh.row_mut(bi).assign(&dh_prev.row(bi));
                gc.row_mut(bi).assign(&dc_prev.row(bi));
            }
        }
    }
    let bias = w.bias.as_ref().map(|bv| {
        if bv.ndim() == 2 {
            ndarray::stack(Axis(0), &[db_in.view(), db_rec.view()])
                .expect("equal lengths")
                .into_dyn()
        } else {
            db_in.into_dyn()
        }
    });
    RnnGrads {
        dx,
        kernel: dk,
        recurrent: dr,
        bias,
    }
}
