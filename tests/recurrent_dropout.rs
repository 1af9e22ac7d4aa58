//! Keras `recurrent_dropout` on the device (LSTM, GRU both reset_after modes, SimpleRNN):
//! the mask statistics (keep rate, exact 1/(1-p) values), masks drawn afresh per training
//! call and reproducible from the seed (the host mirror of the device hash), one mask per
//! layer-direction, inference as the identity, the typed errors (rate outside [0, 1),
//! Resident/Grid, the CPU backend). GPU-vs-CPU replays of the masks, gradients and finite
//! differences are unit tests next to the Keras CPU reference
//! (`src/models/keras/rec_dropout_tests.rs`).

mod common;

use ndarray::{Array3, Array4};
use wgpu_rnn::nn::dropout::recurrent_dropout_masks;
use wgpu_rnn::{
    Algorithm, Backend, Error, Gru, GruConfig, Layer, Lstm, LstmConfig, Recorder, SimpleRnn,
    SimpleRnnConfig,
};

/// The three cells behind one interface: (training output, masks) and inference output.
enum Net {
    Lstm(Lstm),
    Gru(Gru),
    Rnn(SimpleRnn),
}

#[derive(Clone, Copy, Debug)]
enum Cell {
    Lstm,
    GruAfter,
    GruBefore,
    Rnn,
}

const CELLS: [Cell; 4] = [Cell::Lstm, Cell::GruAfter, Cell::GruBefore, Cell::Rnn];

fn gates(c: Cell) -> usize {
    match c {
        Cell::Lstm => 4,
        Cell::GruAfter | Cell::GruBefore => 3,
        Cell::Rnn => 1,
    }
}

/// A layer of `cell` (`layers` stacked, optionally bidirectional) with `rate` and `seed`.
/// GRU reset_before is Keras-only, so those layers are built from Keras tensors.
fn net(
    cell: Cell,
    (i, h, layers, bidi): (usize, usize, usize, bool),
    (rate, seed): (f32, u64),
    backend: Backend,
) -> Result<Net, Error> {
    Ok(match cell {
        Cell::Lstm => {
            let mut c = LstmConfig::new(i, h);
            (c.num_layers, c.bidirectional) = (layers, bidi);
            (c.recurrent_dropout, c.dropout_seed) = (rate, seed);
            Net::Lstm(Lstm::new(c, backend, 3)?)
        }
        Cell::GruAfter => {
            let mut c = GruConfig::new(i, h);
            (c.num_layers, c.bidirectional) = (layers, bidi);
            (c.recurrent_dropout, c.dropout_seed) = (rate, seed);
            Net::Gru(Gru::new(c, backend, 3)?)
        }
        Cell::GruBefore => {
            let mut c = GruConfig::new(i, h);
            c.reset_after = false;
            (c.recurrent_dropout, c.dropout_seed) = (rate, seed);
            let t2 = |r: usize, c: usize, seed: u64| {
                let a = common::rand3((1, r, c), seed, 0.5);
                a.index_axis(ndarray::Axis(0), 0).to_owned().into_dyn()
            };
            let mut m = wgpu_rnn::TensorMap::new();
            m.insert("kernel".into(), t2(i, 3 * h, 5));
            m.insert("recurrent_kernel".into(), t2(h, 3 * h, 6));
            let bias = t2(1, 3 * h, 7).into_shape_with_order(vec![3 * h]).unwrap();
            m.insert("bias".into(), bias);
            Net::Gru(Gru::from_keras(c, &m, backend)?)
        }
        Cell::Rnn => {
            let mut c = SimpleRnnConfig::new(i, h);
            (c.num_layers, c.bidirectional) = (layers, bidi);
            (c.recurrent_dropout, c.dropout_seed) = (rate, seed);
            Net::Rnn(SimpleRnn::new(c, backend, 3)?)
        }
    })
}

impl Net {
    fn set_algorithm(&mut self, a: Algorithm) {
        match self {
            Net::Lstm(l) => l.set_algorithm(a),
            Net::Gru(l) => l.set_algorithm(a),
            Net::Rnn(l) => l.set_algorithm(a),
        }
    }

    /// A training forward: `(out, masks)`.
    fn train(&self, x: &Array3<f32>) -> Result<(Array3<f32>, Option<Array4<f32>>), Error> {
        Ok(match self {
            Net::Lstm(l) => {
                let (o, t) = l.forward_train(x.view(), None, None)?;
                (o.out, l.recurrent_dropout_mask(&t)?)
            }
            Net::Gru(l) => {
                let (o, t) = l.forward_train(x.view(), None, None)?;
                (o.out, l.recurrent_dropout_mask(&t)?)
            }
            Net::Rnn(l) => {
                let (o, t) = l.forward_train(x.view(), None, None)?;
                (o.out, l.recurrent_dropout_mask(&t)?)
            }
        })
    }

    fn infer(&self, x: &Array3<f32>) -> Result<Array3<f32>, Error> {
        Ok(match self {
            Net::Lstm(l) => l.forward(x.view(), None, None)?.out,
            Net::Gru(l) => l.forward(x.view(), None, None)?.out,
            Net::Rnn(l) => l.forward(x.view(), None, None)?.out,
        })
    }
}

fn input(t: usize, b: usize, i: usize) -> Array3<f32> {
    common::rand3((t, b, i), 11, 1.0)
}

#[test]
fn mask_keep_rate_and_exact_scale() {
    let (rate, b, h) = (0.3f32, 16, 32);
    for cell in CELLS {
        let n = net(cell, (2, h, 1, false), (rate, 9), common::gpu()).unwrap();
        let (_, m) = n.train(&input(3, b, 2)).unwrap();
        let m = m.expect("a training forward with rate > 0 draws masks");
        assert_eq!(m.shape(), &[1, gates(cell), b, h], "{cell:?}");
        let scale = 1.0 / (1.0 - rate);
        let kept = m.iter().filter(|&&v| v != 0.0).count() as f64;
        assert!(
            m.iter().all(|&v| v == 0.0 || v == scale),
            "{cell:?}: values other than 0 and 1/(1-p)"
        );
        // Binomial(N, 0.7) within 5 standard deviations.
        let total = m.len() as f64;
        let sd = (total * 0.3 * 0.7).sqrt();
        assert!(
            (kept - 0.7 * total).abs() < 5.0 * sd,
            "{cell:?}: kept {kept} of {total}"
        );
    }
}

#[test]
fn fresh_masks_per_call_reproducible_from_the_seed() {
    let (rate, seed, b, h) = (0.4f32, 1234u64, 3, 8);
    let x = input(4, b, 2);
    for cell in CELLS {
        let g = gates(cell);
        let n = net(cell, (2, h, 1, false), (rate, seed), common::gpu()).unwrap();
        let (y0, m0) = n.train(&x).unwrap();
        let (y1, m1) = n.train(&x).unwrap();
        let (m0, m1) = (m0.unwrap(), m1.unwrap());
        assert_ne!(m0, m1, "{cell:?}: the second call must draw new masks");
        assert_ne!(y0, y1, "{cell:?}: new masks, new outputs");
        // The device drew exactly the host mirror of calls 0 and 1.
        for (call, m) in [(0, &m0), (1, &m1)] {
            let want = recurrent_dropout_masks(seed, call, rate, (1, g, b, h)).unwrap();
            assert_eq!(m, &want, "{cell:?} call {call}");
        }
        // Every gate block has its own mask (Keras draws one per gate).
        if g > 1 {
            let a = m0.index_axis(ndarray::Axis(1), 0);
            let c = m0.index_axis(ndarray::Axis(1), 1);
            assert_ne!(a, c, "{cell:?}: gate masks must differ");
        }
        // A new layer with the same seed replays the same sequence of masks and outputs.
        let again = net(cell, (2, h, 1, false), (rate, seed), common::gpu()).unwrap();
        let (z0, n0) = again.train(&x).unwrap();
        assert_eq!(n0.unwrap(), m0, "{cell:?}: same seed, same first mask");
        assert_eq!(z0, y0, "{cell:?}: same seed, same output");
        let other = net(cell, (2, h, 1, false), (rate, seed + 1), common::gpu()).unwrap();
        assert_ne!(
            other.train(&x).unwrap().1.unwrap(),
            m0,
            "{cell:?}: other seed"
        );
    }
}

#[test]
fn each_layer_and_direction_draws_its_own_mask() {
    let (b, h) = (2, 8);
    for cell in [Cell::Lstm, Cell::GruAfter, Cell::Rnn] {
        let n = net(cell, (3, h, 2, true), (0.5, 3), common::gpu()).unwrap();
        let (_, m) = n.train(&input(3, b, 3)).unwrap();
        let m = m.unwrap();
        assert_eq!(m.shape(), &[4, gates(cell), b, h], "{cell:?}");
        for i in 0..4 {
            for j in 0..i {
                assert_ne!(
                    m.index_axis(ndarray::Axis(0), i),
                    m.index_axis(ndarray::Axis(0), j),
                    "{cell:?}: layer-directions {i} and {j} share a mask"
                );
            }
        }
    }
}

#[test]
fn inference_and_rate_zero_are_the_identity() {
    let x = input(5, 3, 2);
    for cell in CELLS {
        for algo in [Algorithm::Auto, Algorithm::Stepwise, Algorithm::Persistent] {
            let mut with = net(cell, (2, 8, 1, false), (0.5, 1), common::gpu()).unwrap();
            let mut without = net(cell, (2, 8, 1, false), (0.0, 1), common::gpu()).unwrap();
            with.set_algorithm(algo);
            without.set_algorithm(algo);
            let plain = without.infer(&x).unwrap();
            // Inference never masks: bit-identical to the layer without recurrent dropout.
            assert_eq!(with.infer(&x).unwrap(), plain, "{cell:?} {algo:?}");
            // Training at rate 0 draws nothing and computes the same outputs.
            let (y0, m0) = without.train(&x).unwrap();
            assert!(m0.is_none(), "{cell:?}: rate 0 drew masks");
            assert_eq!(y0, plain, "{cell:?} {algo:?}: rate-0 training output");
            // Training with the rate does change the output (the masks are applied).
            let (y, m) = with.train(&x).unwrap();
            assert!(m.is_some());
            let diff = y
                .iter()
                .zip(plain.iter())
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            assert!(
                diff > 1e-3,
                "{cell:?} {algo:?}: masks had no effect ({diff})"
            );
        }
    }
}

#[test]
fn invalid_rates_are_typed_config_errors() {
    for rate in [-0.1f32, 1.0, 1.5, f32::NAN] {
        for cell in CELLS {
            match net(cell, (2, 4, 1, false), (rate, 0), common::gpu()) {
                Err(Error::Config(msg)) => {
                    assert!(msg.contains("recurrent_dropout"), "{cell:?}: {msg}")
                }
                Err(e) => panic!("{cell:?} rate {rate}: wrong error {e}"),
                Ok(_) => panic!("{cell:?} rate {rate} accepted"),
            }
        }
    }
    let mut c = LstmConfig::new(2, 4);
    c.recurrent_dropout = 1.0;
    assert!(matches!(c.validate(), Err(Error::Config(_))));
    // Keras has no projection: the combination is refused by name.
    (c.recurrent_dropout, c.proj_size) = (0.2, 2);
    assert!(
        matches!(c.validate(), Err(Error::Unsupported(m)) if m.contains("proj_size")),
        "projection with recurrent_dropout"
    );
}

#[test]
fn resident_and_grid_refuse_masks_by_name() {
    let x = input(3, 2, 2);
    for cell in CELLS {
        for algo in [Algorithm::Resident, Algorithm::Grid] {
            let mut n = net(cell, (2, 8, 1, false), (0.25, 1), common::gpu()).unwrap();
            n.set_algorithm(algo);
            match n.train(&x) {
                Err(Error::Unsupported(msg)) => {
                    assert!(
                        msg.contains("recurrent_dropout"),
                        "{cell:?} {algo:?}: {msg}"
                    )
                }
                Err(e) => panic!("{cell:?} {algo:?}: wrong error {e}"),
                Ok(_) => panic!("{cell:?} {algo:?} trained with masks"),
            }
            // Inference draws no masks, so the forced algorithm runs.
            n.infer(&x).unwrap();
        }
    }
}

#[test]
fn the_cpu_backend_refuses_masked_training_but_infers() {
    let x = input(3, 2, 2);
    for cell in [Cell::Lstm, Cell::GruAfter, Cell::Rnn] {
        let n = net(cell, (2, 4, 1, false), (0.3, 1), Backend::Cpu).unwrap();
        assert!(
            matches!(n.train(&x), Err(Error::Unsupported(m)) if m.contains("recurrent_dropout")),
            "{cell:?}"
        );
        n.infer(&x).unwrap();
    }
}

/// The device path draws masks too and hands them out from its tape.
#[test]
fn the_device_path_draws_and_reports_masks() {
    let Backend::Gpu(ctx) = common::gpu() else {
        unreachable!()
    };
    let mut c = LstmConfig::new(2, 8);
    (c.recurrent_dropout, c.dropout_seed) = (0.5, 77);
    let l = Lstm::new(c, common::gpu(), 1).unwrap();
    let x = wgpu_rnn::DeviceTensor::from_f32(
        &ctx,
        &[4, 3, 2],
        &input(4, 3, 2).into_raw_vec_and_offset().0,
    )
    .unwrap();
    let mut rec = Recorder::new(&ctx);
    let f = l.record_forward(&mut rec, &x, true).unwrap();
    rec.submit().unwrap();
    let m = l
        .recurrent_dropout_mask_of(f.tape.as_ref().unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(
        m,
        recurrent_dropout_masks(77, 0, 0.5, (1, 4, 3, 8)).unwrap()
    );
    // Inference records no tape and draws nothing.
    let mut rec = Recorder::new(&ctx);
    let f = l.record_forward(&mut rec, &x, false).unwrap();
    rec.submit().unwrap();
    assert!(f.tape.is_none());
}
