//! `SimpleRnn`: a multi-layer, optionally bidirectional Elman RNN (PyTorch `nn.RNN`, Keras
//! `SimpleRNN`), tanh or relu, loadable from PyTorch or Keras weights.

use std::path::Path;

use ndarray::ArrayView3;

use super::Backend;
use super::common::{Layout, check_go_backwards, check_recurrent_dropout};
use super::hstate::{
    HCore, HParams, RnnGradients, RnnOutput, RnnTrace, hstate_layer_api, hstate_layer_impl,
    rnn_cells,
};
use crate::algorithm::Algorithm;
use crate::cpu::lstm::LstmDims;
pub use crate::cpu::rnn::Nonlinearity;
use crate::cpu::rnn::RnnParams;
use crate::error::{Error, Result};
use crate::kernels::RecordStats;
use crate::weights::keras::{self, KerasCell};
use crate::weights::{TensorMap, WeightFormat, lookup, safetensors_io, torch};

/// Configuration of a [`SimpleRnn`], named as in PyTorch (`nn.RNN`) plus Keras' `go_backwards`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SimpleRnnConfig {
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
    /// `tanh` (default) or `relu` (PyTorch `nonlinearity`, Keras `activation`).
    pub nonlinearity: Nonlinearity,
    /// Keras `recurrent_dropout`: in a training forward (GPU backend), the fraction of
    /// h_{t-1} dropped where it feeds the recurrent kernel, with one mask
    /// (Keras SimpleRNN),  `(B, units)`, drawn afresh per call and
    /// kept for every step; kept values are scaled by 1/(1-rate). `0 ≤ rate < 1`; 0 (the
    /// default) and inference change nothing.
    pub recurrent_dropout: f32,
    /// Seed of the recurrent-dropout masks (each training call mixes in a call counter).
    pub dropout_seed: u64,
}

impl SimpleRnnConfig {
    /// One unidirectional tanh layer with biases, time-major.
    pub fn new(input_size: usize, hidden_size: usize) -> Self {
        Self {
            input_size,
            hidden_size,
            num_layers: 1,
            bidirectional: false,
            batch_first: false,
            bias: true,
            go_backwards: false,
            nonlinearity: Nonlinearity::Tanh,
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
        self.dims().validate_cell(1)?;
        check_recurrent_dropout("simple_rnn", self.recurrent_dropout)?;
        check_go_backwards(self.go_backwards, &self.dims())
    }

    fn layout(&self) -> Layout {
        Layout {
            batch_first: self.batch_first,
            go_backwards: self.go_backwards,
        }
    }
}

/// A multi-layer Elman RNN on a [`Backend`].
pub struct SimpleRnn {
    config: SimpleRnnConfig,
    core: HCore,
}

impl SimpleRnn {
    /// A layer with PyTorch's default initialisation, U(-1/√H, 1/√H), from a fixed seed.
    pub fn new(config: SimpleRnnConfig, backend: Backend, seed: u64) -> Result<Self> {
        config.validate()?;
        let scale = 1.0 / (config.hidden_size as f64).sqrt();
        let params = RnnParams::<f32>::random(config.dims(), config.nonlinearity, seed, scale)?;
        Self::build(config, params, WeightFormat::Torch, backend)
    }

    /// A layer from PyTorch state_dict tensors (`weight_ih_l0`, `bias_hh_l1_reverse`, ...).
    pub fn from_torch(
        config: SimpleRnnConfig,
        tensors: &TensorMap,
        backend: Backend,
    ) -> Result<Self> {
        config.validate()?;
        let cells = rnn_cells(torch::import(config.dims(), 1, config.bias, tensors)?);
        let params = RnnParams {
            dims: config.dims(),
            nonlinearity: config.nonlinearity,
            cells,
        };
        Self::build(config, params, WeightFormat::Torch, backend)
    }

    /// A layer from Keras tensors `kernel` `(I, U)`, `recurrent_kernel` `(U, U)`, `bias` `(U)`.
    pub fn from_keras(
        config: SimpleRnnConfig,
        tensors: &TensorMap,
        backend: Backend,
    ) -> Result<Self> {
        config.validate()?;
        let cell = keras::import(KerasCell::SimpleRnn, config.dims(), config.bias, tensors)?;
        let params = RnnParams {
            dims: config.dims(),
            nonlinearity: config.nonlinearity,
            cells: rnn_cells(vec![cell]),
        };
        Self::build(config, params, WeightFormat::Keras, backend)
    }

    /// A layer from a `.safetensors` file with PyTorch names (module prefix allowed) or Keras names.
    pub fn from_safetensors(
        config: SimpleRnnConfig,
        path: &Path,
        backend: Backend,
    ) -> Result<Self> {
        let file = safetensors_io::read(path)?;
        if lookup(&file.tensors, "weight_ih_l0")?.is_some() {
            Self::from_torch(config, &file.tensors, backend)
        } else {
            Self::from_keras(config, &file.tensors, backend)
        }
    }

    fn build(
        config: SimpleRnnConfig,
        params: RnnParams<f32>,
        format: WeightFormat,
        backend: Backend,
    ) -> Result<Self> {
        // The RNN kernels read the nonlinearity from their flags; the gate codes are unused.
        let mut core = HCore::new(
            config.layout(),
            (config.bias, crate::kernels::rec::DEFAULT_ACTS),
            format,
            KerasCell::SimpleRnn,
            HParams::Rnn(params),
            backend,
        )?;
        core.rec_dropout = (config.recurrent_dropout, config.dropout_seed);
        Ok(Self { config, core })
    }

    /// The configuration.
    pub fn config(&self) -> &SimpleRnnConfig {
        &self.config
    }

    hstate_layer_api!(SimpleRnn);
}

hstate_layer_impl!(SimpleRnn);
