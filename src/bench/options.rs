//! What `wgpu-rnn bench` runs: the options, the cells and implementations it knows (one list
//! each, so a new algorithm is benched by adding a row), and `--shapes` parsing. Everything
//! is checked here, before any adapter is opened or anything is allocated.

use crate::algorithm::Algorithm;
use crate::error::{Error, Result};

/// What to run.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// Small shapes for software adapters (always includes LSTM B8 T100 I128 H128).
    pub quick: bool,
    /// Cells: any of lstm, gru, rnn, convlstm2d.
    pub cells: Vec<String>,
    /// Timed runs per measurement (at least 5; the median is reported).
    pub runs: usize,
    /// Implementations to run: any of persistent, stepwise, resident, grid, tiled, unfused,
    /// cpu (empty: all).
    pub impls: Vec<String>,
    /// Recurrent-cell shapes (B, T, I, H) replacing the defaults (empty: `quick` decides).
    pub shapes: Vec<(usize, usize, usize, usize)>,
    /// GEMM shapes (M, K, N), both operands row-major, replacing the gemm cell's defaults
    /// (empty: the LSTM input projection M800 K128 N512 and 512³, plus 2048³ without `quick`).
    pub gemm_shapes: Vec<(usize, usize, usize)>,
}

impl BenchOptions {
    pub(super) fn wants(&self, imp: &str) -> bool {
        self.impls.is_empty() || self.impls.iter().any(|i| i == imp)
    }

    /// Rejects unknown cells and implementations and empty lists, naming the value and
    /// the accepted names (`Error::Config`), before anything runs.
    pub fn validate(&self) -> Result<()> {
        if self.cells.is_empty() {
            return Err(Error::Config(format!(
                "no cell to bench: name some of {}",
                CELLS.join(", ")
            )));
        }
        for c in &self.cells {
            if !CELLS.contains(&c.as_str()) {
                return Err(Error::Config(format!(
                    "unknown cell {c:?}: expected one of {}",
                    CELLS.join(", ")
                )));
            }
        }
        if self.runs > MAX_RUNS {
            return Err(Error::Config(format!(
                "runs {}: at most {MAX_RUNS} timed runs per measurement",
                self.runs
            )));
        }
        let known = impl_names();
        for i in &self.impls {
            if !known.contains(&i.as_str()) {
                return Err(Error::Config(format!(
                    "unknown implementation {i:?}: expected one of {}",
                    known.join(", ")
                )));
            }
        }
        Ok(())
    }
}

/// The most timed runs per measurement `bench` accepts (the samples are kept in memory).
pub const MAX_RUNS: usize = 100_000;

/// The cells `bench` knows.
pub const CELLS: &[&str] = &["lstm", "gru", "rnn", "convlstm2d", "gemm"];

/// How an implementation of a recurrent cell runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Impl {
    /// The GPU layer with this recurrence algorithm forced.
    Gpu(Algorithm),
    /// The CPU reference.
    Cpu,
    /// The unfused per-op GPU baseline (LSTM only).
    Unfused,
}

/// Every implementation `bench` times on the recurrent cells, by the name `--impls` and the
/// JSON `impl` field use. A new recurrence algorithm is benched by adding its row here.
pub const IMPLS: &[(&str, Impl)] = &[
    ("persistent", Impl::Gpu(Algorithm::Persistent)),
    ("stepwise", Impl::Gpu(Algorithm::Stepwise)),
    ("resident", Impl::Gpu(Algorithm::Resident)),
    ("grid", Impl::Gpu(Algorithm::Grid)),
    ("tiled", Impl::Gpu(Algorithm::Tiled)),
    ("unfused", Impl::Unfused),
    ("cpu", Impl::Cpu),
];

/// Every name `--impls` accepts: [`IMPLS`] and the GEMM kernels of the `gemm` cell.
pub fn impl_names() -> Vec<&'static str> {
    IMPLS
        .iter()
        .map(|(n, _)| *n)
        .chain(
            crate::kernels::gemm::GemmKernel::ALL
                .iter()
                .map(|k| k.name()),
        )
        .collect()
}

/// Parses `"B,T,I,H;B,T,I,H"` (the CLI's `--shapes`). A list naming no shape is an error
/// (leave `--shapes` out for the defaults), and so is a shape whose input or gate tensors
/// would not fit the host-memory cap ([`crate::limits`]).
pub fn parse_shapes(text: &str) -> Result<Vec<(usize, usize, usize, usize)>> {
    let shapes = text
        .split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            let v: Vec<usize> = s
                .split(',')
                .map(|n| n.trim().parse::<usize>())
                .collect::<std::result::Result<_, _>>()
                .map_err(|e| Error::Config(format!("shape {s:?}: {e} (expected B,T,I,H)")))?;
            match v[..] {
                [b, t, i, h] if [b, t, i, h].iter().all(|&d| d > 0) => {
                    check_shape_memory(b, t, i, h)?;
                    Ok((b, t, i, h))
                }
                _ => Err(Error::Config(format!(
                    "shape {s:?}: expected four positive numbers B,T,I,H"
                ))),
            }
        })
        .collect::<Result<Vec<_>>>()?;
    if shapes.is_empty() {
        return Err(Error::Config(format!(
            "--shapes {text:?} names no shape; expected \"B,T,I,H;B,T,I,H\""
        )));
    }
    Ok(shapes)
}

/// Parses `"M,K,N;M,K,N"` (the CLI's `--gemm-shapes`). A list naming no shape is an error,
/// and so is a shape whose three matrices would not fit the host-memory cap.
pub fn parse_gemm_shapes(text: &str) -> Result<Vec<(usize, usize, usize)>> {
    let shapes = text
        .split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            let v: Vec<usize> = s
                .split(',')
                .map(|n| n.trim().parse::<usize>())
                .collect::<std::result::Result<_, _>>()
                .map_err(|e| Error::Config(format!("gemm shape {s:?}: {e} (expected M,K,N)")))?;
            match v[..] {
                [m, k, n] if m > 0 && k > 0 && n > 0 => {
                    let a = crate::limits::count("gemm A", &[m, k])?;
                    let b = crate::limits::count("gemm B", &[k, n])?;
                    let c = crate::limits::count("gemm C", &[m, n])?;
                    let all = crate::limits::sum("gemm operands", &[a, b, c])?;
                    crate::limits::check_host_f32(&format!("gemm shape {s:?}"), all)?;
                    Ok((m, k, n))
                }
                _ => Err(Error::Config(format!(
                    "gemm shape {s:?}: expected three positive numbers M,K,N"
                ))),
            }
        })
        .collect::<Result<Vec<_>>>()?;
    if shapes.is_empty() {
        return Err(Error::Config(format!(
            "--gemm-shapes {text:?} names no shape; expected \"M,K,N;M,K,N\""
        )));
    }
    Ok(shapes)
}

/// The input `(T, B, I)` and the LSTM's gates `(T, B, 4H)` of one bench shape must fit the
/// host-memory cap (checked arithmetic; `Error::Limit` naming the shape).
pub(super) fn check_shape_memory(b: usize, t: usize, i: usize, h: usize) -> Result<()> {
    crate::limits::host_f32(
        &format!("bench input x (T {t} x B {b} x I {i})"),
        &[t, b, i],
    )?;
    crate::limits::host_f32(
        &format!("bench gates (T {t} x B {b} x 4 x H {h})"),
        &[t, b, 4, h],
    )
    .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_shapes_reads_lists_and_names_bad_entries() {
        let v = parse_shapes("8,100,128,128; 1,1000,64,64").unwrap();
        assert_eq!(v, vec![(8, 100, 128, 128), (1, 1000, 64, 64)]);
        for empty in ["", " ; "] {
            let e = parse_shapes(empty).unwrap_err().to_string();
            assert!(e.contains("names no shape"), "{e}");
        }
        let e = parse_shapes("1000000000,1000000000,1,1").unwrap_err();
        assert!(matches!(e, Error::Limit(_)), "{e}");
        assert!(e.to_string().contains("T 1000000000 x B 1000000000"), "{e}");
        let e = parse_shapes("8,100,128").unwrap_err().to_string();
        assert!(e.contains("8,100,128"), "{e}");
        let e = parse_shapes("8,0,128,128").unwrap_err().to_string();
        assert!(e.contains("positive"), "{e}");
        assert!(parse_shapes("8,x,1,1").is_err());
    }
}
