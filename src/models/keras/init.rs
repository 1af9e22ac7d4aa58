//! Fresh weights from Keras' initializers (glorot_uniform kernels, orthogonal recurrent
//! kernels, zero biases with the LSTM's unit_forget_bias, uniform ±0.05 embeddings, and the
//! other common ones), drawn reproducibly from a seed. The distributions are Keras'; the
//! random stream is this crate's own (splitmix64), so values differ from Keras' for a seed.

use ndarray::{Array2, ArrayD, IxDyn};

use super::spec::Init;
use crate::error::{Error, Result};

/// splitmix64 with uniform and normal draws: the data generators' stream
/// ([`SplitMix64`](crate::data::rng::SplitMix64)) started at the seed itself (no scramble), so a
/// seed keeps the weights it always gave.
pub(crate) struct Rng(crate::data::rng::SplitMix64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(crate::data::rng::SplitMix64(seed))
    }

    /// Uniform in `[0, 1)`.
    pub(crate) fn unit(&mut self) -> f64 {
        self.0.unit()
    }

    /// Standard normal (Box–Muller).
    pub(crate) fn normal(&mut self) -> f64 {
        self.0.normal()
    }

    fn truncated(&mut self) -> f64 {
        loop {
            let z = self.normal();
            if z.abs() <= 2.0 {
                return z;
            }
        }
    }
}

/// Keras' `compute_fans` for 1-D and 2-D weights.
fn fans(shape: &[usize]) -> (f64, f64) {
    match shape {
        [] => (1.0, 1.0),
        [n] => (*n as f64, *n as f64),
        _ => {
            let out = *shape.last().unwrap_or(&1) as f64;
            let recept: usize = shape[..shape.len() - 2].iter().product();
            (
                (shape[shape.len() - 2] * recept) as f64,
                out * recept as f64,
            )
        }
    }
}

/// Keras' `Orthogonal`: a normal matrix of shape `(max, min)` orthonormalised (Gram–Schmidt
/// gives QR's Q with a positive diagonal of R, which is Keras' sign correction), transposed
/// when the weight is wider than tall.
fn orthogonal(rng: &mut Rng, shape: &[usize], gain: f64) -> Result<ArrayD<f64>> {
    if shape.len() < 2 {
        return Err(Error::Config(format!(
            "Orthogonal needs a weight of rank ≥ 2; got shape {shape:?}"
        )));
    }
    let cols = *shape.last().unwrap_or(&1);
    let rows: usize = shape[..shape.len() - 1].iter().product();
    let (n, k) = (rows.max(cols), rows.min(cols));
    let mut a = Array2::from_shape_fn((n, k), |_| rng.normal());
    for j in 0..k {
        for p in 0..j {
            let d: f64 = (0..n).map(|i| a[[i, j]] * a[[i, p]]).sum();
            for i in 0..n {
                a[[i, j]] -= d * a[[i, p]];
            }
        }
        let norm = (0..n).map(|i| a[[i, j]] * a[[i, j]]).sum::<f64>().sqrt();
        for i in 0..n {
            a[[i, j]] /= norm;
        }
    }
    let q = if rows < cols {
        a.t().as_standard_layout().into_owned()
    } else {
        a
    };
    q.mapv(|v| v * gain)
        .into_shape_with_order(IxDyn(shape))
        .map_err(|e| Error::Shape(format!("orthogonal: {e}")))
}

/// Draws one weight of `shape` from `init`.
pub(crate) fn draw(rng: &mut Rng, init: &Init, shape: &[usize], path: &str) -> Result<ArrayD<f64>> {
    let (fi, fo) = fans(shape);
    let uniform = |rng: &mut Rng, lo: f64, hi: f64| {
        ArrayD::from_shape_simple_fn(IxDyn(shape), || lo + (hi - lo) * rng.unit())
    };
    Ok(match init {
        Init::GlorotUniform => {
            let l = (6.0 / (fi + fo)).sqrt();
            uniform(rng, -l, l)
        }
        Init::HeUniform => {
            let l = (6.0 / fi).sqrt();
            uniform(rng, -l, l)
        }
        Init::LecunUniform => {
            let l = (3.0 / fi).sqrt();
            uniform(rng, -l, l)
        }
        Init::GlorotNormal => {
            // Keras divides by the stddev of a unit normal truncated at ±2.
            let sd = (2.0 / (fi + fo)).sqrt() / 0.879_625_661_034_239_8;
            ArrayD::from_shape_simple_fn(IxDyn(shape), || sd * rng.truncated())
        }
        Init::Orthogonal { gain } => orthogonal(rng, shape, *gain)?,
        Init::Zeros => ArrayD::zeros(IxDyn(shape)),
        Init::Ones => ArrayD::ones(IxDyn(shape)),
        Init::Constant(c) => ArrayD::from_elem(IxDyn(shape), *c),
        Init::RandomUniform { min, max } => uniform(rng, *min, *max),
        Init::RandomNormal { mean, stddev } => {
            ArrayD::from_shape_simple_fn(IxDyn(shape), || mean + stddev * rng.normal())
        }
        Init::TruncatedNormal { mean, stddev } => {
            ArrayD::from_shape_simple_fn(IxDyn(shape), || mean + stddev * rng.truncated())
        }
        Init::UnitForgetBias { units, base } => {
            // Keras: concat(bias_init(U), ones(U), bias_init(2U)).
            let u = *units;
            let mut v = draw(rng, base, &[4 * u], path)?;
            v.slice_mut(ndarray::s![u..2 * u]).fill(1.0);
            v
        }
        Init::Other(name) => {
            return Err(Error::Unsupported(format!(
                "{path}: initializer {name} (fresh weights support GlorotUniform, \
                 GlorotNormal, HeUniform, LecunUniform, Orthogonal, Zeros, Ones, Constant, \
                 RandomUniform, RandomNormal, TruncatedNormal)"
            )));
        }
    })
}
