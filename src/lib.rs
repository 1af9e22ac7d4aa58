//! wgpu-rnn: fused recurrent kernels in WGSL, run through wgpu, with an ndarray CPU
//! reference of every forward and backward.
//!
//! Start with [`Lstm`]: build it from a config and PyTorch or Keras weights, pick a
//! [`Backend`], then call `forward`, or `forward_train` and `backward`.

pub mod algorithm;
pub mod auto_table;
pub mod bench;
pub mod context;
pub mod cpu;
pub mod data;
pub mod error;
pub(crate) mod gpu;
pub(crate) mod kernels;
pub mod layer;
pub mod limits;
pub mod tensor;

pub use algorithm::{Algorithm, Algorithms};
pub use context::{AdapterSummary, Context};
pub use error::{Error, Result};
pub use kernels::{RecordStats, Recorder, ShaderModuleSource, shader_modules};
/// The wgpu this crate is built against, so downstream crates use the same version.
pub use wgpu;
pub mod layers;
pub mod models;
pub mod nn;
pub mod train;
pub mod weights;

pub use layer::{Forward, Layer, OutputGrads, Tape};
pub use layers::convlstm::{
    Activation, ConvLstm2d, ConvLstm2dConfig, ConvLstm2dGradients, ConvLstm2dOutput,
    ConvLstm2dTrace, Padding,
};
pub use layers::convlstm_stack::{ConvLstm2dStack, ConvLstm2dStackGradients, ConvLstm2dStackTrace};
pub use layers::gru::{Gru, GruConfig};
pub use layers::hstate::{RnnGradients, RnnOutput, RnnTrace};
pub use layers::lstm::{Lstm, LstmConfig, LstmGradients, LstmOutput, LstmTrace};
pub use layers::simple_rnn::{Nonlinearity, SimpleRnn, SimpleRnnConfig};
pub use layers::{Backend, keras_state};
pub use tensor::{DType, DeviceTensor};
pub use weights::{TensorMap, WeightFormat};
pub mod golden;

/// The README's API example is compiled and run as a doctest, so it stays true.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
