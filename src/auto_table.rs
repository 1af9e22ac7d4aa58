//! A measured `Algorithm::Auto` table for one adapter: which recurrence algorithm was fastest
//! for each (cell, pass, batch, hidden size) that `wgpu-rnn tune` timed on it.
//!
//! The built-in Auto rules (kernels/rec.rs `resolve`) are measured on the adapters the
//! project has seen; every other GPU (another vendor, another driver) runs by rules that are
//! reasoned, not measured. A table measured on the user's own adapter replaces them, in the
//! spirit of cuDNN's `cudnnFind*` and PyTorch's `cudnn.benchmark`, but measured once, written
//! to a file and reused: `wgpu-rnn tune --out auto.json` (or `--from bench.json`, from a
//! `bench` report already measured), then `WGPU_RNN_AUTO_TABLE=auto.json` or
//! [`Context::set_auto_table`](crate::Context::set_auto_table).
//!
//! A layer asks for the entry of its cell and pass nearest to its batch and hidden size
//! (distance in octaves: |log2 B/B'| + |log2 H/H'|, at most [`MAX_OCTAVES`]; ties go to the
//! nearest sequence length; the input size is not a key, since the input projection is the
//! same GEMM under every algorithm); the algorithms
//! of that entry are tried fastest first, and the first one the layer can run (its limits,
//! activations and masks checked as if it had been forced) is chosen. No entry close enough,
//! or none that runs: the built-in rules decide.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::algorithm::Algorithm;
use crate::error::{Error, Result};

/// The `format` field of a table file.
pub const FORMAT: &str = "wgpu-rnn-auto-v1";

/// Environment variable naming a table file that [`Context::new`](crate::Context::new) and
/// [`Context::from_device`](crate::Context::from_device) load.
pub const AUTO_TABLE_ENV: &str = "WGPU_RNN_AUTO_TABLE";

/// The farthest (in octaves of batch plus octaves of hidden size) an entry may lie from a
/// layer's shape and still decide for it: B8 H128 is answered by B16 H256, not by B64 H512.
pub const MAX_OCTAVES: f64 = 2.0;

/// The recurrence algorithms a table may rank (the ones `Auto` chooses among).
pub const ALGORITHMS: &[Algorithm] = &[
    Algorithm::Resident,
    Algorithm::Grid,
    Algorithm::Persistent,
    Algorithm::Stepwise,
];

/// The adapter a table was measured on; a context on another adapter refuses the table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TableAdapter {
    pub name: String,
    pub backend: String,
    /// Recorded for the reader; not compared (a driver update keeps the table usable).
    #[serde(default)]
    pub driver: String,
}

/// One measured shape: every algorithm's time, fastest first in `ranked`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AutoEntry {
    /// lstm, gru or rnn.
    pub cell: String,
    /// forward or forward_backward (what training runs).
    pub pass: String,
    #[serde(rename = "B")]
    pub b: usize,
    #[serde(rename = "T")]
    pub t: usize,
    #[serde(rename = "H")]
    pub h: usize,
    /// Milliseconds per algorithm name (the wall time of one call where measured).
    pub ms: BTreeMap<String, f64>,
    /// Algorithm names, fastest first.
    pub ranked: Vec<String>,
}

/// A measured table (see the module docs).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AutoTable {
    pub format: String,
    pub adapter: TableAdapter,
    pub entries: Vec<AutoEntry>,
}

impl AutoTable {
    /// An empty table for an adapter.
    pub fn new(adapter: TableAdapter) -> Self {
        Self {
            format: FORMAT.to_string(),
            adapter,
            entries: Vec::new(),
        }
    }

    /// Adds a shape's measurements (algorithm name → ms); `ranked` is derived from them.
    /// Unknown names, and times that are not finite and positive, are refused.
    pub fn insert(
        &mut self,
        (cell, pass): (&str, &str),
        (b, t, h): (usize, usize, usize),
        ms: BTreeMap<String, f64>,
    ) -> Result<()> {
        let entry = AutoEntry {
            cell: cell.to_string(),
            pass: pass.to_string(),
            b,
            t,
            h,
            ranked: rank(&ms),
            ms,
        };
        check_entry(&entry)?;
        self.entries
            .retain(|e| (&e.cell, &e.pass, e.b, e.t, e.h) != (&entry.cell, &entry.pass, b, t, h));
        self.entries.push(entry);
        Ok(())
    }

    /// Builds a table from a `wgpu-rnn bench` JSON report: for each recurrent (cell, pass,
    /// B, H) the rows of the four recurrence algorithms, timed by `device_wall_ms` where
    /// present (the whole call on device tensors: what the algorithm costs, without the
    /// transfers every algorithm shares), else `wall_ms`, else `median_ms`. Other rows (cpu, unfused,
    /// tiled, gemm, convlstm2d) are ignored.
    pub fn from_bench(report: &serde_json::Value) -> Result<Self> {
        let bad = |what: &str| Error::Format(format!("bench report: {what}"));
        let a = report.get("adapter").ok_or_else(|| bad("no adapter"))?;
        let field = |k: &str| a.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
        let mut table = Self::new(TableAdapter {
            name: field("name"),
            backend: field("backend"),
            driver: field("driver"),
        });
        if table.adapter.name.is_empty() {
            return Err(bad("the adapter has no name"));
        }
        let rows = report
            .get("results")
            .and_then(|r| r.as_array())
            .ok_or_else(|| bad("no results array"))?;
        // Keyed by (cell, pass, B, T, H), with I kept to refuse a report that times one
        // such shape at two input sizes (their rows would mix in one entry).
        type Key = (String, String, usize, usize, usize);
        let mut groups: BTreeMap<Key, (usize, BTreeMap<String, f64>)> = BTreeMap::new();
        for r in rows {
            let s = |k: &str| r.get(k).and_then(|v| v.as_str()).unwrap_or("");
            let n = |k: &str| r.get(k).and_then(|v| v.as_u64()).map(|v| v as usize);
            let (cell, imp) = (s("cell"), s("impl"));
            if !["lstm", "gru", "rnn"].contains(&cell) || algorithm(imp).is_err() {
                continue;
            }
            let (Some(b), Some(t), Some(h)) = (n("B"), n("T"), n("H")) else {
                return Err(bad(&format!("a {cell} {imp} row lacks B, T or H")));
            };
            let i = n("I").unwrap_or(h);
            let ms = ["device_wall_ms", "wall_ms", "median_ms"]
                .iter()
                .find_map(|k| r.get(*k).and_then(|v| v.as_f64()))
                .ok_or_else(|| bad(&format!("a {cell} {imp} row has no time")))?;
            let g = groups
                .entry((cell.to_string(), s("pass").to_string(), b, t, h))
                .or_insert((i, BTreeMap::new()));
            if g.0 != i {
                return Err(bad(&format!(
                    "{cell} B{b} T{t} H{h} is timed at I = {} and I = {i}; a table keys on \
                     (B, T, H): bench one input size per shape",
                    g.0
                )));
            }
            g.1.insert(imp.to_string(), ms);
        }
        for ((cell, pass, b, t, h), (_, ms)) in groups {
            table.insert((&cell, &pass), (b, t, h), ms)?;
        }
        if table.entries.is_empty() {
            return Err(bad(
                "no lstm, gru or rnn row of persistent, stepwise, resident or grid",
            ));
        }
        Ok(table)
    }

    /// Reads and checks a table file.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = crate::limits::read_regular_file(path)?;
        let t: Self = serde_json::from_slice(&bytes)
            .map_err(|e| Error::Format(format!("{}: {e}", path.display())))?;
        t.check()
            .map_err(|e| Error::Format(format!("{}: {e}", path.display())))?;
        Ok(t)
    }

    /// Writes the table as pretty JSON.
    pub fn save(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self)
            .map_err(|e| Error::Format(format!("cannot encode the table: {e}")))?;
        std::fs::write(path, text)
            .map_err(|e| Error::Config(format!("cannot write {}: {e}", path.display())))
    }

    /// Checks the format tag and every entry.
    pub fn check(&self) -> Result<()> {
        if self.format != FORMAT {
            return Err(Error::Format(format!(
                "format {:?}, expected {FORMAT:?}",
                self.format
            )));
        }
        self.entries.iter().try_for_each(check_entry)
    }

    /// The algorithms of the entry nearest to (cell, pass, b, h), fastest first; empty when
    /// no entry of that cell and pass lies within [`MAX_OCTAVES`]. Among equally near
    /// entries the one nearest in sequence length `t` decides.
    pub fn ranked(
        &self,
        cell: &str,
        train: bool,
        (b, t, h): (usize, usize, usize),
    ) -> Vec<Algorithm> {
        let pass = if train { "forward_backward" } else { "forward" };
        let oct = |x: usize, y: usize| ((x.max(1) as f64) / (y.max(1) as f64)).log2().abs();
        let best = self
            .entries
            .iter()
            .filter(|e| e.cell == cell && e.pass == pass)
            .map(|e| ((oct(e.b, b) + oct(e.h, h), oct(e.t, t)), e))
            .filter(|((d, _), _)| *d <= MAX_OCTAVES + 1e-9)
            .min_by(|x, y| x.0.0.total_cmp(&y.0.0).then(x.0.1.total_cmp(&y.0.1)));
        best.map(|(_, e)| e.ranked.iter().filter_map(|n| algorithm(n).ok()).collect())
            .unwrap_or_default()
    }

    /// The table as Markdown (for BENCHMARKS.md): one row per entry, the chosen algorithm
    /// first, then every algorithm's time.
    pub fn markdown(&self) -> String {
        let mut s = format!(
            "Auto table for {} ({}, {}):\n\n| cell | pass | B | T | H | Auto picks | {} |\n|---|---|---|---|---|---|{}\n",
            self.adapter.name,
            self.adapter.backend,
            self.adapter.driver,
            ALGORITHMS
                .iter()
                .map(|a| a.name())
                .collect::<Vec<_>>()
                .join(" ms | ")
                + " ms",
            "---|".repeat(ALGORITHMS.len())
        );
        for e in &self.entries {
            let times: Vec<String> = ALGORITHMS
                .iter()
                .map(|a| e.ms.get(a.name()).map_or("—".into(), |v| format!("{v:.3}")))
                .collect();
            s += &format!(
                "| {} | {} | {} | {} | {} | {} | {} |\n",
                e.cell,
                e.pass,
                e.b,
                e.t,
                e.h,
                e.ranked.first().map_or("—", |n| n.as_str()),
                times.join(" | ")
            );
        }
        s
    }
}

/// The shapes `wgpu-rnn tune` measures by default (B, T, I, H with I = H): batches 1, 8, 64
/// and 256 by hidden sizes 64, 128, 256 and 512 at T = 100 on GPUs; B 1 and 8 by H 16 and 32
/// at T = 20 with `quick` (software adapters).
pub fn default_shapes(quick: bool) -> Vec<(usize, usize, usize, usize)> {
    let (bs, hs, t): (&[usize], &[usize], usize) = if quick {
        (&[1, 8], &[16, 32], 20)
    } else {
        (&[1, 8, 64, 256], &[64, 128, 256, 512], 100)
    };
    bs.iter()
        .flat_map(|&b| hs.iter().map(move |&h| (b, t, h, h)))
        .collect()
}

/// Times every recurrence algorithm on `gpu` for each cell and shape (forward and
/// forward+backward, `runs` timed calls each, the `bench` machinery) and returns the table
/// with the bench report it came from. Algorithms that cannot run a shape are left out of
/// its entry.
pub fn measure(
    gpu: &crate::Backend,
    cells: &[String],
    shapes: &[(usize, usize, usize, usize)],
    runs: usize,
) -> Result<(AutoTable, crate::bench::BenchReport)> {
    if let Some(c) = cells
        .iter()
        .find(|c| !["lstm", "gru", "rnn"].contains(&c.as_str()))
    {
        return Err(Error::Config(format!(
            "tune: cell {c:?}: the Auto table covers lstm, gru and rnn"
        )));
    }
    let opts = crate::bench::BenchOptions {
        quick: true,
        cells: cells.to_vec(),
        runs,
        impls: ALGORITHMS.iter().map(|a| a.name().to_string()).collect(),
        shapes: shapes.to_vec(),
        gemm_shapes: Vec::new(),
    };
    let report = crate::bench::run(&opts, gpu)?;
    let value = serde_json::to_value(&report)
        .map_err(|e| Error::Format(format!("cannot encode the bench report: {e}")))?;
    Ok((AutoTable::from_bench(&value)?, report))
}

/// Algorithm names sorted by time, fastest first (ties by name, so the order is stable).
fn rank(ms: &BTreeMap<String, f64>) -> Vec<String> {
    let mut v: Vec<(&String, f64)> = ms.iter().map(|(k, v)| (k, *v)).collect();
    v.sort_by(|x, y| x.1.total_cmp(&y.1).then(x.0.cmp(y.0)));
    v.into_iter().map(|(k, _)| k.clone()).collect()
}

/// A name of [`ALGORITHMS`].
fn algorithm(name: &str) -> Result<Algorithm> {
    ALGORITHMS
        .iter()
        .copied()
        .find(|a| a.name() == name)
        .ok_or_else(|| {
            Error::Format(format!(
                "algorithm {name:?}: a table ranks {}",
                ALGORITHMS
                    .iter()
                    .map(|a| a.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })
}

fn check_entry(e: &AutoEntry) -> Result<()> {
    let what = format!("entry {} {} B{} H{}", e.cell, e.pass, e.b, e.h);
    if !["lstm", "gru", "rnn"].contains(&e.cell.as_str()) {
        return Err(Error::Format(format!(
            "{what}: cell must be lstm, gru or rnn"
        )));
    }
    if !["forward", "forward_backward"].contains(&e.pass.as_str()) {
        return Err(Error::Format(format!(
            "{what}: pass must be forward or forward_backward"
        )));
    }
    if e.b == 0 || e.h == 0 || e.t == 0 {
        return Err(Error::Format(format!(
            "{what}: B, T and H must be positive"
        )));
    }
    if e.ms.is_empty() {
        return Err(Error::Format(format!("{what}: no algorithm was timed")));
    }
    for (name, v) in &e.ms {
        algorithm(name).map_err(|err| Error::Format(format!("{what}: {err}")))?;
        if !(v.is_finite() && *v > 0.0) {
            return Err(Error::Format(format!(
                "{what}: {name} time {v} is not a positive number of ms"
            )));
        }
    }
    if e.ranked != rank(&e.ms) {
        return Err(Error::Format(format!(
            "{what}: ranked {:?} is not the algorithms fastest first ({:?})",
            e.ranked,
            rank(&e.ms)
        )));
    }
    Ok(())
}

#[cfg(test)]
#[path = "auto_table_tests.rs"]
mod tests;
