//! Dense / TimeDistributed Dense and the per-frame convolution head (`wgpu_rnn::nn`): GPU
//! against the CPU reference for the forward and every gradient
//! (`|gpu - cpu| ≤ atol + rtol·|cpu|`), the f64 CPU backward against central finite
//! differences (entry-wise and norm bounds, and a vanishing gradient fails), shapes that are
//! not multiples of the 64-wide tiles, imports, device parameter buffers, and errors that
//! name the bad value.

mod common;
#[path = "support/common.rs"]
mod common_support;

use std::sync::Arc;

use common_support::{Rng, compare, moved, numeric};
use ndarray::{Array, Array1, Array2, Array3, Array4, Array5, Dimension};
use wgpu_rnn::cpu::Activation;
use wgpu_rnn::nn::{
    ConvHeadConfig, ConvHeadParams, DenseConfig, DenseParams, GpuConvHead, GpuDense,
};
use wgpu_rnn::{Backend, Context, Error};

const ATOL: f32 = 1e-5;
const RTOL: f32 = 1e-4;
/// Weight and bias gradients sum over every row / output pixel: allow for f32 summation
/// order (the reference and the tiled kernels add in different orders).
const WATOL: f32 = 1e-4;

const ACTIVATIONS: [Activation; 5] = [
    Activation::Linear,
    Activation::Sigmoid,
    Activation::Tanh,
    Activation::Relu,
    Activation::HardSigmoid,
];

fn ctx() -> Arc<Context> {
    match common::gpu() {
        Backend::Gpu(c) => c,
        Backend::Cpu => panic!("common::gpu() must return a GPU backend"),
    }
}

fn rand<D: Dimension>(shape: D, seed: u64, scale: f64) -> Array<f64, D> {
    let mut r = Rng(seed);
    Array::from_shape_simple_fn(shape, || scale * r.next())
}

fn f32s<D: Dimension>(a: &Array<f64, D>) -> Array<f32, D> {
    a.mapv(|v| v as f32)
}

fn close<D: Dimension>(what: &str, got: &Array<f32, D>, want: &Array<f32, D>, atol: f32) {
    common::assert_close(what, got.view().into_dyn(), want.view(), atol, RTOL);
}

// ---------------------------------------------------------------------------------------
// GPU against the CPU reference

#[test]
fn dense_gpu_matches_cpu_for_every_activation() {
    // 70 rows, 13 inputs, 67 outputs: none a multiple of the 64×64 GEMM tile.
    let (n, i, o) = (70, 13, 67);
    for (k, act) in ACTIVATIONS.into_iter().enumerate() {
        let cfg = DenseConfig::new(i, o, act).unwrap();
        let p = DenseParams::<f32>::random(cfg, 10 + k as u64, 0.5).unwrap();
        let x = f32s(&rand(ndarray::Ix2(n, i), 20 + k as u64, 1.0));
        let dy = f32s(&rand(ndarray::Ix2(n, o), 30 + k as u64, 1.0));
        let gpu = GpuDense::new(ctx(), &p).unwrap();
        let y_cpu = p.forward(x.view()).unwrap();
        let y_gpu = gpu.forward(x.view()).unwrap();
        close(&format!("{act:?} y"), &y_gpu, &y_cpu, ATOL);
        let g_cpu = p.backward(x.view(), y_cpu.view(), dy.view()).unwrap();
        let g_gpu = gpu.backward(x.view(), y_cpu.view(), dy.view()).unwrap();
        close(&format!("{act:?} dx"), &g_gpu.dx, &g_cpu.dx, ATOL);
        close(&format!("{act:?} dW"), &g_gpu.weight, &g_cpu.weight, WATOL);
        close(&format!("{act:?} db"), &g_gpu.bias, &g_cpu.bias, WATOL);
        assert!(
            g_cpu.weight.iter().any(|v| v.abs() > 1e-2),
            "{act:?}: dW ~ 0"
        );
    }
}

#[test]
fn time_distributed_dense_gpu_matches_cpu() {
    let (b, t, i, o) = (3, 5, 9, 6);
    let cfg = DenseConfig::new(i, o, Activation::Tanh).unwrap();
    let p = DenseParams::<f32>::random(cfg, 3, 0.5).unwrap();
    let x = f32s(&rand(ndarray::Ix3(b, t, i), 4, 1.0));
    let dy = f32s(&rand(ndarray::Ix3(b, t, o), 5, 1.0));
    let gpu = GpuDense::new(ctx(), &p).unwrap();
    let y_cpu = p.forward_seq(x.view()).unwrap();
    assert_eq!(y_cpu.dim(), (b, t, o));
    // TimeDistributed is the same map at every step.
    let step = p
        .forward(x.slice(ndarray::s![1, 3, ..]).insert_axis(ndarray::Axis(0)))
        .unwrap();
    close(
        "step (1, 3)",
        &step.row(0).to_owned(),
        &y_cpu.slice(ndarray::s![1, 3, ..]).to_owned(),
        1e-6,
    );
    close("y", &gpu.forward_seq(x.view()).unwrap(), &y_cpu, ATOL);
    let g_cpu = p.backward_seq(x.view(), y_cpu.view(), dy.view()).unwrap();
    let g_gpu = gpu.backward_seq(x.view(), y_cpu.view(), dy.view()).unwrap();
    close("dx", &g_gpu.dx, &g_cpu.dx, ATOL);
    close("dW", &g_gpu.weight, &g_cpu.weight, WATOL);
    close("db", &g_gpu.bias, &g_cpu.bias, WATOL);
}

fn check_conv_head(cfg: ConvHeadConfig, (b, t, h, w): (usize, usize, usize, usize), seed: u64) {
    let p = ConvHeadParams::<f32>::random(cfg, seed, 0.5).unwrap();
    let x = f32s(&rand(
        ndarray::Ix5(b, t, h, w, cfg.in_channels),
        seed + 1,
        1.0,
    ));
    let dy = f32s(&rand(
        ndarray::Ix5(b, t, h, w, cfg.out_channels),
        seed + 2,
        1.0,
    ));
    let gpu = GpuConvHead::new(ctx(), &p).unwrap();
    let tag = format!("{:?} {:?}", cfg.kernel, cfg.activation);
    let y_cpu = p.forward(x.view()).unwrap();
    close(
        &format!("{tag} y"),
        &gpu.forward(x.view()).unwrap(),
        &y_cpu,
        ATOL,
    );
    let g_cpu = p.backward(x.view(), y_cpu.view(), dy.view()).unwrap();
    let g_gpu = gpu.backward(x.view(), y_cpu.view(), dy.view()).unwrap();
    close(&format!("{tag} dx"), &g_gpu.dx, &g_cpu.dx, ATOL);
    close(&format!("{tag} dK"), &g_gpu.kernel, &g_cpu.kernel, WATOL);
    close(&format!("{tag} db"), &g_gpu.bias, &g_cpu.bias, WATOL);
    assert!(g_cpu.dx.iter().any(|v| v.abs() > 1e-3), "{tag}: dx ~ 0");
    // Forward and backward chained on device buffers in one submission.
    let (y1, g1) = gpu.forward_backward(x.view(), dy.view()).unwrap();
    close(&format!("{tag} chained y"), &y1, &y_cpu, ATOL);
    close(&format!("{tag} chained dx"), &g1.dx, &g_cpu.dx, ATOL);
    close(
        &format!("{tag} chained dK"),
        &g1.kernel,
        &g_cpu.kernel,
        WATOL,
    );
    close(&format!("{tag} chained db"), &g1.bias, &g_cpu.bias, WATOL);
}

#[test]
fn conv_head_gpu_matches_cpu() {
    // The ConvLSTM next-frame head: 3×3, F → 1, sigmoid; non-square frames, B·T·H·W = 210.
    let head = ConvHeadConfig::new(6, 1, (3, 3), Activation::Sigmoid).unwrap();
    check_conv_head(head, (2, 3, 5, 7), 40);
    // Even, non-square kernel (TF puts the extra padding bottom/right), several outputs,
    // logits (linear), 66 output channels: more than one 64-wide column tile.
    let wide = ConvHeadConfig::new(3, 66, (2, 4), Activation::Linear).unwrap();
    check_conv_head(wide, (1, 2, 4, 3), 50);
    let tanh = ConvHeadConfig::new(2, 3, (5, 1), Activation::Tanh).unwrap();
    check_conv_head(tanh, (2, 1, 6, 2), 60);
}

// ---------------------------------------------------------------------------------------
// f64 CPU backward against central finite differences of L = Σ dy ⊙ y

#[test]
fn dense_cpu_gradients_match_finite_differences() {
    let (n, i, o) = (4, 5, 3);
    for (k, act) in ACTIVATIONS.into_iter().enumerate() {
        let cfg = DenseConfig::new(i, o, act).unwrap();
        let p = DenseParams::<f64>::random(cfg, 70 + k as u64, 0.8).unwrap();
        let x: Array2<f64> = rand(ndarray::Ix2(n, i), 80 + k as u64, 1.0);
        let dy: Array2<f64> = rand(ndarray::Ix2(n, o), 90 + k as u64, 1.0);
        let loss =
            |p: &DenseParams<f64>, x: &Array2<f64>| (p.forward(x.view()).unwrap() * &dy).sum();
        let y = p.forward(x.view()).unwrap();
        let g = p.backward(x.view(), y.view(), dy.view()).unwrap();
        let tag = format!("{act:?}");
        let ndx = numeric(&[n, i], |e, d| loss(&p, &moved(&x, e, d)));
        compare(&format!("{tag} dx"), g.dx.view().into_dyn(), &ndx, true);
        let ndw = numeric(&[o, i], |e, d| {
            let mut q = p.clone();
            q.weight = moved(&p.weight, e, d);
            loss(&q, &x)
        });
        compare(&format!("{tag} dW"), g.weight.view().into_dyn(), &ndw, true);
        let ndb = numeric(&[o], |e, d| {
            let mut q = p.clone();
            q.bias = moved(&p.bias, e, d);
            loss(&q, &x)
        });
        compare(&format!("{tag} db"), g.bias.view().into_dyn(), &ndb, true);
    }
}

#[test]
fn time_distributed_dense_cpu_gradients_match_finite_differences() {
    let (b, t, i, o) = (2, 3, 4, 2);
    let cfg = DenseConfig::new(i, o, Activation::Sigmoid).unwrap();
    let p = DenseParams::<f64>::random(cfg, 5, 0.8).unwrap();
    let x: Array3<f64> = rand(ndarray::Ix3(b, t, i), 6, 1.0);
    let dy: Array3<f64> = rand(ndarray::Ix3(b, t, o), 7, 1.0);
    let y = p.forward_seq(x.view()).unwrap();
    let g = p.backward_seq(x.view(), y.view(), dy.view()).unwrap();
    let ndx = numeric(&[b, t, i], |e, d| {
        (p.forward_seq(moved(&x, e, d).view()).unwrap() * &dy).sum()
    });
    compare("seq dx", g.dx.view().into_dyn(), &ndx, true);
    let ndw = numeric(&[o, i], |e, d| {
        let mut q = p.clone();
        q.weight = moved(&p.weight, e, d);
        (q.forward_seq(x.view()).unwrap() * &dy).sum()
    });
    compare("seq dW", g.weight.view().into_dyn(), &ndw, true);
}

fn fd_conv_head(cfg: ConvHeadConfig, (b, t, h, w): (usize, usize, usize, usize), seed: u64) {
    let p = ConvHeadParams::<f64>::random(cfg, seed, 0.8).unwrap();
    let x: Array5<f64> = rand(ndarray::Ix5(b, t, h, w, cfg.in_channels), seed + 1, 1.0);
    let dy: Array5<f64> = rand(ndarray::Ix5(b, t, h, w, cfg.out_channels), seed + 2, 1.0);
    let loss =
        |p: &ConvHeadParams<f64>, x: &Array5<f64>| (p.forward(x.view()).unwrap() * &dy).sum();
    let y = p.forward(x.view()).unwrap();
    let g = p.backward(x.view(), y.view(), dy.view()).unwrap();
    let tag = format!("{:?} {:?}", cfg.kernel, cfg.activation);
    let ndx = numeric(x.shape(), |e, d| loss(&p, &moved(&x, e, d)));
    compare(&format!("{tag} dx"), g.dx.view().into_dyn(), &ndx, true);
    let ndk = numeric(p.kernel.shape(), |e, d| {
        let mut q = p.clone();
        q.kernel = moved(&p.kernel, e, d);
        loss(&q, &x)
    });
    compare(&format!("{tag} dK"), g.kernel.view().into_dyn(), &ndk, true);
    let ndb = numeric(p.bias.shape(), |e, d| {
        let mut q = p.clone();
        q.bias = moved(&p.bias, e, d);
        loss(&q, &x)
    });
    compare(&format!("{tag} db"), g.bias.view().into_dyn(), &ndb, true);
}

#[test]
fn conv_head_cpu_gradients_match_finite_differences() {
    let c = |i, o, k, a| ConvHeadConfig::new(i, o, k, a).unwrap();
    fd_conv_head(c(3, 1, (3, 3), Activation::Sigmoid), (1, 2, 4, 5), 100);
    fd_conv_head(c(2, 2, (2, 3), Activation::Linear), (2, 1, 3, 4), 110);
}

#[test]
fn the_gradient_check_rejects_wrong_gradients() {
    // The checks above must be able to fail: a zero, a halved and a sign-flipped gradient
    // are each rejected against a correct numeric one.
    let cfg = DenseConfig::new(3, 2, Activation::Tanh).unwrap();
    let p = DenseParams::<f64>::random(cfg, 1, 0.8).unwrap();
    let x: Array2<f64> = rand(ndarray::Ix2(2, 3), 2, 1.0);
    let dy: Array2<f64> = rand(ndarray::Ix2(2, 2), 3, 1.0);
    let y = p.forward(x.view()).unwrap();
    let g = p.backward(x.view(), y.view(), dy.view()).unwrap();
    let nd = numeric(&[2, 3], |e, d| {
        let mut q = p.clone();
        q.weight = moved(&p.weight, e, d);
        (q.forward(x.view()).unwrap() * &dy).sum()
    });
    compare("correct", g.weight.view().into_dyn(), &nd, true);
    for (what, wrong) in [
        ("zero", Array2::<f64>::zeros((2, 3))),
        ("halved", &g.weight * 0.5),
        ("negated", -&g.weight),
    ] {
        let r = std::panic::catch_unwind(|| compare(what, wrong.view().into_dyn(), &nd, true));
        assert!(r.is_err(), "a {what} gradient passed the check");
    }
}

// ---------------------------------------------------------------------------------------
// Imports, device parameter buffers, errors

#[test]
fn keras_and_torch_imports_match_the_canonical_layouts() {
    let kernel: Array2<f64> = rand(ndarray::Ix2(4, 3), 1, 1.0); // Keras [in, out]
    let bias: Array1<f64> = rand(ndarray::Ix1(3), 2, 1.0);
    let p = DenseParams::from_keras(kernel.view(), bias.view(), Activation::Linear).unwrap();
    assert_eq!(p.weight, kernel.t());
    let x: Array2<f64> = rand(ndarray::Ix2(2, 4), 3, 1.0);
    let want = x.dot(&kernel) + &bias;
    assert!(
        (p.forward(x.view()).unwrap() - want)
            .iter()
            .all(|d| d.abs() < 1e-12)
    );

    let torch: Array4<f64> = rand(ndarray::Ix4(2, 3, 3, 1), 4, 1.0); // [out, in, kh, kw]
    let cb: Array1<f64> = rand(ndarray::Ix1(2), 5, 1.0);
    let c = ConvHeadParams::from_torch(torch.view(), cb.view(), Activation::Sigmoid).unwrap();
    assert_eq!(c.config.kernel, (3, 1));
    assert_eq!((c.config.in_channels, c.config.out_channels), (3, 2));
    assert_eq!(c.kernel[[2, 0, 1, 0]], torch[[0, 1, 2, 0]]);
    assert_eq!(c.kernel[[1, 0, 2, 1]], torch[[1, 2, 1, 0]]);
}

/// Reads a whole f32 buffer through the public device handles (what an optimizer sees).
fn read_buffer(ctx: &Context, buf: &wgpu::Buffer) -> Vec<f32> {
    let staging = ctx.device().create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: buf.size(),
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let mut enc = ctx.device().create_command_encoder(&Default::default());
    enc.copy_buffer_to_buffer(buf, 0, &staging, 0, buf.size());
    ctx.queue().submit(Some(enc.finish()));
    staging
        .slice(..)
        .map_async(wgpu::MapMode::Read, |r| r.unwrap());
    ctx.device()
        .poll(wgpu::PollType::wait_indefinitely())
        .unwrap();
    bytemuck::cast_slice(&staging.slice(..).get_mapped_range().unwrap()).to_vec()
}

#[test]
fn parameter_and_gradient_buffers_are_exposed() {
    let ctx = ctx();
    let cfg = ConvHeadConfig::new(2, 1, (3, 3), Activation::Sigmoid).unwrap();
    let p = ConvHeadParams::<f32>::random(cfg, 8, 0.5).unwrap();
    let gpu = GpuConvHead::new(ctx.clone(), &p).unwrap();
    let params = gpu.params();
    let names: Vec<_> = params
        .iter()
        .map(|q| (q.name.as_str(), q.shape.clone()))
        .collect();
    assert_eq!(names, [("kernel", vec![3, 3, 2, 1]), ("bias", vec![1])]);
    let x = f32s(&rand(ndarray::Ix5(1, 2, 3, 4, 2), 9, 1.0));
    let dy = f32s(&rand(ndarray::Ix5(1, 2, 3, 4, 1), 10, 1.0));
    let (_, g) = gpu.forward_backward(x.view(), dy.view()).unwrap();
    // The gradient buffers hold what backward returned.
    let dk = read_buffer(&ctx, &params[0].grad);
    assert_eq!(&dk[..params[0].len()], g.kernel.as_slice().unwrap());
    assert_eq!(read_buffer(&ctx, &params[1].grad)[0], g.bias[0]);
    // An optimizer step written straight into the parameter buffer is what the layer uses.
    let stepped: Vec<f32> = p.kernel.iter().zip(&dk).map(|(w, d)| w - 0.1 * d).collect();
    ctx.queue()
        .write_buffer(&params[0].param, 0, bytemuck::cast_slice(&stepped));
    let back = gpu.read_params().unwrap();
    assert_eq!(back.kernel.as_slice().unwrap(), &stepped[..]);
    assert_ne!(back.kernel, p.kernel);

    let d = GpuDense::new(
        ctx,
        &DenseParams::random(DenseConfig::new(3, 2, Activation::Relu).unwrap(), 1, 0.5).unwrap(),
    )
    .unwrap();
    let dp = d.params();
    let dn: Vec<_> = dp
        .iter()
        .map(|q| (q.name.as_str(), q.shape.clone()))
        .collect();
    assert_eq!(dn, [("weight", vec![2, 3]), ("bias", vec![2])]);
}

fn msg<T: std::fmt::Debug>(r: Result<T, Error>) -> String {
    r.expect_err("expected an error").to_string()
}

#[test]
fn bad_shapes_are_errors_naming_the_value() {
    let cfg = DenseConfig::new(5, 3, Activation::Tanh).unwrap();
    let p = DenseParams::<f32>::random(cfg, 1, 0.5).unwrap();
    let x = Array2::<f32>::zeros((4, 6));
    let m = msg(p.forward(x.view()));
    assert!(m.contains("[4, 6]") && m.contains("[4, 5]"), "{m}");
    let gpu = GpuDense::new(ctx(), &p).unwrap();
    let m = msg(gpu.forward(x.view()));
    assert!(m.contains("[4, 6]") && m.contains("[4, 5]"), "{m}");
    let y = Array2::<f32>::zeros((4, 3));
    let dy = Array2::<f32>::zeros((4, 2));
    let m = msg(gpu.backward(Array2::zeros((4, 5)).view(), y.view(), dy.view()));
    assert!(m.contains("output gradient") && m.contains("[4, 2]"), "{m}");
    let m = msg(DenseConfig::new(0, 3, Activation::Tanh));
    assert!(m.contains("in_features = 0"), "{m}");
    let m = msg(DenseParams::new(
        cfg,
        Array2::<f32>::zeros((5, 3)),
        Array1::zeros(3),
    ));
    assert!(m.contains("[5, 3]") && m.contains("[3, 5]"), "{m}");

    let hc = ConvHeadConfig::new(4, 1, (3, 3), Activation::Sigmoid).unwrap();
    let hp = ConvHeadParams::<f32>::random(hc, 1, 0.5).unwrap();
    let head = GpuConvHead::new(ctx(), &hp).unwrap();
    let m = msg(head.forward(Array5::zeros((1, 2, 3, 3, 7)).view()));
    assert!(
        m.contains("[1, 2, 3, 3, 7]") && m.contains("[1, 2, 3, 3, 4]"),
        "{m}"
    );
    let m = msg(hp.forward(Array5::zeros((1, 0, 3, 3, 4)).view()));
    assert!(m.contains("steps = 0"), "{m}");
    let m = msg(ConvHeadConfig::new(4, 1, (3, 0), Activation::Sigmoid));
    assert!(m.contains("kernel width = 0"), "{m}");
    // Sizes whose product overflows are a Limit error, not a panic.
    let m = msg(DenseConfig::new(usize::MAX, 2, Activation::Linear));
    assert!(
        m.contains("dense weight") && m.contains(&usize::MAX.to_string()),
        "{m}"
    );
    let m = msg(ConvHeadConfig::new(
        1 << 40,
        1 << 30,
        (3, 3),
        Activation::Linear,
    ));
    assert!(m.contains("conv head kernel"), "{m}");
}
