//! A PNG line chart of train and held-out loss per epoch, drawn with `plotters` (bitmap
//! backend, an embedded font, so no system font is needed): axes, labelled ticks, light grid
//! lines, and a legend.

use std::path::Path;
use std::sync::OnceLock;

use plotters::prelude::*;
use plotters::style::FontStyle;

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
}

/// The chart's only font: DejaVu Sans cut down to printable ASCII (10 KB, Bitstream Vera
/// licence, `assets/fonts/LICENSE`, made by `scripts/subset_font.sh`), registered with
/// plotters as "sans-serif" so no system font is ever looked up.
static FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans-ascii.ttf");

pub(crate) fn register_font() -> Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
        plotters::style::register_font("sans-serif", FontStyle::Normal, FONT).is_ok()
    });
    if ok {
        Ok(())
    } else {
        Err(Error::Data(
            "the embedded chart font is not a valid TrueType font".into(),
        ))
    }
}

fn draw_err(e: impl std::fmt::Display) -> Error {
    Error::Data(format!("drawing the loss chart: {e}"))
}

fn rgb(c: [u8; 3]) -> RGBColor {
    RGBColor(c[0], c[1], c[2])
}

/// Draws the chart into an RGB buffer with plotters. `train[i]` and `held_out[i]` are the
/// losses after epoch `i + 1`; either may be empty or shorter than the other, and non-finite
/// values leave a gap in their line.
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
    register_font()?;
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
    let pad = (hi - lo) * 0.05;
    let (x_min, x_max) = if epochs > 1 {
        (1.0, epochs as f64)
    } else {
        (0.0, 2.0)
    };
    let text = if w >= 480 && h >= 300 { 16 } else { 11 };

    let mut img = RgbImage::new(w, h, BACKGROUND);
    {
        let root =
            BitMapBackend::with_buffer(&mut img.data, (w as u32, h as u32)).into_drawing_area();
        let mut chart = ChartBuilder::on(&root)
            .margin(10)
            .margin_top(2 * text as u32)
            .x_label_area_size(2 * text as u32 + 8)
            .y_label_area_size(4 * text as u32)
            .build_cartesian_2d(x_min..x_max, (lo - pad)..(hi + pad))
            .map_err(draw_err)?;
        chart
            .configure_mesh()
            .x_desc("epoch")
            .y_desc("loss")
            .x_labels(epochs.clamp(2, 10))
            .x_label_formatter(&|v| format!("{}", v.round() as i64))
            .label_style(("sans-serif", text).into_font().color(&rgb(TEXT)))
            .axis_style(rgb(AXIS))
            .bold_line_style(rgb(GRID))
            .light_line_style(rgb(BACKGROUND))
            .draw()
            .map_err(draw_err)?;
        // Markers only when they stay distinct, so long runs read as clean lines.
        let marker = w / epochs.max(1) >= 12;
        for (series, color, name) in [
            (held_out, HELD_OUT_COLOR, "held-out"),
            (train, TRAIN_COLOR, "train"),
        ] {
            let c = rgb(color);
            let points: Vec<Option<(f64, f64)>> = series
                .iter()
                .enumerate()
                .map(|(i, &v)| v.is_finite().then(|| ((i + 1) as f64, f64::from(v))))
                .collect();
            // One line per run of finite values: a NaN leaves a gap.
            let mut legend = false;
            for run in points.split(|p| p.is_none()).filter(|r| !r.is_empty()) {
                let run: Vec<(f64, f64)> = run.iter().flatten().copied().collect();
                let drawn = chart
                    .draw_series(LineSeries::new(run.clone(), c.stroke_width(2)))
                    .map_err(draw_err)?;
                if !legend {
                    drawn.label(name).legend(move |(x, y)| {
                        Rectangle::new([(x, y - 6), (x + 12, y + 6)], c.filled())
                    });
                    legend = true;
                }
                if marker {
                    chart
                        .draw_series(run.iter().map(|&p| Circle::new(p, 3, c.filled())))
                        .map_err(draw_err)?;
                }
            }
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperMiddle)
            .label_font(("sans-serif", text).into_font().color(&rgb(TEXT)))
            .background_style(WHITE.mix(0.85))
            .border_style(rgb(GRID))
            .draw()
            .map_err(draw_err)?;
        root.present().map_err(draw_err)?;
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
