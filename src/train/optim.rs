//! Optimizer configuration and the CPU optimizer; [`super::GpuOptimizer`] applies the same
//! rules on the device. Semantics follow PyTorch (`torch.optim.SGD`, `Adam`, `RMSprop` and
//! `torch.nn.utils.clip_grad_norm_`) so results can be compared with it.

use ndarray::{ArrayD, ArrayViewD, ArrayViewMutD};

use crate::cpu::Real;
use crate::error::{Error, Result};
use crate::kernels::optim::Update;

/// The update rule and its own hyper-parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum OptimizerKind {
    /// Stochastic gradient descent: `b = μb + g; w -= lr·(nesterov ? g + μb : b)`
    /// (no momentum buffer when `μ = 0`; dampening 0, as PyTorch's default).
    Sgd {
        /// Momentum μ ≥ 0.
        momentum: f32,
        /// Nesterov momentum (needs μ > 0).
        nesterov: bool,
    },
    /// Adam with PyTorch's bias correction:
    /// `w -= lr/(1-β₁ᵗ) · m / (sqrt(v)/sqrt(1-β₂ᵗ) + ε)`.
    Adam {
        /// β₁ in [0, 1).
        beta1: f32,
        /// β₂ in [0, 1).
        beta2: f32,
        /// ε ≥ 0, added after the bias-corrected square root.
        eps: f32,
    },
    /// RMSprop (uncentered): `v = αv + (1-α)g²; a = sqrt(v) + ε;`
    /// `w -= lr·g/a`, or with momentum `b = μb + g/a; w -= lr·b`.
    RmsProp {
        /// Smoothing constant α in [0, 1] (Keras calls it ρ).
        alpha: f32,
        /// ε ≥ 0, added after the square root.
        eps: f32,
        /// Momentum μ ≥ 0 (0: none).
        momentum: f32,
    },
}

/// An optimizer: rule, learning rate, optional global-norm clipping and L2 weight decay.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OptimizerConfig {
    /// The update rule.
    pub kind: OptimizerKind,
    /// Learning rate ≥ 0.
    pub lr: f32,
    /// Clip the gradients of all parameters together to this global L2 norm (PyTorch's
    /// `clip_grad_norm_`: scale = min(1, max_norm / (norm + 1e-6))) before the update.
    pub clip_norm: Option<f32>,
    /// L2 penalty added to the gradient after clipping (`g += wd·w`, PyTorch's
    /// `weight_decay`; not decoupled as in AdamW). 0 disables it.
    pub weight_decay: f32,
}

impl OptimizerConfig {
    /// SGD with learning rate `lr` and momentum `momentum` (0 for plain SGD).
    pub fn sgd(lr: f32, momentum: f32, nesterov: bool) -> Self {
        Self::with_kind(lr, OptimizerKind::Sgd { momentum, nesterov })
    }

    /// Adam with PyTorch's defaults β₁ = 0.9, β₂ = 0.999, ε = 1e-8.
    pub fn adam(lr: f32) -> Self {
        Self::with_kind(
            lr,
            OptimizerKind::Adam {
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
            },
        )
    }

    /// RMSprop with PyTorch's defaults α = 0.99, ε = 1e-8, no momentum.
    pub fn rmsprop(lr: f32) -> Self {
        Self::with_kind(
            lr,
            OptimizerKind::RmsProp {
                alpha: 0.99,
                eps: 1e-8,
                momentum: 0.0,
            },
        )
    }

    /// `kind` with learning rate `lr`, no clipping and no weight decay.
    pub fn with_kind(lr: f32, kind: OptimizerKind) -> Self {
        Self {
            kind,
            lr,
            clip_norm: None,
            weight_decay: 0.0,
        }
    }

    /// Checks every hyper-parameter; the error names the value and the allowed range.
    pub fn validate(&self) -> Result<()> {
        fn at_least_zero(name: &str, v: f32) -> Result<()> {
            if v.is_finite() && v >= 0.0 {
                Ok(())
            } else {
                Err(Error::Config(format!(
                    "optimizer {name} = {v}; it must be finite and >= 0"
                )))
            }
        }
        fn unit(name: &str, v: f32, upper_open: bool) -> Result<()> {
            let ok = v >= 0.0 && if upper_open { v < 1.0 } else { v <= 1.0 };
            if ok {
                Ok(())
            } else {
                let r = if upper_open { "[0, 1)" } else { "[0, 1]" };
                Err(Error::Config(format!(
                    "optimizer {name} = {v}; it must be in {r}"
                )))
            }
        }
        at_least_zero("lr", self.lr)?;
        at_least_zero("weight_decay", self.weight_decay)?;
        if let Some(c) = self.clip_norm
            && !(c.is_finite() && c > 0.0)
        {
            return Err(Error::Config(format!(
                "optimizer clip_norm = {c}; it must be finite and > 0"
            )));
        }
        match self.kind {
            OptimizerKind::Sgd { momentum, nesterov } => {
                at_least_zero("momentum", momentum)?;
                if nesterov && momentum == 0.0 {
                    return Err(Error::Config(
                        "optimizer: nesterov momentum needs momentum > 0 (got 0)".into(),
                    ));
                }
            }
            OptimizerKind::Adam { beta1, beta2, eps } => {
                unit("beta1", beta1, true)?;
                unit("beta2", beta2, true)?;
                at_least_zero("eps", eps)?;
            }
            OptimizerKind::RmsProp {
                alpha,
                eps,
                momentum,
            } => {
                unit("alpha", alpha, false)?;
                at_least_zero("eps", eps)?;
                at_least_zero("momentum", momentum)?;
            }
        }
        Ok(())
    }

    /// State tensors per parameter (each the parameter's size).
    pub(crate) fn state_slots(&self) -> usize {
        match self.kind {
            OptimizerKind::Sgd { momentum, .. } => usize::from(momentum > 0.0),
            OptimizerKind::Adam { .. } => 2,
            OptimizerKind::RmsProp { momentum, .. } => 1 + usize::from(momentum > 0.0),
        }
    }

    /// The update of step `t` (1-based), with Adam's bias corrections computed in f64 from
    /// the f32 betas; the CPU and GPU optimizers both use exactly these values.
    pub(crate) fn resolved(&self, t: u64) -> Update {
        let mut u = Update {
            kind: 0,
            nesterov: false,
            has_momentum: false,
            lr: self.lr,
            beta1: 0.0,
            beta2: 0.0,
            eps: 0.0,
            step_size: self.lr,
            bc2_sqrt: 1.0,
            weight_decay: self.weight_decay,
        };
        match self.kind {
            OptimizerKind::Sgd { momentum, nesterov } => {
                u.beta1 = momentum;
                u.nesterov = nesterov;
                u.has_momentum = momentum > 0.0;
            }
            OptimizerKind::Adam { beta1, beta2, eps } => {
                let t = t as f64;
                u.kind = 1;
                u.beta1 = beta1;
                u.beta2 = beta2;
                u.eps = eps;
                u.step_size = (f64::from(self.lr) / (1.0 - f64::from(beta1).powf(t))) as f32;
                u.bc2_sqrt = (1.0 - f64::from(beta2).powf(t)).sqrt() as f32;
            }
            OptimizerKind::RmsProp {
                alpha,
                eps,
                momentum,
            } => {
                u.kind = 2;
                u.beta1 = momentum;
                u.beta2 = alpha;
                u.eps = eps;
                u.has_momentum = momentum > 0.0;
            }
        }
        u
    }
}

/// The CPU optimizer over ndarray tensors, with the GPU optimizer's semantics.
#[derive(Clone, Debug)]
pub struct Optimizer<T: Real = f32> {
    config: OptimizerConfig,
    /// Per parameter: its state tensors (see [`OptimizerConfig`]; allocated on the first step).
    state: Vec<Vec<ArrayD<T>>>,
    steps: u64,
    last_norm: Option<T>,
}

impl<T: Real> Optimizer<T> {
    /// An optimizer with `config` (validated).
    pub fn new(config: OptimizerConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self {
            config,
            state: Vec::new(),
            steps: 0,
            last_norm: None,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &OptimizerConfig {
        &self.config
    }

    /// Steps taken so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// The global gradient norm of the last step (only when clipping is configured).
    pub fn last_grad_norm(&self) -> Option<T> {
        self.last_norm
    }

    /// Updates every parameter in place from its gradient (same order and shapes on every
    /// step; gradients are not modified).
    pub fn step(&mut self, params: &mut [ArrayViewMutD<T>], grads: &[ArrayViewD<T>]) -> Result<()> {
        if params.len() != grads.len() {
            return Err(Error::Shape(format!(
                "optimizer step: {} parameters but {} gradients",
                params.len(),
                grads.len()
            )));
        }
        for (i, (p, g)) in params.iter().zip(grads).enumerate() {
            if p.shape() != g.shape() {
                return Err(Error::Shape(format!(
                    "optimizer step: parameter {i} has shape {:?}, its gradient {:?}",
                    p.shape(),
                    g.shape()
                )));
            }
        }
        let slots = self.config.state_slots();
        if self.state.is_empty() {
            self.state = params
                .iter()
                .map(|p| (0..slots).map(|_| ArrayD::zeros(p.raw_dim())).collect())
                .collect();
        } else if self.state.len() != params.len()
            || self
                .state
                .iter()
                .zip(params.iter())
                .any(|(s, p)| s.first().is_some_and(|a| a.shape() != p.shape()))
        {
            return Err(Error::Shape(format!(
                "optimizer step: got {} parameters whose shapes differ from the {} of the \
                 first step",
                params.len(),
                self.state.len()
            )));
        }
        let scale = match self.config.clip_norm {
            Some(max) => {
                let sumsq: f64 = grads
                    .iter()
                    .flat_map(|g| g.iter())
                    .map(|&v| v.as_f64() * v.as_f64())
                    .sum();
                let norm = T::from_f64(sumsq.sqrt());
                self.last_norm = Some(norm);
                let max = T::from_f64(f64::from(max));
                Some((max / (norm + T::from_f64(1e-6))).min(T::one()))
            }
            None => None,
        };
        self.steps += 1;
        let u = self.config.resolved(self.steps);
        for ((p, g), st) in params.iter_mut().zip(grads).zip(self.state.iter_mut()) {
            update(&u, scale, p, g, st);
        }
        Ok(())
    }
}

/// One tensor's update, in the shader's operation order so f32 results agree closely.
fn update<T: Real>(
    u: &Update,
    scale: Option<T>,
    p: &mut ArrayViewMutD<T>,
    g: &ArrayViewD<T>,
    st: &mut [ArrayD<T>],
) {
    let c = |v: f32| T::from_f64(f64::from(v));
    let (lr, b1, b2, eps, wd) = (c(u.lr), c(u.beta1), c(u.beta2), c(u.eps), c(u.weight_decay));
    let (step_size, bc2_sqrt) = (c(u.step_size), c(u.bc2_sqrt));
    let one = T::one();
    let (first, rest) = st
        .split_first_mut()
        .map_or((None, None), |(a, r)| (Some(a), r.first_mut()));
    let mut first = first.map(|a| a.iter_mut());
    let mut second = rest.map(|a| a.iter_mut());
    for (w, &g0) in p.iter_mut().zip(g.iter()) {
        let mut g = scale.map_or(g0, |s| g0 * s);
        g = g + wd * *w;
        let s0 = first.as_mut().and_then(|it| it.next());
        let s1 = second.as_mut().and_then(|it| it.next());
        match (u.kind, s0, s1) {
            (0, Some(b), _) => {
                *b = b1 * *b + g;
                let d = if u.nesterov { g + b1 * *b } else { *b };
                *w = *w - lr * d;
            }
            (0, None, _) => *w = *w - lr * g,
            (1, Some(m), Some(v)) => {
                *m = b1 * *m + (one - b1) * g;
                *v = b2 * *v + (one - b2) * g * g;
                *w = *w - step_size * *m / (v.sqrt() / bc2_sqrt + eps);
            }
            (2, Some(v), b) => {
                *v = b2 * *v + (one - b2) * g * g;
                let a = v.sqrt() + eps;
                match b {
                    Some(b) => {
                        *b = b1 * *b + g / a;
                        *w = *w - lr * *b;
                    }
                    None => *w = *w - lr * g / a,
                }
            }
            // state_slots() allocates exactly the slots each kind uses.
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adam_bias_corrections_follow_the_step_count() {
        let c = OptimizerConfig::adam(0.01);
        // t = 1: lr/(1 - 0.9) = 0.1, sqrt(1 - 0.999) = sqrt(0.001).
        let u = c.resolved(1);
        assert!((u.step_size - 0.1).abs() < 1e-7, "{}", u.step_size);
        // The f32 β₂ is 0.99900001…, so compare relatively.
        assert!(
            (u.bc2_sqrt / 0.001f32.sqrt() - 1.0).abs() < 1e-5,
            "{}",
            u.bc2_sqrt
        );
        // t = 2: lr/(1 - 0.81), sqrt(1 - 0.998001).
        let u = c.resolved(2);
        assert!((u.step_size - 0.01 / 0.19).abs() < 1e-7, "{}", u.step_size);
        assert!(
            (u.bc2_sqrt / 0.001999f32.sqrt() - 1.0).abs() < 1e-5,
            "{}",
            u.bc2_sqrt
        );
        // SGD ignores t.
        assert_eq!(
            OptimizerConfig::sgd(0.3, 0.0, false).resolved(9).step_size,
            0.3
        );
    }

    #[test]
    fn invalid_hyper_parameters_name_the_value_and_the_range() {
        let mut c = OptimizerConfig::rmsprop(0.1);
        c.kind = OptimizerKind::RmsProp {
            alpha: 1.5,
            eps: 1e-8,
            momentum: 0.0,
        };
        let msg = c.validate().unwrap_err().to_string();
        assert!(
            msg.contains("alpha = 1.5") && msg.contains("[0, 1]"),
            "{msg}"
        );
        let mut c = OptimizerConfig::adam(0.1);
        c.clip_norm = Some(0.0);
        let msg = c.validate().unwrap_err().to_string();
        assert!(msg.contains("clip_norm = 0"), "{msg}");
        c.clip_norm = Some(1.0);
        c.weight_decay = f32::NAN;
        assert!(c.validate().is_err());
        assert!(OptimizerConfig::sgd(0.1, 0.9, true).validate().is_ok());
    }

    #[test]
    fn state_is_kept_between_steps_and_checked() {
        let mut opt = Optimizer::<f64>::new(OptimizerConfig::sgd(1.0, 0.5, false)).unwrap();
        let mut w = ArrayD::<f64>::zeros(ndarray::IxDyn(&[2]));
        let g = ArrayD::from_elem(ndarray::IxDyn(&[2]), 1.0);
        for _ in 0..2 {
            opt.step(&mut [w.view_mut()], &[g.view()]).unwrap();
        }
        // b₁ = 1, w₁ = -1; b₂ = 0.5 + 1 = 1.5, w₂ = -2.5.
        assert_eq!(w.as_slice().unwrap(), &[-2.5, -2.5]);
        assert_eq!(opt.steps(), 2);
        let mut other = ArrayD::<f64>::zeros(ndarray::IxDyn(&[3]));
        let g3 = ArrayD::<f64>::zeros(ndarray::IxDyn(&[3]));
        assert!(opt.step(&mut [other.view_mut()], &[g3.view()]).is_err());
    }
}
