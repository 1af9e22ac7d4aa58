//! Keras `recurrent_dropout` in stacked and bidirectional layers: each layer-direction draws
//! its own masks, and the device's training step is replayed by chaining the Keras CPU
//! reference per layer-direction with those masks.

use ndarray::{Array3, ArrayD, Axis, Ix2};

use super::cpu::rnn::{RnnWeights, backward, forward_dropout};
use super::rec_dropout_tests::{CELLS, TensorMap64, close, ctx, keras_masks, spec_of};
use super::spec::CellKind;
use crate::layers::Backend;
use crate::weights::TensorMap;
use crate::{Gru, GruConfig, Lstm, LstmConfig, SimpleRnn, SimpleRnnConfig};

/// Stacks and Bidirectional (PyTorch-layout layers, 2 layers × 2 directions): every
/// layer-direction trains with its own masks, checked by chaining the Keras reference per
/// layer-direction (reverse = Keras go_backwards) with each one's masks: outputs, dx and every
/// cell's weight gradients.
#[test]
fn stacked_bidirectional_layers_replay_per_direction() {
    use crate::weights::keras::{KerasCell, export};
    use crate::weights::torch;
    let (b, t, i, u, rate) = (2usize, 4usize, 3usize, 3usize, 0.35f32);
    for (cell, kc) in [
        (CELLS[0], KerasCell::Lstm),
        (
            CellKind::Gru { reset_after: true },
            KerasCell::Gru { reset_after: true },
        ),
        (CellKind::SimpleRnn, KerasCell::SimpleRnn),
    ] {
        let g = cell.gates();
        let backend = Backend::Gpu(ctx());
        // (train, weights by torch name, masks, backward) behind one closure per cell.
        type Train = (
            ArrayD<f32>,
            ArrayD<f32>,
            TensorMap,
            ndarray::Array4<f32>,
            TensorMap,
        );
        let x = Array3::from_shape_fn((b, t, i), |(p, q, r)| ((p + 3 * q + 5 * r) as f32).sin());
        let dy = Array3::from_shape_fn((b, t, 2 * u), |(p, q, r)| {
            ((2 * p + q + 7 * r) as f32 * 0.3).cos()
        });
        let run: Train = match cell {
            CellKind::Lstm { .. } => {
                let mut c = LstmConfig::new(i, u);
                (c.batch_first, c.num_layers, c.bidirectional) = (true, 2, true);
                (c.recurrent_dropout, c.dropout_seed) = (rate, 21);
                let l = Lstm::new(c, backend, 4).unwrap();
                let (o, tr) = l.forward_train(x.view(), None, None).unwrap();
                let m = l.recurrent_dropout_mask(&tr).unwrap().unwrap();
                let gr = l.backward(&tr, dy.view(), None).unwrap();
                let w = l.weights().unwrap();
                (o.out.into_dyn(), gr.dx.into_dyn(), gr.weights, m, w)
            }
            CellKind::Gru { .. } => {
                let mut c = GruConfig::new(i, u);
                (c.batch_first, c.num_layers, c.bidirectional) = (true, 2, true);
                (c.recurrent_dropout, c.dropout_seed) = (rate, 21);
                let l = Gru::new(c, backend, 4).unwrap();
                let (o, tr) = l.forward_train(x.view(), None, None).unwrap();
                let m = l.recurrent_dropout_mask(&tr).unwrap().unwrap();
                let gr = l.backward(&tr, dy.view(), None).unwrap();
                let w = l.weights().unwrap();
                (o.out.into_dyn(), gr.dx.into_dyn(), gr.weights, m, w)
            }
            CellKind::SimpleRnn => {
                let mut c = SimpleRnnConfig::new(i, u);
                (c.batch_first, c.num_layers, c.bidirectional) = (true, 2, true);
                (c.recurrent_dropout, c.dropout_seed) = (rate, 21);
                let l = SimpleRnn::new(c, backend, 4).unwrap();
                let (o, tr) = l.forward_train(x.view(), None, None).unwrap();
                let m = l.recurrent_dropout_mask(&tr).unwrap().unwrap();
                let gr = l.backward(&tr, dy.view(), None).unwrap();
                let w = l.weights().unwrap();
                (o.out.into_dyn(), gr.dx.into_dyn(), gr.weights, m, w)
            }
        };
        let (y, dx, grads, masks, weights) = run;
        let dims = crate::cpu::LstmDims {
            input_size: i,
            hidden_size: u,
            proj_size: 0,
            num_layers: 2,
            bidirectional: true,
        };
        let cw = torch::import(dims, g, true, &weights).unwrap();
        let cg = torch::import(dims, g, true, &grads).unwrap();
        // Forward through the CPU reference, layer by layer, direction by direction.
        let mut inp = x.mapv(f64::from);
        let mut tapes = Vec::new();
        let mut keras_w = Vec::new();
        for layer in 0..2 {
            let mut out = Array3::<f64>::zeros((b, t, 2 * u));
            for dir in 0..2 {
                let ci = 2 * layer + dir;
                let kw: TensorMap64 = export(kc, true, &cw[ci], false)
                    .unwrap()
                    .into_iter()
                    .map(|(k, v)| (k, v.mapv(f64::from)))
                    .collect();
                let mut spec = spec_of(cell, u);
                spec.go_backwards = dir == 1;
                let km = keras_masks(
                    cell,
                    &masks.slice(ndarray::s![ci..ci + 1, .., .., ..]).to_owned(),
                );
                let rw = RnnWeights {
                    kernel: kw["kernel"].view().into_dimensionality::<Ix2>().unwrap(),
                    recurrent: kw["recurrent_kernel"]
                        .view()
                        .into_dimensionality::<Ix2>()
                        .unwrap(),
                    bias: Some(kw["bias"].view()),
                };
                let run = forward_dropout(&spec, &rw, inp.view(), None, None, Some(&km));
                let mut seq = run.seq.clone();
                if dir == 1 {
                    seq.invert_axis(Axis(1));
                }
                out.slice_mut(ndarray::s![.., .., dir * u..(dir + 1) * u])
                    .assign(&seq);
                tapes.push((spec, run.tape));
                keras_w.push(kw);
            }
            inp = out;
        }
        close(&format!("{cell:?} stack y"), &y, &inp.clone().into_dyn());
        // Backward, last layer first; the directions' input gradients add.
        let mut d_out = dy.mapv(f64::from);
        for layer in (0..2).rev() {
            let in_w = if layer == 0 { i } else { 2 * u };
            let mut d_in = Array3::<f64>::zeros((b, t, in_w));
            for dir in 0..2 {
                let ci = 2 * layer + dir;
                let (spec, tape) = &tapes[ci];
                let kw = &keras_w[ci];
                let rw = RnnWeights {
                    kernel: kw["kernel"].view().into_dimensionality::<Ix2>().unwrap(),
                    recurrent: kw["recurrent_kernel"]
                        .view()
                        .into_dimensionality::<Ix2>()
                        .unwrap(),
                    bias: Some(kw["bias"].view()),
                };
                let mut d_seq = d_out
                    .slice(ndarray::s![.., .., dir * u..(dir + 1) * u])
                    .to_owned();
                if dir == 1 {
                    d_seq.invert_axis(Axis(1));
                }
                let gr = backward(spec, &rw, tape, Some(d_seq.view()), None);
                d_in += &gr.dx;
                let got = export(kc, true, &cg[ci], true).unwrap();
                let what = format!("{cell:?} cell {ci}");
                close(
                    &format!("{what} dkernel"),
                    &got["kernel"],
                    &gr.kernel.into_dyn(),
                );
                close(
                    &format!("{what} drecurrent"),
                    &got["recurrent_kernel"],
                    &gr.recurrent.into_dyn(),
                );
                close(&format!("{what} dbias"), &got["bias"], &gr.bias.unwrap());
            }
            d_out = d_in;
        }
        close(&format!("{cell:?} stack dx"), &dx, &d_out.into_dyn());
    }
}
