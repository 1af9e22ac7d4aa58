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

/// (x with zeros at masked steps, spans) for rows padded before, after, both, or not at all.
fn padded(b: usize, t: usize, f: usize, spans: &[(usize, usize)], seed: u64) -> Array3<f32> {
    let mut x = common::rand3((b, t, f), seed, 1.0);
    for (row, &(lo, hi)) in spans.iter().enumerate() {
        for step in 0..t {
            if step < lo || step >= hi {
                x.slice_mut(s![row, step, ..]).fill(0.0);
            }
        }
    }
    x
}

/// Keras semantics from per-row CPU runs: (out, h_n per row, dx, summed weight gradients).
fn reference<F>(
    x: &Array3<f32>,
    dy: &Array3<f32>,
    spans: &[(usize, usize)],
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
    for (row, &(lo, hi)) in spans.iter().enumerate() {
        let l = hi - lo;
        let start = if o.go_backwards { t - hi } else { lo };
        let src = |k: usize| if o.go_backwards { hi - 1 - k } else { lo + k };
        let mut xs = Array3::zeros((1, l, x.dim().2));
        let mut dys = Array3::zeros((1, l, h));
        for k in 0..l {
            xs.slice_mut(s![0, k, ..])
                .assign(&x.slice(s![row, src(k), ..]));
            dys.slice_mut(s![0, k, ..])
                .assign(&dy.slice(s![row, start + k, ..]));
        }
        if !o.zero_output_for_mask {
            for step in start + l..t {
                let add = dy.slice(s![row, step, ..]).to_owned();
                let mut last = dys.slice_mut(s![0, l - 1, ..]);
                last += &add;
            }
        }
        let (y, hn, dxs, g) = run(xs, dys);
        for k in 0..l {
            out.slice_mut(s![row, start + k, ..])
                .assign(&y.slice(s![0, k, ..]));
            dx.slice_mut(s![row, src(k), ..])
                .assign(&dxs.slice(s![0, k, ..]));
        }
        if !o.zero_output_for_mask {
            for step in start + l..t {
                let last = y.slice(s![0, l - 1, ..]).to_owned();
                out.slice_mut(s![row, step, ..]).assign(&last);
            }
        }
        h_n.push(hn);
        for (k, v) in g {
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
fn lstm_pre_and_post_padding_carry_state_and_outputs() {
    let c = ctx();
    let mut cfg = LstmConfig::new(3, 4);
    cfg.batch_first = true;
    let gpu = Lstm::new(cfg, Backend::Gpu(c.clone()), 5).unwrap();
    let cpu = Lstm::new(cfg, Backend::Cpu, 5).unwrap();
    let spans = [(2, 7), (0, 4), (1, 5), (0, 7)];
    let x = padded(4, 7, 3, &spans, 1);
    let dy = common::rand3((4, 7, 4), 2, 1.0);
    let o = MaskOptions::default();
    let (y, h_n, dx) = run_device(&c, &gpu, o, &x, &dy);
    let (want_y, want_h, want_dx, want_g) = reference(&x, &dy, &spans, o, |xs, dys| {
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
    let spans = [(3, 6), (0, 2), (0, 6)];
    let x = padded(3, 6, 2, &spans, 3);
    let dy = common::rand3((3, 6, 3), 4, 1.0);
    let o = MaskOptions {
        go_backwards: true,
        zero_output_for_mask: true,
    };
    let (y, _, dx) = run_device(&c, &gpu, o, &x, &dy);
    let (want_y, _, want_dx, want_g) = reference(&x, &dy, &spans, o, |xs, dys| {
        let (f, tr) = cpu.forward_train(xs.view(), None, None).unwrap();
        let g = cpu.backward(&tr, dys.view(), None).unwrap();
        (f.out, f.h_n.into_dyn(), g.dx, g.weights)
    });
    common::assert_close("out", y.view(), want_y.view(), ATOL, RTOL);
    common::assert_close("dx", dx.view(), want_dx.view(), ATOL, RTOL);
    check_grads(&c, &gpu, &want_g);
}

#[test]
fn token_masks_give_the_spans_of_non_zero_ids() {
    let c = ctx();
    let tokens =
        DeviceTensor::from_u32(&c, &[3, 5], &[0, 0, 4, 2, 9, 3, 1, 0, 0, 0, 0, 0, 0, 0, 0])
            .unwrap();
    let mut rec = Recorder::new(&c);
    let mask = SeqMask::from_tokens(&mut rec, &tokens).unwrap();
    // The lengths are copied out when a masked layer records; a plain copy here does that.
    let spare = DeviceTensor::from_f32(&c, &[3, 5, 1], &[1.0; 15]).unwrap();
    let mut cfg = LstmConfig::new(1, 2);
    cfg.batch_first = true;
    let l = Lstm::new(cfg, Backend::Gpu(c.clone()), 1).unwrap();
    MaskedRecurrent {
        layer: &l,
        options: MaskOptions::default(),
    }
    .record_forward(&mut rec, &spare, &mask, false)
    .unwrap();
    rec.submit().unwrap();
    let lens: Vec<f32> = mask
        .lengths()
        .to_array(&c)
        .unwrap()
        .iter()
        .copied()
        .collect();
    assert_eq!(lens, vec![3.0, 2.0, 0.0]);
}
