//! Data sets and output helpers for the examples and experiments:
//!
//! - [`moving_digits`]: a deterministic Moving-MNIST-style generator (no download needed);
//! - [`npy`]: the real Moving MNIST file (`mnist_test_seq.npy`) and uint8 NPY files, through
//!   the `ndarray-npy` crate;
//! - [`text`]: sentiment reviews for text classification: a seeded synthetic generator with
//!   negations, and Keras' `pad_sequences`; [`imdb`]: Keras' `imdb.npz` file (zip of NPY
//!   files whose reviews numpy stores as a pickle, read by a small bounded pickle reader);
//! - [`series`]: time series for forecasting: a seeded trend + seasons + noise series, a
//!   CSV column loader, min-max scaling, next-value windows, a chronological split and the
//!   naive "repeat the last value" baseline;
//! - [`render`], [`chart`] and [`forecast_plot`] (cargo feature `render`, on by default): an
//!   animated GIF of truth vs prediction, a PNG loss chart and a PNG forecast plot (drawn
//!   with `plotters`).
//!
//! Every video tensor is `[N, T, H, W, C]` f32 in `[0, 1]`, channels last, batch first.
//! Token batches are `Array2<i64>` `(N, T)` and series windows `f64` `(N, window, 1)`, the
//! Keras model inputs (`ModelInput::Tokens`, `ModelInput::Values`).

#[cfg(feature = "render")]
pub mod chart;
#[cfg(feature = "render")]
pub mod forecast_plot;
mod glyphs;
pub mod imdb;
pub mod moving_digits;
mod mt19937;
pub mod npy;
mod pickle;
#[cfg(feature = "render")]
pub mod render;
pub(crate) mod rng;
pub mod series;
pub mod text;

#[cfg(feature = "render")]
pub use chart::{ChartOptions, HELD_OUT_COLOR, RgbImage, TRAIN_COLOR, write_loss_chart};
#[cfg(feature = "render")]
pub use forecast_plot::{render_forecast_plot, write_forecast_plot};
pub use imdb::{Imdb, ImdbOptions, imdb_from_bytes, load_imdb};
pub use moving_digits::{MovingDigits, MovingDigitsConfig, downscale, generate};
pub use npy::load_moving_mnist;
#[cfg(feature = "render")]
pub use render::{GifOptions, write_rollout_gif};
pub use series::{
    Errors, ForecastData, MinMaxScaler, NonNumeric, SeriesConfig, Split, errors, load_csv_column,
    load_csv_column_with, naive_errors, prepare_forecast, split, synthetic_series, windows,
};
pub use text::{
    ReviewConfig, Reviews, Side, Vocabulary, generate_reviews, label_column, majority_baseline,
    pad_sequences,
};
