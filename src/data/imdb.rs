//! Keras' IMDB file (`imdb.npz`, what `keras.datasets.imdb.load_data` downloads), read
//! without Python.
//!
//! The file is a zip (`np.savez`, stored or deflated) of four `.npy` members: `x_train` and
//! `x_test` are 1-D `object` arrays whose elements are Python lists of word ranks (numpy
//! stores such an array as a pickle after the `.npy` header; see the `pickle` module), and
//! `y_train`, `y_test` are integer arrays of 0/1 labels. [`load_imdb`] then applies Keras'
//! `load_data` options the way Keras does: a start token and an `index_from` offset, a
//! `maxlen` filter, and `num_words`/`skip_top` with the out-of-vocabulary id.
//!
//! The file keeps the reviews grouped by label; like Keras, the loader shuffles each set
//! with numpy's legacy `RandomState(seed)` (MT19937; `seed = 113` by default), so the
//! reviews come in Keras' own order and a prefix of either set holds both classes.

use std::io::{Cursor, Read, Seek};
use std::path::Path;

use super::mt19937::Mt19937;
use super::{npy, pickle};
use crate::error::{Error, Result};
use crate::limits;

/// `keras.datasets.imdb.load_data` options (same names and defaults).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImdbOptions {
    /// Keep ids below this; others become `oov_char` (or are dropped when that is `None`).
    /// `None`: the largest id in the data, which (as in Keras) maps that one id to OOV.
    pub num_words: Option<usize>,
    /// Ids below this become `oov_char` too (Keras' `skip_top`, default 0).
    pub skip_top: usize,
    /// Drop reviews whose length (start token included) is `maxlen` or more, as Keras'
    /// `remove_long_seq` does (it keeps `len < maxlen`).
    pub maxlen: Option<usize>,
    /// Token put first in every review (default `Some(1)`).
    pub start_char: Option<u32>,
    /// Token for ids out of range (default `Some(2)`).
    pub oov_char: Option<u32>,
    /// Added to every word rank in the file (default 3).
    pub index_from: u32,
    /// Seed of Keras' shuffle (default `Some(113)`, Keras' default); `None` keeps the
    /// file's order.
    pub seed: Option<u32>,
}

impl Default for ImdbOptions {
    fn default() -> Self {
        Self {
            num_words: None,
            skip_top: 0,
            maxlen: None,
            start_char: Some(1),
            oov_char: Some(2),
            index_from: 3,
            seed: Some(113),
        }
    }
}

/// The four arrays of `imdb.npz` after the options are applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Imdb {
    /// Training reviews as token ids (unpadded).
    pub x_train: Vec<Vec<u32>>,
    /// Training labels (0 negative, 1 positive).
    pub y_train: Vec<i64>,
    /// Test reviews.
    pub x_test: Vec<Vec<u32>>,
    /// Test labels.
    pub y_test: Vec<i64>,
}

/// Reads `imdb.npz` (a regular file only) and applies `opts` as Keras' `load_data` does.
pub fn load_imdb(path: &Path, opts: &ImdbOptions) -> Result<Imdb> {
    let source = path.display().to_string();
    limits::regular_file_len(path)?;
    let f = std::fs::File::open(path).map_err(|e| Error::Io {
        path: source.clone(),
        msg: e.to_string(),
    })?;
    load_from(f, opts, &source)
}

/// [`load_imdb`] for a file already in memory.
pub fn imdb_from_bytes(bytes: &[u8], opts: &ImdbOptions) -> Result<Imdb> {
    load_from(Cursor::new(bytes), opts, "<bytes>")
}

fn load_from<R: Read + Seek>(r: R, opts: &ImdbOptions, source: &str) -> Result<Imdb> {
    if opts.num_words == Some(0) || opts.maxlen == Some(0) {
        return Err(Error::Config(format!(
            "imdb options: num_words {:?} and maxlen {:?} must be None or at least 1",
            opts.num_words, opts.maxlen
        )));
    }
    let mut zip = zip::ZipArchive::new(r)
        .map_err(|e| Error::Data(format!("{source}: not a readable npz (zip) file: {e}")))?;
    let mut member = |name: &str| npz_member(&mut zip, name, source);
    let x_train = decode_sequences(&member("x_train")?, &format!("{source}:x_train"))?;
    let y_train = decode_ints(&member("y_train")?, &format!("{source}:y_train"))?;
    let x_test = decode_sequences(&member("x_test")?, &format!("{source}:x_test"))?;
    let y_test = decode_ints(&member("y_test")?, &format!("{source}:y_test"))?;
    for (x, y, what) in [(&x_train, &y_train, "train"), (&x_test, &y_test, "test")] {
        if x.len() != y.len() {
            return Err(Error::Data(format!(
                "{source}: x_{what} has {} reviews but y_{what} has {} labels",
                x.len(),
                y.len()
            )));
        }
    }
    let (x_train, y_train, x_test, y_test) = match opts.seed {
        // One generator for both sets, train first, as in Keras.
        Some(seed) => {
            let mut mt = Mt19937::new(seed);
            let train = mt.permutation(y_train.len());
            let test = mt.permutation(y_test.len());
            let (a, b) = permute(x_train, y_train, &train);
            let (c, d) = permute(x_test, y_test, &test);
            (a, b, c, d)
        }
        None => (x_train, y_train, x_test, y_test),
    };
    apply_options(x_train, y_train, x_test, y_test, opts, source)
}

/// `(x[perm], y[perm])`.
fn permute(x: Vec<Vec<i64>>, y: Vec<i64>, perm: &[usize]) -> (Vec<Vec<i64>>, Vec<i64>) {
    let mut slots: Vec<Option<Vec<i64>>> = x.into_iter().map(Some).collect();
    let xs = perm
        .iter()
        .map(|&i| slots[i].take().unwrap_or_default())
        .collect();
    let ys = perm.iter().map(|&i| y[i]).collect();
    (xs, ys)
}

/// The bytes of member `name` (or `name.npy`), checked against the host-memory cap by its
/// declared size before reading, and never read past that size.
pub fn npz_member<R: Read + Seek>(
    zip: &mut zip::ZipArchive<R>,
    name: &str,
    source: &str,
) -> Result<Vec<u8>> {
    let file_name = if zip.index_for_name(&format!("{name}.npy")).is_some() {
        format!("{name}.npy")
    } else {
        name.to_string()
    };
    let mut f = zip.by_name(&file_name).map_err(|e| {
        Error::Data(format!(
            "{source}: no member {name}.npy in the npz file ({e})"
        ))
    })?;
    let size = f.size();
    limits::check_host(&format!("{source}: npz member {file_name}"), size)?;
    let mut out = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    (&mut f)
        .take(size)
        .read_to_end(&mut out)
        .map_err(|e| Error::Data(format!("{source}: reading npz member {file_name}: {e}")))?;
    if out.len() as u64 != size {
        return Err(Error::Data(format!(
            "{source}: npz member {file_name} is truncated: {} of {size} bytes",
            out.len()
        )));
    }
    Ok(out)
}

/// Decodes an `.npy` file holding a 1-D `object` array of lists of ints (the pickle numpy
/// writes for `np.save(np.array(list_of_lists, dtype=object))`).
pub fn decode_sequences(npy_bytes: &[u8], source: &str) -> Result<Vec<Vec<i64>>> {
    let h = npy::parse_header(npy_bytes).map_err(|e| rename(e, source))?;
    let descr = h.descr.trim_matches(|c| c == '\'' || c == '"');
    if !matches!(descr, "|O" | "O" | "<O" | ">O" | "=O") {
        return Err(Error::Data(format!(
            "{source}: dtype {descr} is not object ('|O'): expected an array of lists"
        )));
    }
    let p = pickle::parse(&npy_bytes[h.data_offset..], source)?;
    pickle::object_array_of_int_lists(&p, source)
}

/// Decodes an `.npy` file holding a 1-D integer or boolean array (any byte order and width
/// up to 64 bits) as `i64` (`u8` values above `i64::MAX` are an error).
pub fn decode_ints(npy_bytes: &[u8], source: &str) -> Result<Vec<i64>> {
    let h = npy::parse_header(npy_bytes).map_err(|e| rename(e, source))?;
    let descr = h.descr.trim_matches(|c| c == '\'' || c == '"');
    let bad = |m: String| Error::Data(format!("{source}: {m}"));
    let &[n] = h.shape.as_slice() else {
        return Err(bad(format!("shape {:?} is not 1-D", h.shape)));
    };
    let (order, code) = match descr.as_bytes().first() {
        Some(b'<' | b'>' | b'|' | b'=') => (descr.as_bytes()[0], &descr[1..]),
        _ => (b'<', descr),
    };
    let (signed, width) = match code {
        "i1" | "b" => (true, 1),
        "u1" | "B" | "b1" | "?" => (false, 1),
        "i2" | "h" => (true, 2),
        "u2" | "H" => (false, 2),
        "i4" | "i" => (true, 4),
        "u4" | "I" => (false, 4),
        "i8" | "q" | "l" => (true, 8),
        "u8" | "Q" | "L" => (false, 8),
        _ => {
            return Err(bad(format!("dtype {descr} is not an integer or bool type")));
        }
    };
    let need = limits::count(&format!("{source}: {n} labels"), &[n, width])?;
    let data = &npy_bytes[h.data_offset..];
    if data.len() < need {
        return Err(bad(format!(
            "truncated: shape ({n},) of {descr} needs {need} bytes, {} present",
            data.len()
        )));
    }
    limits::check_host_elems(&format!("{source}: {n} labels"), n, 8)?;
    data[..need]
        .chunks_exact(width)
        .enumerate()
        .map(|(i, c)| {
            // Little-endian in `a`, then sign-extended from its top byte.
            let mut a = [0u8; 8];
            a[..width].copy_from_slice(c);
            if order == b'>' {
                a[..width].reverse();
            }
            if signed && a[width - 1] & 0x80 != 0 {
                a[width..].fill(0xff);
            }
            let v = i64::from_le_bytes(a);
            if !signed && width == 8 && v < 0 {
                return Err(bad(format!("value {} at {i} exceeds i64", v as u64)));
            }
            Ok(v)
        })
        .collect()
}

fn rename(e: Error, source: &str) -> Error {
    match e {
        Error::Data(m) => Error::Data(m.replacen("<bytes>", source, 1)),
        other => other,
    }
}

/// Keras' `load_data` steps after reading: start token and offset, `maxlen` filter,
/// `num_words`/`skip_top` with OOV.
fn apply_options(
    x_train: Vec<Vec<i64>>,
    y_train: Vec<i64>,
    x_test: Vec<Vec<i64>>,
    y_test: Vec<i64>,
    o: &ImdbOptions,
    source: &str,
) -> Result<Imdb> {
    let shift = |xs: Vec<Vec<i64>>, ys: Vec<i64>, what: &str| -> Result<_> {
        let mut out_x = Vec::with_capacity(xs.len());
        let mut out_y = Vec::with_capacity(ys.len());
        for (i, (x, y)) in xs.into_iter().zip(ys).enumerate() {
            let mut s = Vec::with_capacity(x.len() + 1);
            s.extend(o.start_char.map(i64::from));
            for (j, w) in x.into_iter().enumerate() {
                let v = w
                    .checked_add(i64::from(o.index_from))
                    .filter(|v| *v >= 0 && *v <= i64::from(u32::MAX));
                s.push(v.ok_or_else(|| {
                    Error::Data(format!(
                        "{source}: x_{what}[{i}][{j}] = {w} is not a word rank (0..2^32 - \
                         index_from)"
                    ))
                })?);
            }
            if o.maxlen.is_none_or(|m| s.len() < m) {
                out_x.push(s);
                out_y.push(y);
            }
        }
        Ok((out_x, out_y))
    };
    let (x_train, y_train) = shift(x_train, y_train, "train")?;
    let (x_test, y_test) = shift(x_test, y_test, "test")?;
    if o.maxlen.is_some() && (x_train.is_empty() || x_test.is_empty()) {
        return Err(Error::Config(format!(
            "{source}: maxlen {:?} leaves {} train and {} test reviews; increase it",
            o.maxlen,
            x_train.len(),
            x_test.len()
        )));
    }
    let num_words = match o.num_words {
        Some(n) => i64::try_from(n).unwrap_or(i64::MAX),
        None => x_train
            .iter()
            .chain(&x_test)
            .flat_map(|x| x.iter().copied())
            .max()
            .unwrap_or(0),
    };
    let skip_top = i64::try_from(o.skip_top).unwrap_or(i64::MAX);
    let keep = |w: i64| skip_top <= w && w < num_words;
    let map = |xs: Vec<Vec<i64>>| -> Vec<Vec<u32>> {
        xs.into_iter()
            .map(|x| {
                x.into_iter()
                    .filter_map(|w| if keep(w) { Some(w as u32) } else { o.oov_char })
                    .collect()
            })
            .collect()
    };
    Ok(Imdb {
        x_train: map(x_train),
        y_train,
        x_test: map(x_test),
        y_test,
    })
}

#[cfg(test)]
#[path = "imdb_tests.rs"]
mod tests;
