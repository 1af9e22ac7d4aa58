//! Keras masking on the device (`nn::masking`): each masked recurrent layer against a CPU
//! reference that runs every sequence on its own valid steps and applies Keras' rules for
//! masked steps (state carried; output carried or zero), forward and backward.

mod common;

use std::sync::Arc;

use ndarray::{Array3, ArrayD, s};
use wgpu_rnn::nn::masking::{MaskOptions, MaskedRecurrent, Recurrent, SeqMask};
use wgpu_rnn::{
    Backend, Context, DeviceTensor, Gru, GruConfig, Layer, Lstm, LstmConfig, OutputGrads, Recorder,
    TensorMap,
};

const ATOL: f32 = 1e-5;
const RTOL: f32 = 1e-4;

fn ctx() -> Arc<Context> {
    match common::gpu() {
        Backend::Gpu(c) => c,
        Backend::Cpu => unreachable!(),
    }
}

/// x with zeros at the masked steps: every step of row r not in `valid[r]`.
fn padded(b: usize, t: usize, f: usize, valid: &[Vec<usize>], seed: u64) -> Array3<f32> {
    let mut x = common::rand3((b, t, f), seed, 1.0);
    for (row, steps) in valid.iter().enumerate() {
        for step in 0..t {
            if !steps.contains(&step) {
                x.slice_mut(s![row, step, ..]).fill(0.0);
            }
        }
    }
    x
}

/// Keras semantics from per-row CPU runs over the valid steps alone (a masked step keeps the
/// state; its output is the previous output, or zero): (out, h_n per row, dx, summed weight
/// gradients).
fn reference<F>(
    x: &Array3<f32>,
    dy: &Array3<f32>,
    valid: &[Vec<usize>],
    o: MaskOptions,
    mut run: F,
) -> (Array3<f32>, Vec<ArrayD<f32>>, Array3<f32>, TensorMap)
where
    F: FnMut(Array3<f32>, Array3<f32>) -> (Array3<f32>, ArrayD<f32>, Array3<f32>, TensorMap),
{
    let (b, t, _) = x.dim();
    let h = dy.dim().2;
    let mut out = Array3::zeros((b, t, h));
    let mut dx = Array3::zeros(x.dim());
    let mut h_n = Vec::new();
    let mut grads = TensorMap::new();
    for (row, steps) in valid.iter().enumerate() {
        // Processing positions q (q reads step q, or t-1-q with go_backwards).
        let step_of = |q: usize| if o.go_backwards { t - 1 - q } else { q };
        let order: Vec<usize> = (0..t).filter(|&q| steps.contains(&step_of(q))).collect();
        let l = order.len();
        let mut xs = Array3::zeros((1, l, x.dim().2));
        let mut dys = Array3::zeros((1, l, h));
        for (k, &q) in order.iter().enumerate() {
            xs.slice_mut(s![0, k, ..])
                .assign(&x.slice(s![row, step_of(q), ..]));
            let mut g = dy.slice(s![row, q, ..]).to_owned();
            if !o.zero_output_for_mask {
                // Masked positions after q (up to the next valid one) output y[k].
                let mut u = q + 1;
                while u < t && !order.contains(&u) {
                    g += &dy.slice(s![row, u, ..]);
                    u += 1;
                }
            }
            dys.slice_mut(s![0, k, ..]).assign(&g);
        }
        let (y, hn, dxs, gr) = run(xs, dys);
        for q in 0..t {
            let done = order.iter().filter(|&&v| v <= q).count();
            if let Some(k) = order.iter().position(|&v| v == q) {
                out.slice_mut(s![row, q, ..]).assign(&y.slice(s![0, k, ..]));
                dx.slice_mut(s![row, step_of(q), ..])
                    .assign(&dxs.slice(s![0, k, ..]));
            } else if done > 0 && !o.zero_output_for_mask {
                out.slice_mut(s![row, q, ..])
                    .assign(&y.slice(s![0, done - 1, ..]));
            }
        }
        h_n.push(hn);
        for (k, v) in gr {
            let e = grads.entry(k).or_insert_with(|| ArrayD::zeros(v.shape()));
            *e += &v;
        }
    }
    (out, h_n, dx, grads)
}

fn run_device(
    c: &Context,
    layer: &dyn Recurrent,
    o: MaskOptions,
    x: &Array3<f32>,
    dy: &Array3<f32>,
) -> (ArrayD<f32>, ArrayD<f32>, ArrayD<f32>) {
    let mut rec = Recorder::new(c);
    let xt = DeviceTensor::from_array(c, x.view()).unwrap();
    let mask = SeqMask::from_values(&mut rec, &xt, 0.0).unwrap();
    let m = MaskedRecurrent { layer, options: o };
    let f = m.record_forward(&mut rec, &xt, &mask, true).unwrap();
    let g = OutputGrads::output(DeviceTensor::from_array(c, dy.view()).unwrap());
    let dx = m
        .record_backward(&mut rec, f.tape.as_ref().unwrap(), &g)
        .unwrap();
    rec.submit().unwrap();
    (
        f.y.to_array(c).unwrap(),
        f.state[0].to_array(c).unwrap(),
        dx.to_array(c).unwrap(),
    )
}

fn check_grads(c: &Context, layer: &dyn Layer, want: &TensorMap) {
    for p in layer.params().unwrap() {
        let got = wgpu_rnn::train::read_buffer(c, &p.grad, p.len()).unwrap();
        let got = ArrayD::from_shape_vec(p.shape.clone(), got).unwrap();
        common::assert_close(&p.name, got.view(), want[&p.name].view(), ATOL, RTOL);
    }
}

#[test]
fn lstm_pre_post_and_gap_masks_carry_state_and_outputs() {
    let c = ctx();
    let mut cfg = LstmConfig::new(3, 4);
    cfg.batch_first = true;
    let gpu = Lstm::new(cfg, Backend::Gpu(c.clone()), 5).unwrap();
    let cpu = Lstm::new(cfg, Backend::Cpu, 5).unwrap();
    // Pre-, post- and both-sides padding, a gap, and a full row.
    let valid = [
        vec![2, 3, 4, 5, 6],
        vec![0, 1, 2, 3],
        vec![1, 2, 4],
        vec![0, 1, 2, 3, 4, 5, 6],
    ];
    let x = padded(4, 7, 3, &valid, 1);
    let dy = common::rand3((4, 7, 4), 2, 1.0);
    let o = MaskOptions::default();
    let (y, h_n, dx) = run_device(&c, &gpu, o, &x, &dy);
    let (want_y, want_h, want_dx, want_g) = reference(&x, &dy, &valid, o, |xs, dys| {
        let (f, tr) = cpu.forward_train(xs.view(), None, None).unwrap();
        let g = cpu.backward(&tr, dys.view(), None).unwrap();
        (f.out, f.h_n.into_dyn(), g.dx, g.weights)
    });
    common::assert_close("out", y.view(), want_y.view(), ATOL, RTOL);
    for (row, h) in want_h.iter().enumerate() {
        let got = h_n.slice(s![.., row..row + 1, ..]).to_owned().into_dyn();
        common::assert_close("h_n", got.view(), h.view(), ATOL, RTOL);
    }
    common::assert_close("dx", dx.view(), want_dx.view(), ATOL, RTOL);
    check_grads(&c, &gpu, &want_g);
}

#[test]
fn gru_go_backwards_with_zero_output_for_mask() {
    let c = ctx();
    let mut cfg = GruConfig::new(2, 3);
    cfg.batch_first = true;
    let gpu = Gru::new(cfg, Backend::Gpu(c.clone()), 6).unwrap();
    let cpu_cfg = GruConfig {
        go_backwards: false,
        ..cfg
    };
    let cpu = Gru::new(cpu_cfg, Backend::Cpu, 6).unwrap();
    let valid = [vec![3, 4, 5], vec![0, 1], vec![0, 2, 3, 5]];
    let x = padded(3, 6, 2, &valid, 3);
    let dy = common::rand3((3, 6, 3), 4, 1.0);
    let o = MaskOptions {
        go_backwards: true,
        zero_output_for_mask: true,
    };
    let (y, _, dx) = run_device(&c, &gpu, o, &x, &dy);
    let (want_y, _, want_dx, want_g) = reference(&x, &dy, &valid, o, |xs, dys| {
        let (f, tr) = cpu.forward_train(xs.view(), None, None).unwrap();
        let g = cpu.backward(&tr, dys.view(), None).unwrap();
        (f.out, f.h_n.into_dyn(), g.dx, g.weights)
    });
    common::assert_close("out", y.view(), want_y.view(), ATOL, RTOL);
    common::assert_close("dx", dx.view(), want_dx.view(), ATOL, RTOL);
    check_grads(&c, &gpu, &want_g);
}

#[test]
fn token_masks_count_the_valid_steps_gaps_included() {
    let c = ctx();
    let tokens =
        DeviceTensor::from_u32(&c, &[3, 5], &[0, 0, 4, 2, 9, 3, 0, 7, 0, 0, 0, 0, 0, 0, 0])
            .unwrap();
    let mut rec = Recorder::new(&c);
    let mask = SeqMask::from_tokens(&mut rec, &tokens).unwrap();
    let x = DeviceTensor::from_f32(&c, &[3, 5, 1], &[1.0; 15]).unwrap();
    let mut cfg = LstmConfig::new(1, 2);
    cfg.batch_first = true;
    let l = Lstm::new(cfg, Backend::Gpu(c.clone()), 1).unwrap();
    let f = MaskedRecurrent {
        layer: &l,
        options: MaskOptions::default(),
    }
    .record_forward(&mut rec, &x, &mask, false)
    .unwrap();
    rec.submit().unwrap();
    let lens: Vec<f32> = f
        .lengths
        .unwrap()
        .to_array(&c)
        .unwrap()
        .iter()
        .copied()
        .collect();
    assert_eq!(lens, vec![3.0, 2.0, 0.0]);
}
