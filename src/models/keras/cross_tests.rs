//! The Keras-layout recurrent reference (`cpu::rnn`) against the crate's PyTorch-layout cells
//! (`crate::cpu`) with weights converted by `weights::keras::import` — the path the device
//! layers take — on post-padded batches, where Keras' mask and PyTorch's lengths agree:
//! the same outputs at valid steps and the same final state.

use ndarray::{Array2, Array3, ArrayD, Axis, IxDyn, s};

use super::cpu::rnn::{RnnWeights, forward};
use super::init::Rng;
use super::spec::{CellKind, RnnSpec};
use crate::cpu::{
    GruMode, GruParams, LstmDims, LstmParams, Nonlinearity, RnnParams, gru_forward, lstm_forward,
    rnn_forward,
};
use crate::weights::TensorMap;
use crate::weights::keras::{KerasCell, import};

fn rand(rng: &mut Rng, shape: &[usize]) -> ArrayD<f32> {
    ArrayD::from_shape_simple_fn(IxDyn(shape), || (rng.unit() - 0.5) as f32)
}

#[test]
fn keras_cells_match_the_crate_cells_after_weight_conversion() {
    let (b, t, i, u) = (3usize, 5usize, 4usize, 3usize);
    let lengths = [5usize, 2, 4];
    for (cell, kc) in [
        (
            CellKind::Lstm {
                unit_forget_bias: true,
            },
            KerasCell::Lstm,
        ),
        (
            CellKind::Gru { reset_after: true },
            KerasCell::Gru { reset_after: true },
        ),
        (
            CellKind::Gru { reset_after: false },
            KerasCell::Gru { reset_after: false },
        ),
        (CellKind::SimpleRnn, KerasCell::SimpleRnn),
    ] {
        let mut rng = Rng::new(21);
        let g = cell.gates() * u;
        let mut spec = RnnSpec::new("r", cell, u);
        spec.return_sequences = true;
        let bias_shape = spec.bias_shape();
        let mut map = TensorMap::new();
        map.insert("kernel".into(), rand(&mut rng, &[i, g]));
        map.insert("recurrent_kernel".into(), rand(&mut rng, &[u, g]));
        map.insert("bias".into(), rand(&mut rng, &bias_shape));
        let x = rand(&mut rng, &[b, t, i]).mapv(f64::from);
        let mask = Array2::from_shape_fn((b, t), |(bi, ti)| ti < lengths[bi]);

        let f64v = |k: &str| map[k].mapv(f64::from);
        let (kern, rec, bias) = (f64v("kernel"), f64v("recurrent_kernel"), f64v("bias"));
        let w = RnnWeights {
            kernel: kern.view().into_dimensionality().unwrap(),
            recurrent: rec.view().into_dimensionality().unwrap(),
            bias: Some(bias.view()),
        };
        let x3 = x.view().into_dimensionality::<ndarray::Ix3>().unwrap();
        let keras = forward(&spec, &w, x3, Some(&mask), None);

        let dims = LstmDims {
            input_size: i,
            hidden_size: u,
            proj_size: 0,
            num_layers: 1,
            bidirectional: false,
        };
        let cw = import(kc, dims, true, &map).unwrap();
        let c64 = |a: &ndarray::Array2<f32>| a.mapv(f64::from);
        let v64 = |a: &ndarray::Array1<f32>| a.mapv(f64::from);
        // The crate's cells take (T, B, I).
        let xt: Array3<f64> = x3.permuted_axes([1, 0, 2]).to_owned();
        let h0 = Array3::<f64>::zeros((1, b, u));
        let (out, h_n) = match kc {
            KerasCell::Lstm => {
                let mut p = LstmParams::<f64>::zeros(dims).unwrap();
                let c = &mut p.cells[0];
                (c.w_ih, c.w_hh, c.b_ih, c.b_hh) =
                    (c64(&cw.w_ih), c64(&cw.w_hh), v64(&cw.b_ih), v64(&cw.b_hh));
                let f = lstm_forward(&p, xt.view(), h0.view(), h0.view(), Some(&lengths)).unwrap();
                (f.out, f.h_n)
            }
            KerasCell::Gru { reset_after } => {
                let mode = if reset_after {
                    GruMode::ResetAfter
                } else {
                    GruMode::ResetBefore
                };
                let mut p = GruParams::<f64>::zeros(dims, mode).unwrap();
                let c = &mut p.cells[0];
                (c.w_ih, c.w_hh, c.b_ih, c.b_hh) =
                    (c64(&cw.w_ih), c64(&cw.w_hh), v64(&cw.b_ih), v64(&cw.b_hh));
                let f = gru_forward(&p, xt.view(), h0.view(), Some(&lengths)).unwrap();
                (f.out, f.h_n)
            }
            KerasCell::SimpleRnn => {
                let mut p = RnnParams::<f64>::zeros(dims, Nonlinearity::Tanh).unwrap();
                let c = &mut p.cells[0];
                (c.w_ih, c.w_hh, c.b_ih, c.b_hh) =
                    (c64(&cw.w_ih), c64(&cw.w_hh), v64(&cw.b_ih), v64(&cw.b_hh));
                let f = rnn_forward(&p, xt.view(), h0.view(), Some(&lengths)).unwrap();
                (f.out, f.h_n)
            }
        };
        for (bi, &len) in lengths.iter().enumerate() {
            for ti in 0..len {
                let a = keras.seq.slice(s![bi, ti, ..]);
                let c = out.slice(s![ti, bi, ..]);
                for (p, q) in a.iter().zip(c.iter()) {
                    assert!((p - q).abs() < 1e-12, "{kc:?} b{bi} t{ti}: {p} vs {q}");
                }
            }
            // Keras' last output (carried through the padding) is PyTorch's h_n.
            let last = keras.last.index_axis(Axis(0), bi);
            for (p, q) in last.iter().zip(h_n.slice(s![0, bi, ..]).iter()) {
                assert!((p - q).abs() < 1e-12, "{kc:?} h_n b{bi}: {p} vs {q}");
            }
        }
        assert!(
            keras.last.iter().any(|v| v.abs() > 1e-2),
            "{kc:?}: trivial output"
        );
    }
}
