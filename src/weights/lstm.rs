//! LSTM weights in PyTorch and Keras layouts, to and from the canonical `LstmParams`.
//!
//! PyTorch: `weight_ih_l{k}` `(4H, in)`, `weight_hh_l{k}` `(4H, P)`, `bias_ih_l{k}`,
//! `bias_hh_l{k}` `(4H)`, `weight_hr_l{k}` `(P, H)`, suffix `_reverse` for direction 1.
//! Keras: `kernel` `(I, 4U)`, `recurrent_kernel` `(U, 4U)`, `bias` `(4U)`; same gate order
//! (i,f,c,o ≡ i,f,g,o), so import is a transpose and the one bias goes to `b_ih`.

use ndarray::{Array1, Array2, ArrayD, Ix1, Ix2};

use super::{TensorMap, lookup, require};
use crate::cpu::lstm::{LstmCellParams, LstmDims, LstmParams};
use crate::error::{Error, Result};

/// The PyTorch suffix of one layer-direction: `_l0`, `_l1_reverse`, ...
pub fn torch_suffix(layer: usize, dir: usize) -> String {
    format!("_l{layer}{}", if dir == 1 { "_reverse" } else { "" })
}

fn to2(v: ndarray::ArrayViewD<f32>, name: &str) -> Result<Array2<f32>> {
    v.to_owned()
        .into_dimensionality::<Ix2>()
        .map_err(|e| Error::Weights(format!("{name}: {e}")))
}

fn to1(v: ndarray::ArrayViewD<f32>, name: &str) -> Result<Array1<f32>> {
    v.to_owned()
        .into_dimensionality::<Ix1>()
        .map_err(|e| Error::Weights(format!("{name}: {e}")))
}

fn reject(map: &TensorMap, name: &str, why: &str) -> Result<()> {
    if lookup(map, name)?.is_some() {
        return Err(Error::Weights(format!("unexpected tensor {name}: {why}")));
    }
    Ok(())
}

/// Builds parameters from PyTorch state_dict tensors. Missing, misshapen or unexpected
/// tensors (a layer or direction or projection the config does not have) are errors.
pub fn from_torch(dims: LstmDims, bias: bool, map: &TensorMap) -> Result<LstmParams<f32>> {
    dims.validate()?;
    let (h, p, dn) = (dims.hidden_size, dims.out_size(), dims.directions());
    let mut cells = Vec::with_capacity(dims.cell_count());
    for layer in 0..dims.num_layers {
        let inp = dims.layer_input_size(layer);
        for dir in 0..dn {
            let sfx = torch_suffix(layer, dir);
            let name = |base: &str| format!("{base}{sfx}");
            let w_ih = to2(
                require(map, &name("weight_ih"), &[4 * h, inp])?,
                &name("weight_ih"),
            )?;
            let w_hh = to2(
                require(map, &name("weight_hh"), &[4 * h, p])?,
                &name("weight_hh"),
            )?;
            let (b_ih, b_hh) = if bias {
                (
                    to1(require(map, &name("bias_ih"), &[4 * h])?, &name("bias_ih"))?,
                    to1(require(map, &name("bias_hh"), &[4 * h])?, &name("bias_hh"))?,
                )
            } else {
                reject(map, &name("bias_ih"), "the config says bias = false")?;
                (Array1::zeros(4 * h), Array1::zeros(4 * h))
            };
            let w_hr = if dims.proj_size > 0 {
                Some(to2(
                    require(map, &name("weight_hr"), &[p, h])?,
                    &name("weight_hr"),
                )?)
            } else {
                reject(map, &name("weight_hr"), "the config says proj_size = 0")?;
                None
            };
            cells.push(LstmCellParams {
                w_ih,
                w_hh,
                b_ih,
                b_hh,
                w_hr,
            });
        }
        if dn == 1 {
            reject(
                map,
                &format!("weight_ih{}", torch_suffix(layer, 1)),
                "the config is not bidirectional",
            )?;
        }
    }
    reject(
        map,
        &format!("weight_ih_l{}", dims.num_layers),
        &format!("the config has num_layers = {}", dims.num_layers),
    )?;
    let p = LstmParams { dims, cells };
    p.validate()?;
    Ok(p)
}

/// Exports parameters (or gradients, which have the same shapes) under PyTorch names.
pub fn to_torch(dims: &LstmDims, bias: bool, cells: &[LstmCellParams<f32>]) -> TensorMap {
    let mut m = TensorMap::new();
    let dn = dims.directions();
    for (ci, c) in cells.iter().enumerate() {
        let sfx = torch_suffix(ci / dn, ci % dn);
        m.insert(format!("weight_ih{sfx}"), c.w_ih.clone().into_dyn());
        m.insert(format!("weight_hh{sfx}"), c.w_hh.clone().into_dyn());
        if bias {
            m.insert(format!("bias_ih{sfx}"), c.b_ih.clone().into_dyn());
            m.insert(format!("bias_hh{sfx}"), c.b_hh.clone().into_dyn());
        }
        if let Some(w) = &c.w_hr {
            m.insert(format!("weight_hr{sfx}"), w.clone().into_dyn());
        }
    }
    m
}

fn keras_dims_ok(dims: &LstmDims) -> Result<()> {
    if dims.num_layers != 1 || dims.bidirectional || dims.proj_size != 0 {
        return Err(Error::Config(format!(
            "a Keras LSTM layer is one unidirectional layer without projection; got \
             num_layers {}, bidirectional {}, proj_size {}",
            dims.num_layers, dims.bidirectional, dims.proj_size
        )));
    }
    Ok(())
}

/// Builds parameters from Keras `kernel`, `recurrent_kernel` and (when `bias`) `bias`.
pub fn from_keras(dims: LstmDims, bias: bool, map: &TensorMap) -> Result<LstmParams<f32>> {
    dims.validate()?;
    keras_dims_ok(&dims)?;
    let (i, u) = (dims.input_size, dims.hidden_size);
    let kernel = to2(require(map, "kernel", &[i, 4 * u])?, "kernel")?;
    let rk = to2(
        require(map, "recurrent_kernel", &[u, 4 * u])?,
        "recurrent_kernel",
    )?;
    let b = if bias {
        to1(require(map, "bias", &[4 * u])?, "bias")?
    } else {
        reject(map, "bias", "the config says use_bias = false")?;
        Array1::zeros(4 * u)
    };
    let p = LstmParams {
        dims,
        cells: vec![LstmCellParams {
            w_ih: kernel.t().as_standard_layout().into_owned(),
            w_hh: rk.t().as_standard_layout().into_owned(),
            b_ih: b,
            b_hh: Array1::zeros(4 * u),
            w_hr: None,
        }],
    };
    p.validate()?;
    Ok(p)
}

/// Exports under Keras names. `gradients`: the cells hold gradients, where `b_ih` and `b_hh`
/// are each already the gradient of the single Keras bias; otherwise parameters, whose
/// Keras bias is `b_ih + b_hh`.
pub fn to_keras(bias: bool, cells: &[LstmCellParams<f32>], gradients: bool) -> TensorMap {
    let mut m = TensorMap::new();
    if let Some(c) = cells.first() {
        let t =
            |a: &Array2<f32>| -> ArrayD<f32> { a.t().as_standard_layout().into_owned().into_dyn() };
        m.insert("kernel".into(), t(&c.w_ih));
        m.insert("recurrent_kernel".into(), t(&c.w_hh));
        if bias {
            let b = if gradients {
                c.b_ih.clone()
            } else {
                &c.b_ih + &c.b_hh
            };
            m.insert("bias".into(), b.into_dyn());
        }
    }
    m
}
