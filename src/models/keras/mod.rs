//! Keras `Sequential` models: built from a Keras config (`model.get_config()` or a `.keras`
//! file's `config.json`) or with [`SequentialBuilder`], summarised like `model.summary()`,
//! loaded from safetensors keyed by Keras weight paths or initialised fresh, run through a
//! [`ModelBackend`] ([`CpuBackend`], the f32/f64 reference, or [`GpuBackend`]), trained on the
//! device the Keras way ([`Sequential::fit`]: one submit and one read-back per step, live
//! dropout, metrics, validation, early stopping, a progress bar; [`Sequential::evaluate_metrics`],
//! [`Sequential::predict_batched`]), written back as a Keras config ([`ModelSpec::to_config`])
//! and saved / loaded as a directory of `config.json` + `model.weights.safetensors`
//! ([`Sequential::save`], [`Sequential::load`]).
//!
//! ```
//! use wgpu_rnn::models::keras::{CpuBackend, ModelInput, Precision, Sequential};
//! let config = r#"{"name": "m", "layers": [
//!   {"class_name": "InputLayer", "config": {"batch_shape": [null, 30, 5], "name": "in"}},
//!   {"class_name": "LSTM", "config": {"name": "lstm", "units": 64}},
//!   {"class_name": "Dense", "config": {"name": "dense", "units": 1}}]}"#;
//! let model = Sequential::from_config_str(config, 7)?;
//! assert_eq!(model.param_count(), 17985);
//! assert!(model.summary().ends_with("Total params: 17985\n"));
//! let x = ModelInput::Values(ndarray::ArrayD::zeros(ndarray::IxDyn(&[2, 30, 5])));
//! let out = model.predict(&CpuBackend { precision: Precision::F32 }, &x)?;
//! assert_eq!(out[0].shape(), &[2, 1]);
//! # Ok::<(), wgpu_rnn::Error>(())
//! ```

mod backend;
mod builder;
mod config;
mod config_values;
mod config_writer;
pub(crate) mod cpu;
#[cfg(test)]
mod cross_tests;
mod device_params;
mod fit;
#[cfg(test)]
mod fit_tests;
mod gpu;
mod gpu_layers;
#[cfg(test)]
mod grad_tests;
mod init;
mod loss;
mod metrics;
mod model;
mod plan;
#[cfg(test)]
mod rec_dropout_stack_tests;
#[cfg(test)]
mod rec_dropout_tests;
mod session;
mod spec;
mod summary;
#[cfg(test)]
mod unit_tests;
mod weights;

pub use backend::{CpuBackend, Evaluation, ModelBackend, ModelInput, Precision, RnnStates};
pub use builder::SequentialBuilder;
pub use config::{ParsedConfig, parse as parse_config, parse_str as parse_config_str};
pub use fit::{EarlyStopping, FitOptions, History, keras_optimizer};
pub use gpu::GpuBackend;
pub use loss::{KerasLoss, Target, keras_loss, regularization};
pub use metrics::Metric;
pub use model::Sequential;
pub use plan::{ModelSpec, PlannedLayer, fmt_shape};
pub use spec::{
    CellKind, DenseActivation, DenseSpec, Init, InputSpec, LayerKind, LayerSpec, MergeMode,
    Regularizer, RnnSpec, Shape, WeightSpec,
};
pub use summary::summary;
pub use weights::ModelWeights;
