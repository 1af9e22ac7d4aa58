//! The device-level API (DeviceTensor, Recorder, the Layer contract): every layer's device
//! path against the CPU reference, forward and backward; in-place parameter updates taking
//! effect; one read-back per training step; foreign traces refused; a user-owned device
//! whose error handler the crate leaves alone.

mod common;

use std::sync::{Arc, Mutex};

use ndarray::{Array2, ArrayD};
use wgpu_rnn::nn::{DenseConfig, DenseParams, Embedding, EmbeddingConfig, GpuDense};
use wgpu_rnn::train::{GpuLoss, GpuOptimizer, LossKind, OptimizerConfig};
use wgpu_rnn::wgpu;
use wgpu_rnn::{
    Backend, Context, ConvLstm2d, ConvLstm2dConfig, DType, DeviceTensor, Error, Gru, GruConfig,
    Layer, Lstm, LstmConfig, OutputGrads, Recorder, SimpleRnn, SimpleRnnConfig, TensorMap,
};

const ATOL: f32 = 1e-5;
const RTOL: f32 = 1e-4;

fn ctx() -> Arc<Context> {
    match common::gpu() {
        Backend::Gpu(c) => c,
        Backend::Cpu => unreachable!("common::gpu() returns a GPU backend"),
    }
}

fn upload(c: &Context, a: &ndarray::ArrayD<f32>) -> DeviceTensor {
    DeviceTensor::from_array(c, a.view()).unwrap()
}

fn read(c: &Context, t: &DeviceTensor) -> ArrayD<f32> {
    t.to_array(c).unwrap()
}

/// Every named gradient buffer of `layer` against the CPU gradients under the same names.
fn check_grads(c: &Context, layer: &dyn Layer, want: &TensorMap) {
    let params = layer.params().unwrap();
    assert_eq!(params.len(), want.len(), "parameter count");
    for p in params {
        let w = want
            .get(&p.name)
            .unwrap_or_else(|| panic!("no CPU gradient named {}", p.name));
        let got = wgpu_rnn::train::read_buffer(c, &p.grad, p.len()).unwrap();
        let got = ArrayD::from_shape_vec(p.shape.clone(), got).unwrap();
        common::assert_close(
            &format!("grad {}", p.name),
            got.view(),
            w.view(),
            ATOL,
            RTOL,
        );
    }
}

#[test]
fn lstm_device_path_matches_cpu_batch_first_bidirectional() {
    let c = ctx();
    let mut cfg = LstmConfig::new(3, 4);
    cfg.num_layers = 2;
    cfg.bidirectional = true;
    cfg.batch_first = true;
    let gpu = Lstm::new(cfg, Backend::Gpu(c.clone()), 7).unwrap();
    let cpu = Lstm::new(cfg, Backend::Cpu, 7).unwrap();
    let (b, t) = (2, 5);
    let x = common::rand3((b, t, 3), 1, 1.0);
    let dy = common::rand3((b, t, 8), 2, 1.0);
    let dh = common::rand3((4, b, 4), 3, 1.0);
    let dc = common::rand3((4, b, 4), 4, 1.0);

    let mut rec = Recorder::new(&c);
    let xt = upload(&c, &x.clone().into_dyn());
    let f = gpu.record_forward(&mut rec, &xt, true).unwrap();
    let grads = OutputGrads {
        dy: Some(upload(&c, &dy.clone().into_dyn())),
        dstate: vec![
            Some(upload(&c, &dh.clone().into_dyn())),
            Some(upload(&c, &dc.clone().into_dyn())),
        ],
    };
    let dx = gpu
        .record_backward(&mut rec, f.tape.as_ref().unwrap(), &grads)
        .unwrap()
        .unwrap();
    rec.submit().unwrap();

    let (want, trace) = cpu.forward_train(x.view(), None, None).unwrap();
    let g = cpu
        .backward(&trace, dy.view(), Some((dh.view(), dc.view())))
        .unwrap();
    common::assert_close("y", read(&c, &f.y).view(), want.out.view(), ATOL, RTOL);
    common::assert_close(
        "h_n",
        read(&c, &f.state[0]).view(),
        want.h_n.view(),
        ATOL,
        RTOL,
    );
    common::assert_close(
        "c_n",
        read(&c, &f.state[1]).view(),
        want.c_n.view(),
        ATOL,
        RTOL,
    );
    common::assert_close("dx", read(&c, &dx).view(), g.dx.view(), ATOL, RTOL);
    check_grads(&c, &gpu, &g.weights);
}

fn keras_gru(reset_after: bool, go_backwards: bool) -> (GruConfig, TensorMap) {
    let mut cfg = GruConfig::new(3, 4);
    cfg.batch_first = true;
    cfg.reset_after = reset_after;
    cfg.go_backwards = go_backwards;
    let mut m = TensorMap::new();
    let r = |shape: &[usize], seed| {
        let n: usize = shape.iter().product();
        common::rand3((1, 1, n), seed, 0.5)
            .into_shape_with_order(shape.to_vec())
            .unwrap()
    };
    m.insert("kernel".into(), r(&[3, 12], 11));
    m.insert("recurrent_kernel".into(), r(&[4, 12], 12));
    let bias = if reset_after {
        r(&[2, 12], 13)
    } else {
        r(&[12], 13)
    };
    m.insert("bias".into(), bias);
    (cfg, m)
}

#[test]
fn keras_gru_device_path_matches_cpu_with_go_backwards_and_named_gradients() {
    let c = ctx();
    for (reset_after, go_backwards) in [(true, true), (false, false)] {
        let (cfg, m) = keras_gru(reset_after, go_backwards);
        let gpu = Gru::from_keras(cfg, &m, Backend::Gpu(c.clone())).unwrap();
        let cpu = Gru::from_keras(cfg, &m, Backend::Cpu).unwrap();
        let x = common::rand3((2, 6, 3), 21, 1.0);
        let dy = common::rand3((2, 6, 4), 22, 1.0);
        let mut rec = Recorder::new(&c);
        let f = gpu
            .record_forward(&mut rec, &upload(&c, &x.clone().into_dyn()), true)
            .unwrap();
        let dx = gpu
            .record_backward(
                &mut rec,
                f.tape.as_ref().unwrap(),
                &OutputGrads::output(upload(&c, &dy.clone().into_dyn())),
            )
            .unwrap()
            .unwrap();
        rec.submit().unwrap();
        let (want, trace) = cpu.forward_train(x.view(), None, None).unwrap();
        let g = cpu.backward(&trace, dy.view(), None).unwrap();
        let what = format!("reset_after {reset_after}");
        common::assert_close(&what, read(&c, &f.y).view(), want.out.view(), ATOL, RTOL);
        common::assert_close(&what, read(&c, &dx).view(), g.dx.view(), ATOL, RTOL);
        // Keras names and layouts: kernel (I, 3U), recurrent_kernel, bias.
        check_grads(&c, &gpu, &g.weights);
    }
}

#[test]
fn simple_rnn_device_lengths_match_cpu_packed_lengths() {
    let c = ctx();
    let cfg = SimpleRnnConfig::new(3, 5);
    let gpu = SimpleRnn::new(cfg, Backend::Gpu(c.clone()), 3).unwrap();
    let cpu = SimpleRnn::new(cfg, Backend::Cpu, 3).unwrap();
    let x = common::rand3((6, 3, 3), 31, 1.0);
    let lengths = [6usize, 2, 4];
    let lens = DeviceTensor::from_u32(&c, &[3], &[6, 2, 4]).unwrap();
    let mut rec = Recorder::new(&c);
    let f = gpu
        .record_forward_with(
            &mut rec,
            &upload(&c, &x.clone().into_dyn()),
            None,
            Some(&lens),
            false,
        )
        .unwrap();
    rec.submit().unwrap();
    let want = cpu.forward(x.view(), None, Some(&lengths)).unwrap();
    common::assert_close("y", read(&c, &f.y).view(), want.out.view(), ATOL, RTOL);
    common::assert_close(
        "h_n",
        read(&c, &f.state[0]).view(),
        want.h_n.view(),
        ATOL,
        RTOL,
    );
}

#[test]
fn dense_time_distributed_device_path_matches_cpu() {
    let c = ctx();
    let cfg = DenseConfig::new(4, 3, wgpu_rnn::Activation::Tanh).unwrap();
    let p = DenseParams::<f32>::random(cfg, 5, 0.5).unwrap();
    let gpu = GpuDense::new(c.clone(), &p).unwrap();
    let x = common::rand3((2, 3, 4), 41, 1.0);
    let dy = common::rand3((2, 3, 3), 42, 1.0);
    let mut rec = Recorder::new(&c);
    let f =
        Layer::record_forward(&gpu, &mut rec, &upload(&c, &x.clone().into_dyn()), true).unwrap();
    let dx = Layer::record_backward(
        &gpu,
        &mut rec,
        f.tape.as_ref().unwrap(),
        &OutputGrads::output(upload(&c, &dy.clone().into_dyn())),
    )
    .unwrap()
    .unwrap();
    rec.submit().unwrap();
    let y = p.forward_seq(x.view()).unwrap();
    let g = p.backward_seq(x.view(), y.view(), dy.view()).unwrap();
    common::assert_close("y", read(&c, &f.y).view(), y.view(), ATOL, RTOL);
    common::assert_close("dx", read(&c, &dx).view(), g.dx.view(), ATOL, RTOL);
    let mut want = TensorMap::new();
    want.insert("weight".into(), g.weight.into_dyn());
    want.insert("bias".into(), g.bias.into_dyn());
    check_grads(&c, &gpu, &want);
}

#[test]
fn embedding_matches_cpu_with_repeated_tokens_and_mask_lengths() {
    let c = ctx();
    let cfg = EmbeddingConfig {
        input_dim: 7,
        output_dim: 3,
        mask_zero: true,
    };
    let table = Array2::from_shape_fn((7, 3), |(i, j)| (i * 3 + j) as f32 * 0.1 - 1.0);
    let emb = Embedding::new(c.clone(), cfg, table.view()).unwrap();
    let tokens = ndarray::arr2(&[[3u32, 5, 3, 0, 0], [6, 6, 6, 1, 0], [0, 2, 0, 2, 4]]);
    let dy = common::rand3((3, 5, 3), 51, 1.0);
    let want_y = wgpu_rnn::nn::embedding::embedding_forward(table.view(), tokens.view()).unwrap();
    let want_g = wgpu_rnn::nn::embedding::embedding_backward(tokens.view(), dy.view(), 7).unwrap();
    assert_eq!(emb.forward(tokens.view()).unwrap(), want_y);
    let g = emb.backward(tokens.view(), dy.view()).unwrap();
    common::assert_close(
        "d embeddings",
        g.view().into_dyn(),
        want_g.view(),
        ATOL,
        RTOL,
    );
    // mask_zero lengths: 1 + the last non-zero position.
    let x = emb.upload_tokens(tokens.view()).unwrap();
    let mut rec = Recorder::new(&c);
    let f = emb.record_forward(&mut rec, &x, false).unwrap();
    rec.submit().unwrap();
    let lens = f.lengths.expect("mask_zero gives lengths");
    assert_eq!(lens.dtype(), DType::U32);
    let got: Vec<usize> = read(&c, &lens).iter().map(|&v| v as usize).collect();
    assert_eq!(got, wgpu_rnn::nn::embedding::mask_lengths(tokens.view()));
    assert_eq!(got, vec![3, 4, 5]);
    // Token ids outside the vocabulary are refused before upload.
    let bad = ndarray::arr2(&[[7u32]]);
    assert!(matches!(emb.forward(bad.view()), Err(Error::Shape(_))));
}

#[test]
fn convlstm_device_path_matches_cpu_last_step_go_backwards() {
    let c = ctx();
    let mut cfg = ConvLstm2dConfig::new(4, 5, 2, 3, (3, 3));
    cfg.padding = wgpu_rnn::Padding::Same;
    cfg.go_backwards = true;
    let gpu = ConvLstm2d::new(cfg, Backend::Gpu(c.clone()), 9).unwrap();
    let cpu = ConvLstm2d::new(cfg, Backend::Cpu, 9).unwrap();
    let x = common::rand3((1, 1, 2 * 3 * 4 * 5 * 2), 61, 1.0)
        .into_shape_with_order((2, 3, 4, 5, 2))
        .unwrap();
    let dy = common::rand3((1, 1, 2 * 4 * 5 * 3), 62, 1.0)
        .into_shape_with_order((2, 4, 5, 3))
        .unwrap();
    let mut rec = Recorder::new(&c);
    let f = gpu
        .record_forward(&mut rec, &upload(&c, &x.clone().into_dyn()), true)
        .unwrap();
    let dx = gpu
        .record_backward(
            &mut rec,
            f.tape.as_ref().unwrap(),
            &OutputGrads::output(upload(&c, &dy.clone().into_dyn())),
        )
        .unwrap()
        .unwrap();
    rec.submit().unwrap();
    let (want, trace) = cpu.forward_train(x.view(), None).unwrap();
    let g = cpu.backward(&trace, dy.view().into_dyn(), None).unwrap();
    common::assert_close("y", read(&c, &f.y).view(), want.out.view(), ATOL, RTOL);
    common::assert_close("dx", read(&c, &dx).view(), g.dx.view(), ATOL, RTOL);
    check_grads(&c, &gpu, &g.weights);
}

#[test]
fn in_place_updates_take_effect_in_the_next_forward() {
    let c = ctx();
    let cfg = LstmConfig::new(2, 3);
    let gpu = Lstm::new(cfg, Backend::Gpu(c.clone()), 1).unwrap();
    let x = common::rand3((4, 2, 2), 71, 1.0);
    // One SGD step (lr 0.5) on every parameter, with the gradient of L = Σ out.
    let params = gpu.params().unwrap();
    let lens: Vec<usize> = params.iter().map(|p| p.len()).collect();
    let mut opt = GpuOptimizer::new(&c, OptimizerConfig::sgd(0.5, 0.0, false), &lens).unwrap();
    let mut rec = Recorder::new(&c);
    let xt = upload(&c, &x.clone().into_dyn());
    let f = gpu.record_forward(&mut rec, &xt, true).unwrap();
    let ones = DeviceTensor::from_f32(&c, &[4, 2, 3], &[1.0; 24]).unwrap();
    gpu.record_backward(
        &mut rec,
        f.tape.as_ref().unwrap(),
        &OutputGrads::output(ones),
    )
    .unwrap();
    let pairs: Vec<_> = params.iter().map(|p| (&p.param, &p.grad)).collect();
    opt.record_step(&mut rec, &pairs).unwrap();
    rec.submit().unwrap();
    // The weights moved; a CPU layer built from them must give the GPU's next forward.
    let before = Lstm::new(cfg, Backend::Cpu, 1).unwrap().weights().unwrap();
    let after = gpu.weights().unwrap();
    let moved: f32 = before
        .iter()
        .map(|(k, v)| (v - &after[k]).iter().map(|d| d.abs()).sum::<f32>())
        .sum();
    assert!(moved > 1e-3, "the SGD step moved the weights by {moved}");
    let cpu = Lstm::from_torch(cfg, &after, Backend::Cpu).unwrap();
    let want = cpu.forward(x.view(), None, None).unwrap();
    let got = gpu.forward(x.view(), None, None).unwrap();
    common::assert_close(
        "y after the update",
        got.out.view().into_dyn(),
        want.out.view(),
        ATOL,
        RTOL,
    );
}

#[test]
fn foreign_traces_are_typed_errors_on_every_backend() {
    let c = ctx();
    let cfg = LstmConfig::new(2, 3);
    let x = common::rand3((4, 2, 2), 81, 1.0);
    for backend in [Backend::Gpu(c.clone()), Backend::Cpu] {
        let a = Lstm::new(cfg, backend.clone(), 1).unwrap();
        let b = Lstm::new(cfg, backend.clone(), 1).unwrap();
        let (y, trace) = a.forward_train(x.view(), None, None).unwrap();
        let e = b.backward(&trace, y.out.view(), None).unwrap_err();
        assert!(
            matches!(e, Error::Config(_)) && e.to_string().contains("layer"),
            "{e}"
        );
    }
    // Device tapes too, also across layer kinds.
    let a = Lstm::new(cfg, Backend::Gpu(c.clone()), 1).unwrap();
    let b = Lstm::new(cfg, Backend::Gpu(c.clone()), 1).unwrap();
    let dense = GpuDense::new(
        c.clone(),
        &DenseParams::random(
            DenseConfig::new(3, 1, wgpu_rnn::Activation::Linear).unwrap(),
            1,
            0.5,
        )
        .unwrap(),
    )
    .unwrap();
    let mut rec = Recorder::new(&c);
    let f = a
        .record_forward(&mut rec, &upload(&c, &x.clone().into_dyn()), true)
        .unwrap();
    let tape = f.tape.unwrap();
    let g = OutputGrads::output(f.y.clone());
    let e = b.record_backward(&mut rec, &tape, &g).unwrap_err();
    assert!(matches!(e, Error::Config(_)), "{e}");
    let e = Layer::record_backward(&dense, &mut rec, &tape, &g).unwrap_err();
    assert!(matches!(e, Error::Config(_)), "{e}");
    // A tensor from another context is refused by name.
    let other = Context::new().unwrap();
    let foreign = DeviceTensor::from_array(&other, x.view()).unwrap();
    let e = a.record_forward(&mut rec, &foreign, false).unwrap_err();
    assert!(e.to_string().contains("context"), "{e}");
}

/// A training step Embedding → LSTM → Dense(1, sigmoid) → BCE → Adam, recorded once:
/// exactly one read-back (the loss), counted by the context.
#[test]
fn a_training_step_is_one_submit_and_one_read_back() {
    // A context of its own: the shared one counts the other tests' transfers too.
    let c = Arc::new(Context::new().expect("GPU tests need an adapter"));
    let emb = Embedding::random(c.clone(), EmbeddingConfig::new(10, 4), 1).unwrap();
    let mut lcfg = LstmConfig::new(4, 5);
    lcfg.batch_first = true;
    let lstm = Lstm::new(lcfg, Backend::Gpu(c.clone()), 2).unwrap();
    let dense = GpuDense::new(
        c.clone(),
        &DenseParams::random(
            DenseConfig::new(5, 1, wgpu_rnn::Activation::Sigmoid).unwrap(),
            3,
            0.5,
        )
        .unwrap(),
    )
    .unwrap();
    let mut params = emb.params().unwrap();
    params.extend(lstm.params().unwrap());
    params.extend(Layer::params(&dense).unwrap());
    let lens: Vec<usize> = params.iter().map(|p| p.len()).collect();
    let mut cfg = OptimizerConfig::adam(1e-2);
    cfg.clip_norm = Some(1.0);
    let mut opt = GpuOptimizer::new(&c, cfg, &lens).unwrap();
    let loss = GpuLoss::new(
        &c,
        LossKind::BinaryCrossEntropy { from_logits: false },
        &[3, 1],
    )
    .unwrap();
    let tokens = emb
        .upload_tokens(ndarray::arr2(&[[1u32, 2, 3], [4, 5, 6], [7, 8, 9]]).view())
        .unwrap();
    let target = DeviceTensor::from_f32(&c, &[3, 1], &[1.0, 0.0, 1.0]).unwrap();
    let dpred = DeviceTensor::zeros(&c, &[3, 1], DType::F32).unwrap();

    let mut losses = Vec::new();
    for step in 0..3 {
        let before = c.totals();
        let mut rec = Recorder::new(&c);
        let e = emb.record_forward(&mut rec, &tokens, true).unwrap();
        let l = lstm.record_forward(&mut rec, &e.y, true).unwrap();
        let h = l.state[0].reshape(&[3, 5]).unwrap();
        let d = Layer::record_forward(&dense, &mut rec, &h, true).unwrap();
        loss.record(&mut rec, d.y.buffer(), target.buffer(), dpred.buffer())
            .unwrap();
        let dh = Layer::record_backward(
            &dense,
            &mut rec,
            d.tape.as_ref().unwrap(),
            &OutputGrads::output(dpred.clone()),
        )
        .unwrap()
        .unwrap();
        let dh = dh.reshape(&[1, 3, 5]).unwrap();
        let de = lstm
            .record_backward(
                &mut rec,
                l.tape.as_ref().unwrap(),
                &OutputGrads::final_state(dh),
            )
            .unwrap()
            .unwrap();
        emb.record_backward(&mut rec, e.tape.as_ref().unwrap(), &OutputGrads::output(de))
            .unwrap();
        let pairs: Vec<_> = params.iter().map(|p| (&p.param, &p.grad)).collect();
        opt.record_step(&mut rec, &pairs).unwrap();
        let stats = rec.submit().unwrap();
        losses.push(loss.read_value(&c).unwrap());
        let k = step;
        let step = c.totals().since(&before);
        assert_eq!(step.read_backs, 1, "read-backs per step");
        assert_eq!(step.submits, 1, "submits per step");
        assert_eq!(step.dispatches, stats.dispatches);
        // The first step also uploads the layer's all-T lengths, kept for the next ones.
        if k > 0 {
            assert_eq!(step.uploads, 0, "uploads per step after the first");
        }
    }
    assert!(losses[2] < losses[0], "Adam lowered the loss: {losses:?}");
}

#[test]
fn from_device_leaves_the_application_error_handler_alone() {
    let inst = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    // The test binary's own adapter: what a downstream application would do.
    let adapter = pollster::block_on(inst.request_adapter(&wgpu::RequestAdapterOptions::default()))
        .expect("GPU tests need an adapter (scripts/test.sh installs lavapipe)");
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        required_limits: adapter.limits(),
        ..Default::default()
    }))
    .unwrap();
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink = seen.clone();
    device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
        sink.lock().unwrap().push(e.to_string());
    }));
    let ctx = Arc::new(Context::from_device(adapter, device.clone(), queue).unwrap());
    let lstm = Lstm::new(LstmConfig::new(2, 3), Backend::Gpu(ctx.clone()), 1).unwrap();
    let x = common::rand3((3, 1, 2), 91, 1.0);
    lstm.forward(x.view(), None, None).unwrap();
    // The application's own invalid work: its handler must hear of it ...
    let _bad = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("app's invalid buffer"),
        size: 16,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::STORAGE,
        mapped_at_creation: false,
    });
    device.poll(wgpu::PollType::wait_indefinitely()).unwrap();
    assert_eq!(
        seen.lock().unwrap().len(),
        1,
        "the app's handler got its error"
    );
    // ... and the crate's next call must not fail with the app's error.
    let y = lstm.forward(x.view(), None, None).unwrap();
    let cpu = Lstm::new(LstmConfig::new(2, 3), Backend::Cpu, 1).unwrap();
    let want = cpu.forward(x.view(), None, None).unwrap();
    common::assert_close("y", y.out.view().into_dyn(), want.out.view(), ATOL, RTOL);
    assert_eq!(
        seen.lock().unwrap().len(),
        1,
        "the crate raised nothing through it"
    );
}

#[test]
fn a_device_that_cannot_run_the_kernels_is_refused_by_name() {
    let limits = wgpu::Limits {
        max_storage_buffers_per_shader_stage: 4,
        ..wgpu::Limits::default()
    };
    let e = wgpu_rnn::context::check_limits(&limits).unwrap_err();
    assert!(
        matches!(e, Error::Limit(_))
            && e.to_string()
                .contains("max_storage_buffers_per_shader_stage = 4")
            && e.to_string().contains("at least 8"),
        "{e}"
    );
    wgpu_rnn::context::check_limits(&wgpu::Limits::default()).unwrap();
}

/// Runs a training forward and backward of `layer` on device copies of `x` and `dy` in one
/// submit; returns (y, dx) read back.
fn device_fwd_bwd(
    c: &Context,
    layer: &dyn Layer,
    x: &ArrayD<f32>,
    dy: &ArrayD<f32>,
) -> (ArrayD<f32>, ArrayD<f32>) {
    let mut rec = Recorder::new(c);
    let f = layer.record_forward(&mut rec, &upload(c, x), true).unwrap();
    let dx = layer
        .record_backward(
            &mut rec,
            f.tape.as_ref().unwrap(),
            &OutputGrads::output(upload(c, dy)),
        )
        .unwrap()
        .unwrap();
    rec.submit().unwrap();
    (read(c, &f.y), read(c, &dx))
}

#[test]
fn simple_rnn_relu_device_backward_matches_cpu() {
    let c = ctx();
    let mut cfg = SimpleRnnConfig::new(3, 4);
    cfg.nonlinearity = wgpu_rnn::Nonlinearity::Relu;
    cfg.num_layers = 2;
    let gpu = SimpleRnn::new(cfg, Backend::Gpu(c.clone()), 4).unwrap();
    let cpu = SimpleRnn::new(cfg, Backend::Cpu, 4).unwrap();
    let x = common::rand3((5, 2, 3), 101, 1.0);
    let dy = common::rand3((5, 2, 4), 102, 1.0);
    let (y, dx) = device_fwd_bwd(&c, &gpu, &x.clone().into_dyn(), &dy.clone().into_dyn());
    let (want, trace) = cpu.forward_train(x.view(), None, None).unwrap();
    let g = cpu.backward(&trace, dy.view(), None).unwrap();
    common::assert_close("y", y.view(), want.out.view(), ATOL, RTOL);
    common::assert_close("dx", dx.view(), g.dx.view(), ATOL, RTOL);
    check_grads(&c, &gpu, &g.weights);
}

#[test]
fn conv_head_device_path_matches_cpu() {
    use wgpu_rnn::nn::{ConvHeadConfig, ConvHeadParams, GpuConvHead};
    let c = ctx();
    let cfg = ConvHeadConfig::new(2, 1, (3, 3), wgpu_rnn::Activation::Sigmoid).unwrap();
    let p = ConvHeadParams::<f32>::random(cfg, 8, 0.5).unwrap();
    let gpu = GpuConvHead::new(c.clone(), &p).unwrap();
    let x = common::rand3((1, 1, 2 * 2 * 3 * 4 * 2), 111, 1.0)
        .into_shape_with_order(vec![2, 2, 3, 4, 2])
        .unwrap();
    let dy = common::rand3((1, 1, 2 * 2 * 3 * 4), 112, 1.0)
        .into_shape_with_order(vec![2, 2, 3, 4, 1])
        .unwrap();
    let (y, dx) = device_fwd_bwd(&c, &gpu, &x, &dy);
    let x5 = x.view().into_dimensionality().unwrap();
    let want = p.forward(x5).unwrap();
    let g = p
        .backward(x5, want.view(), dy.view().into_dimensionality().unwrap())
        .unwrap();
    common::assert_close("y", y.view(), want.view(), ATOL, RTOL);
    common::assert_close("dx", dx.view(), g.dx.view(), ATOL, RTOL);
    let mut named = TensorMap::new();
    named.insert("kernel".into(), g.kernel.into_dyn());
    named.insert("bias".into(), g.bias.into_dyn());
    check_grads(&c, &gpu, &named);
}

#[test]
fn convlstm_stack_device_path_matches_cpu() {
    use wgpu_rnn::ConvLstm2dStack;
    let c = ctx();
    let mut a = ConvLstm2dConfig::new(4, 4, 1, 2, (3, 3));
    a.padding = wgpu_rnn::Padding::Same;
    a.return_sequences = true;
    let mut b = ConvLstm2dConfig::new(4, 4, 2, 3, (1, 1));
    b.return_sequences = true;
    let stack = |backend: Backend| {
        ConvLstm2dStack::new(vec![
            ConvLstm2d::new(a, backend.clone(), 1).unwrap(),
            ConvLstm2d::new(b, backend, 2).unwrap(),
        ])
        .unwrap()
    };
    let (gpu, cpu) = (stack(Backend::Gpu(c.clone())), stack(Backend::Cpu));
    let x = common::rand3((1, 1, 2 * 3 * 16), 121, 1.0)
        .into_shape_with_order(vec![2, 3, 4, 4, 1])
        .unwrap();
    let dy = common::rand3((1, 1, 2 * 3 * 16 * 3), 122, 1.0)
        .into_shape_with_order(vec![2, 3, 4, 4, 3])
        .unwrap();
    let (y, dx) = device_fwd_bwd(&c, &gpu, &x, &dy);
    let (want, trace) = cpu
        .forward_train(x.view().into_dimensionality().unwrap())
        .unwrap();
    let g = cpu.backward(&trace, dy.view()).unwrap();
    common::assert_close("y", y.view(), want.out.view(), ATOL, RTOL);
    common::assert_close("dx", dx.view(), g.dx.view(), ATOL, RTOL);
    let mut named = TensorMap::new();
    for (i, m) in g.layers.into_iter().enumerate() {
        for (k, v) in m {
            named.insert(format!("{i}.{k}"), v);
        }
    }
    check_grads(&c, &gpu, &named);
}

#[test]
fn other_gate_activations_are_gpu_only_and_named_on_the_cpu() {
    let mut cfg = LstmConfig::new(2, 3);
    cfg.recurrent_activation = wgpu_rnn::Activation::HardSigmoid;
    let e = Lstm::new(cfg, Backend::Cpu, 1).err().unwrap();
    assert!(
        matches!(e, Error::Unsupported(_)) && e.to_string().contains("HardSigmoid"),
        "{e}"
    );
    // On the GPU the layer builds, and differs from the sigmoid one.
    let c = ctx();
    let x = common::rand3((4, 2, 2), 131, 1.0);
    let hard = Lstm::new(cfg, Backend::Gpu(c.clone()), 1).unwrap();
    let soft = Lstm::new(LstmConfig::new(2, 3), Backend::Gpu(c), 1).unwrap();
    let a = hard.forward(x.view(), None, None).unwrap().out;
    let b = soft.forward(x.view(), None, None).unwrap().out;
    let diff: f32 = (&a - &b).iter().map(|d| d.abs()).sum();
    assert!(
        diff > 1e-3,
        "hard_sigmoid gates changed the output by {diff}"
    );
}

#[test]
fn embedding_sizes_are_checked_before_allocation() {
    let c = ctx();
    let cfg = EmbeddingConfig::new(1 << 20, 1 << 13);
    let e = Embedding::random(c.clone(), cfg, 1).err().unwrap();
    assert!(
        matches!(e, Error::Limit(_)) && e.to_string().contains("u32"),
        "{e}"
    );
    let e = Embedding::random(c, EmbeddingConfig::new(0, 4), 1)
        .err()
        .unwrap();
    assert!(matches!(e, Error::Config(_)), "{e}");
}
