//! Animated GIF of a rollout: ground truth above prediction, one GIF frame per time step.

use std::borrow::Cow;
use std::path::Path;

use ndarray::{ArrayView4, Axis};

use crate::error::{Error, Result};

/// Gray level of the separator line between the truth and prediction rows.
pub const SEPARATOR_GRAY: u8 = 128;
/// Gray level of the prediction row at time steps before the prediction starts.
pub const NO_PREDICTION_GRAY: u8 = 40;

/// How [`encode_rollout_gif`] lays out and times the animation.
#[derive(Clone, Debug, PartialEq)]
pub struct GifOptions {
    /// Integer upscaling of every frame (nearest neighbour), 1-16; 3 makes 64×64 readable.
    pub scale: usize,
    /// Separator height in output pixels between the two rows.
    pub separator: usize,
    /// Time each frame is shown, in milliseconds (GIF stores 10 ms units).
    pub frame_delay_ms: u32,
    /// Loop forever (true) or play once.
    pub repeat: bool,
}

impl Default for GifOptions {
    fn default() -> Self {
        Self {
            scale: 3,
            separator: 2,
            frame_delay_ms: 200,
            repeat: true,
        }
    }
}

fn gray_index(v: f32) -> u8 {
    // NaN maps to 0 so a diverged model shows black rather than failing to render.
    if v.is_nan() {
        0
    } else {
        (v.clamp(0.0, 1.0) * 255.0).round() as u8
    }
}

/// Encodes a rollout as an animated grayscale GIF. `truth` is `[T, H, W, C]` and
/// `predicted` is `[Tp, H, W, C]` with `Tp <= T`, aligned to the end of `truth` (the usual
/// "observe `T - Tp` frames, predict the rest"); time steps without a prediction show a dark
/// [`NO_PREDICTION_GRAY`] bottom row. Values are clamped to `[0, 1]`; channels are averaged.
/// Each GIF frame is `W·scale` wide and `2·H·scale + separator` tall.
pub fn encode_rollout_gif(
    truth: ArrayView4<f32>,
    predicted: ArrayView4<f32>,
    opts: &GifOptions,
) -> Result<Vec<u8>> {
    let (t, h, w, c) = truth.dim();
    let (tp, ph, pw, pc) = predicted.dim();
    if t == 0 || h == 0 || w == 0 || c == 0 {
        return Err(Error::Shape(format!(
            "truth frames {:?} must be non-empty [T, H, W, C]",
            truth.dim()
        )));
    }
    if (ph, pw, pc) != (h, w, c) || tp > t {
        return Err(Error::Shape(format!(
            "predicted {:?} must be [Tp, {h}, {w}, {c}] with Tp <= {t} to match truth {:?}",
            predicted.dim(),
            truth.dim()
        )));
    }
    if !(1..=16).contains(&opts.scale) || opts.separator > 64 {
        return Err(Error::Config(format!(
            "GIF scale {} must be in 1..=16 and separator {} at most 64",
            opts.scale, opts.separator
        )));
    }
    let (s, sep) = (opts.scale, opts.separator);
    let (gw, gh) = (w * s, 2 * h * s + sep);
    let too_big = || Error::Limit(format!("a {gw}x{gh} GIF exceeds the 65535-pixel GIF limit"));
    let gw16 = u16::try_from(gw).map_err(|_| too_big())?;
    let gh16 = u16::try_from(gh).map_err(|_| too_big())?;
    let delay = u16::try_from(opts.frame_delay_ms.div_ceil(10)).map_err(|_| {
        Error::Config(format!(
            "frame delay {} ms exceeds 655350",
            opts.frame_delay_ms
        ))
    })?;

    // A 256-level gray palette: index i is gray i, so frame pixels are gray levels directly.
    let palette: Vec<u8> = (0..=255u8).flat_map(|g| [g, g, g]).collect();
    let gif_err = |e: gif::EncodingError| Error::Io {
        path: "<gif>".into(),
        msg: e.to_string(),
    };
    let mut enc = gif::Encoder::new(Vec::new(), gw16, gh16, &palette).map_err(gif_err)?;
    if opts.repeat {
        enc.set_repeat(gif::Repeat::Infinite).map_err(gif_err)?;
    }
    let inv_c = 1.0 / c as f32;
    let truth_gray = truth.sum_axis(Axis(3)).mapv(|v| gray_index(v * inv_c));
    let pred_gray = predicted.sum_axis(Axis(3)).mapv(|v| gray_index(v * inv_c));
    let mut buf = vec![0u8; gw * gh];
    for ti in 0..t {
        // Rows of the canvas: [0, h*s) truth, then the separator, then the prediction.
        for y in 0..gh {
            let row = &mut buf[y * gw..(y + 1) * gw];
            if y < h * s {
                let src = truth_gray.index_axis(Axis(0), ti);
                for (x, px) in row.iter_mut().enumerate() {
                    *px = src[[y / s, x / s]];
                }
            } else if y < h * s + sep {
                row.fill(SEPARATOR_GRAY);
            } else if ti + tp >= t {
                let src = pred_gray.index_axis(Axis(0), ti + tp - t);
                let py = (y - h * s - sep) / s;
                for (x, px) in row.iter_mut().enumerate() {
                    *px = src[[py, x / s]];
                }
            } else {
                row.fill(NO_PREDICTION_GRAY);
            }
        }
        let frame = gif::Frame {
            width: gw16,
            height: gh16,
            delay,
            buffer: Cow::Borrowed(&buf),
            ..gif::Frame::default()
        };
        enc.write_frame(&frame).map_err(gif_err)?;
    }
    enc.into_inner().map_err(gif_err)
}

/// [`encode_rollout_gif`] written to `path`.
pub fn write_rollout_gif(
    path: &Path,
    truth: ArrayView4<f32>,
    predicted: ArrayView4<f32>,
    opts: &GifOptions,
) -> Result<()> {
    let bytes = encode_rollout_gif(truth, predicted, opts)?;
    std::fs::write(path, bytes).map_err(|e| Error::Io {
        path: path.display().to_string(),
        msg: e.to_string(),
    })
}
