//! The device optimizer: updates parameter buffers in place, with the global gradient norm
//! for clipping reduced on the device so a step needs no read-back.

use super::optim::OptimizerConfig;
use super::{StepRecorder, check_len};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::kernels::buffers;
use crate::kernels::optim::{self as kernel, Bufs, CLIP_HEAD};

/// An optimizer whose state (momentum, Adam's m and v, RMSprop's square average) lives on
/// the device, for a fixed list of parameter tensors.
pub struct GpuOptimizer {
    config: OptimizerConfig,
    lens: Vec<usize>,
    /// Per parameter: `slots · len` zero-initialised elements (one element when unused).
    state: Vec<wgpu::Buffer>,
    /// `[scale, norm, -, -, Σg² partials of every parameter ...]`.
    clip: wgpu::Buffer,
    /// Where each parameter's partials start (after the head).
    partial_offs: Vec<usize>,
    total_partials: usize,
    steps: u64,
}

impl GpuOptimizer {
    /// An optimizer for parameters of `lens` elements each (in the order `record_step` will
    /// get them). Validates `config` and allocates all state, zero-initialised, now.
    pub fn new(ctx: &Context, config: OptimizerConfig, lens: &[usize]) -> Result<Self> {
        config.validate()?;
        if lens.is_empty() {
            return Err(Error::Config(
                "GpuOptimizer needs at least one parameter (got 0)".into(),
            ));
        }
        let slots = config.state_slots();
        let mut state = Vec::with_capacity(lens.len());
        let mut partial_offs = Vec::with_capacity(lens.len());
        let mut total = 0usize;
        for (i, &len) in lens.iter().enumerate() {
            kernel::u32_of(len, "parameter length")?;
            let n = len.checked_mul(slots).ok_or_else(|| {
                Error::Limit(format!(
                    "optimizer state of parameter {i} ({len}) overflows"
                ))
            })?;
            state.push(buffers::zeros(ctx, "optimizer state", n)?);
            partial_offs.push(total);
            total += kernel::sumsq_groups(len);
        }
        if config.clip_norm.is_some() {
            kernel::check_partials(total)?;
        }
        let clip_len = if config.clip_norm.is_some() {
            CLIP_HEAD + total
        } else {
            CLIP_HEAD
        };
        let clip = buffers::zeros(ctx, "gradient clipping", clip_len)?;
        Ok(Self {
            config,
            lens: lens.to_vec(),
            state,
            clip,
            partial_offs,
            total_partials: total,
            steps: 0,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &OptimizerConfig {
        &self.config
    }

    /// Steps recorded so far (the next step's bias correction uses `steps() + 1`).
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Records one step: with clipping, Σg² of every gradient, the global norm and the clip
    /// scale (all on the device), then the in-place update of every parameter.
    /// `params[i] = (parameter buffer, gradient buffer)`, in the order and sizes given to
    /// [`new`](Self::new). Gradients are read, never modified. Counts the step when recorded,
    /// so submit every recording that succeeded.
    pub fn record_step(
        &mut self,
        rec: &mut StepRecorder<'_>,
        params: &[(&wgpu::Buffer, &wgpu::Buffer)],
    ) -> Result<()> {
        if params.len() != self.lens.len() {
            return Err(Error::Shape(format!(
                "optimizer step: {} (parameter, gradient) pairs; the optimizer was built for {}",
                params.len(),
                self.lens.len()
            )));
        }
        for (i, ((p, g), &len)) in params.iter().zip(&self.lens).enumerate() {
            check_len(p, len, &format!("parameter {i}"))?;
            check_len(g, len, &format!("gradient {i}"))?;
            if p == g {
                return Err(Error::Config(format!(
                    "optimizer step: parameter {i} and its gradient are the same buffer"
                )));
            }
        }
        let bufs = |i: usize| Bufs {
            param: params[i].0,
            grad: params[i].1,
            state: &self.state[i],
            clip: &self.clip,
        };
        let r = rec;
        if let Some(max_norm) = self.config.clip_norm {
            for (i, &len) in self.lens.iter().enumerate() {
                if len > 0 {
                    kernel::record_sumsq(r, len, self.partial_offs[i], &bufs(i))?;
                }
            }
            kernel::record_clip_finalize(r, self.total_partials, max_norm, &bufs(0))?;
        }
        let u = self.config.resolved(self.steps + 1);
        for (i, &len) in self.lens.iter().enumerate() {
            if len > 0 {
                kernel::record_update(r, &u, len, self.config.clip_norm.is_some(), &bufs(i))?;
            }
        }
        self.steps += 1;
        Ok(())
    }

    /// The global gradient norm the last submitted step computed, or `None` without clipping
    /// (waits for the GPU).
    pub fn read_grad_norm(&self, ctx: &Context) -> Result<Option<f32>> {
        if self.config.clip_norm.is_none() {
            return Ok(None);
        }
        let v = buffers::read_f32(ctx, &[(&self.clip, 1, 1)])?;
        Ok(v.first().and_then(|x| x.first()).copied())
    }
}
