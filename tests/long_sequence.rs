//! One long sequence per algorithm against the CPU reference. llvmpipe silently stops a
//! shader's loops after 65535 iterations per invocation (DESIGN.md §5); at H = 32 one step
//! costs ~40 iterations, so 3000 steps in one dispatch would be truncated: this guards the
//! chunking of the time loop. B·T = 18000 also splits the weight-gradient GEMMs' K.

mod common;

use wgpu_rnn::{Algorithm, Backend, Lstm, LstmConfig};

fn long_run(algo: Algorithm, (t, b): (usize, usize)) {
    long_run_cfg(algo, (t, b), LstmConfig::new(4, 32));
}

fn long_run_cfg(algo: Algorithm, (t, b): (usize, usize), cfg: LstmConfig) {
    let mut gpu = Lstm::new(cfg, common::gpu(), 5).unwrap();
    gpu.set_algorithm(algo);
    let cpu = Lstm::new(cfg, Backend::Cpu, 5).unwrap();
    let x = common::rand3((t, b, 4), 9, 1.0);
    let (og, tg) = gpu.forward_train(x.view(), None, None).unwrap();
    let (oc, tc) = cpu.forward_train(x.view(), None, None).unwrap();
    common::assert_close("out", og.out.view().into_dyn(), oc.out.view(), 1e-5, 1e-4);
    common::assert_close("c_n", og.c_n.view().into_dyn(), oc.c_n.view(), 1e-5, 1e-4);
    let dy = common::rand3(og.out.dim(), 10, 1.0);
    let gg = gpu.backward(&tg, dy.view(), None).unwrap();
    let gc = cpu.backward(&tc, dy.view(), None).unwrap();
    common::assert_close("dx", gg.dx.view().into_dyn(), gc.dx.view(), 1e-5, 1e-4);
    common::assert_close("dh0", gg.dh0.view().into_dyn(), gc.dh0.view(), 1e-5, 1e-4);
    for (k, v) in &gc.weights {
        // Sums over 18000 rows: allow the f32 accumulation error of that many terms.
        common::assert_close(k, gg.weights[k].view(), v.view(), 1e-4, 1e-4);
    }
}

#[test]
fn long_sequence_persistent() {
    long_run(Algorithm::Persistent, (3000, 6));
}

#[test]
fn long_sequence_stepwise() {
    long_run(Algorithm::Stepwise, (3000, 6));
}

/// Resident keeps W_hh in registers, so a step costs only ~8 loop iterations per invocation:
/// 12000 steps (~100 000 iterations) are needed before one dispatch would pass llvmpipe's
/// cap, so this is what guards its chunking.
#[test]
fn long_sequence_resident() {
    long_run(Algorithm::Resident, (12000, 2));
}

/// Both directions in one dispatch per chunk: the reverse direction's chunks start from the
/// same processing step as the forward's, from T-1 down in time.
#[test]
fn long_sequence_resident_bidirectional() {
    let mut cfg = LstmConfig::new(4, 32);
    cfg.bidirectional = true;
    long_run_cfg(Algorithm::Resident, (12000, 1), cfg);
}

/// Grid at H = 32 plans one slice (a grid of one workgroup, whose barrier passes alone), so
/// its steps are as cheap as Resident's: the same 12000 steps guard its chunking.
#[test]
fn long_sequence_grid() {
    long_run(Algorithm::Grid, (12000, 2));
}
