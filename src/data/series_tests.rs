use ndarray::array;

use super::*;

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-12 + 1e-12 * b.abs()
}

#[test]
fn the_synthetic_series_is_seeded_and_follows_its_formula() {
    let cfg = SeriesConfig::default();
    let a = synthetic_series(&cfg).unwrap();
    assert_eq!(a.len(), 1200);
    assert_eq!(a, synthetic_series(&cfg).unwrap());
    let b = synthetic_series(&SeriesConfig {
        seed: 1,
        ..cfg.clone()
    })
    .unwrap();
    assert_ne!(a, b);
    // Without noise and seasons it is the line level + trend·t exactly.
    let line = synthetic_series(&SeriesConfig {
        amplitudes: [0.0, 0.0],
        noise: 0.0,
        length: 50,
        ..cfg.clone()
    })
    .unwrap();
    for (t, v) in line.iter().enumerate() {
        assert!(close(*v, 10.0 + 0.01 * t as f64), "{t} {v}");
    }
    // The residual after removing trend and seasons has the configured spread: compare two
    // seeds' series, whose difference is pure noise plus a bounded seasonal shift.
    let quiet = synthetic_series(&SeriesConfig {
        noise: 0.0,
        ..cfg.clone()
    })
    .unwrap();
    let resid: Vec<f64> = a.iter().zip(&quiet).map(|(x, q)| x - q).collect();
    let mean = resid.iter().sum::<f64>() / resid.len() as f64;
    let sd = (resid.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / resid.len() as f64).sqrt();
    assert!((sd - 0.3).abs() < 0.03, "{sd}");
    assert!(mean.abs() < 0.03, "{mean}");
    // The first season has period 25: the noiseless series repeats it after detrending.
    let de: Vec<f64> = quiet
        .iter()
        .enumerate()
        .map(|(t, v)| v - 0.01 * t as f64)
        .collect();
    let only_first = synthetic_series(&SeriesConfig {
        amplitudes: [2.0, 0.0],
        noise: 0.0,
        trend: 0.0,
        ..cfg.clone()
    })
    .unwrap();
    assert!(close(only_first[3], only_first[28]));
    assert!(de.iter().all(|v| (v - 10.0).abs() <= 3.5 + 1e-9));
    let e = synthetic_series(&SeriesConfig {
        periods: [0.0, 5.0],
        ..cfg
    })
    .unwrap_err();
    assert!(matches!(e, Error::Config(_)), "{e}");
}

#[test]
fn csv_columns_parse_with_quotes_dollars_and_separators() {
    let text = "\u{feff}Date,\"Close/Last\", Volume ,Note\n\
                2024-01-02,\"$1,234.50\",100,\"a, b\"\n\
                2024-01-03,$99.5,200,\"say \"\"hi\"\"\"\n\
                2024-01-04,-3e2,300,x\n";
    let (v, skipped) =
        parse_csv_column(text.as_bytes(), "Close/Last", NonNumeric::Error, "p.csv").unwrap();
    assert_eq!(v, vec![1234.5, 99.5, -300.0]);
    assert_eq!(skipped, 0);
    let (vol, _) = parse_csv_column(text.as_bytes(), "Volume", NonNumeric::Error, "p").unwrap();
    assert_eq!(vol, vec![100.0, 200.0, 300.0]);
    for (cell, want) in [
        ("-$5", Some(-5.0)),
        ("12,345,678", Some(12345678.0)),
        ("1,23", None),
        ("1,234.5,6", None),
        ("--5", None),
        ("NaN", None),
        ("inf", None),
        ("", None),
        ("null", None),
    ] {
        assert_eq!(parse_number(cell), want, "{cell:?}");
    }
}

#[test]
fn a_missing_column_or_a_bad_cell_is_an_error_naming_it() {
    let text = "date,close\n1,2.5\n2,null\n3,4\n";
    let e = parse_csv_column(text.as_bytes(), "Adj Close", NonNumeric::Error, "s.csv").unwrap_err();
    assert!(matches!(e, Error::Data(_)), "{e}");
    let m = e.to_string();
    assert!(
        m.contains("s.csv: no column \"Adj Close\"") && m.contains("\"close\""),
        "{m}"
    );
    let e = parse_csv_column(text.as_bytes(), "close", NonNumeric::Error, "s.csv")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("s.csv: line 3: column \"close\" holds \"null\""),
        "{e}"
    );
    let (v, skipped) =
        parse_csv_column(text.as_bytes(), "close", NonNumeric::Skip, "s.csv").unwrap();
    assert_eq!((v, skipped), (vec![2.5, 4.0], 1));
    let short = "a,b,c\n1,2,3\n4,5\n";
    let e = parse_csv_column(short.as_bytes(), "c", NonNumeric::Error, "t")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("line 3: column \"c\" is field 3 but the row has 2 fields"),
        "{e}"
    );
}

#[test]
fn csv_from_a_file_and_a_missing_file() {
    let dir = std::env::temp_dir().join(format!("wgpu-rnn-csv-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("prices.csv");
    std::fs::write(&path, "Date,Close\n2024-01-02,10\n2024-01-03,11.25\n").unwrap();
    assert_eq!(load_csv_column(&path, "Close").unwrap(), vec![10.0, 11.25]);
    let e = load_csv_column(&dir.join("missing.csv"), "Close").unwrap_err();
    assert!(matches!(e, Error::Io { .. }), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_scaler_round_trips_and_uses_only_the_span_it_was_fitted_on() {
    let train = [2.0, 4.0, 6.0];
    let sc = MinMaxScaler::fit(&train).unwrap();
    assert_eq!(sc.transform(&train), vec![0.0, 0.5, 1.0]);
    // Later values beyond the fitted span map outside [0, 1].
    assert_eq!(sc.transform(&[8.0, 0.0]), vec![1.5, -0.5]);
    let xs = [-3.7, 2.0, 5.1, 1e3];
    let back = sc.inverse_transform(&sc.transform(&xs));
    for (a, b) in back.iter().zip(&xs) {
        assert!(close(*a, *b), "{a} {b}");
    }
    let flat = MinMaxScaler::fit(&[3.0, 3.0]).unwrap();
    assert_eq!(flat.transform(&[3.0, 4.0]), vec![0.0, 1.0]);
    assert_eq!(flat.inverse_transform(&[0.0, 1.0]), vec![3.0, 4.0]);
    assert!(MinMaxScaler::fit(&[]).is_err());
    let e = MinMaxScaler::fit(&[1.0, f64::NAN]).unwrap_err().to_string();
    assert!(e.contains("value 1 is NaN"), "{e}");
}

#[test]
fn windows_have_the_right_shapes_and_next_value_targets() {
    let s: Vec<f64> = (0..7).map(f64::from).collect();
    let (x, y) = windows(&s, 3).unwrap();
    assert_eq!(x.dim(), (4, 3, 1));
    assert_eq!(y.dim(), (4, 1));
    assert_eq!(x.slice(s![1, .., 0]).to_vec(), vec![1.0, 2.0, 3.0]);
    assert_eq!(y, array![[3.0], [4.0], [5.0], [6.0]]);
    assert!(windows(&s, 7).is_err());
    assert!(windows(&s, 0).is_err());
    let (x1, y1) = windows(&s, 6).unwrap();
    assert_eq!((x1.dim(), y1[[0, 0]]), ((1, 6, 1), 6.0));
}

#[test]
fn split_is_chronological_and_checks_its_fractions() {
    let sp = split(100, 0.7, 0.15).unwrap();
    assert_eq!(
        sp,
        Split {
            train: 0..70,
            val: 70..85,
            test: 85..100
        }
    );
    let sp = split(10, 0.8, 0.0).unwrap();
    assert_eq!((sp.train, sp.val, sp.test), (0..8, 8..8, 8..10));
    for (t, v) in [
        (0.9, 0.2),
        (-0.1, 0.1),
        (f64::NAN, 0.1),
        (0.0, 0.5),
        (0.5, 0.5),
    ] {
        let e = split(100, t, v).unwrap_err();
        assert!(matches!(e, Error::Config(_)), "{t} {v}: {e}");
    }
}

#[test]
fn errors_and_the_naive_baseline() {
    let e = errors(&[1.0, 2.0, 4.0], &[1.0, 3.0, 2.0]).unwrap();
    assert!(close(e.mse, 5.0 / 3.0) && close(e.mae, 1.0), "{e:?}");
    assert!(errors(&[1.0], &[]).is_err());
    // Series 0, 1, 3, 6, 10: windows of 2 predict 3, 6, 10 from 1, 3, 6.
    let s = [0.0, 1.0, 3.0, 6.0, 10.0];
    let (x, y) = windows(&s, 2).unwrap();
    let n = naive_errors(&x, &y).unwrap();
    assert!(
        close(n.mse, (4.0 + 9.0 + 16.0) / 3.0) && close(n.mae, 3.0),
        "{n:?}"
    );
    assert!(naive_errors(&x, &Array2::zeros((2, 1))).is_err());
}

#[test]
fn prepare_forecast_fits_the_scaler_on_the_training_span_only() {
    // A rising series: the test span lies above the training span's maximum.
    let s: Vec<f64> = (0..40).map(|t| f64::from(t) * 2.0).collect();
    let d = prepare_forecast(&s, 5, 0.5, 0.25).unwrap();
    // 35 windows: 17 train, 8 val, 10 test; train touches s[..17 + 5].
    assert_eq!(
        d.split,
        Split {
            train: 0..17,
            val: 17..25,
            test: 25..35
        }
    );
    assert_eq!(
        d.scaler,
        MinMaxScaler {
            min: 0.0,
            max: 42.0
        }
    );
    assert_eq!(d.x_train.dim(), (17, 5, 1));
    assert_eq!(d.x_val.dim(), (8, 5, 1));
    assert_eq!((d.x_test.dim(), d.y_test.dim()), ((10, 5, 1), (10, 1)));
    // Training data stays within [0, 1]; the last training target is the span's maximum.
    assert!(
        d.x_train
            .iter()
            .chain(&d.y_train)
            .all(|v| (0.0..=1.0).contains(v))
    );
    assert_eq!(d.y_train[[16, 0]], 1.0);
    assert!(d.y_test.iter().all(|&v| v > 1.0));
    // Test target j is series[first_test_target + j], back in original units.
    let first = d.first_test_target(5);
    for j in 0..10 {
        assert!(close(d.scaler.unscale(d.y_test[[j, 0]]), s[first + j]));
    }
    assert!(prepare_forecast(&s, 40, 0.5, 0.2).is_err());
}
