//! Keras layouts: `kernel` `(I, G·U)`, `recurrent_kernel` `(U, G·U)`, `bias`, applied as
//! `x @ kernel`. Converted on import to the canonical PyTorch layout (transpose; GRU gate
//! blocks z,r,h → r,z,n; the one LSTM/RNN bias goes to `b_ih`) and back on export.

use ndarray::{Array1, Array2, ArrayD, Axis, concatenate, s};

use super::{CellWeights, TensorMap, require, to1, to2};
use crate::cpu::lstm::LstmDims;
use crate::error::{Error, Result};

/// The Keras recurrent layers this crate reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KerasCell {
    /// LSTM, gates i,f,c,o (the PyTorch order).
    Lstm,
    /// GRU, gates z,r,h; `reset_after` picks the bias shape (2, 3U) or (3U,).
    Gru { reset_after: bool },
    /// SimpleRNN.
    SimpleRnn,
}

impl KerasCell {
    fn gates(self) -> usize {
        match self {
            KerasCell::Lstm => 4,
            KerasCell::Gru { .. } => 3,
            KerasCell::SimpleRnn => 1,
        }
    }
}

fn one_layer(dims: &LstmDims) -> Result<()> {
    if dims.num_layers != 1 || dims.bidirectional || dims.proj_size != 0 {
        return Err(Error::Config(format!(
            "a Keras recurrent layer is one unidirectional layer without projection; got \
             num_layers {}, bidirectional {}, proj_size {}",
            dims.num_layers, dims.bidirectional, dims.proj_size
        )));
    }
    Ok(())
}

/// Swaps the first two gate blocks (Keras z,r ↔ PyTorch r,z) along `axis`; an involution.
fn swap_zr<A>(
    a: ndarray::ArrayView<f32, A>,
    axis: usize,
    u: usize,
) -> Result<ndarray::Array<f32, A>>
where
    A: ndarray::Dimension + ndarray::RemoveAxis,
{
    let ax = Axis(axis);
    let blocks = [
        a.slice_axis(ax, (u..2 * u).into()),
        a.slice_axis(ax, (0..u).into()),
        a.slice_axis(ax, (2 * u..3 * u).into()),
    ];
    concatenate(ax, &blocks).map_err(|e| Error::Weights(format!("gate reorder: {e}")))
}

/// Reads `kernel`, `recurrent_kernel` and (when `bias`) `bias` into canonical weights.
pub(crate) fn import(
    cell: KerasCell,
    dims: LstmDims,
    bias: bool,
    map: &TensorMap,
) -> Result<CellWeights> {
    dims.validate()?;
    one_layer(&dims)?;
    let (i, u, g) = (dims.input_size, dims.hidden_size, cell.gates());
    let kernel = to2(require(map, "kernel", &[i, g * u])?, "kernel")?;
    let rk = to2(
        require(map, "recurrent_kernel", &[u, g * u])?,
        "recurrent_kernel",
    )?;
    let mut w_ih = kernel.t().as_standard_layout().into_owned();
    let mut w_hh = rk.t().as_standard_layout().into_owned();
    let zeros = || Array1::<f32>::zeros(g * u);
    let (mut b_ih, mut b_hh) = match (cell, bias) {
        (_, false) => {
            if super::lookup(map, "bias")?.is_some() {
                return Err(Error::Weights(
                    "unexpected tensor bias: the config says use_bias = false".into(),
                ));
            }
            (zeros(), zeros())
        }
        (KerasCell::Gru { reset_after: true }, true) => {
            let b = to2(require(map, "bias", &[2, 3 * u])?, "bias")?;
            (b.row(0).to_owned(), b.row(1).to_owned())
        }
        (_, true) => (to1(require(map, "bias", &[g * u])?, "bias")?, zeros()),
    };
    if let KerasCell::Gru { .. } = cell {
        w_ih = swap_zr(w_ih.view(), 0, u)?;
        w_hh = swap_zr(w_hh.view(), 0, u)?;
        b_ih = swap_zr(b_ih.view(), 0, u)?;
        b_hh = swap_zr(b_hh.view(), 0, u)?;
    }
    Ok(CellWeights {
        w_ih,
        w_hh,
        b_ih,
        b_hh,
        w_hr: None,
    })
}

/// Names weights (`gradients = false`) or their gradients the Keras way. For parameters the
/// single LSTM/RNN bias is `b_ih + b_hh`; for gradients `b_ih` already is its gradient.
pub(crate) fn export(
    cell: KerasCell,
    bias: bool,
    c: &CellWeights,
    gradients: bool,
) -> Result<TensorMap> {
    let u = c.w_hh.ncols();
    let t = |a: &Array2<f32>| -> Result<Array2<f32>> {
        let a = match cell {
            KerasCell::Gru { .. } => swap_zr(a.view(), 0, u)?,
            _ => a.clone(),
        };
        Ok(a.t().as_standard_layout().into_owned())
    };
    let reorder = |a: &Array1<f32>| -> Result<Array1<f32>> {
        match cell {
            KerasCell::Gru { .. } => swap_zr(a.view(), 0, u),
            _ => Ok(a.clone()),
        }
    };
    let mut m = TensorMap::new();
    m.insert("kernel".into(), t(&c.w_ih)?.into_dyn());
    m.insert("recurrent_kernel".into(), t(&c.w_hh)?.into_dyn());
    if bias {
        let b: ArrayD<f32> = match cell {
            KerasCell::Gru { reset_after: true } => {
                let mut b = Array2::<f32>::zeros((2, 3 * u));
                b.slice_mut(s![0, ..]).assign(&reorder(&c.b_ih)?);
                b.slice_mut(s![1, ..]).assign(&reorder(&c.b_hh)?);
                b.into_dyn()
            }
            KerasCell::Gru { reset_after: false } => reorder(&c.b_ih)?.into_dyn(),
            _ if gradients => c.b_ih.clone().into_dyn(),
            _ => (&c.b_ih + &c.b_hh).into_dyn(),
        };
        m.insert("bias".into(), b);
    }
    Ok(m)
}
