//! A PNG line chart of train and held-out loss per epoch, drawn pixel by pixel: axes, tick
//! marks with 3×5-font labels, light grid lines, and a legend of colored boxes.

use std::path::Path;

use crate::data::font::{GLYPH_H, draw_text, text_width};
use crate::error::{Error, Result};

/// Color of the train-loss series and its legend box (matplotlib's tab:blue).
pub const TRAIN_COLOR: [u8; 3] = [31, 119, 180];
/// Color of the held-out-loss series and its legend box (matplotlib's tab:orange).
pub const HELD_OUT_COLOR: [u8; 3] = [255, 127, 14];
const AXIS: [u8; 3] = [0, 0, 0];
const GRID: [u8; 3] = [228, 228, 228];
const TEXT: [u8; 3] = [40, 40, 40];
const BACKGROUND: [u8; 3] = [255, 255, 255];

/// Chart size in pixels.
#[derive(Clone, Debug, PartialEq)]
pub struct ChartOptions {
    /// Image width in pixels (at least 200).
    pub width: usize,
    /// Image height in pixels (at least 150).
    pub height: usize,
}

impl Default for ChartOptions {
    fn default() -> Self {
        Self {
            width: 640,
            height: 400,
        }
    }
}

/// An 8-bit RGB image, row-major, 3 bytes per pixel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RgbImage {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// `width * height * 3` bytes.
    pub data: Vec<u8>,
}

impl RgbImage {
    fn new(width: usize, height: usize, fill: [u8; 3]) -> Self {
        Self {
            width,
            height,
            data: fill.repeat(width * height),
        }
    }

    /// Sets one pixel; coordinates outside the image are ignored, which lets drawing code
    /// clip for free.
    fn put(&mut self, x: i64, y: i64, c: [u8; 3]) {
        if x >= 0 && y >= 0 && (x as usize) < self.width && (y as usize) < self.height {
            let i = (y as usize * self.width + x as usize) * 3;
            self.data[i..i + 3].copy_from_slice(&c);
        }
    }

    fn rect(&mut self, x: i64, y: i64, w: i64, h: i64, c: [u8; 3]) {
        for yy in y..y + h {
            for xx in x..x + w {
                self.put(xx, yy, c);
            }
        }
    }

    /// A 2-pixel-wide line (Bresenham with a 2×2 pen).
    fn line(&mut self, (x0, y0): (i64, i64), (x1, y1): (i64, i64), c: [u8; 3]) {
        let (dx, dy) = ((x1 - x0).abs(), -(y1 - y0).abs());
        let (sx, sy) = (if x0 < x1 { 1 } else { -1 }, if y0 < y1 { 1 } else { -1 });
        let (mut x, mut y, mut err) = (x0, y0, dx + dy);
        loop {
            self.rect(x, y, 2, 2, c);
            if x == x1 && y == y1 {
                break;
            }
            let e2 = 2 * err;
            if e2 >= dy {
                err += dy;
                x += sx;
            }
            if e2 <= dx {
                err += dx;
                y += sy;
            }
        }
    }

    fn text(&mut self, s: &str, x: i64, y: i64, scale: usize, c: [u8; 3]) {
        let (x, y) = (x.max(0) as usize, y.max(0) as usize);
        draw_text(s, x, y, scale, |px, py| self.put(px as i64, py as i64, c));
    }
}

/// A "nice" tick step (1, 2 or 5 × 10^k) giving about `target` intervals over `range`.
fn nice_step(range: f64, target: f64) -> f64 {
    let raw = range / target;
    let mag = 10f64.powf(raw.log10().floor());
    let f = raw / mag;
    let nice = if f <= 1.0 {
        1.0
    } else if f <= 2.0 {
        2.0
    } else if f <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * mag
}

/// Formats a tick value with just enough decimals for `step`, switching to `1.5e-4` style
/// when plain decimals would be long.
fn tick_label(v: f64, step: f64) -> String {
    let v = if v.abs() < step * 1e-6 { 0.0 } else { v };
    if v != 0.0 && (v.abs() >= 1e5 || step < 1e-3) {
        format!("{v:.1e}")
    } else {
        let decimals = (-step.log10().floor()).clamp(0.0, 6.0) as usize;
        format!("{v:.decimals$}")
    }
}

/// Draws the chart into an RGB buffer. `train[i]` and `held_out[i]` are the losses after
/// epoch `i + 1`; either may be empty or shorter than the other, and non-finite values leave
/// a gap in their line.
pub fn render_loss_chart(train: &[f32], held_out: &[f32], opts: &ChartOptions) -> Result<RgbImage> {
    let (w, h) = (opts.width, opts.height);
    if !(200..=8192).contains(&w) || !(150..=8192).contains(&h) {
        return Err(Error::Config(format!(
            "chart size {w}x{h} must be within 200x150 ..= 8192x8192"
        )));
    }
    let finite: Vec<f64> = train
        .iter()
        .chain(held_out)
        .filter(|v| v.is_finite())
        .map(|&v| f64::from(v))
        .collect();
    if finite.is_empty() {
        return Err(Error::Data(format!(
            "no finite loss values to plot ({} train, {} held-out)",
            train.len(),
            held_out.len()
        )));
    }
    let epochs = train.len().max(held_out.len());
    let (mut lo, mut hi) = finite
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    if hi - lo <= hi.abs().max(lo.abs()) * 1e-9 {
        // A flat series still needs a visible y range around it.
        let pad = if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
        (lo, hi) = (lo - pad, hi + pad);
    }
    let y_step = nice_step(hi - lo, 5.0);
    let (y_min, y_max) = (
        (lo / y_step).floor() * y_step,
        (hi / y_step).ceil() * y_step,
    );
    let (x_min, x_max) = if epochs > 1 {
        (1.0, epochs as f64)
    } else {
        (0.0, 2.0)
    };
    let x_step = nice_step(x_max - x_min, 6.0).max(1.0).round();

    let text_scale = if w >= 480 && h >= 300 { 2 } else { 1 };
    let char_h = (GLYPH_H * text_scale) as i64;
    let y_labels: Vec<(f64, String)> = (0..=((y_max - y_min) / y_step).round() as i64)
        .map(|k| {
            let v = y_min + k as f64 * y_step;
            (v, tick_label(v, y_step))
        })
        .collect();
    let label_w = y_labels
        .iter()
        .map(|(_, s)| text_width(s, text_scale))
        .max()
        .unwrap_or(0) as i64;
    // Plot area: room on the left for y labels, on top for the legend, below for x labels.
    let left = label_w + 14;
    let top = 3 * char_h + 8;
    let right = w as i64 - 16;
    let bottom = h as i64 - 3 * char_h - 10;
    if right - left < 40 || bottom - top < 40 {
        return Err(Error::Config(format!(
            "chart {w}x{h} is too small for its labels"
        )));
    }
    let px = |x: f64| left + ((x - x_min) / (x_max - x_min) * (right - left) as f64).round() as i64;
    let py =
        |y: f64| bottom - ((y - y_min) / (y_max - y_min) * (bottom - top) as f64).round() as i64;

    let mut img = RgbImage::new(w, h, BACKGROUND);
    for (v, label) in &y_labels {
        let y = py(*v);
        img.rect(left + 1, y, right - left, 1, GRID);
        img.rect(left - 5, y, 5, 1, AXIS);
        let lw = text_width(label, text_scale) as i64;
        img.text(label, left - 8 - lw, y - char_h / 2, text_scale, TEXT);
    }
    let mut e = (x_min / x_step).ceil() * x_step;
    while e <= x_max + 1e-9 {
        let x = px(e);
        img.rect(x, bottom + 1, 1, 5, AXIS);
        let label = format!("{}", e as i64);
        let lw = text_width(&label, text_scale) as i64;
        img.text(&label, x - lw / 2, bottom + 9, text_scale, TEXT);
        e += x_step;
    }
    img.rect(left, top, 1, bottom - top + 1, AXIS);
    img.rect(left, bottom, right - left + 1, 1, AXIS);
    let title = "epoch";
    let tw = text_width(title, text_scale) as i64;
    img.text(
        title,
        (left + right - tw) / 2,
        h as i64 - char_h - 4,
        text_scale,
        TEXT,
    );
    img.text("loss", 4, 4, text_scale, TEXT);

    // Series: markers only when they stay distinct, so long runs read as clean lines.
    let marker = (right - left) / (epochs.max(1) as i64) >= 8;
    for (series, color) in [(held_out, HELD_OUT_COLOR), (train, TRAIN_COLOR)] {
        let mut prev: Option<(i64, i64)> = None;
        for (i, &v) in series.iter().enumerate() {
            if !v.is_finite() {
                prev = None;
                continue;
            }
            let p = (px((i + 1) as f64), py(f64::from(v)));
            if let Some(q) = prev {
                img.line(q, p, color);
            }
            if marker {
                img.rect(p.0 - 2, p.1 - 2, 6, 6, color);
            }
            prev = Some(p);
        }
    }

    // Legend, centred in the top margin: [box] train   [box] held-out
    let entries = [("train", TRAIN_COLOR), ("held-out", HELD_OUT_COLOR)];
    let box_side = char_h + 2;
    let gap = 4 * text_scale as i64;
    let total: i64 = entries
        .iter()
        .map(|(s, _)| box_side + gap + text_width(s, text_scale) as i64)
        .sum::<i64>()
        + 3 * gap;
    let mut x = (w as i64 - total) / 2;
    let y = (top - box_side) / 2;
    for (label, color) in entries {
        img.rect(x, y, box_side, box_side, color);
        x += box_side + gap;
        img.text(label, x, y + 1, text_scale, TEXT);
        x += text_width(label, text_scale) as i64 + 3 * gap;
    }
    Ok(img)
}

/// Encodes an RGB image as PNG bytes.
pub fn encode_png(img: &RgbImage) -> Result<Vec<u8>> {
    if img.data.len() != img.width * img.height * 3 || img.width == 0 || img.height == 0 {
        return Err(Error::Shape(format!(
            "RGB image {}x{} needs {} bytes, has {}",
            img.width,
            img.height,
            img.width * img.height * 3,
            img.data.len()
        )));
    }
    let png_err = |e: png::EncodingError| Error::Io {
        path: "<png>".into(),
        msg: e.to_string(),
    };
    let too_big = || Error::Limit(format!("{}x{} image is too large", img.width, img.height));
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(
        &mut out,
        u32::try_from(img.width).map_err(|_| too_big())?,
        u32::try_from(img.height).map_err(|_| too_big())?,
    );
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let mut writer = enc.write_header().map_err(png_err)?;
    writer.write_image_data(&img.data).map_err(png_err)?;
    writer.finish().map_err(png_err)?;
    Ok(out)
}

/// Renders the loss chart and writes it as a PNG (e.g. `loss.png`).
pub fn write_loss_chart(
    path: &Path,
    train: &[f32],
    held_out: &[f32],
    opts: &ChartOptions,
) -> Result<()> {
    let bytes = encode_png(&render_loss_chart(train, held_out, opts)?)?;
    std::fs::write(path, bytes).map_err(|e| Error::Io {
        path: path.display().to_string(),
        msg: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_steps_are_1_2_5() {
        assert_eq!(nice_step(1.0, 5.0), 0.2);
        assert_eq!(nice_step(10.0, 4.0), 5.0);
        assert!((nice_step(0.03, 5.0) - 0.01).abs() < 1e-12);
    }

    #[test]
    fn tick_labels_use_only_font_characters() {
        assert_eq!(tick_label(0.25, 0.05), "0.25");
        assert_eq!(tick_label(3.0, 1.0), "3");
        assert_eq!(tick_label(2e-4, 1e-4), "2.0e-4");
        assert_eq!(tick_label(1e-17, 0.1), "0.0");
    }
}
