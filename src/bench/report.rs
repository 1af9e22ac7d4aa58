//! The bench report as text: the table `wgpu-rnn bench` prints, and `compare`, which joins
//! two JSON reports (ours and bench/pytorch_baseline.py's) row by row.

use super::BenchReport;
use crate::error::{Error, Result};

/// A plain-text table of a report.
pub fn table(r: &BenchReport) -> String {
    let mut s = format!(
        "adapter: {} ({}, {}, {})\n{:<11} {:<17} {:<26} {:<11} {:>10} {:>10} {:>10} {:>9} {:>8} {:>5} {:>4} {}\n",
        r.adapter.name,
        r.adapter.backend,
        r.adapter.device_type,
        r.adapter.driver,
        "cell",
        "pass",
        "shape",
        "impl",
        "median_ms",
        "min_ms",
        "recur_ms",
        "encode_ms",
        "GFLOP/s",
        "disp",
        "subm",
        "timing"
    );
    for x in &r.results {
        let shape = match (x.i, x.h, x.frame, x.filters) {
            _ if x.m.is_some() => gemm_shape(x.m, x.k, x.n),
            (Some(i), Some(h), _, _) => format!("B{} T{} I{} H{}", x.b, x.t, i, h),
            (_, _, Some([rr, cc, ch]), Some(f)) => {
                let k = x.kernels.as_ref().map_or(String::new(), |k| {
                    let k: Vec<String> = k.iter().map(|k| k.to_string()).collect();
                    format!(" k{}", k.join("/"))
                });
                format!("B{} T{} {rr}x{cc}x{ch} F{f}{k}", x.b, x.t)
            }
            _ => format!("B{} T{}", x.b, x.t),
        };
        let opt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2}"));
        s.push_str(&format!(
            "{:<11} {:<17} {:<26} {:<11} {:>10.2} {:>10.2} {:>10} {:>9} {:>8.2} {:>5} {:>4} {}\n",
            x.cell,
            x.pass,
            shape,
            x.implementation,
            x.median_ms,
            x.min_ms,
            opt(x.recurrence_ms),
            opt(x.encode_ms),
            x.gflops,
            x.dispatches,
            x.submits,
            x.timing
        ));
    }
    s
}

/// Key of a row: cell, pass and shape.
fn gemm_shape(m: Option<usize>, k: Option<usize>, n: Option<usize>) -> String {
    let g = |v: Option<usize>| v.map_or("?".to_string(), |v| v.to_string());
    format!("M{} K{} N{}", g(m), g(k), g(n))
}

fn row_key(r: &serde_json::Value) -> String {
    let g = |k: &str| r.get(k).map(|v| v.to_string()).unwrap_or_default();
    if r.get("M").is_some() {
        let u = |k: &str| r.get(k).and_then(|v| v.as_u64()).map(|v| v as usize);
        return format!(
            "{} {} {}",
            r["cell"].as_str().unwrap_or("?"),
            r["pass"].as_str().unwrap_or("?"),
            gemm_shape(u("M"), u("K"), u("N"))
        );
    }
    format!(
        "{} {} B{} T{} {}",
        r["cell"].as_str().unwrap_or("?"),
        r["pass"].as_str().unwrap_or("?"),
        g("B"),
        g("T"),
        match (r.get("I"), r.get("H")) {
            (Some(i), Some(h)) => format!("I{i} H{h}"),
            // ConvLSTM2D: the stacked layers' kernel sizes join the key where a row has them.
            _ => match r.get("kernels") {
                Some(k) => format!("frame {} F{} kernels {k}", g("frame"), g("filters")),
                None => format!("frame {} F{}", g("frame"), g("filters")),
            },
        }
    )
}

/// Checks one result row of a report and returns its `(impl, time)`: `cell`, `pass` and
/// `impl` are strings, the sizes are positive integers (`B`, `T` and `I`, `H`, or `frame`
/// and `filters`; or `M`, `K`, `N` for GEMM rows), and `median_ms` is a finite positive
/// number. The time is the row's `wall_ms` when it has one (this crate's GPU rows: the
/// median wall time of a whole call, the clock PyTorch's baseline uses), else `median_ms`.
/// The error names the field and its value.
fn check_row(r: &serde_json::Value) -> std::result::Result<Row, String> {
    let text = |k: &str| -> std::result::Result<&str, String> {
        match r.get(k) {
            Some(serde_json::Value::String(s)) => Ok(s),
            Some(v) => Err(format!("{k} = {v} is not a string")),
            None => Err(format!("no {k}")),
        }
    };
    let size = |k: &str| -> std::result::Result<u64, String> {
        match r.get(k) {
            Some(v) => v
                .as_u64()
                .filter(|&n| n > 0)
                .ok_or_else(|| format!("{k} = {v} is not a positive integer")),
            None => Err(format!("no {k}")),
        }
    };
    text("cell")?;
    text("pass")?;
    let imp = text("impl")?.to_string();
    if r.get("M").is_some() {
        for k in ["M", "K", "N"] {
            size(k)?;
        }
    } else {
        size("B")?;
        size("T")?;
        if r.get("I").is_some() || r.get("H").is_some() {
            size("I")?;
            size("H")?;
        } else {
            let frame = r.get("frame").ok_or("no I, H or frame")?;
            size("filters")?;
            let ok = frame.as_array().is_some_and(|a| {
                a.len() == 3 && a.iter().all(|d| d.as_u64().is_some_and(|d| d > 0))
            });
            if !ok {
                return Err(format!("frame = {frame} is not three positive integers"));
            }
        }
    }
    let ms = |k: &str| -> std::result::Result<Option<f64>, String> {
        match r.get(k) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(v) => match v.as_f64() {
                Some(x) if x.is_finite() && x > 0.0 => Ok(Some(x)),
                _ => Err(format!(
                    "{k} = {v} is not a positive finite number of milliseconds"
                )),
            },
        }
    };
    let med = ms("median_ms")?.ok_or("no median_ms")?;
    Ok(Row {
        imp,
        ms: ms("wall_ms")?.unwrap_or(med),
        device: ms("device_wall_ms")?,
    })
}

/// One checked row: its implementation, its time (wall where it has one) and its
/// device-resident wall time, if measured.
struct Row {
    imp: String,
    ms: f64,
    device: Option<f64>,
}

/// A side-by-side table of two reports (this crate's and, say, `bench/pytorch_baseline.py`'s
/// on the same machine): one row per (cell, pass, shape) both contain, every implementation's
/// time (wall time where a row has `wall_ms`, see [`check_row`]), and `b/a` = the second
/// report's best time over the first's (above 1: the first is faster). Where the first
/// report's rows carry `device_wall_ms` (input on the device, outputs left there: the clock
/// of PyTorch's baseline, whose tensors live on the GPU), a second section compares those
/// against the second report's times. Errors when the inputs are not reports.
pub fn compare(a: &serde_json::Value, b: &serde_json::Value) -> Result<String> {
    use std::collections::BTreeMap;
    let rows = |v: &serde_json::Value, which: &str| -> Result<BTreeMap<String, Vec<Row>>> {
        let list = v["results"]
            .as_array()
            .ok_or_else(|| Error::Format(format!("report {which} has no results array")))?;
        let mut m: BTreeMap<String, Vec<Row>> = BTreeMap::new();
        for (n, r) in list.iter().enumerate() {
            let row = check_row(r)
                .map_err(|e| Error::Format(format!("report {which}, results[{n}]: {e}")))?;
            m.entry(row_key(r)).or_default().push(row);
        }
        Ok(m)
    };
    let (ra, rb) = (rows(a, "a")?, rows(b, "b")?);
    let name = |v: &serde_json::Value| v["adapter"]["name"].as_str().unwrap_or("?").to_string();
    let mut s = format!("a: {}\nb: {}\n", name(a), name(b));
    let fmt = |v: &[(String, f64)]| {
        v.iter()
            .map(|(i, m)| format!("{i} {m:.2}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let best = |v: &[(String, f64)]| v.iter().map(|x| x.1).fold(f64::INFINITY, f64::min);
    let times = |v: &[Row], device: bool| -> Vec<(String, f64)> {
        v.iter()
            .filter_map(|r| {
                let ms = if device { r.device } else { Some(r.ms) };
                ms.map(|m| (r.imp.clone(), m))
            })
            .collect()
    };
    let mut device_lines = String::new();
    for (key, va) in &ra {
        let Some(vb) = rb.get(key) else { continue };
        let (ta, tb) = (times(va, false), times(vb, false));
        s.push_str(&format!(
            "{key}: a [{}] | b [{}] | b/a {:.2}\n",
            fmt(&ta),
            fmt(&tb),
            best(&tb) / best(&ta)
        ));
        let da = times(va, true);
        if !da.is_empty() {
            device_lines.push_str(&format!(
                "{key}: a [{}] | b [{}] | b/a {:.2}\n",
                fmt(&da),
                fmt(&tb),
                best(&tb) / best(&da)
            ));
        }
    }
    if !device_lines.is_empty() {
        s.push_str("a with its input on the device and outputs left there (device_wall_ms):\n");
        s.push_str(&device_lines);
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(rows: serde_json::Value) -> serde_json::Value {
        serde_json::json!({"adapter": {"name": "x"}, "results": rows})
    }

    /// GPU rows are compared on their wall time (the clock of PyTorch's baseline), not on
    /// their GPU-timestamp median.
    #[test]
    fn compare_uses_wall_ms_where_rows_have_it() {
        let row = |imp: &str, med: f64, wall: Option<f64>| {
            let mut r = serde_json::json!({"cell": "lstm", "pass": "forward", "B": 1, "T": 10,
                "I": 4, "H": 4, "impl": imp, "median_ms": med});
            if let Some(w) = wall {
                r["wall_ms"] = serde_json::json!(w);
            }
            r
        };
        let ours = report(serde_json::json!([
            row("stepwise", 1.0, Some(4.0)),
            row("resident", 2.0, Some(3.0))
        ]));
        let torch = report(serde_json::json!([row("cudnn-fp32", 6.0, None)]));
        let s = compare(&ours, &torch).unwrap();
        assert!(s.contains("stepwise 4.00, resident 3.00"), "{s}");
        assert!(s.contains("b/a 2.00"), "{s}");
        // ConvLSTM2D rows join on frame, filters and the stacked kernel sizes.
        let conv = |imp: &str, kernels: serde_json::Value, wall: f64| {
            serde_json::json!({"cell": "convlstm2d", "pass": "forward", "B": 8, "T": 10,
                "frame": [64, 64, 1], "filters": 64, "kernels": kernels, "impl": imp,
                "median_ms": wall, "wall_ms": wall})
        };
        let ours = report(serde_json::json!([
            conv("tiled", serde_json::json!([5, 3, 1]), 10.0),
            conv("tiled", serde_json::json!([3]), 2.0)
        ]));
        let torch = report(serde_json::json!([conv(
            "torch-concat-fp32",
            serde_json::json!([5, 3, 1]),
            30.0
        )]));
        let s = compare(&ours, &torch).unwrap();
        assert!(
            s.contains("kernels [5,3,1]: a [tiled 10.00] | b [torch-concat-fp32 30.00] | b/a 3.00"),
            "{s}"
        );
        assert!(!s.contains("kernels [3]"), "{s}");
        // Rows with device_wall_ms add a second section on that clock.
        let mut dev = row("stepwise", 1.0, Some(4.0));
        dev["device_wall_ms"] = serde_json::json!(1.5);
        let cudnn = report(serde_json::json!([row("cudnn-fp32", 6.0, None)]));
        let s = compare(&report(serde_json::json!([dev])), &cudnn).unwrap();
        let (wall, device) = s
            .split_once("(device_wall_ms):\n")
            .expect("a device section");
        assert!(wall.contains("b/a 1.50"), "{s}");
        assert!(
            device.contains("a [stepwise 1.50] | b [cudnn-fp32 6.00] | b/a 4.00"),
            "{s}"
        );
        assert!(!compare(&ours, &torch).unwrap().contains("device_wall_ms"));
        let bad = report(serde_json::json!([row("stepwise", 1.0, Some(-1.0))]));
        let e = compare(&bad, &torch).unwrap_err().to_string();
        assert!(e.contains("wall_ms = -1.0"), "{e}");
    }
}
