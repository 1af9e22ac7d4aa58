//! Helpers shared by the CPU gradient-check tests (`cpu_gradcheck*.rs` and their support
//! modules): a reproducible generator, the central-difference checker, PyTorch-style
//! parameter names, the padding check, and the golden-file reader.
//!
//! Included with `#[path = "support/common.rs"] mod common_support;`; each test uses only
//! part of it.
#![allow(dead_code)]

use std::collections::HashMap;

use ndarray::{
    Array, Array2, Array3, Array4, Array5, ArrayD, ArrayViewD, Dimension, Ix2, Ix3, IxDyn, s,
};
use safetensors::{Dtype, SafeTensors};
use wgpu_rnn::cpu::LstmDims;

/// Step of the central difference: truncation error O(eps²) ≈ 1e-12, rounding error
/// O(1e-16 · |L| / eps) ≈ 1e-10, both far below the 1e-6 tolerance.
pub const EPS: f64 = 1e-6;
pub const TOL: f64 = 1e-6;

/// Tolerances of the golden comparisons (relative to `max(1, max|ref|)`).
pub const OUT_TOL: f64 = 1e-5;
pub const GRAD_TOL: f64 = 1e-4;

/// splitmix64 in [-1, 1), so the tests need no `rand` crate and are reproducible.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    }

    pub fn array3(&mut self, shape: (usize, usize, usize)) -> Array3<f64> {
        Array3::from_shape_simple_fn(shape, || self.next())
    }

    pub fn a4(&mut self, s: (usize, usize, usize, usize)) -> Array4<f64> {
        Array4::from_shape_simple_fn(s, || self.next())
    }

    pub fn a5(&mut self, s: (usize, usize, usize, usize, usize)) -> Array5<f64> {
        Array5::from_shape_simple_fn(s, || self.next())
    }
}

/// A copy of `a` with flat entry `k` moved by `delta`.
pub fn moved<D: Dimension>(a: &Array<f64, D>, k: usize, delta: f64) -> Array<f64, D> {
    let mut a = a.clone();
    a.as_slice_mut().unwrap()[k] += delta;
    a
}

/// Central-difference gradient of `loss(k, delta)` (the loss with entry `k` moved by `delta`).
pub fn numeric(shape: &[usize], mut loss: impl FnMut(usize, f64) -> f64) -> ArrayD<f64> {
    let n: usize = shape.iter().product();
    let v = (0..n)
        .map(|k| (loss(k, EPS) - loss(k, -EPS)) / (2.0 * EPS))
        .collect();
    ArrayD::from_shape_vec(IxDyn(shape), v).unwrap()
}

/// Entry-wise and norm comparison; `nonzero` rejects a (wrongly) vanishing gradient.
pub fn compare(name: &str, analytic: ArrayViewD<f64>, numeric: &ArrayD<f64>, nonzero: bool) {
    assert_eq!(analytic.shape(), numeric.shape(), "{name}: shape");
    for ((idx, &a), &n) in analytic.indexed_iter().zip(numeric.iter()) {
        assert!(
            (a - n).abs() <= TOL * n.abs().max(1.0),
            "{name}{:?}: analytic {a} vs numeric {n}",
            idx.slice()
        );
    }
    let norm = |it: &mut dyn Iterator<Item = &f64>| it.map(|v| v * v).sum::<f64>().sqrt();
    let (na, nn) = (norm(&mut analytic.iter()), norm(&mut numeric.iter()));
    assert!(
        (na - nn).abs() <= TOL * nn.max(1e-300),
        "{name}: norms {na} vs {nn}"
    );
    if nonzero {
        assert!(
            nn > 1e-3,
            "{name}: numeric gradient norm {nn} is too small to test anything"
        );
    }
}

/// Largest absolute entry-wise difference of two equally long sequences of values.
pub fn max_diff<'a, 'b>(
    a: impl IntoIterator<Item = &'a f64>,
    b: impl IntoIterator<Item = &'b f64>,
) -> f64 {
    a.into_iter()
        .zip(b)
        .map(|(u, v)| (u - v).abs())
        .fold(0.0, f64::max)
}

/// PyTorch-style name of a parameter of cell `layer·D + dir`, e.g. `weight_hh_l1_reverse`.
pub fn pname(d: &LstmDims, cell: usize, base: &str) -> String {
    let dn = d.directions();
    let rev = if cell % dn == 1 { "_reverse" } else { "" };
    format!("{base}_l{}{rev}", cell / dn)
}

/// Asserts `out` and `dx` are exactly 0 at padded steps (`t >= lengths[b]`) and returns
/// `dy_out` with junk written there, to check that backward ignores it.
pub fn padded_junk(
    out: &Array3<f64>,
    dx: &Array3<f64>,
    dy_out: &Array3<f64>,
    lengths: &[usize],
) -> Array3<f64> {
    let seq = dy_out.shape()[0];
    let mut dy_junk = dy_out.clone();
    let mut junk = Rng(99);
    for (b, &len) in lengths.iter().enumerate() {
        for t in len..seq {
            assert!(
                out.slice(s![t, b, ..]).iter().all(|&v| v == 0.0),
                "out[{t},{b}]"
            );
            assert!(
                dx.slice(s![t, b, ..]).iter().all(|&v| v == 0.0),
                "dx[{t},{b}]"
            );
            dy_junk
                .slice_mut(s![t, b, ..])
                .mapv_inplace(|_| 100.0 * junk.next());
        }
    }
    dy_junk
}

/// A golden case (PyTorch nn.GRU / nn.RNN, Keras GRU and ConvLSTM2D, computed by the
/// frameworks in float64 and stored as float32): its config and every tensor, widened to f64
/// (exact from f32).
pub struct Golden {
    pub config: serde_json::Value,
    pub t: HashMap<String, ArrayD<f64>>,
}

impl Golden {
    pub fn load(case: &str) -> Self {
        let path = format!(
            "{}/tests/data/{case}.safetensors",
            env!("CARGO_MANIFEST_DIR")
        );
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let (_, meta) = SafeTensors::read_metadata(&bytes).unwrap();
        let config = meta
            .metadata()
            .as_ref()
            .and_then(|m| m.get("config"))
            .expect("config metadata");
        let config = serde_json::from_str(config).unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        let t = st
            .iter()
            .map(|(name, v)| {
                assert_eq!(v.dtype(), Dtype::F32, "{name}");
                let vals = v
                    .data()
                    .chunks_exact(4)
                    .map(|c| f64::from(f32::from_le_bytes(c.try_into().unwrap())));
                (
                    name.to_string(),
                    ArrayD::from_shape_vec(v.shape(), vals.collect()).unwrap(),
                )
            })
            .collect();
        Golden { config, t }
    }

    pub fn get(&self, name: &str) -> &ArrayD<f64> {
        self.t
            .get(name)
            .unwrap_or_else(|| panic!("golden has no tensor {name}"))
    }

    pub fn arr<D: Dimension>(&self, name: &str) -> Array<f64, D> {
        self.get(name).clone().into_dimensionality::<D>().unwrap()
    }

    pub fn a3(&self, name: &str) -> Array3<f64> {
        self.arr::<Ix3>(name)
    }

    pub fn a2(&self, name: &str) -> Array2<f64> {
        self.arr::<Ix2>(name)
    }

    pub fn usize(&self, key: &str) -> usize {
        self.config[key]
            .as_u64()
            .unwrap_or_else(|| panic!("config {key}")) as usize
    }

    pub fn pair(&self, key: &str) -> (usize, usize) {
        let v = self.config[key]
            .as_array()
            .unwrap_or_else(|| panic!("config {key}"));
        let n = |i: usize| v[i].as_u64().unwrap() as usize;
        (n(0), n(1))
    }

    pub fn flag(&self, key: &str) -> bool {
        self.config[key]
            .as_bool()
            .unwrap_or_else(|| panic!("config {key}"))
    }

    pub fn str(&self, key: &str) -> &str {
        self.config[key]
            .as_str()
            .unwrap_or_else(|| panic!("config {key}"))
    }

    /// Max |ours - ref| and max |ref| of tensor `name`.
    pub fn err(&self, name: &str, ours: ArrayViewD<f64>) -> (f64, f64) {
        let r = self.get(name);
        assert_eq!(ours.shape(), r.shape(), "{name}: shape");
        let ref_max = r.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let err = ours
            .iter()
            .zip(r)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        (err, ref_max)
    }

    /// Asserts `ours` matches tensor `name` within `rel · max(1, max|ref|)`; returns the error.
    pub fn check(&self, name: &str, ours: ArrayViewD<f64>, rel: f64) -> f64 {
        let (err, ref_max) = self.err(name, ours);
        // Shown with --nocapture: how far inside the tolerance each tensor is.
        eprintln!("{name}: max |diff| {err:.2e} (ref max {ref_max:.2e})");
        assert!(
            err <= rel * ref_max.max(1.0),
            "{name}: max |diff| {err} (ref max {ref_max})"
        );
        err
    }
}
