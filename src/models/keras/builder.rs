//! [`SequentialBuilder`]: the models a Keras config describes, built from Rust.

use super::plan::ModelSpec;
use super::spec::{
    CellKind, DenseActivation, DenseSpec, Init, InputSpec, LayerKind, LayerSpec, MergeMode, RnnSpec,
};
use crate::error::Result;

/// Builds the same models as a Keras config, from Rust: `SequentialBuilder::new("m", input)`
/// then `.lstm(64)`, `.dense(1, ...)`, …, `.build()`. Layer names follow Keras' automatic
/// naming (`lstm`, `lstm_1`, `dense`, …), so weight paths match a Keras model built the
/// same way in a fresh session.
pub struct SequentialBuilder {
    name: String,
    input: InputSpec,
    layers: Vec<LayerSpec>,
    counts: std::collections::BTreeMap<String, usize>,
}

impl SequentialBuilder {
    /// A model whose input has `dims` after the batch axis (`[T, F]` for float sequences,
    /// `[T]` with `integer` for token ids).
    pub fn new(name: &str, dims: &[Option<usize>], integer: bool) -> Self {
        Self {
            name: name.into(),
            input: InputSpec {
                batch: None,
                dims: dims.to_vec(),
                integer,
            },
            layers: Vec::new(),
            counts: Default::default(),
        }
    }

    /// Fixes the batch size (needed by `stateful` layers).
    pub fn batch_size(mut self, batch: usize) -> Self {
        self.input.batch = Some(batch);
        self
    }

    /// Keras' automatic name for the next layer of a class (`lstm`, then `lstm_1`, …).
    pub fn auto_name(&mut self, base: &str) -> String {
        let n = self.counts.entry(base.to_string()).or_insert(0);
        let name = if *n == 0 {
            base.to_string()
        } else {
            format!("{base}_{n}")
        };
        *n += 1;
        name
    }

    /// Appends a layer as it is.
    pub fn layer(mut self, spec: LayerSpec) -> Self {
        self.layers.push(spec);
        self
    }

    fn push(mut self, kind: LayerKind, base: &str) -> Self {
        let name = self.auto_name(base);
        let kind = match kind {
            LayerKind::Rnn(mut r) => {
                r.name = name.clone();
                LayerKind::Rnn(r)
            }
            LayerKind::Dense(mut d) => {
                d.name = name.clone();
                LayerKind::Dense(d)
            }
            k => k,
        };
        self.layers.push(LayerSpec {
            name,
            trainable: true,
            kind,
        });
        self
    }

    /// `Embedding(input_dim, output_dim, mask_zero)`.
    pub fn embedding(self, input_dim: usize, output_dim: usize, mask_zero: bool) -> Self {
        self.push(
            LayerKind::Embedding {
                input_dim,
                output_dim,
                mask_zero,
                regularizer: None,
                initializer: Init::RandomUniform {
                    min: -0.05,
                    max: 0.05,
                },
            },
            "embedding",
        )
    }

    /// `Masking(mask_value)`.
    pub fn masking(self, mask_value: f64) -> Self {
        self.push(LayerKind::Masking { mask_value }, "masking")
    }

    /// `Dropout(rate)`.
    pub fn dropout(self, rate: f64) -> Self {
        self.push(LayerKind::Dropout { rate }, "dropout")
    }

    /// A recurrent layer; `configure` edits the defaults of [`RnnSpec::new`].
    pub fn rnn(self, cell: CellKind, units: usize, configure: impl FnOnce(&mut RnnSpec)) -> Self {
        let base = match cell {
            CellKind::Lstm { .. } => "lstm",
            CellKind::Gru { .. } => "gru",
            CellKind::SimpleRnn => "simple_rnn",
        };
        let mut r = RnnSpec::new(base, cell, units);
        configure(&mut r);
        self.push(LayerKind::Rnn(r), base)
    }

    /// `Bidirectional(layer, merge_mode)`: the backward copy has `go_backwards` flipped, and
    /// both output zeros at masked steps when returning sequences (as Keras forces).
    pub fn bidirectional(
        mut self,
        cell: CellKind,
        units: usize,
        merge: MergeMode,
        configure: impl FnOnce(&mut RnnSpec),
    ) -> Self {
        let base = match cell {
            CellKind::Lstm { .. } => "lstm",
            CellKind::Gru { .. } => "gru",
            CellKind::SimpleRnn => "simple_rnn",
        };
        let inner = self.auto_name(base);
        let mut f = RnnSpec::new(&format!("forward_{inner}"), cell, units);
        configure(&mut f);
        f.zero_output_for_mask = f.return_sequences;
        let mut b = f.clone();
        b.name = format!("backward_{inner}");
        b.go_backwards = !f.go_backwards;
        self.push(
            LayerKind::Bidirectional {
                forward: Box::new(f),
                backward: Box::new(b),
                merge,
            },
            "bidirectional",
        )
    }

    /// `Dense(units, activation)`.
    pub fn dense(self, units: usize, activation: DenseActivation) -> Self {
        self.push(
            LayerKind::Dense(DenseSpec::new("", units, activation)),
            "dense",
        )
    }

    /// `TimeDistributed(Dense(units, activation))`.
    pub fn time_distributed_dense(mut self, units: usize, activation: DenseActivation) -> Self {
        let inner = self.auto_name("dense");
        self.push(
            LayerKind::TimeDistributed(DenseSpec::new(&inner, units, activation)),
            "time_distributed",
        )
    }

    /// Checks and shape-infers the model.
    pub fn build(self) -> Result<ModelSpec> {
        ModelSpec::new(&self.name, self.input, self.layers)
    }
}
