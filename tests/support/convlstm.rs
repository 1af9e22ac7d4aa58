//! Shared machinery of `cpu_gradcheck_convlstm.rs`: a gradient-check problem with its
//! finite-difference check and an independent direct-loop ConvLSTM2D (no im2col, no matmul)
//! to check the forward semantics. The generic checker and the golden-file reader are in
//! `common.rs`.

use ndarray::{Array4, Array5};
use wgpu_rnn::cpu::convlstm::*;

use crate::common_support::*;

/// One gradient-check problem: parameters, inputs and the loss weights `dy_*`.
pub struct Problem {
    pub p: ConvLstmParams<f64>,
    pub x: Array5<f64>,
    pub h0: Array4<f64>,
    pub c0: Array4<f64>,
    pub dy_out: Array5<f64>,
    pub dy_h_n: Array4<f64>,
    pub dy_c_n: Array4<f64>,
    pub go_backwards: bool,
}

impl Problem {
    pub fn new(d: ConvLstmDims, batch: usize, seq: usize, go_backwards: bool, seed: u64) -> Self {
        let mut r = Rng(seed ^ 0xC0FFEE);
        let (ho, wo) = d.out_hw().unwrap();
        let st = (batch, ho, wo, d.filters);
        Problem {
            p: ConvLstmParams::random(d, seed, 0.5).unwrap(),
            x: r.a5((batch, seq, d.rows, d.cols, d.in_channels)),
            h0: r.a4(st),
            c0: r.a4(st),
            dy_out: r.a5((batch, seq, ho, wo, d.filters)),
            dy_h_n: r.a4(st),
            dy_c_n: r.a4(st),
            go_backwards,
        }
    }

    pub fn forward(
        &self,
        p: &ConvLstmParams<f64>,
        x: &Array5<f64>,
        h0: &Array4<f64>,
        c0: &Array4<f64>,
    ) -> ConvLstmForward<f64> {
        convlstm_forward(p, x.view(), h0.view(), c0.view(), self.go_backwards).unwrap()
    }

    pub fn loss(
        &self,
        p: &ConvLstmParams<f64>,
        x: &Array5<f64>,
        h0: &Array4<f64>,
        c0: &Array4<f64>,
    ) -> f64 {
        let f = self.forward(p, x, h0, c0);
        convlstm_loss(
            &f,
            self.dy_out.view(),
            self.dy_h_n.view(),
            self.dy_c_n.view(),
        )
    }

    pub fn backward(&self) -> ConvLstmGrads<f64> {
        let f = self.forward(&self.p, &self.x, &self.h0, &self.c0);
        convlstm_backward(
            &self.p,
            &f.tape,
            self.dy_out.view(),
            self.dy_h_n.view(),
            self.dy_c_n.view(),
        )
        .unwrap()
    }
}

/// Checks every entry of dx, dh0, dc0, kernel, recurrent_kernel and bias against central
/// differences of the loss; returns the analytic gradients.
pub fn gradcheck(pr: &Problem) -> ConvLstmGrads<f64> {
    let g = pr.backward();
    let (p, x, h0, c0) = (&pr.p, &pr.x, &pr.h0, &pr.c0);
    let n = numeric(x.shape(), |k, e| pr.loss(p, &moved(x, k, e), h0, c0));
    compare("dx", g.dx.view().into_dyn(), &n, true);
    let n = numeric(h0.shape(), |k, e| pr.loss(p, x, &moved(h0, k, e), c0));
    compare("dh0", g.dh0.view().into_dyn(), &n, true);
    let n = numeric(c0.shape(), |k, e| pr.loss(p, x, h0, &moved(c0, k, e)));
    compare("dc0", g.dc0.view().into_dyn(), &n, true);

    let with = |f: &dyn Fn(&mut ConvLstmParams<f64>)| {
        let mut q = p.clone();
        f(&mut q);
        pr.loss(&q, x, h0, c0)
    };
    let n = numeric(p.kernel.shape(), |k, e| {
        with(&|q| q.kernel.as_slice_mut().unwrap()[k] += e)
    });
    compare("kernel", g.kernel.view().into_dyn(), &n, true);
    let n = numeric(p.recurrent_kernel.shape(), |k, e| {
        with(&|q| q.recurrent_kernel.as_slice_mut().unwrap()[k] += e)
    });
    compare(
        "recurrent_kernel",
        g.recurrent_kernel.view().into_dyn(),
        &n,
        true,
    );
    let n = numeric(p.bias.shape(), |k, e| {
        with(&|q| q.bias.as_slice_mut().unwrap()[k] += e)
    });
    compare("bias", g.bias.view().into_dyn(), &n, true);
    g
}

// ---------------------------------------------------------------------------------------
// An independent ConvLSTM2D: straight from the formulas in CONVENTIONS.md §2, with signed
// coordinates and the TF padding rule recomputed here, one output value at a time.

/// `(out_len, pad_before)` of one axis of a convolution, TF rule.
fn axis(len: usize, k: usize, s: usize, d: usize, same: bool) -> (usize, usize) {
    let eff = (k - 1) * d + 1;
    if same {
        let out = len.div_ceil(s);
        let total = ((out - 1) * s + eff).saturating_sub(len);
        (out, total / 2)
    } else {
        ((len - eff) / s + 1, 0)
    }
}

fn act(a: Activation, v: f64) -> f64 {
    match a {
        Activation::Tanh => v.tanh(),
        Activation::Relu => v.max(0.0),
        Activation::Sigmoid => 1.0 / (1.0 + (-v).exp()),
        Activation::HardSigmoid => (v + 3.0).clamp(0.0, 6.0) / 6.0,
        Activation::Linear => v,
    }
}

/// Result of `naive_forward`: outputs plus every value fed to `activation` (candidate gate
/// and cell) and to `recurrent_activation` (i, f, o), for kink-distance checks.
pub struct Naive {
    pub out: Array5<f64>,
    pub h_n: Array4<f64>,
    pub c_n: Array4<f64>,
    pub act_inputs: Vec<f64>,
    pub rec_inputs: Vec<f64>,
}

/// `Σ_{a,b,ch} src[y·s + a·d - pad, x·s + b·d - pad, ch] · k[a, b, ch, col]`, zero outside.
#[allow(clippy::too_many_arguments)]
fn conv_at(
    src: &dyn Fn(usize, usize, usize) -> f64,
    (h, w, ch): (usize, usize, usize),
    k: &Array4<f64>,
    (y, x, col): (usize, usize, usize),
    s: (usize, usize),
    d: (usize, usize),
    pad: (usize, usize),
) -> f64 {
    let (kh, kw, _, _) = k.dim();
    let mut acc = 0.0;
    for a in 0..kh {
        let iy = (y * s.0 + a * d.0) as isize - pad.0 as isize;
        for b in 0..kw {
            let ix = (x * s.1 + b * d.1) as isize - pad.1 as isize;
            if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                continue;
            }
            for c in 0..ch {
                acc += src(iy as usize, ix as usize, c) * k[[a, b, c, col]];
            }
        }
    }
    acc
}

pub fn naive_forward(pr: &Problem) -> Naive {
    let (p, d) = (&pr.p, pr.p.dims);
    let (bn, tn) = (pr.x.dim().0, pr.x.dim().1);
    let same = d.padding == Padding::Same;
    let (ho, pt) = axis(d.rows, d.kernel.0, d.strides.0, d.dilation.0, same);
    let (wo, pl) = axis(d.cols, d.kernel.1, d.strides.1, d.dilation.1, same);
    let rpad = ((d.kernel.0 - 1) / 2, (d.kernel.1 - 1) / 2);
    let f = d.filters;
    let mut n = Naive {
        out: Array5::zeros((bn, tn, ho, wo, f)),
        h_n: pr.h0.clone(),
        c_n: pr.c0.clone(),
        act_inputs: vec![],
        rec_inputs: vec![],
    };
    for b in 0..bn {
        for k in 0..tn {
            let t = if pr.go_backwards { tn - 1 - k } else { k };
            let (h, c) = (n.h_n.clone(), n.c_n.clone());
            let xs = |y: usize, x: usize, ch: usize| pr.x[[b, t, y, x, ch]];
            let hs = |y: usize, x: usize, ch: usize| h[[b, y, x, ch]];
            for y in 0..ho {
                for x in 0..wo {
                    // Pre-activation of gate column `col`: bias + input conv + recurrent conv.
                    let z = |col: usize| {
                        let xin = (d.rows, d.cols, d.in_channels);
                        let (s, dl) = (d.strides, d.dilation);
                        p.bias[col]
                            + conv_at(&xs, xin, &p.kernel, (y, x, col), s, dl, (pt, pl))
                            + conv_at(
                                &hs,
                                (ho, wo, f),
                                &p.recurrent_kernel,
                                (y, x, col),
                                (1, 1),
                                (1, 1),
                                rpad,
                            )
                    };
                    for j in 0..f {
                        let zz: Vec<f64> = (0..4).map(|g| z(g * f + j)).collect();
                        let (i, fg, cc, o) = (
                            act(d.recurrent_activation, zz[0]),
                            act(d.recurrent_activation, zz[1]),
                            act(d.activation, zz[2]),
                            act(d.recurrent_activation, zz[3]),
                        );
                        let cn = fg * c[[b, y, x, j]] + i * cc;
                        let hn = o * act(d.activation, cn);
                        n.rec_inputs.extend([zz[0], zz[1], zz[3]]);
                        n.act_inputs.extend([zz[2], cn]);
                        n.c_n[[b, y, x, j]] = cn;
                        n.h_n[[b, y, x, j]] = hn;
                        n.out[[b, k, y, x, j]] = hn;
                    }
                }
            }
        }
    }
    n
}
