//! Algorithm::Resident's reach follows from the device's limits: the largest hidden size it
//! reports runs forward and backward and matches the CPU reference; one more is a typed
//! `Error::Limit` naming the hidden size and the device's invocation limit.

mod common;

use wgpu_rnn::algorithm::resident_max_hidden;
use wgpu_rnn::{Algorithm, Backend, Error, Lstm, LstmConfig, SimpleRnn, SimpleRnnConfig};

fn ctx() -> std::sync::Arc<wgpu_rnn::Context> {
    match common::gpu() {
        Backend::Gpu(c) => c,
        Backend::Cpu => unreachable!(),
    }
}

#[test]
fn largest_lstm_runs_and_one_more_is_a_limit_error() {
    let ctx = ctx();
    let max = resident_max_hidden(&ctx)[0].1;
    let inv = ctx.limits().max_compute_invocations_per_workgroup as usize;
    // One invocation per 64-float chunk of each of the 4H rows: 4H·ceil(H/64) ≤ invocations.
    assert!(
        4 * max * max.div_ceil(64) <= inv,
        "max {max}, invocations {inv}"
    );
    let next = max + 1;
    assert!(4 * next * next.div_ceil(64) > inv || next > 4096);

    let (t, b, i) = (3, 2, 5);
    let x = common::rand3((t, b, i), 3, 1.0);
    let mut gpu = Lstm::new(LstmConfig::new(i, max), common::gpu(), 7).unwrap();
    gpu.set_algorithm(Algorithm::Resident);
    let cpu = Lstm::new(LstmConfig::new(i, max), Backend::Cpu, 7).unwrap();
    let (og, tg) = gpu.forward_train(x.view(), None, None).unwrap();
    let (oc, tc) = cpu.forward_train(x.view(), None, None).unwrap();
    common::assert_close("out", og.out.view().into_dyn(), oc.out.view(), 1e-5, 1e-4);
    let dy = common::rand3(og.out.dim(), 4, 1.0);
    let gg = gpu.backward(&tg, dy.view(), None).unwrap();
    let gc = cpu.backward(&tc, dy.view(), None).unwrap();
    common::assert_close("dx", gg.dx.view().into_dyn(), gc.dx.view(), 1e-5, 1e-4);
    common::assert_close("dh0", gg.dh0.view().into_dyn(), gc.dh0.view(), 1e-5, 1e-4);

    let mut big = Lstm::new(LstmConfig::new(i, next), common::gpu(), 7).unwrap();
    big.set_algorithm(Algorithm::Resident);
    let e = big
        .forward(x.view(), None, None)
        .expect_err("beyond the limit");
    let msg = e.to_string();
    assert!(matches!(e, Error::Limit(_)), "{e}");
    assert!(msg.contains(&format!("hidden_size {next}")), "{msg}");
    assert!(msg.contains(&inv.to_string()), "{msg}");
}

#[test]
fn rnn_reaches_four_times_the_lstm_rows() {
    // RNN has H rows instead of 4H, so its limit is higher; still a typed error past it.
    let ctx = ctx();
    let lim = resident_max_hidden(&ctx);
    assert!(lim[3].1 > lim[0].1, "{lim:?}");
    let mut r = SimpleRnn::new(SimpleRnnConfig::new(3, lim[3].1 + 1), common::gpu(), 1).unwrap();
    r.set_algorithm(Algorithm::Resident);
    let x = common::rand3((2, 1, 3), 5, 1.0);
    let e = r
        .forward(x.view(), None, None)
        .expect_err("beyond the limit");
    assert!(matches!(e, Error::Limit(_)), "{e}");
}
