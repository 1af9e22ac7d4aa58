//! What the one-dispatch bidirectional tests (resident_bidirectional.rs,
//! grid_bidirectional.rs) share: one forward_train + backward of a freshly built layer on
//! fixed inputs, flattened with both passes' dispatch counts, and the comparisons of a run
//! in one dispatch against one dispatch per direction (bit for bit) and the CPU.
//!
//! The macro reads `T`, `B`, `I`, `LENS` and `common::rand3` from the test file using it.

use ndarray::ArrayD;

/// Everything a forward and backward produce, flattened, with both passes' dispatch counts.
pub struct Run {
    pub values: Vec<(String, ArrayD<f32>)>,
    pub forward_dispatches: usize,
    pub backward_dispatches: usize,
}

/// Runs forward_train and backward of `$layer` (a freshly built layer) on fixed inputs;
/// `c_n` names the LSTM's cell-state output.
macro_rules! bidir_run {
    ($layer:expr $(, $c_n:ident)?) => {{
        let layer = $layer;
        let x = common::rand3((T, B, I), 11, 1.0);
        let (out, tape) = layer.forward_train(x.view(), None, Some(&LENS)).unwrap();
        let forward_dispatches = layer.last_stats().dispatches;
        let dy: ndarray::Array3<f32> = common::rand3(out.out.dim(), 12, 1.0);
        let grads = layer.backward(&tape, dy.view(), None).unwrap();
        let backward_dispatches = layer.last_stats().dispatches;
        #[allow(unused_mut)]
        let mut values = vec![
            ("out".to_string(), out.out.into_dyn()),
            ("h_n".to_string(), out.h_n.into_dyn()),
            ("dx".to_string(), grads.dx.into_dyn()),
            ("dh0".to_string(), grads.dh0.into_dyn()),
        ];
        $(values.push(("c_n".to_string(), out.$c_n.into_dyn()));)?
        let mut names: Vec<_> = grads.weights.keys().cloned().collect();
        names.sort();
        for k in names {
            values.push((k.clone(), grads.weights[&k].clone().into_dyn()));
        }
        bidir::Run {
            values,
            forward_dispatches,
            backward_dispatches,
        }
    }};
}

/// `a` and `b` hold the same tensors, bit for bit.
pub fn assert_same_bits(a: &Run, b: &Run, what: &str) {
    assert_eq!(a.values.len(), b.values.len(), "{what}");
    for ((name, x), (_, y)) in a.values.iter().zip(&b.values) {
        assert!(
            x.iter()
                .zip(y.iter())
                .all(|(p, q)| p.to_bits() == q.to_bits()),
            "{what} {name}: the two runs differ"
        );
    }
}
