//! `Gru`: a multi-layer, optionally bidirectional GRU with PyTorch semantics (gates r, z, n,
//! `b_hn` inside the reset product), loadable from PyTorch or Keras weights, including Keras
//! `reset_after=False`.

use std::path::Path;

use ndarray::ArrayView3;

use super::Backend;
use super::common::{Layout, check_go_backwards, check_recurrent_dropout};
use super::hstate::{
    HCore, HParams, RnnGradients, RnnOutput, RnnTrace, gru_cells, hstate_layer_api,
    hstate_layer_impl,
};
use crate::algorithm::Algorithm;
use crate::cpu::gru::{GruMode, GruParams};
use crate::cpu::lstm::LstmDims;
use crate::error::{Error, Result};
use crate::kernels::RecordStats;
use crate::weights::keras::{self, KerasCell};
use crate::weights::{TensorMap, WeightFormat, lookup, safetensors_io, torch};

/// Configuration of a [`Gru`], named as in PyTorch (`nn.GRU`) plus Keras' `go_backwards` and
/// `reset_after`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GruConfig {
    /// Features per input step (`I`).
    pub input_size: usize,
    /// Hidden units (`H`, Keras `units`).
    pub hidden_size: usize,
    /// Stacked layers (default 1).
    pub num_layers: usize,
    /// Run a reverse direction too; outputs are `[forward | reverse]` on the last axis.
    pub bidirectional: bool,
    /// Inputs and outputs are `(B, T, ·)` instead of `(T, B, ·)`.
    pub batch_first: bool,
    /// Whether the layer has biases (PyTorch `bias`, Keras `use_bias`).
    pub bias: bool,
    /// Keras `go_backwards` (one unidirectional layer; outputs in processing order).
    pub go_backwards: bool,
    /// `true` (PyTorch, Keras default): reset applied after the recurrent mat-vec, with a
    /// recurrent bias. `false`: Keras `reset_after=False` (reset before the mat-vec, no
    /// recurrent bias); Keras weights only.
    pub reset_after: bool,
    /// Keras `activation`: the candidate activation (tanh; GPU backend for others).
    pub activation: crate::cpu::Activation,
    /// Keras `recurrent_activation`: the gates' activation (sigmoid; GPU backend for others).
    pub recurrent_activation: crate::cpu::Activation,
    /// Keras `recurrent_dropout`: in a training forward (GPU backend), the fraction of
    /// h_{t-1} dropped where it feeds the recurrent kernel, with one mask per gate block
    /// (Keras: GRU 3: z, r, h), each `(B, units)`, drawn afresh per call and
    /// kept for every step; kept values are scaled by 1/(1-rate). `0 ≤ rate < 1`; 0 (the
    /// default) and inference change nothing.
    pub recurrent_dropout: f32,
    /// Seed of the recurrent-dropout masks (each training call mixes in a call counter).
    pub dropout_seed: u64,
}

impl GruConfig {
    /// One unidirectional reset-after layer with biases, time-major.
    pub fn new(input_size: usize, hidden_size: usize) -> Self {
        Self {
            input_size,
            hidden_size,
            num_layers: 1,
            bidirectional: false,
            batch_first: false,
            bias: true,
            go_backwards: false,
            reset_after: true,
            activation: crate::cpu::Activation::Tanh,
            recurrent_activation: crate::cpu::Activation::Sigmoid,
            recurrent_dropout: 0.0,
            dropout_seed: 0,
        }
    }

    /// The sizes (no projection).
    pub fn dims(&self) -> LstmDims {
        LstmDims {
            input_size: self.input_size,
            hidden_size: self.hidden_size,
            proj_size: 0,
            num_layers: self.num_layers,
            bidirectional: self.bidirectional,
        }
    }

    /// Checks sizes and option combinations.
    pub fn validate(&self) -> Result<()> {
        self.dims().validate_cell(3)?;
        check_recurrent_dropout("gru", self.recurrent_dropout)?;
        check_go_backwards(self.go_backwards, &self.dims())
    }

    fn mode(&self) -> GruMode {
        if self.reset_after {
            GruMode::ResetAfter
        } else {
            GruMode::ResetBefore
        }
    }

    fn layout(&self) -> Layout {
        Layout {
            batch_first: self.batch_first,
            go_backwards: self.go_backwards,
        }
    }
}

/// A multi-layer GRU on a [`Backend`].
pub struct Gru {
    config: GruConfig,
    core: HCore,
}

impl Gru {
    /// A layer with PyTorch's default initialisation, U(-1/√H, 1/√H), from a fixed seed.
    pub fn new(config: GruConfig, backend: Backend, seed: u64) -> Result<Self> {
        config.validate()?;
        let scale = 1.0 / (config.hidden_size as f64).sqrt();
        let params = GruParams::<f32>::random(config.dims(), config.mode(), seed, scale)?;
        Self::build(config, params, WeightFormat::Torch, backend)
    }

    /// A layer from PyTorch state_dict tensors (`weight_ih_l0`, `bias_hh_l1_reverse`, ...).
    pub fn from_torch(config: GruConfig, tensors: &TensorMap, backend: Backend) -> Result<Self> {
        config.validate()?;
        if !config.reset_after {
            return Err(Error::Config(
                "reset_after = false is Keras-only: PyTorch's nn.GRU always resets after the mat-vec".into(),
            ));
        }
        let cells = gru_cells(torch::import(config.dims(), 3, config.bias, tensors)?);
        let params = GruParams {
            dims: config.dims(),
            mode: config.mode(),
            cells,
        };
        Self::build(config, params, WeightFormat::Torch, backend)
    }

    /// A layer from Keras tensors `kernel` `(I, 3U)`, `recurrent_kernel` `(U, 3U)` (gate
    /// blocks z, r, h) and `bias` `(2, 3U)` (reset_after) or `(3U)`.
    pub fn from_keras(config: GruConfig, tensors: &TensorMap, backend: Backend) -> Result<Self> {
        config.validate()?;
        let cell = keras::import(
            Self::keras_cell(&config),
            config.dims(),
            config.bias,
            tensors,
        )?;
        let params = GruParams {
            dims: config.dims(),
            mode: config.mode(),
            cells: gru_cells(vec![cell]),
        };
        Self::build(config, params, WeightFormat::Keras, backend)
    }

    /// A layer from a `.safetensors` file with PyTorch names (module prefix allowed) or Keras names.
    pub fn from_safetensors(config: GruConfig, path: &Path, backend: Backend) -> Result<Self> {
        let file = safetensors_io::read(path)?;
        if lookup(&file.tensors, "weight_ih_l0")?.is_some() {
            Self::from_torch(config, &file.tensors, backend)
        } else {
            Self::from_keras(config, &file.tensors, backend)
        }
    }

    fn keras_cell(config: &GruConfig) -> KerasCell {
        KerasCell::Gru {
            reset_after: config.reset_after,
        }
    }

    fn build(
        config: GruConfig,
        params: GruParams<f32>,
        format: WeightFormat,
        backend: Backend,
    ) -> Result<Self> {
        let acts = super::common::packed_acts(
            "gru",
            &backend,
            config.activation,
            config.recurrent_activation,
        )?;
        let mut core = HCore::new(
            config.layout(),
            (config.bias, acts),
            format,
            Self::keras_cell(&config),
            HParams::Gru(params),
            backend,
        )?;
        core.rec_dropout = (config.recurrent_dropout, config.dropout_seed);
        Ok(Self { config, core })
    }

    /// The configuration.
    pub fn config(&self) -> &GruConfig {
        &self.config
    }

    hstate_layer_api!(Gru);
}

hstate_layer_impl!(Gru);
