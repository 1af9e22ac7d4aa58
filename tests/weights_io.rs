//! Weight import and export: PyTorch names (with a module prefix) and Keras kernels through
//! safetensors files give the same layer; gradients come back under the loading names.

use ndarray::{Array3, ArrayD};
use wgpu_rnn::weights::safetensors_io;
use wgpu_rnn::{Backend, Lstm, LstmConfig, TensorMap};

fn x() -> Array3<f32> {
    Array3::from_shape_fn((4, 2, 3), |(t, b, i)| {
        ((t * 7 + b * 3 + i) as f32 * 0.37).sin()
    })
}

#[test]
fn torch_state_dict_round_trips_through_safetensors_with_a_prefix() {
    let mut cfg = LstmConfig::new(3, 5);
    cfg.num_layers = 2;
    cfg.bidirectional = true;
    cfg.proj_size = 2;
    let a = Lstm::new(cfg, Backend::Cpu, 42).unwrap();
    let w = a.weights().unwrap();
    assert!(w.contains_key("weight_hr_l1_reverse"));
    let prefixed: TensorMap = w
        .iter()
        .map(|(k, v)| (format!("encoder.lstm.{k}"), v.clone()))
        .collect();
    let path = std::env::temp_dir().join("wgpu_rnn_torch_prefixed.safetensors");
    safetensors_io::write(&path, &prefixed, None).unwrap();
    let b = Lstm::from_safetensors(cfg, &path, Backend::Cpu).unwrap();
    assert_eq!(b.weights().unwrap(), w);
    let (ya, yb) = (
        a.forward(x().view(), None, None).unwrap(),
        b.forward(x().view(), None, None).unwrap(),
    );
    assert_eq!(ya.out, yb.out);
}

#[test]
fn keras_kernels_equal_transposed_torch_weights() {
    // CONVENTIONS.md §3: kernel = W_ihᵀ, recurrent_kernel = W_hhᵀ, bias = b_ih + b_hh.
    let cfg = LstmConfig::new(3, 5);
    let t = Lstm::new(cfg, Backend::Cpu, 8).unwrap();
    let w = t.weights().unwrap();
    let tr = |a: &ArrayD<f32>| a.t().as_standard_layout().into_owned();
    let mut keras = TensorMap::new();
    keras.insert("kernel".into(), tr(&w["weight_ih_l0"]));
    keras.insert("recurrent_kernel".into(), tr(&w["weight_hh_l0"]));
    keras.insert("bias".into(), &w["bias_ih_l0"] + &w["bias_hh_l0"]);
    let path = std::env::temp_dir().join("wgpu_rnn_keras.safetensors");
    safetensors_io::write(&path, &keras, None).unwrap();
    let k = Lstm::from_safetensors(cfg, &path, Backend::Cpu).unwrap();
    assert_eq!(
        k.weights().unwrap(),
        keras,
        "weights come back under Keras names"
    );
    let (yt, tt) = t.forward_train(x().view(), None, None).unwrap();
    let (yk, tk) = k.forward_train(x().view(), None, None).unwrap();
    for (a, b) in yt.out.iter().zip(yk.out.iter()) {
        assert!((a - b).abs() < 1e-6, "{a} vs {b}");
    }
    let dy = Array3::from_elem(yt.out.dim(), 0.5f32);
    let gt = t.backward(&tt, dy.view(), None).unwrap();
    let gk = k.backward(&tk, dy.view(), None).unwrap();
    let names: Vec<&String> = gk.weights.keys().collect();
    assert_eq!(names, ["bias", "kernel", "recurrent_kernel"]);
    let diff = (&gk.weights["kernel"] - &tr(&gt.weights["weight_ih_l0"])).mapv(f32::abs);
    assert!(diff.iter().all(|d| *d < 1e-6));
    let db = (&gk.weights["bias"] - &gt.weights["bias_ih_l0"]).mapv(f32::abs);
    assert!(db.iter().all(|d| *d < 1e-6));
    assert!(
        gk.weights["bias"].iter().any(|v| v.abs() > 1e-3),
        "bias gradient is not zero"
    );
}

#[test]
fn layers_without_bias_export_no_bias() {
    let mut cfg = LstmConfig::new(3, 4);
    cfg.bias = false;
    let l = Lstm::new(cfg, Backend::Cpu, 1).unwrap();
    assert!(l.weights().unwrap().keys().all(|k| !k.starts_with("bias")));
    let (y, tr) = l.forward_train(x().view(), None, None).unwrap();
    let g = l
        .backward(&tr, Array3::from_elem(y.out.dim(), 1.0).view(), None)
        .unwrap();
    assert_eq!(g.weights.len(), 2);
}

#[test]
fn keras_gru_and_simple_rnn_weights_round_trip() {
    use wgpu_rnn::{Gru, GruConfig, SimpleRnn, SimpleRnnConfig};
    let val = |shape: Vec<usize>, k: f32| {
        let n: usize = shape.iter().product();
        ArrayD::from_shape_vec(shape, (0..n).map(|i| (i as f32 * k).sin()).collect()).unwrap()
    };
    for reset_after in [true, false] {
        let mut keras = TensorMap::new();
        keras.insert("kernel".into(), val(vec![3, 15], 0.3));
        keras.insert("recurrent_kernel".into(), val(vec![5, 15], 0.7));
        let bias_shape = if reset_after { vec![2, 15] } else { vec![15] };
        keras.insert("bias".into(), val(bias_shape, 1.1));
        let mut cfg = GruConfig::new(3, 5);
        cfg.reset_after = reset_after;
        let g = Gru::from_keras(cfg, &keras, Backend::Cpu).unwrap();
        assert_eq!(g.weights().unwrap(), keras, "reset_after = {reset_after}");
    }
    let mut keras = TensorMap::new();
    keras.insert("kernel".into(), val(vec![3, 4], 0.3));
    keras.insert("recurrent_kernel".into(), val(vec![4, 4], 0.7));
    keras.insert("bias".into(), val(vec![4], 1.1));
    let r = SimpleRnn::from_keras(SimpleRnnConfig::new(3, 4), &keras, Backend::Cpu).unwrap();
    assert_eq!(r.weights().unwrap(), keras);
}

#[test]
fn gru_torch_weights_load_from_safetensors() {
    use wgpu_rnn::{Gru, GruConfig};
    let mut cfg = GruConfig::new(3, 4);
    cfg.bidirectional = true;
    let a = Gru::new(cfg, Backend::Cpu, 9).unwrap();
    let path = std::env::temp_dir().join("wgpu_rnn_gru.safetensors");
    safetensors_io::write(&path, &a.weights().unwrap(), None).unwrap();
    let b = Gru::from_safetensors(cfg, &path, Backend::Cpu).unwrap();
    assert_eq!(a.weights().unwrap(), b.weights().unwrap());
    assert!(b.weights().unwrap().contains_key("bias_hh_l0_reverse"));
}

#[test]
fn convlstm2d_weights_round_trip_through_safetensors() {
    use wgpu_rnn::{ConvLstm2d, ConvLstm2dConfig};
    let cfg = ConvLstm2dConfig::new(6, 5, 2, 3, (3, 1));
    let a = ConvLstm2d::new(cfg, Backend::Cpu, 4).unwrap();
    let w = a.weights().unwrap();
    assert_eq!(w["kernel"].shape(), &[3, 1, 2, 12]);
    assert_eq!(w["recurrent_kernel"].shape(), &[3, 1, 3, 12]);
    let prefixed: TensorMap = w
        .iter()
        .map(|(k, v)| (format!("conv_lstm2d/{k}"), v.clone()))
        .collect();
    let path = std::env::temp_dir().join("wgpu_rnn_convlstm.safetensors");
    safetensors_io::write(&path, &prefixed, None).unwrap();
    let b = ConvLstm2d::from_safetensors(cfg, &path, Backend::Cpu).unwrap();
    assert_eq!(b.weights().unwrap(), w);
    let x = ndarray::Array5::from_shape_fn((1, 2, 6, 5, 2), |(_, t, y, x, c)| {
        ((t + 2 * y + 3 * x + c) as f32).cos()
    });
    assert_eq!(
        a.forward(x.view(), None).unwrap().out,
        b.forward(x.view(), None).unwrap().out
    );
}
