//! ndarray CPU reference of every recurrent forward and backward pass, used to check the
//! GPU kernels and, through finite differences, itself.

pub(crate) mod common;
pub(crate) mod conv;
pub mod convlstm;
mod convlstm_backward;
pub mod gru;
mod gru_backward;
pub mod lstm;
mod lstm_backward;
pub mod real;
pub mod rnn;
mod stack;

pub use convlstm::{
    Activation, ConvLstmDims, ConvLstmForward, ConvLstmGrads, ConvLstmParams, ConvLstmTape,
    Padding, convlstm_backward, convlstm_forward, convlstm_loss,
};
pub use gru::{
    GruCellParams, GruForward, GruGrads, GruMode, GruParams, GruTape, gru_backward, gru_forward,
    gru_loss,
};
pub use lstm::{
    LstmCellParams, LstmDims, LstmForward, LstmGrads, LstmParams, LstmTape, lstm_backward,
    lstm_forward, lstm_loss,
};
pub use real::{Real, sigmoid, tanh};
pub use rnn::{
    Nonlinearity, RnnCellParams, RnnForward, RnnGrads, RnnParams, RnnTape, rnn_backward,
    rnn_forward, rnn_loss,
};
