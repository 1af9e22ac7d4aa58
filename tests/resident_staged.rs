//! Algorithm::Resident with its single-component workgroup stores staged through a scalar
//! mirror (`STAGED = 1` in resident_common.wgsl), as every backend but Vulkan runs it
//! (forced here with `WGPU_RNN_RESIDENT_STORES=staged`): the same numbers, bit for bit, as
//! the unstaged kernels, and the CPU reference's within `1e-5 + 1e-4·|cpu|`, for every cell,
//! one direction and both (one dispatch), forward and backward, with packed lengths.
//! One test function: the variable is process-wide.

mod common;

use ndarray::{Array3, ArrayD};
use wgpu_rnn::{
    Algorithm, Backend, Gru, GruConfig, Lstm, LstmConfig, Nonlinearity, SimpleRnn, SimpleRnnConfig,
};

const ATOL: f32 = 1e-5;
const RTOL: f32 = 1e-4;
const LENS: [usize; 3] = [6, 3, 1];
const VAR: &str = "WGPU_RNN_RESIDENT_STORES";

/// Outputs and every gradient of forward_train + backward, in a fixed order.
macro_rules! run {
    ($layer:expr, $i:expr $(, $c_n:ident)?) => {{
        let layer = $layer;
        let x = common::rand3((6, 3, $i), 21, 1.0);
        let (out, tape) = layer.forward_train(x.view(), None, Some(&LENS)).unwrap();
        let dy: Array3<f32> = common::rand3(out.out.dim(), 22, 1.0);
        let g = layer.backward(&tape, dy.view(), None).unwrap();
        #[allow(unused_mut)]
        let mut v: Vec<(String, ArrayD<f32>)> = vec![
            ("out".into(), out.out.into_dyn()),
            ("h_n".into(), out.h_n.into_dyn()),
            ("dx".into(), g.dx.into_dyn()),
            ("dh0".into(), g.dh0.into_dyn()),
        ];
        $(v.push(("c_n".into(), out.$c_n.into_dyn()));)?
        let mut names: Vec<_> = g.weights.keys().cloned().collect();
        names.sort();
        for k in names {
            v.push((k.clone(), g.weights[&k].clone().into_dyn()));
        }
        v
    }};
}

fn set_staged(on: bool) {
    // SAFETY: the only test of this binary sets it, between its own runs.
    unsafe {
        if on {
            std::env::set_var(VAR, "staged");
        } else {
            std::env::remove_var(VAR);
        }
    }
}

fn compare(
    what: &str,
    staged: &[(String, ArrayD<f32>)],
    plain: &[(String, ArrayD<f32>)],
    cpu: &[(String, ArrayD<f32>)],
) {
    assert_eq!(staged.len(), plain.len());
    for ((name, a), (_, b)) in staged.iter().zip(plain) {
        assert!(
            a.iter()
                .zip(b.iter())
                .all(|(x, y)| x.to_bits() == y.to_bits()),
            "{what} {name}: staged and unstaged stores differ"
        );
    }
    for ((name, a), (_, c)) in staged.iter().zip(cpu) {
        common::assert_close(&format!("{what} {name}"), a.view(), c.view(), ATOL, RTOL);
    }
}

/// Runs `build` unstaged, staged and on the CPU and compares the three.
macro_rules! three_ways {
    ($what:expr, $build:expr, $i:expr $(, $c_n:ident)?) => {{
        let build = $build;
        set_staged(false);
        let plain = run!(build(common::gpu()), $i $(, $c_n)?);
        set_staged(true);
        let staged = run!(build(common::gpu()), $i $(, $c_n)?);
        set_staged(false);
        let cpu = run!(build(Backend::Cpu), $i $(, $c_n)?);
        compare(&$what, &staged, &plain, &cpu);
    }};
}

#[test]
fn staged_stores_give_the_unstaged_numbers() {
    for bidirectional in [false, true] {
        for proj in [0, 3] {
            let mut cfg = LstmConfig::new(4, 10);
            cfg.num_layers = 2;
            cfg.bidirectional = bidirectional;
            cfg.proj_size = proj;
            let build = |b: Backend| {
                let mut l = Lstm::new(cfg, b, 3).unwrap();
                l.set_algorithm(Algorithm::Resident);
                l
            };
            three_ways!(
                format!("LSTM bi {bidirectional} proj {proj}"),
                build,
                4,
                c_n
            );
        }
        for reset_after in [true, false] {
            let mut cfg = GruConfig::new(4, 10);
            cfg.num_layers = 2;
            cfg.bidirectional = bidirectional;
            cfg.reset_after = reset_after;
            let build = |b: Backend| {
                let mut l = Gru::new(cfg, b, 5).unwrap();
                l.set_algorithm(Algorithm::Resident);
                l
            };
            three_ways!(
                format!("GRU bi {bidirectional} reset_after {reset_after}"),
                build,
                4
            );
        }
        for nl in [Nonlinearity::Tanh, Nonlinearity::Relu] {
            let mut cfg = SimpleRnnConfig::new(4, 10);
            cfg.num_layers = 2;
            cfg.bidirectional = bidirectional;
            cfg.nonlinearity = nl;
            let build = |b: Backend| {
                let mut l = SimpleRnn::new(cfg, b, 9).unwrap();
                l.set_algorithm(Algorithm::Resident);
                l
            };
            three_ways!(format!("RNN bi {bidirectional} {nl:?}"), build, 4);
        }
    }
}
