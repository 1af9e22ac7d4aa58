//! The video data helpers: the moving-digits generator, the Moving MNIST NPY loader and
//! writer, and (feature `render`) the rollout GIF and the loss chart.

use std::path::PathBuf;

use ndarray::{Array2, Array4, ArrayView3, Axis, s};
use wgpu_rnn::Error;
use wgpu_rnn::data::moving_digits::{self, DigitMotion, MovingDigits, MovingDigitsConfig};
use wgpu_rnn::data::npy;

fn tmp(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("video_data_{name}"))
}

/// Ink-weighted centre (row, column) of one `[H, W, C]` frame.
fn centroid(frame: ArrayView3<f32>) -> (f32, f32) {
    let (mut m, mut sy, mut sx) = (0.0, 0.0, 0.0);
    for ((y, x, _), &v) in frame.indexed_iter() {
        m += v;
        sy += v * y as f32;
        sx += v * x as f32;
    }
    (sy / m, sx / m)
}

// ---------------------------------------------------------------- generator

#[test]
fn same_seed_same_data_different_seed_different_data() {
    let cfg = MovingDigitsConfig {
        seed: 7,
        ..Default::default()
    };
    let a = moving_digits::generate(cfg.clone(), 3).unwrap();
    let b = moving_digits::generate(cfg.clone(), 3).unwrap();
    assert_eq!(a, b);
    let c = moving_digits::generate(
        MovingDigitsConfig {
            seed: 8,
            ..cfg.clone()
        },
        3,
    )
    .unwrap();
    let diff = (&a - &c).mapv(f32::abs).sum();
    assert!(
        diff > 100.0,
        "seeds 7 and 8 gave nearly the same data: {diff}"
    );
    // Sequences are random-access: sequence(i) is row i of a batch, whatever the start.
    let g = MovingDigits::new(cfg).unwrap();
    assert_eq!(g.sequence(2).unwrap(), a.index_axis(Axis(0), 2));
    assert_eq!(
        g.batch(1, 2).unwrap().index_axis(Axis(0), 0),
        a.index_axis(Axis(0), 1)
    );
    // Neighbouring sequences are not copies of each other.
    assert!(
        (&a.index_axis(Axis(0), 0) - &a.index_axis(Axis(0), 1))
            .mapv(f32::abs)
            .sum()
            > 100.0
    );
}

#[test]
fn shape_and_values_in_unit_range() {
    let x = moving_digits::generate(MovingDigitsConfig::default(), 4).unwrap();
    assert_eq!(x.dim(), (4, 20, 64, 64, 1));
    assert!(x.iter().all(|v| (0.0..=1.0).contains(v)));
    // Stroke centres are full ink, not a faint blur.
    assert!(x.iter().cloned().fold(0.0, f32::max) > 0.99);
}

#[test]
fn per_frame_mass_is_plausible() {
    let x = moving_digits::generate(
        MovingDigitsConfig {
            seed: 11,
            ..Default::default()
        },
        8,
    )
    .unwrap();
    for (i, seq) in x.outer_iter().enumerate() {
        for (t, frame) in seq.outer_iter().enumerate() {
            let mean = frame.mean().unwrap();
            // One 22x30 glyph is ~4% of a 64x64 frame; two overlapping ones at most ~9%.
            assert!(
                (0.01..0.2).contains(&mean),
                "sequence {i} frame {t}: mean {mean}"
            );
            let lit = frame.iter().filter(|&&v| v > 0.5).count();
            assert!(lit > 40, "sequence {i} frame {t}: only {lit} bright pixels");
        }
    }
}

#[test]
fn digits_move_and_stay_whole_inside_the_frame() {
    let cfg = MovingDigitsConfig {
        min_digits: 1,
        max_digits: 1,
        seed: 5,
        ..Default::default()
    };
    let g = MovingDigits::new(cfg.clone()).unwrap();
    for i in 0..6 {
        let (frames, tracks) = g.sequence_with_tracks(i).unwrap();
        assert_eq!(tracks.len(), 1);
        let tr = &tracks[0];
        for p in &tr.positions {
            assert!(
                p[0] + tr.glyph_dims[0] <= 64 && p[1] + tr.glyph_dims[1] <= 64,
                "{p:?}"
            );
        }
        // A digit drawn whole has the same ink in every frame; clipping would lose some.
        let m0 = frames.index_axis(Axis(0), 0).sum();
        let mut path = 0.0;
        let mut prev = centroid(frames.index_axis(Axis(0), 0));
        for t in 1..cfg.frames {
            let f = frames.index_axis(Axis(0), t);
            assert!(
                (f.sum() - m0).abs() < 1e-3 * m0,
                "sequence {i} frame {t} lost ink"
            );
            let c = centroid(f);
            path += ((c.0 - prev.0).powi(2) + (c.1 - prev.1).powi(2)).sqrt();
            prev = c;
        }
        // Speed is at least 1 px/frame, so 19 steps cover well over 10 px (rounding to whole
        // pixels can shave a little off each step).
        assert!(path > 12.0, "sequence {i}: the digit moved only {path} px");
    }
}

#[test]
fn digit_near_a_border_bounces_back() {
    let cfg = MovingDigitsConfig {
        frames: 8,
        ..Default::default()
    };
    let gdim = moving_digits::glyph(3, cfg.glyph_scale, 0.0).unwrap().dim();
    let lim_x = (64 - gdim.1) as f32;
    let motions = [DigitMotion {
        digit: 3,
        position: [0.5, lim_x - 2.0],
        velocity: [-2.0, 3.0],
        slant: 0.0,
        thickness: 1.0,
    }];
    let (frames, tracks) = moving_digits::render_motions(&cfg, &motions).unwrap();
    let xs: Vec<f32> = frames.outer_iter().map(|f| centroid(f).1).collect();
    let ys: Vec<f32> = frames.outer_iter().map(|f| centroid(f).0).collect();
    // Right wall: x rises for one step, then falls for the rest.
    assert!(xs[1] > xs[0], "{xs:?}");
    assert!(xs.windows(2).skip(1).all(|w| w[1] < w[0]), "{xs:?}");
    // Top wall: y hits 0 right away and comes back down the frame.
    assert!(ys[7] > ys[0] + 8.0, "{ys:?}");
    let v = &tracks[0].velocities;
    assert_eq!(v[0], [-2.0, 3.0]);
    assert!(v[7][0] > 0.0 && v[7][1] < 0.0, "{v:?}");
    let p = &tracks[0].positions;
    assert!(p.iter().all(|p| p[1] as f32 <= lim_x), "{p:?}");
}

#[test]
fn bad_configs_are_errors() {
    let small = MovingDigitsConfig {
        frame_size: 16,
        ..Default::default()
    };
    match MovingDigits::new(small) {
        Err(Error::Config(m)) => assert!(m.contains("16x16"), "{m}"),
        other => panic!("expected a Config error, got {other:?}"),
    }
    let range = MovingDigitsConfig {
        min_digits: 3,
        max_digits: 2,
        ..Default::default()
    };
    assert!(matches!(MovingDigits::new(range), Err(Error::Config(_))));
    let speed = MovingDigitsConfig {
        max_speed: f32::NAN,
        ..Default::default()
    };
    assert!(matches!(MovingDigits::new(speed), Err(Error::Config(_))));
    let out_of_frame = [DigitMotion {
        digit: 1,
        position: [60.0, 0.0],
        velocity: [0.0, 0.0],
        slant: 0.0,
        thickness: 1.0,
    }];
    assert!(moving_digits::render_motions(&MovingDigitsConfig::default(), &out_of_frame).is_err());
}

#[test]
fn downscale_averages_blocks() {
    let x = moving_digits::generate(MovingDigitsConfig::default(), 2).unwrap();
    let y = moving_digits::downscale(x.view(), 4).unwrap();
    assert_eq!(y.dim(), (2, 20, 16, 16, 1));
    for &(n, t, r, c) in &[(0, 0, 3, 5), (1, 19, 10, 2), (1, 7, 15, 15)] {
        let block = x.slice(s![n, t, r * 4..r * 4 + 4, c * 4..c * 4 + 4, 0]);
        assert!((y[[n, t, r, c, 0]] - block.sum() / 16.0).abs() < 1e-6);
    }
    // A box filter keeps the total ink (scaled by the block area).
    assert!((y.sum() * 16.0 - x.sum()).abs() < 1e-3 * x.sum());
    assert!(matches!(
        moving_digits::downscale(x.view(), 3),
        Err(Error::Shape(_))
    ));
    assert!(matches!(
        moving_digits::downscale(x.view(), 0),
        Err(Error::Shape(_))
    ));
}

// ---------------------------------------------------------------- NPY

fn npy_v1(header_dict: &str, data: &[u8]) -> Vec<u8> {
    let mut h = header_dict.to_string();
    while !(10 + h.len() + 1).is_multiple_of(64) {
        h.push(' ');
    }
    h.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(h.len() as u16).to_le_bytes());
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(data);
    out
}

#[test]
fn npy_written_file_loads_as_n_t_h_w_1() {
    let (t, n, h, w) = (3, 4, 5, 6);
    let a = Array4::<u8>::from_shape_fn((t, n, h, w), |(t, n, y, x)| {
        ((t * 53 + n * 31 + y * 7 + x * 3) % 256) as u8
    });
    let path = tmp("roundtrip.npy");
    npy::write_u8(&path, a.view()).unwrap();
    let x = npy::load_moving_mnist(&path, None).unwrap();
    assert_eq!(x.dim(), (n, t, h, w, 1));
    for ((ni, ti, y, xx, _), &v) in x.indexed_iter() {
        assert_eq!(v, f32::from(a[[ti, ni, y, xx]]) / 255.0);
    }
    let first2 = npy::load_moving_mnist(&path, Some(2)).unwrap();
    assert_eq!(first2.dim(), (2, t, h, w, 1));
    assert_eq!(first2, x.slice(s![..2, .., .., .., ..]));
    assert_eq!(npy::load_moving_mnist(&path, Some(99)).unwrap(), x);
    // The generic reader sees the file exactly as written.
    assert_eq!(npy::read_u8(&path).unwrap(), a.into_dyn());
}

#[test]
fn npy_hand_built_header_v1_and_v2() {
    // (T=2, N=1, H=2, W=2): frame t=0 then t=1.
    let data = [0u8, 255, 51, 102, 1, 2, 3, 4];
    let dict = "{'descr': '|u1', 'fortran_order': False, 'shape': (2, 1, 2, 2), }";
    let v1 = npy_v1(dict, &data);
    let expect = |x: &ndarray::Array5<f32>| {
        assert_eq!(x.dim(), (1, 2, 2, 2, 1));
        assert_eq!(x[[0, 0, 0, 0, 0]], 0.0);
        assert_eq!(x[[0, 0, 0, 1, 0]], 1.0);
        assert_eq!(x[[0, 0, 1, 0, 0]], 0.2);
        assert_eq!(x[[0, 0, 1, 1, 0]], 0.4);
        assert_eq!(x[[0, 1, 1, 1, 0]], 4.0 / 255.0);
    };
    expect(&npy::moving_mnist_from_bytes(&v1, None).unwrap());
    let h = npy::parse_header(&v1).unwrap();
    assert_eq!(
        (h.version, h.shape.clone(), h.fortran_order),
        ((1, 0), vec![2, 1, 2, 2], false)
    );

    // Version 2.0 stores a u32 header length; double quotes are valid Python too.
    let text = "{\"descr\": \"<u1\", \"fortran_order\": False, \"shape\": (2, 1, 2, 2)}\n";
    let mut v2 = b"\x93NUMPY\x02\x00".to_vec();
    v2.extend_from_slice(&(text.len() as u32).to_le_bytes());
    v2.extend_from_slice(text.as_bytes());
    v2.extend_from_slice(&data);
    expect(&npy::moving_mnist_from_bytes(&v2, None).unwrap());
    // The same bytes from disk go through the seeking reader.
    let path = tmp("v2.npy");
    std::fs::write(&path, &v2).unwrap();
    expect(&npy::load_moving_mnist(&path, Some(1)).unwrap());
}

fn data_err(r: wgpu_rnn::Result<ndarray::Array5<f32>>) -> String {
    match r {
        Err(Error::Data(m)) => m,
        other => panic!("expected a Data error, got {other:?}"),
    }
}

#[test]
fn npy_bad_files_give_errors_naming_the_problem() {
    let ok_dict = "{'descr': '|u1', 'fortran_order': False, 'shape': (2, 1, 2, 2), }";
    let data = [0u8; 8];
    let mut bad_magic = npy_v1(ok_dict, &data);
    bad_magic[1] = b'X';
    assert!(data_err(npy::moving_mnist_from_bytes(&bad_magic, None)).contains("magic"));

    let f4 = npy_v1(
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 1, 2, 2), }",
        &data,
    );
    let m = data_err(npy::moving_mnist_from_bytes(&f4, None));
    assert!(m.contains("dtype") && m.contains("<f4"), "{m}");

    let rank3 = npy_v1(
        "{'descr': '|u1', 'fortran_order': False, 'shape': (2, 2, 2), }",
        &data,
    );
    let m = data_err(npy::moving_mnist_from_bytes(&rank3, None));
    assert!(m.contains("rank 3") && m.contains("[2, 2, 2]"), "{m}");

    let fortran = npy_v1(
        "{'descr': '|u1', 'fortran_order': True, 'shape': (2, 1, 2, 2), }",
        &data,
    );
    assert!(data_err(npy::moving_mnist_from_bytes(&fortran, None)).contains("fortran_order"));

    let full = npy_v1(ok_dict, &data);
    let m = data_err(npy::moving_mnist_from_bytes(&full[..full.len() - 1], None));
    assert!(m.contains("truncated") && m.contains("8 bytes"), "{m}");
    assert!(data_err(npy::moving_mnist_from_bytes(&full[..20], None)).contains("truncated"));

    let version = [b"\x93NUMPY\x07\x00".as_slice(), &full[8..]].concat();
    assert!(data_err(npy::moving_mnist_from_bytes(&version, None)).contains("version 7.0"));

    let no_shape = npy_v1("{'descr': '|u1', 'fortran_order': False}", &data);
    assert!(data_err(npy::moving_mnist_from_bytes(&no_shape, None)).contains("'shape'"));

    match npy::load_moving_mnist(&tmp("does_not_exist.npy"), None) {
        Err(Error::Io { path, .. }) => assert!(path.contains("does_not_exist")),
        other => panic!("expected an Io error, got {other:?}"),
    }
}

// ---------------------------------------------------------------- rendering

#[cfg(feature = "render")]
mod render {
    use super::*;
    use wgpu_rnn::data::chart::{self, ChartOptions, HELD_OUT_COLOR, TRAIN_COLOR};
    use wgpu_rnn::data::render::{self, GifOptions, NO_PREDICTION_GRAY, SEPARATOR_GRAY};

    /// Decodes a GIF to RGBA frames; returns (width, height, frames).
    fn decode_gif(path: &std::path::Path) -> (usize, usize, Vec<Vec<u8>>) {
        let mut o = gif::DecodeOptions::new();
        o.set_color_output(gif::ColorOutput::RGBA);
        let mut d = o.read_info(std::fs::File::open(path).unwrap()).unwrap();
        let (w, h) = (d.width() as usize, d.height() as usize);
        let mut frames = Vec::new();
        while let Some(f) = d.read_next_frame().unwrap() {
            assert_eq!((f.width as usize, f.height as usize), (w, h));
            frames.push(f.buffer.to_vec());
        }
        (w, h, frames)
    }

    #[test]
    fn rollout_gif_decodes_with_truth_above_prediction() {
        let (t, h, w) = (6, 8, 10);
        // Truth: frame t has gray level 0.1 * t everywhere except a bright pixel.
        let truth = Array4::from_shape_fn((t, h, w, 1), |(ti, y, x, _)| {
            if (y, x) == (2, 3) {
                1.0
            } else {
                0.1 * ti as f32
            }
        });
        let pred = Array4::from_shape_fn((4, h, w, 1), |(ti, _, x, _)| x as f32 / 9.0 + ti as f32);
        let opts = GifOptions {
            scale: 3,
            separator: 2,
            ..Default::default()
        };
        let path = tmp("rollout.gif");
        render::write_rollout_gif(&path, truth.view(), pred.view(), &opts).unwrap();
        let (gw, gh, frames) = decode_gif(&path);
        assert_eq!((gw, gh, frames.len()), (w * 3, 2 * h * 3 + 2, t));
        let px = |f: usize, y: usize, x: usize| frames[f][(y * gw + x) * 4];
        for ti in 0..t {
            assert_eq!(
                px(ti, 0, 0) as f32,
                (0.1 * ti as f32 * 255.0).round(),
                "frame {ti}"
            );
            // The bright pixel, upscaled to a 3x3 block.
            assert_eq!(px(ti, 2 * 3 + 2, 3 * 3), 255);
            assert_eq!(px(ti, h * 3, 5), SEPARATOR_GRAY);
            assert_eq!(px(ti, h * 3 + 1, 29), SEPARATOR_GRAY);
            let bottom = h * 3 + 2;
            if ti < 2 {
                assert_eq!(px(ti, bottom + 5, 5), NO_PREDICTION_GRAY);
            } else if ti == 2 {
                // First prediction frame: a left-to-right ramp.
                assert_eq!(px(ti, bottom, 0), 0);
                // Output column 13 is source column 13 / 3 = 4, gray 4/9.
                assert_eq!(
                    px(ti, bottom + 20, 13),
                    (4.0f32 / 9.0 * 255.0).round() as u8
                );
                assert_eq!(px(ti, gh - 1, gw - 1), 255);
            } else {
                // Later prediction frames are > 1 everywhere: clamped to white.
                assert_eq!(px(ti, gh - 1, 0), 255);
            }
        }
        let wrong = Array4::<f32>::zeros((2, h, w + 1, 1));
        assert!(matches!(
            render::encode_rollout_gif(truth.view(), wrong.view(), &opts),
            Err(Error::Shape(_))
        ));
        let longer = Array4::<f32>::zeros((t + 1, h, w, 1));
        assert!(render::encode_rollout_gif(truth.view(), longer.view(), &opts).is_err());
    }

    /// Decodes a PNG to (width, height, RGB bytes).
    fn decode_png(path: &std::path::Path) -> (usize, usize, Vec<u8>) {
        let file = std::io::BufReader::new(std::fs::File::open(path).unwrap());
        let mut r = png::Decoder::new(file).read_info().unwrap();
        let mut buf = vec![0; r.output_buffer_size().unwrap()];
        let info = r.next_frame(&mut buf).unwrap();
        assert_eq!(info.color_type, png::ColorType::Rgb);
        buf.truncate(info.buffer_size());
        (info.width as usize, info.height as usize, buf)
    }

    /// Rows of the pixels of `color`, split into the left and right thirds of the image.
    fn rows_of(color: [u8; 3], w: usize, rgb: &[u8]) -> (Vec<usize>, Vec<usize>, usize) {
        let (mut left, mut right, mut all) = (vec![], vec![], 0);
        for (i, p) in rgb.chunks_exact(3).enumerate() {
            if p == color {
                all += 1;
                let (y, x) = (i / w, i % w);
                if x < w / 3 {
                    left.push(y);
                } else if x >= 2 * w / 3 {
                    right.push(y);
                }
            }
        }
        (left, right, all)
    }

    fn mean(v: &[usize]) -> f32 {
        v.iter().sum::<usize>() as f32 / v.len().max(1) as f32
    }

    #[test]
    fn loss_chart_png_has_size_and_both_series() {
        // Train falls, held-out rises: the classic overfitting picture.
        let train: Vec<f32> = (0..25).map(|e| 1.0 / (1.0 + e as f32)).collect();
        let held: Vec<f32> = (0..25).map(|e| 0.3 + 0.01 * e as f32).collect();
        let path = tmp("loss.png");
        chart::write_loss_chart(&path, &train, &held, &ChartOptions::default()).unwrap();
        let (w, h, rgb) = decode_png(&path);
        assert_eq!((w, h), (640, 400));
        let (tl, tr, tn) = rows_of(TRAIN_COLOR, w, &rgb);
        let (hl, hr, hn) = rows_of(HELD_OUT_COLOR, w, &rgb);
        // Far more than a legend box's worth of pixels: the lines are drawn.
        assert!(tn > 1000 && hn > 1000, "train {tn}, held-out {hn} pixels");
        // Image rows grow downwards: a falling series sits higher (smaller row) on the left.
        assert!(
            mean(&tl) + 50.0 < mean(&tr),
            "{} vs {}",
            mean(&tl),
            mean(&tr)
        );
        assert!(
            mean(&hl) > mean(&hr) + 20.0,
            "{} vs {}",
            mean(&hl),
            mean(&hr)
        );
        // Axes are drawn in black.
        assert!(rgb.chunks_exact(3).filter(|p| *p == [0, 0, 0]).count() > 500);

        // Other sizes, a single epoch, a gap, and a missing series all still render.
        let small = ChartOptions {
            width: 300,
            height: 200,
        };
        let img = chart::render_loss_chart(&[0.5, f32::NAN, 0.2], &[], &small).unwrap();
        assert_eq!(
            (img.width, img.height, img.data.len()),
            (300, 200, 300 * 200 * 3)
        );
        chart::render_loss_chart(&[0.5], &[0.7], &small).unwrap();
        chart::render_loss_chart(&[0.5, 0.5, 0.5], &[0.5], &small).unwrap();
        assert!(matches!(
            chart::render_loss_chart(&[f32::NAN], &[], &small),
            Err(Error::Data(_))
        ));
        let tiny = ChartOptions {
            width: 10,
            height: 10,
        };
        assert!(matches!(
            chart::render_loss_chart(&train, &held, &tiny),
            Err(Error::Config(_))
        ));
    }
}

/// Keeps `Array2` imported for readers comparing glyphs; also checks the public glyph API.
#[test]
fn glyphs_are_distinct_per_digit() {
    let gs: Vec<Array2<f32>> = (0..10)
        .map(|d| moving_digits::glyph(d, 4.0, 0.0).unwrap())
        .collect();
    for i in 0..10 {
        for j in i + 1..10 {
            let d = (&gs[i] - &gs[j]).mapv(f32::abs).sum();
            assert!(d > 20.0, "digits {i} and {j} look alike: {d}");
        }
    }
}
