//! The typed form of a Keras `Sequential` model: what each layer computes, the shapes it
//! produces, and the weights it owns under their Keras paths. Built from a Keras config
//! (`config.rs`) or with [`SequentialBuilder`]; everything the CPU reference and a device
//! backend need is here, nothing about JSON.

use crate::cpu::Activation;
use crate::error::{Error, Result};

/// A Keras weight regularizer: `l1·Σ|w| + l2·Σw²` is added to the loss.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Regularizer {
    /// Coefficient of `Σ|w|`.
    pub l1: f64,
    /// Coefficient of `Σw²`.
    pub l2: f64,
}

/// A weight initializer, used only for fresh weights ([`crate::models::keras::ModelWeights::fresh`]);
/// loaded weights make it irrelevant, so an unknown one is kept by name and refused only then.
#[derive(Clone, Debug, PartialEq)]
pub enum Init {
    /// `GlorotUniform`: `U(±√(6/(fan_in+fan_out)))`.
    GlorotUniform,
    /// `GlorotNormal`: truncated normal, stddev `√(2/(fan_in+fan_out))`.
    GlorotNormal,
    /// `HeUniform`: `U(±√(6/fan_in))`.
    HeUniform,
    /// `LecunUniform`: `U(±√(3/fan_in))`.
    LecunUniform,
    /// `Orthogonal` with a gain.
    Orthogonal {
        /// Multiplies the orthogonal matrix.
        gain: f64,
    },
    /// `Zeros`.
    Zeros,
    /// `Ones`.
    Ones,
    /// `Constant`.
    Constant(f64),
    /// `RandomUniform(minval, maxval)`.
    RandomUniform {
        /// Lower bound.
        min: f64,
        /// Upper bound.
        max: f64,
    },
    /// `RandomNormal(mean, stddev)`.
    RandomNormal {
        /// Mean.
        mean: f64,
        /// Standard deviation.
        stddev: f64,
    },
    /// `TruncatedNormal(mean, stddev)`: redrawn beyond two standard deviations.
    TruncatedNormal {
        /// Mean.
        mean: f64,
        /// Standard deviation.
        stddev: f64,
    },
    /// The LSTM bias with `unit_forget_bias`: `base` for the i, c, o blocks, ones for f.
    UnitForgetBias {
        /// `units`.
        units: usize,
        /// The configured bias initializer.
        base: Box<Init>,
    },
    /// An initializer this crate cannot draw (its Keras class name).
    Other(String),
}

/// The element-wise activation of a Dense layer, or softmax over the last axis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DenseActivation {
    /// tanh, relu, sigmoid, hard_sigmoid or linear.
    Elementwise(Activation),
    /// Softmax over the last axis.
    Softmax,
}

/// Which recurrent cell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CellKind {
    /// `LSTM`: gates i, f, c, o; states `[h, c]`.
    Lstm {
        /// Initialise the forget-gate bias to 1 (only affects fresh weights).
        unit_forget_bias: bool,
    },
    /// `GRU`: gates z, r, h; bias `(2, 3U)` when `reset_after`, else `(3U,)`.
    Gru {
        /// Apply the reset gate after the recurrent matmul (Keras 3 default).
        reset_after: bool,
    },
    /// `SimpleRNN`: `h = act(x·K + h·R + b)`.
    SimpleRnn,
}

impl CellKind {
    /// Gate blocks of size `units` in the kernel.
    pub fn gates(self) -> usize {
        match self {
            CellKind::Lstm { .. } => 4,
            CellKind::Gru { .. } => 3,
            CellKind::SimpleRnn => 1,
        }
    }

    /// Keras class name.
    pub fn class_name(self) -> &'static str {
        match self {
            CellKind::Lstm { .. } => "LSTM",
            CellKind::Gru { .. } => "GRU",
            CellKind::SimpleRnn => "SimpleRNN",
        }
    }

    /// The name of the cell in weight paths (`lstm/lstm_cell/kernel`).
    pub fn cell_name(self) -> &'static str {
        match self {
            CellKind::Lstm { .. } => "lstm_cell",
            CellKind::Gru { .. } => "gru_cell",
            CellKind::SimpleRnn => "simple_rnn_cell",
        }
    }

    /// Number of state tensors (`[h, c]` for the LSTM, `[h]` otherwise).
    pub fn state_count(self) -> usize {
        if matches!(self, CellKind::Lstm { .. }) {
            2
        } else {
            1
        }
    }
}

/// One recurrent layer (`LSTM`, `GRU`, `SimpleRNN`), or one direction of a `Bidirectional`.
#[derive(Clone, Debug, PartialEq)]
pub struct RnnSpec {
    /// Layer name (`lstm`, `forward_gru`, ...): the first part of its weight paths.
    pub name: String,
    /// The cell and its cell-specific options.
    pub cell: CellKind,
    /// `units`.
    pub units: usize,
    /// `activation` (tanh by default).
    pub activation: Activation,
    /// `recurrent_activation` (sigmoid; unused by SimpleRNN).
    pub recurrent_activation: Activation,
    /// `use_bias`.
    pub use_bias: bool,
    /// Output every step `(B, T, U)` instead of the last `(B, U)`.
    pub return_sequences: bool,
    /// Also output the final states.
    pub return_state: bool,
    /// Process the sequence from the last step to the first (the sequence output stays in
    /// processing order, i.e. reversed, as Keras returns it).
    pub go_backwards: bool,
    /// Keras `stateful`: [`CpuBackend::predict_stateful`](super::CpuBackend::predict_stateful)
    /// carries its states across calls; `predict` / `evaluate` start from zero states (Keras
    /// right after `reset_states()`).
    pub stateful: bool,
    /// Outputs at masked steps are 0 instead of the previous output (Bidirectional forces
    /// this to `return_sequences`).
    pub zero_output_for_mask: bool,
    /// Input dropout rate: an identity in inference.
    pub dropout: f64,
    /// Recurrent dropout rate: an identity in inference.
    pub recurrent_dropout: f64,
    /// `kernel_regularizer`.
    pub kernel_regularizer: Option<Regularizer>,
    /// `recurrent_regularizer`.
    pub recurrent_regularizer: Option<Regularizer>,
    /// `bias_regularizer`.
    pub bias_regularizer: Option<Regularizer>,
    /// `kernel_initializer` (fresh weights only).
    pub kernel_initializer: Init,
    /// `recurrent_initializer` (fresh weights only).
    pub recurrent_initializer: Init,
    /// `bias_initializer` (fresh weights only; the LSTM adds `unit_forget_bias`).
    pub bias_initializer: Init,
    /// Whether its weights are trained (and so have gradients).
    pub trainable: bool,
}

impl RnnSpec {
    /// A layer with Keras' defaults: tanh/sigmoid, bias, last output only, no dropout,
    /// GRU `reset_after`, LSTM `unit_forget_bias`.
    pub fn new(name: &str, cell: CellKind, units: usize) -> Self {
        Self {
            name: name.into(),
            cell,
            units,
            activation: Activation::Tanh,
            recurrent_activation: Activation::Sigmoid,
            use_bias: true,
            return_sequences: false,
            return_state: false,
            go_backwards: false,
            stateful: false,
            zero_output_for_mask: false,
            dropout: 0.0,
            recurrent_dropout: 0.0,
            kernel_regularizer: None,
            recurrent_regularizer: None,
            bias_regularizer: None,
            kernel_initializer: Init::GlorotUniform,
            recurrent_initializer: Init::Orthogonal { gain: 1.0 },
            bias_initializer: Init::Zeros,
            trainable: true,
        }
    }

    /// Shape of the bias: GRU `reset_after` keeps input and recurrent biases as two rows.
    pub fn bias_shape(&self) -> Vec<usize> {
        let g = self.cell.gates() * self.units;
        match self.cell {
            CellKind::Gru { reset_after: true } => vec![2, g],
            _ => vec![g],
        }
    }

    /// `kernel (I, G·U)`, `recurrent_kernel (U, G·U)`, `bias`, under `prefix/name/cell/`.
    pub(crate) fn weights(&self, prefix: &str, input: usize, trainable: bool) -> Vec<WeightSpec> {
        let g = self.cell.gates() * self.units;
        let base = format!("{prefix}{}/{}", self.name, self.cell.cell_name());
        let trainable = trainable && self.trainable;
        let mut w = vec![
            WeightSpec {
                path: format!("{base}/kernel"),
                shape: vec![input, g],
                trainable,
                init: self.kernel_initializer.clone(),
                regularizer: self.kernel_regularizer,
            },
            WeightSpec {
                path: format!("{base}/recurrent_kernel"),
                shape: vec![self.units, g],
                trainable,
                init: self.recurrent_initializer.clone(),
                regularizer: self.recurrent_regularizer,
            },
        ];
        if self.use_bias {
            w.push(WeightSpec {
                path: format!("{base}/bias"),
                shape: self.bias_shape(),
                trainable,
                init: match self.cell {
                    CellKind::Lstm {
                        unit_forget_bias: true,
                    } => Init::UnitForgetBias {
                        units: self.units,
                        base: Box::new(self.bias_initializer.clone()),
                    },
                    _ => self.bias_initializer.clone(),
                },
                regularizer: self.bias_regularizer,
            });
        }
        w
    }

    pub(crate) fn validate(&self) -> Result<()> {
        nonzero(&format!("{} units", self.name), self.units)?;
        for (k, v) in [
            ("dropout", self.dropout),
            ("recurrent_dropout", self.recurrent_dropout),
        ] {
            rate(&format!("{} {k}", self.name), v)?;
        }
        Ok(())
    }
}

/// A `Dense` layer (also the layer inside `TimeDistributed`).
#[derive(Clone, Debug, PartialEq)]
pub struct DenseSpec {
    /// Layer name (`dense`): the last part of its weight paths.
    pub name: String,
    /// Output features.
    pub units: usize,
    /// Activation.
    pub activation: DenseActivation,
    /// `use_bias`.
    pub use_bias: bool,
    /// `kernel_regularizer`.
    pub kernel_regularizer: Option<Regularizer>,
    /// `bias_regularizer`.
    pub bias_regularizer: Option<Regularizer>,
    /// `kernel_initializer` (fresh weights only).
    pub kernel_initializer: Init,
    /// `bias_initializer` (fresh weights only).
    pub bias_initializer: Init,
    /// Whether its weights are trained.
    pub trainable: bool,
}

impl DenseSpec {
    /// A Dense layer with Keras' defaults (bias, glorot_uniform kernel, zero bias).
    pub fn new(name: &str, units: usize, activation: DenseActivation) -> Self {
        Self {
            name: name.into(),
            units,
            activation,
            use_bias: true,
            kernel_regularizer: None,
            bias_regularizer: None,
            kernel_initializer: Init::GlorotUniform,
            bias_initializer: Init::Zeros,
            trainable: true,
        }
    }

    pub(crate) fn weights(&self, prefix: &str, input: usize, trainable: bool) -> Vec<WeightSpec> {
        let trainable = trainable && self.trainable;
        let mut w = vec![WeightSpec {
            path: format!("{prefix}{}/kernel", self.name),
            shape: vec![input, self.units],
            trainable,
            init: self.kernel_initializer.clone(),
            regularizer: self.kernel_regularizer,
        }];
        if self.use_bias {
            w.push(WeightSpec {
                path: format!("{prefix}{}/bias", self.name),
                shape: vec![self.units],
                trainable,
                init: self.bias_initializer.clone(),
                regularizer: self.bias_regularizer,
            });
        }
        w
    }
}

/// How `Bidirectional` combines its two directions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MergeMode {
    /// Forward features then backward features.
    Concat,
    /// Element-wise sum.
    Sum,
    /// Element-wise product.
    Mul,
    /// Element-wise mean.
    Ave,
    /// No merge: the layer outputs both (only possible as the last layer).
    None,
}

/// What one layer computes.
#[derive(Clone, Debug, PartialEq)]
pub enum LayerKind {
    /// `Embedding`: token ids `(B, T)` → `(B, T, output_dim)`.
    Embedding {
        /// Vocabulary size.
        input_dim: usize,
        /// Vector size.
        output_dim: usize,
        /// Token 0 is padding: it masks its step for the layers after.
        mask_zero: bool,
        /// `embeddings_regularizer`.
        regularizer: Option<Regularizer>,
        /// `embeddings_initializer` (fresh weights only).
        initializer: Init,
    },
    /// `Masking`: steps whose features all equal `mask_value` are zeroed and masked.
    Masking {
        /// The padding value.
        mask_value: f64,
    },
    /// `Dropout`: an identity in inference.
    Dropout {
        /// Drop rate.
        rate: f64,
    },
    /// `Dense` on the last axis.
    Dense(DenseSpec),
    /// `TimeDistributed(Dense)`: the Dense applied at every step of `(B, T, F)`.
    TimeDistributed(DenseSpec),
    /// `LSTM`, `GRU` or `SimpleRNN`.
    Rnn(RnnSpec),
    /// `Bidirectional`: a forward and a backward recurrent layer, merged.
    Bidirectional {
        /// The forward layer (`forward_<name>`).
        forward: Box<RnnSpec>,
        /// The backward layer (`backward_<name>`, `go_backwards` opposite to the forward one).
        backward: Box<RnnSpec>,
        /// How the two outputs are combined.
        merge: MergeMode,
    },
}

/// One layer of a Sequential model.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerSpec {
    /// Layer name (unique in the model; the first part of its weight paths).
    pub name: String,
    /// Whether its weights are trained.
    pub trainable: bool,
    /// What it computes.
    pub kind: LayerKind,
}

impl LayerSpec {
    /// Keras class name, as the summary prints it.
    pub fn class_name(&self) -> &'static str {
        match &self.kind {
            LayerKind::Embedding { .. } => "Embedding",
            LayerKind::Masking { .. } => "Masking",
            LayerKind::Dropout { .. } => "Dropout",
            LayerKind::Dense(_) => "Dense",
            LayerKind::TimeDistributed(_) => "TimeDistributed",
            LayerKind::Rnn(r) => r.cell.class_name(),
            LayerKind::Bidirectional { .. } => "Bidirectional",
        }
    }
}

/// The model input: `batch_shape` without the batch axis, and whether it holds token ids.
#[derive(Clone, Debug, PartialEq)]
pub struct InputSpec {
    /// The batch size when fixed (`stateful` layers need one), else `None`.
    pub batch: Option<usize>,
    /// Axes after the batch: `[T]` for token ids, `[T, F]` for sequences, `[F]` for vectors;
    /// `None` where the length is not fixed.
    pub dims: Vec<Option<usize>>,
    /// Integer token ids (an `int32`/`int64` input dtype) rather than floats.
    pub integer: bool,
}

/// One weight of the model under its Keras path (without the model's name).
#[derive(Clone, Debug, PartialEq)]
pub struct WeightSpec {
    /// e.g. `bidirectional/forward_gru/gru_cell/kernel`.
    pub path: String,
    /// Keras layout.
    pub shape: Vec<usize>,
    /// Whether it has a gradient.
    pub trainable: bool,
    /// How fresh values are drawn.
    pub init: Init,
    /// Its regularizer, if any.
    pub regularizer: Option<Regularizer>,
}

impl WeightSpec {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether it has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A shape with the batch axis first; `None` where Keras prints `None`.
pub type Shape = Vec<Option<usize>>;

pub(crate) fn nonzero(what: &str, v: usize) -> Result<()> {
    if v == 0 {
        return Err(Error::Config(format!("{what} is 0; it must be at least 1")));
    }
    Ok(())
}

pub(crate) fn rate(what: &str, v: f64) -> Result<()> {
    if !(0.0..1.0).contains(&v) {
        return Err(Error::Config(format!("{what} = {v}; it must be in [0, 1)")));
    }
    Ok(())
}
