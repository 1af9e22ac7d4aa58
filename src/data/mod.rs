//! Data sets and output helpers for the examples and experiments:
//!
//! - [`moving_digits`]: a deterministic Moving-MNIST-style generator (no download needed);
//! - [`npy`]: the real Moving MNIST file (`mnist_test_seq.npy`) and uint8 NPY files, through
//!   the `ndarray-npy` crate;
//! - [`text`]: sentiment reviews for text classification: a seeded synthetic generator with
//!   negations, and Keras' `pad_sequences`; [`imdb`]: Keras' `imdb.npz` file (zip of NPY
//!   files whose reviews numpy stores as a pickle, read by a small bounded pickle reader);
//! - [`render`] and [`chart`] (cargo feature `render`, on by default): an animated GIF of
//!   truth vs prediction and a PNG loss chart (drawn with `plotters`).
//!
//! Every video tensor is `[N, T, H, W, C]` f32 in `[0, 1]`, channels last, batch first.
//! Token batches are `Array2<i64>` `(N, T)`, the Keras model input
//! `ModelInput::Tokens`.

#[cfg(feature = "render")]
pub mod chart;
mod glyphs;
pub mod imdb;
pub mod moving_digits;
pub mod npy;
mod pickle;
#[cfg(feature = "render")]
pub mod render;
mod rng;
pub mod text;

#[cfg(feature = "render")]
pub use chart::{ChartOptions, HELD_OUT_COLOR, RgbImage, TRAIN_COLOR, write_loss_chart};
pub use imdb::{Imdb, ImdbOptions, imdb_from_bytes, load_imdb};
pub use moving_digits::{MovingDigits, MovingDigitsConfig, downscale, generate};
pub use npy::load_moving_mnist;
#[cfg(feature = "render")]
pub use render::{GifOptions, write_rollout_gif};
pub use text::{
    ReviewConfig, Reviews, Side, Vocabulary, generate_reviews, label_column, majority_baseline,
    pad_sequences,
};
