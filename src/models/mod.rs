//! Whole models built from the crate's layers, trained on the device.

pub mod next_frame;

pub use next_frame::{ConvLstmLayerSpec, NextFrameConfig, NextFrameModel};
pub mod keras;
