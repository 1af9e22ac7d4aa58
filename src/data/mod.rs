//! Data and output helpers for video-prediction experiments with [`crate::ConvLstm2d`]:
//!
//! - [`moving_digits`]: a deterministic Moving-MNIST-style generator (no download needed);
//! - [`npy`]: the real Moving MNIST file (`mnist_test_seq.npy`) and uint8 NPY files, through
//!   the `ndarray-npy` crate;
//! - [`render`] and [`chart`] (cargo feature `render`, on by default): an animated GIF of
//!   truth vs prediction and a PNG loss chart (drawn with `plotters`).
//!
//! Every sequence tensor is `[N, T, H, W, C]` f32 in `[0, 1]`, channels last, batch first.

#[cfg(feature = "render")]
pub mod chart;
mod glyphs;
pub mod moving_digits;
pub mod npy;
#[cfg(feature = "render")]
pub mod render;

#[cfg(feature = "render")]
pub use chart::{ChartOptions, HELD_OUT_COLOR, RgbImage, TRAIN_COLOR, write_loss_chart};
pub use moving_digits::{MovingDigits, MovingDigitsConfig, downscale, generate};
pub use npy::load_moving_mnist;
#[cfg(feature = "render")]
pub use render::{GifOptions, write_rollout_gif};
