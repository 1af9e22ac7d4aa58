//! Keras-style `model.summary()`: one row per layer (name and class, output shape, parameter
//! count), then the trainable / non-trainable counts and, last, `Total params: N` with N equal
//! to Keras' `count_params()`.

use std::fmt::Write;

use super::plan::{ModelSpec, fmt_shape};

/// The summary table as text (ends with a newline).
pub fn summary(spec: &ModelSpec) -> String {
    let rows: Vec<[String; 3]> = spec
        .layers
        .iter()
        .map(|l| {
            let shapes: Vec<String> = l.output_shapes.iter().map(fmt_shape).collect();
            let shape = if shapes.len() == 1 {
                shapes[0].clone()
            } else {
                format!("[{}]", shapes.join(", "))
            };
            [
                format!("{} ({})", l.spec.name, l.spec.class_name()),
                shape,
                l.param_count().to_string(),
            ]
        })
        .collect();
    let head = ["Layer (type)", "Output Shape", "Param #"];
    let width = |i: usize| {
        rows.iter()
            .map(|r| r[i].chars().count())
            .chain([head[i].len()])
            .max()
            .unwrap_or(0)
            + 2
    };
    let (w0, w1, w2) = (width(0), width(1), width(2));
    let rule = |c: char| c.to_string().repeat(w0 + w1 + w2);
    let mut s = String::new();
    let _ = writeln!(s, "Model: \"{}\"", spec.name);
    let _ = writeln!(s, "{}", rule('_'));
    let _ = writeln!(s, "{:<w0$}{:<w1$}{:>w2$}", head[0], head[1], head[2]);
    let _ = writeln!(s, "{}", rule('='));
    for (i, r) in rows.iter().enumerate() {
        let _ = writeln!(s, "{:<w0$}{:<w1$}{:>w2$}", r[0], r[1], r[2]);
        let _ = writeln!(s, "{}", rule(if i + 1 == rows.len() { '=' } else { '_' }));
    }
    let total = spec.param_count();
    let trainable = spec.trainable_param_count();
    let _ = writeln!(s, "Trainable params: {trainable}");
    let _ = writeln!(s, "Non-trainable params: {}", total - trainable);
    let _ = writeln!(s, "Total params: {total}");
    s
}
