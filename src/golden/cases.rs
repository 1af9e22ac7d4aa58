//! Runs one golden case through the library: reads the config keys every cell shares, builds
//! the layer from the file's native weights, runs forward and backward, and names the results
//! as the golden names its references.

use ndarray::{Array3, ArrayD, ArrayView3, Axis, Ix2, Ix3};
use serde_json::Value;

use super::Golden;
use crate::algorithm::Algorithm;
use crate::error::{Error, Result};
use crate::layers::Backend;
use crate::layers::gru::{Gru, GruConfig};
use crate::layers::lstm::{Lstm, LstmConfig};
use crate::layers::simple_rnn::{Nonlinearity, SimpleRnn, SimpleRnnConfig};
use crate::weights::TensorMap;

/// What every recurrent case's config says, whatever the cell.
struct Spec {
    keras: bool,
    input: usize,
    hidden: usize,
    num_layers: usize,
    bidirectional: bool,
    proj_size: usize,
    batch_first: bool,
    bias: bool,
    go_backwards: bool,
    lengths: Option<Vec<usize>>,
    /// Keras `return_sequences=False` returns only the last processed step.
    full_seq: bool,
}

impl Spec {
    fn time_axis(&self) -> usize {
        usize::from(self.batch_first)
    }
}

fn spec(g: &Golden) -> Result<Spec> {
    let keras = match g.str_key("framework") {
        Some("keras") => true,
        Some("torch") | None => false,
        Some(f) => return Err(Error::Unsupported(format!("framework {f:?}"))),
    };
    for k in ["dropout", "recurrent_dropout"] {
        if let Some(v) = g.config.get(k).and_then(Value::as_f64)
            && v != 0.0
        {
            return Err(Error::Unsupported(format!(
                "{k} = {v} (training-time dropout)"
            )));
        }
    }
    let x = g.tensor("x")?;
    let hidden = match g.usize_key("hidden_size")? {
        Some(h) => h,
        None => g
            .usize_key("units")?
            .ok_or_else(|| Error::Format(format!("{}: no hidden_size or units", g.case)))?,
    };
    let input = match g.usize_key("input_size")? {
        Some(i) => i,
        None => *x.shape().last().unwrap_or(&0),
    };
    let layout = g
        .str_key("x_layout")
        .unwrap_or(if keras { "BTI" } else { "TBI" });
    let lengths = match g.config.get("lengths") {
        None | Some(Value::Null) => None,
        Some(Value::Array(v)) => Some(
            v.iter()
                .map(|l| {
                    l.as_u64()
                        .map(|x| x as usize)
                        .ok_or_else(|| Error::Format(format!("lengths entry {l}")))
                })
                .collect::<Result<_>>()?,
        ),
        Some(v) => return Err(Error::Format(format!("lengths = {v}"))),
    };
    Ok(Spec {
        keras,
        input,
        hidden,
        num_layers: g.usize_key("num_layers")?.unwrap_or(1),
        bidirectional: g.bool_key("bidirectional", false),
        proj_size: g.usize_key("proj_size")?.unwrap_or(0),
        batch_first: layout == "BTI" || g.bool_key("batch_first", false),
        bias: g.bool_key(if keras { "use_bias" } else { "bias" }, true),
        go_backwards: g.bool_key("go_backwards", false),
        lengths,
        full_seq: g.bool_key("return_sequences", true),
    })
}

fn require_activation(g: &Golden, key: &str, allowed: &[&str]) -> Result<()> {
    match g.str_key(key) {
        Some(a) if !allowed.contains(&a) => Err(Error::Unsupported(format!(
            "{key} {a:?} (supported: {allowed:?})"
        ))),
        _ => Ok(()),
    }
}

fn view3<'a>(a: &'a ArrayD<f32>, name: &str) -> Result<ArrayView3<'a, f32>> {
    a.view()
        .into_dimensionality::<Ix3>()
        .map_err(|e| Error::Format(format!("{name}: {e}")))
}

/// A `(B, ·)` Keras state as the crate's `(1, B, ·)` one; `(L·D, B, ·)` is kept.
fn state3(g: &Golden, name: &str) -> Result<Option<ArrayD<f32>>> {
    let Some(a) = g.tensors.get(name) else {
        return Ok(None);
    };
    match a.ndim() {
        2 => Ok(Some(
            a.view()
                .into_dimensionality::<Ix2>()
                .map_err(|e| Error::Format(format!("{name}: {e}")))?
                .insert_axis(Axis(0))
                .to_owned()
                .into_dyn(),
        )),
        3 => Ok(Some(a.clone())),
        n => Err(Error::Format(format!(
            "{name} has {n} dimensions; expected 2 or 3"
        ))),
    }
}

fn opt_view<'a>(a: &'a Option<ArrayD<f32>>, name: &str) -> Result<Option<ArrayView3<'a, f32>>> {
    a.as_ref().map(|a| view3(a, name)).transpose()
}

/// The full-sequence `dy_out` (a last-step-only gradient is placed at the last step).
fn full_dy(g: &Golden, sp: &Spec, out: &Array3<f32>) -> Result<Array3<f32>> {
    let mut full = Array3::<f32>::zeros(out.dim());
    let Some(d) = g.tensors.get("dy_out") else {
        return Ok(full);
    };
    let bad = || {
        Error::Format(format!(
            "dy_out has shape {:?}; out is {:?}",
            d.shape(),
            out.shape()
        ))
    };
    if sp.full_seq {
        let d = view3(d, "dy_out")?;
        if d.dim() != out.dim() {
            return Err(bad());
        }
        full.assign(&d);
    } else {
        let ax = Axis(sp.time_axis());
        let last = full.len_of(ax) - 1;
        let mut slot = full.index_axis_mut(ax, last);
        let d = d.view().into_dimensionality::<Ix2>().map_err(|_| bad())?;
        if slot.shape() != d.shape() {
            return Err(bad());
        }
        slot.assign(&d);
    }
    Ok(full)
}

/// Results named as the golden names them; states shaped like the golden's (Keras `(B, ·)`).
struct Produced<'g> {
    g: &'g Golden,
    map: TensorMap,
}

impl Produced<'_> {
    fn put_out(&mut self, sp: &Spec, out: Array3<f32>) {
        let v = if sp.full_seq {
            out.into_dyn()
        } else {
            let ax = Axis(sp.time_axis());
            let last = out.len_of(ax) - 1;
            out.index_axis(ax, last).to_owned().into_dyn()
        };
        self.map.insert("out".into(), v);
    }

    fn put_state(&mut self, name: &str, a: Array3<f32>) {
        let v = match self.g.tensors.get(name) {
            Some(r) if r.ndim() == 2 => a.index_axis(Axis(0), 0).to_owned().into_dyn(),
            _ => a.into_dyn(),
        };
        self.map.insert(name.into(), v);
    }

    fn put_weights(&mut self, w: TensorMap) {
        for (k, v) in w {
            self.map.insert(format!("grad_{k}"), v);
        }
    }
}

/// Runs the case; returns every produced tensor under the golden's names.
pub(super) fn run(g: &Golden, backend: &Backend, algo: Algorithm) -> Result<TensorMap> {
    let cell = g
        .str_key("cell")
        .ok_or_else(|| Error::Format(format!("{}: config has no cell", g.case)))?;
    if cell == "convlstm2d" {
        return super::convlstm_case::run(g, backend, algo);
    }
    const CELLS: [&str; 7] = [
        "lstm",
        "gru",
        "rnn_tanh",
        "rnn_relu",
        "rnn",
        "simple_rnn",
        "simplernn",
    ];
    if !CELLS.contains(&cell) {
        return Err(Error::Unsupported(format!(
            "cell {cell:?} (this build runs lstm, gru, rnn_tanh, rnn_relu, convlstm2d)"
        )));
    }
    let sp = spec(g)?;
    let mut p = Produced {
        g,
        map: TensorMap::new(),
    };
    let x = view3(g.tensor("x")?, "x")?;
    let lengths = sp.lengths.as_deref();
    let h0 = state3(g, "h0")?;
    let dyh = state3(g, "dy_h_n")?;
    match cell {
        "lstm" => {
            require_activation(g, "activation", &["tanh"])?;
            require_activation(g, "recurrent_activation", &["sigmoid"])?;
            let mut cfg = LstmConfig::new(sp.input, sp.hidden);
            (cfg.num_layers, cfg.bidirectional, cfg.proj_size) =
                (sp.num_layers, sp.bidirectional, sp.proj_size);
            (cfg.batch_first, cfg.bias, cfg.go_backwards) =
                (sp.batch_first, sp.bias, sp.go_backwards);
            let mut l = if sp.keras {
                Lstm::from_keras(cfg, &g.tensors, backend.clone())?
            } else {
                Lstm::from_torch(cfg, &g.tensors, backend.clone())?
            };
            l.set_algorithm(algo);
            let c0 = state3(g, "c0")?;
            let state = match (opt_view(&h0, "h0")?, opt_view(&c0, "c0")?) {
                (Some(h), Some(c)) => Some((h, c)),
                (None, None) => None,
                _ => return Err(Error::Format("h0 and c0 must come together".into())),
            };
            let (y, tr) = l.forward_train(x, state, lengths)?;
            let dy = full_dy(g, &sp, &y.out)?;
            let dyc = state3(g, "dy_c_n")?;
            // Either state gradient may be absent: the other one is then zero.
            let dstate = match (opt_view(&dyh, "dy_h_n")?, opt_view(&dyc, "dy_c_n")?) {
                (None, None) => None,
                (h, c) => Some((
                    h.map(|v| v.to_owned())
                        .unwrap_or_else(|| Array3::zeros(y.h_n.dim())),
                    c.map(|v| v.to_owned())
                        .unwrap_or_else(|| Array3::zeros(y.c_n.dim())),
                )),
            };
            let gr = l.backward(
                &tr,
                dy.view(),
                dstate.as_ref().map(|(h, c)| (h.view(), c.view())),
            )?;
            p.put_out(&sp, y.out);
            p.put_state("h_n", y.h_n);
            p.put_state("c_n", y.c_n);
            p.map.insert("grad_x".into(), gr.dx.into_dyn());
            p.put_state("grad_h0", gr.dh0);
            p.put_state("grad_c0", gr.dc0);
            p.put_weights(gr.weights);
        }
        "gru" => {
            require_activation(g, "activation", &["tanh"])?;
            require_activation(g, "recurrent_activation", &["sigmoid"])?;
            let mut cfg = GruConfig::new(sp.input, sp.hidden);
            (cfg.num_layers, cfg.bidirectional) = (sp.num_layers, sp.bidirectional);
            (cfg.batch_first, cfg.bias, cfg.go_backwards) =
                (sp.batch_first, sp.bias, sp.go_backwards);
            cfg.reset_after = g.bool_key("reset_after", true);
            let mut l = if sp.keras {
                Gru::from_keras(cfg, &g.tensors, backend.clone())?
            } else {
                Gru::from_torch(cfg, &g.tensors, backend.clone())?
            };
            l.set_algorithm(algo);
            let (y, tr) = l.forward_train(x, opt_view(&h0, "h0")?, lengths)?;
            let dy = full_dy(g, &sp, &y.out)?;
            let gr = l.backward(&tr, dy.view(), opt_view(&dyh, "dy_h_n")?)?;
            p.put_out(&sp, y.out);
            p.put_state("h_n", y.h_n);
            p.map.insert("grad_x".into(), gr.dx.into_dyn());
            p.put_state("grad_h0", gr.dh0);
            p.put_weights(gr.weights);
        }
        "rnn_tanh" | "rnn_relu" | "rnn" | "simple_rnn" | "simplernn" => {
            let act = match (cell, g.str_key("nonlinearity").or(g.str_key("activation"))) {
                ("rnn_relu", _) | (_, Some("relu")) => Nonlinearity::Relu,
                ("rnn_tanh", _) | (_, Some("tanh")) | (_, None) => Nonlinearity::Tanh,
                (_, Some(a)) => return Err(Error::Unsupported(format!("RNN nonlinearity {a:?}"))),
            };
            let mut cfg = SimpleRnnConfig::new(sp.input, sp.hidden);
            (cfg.num_layers, cfg.bidirectional) = (sp.num_layers, sp.bidirectional);
            (cfg.batch_first, cfg.bias, cfg.go_backwards) =
                (sp.batch_first, sp.bias, sp.go_backwards);
            cfg.nonlinearity = act;
            let mut l = if sp.keras {
                SimpleRnn::from_keras(cfg, &g.tensors, backend.clone())?
            } else {
                SimpleRnn::from_torch(cfg, &g.tensors, backend.clone())?
            };
            l.set_algorithm(algo);
            let (y, tr) = l.forward_train(x, opt_view(&h0, "h0")?, lengths)?;
            let dy = full_dy(g, &sp, &y.out)?;
            let gr = l.backward(&tr, dy.view(), opt_view(&dyh, "dy_h_n")?)?;
            p.put_out(&sp, y.out);
            p.put_state("h_n", y.h_n);
            p.map.insert("grad_x".into(), gr.dx.into_dyn());
            p.put_state("grad_h0", gr.dh0);
            p.put_weights(gr.weights);
        }
        other => return Err(Error::Unsupported(format!("cell {other:?}"))),
    }
    Ok(p.map)
}
