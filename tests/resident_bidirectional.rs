//! Algorithm::Resident runs both directions of a bidirectional layer in ONE dispatch
//! (`shaders/resident_bi_*.wgsl`) on devices that bind 14 storage buffers per stage, and one
//! dispatch per direction on a device opened with wgpu's default 8. Both forms must give
//! bit-identical outputs and gradients (the same per-direction code runs in each), match the
//! CPU reference within `1e-5 + 1e-4·|cpu|`, and the one-dispatch form must record exactly one
//! dispatch fewer per layer and chunk in the forward and in the backward.

mod common;
#[macro_use]
#[path = "support/bidir.rs"]
mod bidir;

use std::sync::Arc;

use wgpu_rnn::{
    Algorithm, Backend, Context, Gru, GruConfig, Lstm, LstmConfig, Nonlinearity, SimpleRnn,
    SimpleRnnConfig,
};

const ATOL: f32 = 1e-5;
const RTOL: f32 = 1e-4;
const LAYERS: usize = 2;
const LENS: [usize; 3] = [7, 4, 1];
const T: usize = 7;
const B: usize = 3;
const I: usize = 4;
const H: usize = 12;

/// A context whose device allows only `storage` storage buffers per shader stage (the
/// adapter's limits otherwise): what a caller's own device may look like.
fn ctx_with_storage(storage: u32) -> Arc<Context> {
    common::own_device(|l| {
        assert!(
            l.max_storage_buffers_per_shader_stage >= 14,
            "the test adapter binds {} storage buffers per stage; one dispatch needs 14",
            l.max_storage_buffers_per_shader_stage
        );
        l.max_storage_buffers_per_shader_stage = storage;
    })
}

/// One dispatch vs two give identical numbers, both close to the CPU, and the dispatch
/// counts differ by one per layer (T = 7 fits one chunk on every adapter).
fn compare(one: bidir::Run, two: bidir::Run, cpu: bidir::Run, what: &str) {
    bidir::assert_same_bits(
        &one,
        &two,
        &format!("{what}: one dispatch vs one per direction"),
    );
    for ((name, a), (_, c)) in one.values.iter().zip(&cpu.values) {
        common::assert_close(&format!("{what} {name}"), a.view(), c.view(), ATOL, RTOL);
    }
    assert_eq!(
        two.forward_dispatches - one.forward_dispatches,
        LAYERS,
        "{what}: forward dispatches {} (one) vs {} (two)",
        one.forward_dispatches,
        two.forward_dispatches
    );
    assert_eq!(
        two.backward_dispatches - one.backward_dispatches,
        LAYERS,
        "{what}: backward dispatches {} (one) vs {} (two)",
        one.backward_dispatches,
        two.backward_dispatches
    );
}

#[test]
fn lstm_with_and_without_projection() {
    let (wide, narrow) = (ctx_with_storage(14), ctx_with_storage(8));
    for proj in [0, 5] {
        let mut cfg = LstmConfig::new(I, H);
        cfg.num_layers = LAYERS;
        cfg.bidirectional = true;
        cfg.proj_size = proj;
        let build = |backend: Backend| {
            let mut l = Lstm::new(cfg, backend, 3).unwrap();
            l.set_algorithm(Algorithm::Resident);
            l
        };
        let one = bidir_run!(build(Backend::Gpu(wide.clone())), c_n);
        let two = bidir_run!(build(Backend::Gpu(narrow.clone())), c_n);
        let cpu = bidir_run!(build(Backend::Cpu), c_n);
        compare(one, two, cpu, &format!("LSTM proj {proj}"));
    }
}

#[test]
fn gru_reset_after_and_before() {
    let (wide, narrow) = (ctx_with_storage(14), ctx_with_storage(8));
    for reset_after in [true, false] {
        let mut cfg = GruConfig::new(I, H);
        cfg.num_layers = LAYERS;
        cfg.bidirectional = true;
        cfg.reset_after = reset_after;
        let build = |backend: Backend| {
            let mut l = Gru::new(cfg, backend, 5).unwrap();
            l.set_algorithm(Algorithm::Resident);
            l
        };
        let one = bidir_run!(build(Backend::Gpu(wide.clone())));
        let two = bidir_run!(build(Backend::Gpu(narrow.clone())));
        let cpu = bidir_run!(build(Backend::Cpu));
        compare(one, two, cpu, &format!("GRU reset_after {reset_after}"));
    }
}

#[test]
fn simple_rnn_tanh_and_relu() {
    let (wide, narrow) = (ctx_with_storage(14), ctx_with_storage(8));
    for nl in [Nonlinearity::Tanh, Nonlinearity::Relu] {
        let mut cfg = SimpleRnnConfig::new(I, H);
        cfg.num_layers = LAYERS;
        cfg.bidirectional = true;
        cfg.nonlinearity = nl;
        let build = |backend: Backend| {
            let mut l = SimpleRnn::new(cfg, backend, 9).unwrap();
            l.set_algorithm(Algorithm::Resident);
            l
        };
        let one = bidir_run!(build(Backend::Gpu(wide.clone())));
        let two = bidir_run!(build(Backend::Gpu(narrow.clone())));
        let cpu = bidir_run!(build(Backend::Cpu));
        compare(one, two, cpu, &format!("RNN {nl:?}"));
    }
}
