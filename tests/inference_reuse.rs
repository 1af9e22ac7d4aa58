//! Repeated inference reuses the layer's device buffers, uniform arena and bind groups: the
//! second call with the same shape builds no bind group (so no buffer was replaced), and
//! every call still equals the CPU reference — including after a shape change and back, with
//! packed lengths and initial states that differ between calls (reused buffers must not leak
//! the previous call's values).

mod common;

use ndarray::Array3;
use wgpu_rnn::{Backend, Gru, GruConfig, Lstm, LstmConfig, SimpleRnn, SimpleRnnConfig};

const ATOL: f32 = 1e-5;
const RTOL: f32 = 1e-4;

/// (T, B, lengths, seed) of successive calls: a shape twice, another shape, the first shape
/// twice again (the workspace keeps the last shape's buffers only).
const CALLS: [(usize, usize, &[usize], u64); 5] = [
    (6, 3, &[6, 2, 4], 1),
    (6, 3, &[3, 6, 1], 2),
    (4, 2, &[4, 4], 3),
    (6, 3, &[6, 5, 6], 4),
    (6, 3, &[1, 1, 2], 5),
];

fn check_calls<F>(what: &str, i: usize, mut run: F)
where
    F: FnMut(&Array3<f32>, &[usize], &Array3<f32>) -> (Vec<Array3<f32>>, Vec<Array3<f32>>, usize),
{
    for (k, &(t, b, lens, seed)) in CALLS.iter().enumerate() {
        let x = common::rand3((t, b, i), seed, 1.0);
        let h0 = common::rand3((2, b, 5), seed + 10, 0.5);
        let (gpu, cpu, built) = run(&x, lens, &h0);
        for (g, c) in gpu.iter().zip(&cpu) {
            common::assert_close(
                &format!("{what} call {k}"),
                g.view().into_dyn(),
                c.view().into_dyn(),
                ATOL,
                RTOL,
            );
        }
        match k {
            1 | 4 => assert_eq!(
                built, 0,
                "{what} call {k}: the same shape again reuses everything"
            ),
            _ => assert!(
                built > 0,
                "{what} call {k}: a new shape builds its bind groups"
            ),
        }
    }
}

#[test]
fn lstm_inference_reuses_buffers_and_bind_groups() {
    let mut cfg = LstmConfig::new(4, 5);
    cfg.num_layers = 2;
    let gpu = Lstm::new(cfg, common::gpu(), 7).unwrap();
    let cpu = Lstm::new(cfg, Backend::Cpu, 7).unwrap();
    check_calls("lstm", 4, |x, lens, h0| {
        let c0 = h0.mapv(|v| -v);
        let s = Some((h0.view(), c0.view()));
        let g = gpu.forward(x.view(), s, Some(lens)).unwrap();
        let built = gpu.last_stats().bind_groups_built;
        let c = cpu.forward(x.view(), s, Some(lens)).unwrap();
        (vec![g.out, g.h_n, g.c_n], vec![c.out, c.h_n, c.c_n], built)
    });
}

#[test]
fn gru_and_rnn_inference_reuse_buffers_and_bind_groups() {
    let mut cfg = GruConfig::new(4, 5);
    cfg.num_layers = 2;
    let gpu = Gru::new(cfg, common::gpu(), 3).unwrap();
    let cpu = Gru::new(cfg, Backend::Cpu, 3).unwrap();
    check_calls("gru", 4, |x, lens, h0| {
        let g = gpu.forward(x.view(), Some(h0.view()), Some(lens)).unwrap();
        let built = gpu.last_stats().bind_groups_built;
        let c = cpu.forward(x.view(), Some(h0.view()), Some(lens)).unwrap();
        (vec![g.out, g.h_n], vec![c.out, c.h_n], built)
    });
    let mut cfg = SimpleRnnConfig::new(4, 5);
    cfg.bidirectional = true;
    let gpu = SimpleRnn::new(cfg, common::gpu(), 5).unwrap();
    let cpu = SimpleRnn::new(cfg, Backend::Cpu, 5).unwrap();
    check_calls("rnn", 4, |x, lens, h0| {
        let g = gpu.forward(x.view(), Some(h0.view()), Some(lens)).unwrap();
        let built = gpu.last_stats().bind_groups_built;
        let c = cpu.forward(x.view(), Some(h0.view()), Some(lens)).unwrap();
        (vec![g.out, g.h_n], vec![c.out, c.h_n], built)
    });
}
