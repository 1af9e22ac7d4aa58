//! Size limits checked before anything is allocated, so an absurd size is a typed
//! [`Error::Limit`] instead of an allocation abort or an overflow panic.
//!
//! Every constructor, loader and CLI path computes its sizes with checked arithmetic
//! ([`count`]) and compares the bytes it is about to allocate on the host with the
//! **host-memory cap** ([`check_host`]): [`DEFAULT_HOST_MEMORY_CAP`] (16 GiB, or three
//! quarters of the physical memory where that is less, on Linux), or the number
//! of bytes in the environment variable [`HOST_MEMORY_CAP_ENV`] (`WGPU_RNN_HOST_MEMORY_CAP`,
//! a plain byte count or one with a `K`, `M`, `G` or `T` suffix, powers of 1024). The cap
//! applies to each single allocation request (one tensor, one parameter set), not to the
//! process as a whole. GPU buffers are checked against the device's own limits
//! (`max_buffer_size`, `max_storage_buffer_binding_size`) where they are created.

use std::io::Read;
use std::path::Path;

use crate::error::{Error, Result};

/// The host-memory cap when [`HOST_MEMORY_CAP_ENV`] is not set: 16 GiB.
pub const DEFAULT_HOST_MEMORY_CAP: u64 = 16 << 30;

/// Environment variable overriding the host-memory cap (bytes; `K`/`M`/`G`/`T` suffixes).
pub const HOST_MEMORY_CAP_ENV: &str = "WGPU_RNN_HOST_MEMORY_CAP";

/// Parses a byte count such as `17179869184`, `512M` or `16G` (powers of 1024).
pub fn parse_bytes(text: &str) -> Result<u64> {
    let t = text.trim();
    let (digits, shift) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let shift = match c.to_ascii_uppercase() {
                'K' => 10,
                'M' => 20,
                'G' => 30,
                'T' => 40,
                _ => {
                    return Err(Error::Config(format!(
                        "byte count {text:?}: unknown suffix {c:?} (use K, M, G or T)"
                    )));
                }
            };
            (&t[..i], shift)
        }
        _ => (t, 0),
    };
    let n: u64 = digits.parse().map_err(|e| {
        Error::Config(format!(
            "byte count {text:?}: {e} (expected a number of bytes such as 512M or 16G)"
        ))
    })?;
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| Error::Config(format!("byte count {text:?} overflows 64 bits")))
}

/// The host-memory cap in bytes: [`HOST_MEMORY_CAP_ENV`] if set (a malformed value is an
/// `Error::Config`, never silently ignored), else [`DEFAULT_HOST_MEMORY_CAP`], lowered to
/// three quarters of the physical memory where that is smaller and known (Linux
/// `/proc/meminfo`), so a request under the cap does not meet the OOM killer instead.
pub fn host_memory_cap() -> Result<u64> {
    match std::env::var(HOST_MEMORY_CAP_ENV) {
        Ok(v) => parse_bytes(&v).map_err(|e| Error::Config(format!("{HOST_MEMORY_CAP_ENV}: {e}"))),
        Err(_) => Ok(physical_memory().map_or(DEFAULT_HOST_MEMORY_CAP, |m| {
            DEFAULT_HOST_MEMORY_CAP.min(m / 4 * 3)
        })),
    }
}

/// Total physical memory in bytes, where the platform says (Linux); read once.
fn physical_memory() -> Option<u64> {
    static TOTAL: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
    *TOTAL.get_or_init(|| {
        let text = std::fs::read_to_string("/proc/meminfo").ok()?;
        let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        kib.checked_mul(1024)
    })
}

/// `bytes` in words: `16000000000 bytes (14.9 GiB)`.
pub fn describe_bytes(bytes: u64) -> String {
    const GIB: f64 = (1u64 << 30) as f64;
    const MIB: f64 = (1u64 << 20) as f64;
    let b = bytes as f64;
    if b >= GIB {
        format!("{bytes} bytes ({:.1} GiB)", b / GIB)
    } else if b >= MIB {
        format!("{bytes} bytes ({:.1} MiB)", b / MIB)
    } else {
        format!("{bytes} bytes")
    }
}

/// The product of `factors`, or an `Error::Limit` naming `what` and the factors when it does
/// not fit in `usize` (e.g. `weight_hh_l0: 4 x 1000000000 x 1000000000 elements overflows`).
pub fn count(what: &str, factors: &[usize]) -> Result<usize> {
    factors
        .iter()
        .try_fold(1usize, |acc, &f| acc.checked_mul(f))
        .ok_or_else(|| {
            let shown: Vec<String> = factors.iter().map(|f| f.to_string()).collect();
            Error::Limit(format!(
                "{what}: {} elements does not fit in {} bits",
                shown.join(" x "),
                usize::BITS
            ))
        })
}

/// The sum of `terms`, or an `Error::Limit` naming `what` when it overflows.
pub fn sum(what: &str, terms: &[usize]) -> Result<usize> {
    terms
        .iter()
        .try_fold(0usize, |acc, &t| acc.checked_add(t))
        .ok_or_else(|| {
            let shown: Vec<String> = terms.iter().map(|t| t.to_string()).collect();
            Error::Limit(format!(
                "{what}: {} elements does not fit in {} bits",
                shown.join(" + "),
                usize::BITS
            ))
        })
}

/// Checks that `bytes` of host memory for `what` fit the cap (`Error::Limit` naming both).
pub fn check_host(what: &str, bytes: u64) -> Result<()> {
    let cap = host_memory_cap()?;
    if bytes > cap {
        return Err(Error::Limit(format!(
            "{what} needs {} of host memory, the limit is {} (set {HOST_MEMORY_CAP_ENV} to \
             change it)",
            describe_bytes(bytes),
            describe_bytes(cap)
        )));
    }
    Ok(())
}

/// Checks that `elements` values of `elem_bytes` bytes each for `what` fit the cap.
pub fn check_host_elems(what: &str, elements: usize, elem_bytes: usize) -> Result<()> {
    let bytes = (elements as u64)
        .checked_mul(elem_bytes as u64)
        .ok_or_else(|| {
            Error::Limit(format!(
                "{what}: {elements} elements of {elem_bytes} bytes overflows 64 bits"
            ))
        })?;
    check_host(what, bytes)
}

/// [`check_host_elems`] for `f32` values, the crate's storage type.
pub fn check_host_f32(what: &str, elements: usize) -> Result<()> {
    check_host_elems(what, elements, 4)
}

/// Checks the product of `factors` (`f32` elements) against the cap and returns it.
pub fn host_f32(what: &str, factors: &[usize]) -> Result<usize> {
    let n = count(what, factors)?;
    check_host_f32(what, n)?;
    Ok(n)
}

/// Checks that `path` names a regular file (following symlinks) and returns its length.
/// A FIFO, socket, device or directory is an `Error::Io` naming what it is, so reading it
/// can never block or stream forever.
pub fn regular_file_len(path: &Path) -> Result<u64> {
    let io = |msg: String| Error::Io {
        path: path.display().to_string(),
        msg,
    };
    let meta = std::fs::metadata(path).map_err(|e| io(e.to_string()))?;
    let ft = meta.file_type();
    if !ft.is_file() {
        let kind = if ft.is_dir() {
            "a directory"
        } else if is_fifo(&ft) {
            "a FIFO (named pipe)"
        } else {
            "not a regular file (device, socket or other special file)"
        };
        return Err(io(format!("is {kind}; only regular files are read")));
    }
    Ok(meta.len())
}

#[cfg(unix)]
fn is_fifo(ft: &std::fs::FileType) -> bool {
    use std::os::unix::fs::FileTypeExt;
    ft.is_fifo()
}

#[cfg(not(unix))]
fn is_fifo(_: &std::fs::FileType) -> bool {
    false
}

/// Reads a whole regular file after checking its kind ([`regular_file_len`]) and its size
/// against the host-memory cap; never more than the length it had when checked.
pub fn read_regular_file(path: &Path) -> Result<Vec<u8>> {
    let len = regular_file_len(path)?;
    check_host(&format!("reading {}", path.display()), len)?;
    let io = |e: std::io::Error| Error::Io {
        path: path.display().to_string(),
        msg: e.to_string(),
    };
    let f = std::fs::File::open(path).map_err(io)?;
    let mut out = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    f.take(len).read_to_end(&mut out).map_err(io)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_counts_parse_with_suffixes_and_name_bad_ones() {
        assert_eq!(parse_bytes("123").unwrap(), 123);
        assert_eq!(parse_bytes("2K").unwrap(), 2048);
        assert_eq!(parse_bytes(" 16g ").unwrap(), 16 << 30);
        assert_eq!(parse_bytes("1T").unwrap(), 1 << 40);
        let e = parse_bytes("12Q").unwrap_err().to_string();
        assert!(e.contains("12Q") && e.contains("suffix"), "{e}");
        assert!(parse_bytes("").is_err());
        assert!(parse_bytes("-1").is_err());
        assert!(parse_bytes("99999999999T").is_err());
    }

    #[test]
    fn counts_overflow_into_limit_errors() {
        assert_eq!(count("x", &[2, 3, 4]).unwrap(), 24);
        let e = count("w", &[usize::MAX, 2]).unwrap_err();
        assert!(matches!(e, Error::Limit(_)), "{e}");
        assert!(e.to_string().contains("w: "), "{e}");
        assert!(sum("s", &[usize::MAX, 1]).is_err());
        assert_eq!(sum("s", &[1, 2]).unwrap(), 3);
    }

    #[test]
    fn host_check_names_need_and_limit() {
        let e = check_host_f32("weight_ih_l0", 5_000_000_000).unwrap_err();
        let m = e.to_string();
        assert!(matches!(e, Error::Limit(_)), "{m}");
        assert!(
            m.contains("weight_ih_l0 needs 20000000000 bytes (18.6 GiB)"),
            "{m}"
        );
        let cap = host_memory_cap().unwrap();
        assert!(cap <= DEFAULT_HOST_MEMORY_CAP && cap > 0, "{cap}");
        assert!(
            m.contains(&format!("the limit is {}", describe_bytes(cap))),
            "{m}"
        );
        check_host_f32("small", 1 << 20).unwrap();
        assert!(check_host_elems("huge", usize::MAX, 8).is_err());
    }
}
