//! Algorithm::Grid runs both directions of a bidirectional layer in ONE dispatch
//! (`shaders/grid_bi_*.wgsl`, each direction with its own barrier counter) on devices that
//! bind 16 storage buffers per stage, and one dispatch per direction on a device with 9.
//! In every Grid mode lavapipe reaches (one slice: the barrier passes alone; several slices:
//! it times out and the fallback finishes; a barrier forced to fail after a chosen step, in
//! both directions or in one only; one step per dispatch),
//! both forms give bit-identical outputs and gradients, match the CPU reference within
//! `1e-5 + 1e-4·|cpu|`, and the one-dispatch form records one grid chunk and one fallback
//! chunk fewer per layer in the forward and in the backward. A device with 8 storage
//! buffers (wgpu's default) cannot bind Grid's backward: forcing it is a Limit error naming
//! the numbers, and Auto trains with another algorithm.

mod common;
#[macro_use]
#[path = "support/bidir.rs"]
mod bidir;

use std::sync::{Arc, Mutex};

use wgpu_rnn::algorithm::{GridHook, set_grid_test_hook};
use wgpu_rnn::{
    Algorithm, Backend, Context, Error, Gru, GruConfig, Lstm, LstmConfig, Nonlinearity, SimpleRnn,
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

/// The Grid hook is process-wide: these tests run one at a time.
static HOOK: Mutex<()> = Mutex::new(());

/// A context on this adapter with Grid's coherent storage and `storage` storage buffers per
/// shader stage.
fn ctx_with_storage(storage: u32) -> Arc<Context> {
    common::own_device_with(wgpu::Features::MEMORY_DECORATION_COHERENT, |l| {
        assert!(
            l.max_storage_buffers_per_shader_stage >= 16,
            "the test adapter binds {} storage buffers per stage; one dispatch needs 16",
            l.max_storage_buffers_per_shader_stage
        );
        l.max_storage_buffers_per_shader_stage = storage;
    })
}

fn compare(one: &bidir::Run, two: &bidir::Run, cpu: &bidir::Run, what: &str, step_mode: bool) {
    bidir::assert_same_bits(
        one,
        two,
        &format!("{what}: one dispatch vs one per direction"),
    );
    for ((name, a), (_, c)) in one.values.iter().zip(&cpu.values) {
        common::assert_close(&format!("{what} {name}"), a.view(), c.view(), ATOL, RTOL);
    }
    // T = 7 is one grid chunk and one fallback chunk per direction; step mode is a dispatch
    // per step and phase, so there one dispatch saves more.
    for (pass, o, t) in [
        ("forward", one.forward_dispatches, two.forward_dispatches),
        ("backward", one.backward_dispatches, two.backward_dispatches),
    ] {
        if step_mode {
            assert!(
                t - o >= T * LAYERS,
                "{what}: {pass} dispatches {o} (one) vs {t} (two)"
            );
        } else {
            assert_eq!(
                t - o,
                2 * LAYERS,
                "{what}: {pass} dispatches {o} (one) vs {t} (two)"
            );
        }
    }
}

/// The modes, each a hook: one slice (its barrier passes alone on lavapipe), the same with
/// barrier 2 forced to fail in both directions and in direction 1 only (direction 0's grid
/// then finishes while direction 1 resumes at step 3 in the fallback), three slices (on
/// lavapipe the first barrier times out and the fallback runs the rest), and three slices
/// one step per dispatch.
const MODES: [GridHook; 5] = [
    hook(H, None, None, false),
    hook(H, Some(2), None, false),
    hook(H, Some(2), Some(1), false),
    hook(H / 3, None, None, false),
    hook(H / 3, None, None, true),
];

const fn hook(
    units: usize,
    fail_at_barrier: Option<usize>,
    fail_direction: Option<usize>,
    step_mode: bool,
) -> GridHook {
    GridHook {
        units_per_slice: Some(units),
        fail_at_barrier,
        step_mode,
        fail_direction,
    }
}

/// Runs `build` on the 16-binding device, the 9-binding one and the CPU in every mode.
fn each_mode(what: &str, go: impl Fn(Backend) -> bidir::Run) {
    let _g = HOOK.lock().unwrap_or_else(|e| e.into_inner());
    let (wide, narrow) = (ctx_with_storage(16), ctx_with_storage(9));
    let cpu = go(Backend::Cpu);
    let mut first: Option<bidir::Run> = None;
    for hook in MODES {
        set_grid_test_hook(hook);
        let one = go(Backend::Gpu(wide.clone()));
        let two = go(Backend::Gpu(narrow.clone()));
        set_grid_test_hook(GridHook::default());
        compare(
            &one,
            &two,
            &cpu,
            &format!("{what} {hook:?}"),
            hook.step_mode,
        );
        // Every mode gives the same numbers.
        if let Some(f) = &first {
            bidir::assert_same_bits(&one, f, &format!("{what} {hook:?} vs the one-slice grid"));
        } else {
            first = Some(one);
        }
    }
}

#[test]
fn lstm_with_and_without_projection() {
    for proj in [0, 5] {
        let mut cfg = LstmConfig::new(I, H);
        cfg.num_layers = LAYERS;
        cfg.bidirectional = true;
        cfg.proj_size = proj;
        each_mode(&format!("LSTM proj {proj}"), |backend| {
            let mut l = Lstm::new(cfg, backend, 3).unwrap();
            l.set_algorithm(Algorithm::Grid);
            bidir_run!(l, c_n)
        });
    }
}

#[test]
fn gru_reset_after_and_before() {
    for reset_after in [true, false] {
        let mut cfg = GruConfig::new(I, H);
        cfg.num_layers = LAYERS;
        cfg.bidirectional = true;
        cfg.reset_after = reset_after;
        each_mode(&format!("GRU reset_after {reset_after}"), |backend| {
            let mut l = Gru::new(cfg, backend, 5).unwrap();
            l.set_algorithm(Algorithm::Grid);
            bidir_run!(l)
        });
    }
}

#[test]
fn simple_rnn_tanh_and_relu() {
    for nl in [Nonlinearity::Tanh, Nonlinearity::Relu] {
        let mut cfg = SimpleRnnConfig::new(I, H);
        cfg.num_layers = LAYERS;
        cfg.bidirectional = true;
        cfg.nonlinearity = nl;
        each_mode(&format!("RNN {nl:?}"), |backend| {
            let mut l = SimpleRnn::new(cfg, backend, 9).unwrap();
            l.set_algorithm(Algorithm::Grid);
            bidir_run!(l)
        });
    }
}

#[test]
fn eight_storage_buffers_cannot_bind_grid_backward() {
    let ctx = ctx_with_storage(8);
    let x = common::rand3((T, B, I), 1, 1.0);
    let mut l = Lstm::new(LstmConfig::new(I, H), Backend::Gpu(ctx), 2).unwrap();
    l.set_algorithm(Algorithm::Grid);
    // The forward binds 8 and runs; the training forward plans the backward too.
    l.forward(x.view(), None, None).unwrap();
    let Err(e) = l.forward_train(x.view(), None, None) else {
        panic!("Grid training on 8 storage buffers must be refused");
    };
    assert!(matches!(e, Error::Limit(_)), "{e}");
    assert!(
        e.to_string().contains("9 storage buffers") && e.to_string().contains("8"),
        "{e}"
    );
    // Auto trains with another algorithm, matching the CPU.
    l.set_algorithm(Algorithm::Auto);
    let (o, tape) = l.forward_train(x.view(), None, None).unwrap();
    assert!(!l.last_stats().algorithms.contains(Algorithm::Grid));
    let dy = common::rand3(o.out.dim(), 4, 1.0);
    let g = l.backward(&tape, dy.view(), None).unwrap();
    let cpu = Lstm::new(LstmConfig::new(I, H), Backend::Cpu, 2).unwrap();
    let (co, ctape) = cpu.forward_train(x.view(), None, None).unwrap();
    let cg = cpu.backward(&ctape, dy.view(), None).unwrap();
    common::assert_close(
        "out",
        o.out.view().into_dyn(),
        co.out.view().into_dyn(),
        ATOL,
        RTOL,
    );
    common::assert_close(
        "dx",
        g.dx.view().into_dyn(),
        cg.dx.view().into_dyn(),
        ATOL,
        RTOL,
    );
}
