//! NPY reading and writing for `uint8` arrays, enough for the real Moving MNIST file
//! (`mnist_test_seq.npy`, shape `(20, 10000, 64, 64)`, dtype `|u1`, C order).
//!
//! Format reference: <https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html>.
//! A file is the magic `\x93NUMPY`, a version `(major, minor)`, a little-endian header
//! length (u16 for version 1, u32 for 2 and 3), an ASCII Python dict literal with `descr`,
//! `fortran_order` and `shape`, then the raw array bytes.

use std::fs::File;
use std::io::{Cursor, Read, Seek, SeekFrom};
use std::path::Path;

use ndarray::{Array5, ArrayD, ArrayView, Dimension, IxDyn, ShapeBuilder};

use crate::error::{Error, Result};

const MAGIC: &[u8; 6] = b"\x93NUMPY";
/// Real headers are a few hundred bytes; the cap keeps a corrupt length from allocating GiBs.
const MAX_HEADER_LEN: usize = 1 << 20;

/// The parsed header of an NPY file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NpyHeader {
    /// Format version (major, minor): 1.0, 2.0 or 3.0.
    pub version: (u8, u8),
    /// The numpy dtype string, e.g. `|u1` or `<f4`.
    pub descr: String,
    /// Whether the data is stored column-major.
    pub fortran_order: bool,
    /// The array shape.
    pub shape: Vec<usize>,
    /// Byte offset of the array data from the start of the file.
    pub data_offset: usize,
}

impl NpyHeader {
    /// Number of elements (product of the shape), or an error when it overflows.
    pub fn element_count(&self) -> Result<usize> {
        self.shape
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| Error::Data(format!("NPY shape {:?} overflows usize", self.shape)))
    }

    /// Whether `descr` is a one-byte unsigned integer (`|u1`, `<u1`, `>u1`, `u1`, `|B`).
    pub fn is_u8(&self) -> bool {
        matches!(
            self.descr.as_str(),
            "|u1" | "<u1" | ">u1" | "=u1" | "u1" | "|B" | "B"
        )
    }
}

/// A value in the header dict; only the three kinds the format uses.
enum PyValue {
    Str(String),
    Bool(bool),
    Tuple(Vec<usize>),
}

/// A minimal parser for the header's Python dict literal.
struct DictParser<'a> {
    s: &'a [u8],
    i: usize,
}

impl DictParser<'_> {
    fn err(&self, what: &str) -> Error {
        Error::Data(format!(
            "NPY header: {what} at byte {} of {:?}",
            self.i,
            String::from_utf8_lossy(self.s)
        ))
    }

    fn skip_ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.s.get(self.i).copied()
    }

    fn expect(&mut self, c: u8) -> Result<()> {
        if self.peek() == Some(c) {
            self.i += 1;
            Ok(())
        } else {
            Err(self.err(&format!("expected '{}'", c as char)))
        }
    }

    fn string(&mut self) -> Result<String> {
        let q = self.peek().filter(|&c| c == b'\'' || c == b'"');
        let q = q.ok_or_else(|| self.err("expected a quoted string"))?;
        self.i += 1;
        let start = self.i;
        while self.i < self.s.len() && self.s[self.i] != q {
            self.i += 1;
        }
        if self.i >= self.s.len() {
            return Err(self.err("unterminated string"));
        }
        let out = String::from_utf8_lossy(&self.s[start..self.i]).into_owned();
        self.i += 1;
        Ok(out)
    }

    fn word(&mut self, w: &[u8]) -> bool {
        self.skip_ws();
        if self.s[self.i..].starts_with(w) {
            self.i += w.len();
            true
        } else {
            false
        }
    }

    fn tuple(&mut self) -> Result<Vec<usize>> {
        self.expect(b'(')?;
        let mut dims = Vec::new();
        loop {
            match self.peek() {
                Some(b')') => {
                    self.i += 1;
                    return Ok(dims);
                }
                Some(c) if c.is_ascii_digit() => {
                    let start = self.i;
                    while self.i < self.s.len() && self.s[self.i].is_ascii_digit() {
                        self.i += 1;
                    }
                    let text = std::str::from_utf8(&self.s[start..self.i]).unwrap_or("");
                    let d = text
                        .parse::<usize>()
                        .map_err(|_| self.err(&format!("dimension {text} does not fit usize")))?;
                    dims.push(d);
                    // Python 2 wrote long integers as `20L`.
                    if self.s.get(self.i) == Some(&b'L') {
                        self.i += 1;
                    }
                    if self.peek() == Some(b',') {
                        self.i += 1;
                    }
                }
                _ => return Err(self.err("expected a non-negative integer or ')' in shape")),
            }
        }
    }

    fn value(&mut self) -> Result<PyValue> {
        match self.peek() {
            Some(b'\'' | b'"') => Ok(PyValue::Str(self.string()?)),
            Some(b'(') => Ok(PyValue::Tuple(self.tuple()?)),
            Some(b'[') => Err(Error::Data(format!(
                "unsupported NPY dtype: structured descr in header {:?}",
                String::from_utf8_lossy(self.s)
            ))),
            _ if self.word(b"True") => Ok(PyValue::Bool(true)),
            _ if self.word(b"False") => Ok(PyValue::Bool(false)),
            _ => Err(self.err("unexpected value")),
        }
    }
}

/// Checks the magic and version and returns `(version, header length, header start)`.
fn prefix(bytes: &[u8]) -> Result<((u8, u8), usize, usize)> {
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        let shown = &bytes[..bytes.len().min(6)];
        return Err(Error::Data(format!(
            "not an NPY file: bad magic {shown:?} (expected \\x93NUMPY)"
        )));
    }
    let version = (bytes[6], bytes[7]);
    let (len, start) = match version.0 {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 => {
            let b = bytes
                .get(8..12)
                .ok_or_else(|| Error::Data("NPY file truncated inside its header".into()))?;
            (u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize, 12)
        }
        _ => {
            return Err(Error::Data(format!(
                "unsupported NPY version {}.{}",
                version.0, version.1
            )));
        }
    };
    if len > MAX_HEADER_LEN {
        return Err(Error::Data(format!(
            "NPY header length {len} exceeds {MAX_HEADER_LEN} bytes"
        )));
    }
    Ok((version, len, start))
}

/// Parses the header from the first bytes of an NPY file (the whole file is fine too).
/// Errors name the bad magic, version, length or dict entry.
pub fn parse_header(bytes: &[u8]) -> Result<NpyHeader> {
    let (version, len, start) = prefix(bytes)?;
    let text = bytes.get(start..start + len).ok_or_else(|| {
        Error::Data(format!(
            "NPY file truncated inside its header: header length {len}, only {} bytes follow",
            bytes.len() - start
        ))
    })?;
    let mut p = DictParser { s: text, i: 0 };
    let (mut descr, mut fortran, mut shape) = (None, None, None);
    p.expect(b'{')?;
    loop {
        if p.peek() == Some(b'}') {
            break;
        }
        let key = p.string()?;
        p.expect(b':')?;
        match (key.as_str(), p.value()?) {
            ("descr", PyValue::Str(s)) => descr = Some(s),
            ("fortran_order", PyValue::Bool(b)) => fortran = Some(b),
            ("shape", PyValue::Tuple(t)) => shape = Some(t),
            ("descr" | "fortran_order" | "shape", _) => {
                return Err(p.err(&format!("wrong value type for '{key}'")));
            }
            // numpy itself writes only the three keys; tolerate extras from other writers.
            _ => {}
        }
        if p.peek() == Some(b',') {
            p.i += 1;
        }
    }
    let missing = |k: &str| Error::Data(format!("NPY header has no '{k}' entry"));
    Ok(NpyHeader {
        version,
        descr: descr.ok_or_else(|| missing("descr"))?,
        fortran_order: fortran.ok_or_else(|| missing("fortran_order"))?,
        shape: shape.ok_or_else(|| missing("shape"))?,
        data_offset: start + len,
    })
}

fn io_err(source: &str, e: impl std::fmt::Display) -> Error {
    Error::Io {
        path: source.to_string(),
        msg: e.to_string(),
    }
}

/// Reads and parses the header from a reader positioned at the start of the file, reading
/// no further than the header's end.
fn read_header<R: Read>(r: &mut R, source: &str) -> Result<NpyHeader> {
    // 12 bytes hold the fixed prefix of every version (for 1.0, plus 2 bytes of dict text).
    let mut head = Vec::with_capacity(256);
    r.by_ref()
        .take(12)
        .read_to_end(&mut head)
        .map_err(|e| io_err(source, e))?;
    let (_, len, start) = prefix(&head)?;
    let rest = (start + len).saturating_sub(head.len());
    r.by_ref()
        .take(rest as u64)
        .read_to_end(&mut head)
        .map_err(|e| io_err(source, e))?;
    parse_header(&head)
}

fn check_u8(h: &NpyHeader) -> Result<()> {
    if h.is_u8() {
        Ok(())
    } else {
        Err(Error::Data(format!(
            "unsupported NPY dtype '{}': only uint8 ('|u1') is supported",
            h.descr
        )))
    }
}

fn truncated(h: &NpyHeader, need: usize, have: u64) -> Error {
    Error::Data(format!(
        "NPY data truncated: shape {:?} needs {need} bytes after the {}-byte header, the file \
         has {}",
        h.shape,
        h.data_offset,
        have.saturating_sub(h.data_offset as u64)
    ))
}

/// Decodes a whole uint8 NPY file held in memory (any rank; Fortran order is honoured).
pub fn decode_u8(bytes: &[u8]) -> Result<ArrayD<u8>> {
    let h = parse_header(bytes)?;
    check_u8(&h)?;
    let count = h.element_count()?;
    let data = bytes
        .get(h.data_offset..)
        .and_then(|d| d.get(..count))
        .ok_or_else(|| truncated(&h, count, bytes.len() as u64))?;
    let shape = IxDyn(&h.shape);
    let arr = if h.fortran_order {
        ArrayD::from_shape_vec(shape.f(), data.to_vec())
    } else {
        ArrayD::from_shape_vec(shape, data.to_vec())
    };
    arr.map_err(|e| Error::Data(format!("NPY shape {:?}: {e}", h.shape)))
}

/// Reads a uint8 NPY file of any rank.
pub fn read_u8(path: &Path) -> Result<ArrayD<u8>> {
    let bytes = std::fs::read(path).map_err(|e| io_err(&path.display().to_string(), e))?;
    decode_u8(&bytes)
}

/// Encodes a uint8 array as an NPY version 1.0 file (C order; any layout is accepted and
/// written in logical order).
pub fn encode_u8<D: Dimension>(array: ArrayView<u8, D>) -> Result<Vec<u8>> {
    let dims: Vec<String> = array.shape().iter().map(|d| d.to_string()).collect();
    let shape = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut header = format!("{{'descr': '|u1', 'fortran_order': False, 'shape': {shape}, }}");
    // numpy pads with spaces and a newline so the data starts on a 64-byte boundary.
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    let hlen = u16::try_from(header.len())
        .map_err(|_| Error::Data(format!("NPY header for shape {shape} is too long")))?;
    let mut out = Vec::with_capacity(10 + header.len() + array.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&hlen.to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend(array.iter().copied());
    Ok(out)
}

/// Writes a uint8 array to `path` as NPY version 1.0.
pub fn write_u8<D: Dimension>(path: &Path, array: ArrayView<u8, D>) -> Result<()> {
    let bytes = encode_u8(array)?;
    std::fs::write(path, bytes).map_err(|e| io_err(&path.display().to_string(), e))
}

/// Loads a Moving MNIST style NPY file, shape `(T, N, H, W)` uint8, as `[N, T, H, W, 1]`
/// f32 in `[0, 1]` (value / 255). With `max_sequences`, only the first that many of the N
/// sequences are read from disk, so a quick run never touches most of the 800 MB file.
pub fn load_moving_mnist(path: &Path, max_sequences: Option<usize>) -> Result<Array5<f32>> {
    let source = path.display().to_string();
    let mut f = File::open(path).map_err(|e| io_err(&source, e))?;
    let len = f.metadata().map_err(|e| io_err(&source, e))?.len();
    load_tnhw(&mut f, len, &source, max_sequences)
}

/// [`load_moving_mnist`] for a file already in memory.
pub fn moving_mnist_from_bytes(bytes: &[u8], max_sequences: Option<usize>) -> Result<Array5<f32>> {
    let len = bytes.len() as u64;
    load_tnhw(&mut Cursor::new(bytes), len, "<bytes>", max_sequences)
}

fn load_tnhw<R: Read + Seek>(
    r: &mut R,
    file_len: u64,
    source: &str,
    max_sequences: Option<usize>,
) -> Result<Array5<f32>> {
    let h = read_header(r, source)?;
    check_u8(&h)?;
    if h.fortran_order {
        return Err(Error::Data(format!(
            "{source}: fortran_order True is not supported; save the array in C order"
        )));
    }
    let &[t, n, hh, ww] = h.shape.as_slice() else {
        return Err(Error::Data(format!(
            "{source}: expected a rank-4 (T, N, H, W) array, got shape {:?} (rank {})",
            h.shape,
            h.shape.len()
        )));
    };
    let need = h.element_count()?;
    if file_len < h.data_offset as u64 + need as u64 {
        return Err(truncated(&h, need, file_len));
    }
    let take = max_sequences.map_or(n, |m| m.min(n));
    let frame = hh * ww;
    // The file is time-major: at each t, the N frames are contiguous, so the first `take`
    // sequences are one contiguous run of `take * frame` bytes per time step.
    let mut out = Array5::<f32>::zeros((take, t, hh, ww, 1));
    let dst = out
        .as_slice_mut()
        .ok_or_else(|| Error::Data("internal: output not contiguous".into()))?;
    let mut buf = vec![0u8; take * frame];
    for ti in 0..t {
        let at = h.data_offset as u64 + (ti * n * frame) as u64;
        r.seek(SeekFrom::Start(at)).map_err(|e| io_err(source, e))?;
        r.read_exact(&mut buf).map_err(|e| io_err(source, e))?;
        for (s, src) in buf.chunks_exact(frame.max(1)).enumerate().take(take) {
            let base = (s * t + ti) * frame;
            for (d, &v) in dst[base..base + frame].iter_mut().zip(src) {
                *d = f32::from(v) / 255.0;
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writer_pads_to_64_and_parses_back() {
        let a =
            ndarray::Array3::<u8>::from_shape_fn((2, 3, 4), |(i, j, k)| (i * 12 + j * 4 + k) as u8);
        let bytes = encode_u8(a.view()).unwrap();
        let h = parse_header(&bytes).unwrap();
        assert_eq!(h.data_offset % 64, 0);
        assert_eq!(h.shape, vec![2, 3, 4]);
        assert_eq!(bytes[h.data_offset - 1], b'\n');
        assert_eq!(decode_u8(&bytes).unwrap(), a.into_dyn());
    }

    #[test]
    fn one_d_shape_has_trailing_comma() {
        let a = ndarray::Array1::<u8>::from(vec![1, 2, 3]);
        let bytes = encode_u8(a.view()).unwrap();
        let text = String::from_utf8_lossy(&bytes[10..]);
        assert!(text.contains("'shape': (3,)"), "{text}");
    }
}
