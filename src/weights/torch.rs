//! PyTorch state_dict names and layouts for every cell: `weight_ih_l{k}` `(G·H, in)`,
//! `weight_hh_l{k}` `(G·H, P)`, `bias_ih_l{k}`, `bias_hh_l{k}` `(G·H)`, `weight_hr_l{k}`
//! `(P, H)` (LSTM projection), suffix `_reverse` for direction 1. G = 4 (LSTM), 3 (GRU), 1 (RNN).

use ndarray::Array1;

use super::{CellWeights, TensorMap, lookup, require, to1, to2};
use crate::cpu::lstm::LstmDims;
use crate::error::{Error, Result};

/// The PyTorch suffix of one layer-direction: `_l0`, `_l1_reverse`, ...
pub fn torch_suffix(layer: usize, dir: usize) -> String {
    format!("_l{layer}{}", if dir == 1 { "_reverse" } else { "" })
}

fn reject(map: &TensorMap, name: &str, why: &str) -> Result<()> {
    if lookup(map, name)?.is_some() {
        return Err(Error::Weights(format!("unexpected tensor {name}: {why}")));
    }
    Ok(())
}

/// Reads every layer-direction's tensors. Missing, misshapen or unexpected tensors (a layer,
/// direction or projection the config does not have) are errors naming the tensor.
pub(crate) fn import(
    dims: LstmDims,
    gates: usize,
    bias: bool,
    map: &TensorMap,
) -> Result<Vec<CellWeights>> {
    dims.validate()?;
    let (h, p, dn) = (dims.hidden_size, dims.out_size(), dims.directions());
    let gh = gates * h;
    let mut cells = Vec::with_capacity(dims.cell_count());
    for layer in 0..dims.num_layers {
        let inp = dims.layer_input_size(layer);
        for dir in 0..dn {
            let sfx = torch_suffix(layer, dir);
            let name = |base: &str| format!("{base}{sfx}");
            let w_ih = to2(
                require(map, &name("weight_ih"), &[gh, inp])?,
                &name("weight_ih"),
            )?;
            let w_hh = to2(
                require(map, &name("weight_hh"), &[gh, p])?,
                &name("weight_hh"),
            )?;
            let (b_ih, b_hh) = if bias {
                (
                    to1(require(map, &name("bias_ih"), &[gh])?, &name("bias_ih"))?,
                    to1(require(map, &name("bias_hh"), &[gh])?, &name("bias_hh"))?,
                )
            } else {
                reject(map, &name("bias_ih"), "the config says bias = false")?;
                (Array1::zeros(gh), Array1::zeros(gh))
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
            cells.push(CellWeights {
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
    Ok(cells)
}

/// Names parameters (or gradients, which have the same shapes) the PyTorch way.
pub(crate) fn export(dims: &LstmDims, bias: bool, cells: &[CellWeights]) -> TensorMap {
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
