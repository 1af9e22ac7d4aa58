//! Non-finite parity (issue 15, case 2): the GPU propagates NaN and ±inf exactly as the CPU
//! reference does, in every cell (LSTM, GRU, SimpleRNN tanh/relu, ConvLSTM2D), algorithm
//! (Persistent, Stepwise) and direction (bidirectional, two layers), forward and backward.
//! Every element must be in the same class on both (NaN, +inf, -inf, finite) and finite
//! elements must agree within DESIGN.md §4's `1e-5 + 1e-4·|ref|`.

use ndarray::{ArrayD, ArrayViewD, Dimension};
use wgpu_rnn::{
    Activation, Algorithm, Backend, ConvLstm2d, ConvLstm2dConfig, Gru, GruConfig, Lstm, LstmConfig,
    Nonlinearity, Padding, SimpleRnn, SimpleRnnConfig, TensorMap,
};

use super::common;

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum Class {
    Nan,
    PosInf,
    NegInf,
    Finite,
}

fn class(v: f32) -> Class {
    if v.is_nan() {
        Class::Nan
    } else if v == f32::INFINITY {
        Class::PosInf
    } else if v == f32::NEG_INFINITY {
        Class::NegInf
    } else {
        Class::Finite
    }
}

/// Asserts same class everywhere and closeness of the finite elements; returns the number
/// of non-finite elements (so a case can assert it really injected something).
fn assert_parity(what: &str, gpu: ArrayViewD<f32>, cpu: ArrayViewD<f32>) -> usize {
    assert_eq!(gpu.shape(), cpu.shape(), "{what}: shape");
    let mut nonfinite = 0;
    for ((idx, &g), &c) in gpu.indexed_iter().zip(cpu.iter()) {
        assert_eq!(
            class(g),
            class(c),
            "{what}: element {:?} is {g} on the GPU, {c} on the CPU",
            idx.slice()
        );
        if class(c) == Class::Finite {
            assert!(
                (g - c).abs() <= 1e-5 + 1e-4 * c.abs(),
                "{what}: element {:?} is {g} on the GPU, {c} on the CPU",
                idx.slice()
            );
        } else {
            nonfinite += 1;
        }
    }
    nonfinite
}

/// What gets poisoned.
#[derive(Clone, Copy, Debug)]
enum Poison {
    /// NaN in one input element.
    NanInX,
    /// NaN in one recurrent weight of layer 0, forward direction.
    NanInWhh,
    /// +inf and -inf in the initial hidden state.
    InfInH0,
    /// +inf in one input element (saturates the activations).
    InfInX,
}

const POISONS: [Poison; 4] = [
    Poison::NanInX,
    Poison::NanInWhh,
    Poison::InfInH0,
    Poison::InfInX,
];
const ALGORITHMS: [Algorithm; 2] = [Algorithm::Persistent, Algorithm::Stepwise];
const T: usize = 5;
const B: usize = 2;
const I: usize = 3;
const H: usize = 8;

fn poison_x(p: Poison, x: &mut ndarray::Array3<f32>) {
    match p {
        Poison::NanInX => x[[1, 0, 1]] = f32::NAN,
        Poison::InfInX => x[[2, 1, 0]] = f32::INFINITY,
        _ => {}
    }
}

fn poison_weights(p: Poison, w: &mut TensorMap, name: &str) {
    if let Poison::NanInWhh = p {
        w.get_mut(name).expect(name)[[2, 3]] = f32::NAN;
    }
}

fn h0_for(p: Poison, layers_dirs: usize, width: usize) -> ndarray::Array3<f32> {
    let mut h0 = common::rand3((layers_dirs, B, width), 11, 0.5);
    if let Poison::InfInH0 = p {
        h0[[0, 1, 2]] = f32::INFINITY;
        h0[[1, 0, 5]] = f32::NEG_INFINITY;
    }
    h0
}

fn dy_for(shape: &[usize]) -> ArrayD<f32> {
    let n: usize = shape.iter().product();
    ArrayD::from_shape_vec(
        shape.to_vec(),
        (0..n).map(|i| ((i % 7) as f32 - 3.0) * 0.1).collect(),
    )
    .unwrap()
}

/// Runs forward and backward of one poisoned LSTM on both backends and compares.
fn lstm_case(p: Poison, algo: Algorithm) -> usize {
    let mut cfg = LstmConfig::new(I, H);
    cfg.num_layers = 2;
    cfg.bidirectional = true;
    let mut w = Lstm::new(cfg, Backend::Cpu, 5).unwrap().weights().unwrap();
    poison_weights(p, &mut w, "weight_hh_l0");
    let cpu = Lstm::from_torch(cfg, &w, Backend::Cpu).unwrap();
    let mut gpu = Lstm::from_torch(cfg, &w, common::gpu()).unwrap();
    gpu.set_algorithm(algo);
    let mut x = common::rand3((T, B, I), 3, 1.0);
    poison_x(p, &mut x);
    let h0 = h0_for(p, 4, H);
    let c0 = common::rand3((4, B, H), 12, 0.5);
    let what = format!("LSTM {p:?} {algo:?}");
    let run = |l: &Lstm| {
        let (y, tr) = l
            .forward_train(x.view(), Some((h0.view(), c0.view())), None)
            .unwrap();
        let dy = dy_for(y.out.shape());
        let dy = dy.view().into_dimensionality().unwrap();
        let g = l.backward(&tr, dy, None).unwrap();
        (y, g)
    };
    let ((yg, gg), (yc, gc)) = (run(&gpu), run(&cpu));
    let mut n = 0;
    for (name, a, b) in [
        ("out", yg.out.into_dyn(), yc.out.into_dyn()),
        ("h_n", yg.h_n.into_dyn(), yc.h_n.into_dyn()),
        ("c_n", yg.c_n.into_dyn(), yc.c_n.into_dyn()),
        ("dx", gg.dx.into_dyn(), gc.dx.into_dyn()),
        ("dh0", gg.dh0.into_dyn(), gc.dh0.into_dyn()),
        ("dc0", gg.dc0.into_dyn(), gc.dc0.into_dyn()),
    ] {
        n += assert_parity(&format!("{what} {name}"), a.view(), b.view());
    }
    for (name, a) in &gg.weights {
        n += assert_parity(&format!("{what} {name}"), a.view(), gc.weights[name].view());
    }
    n
}

/// GRU and SimpleRNN share the h-only API; one macro runs either.
macro_rules! h_case {
    ($layer:ty, $cfg:expr, $p:expr, $algo:expr, $what:expr) => {{
        let (cfg, p, algo) = ($cfg, $p, $algo);
        let mut w = <$layer>::new(cfg, Backend::Cpu, 5)
            .unwrap()
            .weights()
            .unwrap();
        poison_weights(p, &mut w, "weight_hh_l0");
        let cpu = <$layer>::from_torch(cfg, &w, Backend::Cpu).unwrap();
        let mut gpu = <$layer>::from_torch(cfg, &w, common::gpu()).unwrap();
        gpu.set_algorithm(algo);
        let mut x = common::rand3((T, B, I), 3, 1.0);
        poison_x(p, &mut x);
        let h0 = h0_for(p, 4, H);
        let run = |l: &$layer| {
            let (y, tr) = l.forward_train(x.view(), Some(h0.view()), None).unwrap();
            let dy = dy_for(y.out.shape());
            let dy = dy.view().into_dimensionality().unwrap();
            let g = l.backward(&tr, dy, None).unwrap();
            (y, g)
        };
        let ((yg, gg), (yc, gc)) = (run(&gpu), run(&cpu));
        let what = format!("{} {p:?} {algo:?}", $what);
        let mut n = 0;
        for (name, a, b) in [
            ("out", yg.out.into_dyn(), yc.out.into_dyn()),
            ("h_n", yg.h_n.into_dyn(), yc.h_n.into_dyn()),
            ("dx", gg.dx.into_dyn(), gc.dx.into_dyn()),
            ("dh0", gg.dh0.into_dyn(), gc.dh0.into_dyn()),
        ] {
            n += assert_parity(&format!("{what} {name}"), a.view(), b.view());
        }
        for (name, a) in &gg.weights {
            n += assert_parity(&format!("{what} {name}"), a.view(), gc.weights[name].view());
        }
        n
    }};
}

fn gru_case(p: Poison, algo: Algorithm) -> usize {
    let mut cfg = GruConfig::new(I, H);
    cfg.num_layers = 2;
    cfg.bidirectional = true;
    h_case!(Gru, cfg, p, algo, "GRU")
}

fn rnn_case(p: Poison, algo: Algorithm, nl: Nonlinearity) -> usize {
    let mut cfg = SimpleRnnConfig::new(I, H);
    cfg.num_layers = 2;
    cfg.bidirectional = true;
    cfg.nonlinearity = nl;
    h_case!(SimpleRnn, cfg, p, algo, format!("RNN {nl:?}"))
}

#[test]
fn lstm_gpu_propagates_nan_and_inf_like_the_cpu() {
    for p in POISONS {
        for algo in ALGORITHMS {
            let n = lstm_case(p, algo);
            assert!(n > 0, "LSTM {p:?} {algo:?}: nothing non-finite came out");
        }
    }
}

#[test]
fn gru_gpu_propagates_nan_and_inf_like_the_cpu() {
    for p in POISONS {
        for algo in ALGORITHMS {
            let n = gru_case(p, algo);
            assert!(n > 0, "GRU {p:?} {algo:?}: nothing non-finite came out");
        }
    }
}

#[test]
fn simple_rnn_gpu_propagates_nan_and_inf_like_the_cpu() {
    for nl in [Nonlinearity::Tanh, Nonlinearity::Relu] {
        for p in POISONS {
            for algo in ALGORITHMS {
                let n = rnn_case(p, algo, nl);
                assert!(
                    n > 0,
                    "RNN {nl:?} {p:?} {algo:?}: nothing non-finite came out"
                );
            }
        }
    }
}

/// ConvLSTM2D, Keras layout: NaN in a frame, NaN in the recurrent kernel, ±inf in h0, for
/// the default activations and for relu / hard_sigmoid.
#[test]
fn convlstm2d_gpu_propagates_nan_and_inf_like_the_cpu() {
    let (b, t, rows, cols, cin, f) = (1, 3, 5, 4, 2, 3);
    for (act, rec) in [
        (Activation::Tanh, Activation::Sigmoid),
        (Activation::Relu, Activation::HardSigmoid),
    ] {
        let mut cfg = ConvLstm2dConfig::new(rows, cols, cin, f, (3, 3));
        cfg.padding = Padding::Same;
        cfg.return_sequences = true;
        cfg.activation = act;
        cfg.recurrent_activation = rec;
        for p in POISONS {
            for algo in ALGORITHMS {
                let mut w = ConvLstm2d::new(cfg, Backend::Cpu, 2)
                    .unwrap()
                    .weights()
                    .unwrap();
                if let Poison::NanInWhh = p {
                    w.get_mut("recurrent_kernel").unwrap()[[1, 1, 0, 2]] = f32::NAN;
                }
                let cpu = ConvLstm2d::from_keras(cfg, &w, Backend::Cpu).unwrap();
                let mut gpu = ConvLstm2d::from_keras(cfg, &w, common::gpu()).unwrap();
                gpu.set_algorithm(algo);
                let mut x =
                    ndarray::Array5::from_shape_fn((b, t, rows, cols, cin), |(_, ti, y, xx, c)| {
                        ((ti * 7 + y * 3 + xx + c) as f32 * 0.37).sin()
                    });
                match p {
                    Poison::NanInX => x[[0, 1, 2, 1, 0]] = f32::NAN,
                    Poison::InfInX => x[[0, 0, 1, 1, 1]] = f32::INFINITY,
                    _ => {}
                }
                let mut h0 = ndarray::Array4::<f32>::from_elem((b, rows, cols, f), 0.1);
                if let Poison::InfInH0 = p {
                    h0[[0, 2, 2, 1]] = f32::INFINITY;
                    h0[[0, 0, 3, 0]] = f32::NEG_INFINITY;
                }
                let c0 = ndarray::Array4::<f32>::from_elem((b, rows, cols, f), -0.2);
                let run = |l: &ConvLstm2d| {
                    let (y, tr) = l
                        .forward_train(x.view(), Some((h0.view(), c0.view())))
                        .unwrap();
                    let dy = dy_for(y.out.shape());
                    let g = l.backward(&tr, dy.view(), None).unwrap();
                    (y, g)
                };
                let ((yg, gg), (yc, gc)) = (run(&gpu), run(&cpu));
                let what = format!("ConvLSTM2D {act:?}/{rec:?} {p:?} {algo:?}");
                let mut n = 0;
                for (name, a, c) in [
                    ("out", yg.out, yc.out),
                    ("h_n", yg.h_n.into_dyn(), yc.h_n.into_dyn()),
                    ("c_n", yg.c_n.into_dyn(), yc.c_n.into_dyn()),
                    ("dx", gg.dx.into_dyn(), gc.dx.into_dyn()),
                    ("dh0", gg.dh0.into_dyn(), gc.dh0.into_dyn()),
                    ("dc0", gg.dc0.into_dyn(), gc.dc0.into_dyn()),
                ] {
                    n += assert_parity(&format!("{what} {name}"), a.view(), c.view());
                }
                for (name, a) in &gg.weights {
                    n +=
                        assert_parity(&format!("{what} {name}"), a.view(), gc.weights[name].view());
                }
                assert!(n > 0, "{what}: nothing non-finite came out");
            }
        }
    }
}
