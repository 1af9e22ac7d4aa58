//! `uint8` NPY files through the `ndarray-npy` crate, enough for the real Moving MNIST file
//! (`mnist_test_seq.npy`, shape `(20, 10000, 64, 64)`, dtype `|u1`, C order).
//!
//! `ndarray-npy` parses headers and reads and writes whole arrays. What stays here: errors
//! that name the problem (bad magic, truncation, dtype, rank), size checks before anything
//! is allocated (the shape against the file length and the host-memory cap, so a corrupt
//! header cannot ask for terabytes), regular-file checks (a FIFO is refused, never waited
//! on), and the Moving MNIST loader, which reads only the first sequences it needs.

use std::fs::File;
use std::io::{Cursor, Read, Seek, SeekFrom};
use std::path::Path;

use ndarray::{Array5, ArrayD, ArrayView, Dimension};
use ndarray_npy::npy::header::{Header, ParseHeaderError, ReadHeaderError};
use ndarray_npy::{ReadNpyExt, WriteNpyExt};

use crate::error::{Error, Result};
use crate::limits;

/// The parsed header of an NPY file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NpyHeader {
    /// Format version (major, minor): 1.0, 2.0 or 3.0.
    pub version: (u8, u8),
    /// The numpy dtype as a Python literal, e.g. `'|u1'` or `'<f4'`.
    pub descr: String,
    /// Whether the data is stored column-major.
    pub fortran_order: bool,
    /// The array shape.
    pub shape: Vec<usize>,
    /// Byte offset of the array data from the start of the file.
    pub data_offset: usize,
}

impl NpyHeader {
    /// Number of elements (product of the shape), or an `Error::Limit` when it overflows.
    pub fn element_count(&self) -> Result<usize> {
        limits::count(&format!("NPY shape {:?}", self.shape), &self.shape)
    }

    /// Whether `descr` is a one-byte unsigned integer (`|u1`, `<u1`, `>u1`, `u1`, `|B`).
    pub fn is_u8(&self) -> bool {
        let d = self.descr.trim_matches(|c| c == '\'' || c == '"');
        matches!(d, "|u1" | "<u1" | ">u1" | "=u1" | "u1" | "|B" | "B")
    }
}

/// Reads the header from `r` (positioned at the start of a file of `file_len` bytes) and
/// leaves `r` at the first data byte. `source` names the file in errors.
fn read_header<R: Read + Seek>(r: &mut R, file_len: u64, source: &str) -> Result<NpyHeader> {
    // The fixed prefix: magic (6), version (2), header length (2 for 1.0, 4 for 2.0/3.0).
    // The declared length is checked against the file before `ndarray-npy` allocates it.
    let mut prefix = [0u8; 12];
    let got = read_up_to(r, &mut prefix).map_err(|e| io_err(source, e))?;
    let prefix = &prefix[..got];
    if got >= 10 && prefix[..6] == *b"\x93NUMPY" {
        let declared = match prefix[6] {
            1 => Some(u64::from(u16::from_le_bytes([prefix[8], prefix[9]])) + 10),
            2 | 3 if got == 12 => Some(
                u64::from(u32::from_le_bytes([
                    prefix[8], prefix[9], prefix[10], prefix[11],
                ])) + 12,
            ),
            _ => None,
        };
        if let Some(end) = declared.filter(|&end| end > file_len) {
            return Err(Error::Data(format!(
                "{source}: NPY file truncated inside its header: the header ends at byte {end}, \
                 the file has {file_len} bytes"
            )));
        }
    }
    r.seek(SeekFrom::Start(0)).map_err(|e| io_err(source, e))?;
    let h = Header::from_reader(r).map_err(|e| header_err(source, file_len, e))?;
    let data_offset = r.stream_position().map_err(|e| io_err(source, e))?;
    Ok(NpyHeader {
        version: (prefix[6], prefix[7]),
        descr: h.type_descriptor.to_string(),
        fortran_order: h.layout.is_fortran(),
        shape: h.shape,
        data_offset: usize::try_from(data_offset).unwrap_or(usize::MAX),
    })
}

/// Reads as many bytes as are there, up to `buf.len()`.
fn read_up_to<R: Read>(r: &mut R, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

fn header_err(source: &str, file_len: u64, e: ReadHeaderError) -> Error {
    let msg = match e {
        ReadHeaderError::Io(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            format!("NPY file truncated inside its header (the file has only {file_len} bytes)")
        }
        ReadHeaderError::Io(e) => return io_err(source, e),
        ReadHeaderError::Parse(ParseHeaderError::MagicString) => {
            "not an NPY file: bad magic (expected \\x93NUMPY)".to_string()
        }
        ReadHeaderError::Parse(ParseHeaderError::Version { major, minor }) => {
            format!("unsupported NPY version {major}.{minor}")
        }
        // ndarray-npy 0.10 spells the missing shape key "shaper".
        ReadHeaderError::Parse(ParseHeaderError::MissingKey(k)) => {
            let k = if k == "shaper" {
                "shape".to_string()
            } else {
                k
            };
            format!("NPY header has no '{k}' entry")
        }
        ReadHeaderError::Parse(e) => format!("NPY header: {e}"),
    };
    Error::Data(format!("{source}: {msg}"))
}

/// Parses the header from the first bytes of an NPY file (the whole file is fine too).
/// Errors name the bad magic, version, length or dict entry.
pub fn parse_header(bytes: &[u8]) -> Result<NpyHeader> {
    read_header(&mut Cursor::new(bytes), bytes.len() as u64, "<bytes>")
}

fn io_err(source: &str, e: impl std::fmt::Display) -> Error {
    Error::Io {
        path: source.to_string(),
        msg: e.to_string(),
    }
}

fn check_u8(h: &NpyHeader, source: &str) -> Result<()> {
    if h.is_u8() {
        Ok(())
    } else {
        Err(Error::Data(format!(
            "{source}: unsupported NPY dtype {}: only uint8 ('|u1') is supported",
            h.descr
        )))
    }
}

/// The element count of a uint8 array, checked against the bytes the file holds and the
/// host-memory cap before anything is allocated.
fn checked_len(h: &NpyHeader, file_len: u64, source: &str) -> Result<usize> {
    let need = h.element_count()?;
    let have = file_len.saturating_sub(h.data_offset as u64);
    if have < need as u64 {
        return Err(Error::Data(format!(
            "{source}: NPY data truncated: shape {:?} needs {need} bytes after the {}-byte \
             header, the file has {have}",
            h.shape, h.data_offset
        )));
    }
    limits::check_host(
        &format!("{source}: NPY array of shape {:?}", h.shape),
        need as u64,
    )?;
    Ok(need)
}

/// Decodes a whole uint8 NPY file held in memory (any rank; Fortran order is honoured).
pub fn decode_u8(bytes: &[u8]) -> Result<ArrayD<u8>> {
    decode_u8_from(bytes, "<bytes>")
}

fn decode_u8_from(bytes: &[u8], source: &str) -> Result<ArrayD<u8>> {
    let h = read_header(&mut Cursor::new(bytes), bytes.len() as u64, source)?;
    check_u8(&h, source)?;
    checked_len(&h, bytes.len() as u64, source)?;
    ArrayD::<u8>::read_npy(bytes).map_err(|e| Error::Data(format!("{source}: NPY: {e}")))
}

/// Reads a uint8 NPY file of any rank (a regular file only; see [`limits::read_regular_file`]).
pub fn read_u8(path: &Path) -> Result<ArrayD<u8>> {
    let bytes = limits::read_regular_file(path)?;
    decode_u8_from(&bytes, &path.display().to_string())
}

/// Encodes a uint8 array as an NPY file (C order, data aligned to 64 bytes; any layout is
/// accepted and written in logical order).
pub fn encode_u8<D: Dimension>(array: ArrayView<u8, D>) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    array
        .as_standard_layout()
        .write_npy(&mut out)
        .map_err(|e| Error::Data(format!("NPY encoding of shape {:?}: {e}", array.shape())))?;
    Ok(out)
}

/// Writes a uint8 array to `path` as NPY.
pub fn write_u8<D: Dimension>(path: &Path, array: ArrayView<u8, D>) -> Result<()> {
    let bytes = encode_u8(array)?;
    std::fs::write(path, bytes).map_err(|e| io_err(&path.display().to_string(), e))
}

/// Loads a Moving MNIST style NPY file, shape `(T, N, H, W)` uint8, as `[N, T, H, W, 1]`
/// f32 in `[0, 1]` (value / 255). With `max_sequences`, only the first that many of the N
/// sequences are read from disk, so a quick run never touches most of the 800 MB file.
/// Only regular files are read: a FIFO or device is an `Error::Io`, never a wait.
pub fn load_moving_mnist(path: &Path, max_sequences: Option<usize>) -> Result<Array5<f32>> {
    let source = path.display().to_string();
    let len = limits::regular_file_len(path)?;
    let mut f = File::open(path).map_err(|e| io_err(&source, e))?;
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
    let h = read_header(r, file_len, source)?;
    check_u8(&h, source)?;
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
    // The whole array must be in the file (checked arithmetic), even if only part is read.
    let need = h.element_count()?;
    let have = file_len.saturating_sub(h.data_offset as u64);
    if have < need as u64 {
        return Err(Error::Data(format!(
            "{source}: NPY data truncated: shape {:?} needs {need} bytes after the {}-byte \
             header, the file has {have}",
            h.shape, h.data_offset
        )));
    }
    let take = max_sequences.map_or(n, |m| m.min(n));
    let frame = hh * ww;
    limits::host_f32(
        &format!("{source}: {take} sequences of {t} frames {hh}x{ww} as f32"),
        &[take, t, frame],
    )?;
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
        assert!(h.is_u8(), "{}", h.descr);
        assert_eq!(bytes[h.data_offset - 1], b'\n');
        assert_eq!(decode_u8(&bytes).unwrap(), a.into_dyn());
    }

    #[test]
    fn only_the_magic_is_a_truncated_header_not_bad_magic() {
        let e = parse_header(b"\x93NUMPY").unwrap_err().to_string();
        assert!(e.contains("truncated inside its header"), "{e}");
        assert!(!e.contains("magic"), "{e}");
        // A v2 header length far beyond the file is refused before it is allocated.
        let e = parse_header(b"\x93NUMPY\x02\x00\xff\xff\xff\xff{").unwrap_err();
        assert!(
            e.to_string().contains("header ends at byte 4294967307"),
            "{e}"
        );
    }

    /// A version 1.0 file with `dict` as its header, padded like numpy's.
    fn v1(dict: &str, data: &[u8]) -> Vec<u8> {
        let mut h = dict.to_string();
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
    fn a_shape_beyond_the_file_is_refused_before_allocating() {
        let dict = "{'descr': '|u1', 'fortran_order': False, 'shape': (9999999999999,), }";
        let e = decode_u8(&v1(dict, &[0; 4])).unwrap_err().to_string();
        assert!(e.contains("needs 9999999999999 bytes"), "{e}");
        let dict = "{'descr': '|u1', 'fortran_order': False, 'shape': (4294967296, 4294967296), }";
        let e = decode_u8(&v1(dict, &[0; 4])).unwrap_err();
        assert!(matches!(e, Error::Limit(_)), "{e}");
    }
}
