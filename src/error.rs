//! The crate's one error type. Every public function returns `Result<_, Error>`;
//! messages name the offending value and the limit it broke.

use thiserror::Error;

/// Everything that can go wrong in wgpu-rnn.
#[derive(Debug, Error)]
pub enum Error {
    /// No usable adapter (or the one named by `WGPU_RNN_ADAPTER` was not found).
    #[error("no GPU adapter: {0}")]
    NoAdapter(String),
    /// `request_device` failed.
    #[error("could not open the device: {0}")]
    RequestDevice(String),
    /// A wgpu validation error caught by an error scope.
    #[error("wgpu validation error: {0}")]
    Validation(String),
    /// The device ran out of memory (caught by an error scope).
    #[error("GPU out of memory: {0}")]
    OutOfMemory(String),
    /// The device was lost or a map/poll failed.
    #[error("GPU device error: {0}")]
    Device(String),
    /// A tensor has the wrong shape.
    #[error("shape error: {0}")]
    Shape(String),
    /// A configuration value is invalid (zero sizes, lengths out of range, ...).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A weight tensor is missing or misshapen.
    #[error("weights: {0}")]
    Weights(String),
    /// The request exceeds a device or algorithm limit.
    #[error("limit exceeded: {0}")]
    Limit(String),
    /// The feature or configuration is not supported (yet).
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// A file could not be read or parsed.
    #[error("I/O error on {path}: {msg}")]
    Io { path: String, msg: String },
    /// A data set file or generator request is malformed (bad NPY header, wrong dtype or
    /// rank, truncated data, mismatched frame shapes, ...).
    #[error("data error: {0}")]
    Data(String),
    /// A golden file or safetensors file is malformed.
    #[error("format error: {0}")]
    Format(String),
}

/// Short alias used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
