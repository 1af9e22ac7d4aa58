//! Time-series forecasting data: a seeded synthetic series ([`synthetic_series`]), a CSV
//! column loader ([`load_csv_column`]), min-max scaling fitted on the training span only
//! ([`MinMaxScaler`]), next-value windows ([`windows`]), a chronological split ([`split`]),
//! error metrics and the naive "repeat the last value" baseline ([`naive_errors`]), and all
//! of it in the right order for a model ([`prepare_forecast`]).
//!
//! Windows are `f64`, `X: (N, window, 1)` and `y: (N, 1)`, ready for
//! `ModelInput::Values(x.into_dyn())`.

use std::ops::Range;
use std::path::Path;

use ndarray::{Array2, Array3, s};

use super::rng::SplitMix64;
use crate::error::{Error, Result};
use crate::limits;

/// Settings of [`synthetic_series`]: `level + trend·t + Σ amplitude·sin(2πt/period + φ) +
/// noise·N(0, 1)`, the phases φ drawn from the seed.
#[derive(Clone, Debug, PartialEq)]
pub struct SeriesConfig {
    /// Number of time steps.
    pub length: usize,
    /// Value at `t = 0` before the seasons and noise.
    pub level: f64,
    /// Slope per time step.
    pub trend: f64,
    /// Periods of the two seasonal sines, in steps (each > 0).
    pub periods: [f64; 2],
    /// Amplitudes of the two sines.
    pub amplitudes: [f64; 2],
    /// Standard deviation of the Gaussian noise (≥ 0).
    pub noise: f64,
    /// Seed of the noise and phases.
    pub seed: u64,
}

impl Default for SeriesConfig {
    fn default() -> Self {
        Self {
            length: 1200,
            level: 10.0,
            trend: 0.01,
            periods: [25.0, 120.0],
            amplitudes: [2.0, 1.5],
            noise: 0.3,
            seed: 0,
        }
    }
}

/// The series of `cfg` (`Error::Config` naming a bad field).
pub fn synthetic_series(cfg: &SeriesConfig) -> Result<Vec<f64>> {
    let finite = [cfg.level, cfg.trend, cfg.noise]
        .iter()
        .chain(&cfg.periods)
        .chain(&cfg.amplitudes)
        .all(|v| v.is_finite());
    if !finite || cfg.noise < 0.0 || cfg.periods.iter().any(|&p| p <= 0.0) {
        return Err(Error::Config(format!(
            "series config: level {}, trend {}, periods {:?} (> 0), amplitudes {:?}, noise {} \
             (>= 0) must all be finite",
            cfg.level, cfg.trend, cfg.periods, cfg.amplitudes, cfg.noise
        )));
    }
    limits::check_host_elems(&format!("series of {} steps", cfg.length), cfg.length, 8)?;
    let mut rng = SplitMix64::new(cfg.seed);
    let tau = std::f64::consts::TAU;
    let phases = [rng.unit() * tau, rng.unit() * tau];
    Ok((0..cfg.length)
        .map(|t| {
            let t = t as f64;
            let seasons: f64 = (0..2)
                .map(|k| cfg.amplitudes[k] * (tau * t / cfg.periods[k] + phases[k]).sin())
                .sum();
            cfg.level + cfg.trend * t + seasons + cfg.noise * rng.normal()
        })
        .collect())
}

/// How [`load_csv_column_with`] treats a cell that is not a finite number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NonNumeric {
    /// An `Error::Data` naming the column, line and cell.
    Error,
    /// Leave the row out (e.g. `null` rows in downloaded stock prices).
    Skip,
}

/// The values of column `column` (matched after trimming, a byte-order mark ignored) of a
/// CSV file with a header row, as `f64`. Cells may be quoted and may carry a leading `$`
/// and `,` thousands separators (`"$1,234.50"`); anything else that is not a finite number
/// is an `Error::Data` naming the column, line and cell. A missing column is an
/// `Error::Data` naming it and listing the header.
pub fn load_csv_column(path: &Path, column: &str) -> Result<Vec<f64>> {
    Ok(load_csv_column_with(path, column, NonNumeric::Error)?.0)
}

/// [`load_csv_column`] with a choice for non-numeric cells; also returns how many rows
/// were skipped.
pub fn load_csv_column_with(
    path: &Path,
    column: &str,
    policy: NonNumeric,
) -> Result<(Vec<f64>, usize)> {
    let bytes = limits::read_regular_file(path)?;
    parse_csv_column(&bytes, column, policy, &path.display().to_string())
}

/// [`load_csv_column_with`] on CSV text in memory; `source` names it in errors.
pub fn parse_csv_column(
    bytes: &[u8],
    column: &str,
    policy: NonNumeric,
    source: &str,
) -> Result<(Vec<f64>, usize)> {
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(bytes);
    let csv_err = |e: csv::Error| {
        let line = e
            .position()
            .map_or(String::new(), |p| format!(" line {}", p.line()));
        Error::Data(format!("{source}:{line}: CSV: {e}"))
    };
    let header = rdr.headers().map_err(csv_err)?.clone();
    let want = column.trim();
    let idx = header
        .iter()
        .position(|h| h.trim() == want)
        .ok_or_else(|| {
            let names: Vec<&str> = header.iter().map(str::trim).collect();
            Error::Data(format!(
                "{source}: no column {want:?} in the header (columns: {names:?})"
            ))
        })?;
    let mut values = Vec::new();
    let mut skipped = 0;
    let mut record = csv::StringRecord::new();
    while rdr.read_record(&mut record).map_err(csv_err)? {
        let line = record.position().map_or(0, |p| p.line());
        let Some(cell) = record.get(idx) else {
            return Err(Error::Data(format!(
                "{source}: line {line}: column {want:?} is field {} but the row has {} fields",
                idx + 1,
                record.len()
            )));
        };
        match parse_number(cell) {
            Some(v) => values.push(v),
            None if policy == NonNumeric::Skip => skipped += 1,
            None => {
                return Err(Error::Data(format!(
                    "{source}: line {line}: column {want:?} holds {cell:?}, not a finite number"
                )));
            }
        }
    }
    Ok((values, skipped))
}

/// A finite number, allowing a leading `$` (after any `-`) and `,` thousands separators.
fn parse_number(cell: &str) -> Option<f64> {
    let t = cell.trim();
    let (neg, body) = if let Some(r) = t.strip_prefix("-$") {
        (true, r)
    } else {
        (false, t.strip_prefix('$').unwrap_or(t))
    };
    if neg && body.starts_with(['-', '+']) {
        return None;
    }
    let body = if body.contains(',') {
        // Only separators between groups of three digits, as in 1,234,567.5.
        let int = body.trim_start_matches(['-', '+']).split('.').next()?;
        let groups: Vec<&str> = int.split(',').collect();
        let ok = groups.len() > 1
            && !body
                .split_once('.')
                .is_some_and(|(_, frac)| frac.contains(','))
            && (1..=3).contains(&groups[0].len())
            && groups[1..].iter().all(|g| g.len() == 3)
            && groups.iter().all(|g| g.bytes().all(|b| b.is_ascii_digit()));
        if !ok {
            return None;
        }
        body.replace(',', "")
    } else {
        body.to_string()
    };
    let v: f64 = body.parse().ok()?;
    v.is_finite().then_some(if neg { -v } else { v })
}

/// Scales values to `[0, 1]` with the minimum and maximum of the span it was fitted on
/// (scikit-learn's `MinMaxScaler`): values outside that span map outside `[0, 1]`. A
/// constant span gets a range of 1, as in scikit-learn, so it maps to 0 and back exactly.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MinMaxScaler {
    /// Smallest fitted value.
    pub min: f64,
    /// Largest fitted value.
    pub max: f64,
}

impl MinMaxScaler {
    /// Fits on `data` (`Error::Data` when empty or not all finite).
    pub fn fit(data: &[f64]) -> Result<Self> {
        if data.is_empty() {
            return Err(Error::Data("MinMaxScaler fitted on no values".into()));
        }
        if let Some((i, v)) = data.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(Error::Data(format!(
                "MinMaxScaler: value {i} is {v}, not finite"
            )));
        }
        let min = data.iter().copied().fold(f64::INFINITY, f64::min);
        let max = data.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        Ok(Self { min, max })
    }

    /// `max - min`, or 1 for a constant span.
    pub fn range(&self) -> f64 {
        let r = self.max - self.min;
        if r > 0.0 { r } else { 1.0 }
    }

    /// `(v - min) / range` for one value.
    pub fn scale(&self, v: f64) -> f64 {
        (v - self.min) / self.range()
    }

    /// `v * range + min` for one value.
    pub fn unscale(&self, v: f64) -> f64 {
        v * self.range() + self.min
    }

    /// [`Self::scale`] of every value.
    pub fn transform(&self, data: &[f64]) -> Vec<f64> {
        data.iter().map(|&v| self.scale(v)).collect()
    }

    /// [`Self::unscale`] of every value.
    pub fn inverse_transform(&self, data: &[f64]) -> Vec<f64> {
        data.iter().map(|&v| self.unscale(v)).collect()
    }
}

/// Sliding windows for next-value prediction: `X[i] = series[i..i + window]` as
/// `(N, window, 1)` and `y[i] = series[i + window]` as `(N, 1)`, `N = len - window`
/// (`Error::Config` when `window` is 0 or the series is not longer than it).
pub fn windows(series: &[f64], window: usize) -> Result<(Array3<f64>, Array2<f64>)> {
    if window == 0 || series.len() <= window {
        return Err(Error::Config(format!(
            "window {window} needs a series longer than it (got {} values) and at least 1",
            series.len()
        )));
    }
    let n = series.len() - window;
    let elems = limits::count("forecast windows", &[n, window])?;
    limits::check_host_elems(&format!("{n} windows of {window} steps as f64"), elems, 8)?;
    let x = Array3::from_shape_fn((n, window, 1), |(i, t, _)| series[i + t]);
    let y = Array2::from_shape_fn((n, 1), |(i, _)| series[i + window]);
    Ok((x, y))
}

/// Chronological index ranges of a split: `train` first, then `val`, then `test`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Split {
    /// The oldest items.
    pub train: Range<usize>,
    /// The items after `train` (empty when `val_frac` is 0).
    pub val: Range<usize>,
    /// The newest items, the rest.
    pub test: Range<usize>,
}

/// Splits `0..n` in time order: `floor(n · train_frac)` items, then `floor(n · val_frac)`,
/// then the rest. `Error::Config` when a fraction is outside `[0, 1]`, they add up to more
/// than 1, or the train or test part would be empty.
pub fn split(n: usize, train_frac: f64, val_frac: f64) -> Result<Split> {
    let ok = |f: f64| (0.0..=1.0).contains(&f);
    if !ok(train_frac) || !ok(val_frac) || train_frac + val_frac > 1.0 {
        return Err(Error::Config(format!(
            "split fractions train {train_frac} and val {val_frac} must be within [0, 1] and \
             add up to at most 1"
        )));
    }
    let a = (n as f64 * train_frac).floor() as usize;
    let b = a + (n as f64 * val_frac).floor() as usize;
    let b = b.min(n);
    if a == 0 || b >= n {
        return Err(Error::Config(format!(
            "splitting {n} items by train {train_frac} / val {val_frac} leaves {a} train and \
             {} test items; each needs at least 1",
            n - b
        )));
    }
    Ok(Split {
        train: 0..a,
        val: a..b,
        test: b..n,
    })
}

/// Mean squared and mean absolute error.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Errors {
    /// Mean of `(pred - truth)²`.
    pub mse: f64,
    /// Mean of `|pred - truth|`.
    pub mae: f64,
}

/// MSE and MAE of `pred` against `truth` (`Error::Shape` for different or zero lengths).
pub fn errors(pred: &[f64], truth: &[f64]) -> Result<Errors> {
    if pred.len() != truth.len() || pred.is_empty() {
        return Err(Error::Shape(format!(
            "errors of {} predictions against {} true values (need equal, non-zero counts)",
            pred.len(),
            truth.len()
        )));
    }
    let n = pred.len() as f64;
    let (se, ae) = pred.iter().zip(truth).fold((0.0, 0.0), |(se, ae), (p, t)| {
        let d = p - t;
        (se + d * d, ae + d.abs())
    });
    Ok(Errors {
        mse: se / n,
        mae: ae / n,
    })
}

/// The naive forecast's errors: each window's last value predicts its target.
pub fn naive_errors(x: &Array3<f64>, y: &Array2<f64>) -> Result<Errors> {
    let (n, w, f) = x.dim();
    if w == 0 || f != 1 || y.dim() != (n, 1) {
        return Err(Error::Shape(format!(
            "naive forecast of windows {:?} and targets {:?} (need (N, window>=1, 1) and (N, 1))",
            x.dim(),
            y.dim()
        )));
    }
    let last: Vec<f64> = x.slice(s![.., w - 1, 0]).to_vec();
    errors(&last, &y.column(0).to_vec())
}

/// Windows of a series, scaled and split for training, by [`prepare_forecast`].
#[derive(Clone, Debug)]
pub struct ForecastData {
    /// Fitted on the series values the training windows see (inputs and targets) only.
    pub scaler: MinMaxScaler,
    /// Which windows went where (window `i` predicts `series[i + window]`).
    pub split: Split,
    /// Training windows `(N, window, 1)`, scaled.
    pub x_train: Array3<f64>,
    /// Training targets `(N, 1)`, scaled.
    pub y_train: Array2<f64>,
    /// Validation windows (possibly empty).
    pub x_val: Array3<f64>,
    /// Validation targets.
    pub y_val: Array2<f64>,
    /// Test windows.
    pub x_test: Array3<f64>,
    /// Test targets.
    pub y_test: Array2<f64>,
}

impl ForecastData {
    /// The series index of test target `j` is `first_test_target() + j`.
    pub fn first_test_target(&self, window: usize) -> usize {
        self.split.test.start + window
    }
}

/// Windows of `series` split in time order, scaled by a [`MinMaxScaler`] fitted on the
/// training span (`series[..train_windows + window]`) so nothing of the validation or test
/// span leaks into training.
pub fn prepare_forecast(
    series: &[f64],
    window: usize,
    train_frac: f64,
    val_frac: f64,
) -> Result<ForecastData> {
    if window == 0 || series.len() <= window {
        return Err(Error::Config(format!(
            "window {window} needs a series longer than it (got {} values) and at least 1",
            series.len()
        )));
    }
    let sp = split(series.len() - window, train_frac, val_frac)?;
    let scaler = MinMaxScaler::fit(&series[..sp.train.end + window])?;
    let (x, y) = windows(&scaler.transform(series), window)?;
    let part = |r: &Range<usize>| {
        (
            x.slice(s![r.clone(), .., ..]).to_owned(),
            y.slice(s![r.clone(), ..]).to_owned(),
        )
    };
    let (x_train, y_train) = part(&sp.train);
    let (x_val, y_val) = part(&sp.val);
    let (x_test, y_test) = part(&sp.test);
    Ok(ForecastData {
        scaler,
        split: sp,
        x_train,
        y_train,
        x_val,
        y_val,
        x_test,
        y_test,
    })
}

#[cfg(test)]
#[path = "series_tests.rs"]
mod tests;
