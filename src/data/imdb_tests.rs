//! The IMDB loader on small `imdb.npz` files the tests write: object arrays as numpy
//! pickles them (see `pickle_tests.rs` for the byte layout), int64 labels through
//! `ndarray-npy`, zipped stored (as `np.savez` does) or deflated (`np.savez_compressed`).

use std::io::Write;

use ndarray::Array1;
use ndarray_npy::WriteNpyExt;
use zip::CompressionMethod;
use zip::write::SimpleFileOptions;

use super::*;
use crate::data::pickle::tests::{Flavor, numpy_object_pickle};

/// A version 1.0 `.npy` header as numpy writes it: the dict, spaces, a newline, the whole
/// prefix padded to a multiple of 64 bytes.
/// Keras' options without the shuffle, so expectations follow the file's order.
const FILE_ORDER: ImdbOptions = ImdbOptions {
    num_words: None,
    skip_top: 0,
    maxlen: None,
    start_char: Some(1),
    oov_char: Some(2),
    index_from: 3,
    seed: None,
};

fn npy_header(dict: &str) -> Vec<u8> {
    let mut h = dict.to_string();
    while !(10 + h.len() + 1).is_multiple_of(64) {
        h.push(' ');
    }
    h.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend((h.len() as u16).to_le_bytes());
    out.extend(h.as_bytes());
    out
}

fn object_npy(rows: &[Vec<i64>], flavor: Flavor) -> Vec<u8> {
    let mut out = npy_header(&format!(
        "{{'descr': '|O', 'fortran_order': False, 'shape': ({},), }}",
        rows.len()
    ));
    out.extend(numpy_object_pickle(rows, flavor));
    out
}

fn labels_npy(y: &[i64]) -> Vec<u8> {
    let mut out = Vec::new();
    Array1::from(y.to_vec()).write_npy(&mut out).unwrap();
    out
}

fn npz(members: &[(&str, Vec<u8>)], method: CompressionMethod) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = SimpleFileOptions::default().compression_method(method);
    for (name, bytes) in members {
        w.start_file(*name, opts).unwrap();
        w.write_all(bytes).unwrap();
    }
    w.finish().unwrap().into_inner()
}

/// Raw word ranks as stored in the file (Keras adds `index_from` and the start token).
fn train_rows() -> Vec<Vec<i64>> {
    vec![vec![11, 19, 13], vec![1, 2, 3, 4, 5, 6], vec![40]]
}

fn test_rows() -> Vec<Vec<i64>> {
    vec![vec![7, 7], vec![3, 1000]]
}

fn imdb_npz(flavor: Flavor, method: CompressionMethod) -> Vec<u8> {
    npz(
        &[
            ("x_train.npy", object_npy(&train_rows(), flavor)),
            ("y_train.npy", labels_npy(&[1, 0, 1])),
            ("x_test.npy", object_npy(&test_rows(), flavor)),
            ("y_test.npy", labels_npy(&[0, 1])),
        ],
        method,
    )
}

#[test]
fn default_options_add_start_and_offset_and_oov_the_largest_id_like_keras() {
    for flavor in [Flavor::Py2Proto2, Flavor::Proto3, Flavor::Proto4] {
        for method in [CompressionMethod::Stored, CompressionMethod::Deflated] {
            let d = imdb_from_bytes(&imdb_npz(flavor, method), &FILE_ORDER).unwrap();
            // [1] + [w + 3]; num_words = max id (1003), and ids >= num_words become 2.
            assert_eq!(
                d.x_train,
                vec![vec![1, 14, 22, 16], vec![1, 4, 5, 6, 7, 8, 9], vec![1, 43]],
                "{flavor:?} {method:?}"
            );
            assert_eq!(d.x_test, vec![vec![1, 10, 10], vec![1, 6, 2]]);
            assert_eq!(d.y_train, vec![1, 0, 1]);
            assert_eq!(d.y_test, vec![0, 1]);
        }
    }
}

#[test]
fn num_words_maxlen_skip_top_and_no_oov_follow_keras() {
    let bytes = imdb_npz(Flavor::Proto3, CompressionMethod::Stored);
    let o = ImdbOptions {
        num_words: Some(10),
        maxlen: Some(5),
        ..FILE_ORDER
    };
    let d = imdb_from_bytes(&bytes, &o).unwrap();
    // Lengths with the start token: 4, 7, 2 | 3, 3; maxlen keeps len < 5.
    assert_eq!(d.x_train, vec![vec![1, 2, 2, 2], vec![1, 2]]);
    assert_eq!(d.y_train, vec![1, 1]);
    assert_eq!(d.x_test, vec![vec![1, 2, 2], vec![1, 6, 2]]);
    let o = ImdbOptions {
        num_words: Some(15),
        skip_top: 5,
        oov_char: None,
        start_char: None,
        index_from: 0,
        ..FILE_ORDER
    };
    let d = imdb_from_bytes(&bytes, &o).unwrap();
    assert_eq!(d.x_train, vec![vec![11, 13], vec![5, 6], vec![]]);
    assert_eq!(d.x_test, vec![vec![7, 7], vec![]]);
    let e = imdb_from_bytes(
        &bytes,
        &ImdbOptions {
            maxlen: Some(2),
            ..FILE_ORDER
        },
    )
    .unwrap_err();
    assert!(matches!(e, Error::Config(_)), "{e}");
    assert!(e.to_string().contains("leaves 0 train"), "{e}");
}

#[test]
fn a_file_on_disk_loads_and_a_directory_is_refused() {
    let dir = std::env::temp_dir().join(format!("wgpu-rnn-imdb-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("imdb.npz");
    std::fs::write(&path, imdb_npz(Flavor::Proto4, CompressionMethod::Deflated)).unwrap();
    let d = load_imdb(&path, &FILE_ORDER).unwrap();
    assert_eq!(d.x_train.len(), 3);
    assert_eq!(d.x_test[0], vec![1, 10, 10]);
    let e = load_imdb(&dir, &FILE_ORDER).unwrap_err();
    assert!(e.to_string().contains("is a directory"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn malformed_files_are_typed_errors_naming_the_member() {
    let o = ImdbOptions::default();
    let e = imdb_from_bytes(b"not a zip at all", &o).unwrap_err();
    assert!(e.to_string().contains("not a readable npz"), "{e}");

    let x = || object_npy(&train_rows(), Flavor::Proto3);
    let missing = npz(
        &[
            ("x_train.npy", x()),
            ("y_train.npy", labels_npy(&[1, 0, 1])),
        ],
        CompressionMethod::Stored,
    );
    let e = imdb_from_bytes(&missing, &o).unwrap_err().to_string();
    assert!(e.contains("no member x_test.npy"), "{e}");

    let short_y = npz(
        &[
            ("x_train.npy", x()),
            ("y_train.npy", labels_npy(&[1, 0])),
            ("x_test.npy", x()),
            ("y_test.npy", labels_npy(&[1, 0, 1])),
        ],
        CompressionMethod::Stored,
    );
    let e = imdb_from_bytes(&short_y, &o).unwrap_err().to_string();
    assert!(
        e.contains("x_train has 3 reviews but y_train has 2 labels"),
        "{e}"
    );

    // Labels where the reviews should be.
    let swapped = npz(
        &[
            ("x_train.npy", labels_npy(&[1, 0, 1])),
            ("y_train.npy", labels_npy(&[1, 0, 1])),
            ("x_test.npy", x()),
            ("y_test.npy", labels_npy(&[1, 0, 1])),
        ],
        CompressionMethod::Stored,
    );
    let e = imdb_from_bytes(&swapped, &o).unwrap_err().to_string();
    assert!(
        e.contains("<bytes>:x_train: dtype <i8 is not object"),
        "{e}"
    );

    // A corrupt pickle inside x_test.
    let mut bad = object_npy(&test_rows(), Flavor::Proto3);
    let n = bad.len();
    bad.truncate(n - 5);
    let cut = npz(
        &[
            ("x_train.npy", x()),
            ("y_train.npy", labels_npy(&[1, 0, 1])),
            ("x_test.npy", bad),
            ("y_test.npy", labels_npy(&[0, 1])),
        ],
        CompressionMethod::Deflated,
    );
    let e = imdb_from_bytes(&cut, &o).unwrap_err().to_string();
    assert!(e.contains("<bytes>:x_test: pickle at byte"), "{e}");

    let neg = npz(
        &[
            ("x_train.npy", object_npy(&[vec![4, -9]], Flavor::Proto3)),
            ("y_train.npy", labels_npy(&[1])),
            ("x_test.npy", x()),
            ("y_test.npy", labels_npy(&[1, 0, 1])),
        ],
        CompressionMethod::Stored,
    );
    let e = imdb_from_bytes(&neg, &o).unwrap_err().to_string();
    assert!(e.contains("x_train[0][1] = -9 is not a word rank"), "{e}");
}

#[test]
fn integer_labels_decode_in_every_width_and_byte_order() {
    let hdr = |d: &str, n: usize| {
        npy_header(&format!(
            "{{'descr': '{d}', 'fortran_order': False, 'shape': ({n},), }}"
        ))
    };
    let mut be = hdr(">i4", 3);
    be.extend([0, 0, 0, 1, 0xff, 0xff, 0xff, 0xfe, 0, 1, 0, 0]);
    assert_eq!(decode_ints(&be, "y").unwrap(), vec![1, -2, 65536]);
    let mut u1 = hdr("|u1", 2);
    u1.extend([0, 255]);
    assert_eq!(decode_ints(&u1, "y").unwrap(), vec![0, 255]);
    let mut b1 = hdr("|b1", 2);
    b1.extend([1, 0]);
    assert_eq!(decode_ints(&b1, "y").unwrap(), vec![1, 0]);
    let mut i2 = hdr("<i2", 1);
    i2.extend((-300i16).to_le_bytes());
    assert_eq!(decode_ints(&i2, "y").unwrap(), vec![-300]);
    let mut f = hdr("<f8", 1);
    f.extend(1.0f64.to_le_bytes());
    let e = decode_ints(&f, "y").unwrap_err().to_string();
    assert!(e.contains("dtype <f8 is not an integer"), "{e}");
    let mut short = hdr("<i8", 2);
    short.extend([0; 9]);
    let e = decode_ints(&short, "y").unwrap_err().to_string();
    assert!(e.contains("needs 16 bytes, 9 present"), "{e}");
}

#[test]
fn files_numpy_itself_wrote_load_like_keras() {
    // tests/data/imdb_numpy_*.npz: np.savez / np.savez_compressed under numpy 2.4.6
    // (scripts/make_imdb_fixture.py), object arrays pickled with protocol 4.
    let mut long: Vec<u32> = vec![1];
    long.extend((1..300).step_by(7).map(|w| w + 3));
    long.push(2); // 88586 + 3 is the largest id, so num_words = None maps it to OOV.
    for name in ["imdb_numpy_savez.npz", "imdb_numpy_compressed.npz"] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data")
            .join(name);
        let d = load_imdb(&path, &FILE_ORDER).unwrap();
        assert_eq!(
            d.x_train,
            vec![
                vec![1, 14, 22, 16],
                vec![1, 4, 5, 6, 7, 8, 9],
                vec![1, 43],
                long.clone()
            ],
            "{name}"
        );
        assert_eq!(d.y_train, vec![1, 0, 1, 0]);
        assert_eq!(d.x_test, vec![vec![1, 10, 10], vec![1, 6, 1003], vec![1]]);
        assert_eq!(d.y_test, vec![0, 1, 1]);
        let o = ImdbOptions {
            num_words: Some(20),
            maxlen: Some(10),
            ..FILE_ORDER
        };
        let d = load_imdb(&path, &o).unwrap();
        assert_eq!(
            d.x_train,
            vec![vec![1, 14, 2, 16], vec![1, 4, 5, 6, 7, 8, 9], vec![1, 2]]
        );
        assert_eq!(d.y_train, vec![1, 0, 1]);
        assert_eq!(d.x_test, vec![vec![1, 10, 10], vec![1, 6, 2], vec![1]]);
    }
}

#[test]
fn the_default_seed_shuffles_in_keras_order() {
    // numpy 2.4.6: r = np.random.RandomState(113); r.shuffle(np.arange(4)) -> [3, 2, 0, 1],
    // then r.shuffle(np.arange(3)) -> [1, 0, 2], as keras.datasets.imdb.load_data does.
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/imdb_numpy_savez.npz");
    let plain = load_imdb(&path, &FILE_ORDER).unwrap();
    let keras = load_imdb(&path, &ImdbOptions::default()).unwrap();
    let pick = |v: &[Vec<u32>], p: &[usize]| -> Vec<Vec<u32>> {
        p.iter().map(|&i| v[i].clone()).collect()
    };
    assert_eq!(keras.x_train, pick(&plain.x_train, &[3, 2, 0, 1]));
    assert_eq!(keras.y_train, vec![0, 1, 1, 0]);
    assert_eq!(keras.x_test, pick(&plain.x_test, &[1, 0, 2]));
    assert_eq!(keras.y_test, vec![1, 0, 1]);
    // Another seed, another order (numpy: RandomState(2) shuffles arange(4) to [2, 3, 1, 0]).
    let other = ImdbOptions {
        seed: Some(2),
        ..ImdbOptions::default()
    };
    let d = load_imdb(&path, &other).unwrap();
    assert_eq!(d.x_train, pick(&plain.x_train, &[2, 3, 1, 0]));
}
