//! Shared machinery of `cpu_gradcheck_gru_rnn.rs`: one wrapper over the GRU and RNN
//! references, the finite-difference checker, an independent naive Elman RNN, and the
//! golden-file reader. Kept apart so each file stays readable.

use std::collections::HashMap;

use ndarray::{Array1, Array2, Array3, ArrayD, ArrayView3, ArrayViewD, Dimension, Ix2, Ix3, s};
use safetensors::{Dtype, SafeTensors};
use wgpu_rnn::cpu::{LstmDims, gru::*, rnn::*};

/// Step of the central difference: truncation error O(eps²) ≈ 1e-12, rounding error
/// O(1e-16 · |L| / eps) ≈ 1e-10, both far below the 1e-6 tolerance.
pub const EPS: f64 = 1e-6;
pub const TOL: f64 = 1e-6;

/// splitmix64 in [-1, 1), so the tests need no `rand` crate and are reproducible.
pub struct Rng(u64);

impl Rng {
    pub fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    }

    pub fn array3(&mut self, shape: (usize, usize, usize)) -> Array3<f64> {
        Array3::from_shape_simple_fn(shape, || self.next())
    }
}

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

/// Central-difference gradient of `loss(k, delta)` (the loss with entry `k` moved by `delta`).
pub fn numeric(shape: &[usize], mut loss: impl FnMut(usize, f64) -> f64) -> ArrayD<f64> {
    let n: usize = shape.iter().product();
    let v = (0..n)
        .map(|k| (loss(k, EPS) - loss(k, -EPS)) / (2.0 * EPS))
        .collect();
    ArrayD::from_shape_vec(shape, v).unwrap()
}

/// Entry-wise and norm comparison; `nonzero` rejects a (wrongly) vanishing gradient.
pub fn compare(name: &str, analytic: ArrayViewD<f64>, numeric: &ArrayD<f64>, nonzero: bool) {
    assert_eq!(analytic.shape(), numeric.shape(), "{name}: shape");
    for ((idx, &a), &n) in analytic.indexed_iter().zip(numeric.iter()) {
        assert!(
            (a - n).abs() <= TOL * n.abs().max(1.0),
            "{name}{:?}: analytic {a} vs numeric {n}",
            idx.slice()
        );
    }
    let norm = |a: ArrayViewD<f64>| a.iter().map(|v| v * v).sum::<f64>().sqrt();
    let (na, nn) = (norm(analytic), norm(numeric.view()));
    assert!(
        (na - nn).abs() <= TOL * nn.max(1e-300),
        "{name}: norms {na} vs {nn}"
    );
    if nonzero {
        assert!(
            nn > 1e-3,
            "{name}: numeric gradient norm {nn} is too small to test anything"
        );
    }
}

/// Checks every entry of dx, dh0 and of every parameter gradient of every cell (except a
/// ResetBefore GRU's `b_hh`, which has no place in the equations and is checked for zeros).
pub fn gradcheck(pr: &Problem) -> Grads {
    let g = pr.grads_with(pr.dy_out.view());
    let perturb = |a: &Array3<f64>, k: usize, e: f64| {
        let mut a = a.clone();
        a.as_slice_mut().unwrap()[k] += e;
        a
    };
    let n = numeric(pr.x.shape(), |k, e| {
        pr.loss(&pr.net, &perturb(&pr.x, k, e), &pr.h0)
    });
    compare("dx", g.dx.view().into_dyn(), &n, true);
    let n = numeric(pr.h0.shape(), |k, e| {
        pr.loss(&pr.net, &pr.x, &perturb(&pr.h0, k, e))
    });
    compare("dh0", g.dh0.view().into_dyn(), &n, true);

    let d = pr.net.dims();
    let params = pr.net.params();
    assert_eq!(g.cells.len(), params.len());
    for (cell, tensors) in params.iter().enumerate() {
        let rev = if cell % d.directions() == 1 {
            "_reverse"
        } else {
            ""
        };
        for (which, t) in tensors.iter().enumerate() {
            let name = format!("{}_l{}{rev}", NAMES[which], cell / d.directions());
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
    let seq = pr.x.shape()[0];
    let mut dy_junk = pr.dy_out.clone();
    let mut junk = Rng(99);
    for (b, &len) in lengths.iter().enumerate() {
        for t in len..seq {
            assert!(
                out.slice(s![t, b, ..]).iter().all(|&v| v == 0.0),
                "out[{t},{b}]"
            );
            assert!(
                g.dx.slice(s![t, b, ..]).iter().all(|&v| v == 0.0),
                "dx[{t},{b}]"
            );
            dy_junk
                .slice_mut(s![t, b, ..])
                .mapv_inplace(|_| 100.0 * junk.next());
        }
    }
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

// ---------------------------------------------------------------------------------------
// Goldens: PyTorch nn.GRU / nn.RNN and Keras GRU, computed by the frameworks in float64.

/// A golden case: its config and every tensor, widened to f64 (exact from f32).
pub struct Golden {
    pub config: serde_json::Value,
    pub t: HashMap<String, ArrayD<f64>>,
}

impl Golden {
    pub fn load(case: &str) -> Self {
        let path = format!(
            "{}/tests/data/{case}.safetensors",
            env!("CARGO_MANIFEST_DIR")
        );
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let (_, meta) = SafeTensors::read_metadata(&bytes).unwrap();
        let config = meta
            .metadata()
            .as_ref()
            .and_then(|m| m.get("config"))
            .expect("config metadata");
        let config = serde_json::from_str(config).unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        let t = st
            .iter()
            .map(|(name, v)| {
                assert_eq!(v.dtype(), Dtype::F32, "{name}");
                let vals = v
                    .data()
                    .chunks_exact(4)
                    .map(|c| f64::from(f32::from_le_bytes(c.try_into().unwrap())));
                (
                    name.to_string(),
                    ArrayD::from_shape_vec(v.shape(), vals.collect()).unwrap(),
                )
            })
            .collect();
        Golden { config, t }
    }

    pub fn get(&self, name: &str) -> &ArrayD<f64> {
        self.t
            .get(name)
            .unwrap_or_else(|| panic!("golden has no tensor {name}"))
    }

    pub fn a3(&self, name: &str) -> Array3<f64> {
        self.get(name).clone().into_dimensionality::<Ix3>().unwrap()
    }

    pub fn a2(&self, name: &str) -> Array2<f64> {
        self.get(name).clone().into_dimensionality::<Ix2>().unwrap()
    }

    pub fn usize(&self, key: &str) -> usize {
        self.config[key]
            .as_u64()
            .unwrap_or_else(|| panic!("config {key}")) as usize
    }

    pub fn flag(&self, key: &str) -> bool {
        self.config[key]
            .as_bool()
            .unwrap_or_else(|| panic!("config {key}"))
    }

    /// Asserts `ours` matches tensor `name` within `rel · max(1, max|ref|)`.
    pub fn check(&self, name: &str, ours: ArrayViewD<f64>, rel: f64) {
        let r = self.get(name);
        assert_eq!(ours.shape(), r.shape(), "{name}: shape");
        let ref_max = r.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let err = ours
            .iter()
            .zip(r)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        // Shown with --nocapture: how far inside the tolerance each tensor is.
        eprintln!("{name}: max |diff| {err:.2e} (ref max {ref_max:.2e})");
        assert!(
            err <= rel * ref_max.max(1.0),
            "{name}: max |diff| {err} (ref max {ref_max})"
        );
    }
}

pub const OUT_TOL: f64 = 1e-5;
pub const GRAD_TOL: f64 = 1e-4;
