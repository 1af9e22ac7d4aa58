//! ndarray CPU reference of every recurrent forward and backward pass, used to check the
//! GPU kernels and, through finite differences, itself.

pub mod lstm;
mod lstm_backward;
pub mod real;

pub use lstm::{
    LstmCellParams, LstmDims, LstmForward, LstmGrads, LstmParams, LstmTape, lstm_backward,
    lstm_forward, lstm_loss,
};
pub use real::{Real, sigmoid, tanh};
