//! Shared machinery of `cpu_gradcheck_gru_rnn.rs`: one wrapper over the GRU and RNN
//! references, its finite-difference check and an independent naive Elman RNN. The generic
//! checker and the golden-file reader are in `common.rs`. Kept apart so each file stays
//! readable.

use ndarray::{Array1, Array2, Array3, ArrayD, ArrayView3, s};
use wgpu_rnn::cpu::{LstmDims, gru::*, rnn::*};

use crate::common_support::*;

pub fn dims(input: usize, hidden: usize, layers: usize, bidir: bool) -> LstmDims {
    LstmDims {
        input_size: input,
        hidden_size: hidden,
        proj_size: 0,
        num_layers: layers,
        bidirectional: bidir,
    }
}

/// Either network, so one gradient checker serves both.
#[derive(Clone, Debug)]
pub enum Net {
    Gru(GruParams<f64>),
    Rnn(RnnParams<f64>),
}

/// A cell's gradients as `[w_ih, w_hh, b_ih, b_hh]`.
pub type CellGrads = [ArrayD<f64>; 4];
pub const NAMES: [&str; 4] = ["weight_ih", "weight_hh", "bias_ih", "bias_hh"];

pub struct Grads {
    pub dx: Array3<f64>,
    pub dh0: Array3<f64>,
    pub cells: Vec<CellGrads>,
}

pub fn four(
    w_ih: &Array2<f64>,
    w_hh: &Array2<f64>,
    b_ih: &Array1<f64>,
    b_hh: &Array1<f64>,
) -> CellGrads {
    [
        w_ih.clone().into_dyn(),
        w_hh.clone().into_dyn(),
        b_ih.clone().into_dyn(),
        b_hh.clone().into_dyn(),
    ]
}

impl Net {
    pub fn dims(&self) -> LstmDims {
        match self {
            Net::Gru(p) => p.dims,
            Net::Rnn(p) => p.dims,
        }
    }

    /// Whether `b_hh` is structurally absent (GRU ResetBefore), so it cannot be perturbed.
    pub fn fixed_b_hh(&self) -> bool {
        matches!(self, Net::Gru(p) if p.mode == GruMode::ResetBefore)
    }

    pub fn params(&self) -> Vec<CellGrads> {
        match self {
            Net::Gru(p) => p
                .cells
                .iter()
                .map(|c| four(&c.w_ih, &c.w_hh, &c.b_ih, &c.b_hh))
                .collect(),
            Net::Rnn(p) => p
                .cells
                .iter()
                .map(|c| four(&c.w_ih, &c.w_hh, &c.b_ih, &c.b_hh))
                .collect(),
        }
    }

    pub fn entry_mut(&mut self, cell: usize, which: usize, k: usize) -> &mut f64 {
        let s = match self {
            Net::Gru(p) => {
                let c = &mut p.cells[cell];
                [
                    c.w_ih.as_slice_mut(),
                    c.w_hh.as_slice_mut(),
                    c.b_ih.as_slice_mut(),
                    c.b_hh.as_slice_mut(),
                ]
            }
            Net::Rnn(p) => {
                let c = &mut p.cells[cell];
                [
                    c.w_ih.as_slice_mut(),
                    c.w_hh.as_slice_mut(),
                    c.b_ih.as_slice_mut(),
                    c.b_hh.as_slice_mut(),
                ]
            }
        };
        &mut s.into_iter().nth(which).unwrap().unwrap()[k]
    }

    pub fn forward(
        &self,
        x: ArrayView3<f64>,
        h0: ArrayView3<f64>,
        l: Option<&[usize]>,
    ) -> (Array3<f64>, Array3<f64>) {
        match self {
            Net::Gru(p) => {
                let f = gru_forward(p, x, h0, l).unwrap();
                (f.out, f.h_n)
            }
            Net::Rnn(p) => {
                let f = rnn_forward(p, x, h0, l).unwrap();
                (f.out, f.h_n)
            }
        }
    }

    pub fn loss(
        &self,
        x: ArrayView3<f64>,
        h0: ArrayView3<f64>,
        l: Option<&[usize]>,
        dy: [ArrayView3<f64>; 2],
    ) -> f64 {
        match self {
            Net::Gru(p) => gru_loss(&gru_forward(p, x, h0, l).unwrap(), dy[0], dy[1]),
            Net::Rnn(p) => rnn_loss(&rnn_forward(p, x, h0, l).unwrap(), dy[0], dy[1]),
        }
    }

    pub fn grads(
        &self,
        x: ArrayView3<f64>,
        h0: ArrayView3<f64>,
        l: Option<&[usize]>,
        dy: [ArrayView3<f64>; 2],
    ) -> Grads {
        match self {
            Net::Gru(p) => {
                let f = gru_forward(p, x, h0, l).unwrap();
                let g = gru_backward(p, &f.tape, dy[0], dy[1]).unwrap();
                let cells = g
                    .cells
                    .iter()
                    .map(|c| four(&c.w_ih, &c.w_hh, &c.b_ih, &c.b_hh))
                    .collect();
                Grads {
                    dx: g.dx,
                    dh0: g.dh0,
                    cells,
                }
            }
            Net::Rnn(p) => {
                let f = rnn_forward(p, x, h0, l).unwrap();
                let g = rnn_backward(p, &f.tape, dy[0], dy[1]).unwrap();
                let cells = g
                    .cells
                    .iter()
                    .map(|c| four(&c.w_ih, &c.w_hh, &c.b_ih, &c.b_hh))
                    .collect();
                Grads {
                    dx: g.dx,
                    dh0: g.dh0,
                    cells,
                }
            }
        }
    }
}

/// One gradient-check problem: network, inputs and the loss weights `dy_*`.
pub struct Problem {
    pub net: Net,
    pub x: Array3<f64>,
    pub h0: Array3<f64>,
    pub dy_out: Array3<f64>,
    pub dy_h_n: Array3<f64>,
    pub lengths: Option<Vec<usize>>,
}

impl Problem {
    pub fn new(net: Net, batch: usize, seq: usize, lengths: Option<Vec<usize>>, seed: u64) -> Self {
        let d = net.dims();
        let mut r = Rng(seed ^ 0xABCD);
        let (ld, hs) = (d.cell_count(), d.hidden_size);
        Problem {
            x: r.array3((seq, batch, d.input_size)),
            h0: r.array3((ld, batch, hs)),
            dy_out: r.array3((seq, batch, d.directions() * hs)),
            dy_h_n: r.array3((ld, batch, hs)),
            net,
            lengths,
        }
    }

    pub fn gru(
        d: LstmDims,
        mode: GruMode,
        batch: usize,
        seq: usize,
        lengths: Option<Vec<usize>>,
        seed: u64,
    ) -> Self {
        Self::new(
            Net::Gru(GruParams::random(d, mode, seed, 0.5).unwrap()),
            batch,
            seq,
            lengths,
            seed,
        )
    }

    pub fn rnn(
        d: LstmDims,
        act: Nonlinearity,
        batch: usize,
        seq: usize,
        lengths: Option<Vec<usize>>,
        seed: u64,
    ) -> Self {
        Self::new(
            Net::Rnn(RnnParams::random(d, act, seed, 0.5).unwrap()),
            batch,
            seq,
            lengths,
            seed,
        )
    }

    pub fn loss(&self, net: &Net, x: &Array3<f64>, h0: &Array3<f64>) -> f64 {
        let dy = [self.dy_out.view(), self.dy_h_n.view()];
        net.loss(x.view(), h0.view(), self.lengths.as_deref(), dy)
    }

    pub fn grads_with(&self, dy_out: ArrayView3<f64>) -> Grads {
        let dy = [dy_out, self.dy_h_n.view()];
        self.net
            .grads(self.x.view(), self.h0.view(), self.lengths.as_deref(), dy)
    }
}

/// Checks every entry of dx, dh0 and of every parameter gradient of every cell (except a
/// ResetBefore GRU's `b_hh`, which has no place in the equations and is checked for zeros).
pub fn gradcheck(pr: &Problem) -> Grads {
    let g = pr.grads_with(pr.dy_out.view());
    let n = numeric(pr.x.shape(), |k, e| {
        pr.loss(&pr.net, &moved(&pr.x, k, e), &pr.h0)
    });
    compare("dx", g.dx.view().into_dyn(), &n, true);
    let n = numeric(pr.h0.shape(), |k, e| {
        pr.loss(&pr.net, &pr.x, &moved(&pr.h0, k, e))
    });
    compare("dh0", g.dh0.view().into_dyn(), &n, true);

    let d = pr.net.dims();
    let params = pr.net.params();
    assert_eq!(g.cells.len(), params.len());
    for (cell, tensors) in params.iter().enumerate() {
        for (which, t) in tensors.iter().enumerate() {
            let name = pname(&d, cell, NAMES[which]);
            assert_eq!(g.cells[cell][which].shape(), t.shape(), "{name}: shape");
            if which == 3 && pr.net.fixed_b_hh() {
                assert!(
                    g.cells[cell][3].iter().all(|&v| v == 0.0),
                    "{name} must be all zeros"
                );
                continue;
            }
            let n = numeric(t.shape(), |k, e| {
                let mut net = pr.net.clone();
                *net.entry_mut(cell, which, k) += e;
                pr.loss(&net, &pr.x, &pr.h0)
            });
            compare(&name, g.cells[cell][which].view(), &n, true);
        }
    }
    g
}

/// Out and dx are exactly 0 at padded steps, and dy_out there is ignored (bit-identical
/// gradients with junk in it).
pub fn check_padding(pr: &Problem, g: &Grads) {
    let lengths = pr.lengths.as_ref().unwrap();
    let (out, _) = pr.net.forward(pr.x.view(), pr.h0.view(), Some(lengths));
    let dy_junk = padded_junk(&out, &g.dx, &pr.dy_out, lengths);
    let g2 = pr.grads_with(dy_junk.view());
    assert_eq!(g.dx, g2.dx);
    assert_eq!(g.dh0, g2.dh0);
    assert_eq!(g.cells, g2.cells);
}

/// A plain per-sequence, per-step Elman RNN written independently of the library: returns
/// `out` and every pre-activation it computed (valid steps only).
pub fn naive_rnn(
    p: &RnnParams<f64>,
    x: &Array3<f64>,
    h0: &Array3<f64>,
    lengths: &[usize],
) -> (Array3<f64>, Vec<f64>) {
    let d = p.dims;
    let (seq, batch, _) = x.dim();
    let (dn, hs) = (d.directions(), d.hidden_size);
    let act = |v: f64| match p.nonlinearity {
        Nonlinearity::Tanh => v.tanh(),
        Nonlinearity::Relu => v.max(0.0),
    };
    let (mut input, mut pres) = (x.clone(), Vec::new());
    for layer in 0..d.num_layers {
        let mut out = Array3::zeros((seq, batch, dn * hs));
        for dir in 0..dn {
            let c = &p.cells[layer * dn + dir];
            for (b, &len) in lengths.iter().enumerate() {
                let mut h = h0.slice(s![layer * dn + dir, b, ..]).to_owned();
                let steps: Vec<usize> = if dir == 0 {
                    (0..len).collect()
                } else {
                    (0..len).rev().collect()
                };
                for t in steps {
                    let pre =
                        c.w_ih.dot(&input.slice(s![t, b, ..])) + &c.b_ih + c.w_hh.dot(&h) + &c.b_hh;
                    pres.extend(pre.iter().copied());
                    h = pre.mapv(act);
                    out.slice_mut(s![t, b, dir * hs..(dir + 1) * hs]).assign(&h);
                }
            }
        }
        input = out;
    }
    (input, pres)
}
