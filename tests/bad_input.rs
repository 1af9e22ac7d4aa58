//! Bad input gives typed errors whose messages name the value and the limit; never a panic.

mod common;

use ndarray::{Array3, ArrayD};
use wgpu_rnn::{Algorithm, Backend, Error, Lstm, LstmConfig, TensorMap};

fn layer(backend: Backend) -> Lstm {
    Lstm::new(LstmConfig::new(3, 4), backend, 1).unwrap()
}

fn backends() -> [Backend; 2] {
    [common::gpu(), Backend::Cpu]
}

#[test]
fn wrong_input_width_is_a_shape_error() {
    for b in backends() {
        let x = Array3::<f32>::zeros((5, 2, 4));
        let e = layer(b).forward(x.view(), None, None).unwrap_err();
        assert!(matches!(e, Error::Shape(_)), "{e}");
        assert!(e.to_string().contains("input_size is 3"), "{e}");
    }
}

#[test]
fn empty_time_or_batch_is_a_shape_error() {
    for b in backends() {
        for shape in [(0, 2, 3), (5, 0, 3)] {
            let x = Array3::<f32>::zeros(shape);
            let e = layer(b.clone()).forward(x.view(), None, None).unwrap_err();
            assert!(matches!(e, Error::Shape(_)), "{e}");
            assert!(e.to_string().contains("at least 1"), "{e}");
        }
    }
}

#[test]
fn bad_lengths_are_config_errors() {
    for b in backends() {
        let l = layer(b);
        let x = Array3::<f32>::zeros((5, 2, 3));
        for (lens, needle) in [
            (vec![6, 2], "lengths[0] = 6"),
            (vec![3, 0], "lengths[1] = 0"),
            (vec![3], "batch size is 2"),
        ] {
            let e = l.forward(x.view(), None, Some(&lens)).unwrap_err();
            assert!(matches!(e, Error::Config(_)), "{e}");
            assert!(e.to_string().contains(needle), "{e} lacks {needle}");
        }
    }
}

#[test]
fn wrong_state_shape_is_a_shape_error() {
    let l = layer(Backend::Cpu);
    let x = Array3::<f32>::zeros((5, 2, 3));
    let h0 = Array3::<f32>::zeros((1, 2, 5));
    let c0 = Array3::<f32>::zeros((1, 2, 4));
    let e = l
        .forward(x.view(), Some((h0.view(), c0.view())), None)
        .unwrap_err();
    assert!(e.to_string().contains("h0"), "{e}");
}

fn torch_weights(cfg: LstmConfig) -> TensorMap {
    Lstm::new(cfg, Backend::Cpu, 3).unwrap().weights().unwrap()
}

#[test]
fn missing_misshapen_or_unexpected_weights_are_errors() {
    let cfg = LstmConfig::new(3, 4);
    let mut w = torch_weights(cfg);
    w.remove("weight_hh_l0");
    let e = Lstm::from_torch(cfg, &w, Backend::Cpu).err().unwrap();
    assert!(
        matches!(e, Error::Weights(_)) && e.to_string().contains("missing tensor weight_hh_l0"),
        "{e}"
    );

    let mut w = torch_weights(cfg);
    w.insert("bias_ih_l0".into(), ArrayD::zeros(vec![15]));
    let e = Lstm::from_torch(cfg, &w, Backend::Cpu).err().unwrap();
    assert!(
        e.to_string()
            .contains("bias_ih_l0 has shape [15]; expected [16]"),
        "{e}"
    );

    let mut w = torch_weights(cfg);
    w.insert("weight_hr_l0".into(), ArrayD::zeros(vec![2, 4]));
    let e = Lstm::from_torch(cfg, &w, Backend::Cpu).err().unwrap();
    assert!(e.to_string().contains("proj_size = 0"), "{e}");

    let mut two = cfg;
    two.num_layers = 2;
    let e = Lstm::from_torch(cfg, &torch_weights(two), Backend::Cpu)
        .err()
        .unwrap();
    assert!(e.to_string().contains("num_layers = 1"), "{e}");

    let mut keras = TensorMap::new();
    keras.insert("kernel".into(), ArrayD::zeros(vec![3, 16]));
    keras.insert("recurrent_kernel".into(), ArrayD::zeros(vec![4, 12]));
    keras.insert("bias".into(), ArrayD::zeros(vec![16]));
    let e = Lstm::from_keras(cfg, &keras, Backend::Cpu).err().unwrap();
    assert!(
        e.to_string()
            .contains("recurrent_kernel has shape [4, 12]; expected [4, 16]"),
        "{e}"
    );
}

#[test]
fn invalid_configs_are_rejected() {
    let mut cfg = LstmConfig::new(3, 4);
    cfg.proj_size = 4;
    let e = Lstm::new(cfg, Backend::Cpu, 0).err().unwrap();
    assert!(
        matches!(e, Error::Config(_)) && e.to_string().contains("proj_size 4"),
        "{e}"
    );
    let mut cfg = LstmConfig::new(3, 4);
    cfg.go_backwards = true;
    cfg.bidirectional = true;
    assert!(matches!(
        Lstm::new(cfg, Backend::Cpu, 0),
        Err(Error::Config(_))
    ));
    assert!(matches!(
        Lstm::new(LstmConfig::new(3, 0), Backend::Cpu, 0),
        Err(Error::Config(_))
    ));
}

#[test]
fn persistent_beyond_its_workgroup_memory_names_the_limit() {
    // Forward holds h, c, h_raw per batch row: 3·600 = 1800 ≤ 4000 floats, so inference runs;
    // backward also needs dG (4H): 7·600 = 4200 > 4000, so training must refuse, naming it.
    let mut l = Lstm::new(LstmConfig::new(2, 600), common::gpu(), 1).unwrap();
    l.set_algorithm(Algorithm::Persistent);
    let x = Array3::<f32>::zeros((2, 1, 2));
    l.forward(x.view(), None, None).expect("forward fits");
    let e = l.forward_train(x.view(), None, None).err().unwrap();
    assert!(matches!(e, Error::Limit(_)), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("4200 <= 4000") && msg.contains("hidden_size 600"),
        "{msg}"
    );
    // Auto falls back to Stepwise instead.
    l.set_algorithm(Algorithm::Auto);
    l.forward_train(x.view(), None, None)
        .expect("auto chooses an algorithm that fits");

    let mut big = Lstm::new(LstmConfig::new(1, 1500), common::gpu(), 1).unwrap();
    big.set_algorithm(Algorithm::Persistent);
    let e = big
        .forward(Array3::<f32>::zeros((1, 1, 1)).view(), None, None)
        .unwrap_err();
    assert!(e.to_string().contains("4500 <= 4000"), "{e}");
}

#[test]
fn backward_checks_gradient_shapes_and_backend() {
    let gpu = layer(common::gpu());
    let cpu = layer(Backend::Cpu);
    let x = Array3::<f32>::zeros((5, 2, 3));
    let (_, trace) = gpu.forward_train(x.view(), None, None).unwrap();
    let bad = Array3::<f32>::zeros((5, 2, 5));
    let e = gpu.backward(&trace, bad.view(), None).unwrap_err();
    assert!(
        matches!(e, Error::Shape(_)) && e.to_string().contains("dy_out"),
        "{e}"
    );
    let dy = Array3::<f32>::zeros((5, 2, 4));
    let bad_h = Array3::<f32>::zeros((2, 2, 4));
    let c = Array3::<f32>::zeros((1, 2, 4));
    let e = gpu
        .backward(&trace, dy.view(), Some((bad_h.view(), c.view())))
        .unwrap_err();
    assert!(e.to_string().contains("dy_h_n"), "{e}");
    let e = cpu.backward(&trace, dy.view(), None).unwrap_err();
    assert!(matches!(e, Error::Config(_)), "{e}");
}

#[test]
fn missing_safetensors_file_is_an_io_error() {
    let e = Lstm::from_safetensors(
        LstmConfig::new(3, 4),
        std::path::Path::new("/nonexistent/w.safetensors"),
        Backend::Cpu,
    )
    .err()
    .unwrap();
    assert!(
        matches!(e, Error::Io { .. }) && e.to_string().contains("/nonexistent/w.safetensors"),
        "{e}"
    );
}

mod gru_and_rnn {
    use super::common;
    use ndarray::{Array3, ArrayD};
    use wgpu_rnn::{
        Algorithm, Backend, Error, Gru, GruConfig, SimpleRnn, SimpleRnnConfig, TensorMap,
    };

    #[test]
    fn reset_before_has_no_pytorch_form() {
        let mut cfg = GruConfig::new(3, 4);
        cfg.reset_after = false;
        let w = Gru::new(GruConfig::new(3, 4), Backend::Cpu, 1)
            .unwrap()
            .weights()
            .unwrap();
        let e = Gru::from_torch(cfg, &w, Backend::Cpu).err().unwrap();
        assert!(
            matches!(e, Error::Config(_)) && e.to_string().contains("Keras-only"),
            "{e}"
        );
    }

    #[test]
    fn keras_gru_bias_shape_follows_reset_after() {
        let mut keras = TensorMap::new();
        keras.insert("kernel".into(), ArrayD::zeros(vec![3, 15]));
        keras.insert("recurrent_kernel".into(), ArrayD::zeros(vec![5, 15]));
        keras.insert("bias".into(), ArrayD::zeros(vec![15]));
        let e = Gru::from_keras(GruConfig::new(3, 5), &keras, Backend::Cpu)
            .err()
            .unwrap();
        assert!(
            e.to_string()
                .contains("bias has shape [15]; expected [2, 15]"),
            "{e}"
        );
        let mut cfg = GruConfig::new(3, 5);
        cfg.reset_after = false;
        assert!(Gru::from_keras(cfg, &keras, Backend::Cpu).is_ok());
    }

    #[test]
    fn wrong_widths_and_lengths_are_errors() {
        for backend in [common::gpu(), Backend::Cpu] {
            let gru = Gru::new(GruConfig::new(3, 4), backend.clone(), 1).unwrap();
            let rnn = SimpleRnn::new(SimpleRnnConfig::new(3, 4), backend, 1).unwrap();
            let x = Array3::<f32>::zeros((5, 2, 2));
            assert!(matches!(
                gru.forward(x.view(), None, None),
                Err(Error::Shape(_))
            ));
            assert!(matches!(
                rnn.forward(x.view(), None, None),
                Err(Error::Shape(_))
            ));
            let x = Array3::<f32>::zeros((5, 2, 3));
            let e = rnn.forward(x.view(), None, Some(&[5, 6])).unwrap_err();
            assert!(e.to_string().contains("lengths[1] = 6"), "{e}");
            let h0 = Array3::<f32>::zeros((2, 2, 4));
            let e = gru.forward(x.view(), Some(h0.view()), None).unwrap_err();
            assert!(e.to_string().contains("h0"), "{e}");
        }
    }

    #[test]
    fn persistent_gru_training_beyond_its_pool_names_the_limit() {
        // GRU backward keeps dG (4H), the state and da_n per row: 6·700 = 4200 > 4000 floats.
        let mut l = Gru::new(GruConfig::new(2, 700), common::gpu(), 1).unwrap();
        l.set_algorithm(Algorithm::Persistent);
        let x = Array3::<f32>::zeros((2, 1, 2));
        l.forward(x.view(), None, None)
            .expect("forward needs 2·700 floats, which fit");
        let e = l.forward_train(x.view(), None, None).err().unwrap();
        assert!(matches!(e, Error::Limit(_)), "{e}");
        assert!(e.to_string().contains("6*hidden = 4200 <= 4000"), "{e}");
    }

    #[test]
    fn traces_do_not_cross_backends() {
        let gpu = SimpleRnn::new(SimpleRnnConfig::new(3, 4), common::gpu(), 1).unwrap();
        let cpu = SimpleRnn::new(SimpleRnnConfig::new(3, 4), Backend::Cpu, 1).unwrap();
        let x = Array3::<f32>::zeros((5, 2, 3));
        let (y, trace) = cpu.forward_train(x.view(), None, None).unwrap();
        let e = gpu.backward(&trace, y.out.view(), None).unwrap_err();
        assert!(matches!(e, Error::Config(_)), "{e}");
        let bad = Array3::<f32>::zeros((5, 2, 5));
        let e = cpu.backward(&trace, bad.view(), None).unwrap_err();
        assert!(e.to_string().contains("dy_out"), "{e}");
    }
}

mod convlstm2d {
    use super::common;
    use ndarray::{Array4, Array5, ArrayD};
    use wgpu_rnn::{Backend, ConvLstm2d, ConvLstm2dConfig, Error, Padding, TensorMap};

    #[test]
    fn invalid_geometry_is_a_config_error() {
        // A valid-padded kernel larger than the frame.
        let e = ConvLstm2d::new(ConvLstm2dConfig::new(4, 6, 1, 2, (5, 3)), Backend::Cpu, 0)
            .err()
            .unwrap();
        assert!(
            matches!(e, Error::Config(_)) && e.to_string().contains("only 4 rows"),
            "{e}"
        );
        // Through dilation too: (3-1)·3+1 = 7 > 6.
        let mut cfg = ConvLstm2dConfig::new(8, 6, 1, 2, (3, 3));
        cfg.dilation_rate = (1, 3);
        assert!(matches!(
            ConvLstm2d::new(cfg, Backend::Cpu, 0),
            Err(Error::Config(_))
        ));
        // Keras forbids strides > 1 with dilation > 1.
        let mut cfg = ConvLstm2dConfig::new(8, 8, 1, 2, (3, 3));
        cfg.padding = Padding::Same;
        cfg.strides = (2, 2);
        cfg.dilation_rate = (2, 2);
        let e = ConvLstm2d::new(cfg, common::gpu(), 0).err().unwrap();
        assert!(
            matches!(e, Error::Config(_)) && e.to_string().contains("dilation_rate"),
            "{e}"
        );
    }

    #[test]
    fn channel_and_state_mismatches_are_shape_errors() {
        for backend in [common::gpu(), Backend::Cpu] {
            let mut cfg = ConvLstm2dConfig::new(6, 6, 2, 3, (3, 3));
            cfg.padding = Padding::Same;
            let l = ConvLstm2d::new(cfg, backend, 0).unwrap();
            let x = Array5::<f32>::zeros((1, 2, 6, 6, 3));
            let e = l.forward(x.view(), None).unwrap_err();
            assert!(
                matches!(e, Error::Shape(_)) && e.to_string().contains("in_channels is 2"),
                "{e}"
            );
            let x = Array5::<f32>::zeros((1, 2, 6, 6, 2));
            let h = Array4::<f32>::zeros((1, 6, 6, 4));
            let e = l.forward(x.view(), Some((h.view(), h.view()))).unwrap_err();
            assert!(e.to_string().contains("h0"), "{e}");
            let x0 = Array5::<f32>::zeros((1, 0, 6, 6, 2));
            assert!(matches!(l.forward(x0.view(), None), Err(Error::Shape(_))));
            let (_, trace) = l.forward_train(x.view(), None).unwrap();
            let bad = ArrayD::<f32>::zeros(vec![1, 6, 6, 4]);
            let e = l.backward(&trace, bad.view(), None).unwrap_err();
            assert!(e.to_string().contains("dy_out"), "{e}");
        }
    }

    #[test]
    fn misshapen_keras_weights_are_named() {
        let cfg = ConvLstm2dConfig::new(6, 6, 2, 3, (3, 3));
        let mut w = TensorMap::new();
        w.insert("kernel".into(), ArrayD::zeros(vec![3, 3, 2, 12]));
        w.insert("recurrent_kernel".into(), ArrayD::zeros(vec![3, 3, 2, 12]));
        w.insert("bias".into(), ArrayD::zeros(vec![12]));
        let e = ConvLstm2d::from_keras(cfg, &w, Backend::Cpu).err().unwrap();
        assert!(
            e.to_string()
                .contains("recurrent_kernel has shape [3, 3, 2, 12]; expected [3, 3, 3, 12]"),
            "{e}"
        );
    }
}
