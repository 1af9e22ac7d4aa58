//! A PNG line chart of a forecast: the true series and the prediction over the same time
//! steps, with a title, labelled axes and a legend, drawn with `plotters` like
//! [`super::chart`] (bitmap backend, the embedded font).

use std::path::Path;

use plotters::prelude::*;

use super::chart::{
    ChartOptions, HELD_OUT_COLOR, RgbImage, TRAIN_COLOR, encode_png, register_font,
};
use crate::error::{Error, Result};

/// Color of the true series (matplotlib's tab:blue).
pub const TRUTH_COLOR: [u8; 3] = TRAIN_COLOR;
/// Color of the prediction (matplotlib's tab:orange).
pub const PREDICTION_COLOR: [u8; 3] = HELD_OUT_COLOR;

fn draw_err(e: impl std::fmt::Display) -> Error {
    Error::Data(format!("drawing the forecast plot: {e}"))
}

fn rgb(c: [u8; 3]) -> RGBColor {
    RGBColor(c[0], c[1], c[2])
}

/// Draws `truth[i]` and `pred[i]` against step `i` into an RGB buffer. The two may differ
/// in length; a non-finite value leaves a gap in its line. `Error::Data` when neither has a
/// finite value, `Error::Config` for a size outside 200x150 ..= 8192x8192.
pub fn render_forecast_plot(
    truth: &[f64],
    pred: &[f64],
    title: &str,
    opts: &ChartOptions,
) -> Result<RgbImage> {
    let (w, h) = (opts.width, opts.height);
    if !(200..=8192).contains(&w) || !(150..=8192).contains(&h) {
        return Err(Error::Config(format!(
            "plot size {w}x{h} must be within 200x150 ..= 8192x8192"
        )));
    }
    let finite: Vec<f64> = truth
        .iter()
        .chain(pred)
        .copied()
        .filter(|v| v.is_finite())
        .collect();
    if finite.is_empty() {
        return Err(Error::Data(format!(
            "no finite values to plot ({} true, {} predicted)",
            truth.len(),
            pred.len()
        )));
    }
    register_font()?;
    let (mut lo, mut hi) = finite
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    if hi - lo <= hi.abs().max(lo.abs()) * 1e-9 {
        let pad = if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
        (lo, hi) = (lo - pad, hi + pad);
    }
    // Headroom above the data for the legend.
    let (y_lo, y_hi) = (lo - (hi - lo) * 0.05, hi + (hi - lo) * 0.2);
    let steps = truth.len().max(pred.len());
    let x_max = (steps.max(2) - 1) as f64;
    let text = if w >= 480 && h >= 300 { 16 } else { 11 };

    let mut img = RgbImage {
        width: w,
        height: h,
        data: [255u8; 3].repeat(w * h),
    };
    {
        let root =
            BitMapBackend::with_buffer(&mut img.data, (w as u32, h as u32)).into_drawing_area();
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", text + 2).into_font().color(&BLACK))
            .margin(10)
            .x_label_area_size(2 * text as u32 + 8)
            .y_label_area_size(4 * text as u32)
            .build_cartesian_2d(0.0..x_max, y_lo..y_hi)
            .map_err(draw_err)?;
        chart
            .configure_mesh()
            .x_desc("time step")
            .y_desc("value")
            .x_label_formatter(&|v| format!("{}", v.round() as i64))
            .label_style(
                ("sans-serif", text)
                    .into_font()
                    .color(&RGBColor(40, 40, 40)),
            )
            .axis_style(BLACK)
            .bold_line_style(RGBColor(228, 228, 228))
            .light_line_style(WHITE)
            .draw()
            .map_err(draw_err)?;
        for (series, color, name) in [
            (truth, TRUTH_COLOR, "truth"),
            (pred, PREDICTION_COLOR, "prediction"),
        ] {
            let c = rgb(color);
            let points: Vec<Option<(f64, f64)>> = series
                .iter()
                .enumerate()
                .map(|(i, &v)| v.is_finite().then_some((i as f64, v)))
                .collect();
            let mut legend = false;
            for run in points.split(|p| p.is_none()).filter(|r| !r.is_empty()) {
                let run: Vec<(f64, f64)> = run.iter().flatten().copied().collect();
                let drawn = chart
                    .draw_series(LineSeries::new(run, c.stroke_width(1)))
                    .map_err(draw_err)?;
                if !legend {
                    drawn.label(name).legend(move |(x, y)| {
                        Rectangle::new([(x, y - 6), (x + 12, y + 6)], c.filled())
                    });
                    legend = true;
                }
            }
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .label_font(
                ("sans-serif", text)
                    .into_font()
                    .color(&RGBColor(40, 40, 40)),
            )
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(228, 228, 228))
            .draw()
            .map_err(draw_err)?;
        root.present().map_err(draw_err)?;
    }
    Ok(img)
}

/// Renders the forecast plot and writes it as a PNG (e.g. `forecast.png`).
pub fn write_forecast_plot(
    path: &Path,
    truth: &[f64],
    pred: &[f64],
    title: &str,
    opts: &ChartOptions,
) -> Result<()> {
    let bytes = encode_png(&render_forecast_plot(truth, pred, title, opts)?)?;
    std::fs::write(path, bytes).map_err(|e| Error::Io {
        path: path.display().to_string(),
        msg: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(img: &RgbImage, c: [u8; 3]) -> usize {
        img.data.chunks_exact(3).filter(|p| *p == c).count()
    }

    /// Whether pixel `p` is color `c` blended over white with at least 35% coverage (the
    /// 1-px lines are anti-aliased, so few pixels carry the exact color).
    fn tinted(p: &[u8], c: [u8; 3]) -> bool {
        let k = (0..3).max_by_key(|&k| 255 - c[k]).unwrap_or(0);
        let a = f64::from(255 - p[k]) / f64::from(255 - c[k]);
        (0.35..=1.05).contains(&a)
            && (0..3).all(|j| {
                let want = 255.0 - a * f64::from(255 - c[j]);
                (f64::from(p[j]) - want).abs() <= 16.0
            })
    }

    /// Number of pixel columns holding at least one pixel tinted with color `c`.
    fn columns(img: &RgbImage, c: [u8; 3]) -> usize {
        (0..img.width)
            .filter(|&x| {
                (0..img.height).any(|y| tinted(&img.data[3 * (y * img.width + x)..][..3], c))
            })
            .count()
    }

    #[test]
    fn both_lines_and_the_legend_are_drawn_in_their_colors() {
        let truth: Vec<f64> = (0..120).map(|t| (t as f64 / 9.0).sin()).collect();
        let pred: Vec<f64> = truth.iter().map(|v| v * 0.8 + 0.05).collect();
        let img =
            render_forecast_plot(&truth, &pred, "test span", &ChartOptions::default()).unwrap();
        assert_eq!((img.width, img.height), (640, 400));
        // Each line spans the plot's ~560 px width: its color shows in most pixel columns
        // (the legend box covers only about 13).
        assert!(
            columns(&img, TRUTH_COLOR) > 450,
            "{}",
            columns(&img, TRUTH_COLOR)
        );
        assert!(columns(&img, PREDICTION_COLOR) > 450);
        // Without a prediction, its color appears nowhere (not even in the legend).
        let alone = render_forecast_plot(&truth, &[], "t", &ChartOptions::default()).unwrap();
        assert_eq!(count(&alone, PREDICTION_COLOR), 0);
        assert_eq!(columns(&alone, PREDICTION_COLOR), 0);
        assert!(columns(&alone, TRUTH_COLOR) > 450);
    }

    #[test]
    fn the_png_file_is_valid_and_of_the_requested_size() {
        let dir = std::env::temp_dir().join(format!("wgpu-rnn-fplot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("forecast.png");
        let truth = [1.0, 2.0, f64::NAN, 2.5, 3.0];
        let opts = ChartOptions {
            width: 500,
            height: 300,
        };
        write_forecast_plot(&path, &truth, &[1.1, 1.9, 2.2, 2.6, 2.9], "x", &opts).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let dec = png::Decoder::new(std::io::Cursor::new(bytes));
        let mut reader = dec.read_info().unwrap();
        let info = reader.info();
        assert_eq!((info.width, info.height), (500, 300));
        assert_eq!(info.color_type, png::ColorType::Rgb);
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let frame = reader.next_frame(&mut buf).unwrap();
        assert_eq!(frame.buffer_size(), 500 * 300 * 3);
        assert!(buf.chunks_exact(3).any(|p| p == TRUTH_COLOR));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn nothing_to_draw_or_a_bad_size_is_an_error() {
        let e = render_forecast_plot(&[f64::NAN], &[], "t", &ChartOptions::default());
        assert!(matches!(e, Err(Error::Data(_))));
        let tiny = ChartOptions {
            width: 10,
            height: 10,
        };
        let e = render_forecast_plot(&[1.0], &[1.0], "t", &tiny).unwrap_err();
        assert!(e.to_string().contains("10x10"), "{e}");
        let e = write_forecast_plot(
            Path::new("/nonexistent-dir/f.png"),
            &[1.0, 2.0],
            &[1.0, 2.0],
            "t",
            &ChartOptions::default(),
        )
        .unwrap_err();
        assert!(matches!(e, Error::Io { .. }), "{e}");
    }
}
