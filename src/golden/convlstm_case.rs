//! Runs a `convlstm2d` golden case (Keras ConvLSTM2D) through [`ConvLstm2d`].

use ndarray::{ArrayD, ArrayView4, Ix4, Ix5};
use serde_json::Value;

use super::Golden;
use crate::algorithm::Algorithm;
use crate::error::{Error, Result};
use crate::layers::Backend;
use crate::layers::convlstm::{Activation, ConvLstm2d, ConvLstm2dConfig, Padding};
use crate::weights::TensorMap;

/// A Keras size given as `n` or `[a, b]`.
fn pair(g: &Golden, key: &str, default: (usize, usize)) -> Result<(usize, usize)> {
    let bad = |v: &Value| Error::Format(format!("{}: {key} = {v} is not a size pair", g.case));
    match g.config.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(v @ Value::Number(_)) => {
            let n = v.as_u64().ok_or_else(|| bad(v))? as usize;
            Ok((n, n))
        }
        Some(v @ Value::Array(a)) if a.len() == 2 => {
            let n = |i: usize| a[i].as_u64().map(|x| x as usize).ok_or_else(|| bad(v));
            Ok((n(0)?, n(1)?))
        }
        Some(v) => Err(bad(v)),
    }
}

fn view4<'a>(a: &'a ArrayD<f32>, name: &str) -> Result<ArrayView4<'a, f32>> {
    a.view()
        .into_dimensionality::<Ix4>()
        .map_err(|e| Error::Format(format!("{name}: {e}")))
}

/// Runs the case; returns every produced tensor under the golden's names.
pub(super) fn run(g: &Golden, backend: &Backend, algo: Algorithm) -> Result<TensorMap> {
    if let Some(f) = g.str_key("data_format")
        && f != "channels_last"
    {
        return Err(Error::Unsupported(format!(
            "ConvLSTM2D data_format {f:?} (channels_last only)"
        )));
    }
    if pair(g, "recurrent_strides", (1, 1))? != (1, 1)
        || g.str_key("recurrent_padding").is_some_and(|p| p != "same")
    {
        return Err(Error::Unsupported(
            "a recurrent convolution other than stride 1, same".into(),
        ));
    }
    let x = g.tensor("x")?;
    let xs = x.shape();
    if xs.len() != 5 {
        return Err(Error::Format(format!(
            "x has shape {xs:?}; expected (B, T, rows, cols, Cin)"
        )));
    }
    let filters = g
        .usize_key("filters")?
        .ok_or_else(|| Error::Format("no filters".into()))?;
    let mut cfg = ConvLstm2dConfig::new(
        xs[2],
        xs[3],
        xs[4],
        filters,
        pair(g, "kernel_size", (0, 0))?,
    );
    cfg.strides = pair(g, "strides", (1, 1))?;
    cfg.dilation_rate = pair(g, "dilation_rate", (1, 1))?;
    cfg.padding = match g.str_key("padding").unwrap_or("valid") {
        "same" => Padding::Same,
        "valid" => Padding::Valid,
        other => return Err(Error::Unsupported(format!("padding {other:?}"))),
    };
    let activation = |key: &str, default: Activation| match g.str_key(key) {
        Some(name) => Activation::from_keras(name).map_err(|e| Error::Unsupported(e.to_string())),
        None => Ok(default),
    };
    cfg.activation = activation("activation", Activation::Tanh)?;
    cfg.recurrent_activation = activation("recurrent_activation", Activation::Sigmoid)?;
    cfg.use_bias = g.bool_key("use_bias", true);
    cfg.return_sequences = g.bool_key("return_sequences", false);
    cfg.go_backwards = g.bool_key("go_backwards", false);
    let mut layer = ConvLstm2d::from_keras(cfg, &g.tensors, backend.clone())?;
    layer.set_algorithm(algo);

    let x = x
        .view()
        .into_dimensionality::<Ix5>()
        .map_err(|e| Error::Format(format!("x: {e}")))?;
    let state = match (g.tensors.get("h0"), g.tensors.get("c0")) {
        (Some(h), Some(c)) => Some((view4(h, "h0")?, view4(c, "c0")?)),
        (None, None) => None,
        _ => return Err(Error::Format("h0 and c0 must come together".into())),
    };
    let (y, trace) = layer.forward_train(x, state)?;
    let dy = match g.tensors.get("dy_out") {
        Some(d) => d.clone(),
        None => ArrayD::zeros(y.out.shape()),
    };
    let dyh = g
        .tensors
        .get("dy_h_n")
        .map(|a| view4(a, "dy_h_n"))
        .transpose()?;
    let dyc = g
        .tensors
        .get("dy_c_n")
        .map(|a| view4(a, "dy_c_n"))
        .transpose()?;
    // Either state gradient may be absent: the other one is then zero.
    let z = ndarray::Array4::<f32>::zeros(y.h_n.dim());
    let dstate = match (dyh, dyc) {
        (None, None) => None,
        (h, c) => Some((h.unwrap_or(z.view()), c.unwrap_or(z.view()))),
    };
    let gr = layer.backward(&trace, dy.view(), dstate)?;
    let mut m = TensorMap::new();
    m.insert("out".into(), y.out);
    m.insert("h_n".into(), y.h_n.into_dyn());
    m.insert("c_n".into(), y.c_n.into_dyn());
    m.insert("grad_x".into(), gr.dx.into_dyn());
    m.insert("grad_h0".into(), gr.dh0.into_dyn());
    m.insert("grad_c0".into(), gr.dc0.into_dyn());
    for (k, v) in gr.weights {
        m.insert(format!("grad_{k}"), v);
    }
    Ok(m)
}
