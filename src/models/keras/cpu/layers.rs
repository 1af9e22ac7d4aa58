//! The non-recurrent layers on the CPU: Embedding (gather / scatter-add), Masking, Dense
//! (element-wise activations and softmax, on `(B, F)` or every step of `(B, T, F)`), and the
//! Bidirectional merges.

use ndarray::{Array2, ArrayD, ArrayView2, ArrayViewD, Axis, IxDyn, Zip};

use crate::cpu::Real;
use crate::error::{Error, Result};
use crate::models::keras::spec::{DenseActivation, MergeMode};

/// `(…, F)` as `(rows, F)`.
pub(crate) fn rows<T: Real>(a: ArrayViewD<T>) -> Result<Array2<T>> {
    let f = *a.shape().last().unwrap_or(&0);
    let n = a.len().checked_div(f).unwrap_or(0);
    a.as_standard_layout()
        .into_owned()
        .into_shape_with_order((n, f))
        .map_err(|e| Error::Shape(format!("rows of {:?}: {e}", a.shape())))
}

/// `(rows, F)` back to `lead + [F]`.
pub(crate) fn unrows<T: Real>(a: Array2<T>, lead: &[usize]) -> Result<ArrayD<T>> {
    let mut shape = lead.to_vec();
    shape.push(a.ncols());
    a.as_standard_layout()
        .into_owned()
        .into_shape_with_order(IxDyn(&shape))
        .map_err(|e| Error::Shape(format!("reshape to {shape:?}: {e}")))
}

/// Embedding gather: `ids (B, T)` → `(B, T, D)`; an id outside `0..V` is an error naming it.
pub(crate) fn embedding_forward<T: Real>(
    table: ArrayView2<T>,
    ids: &Array2<i64>,
    layer: &str,
) -> Result<ArrayD<T>> {
    let (v, d) = table.dim();
    let (b, t) = ids.dim();
    let mut out = ndarray::Array3::<T>::zeros((b, t, d));
    for ((bi, ti), &id) in ids.indexed_iter() {
        if id < 0 || id as usize >= v {
            return Err(Error::Shape(format!(
                "layer {layer}: token id {id} at ({bi}, {ti}) is outside the vocabulary 0..{v}"
            )));
        }
        out.slice_mut(ndarray::s![bi, ti, ..])
            .assign(&table.row(id as usize));
    }
    Ok(out.into_dyn())
}

/// Embedding scatter-add: dL/dtable from `dy (B, T, D)`.
pub(crate) fn embedding_backward<T: Real>(
    vocab: usize,
    ids: &Array2<i64>,
    dy: ArrayViewD<T>,
) -> Array2<T> {
    let d = *dy.shape().last().unwrap_or(&0);
    let mut g = Array2::<T>::zeros((vocab, d));
    let dy3 = dy.into_dimensionality::<ndarray::Ix3>().expect("(B, T, D)");
    for ((bi, ti), &id) in ids.indexed_iter() {
        let mut row = g.row_mut(id as usize);
        row.scaled_add(T::one(), &dy3.slice(ndarray::s![bi, ti, ..]));
    }
    g
}

/// Masking: steps whose features all equal `value` are zeroed; returns `(y, keep (B, T))`.
pub(crate) fn masking_forward<T: Real>(x: ArrayViewD<T>, value: f64) -> (ArrayD<T>, Array2<bool>) {
    let x3 = x
        .view()
        .into_dimensionality::<ndarray::Ix3>()
        .expect("(B, T, F)");
    let (b, t, _) = x3.dim();
    let v = T::from_f64(value);
    let keep = Array2::from_shape_fn((b, t), |(bi, ti)| {
        x3.slice(ndarray::s![bi, ti, ..]).iter().any(|&e| e != v)
    });
    let mut y = x.to_owned();
    apply_keep(&mut y, &keep);
    (y, keep)
}

/// Zeroes the steps of `(B, T, F)` where `keep` is false (Masking's output and gradient).
pub(crate) fn apply_keep<T: Real>(a: &mut ArrayD<T>, keep: &Array2<bool>) {
    let zero = T::zero();
    for ((bi, ti), &k) in keep.indexed_iter() {
        if !k {
            a.slice_mut(ndarray::s![bi, ti, ..]).fill(zero);
        }
    }
}

/// Dense forward on the last axis: `act(x·K + b)`.
pub(crate) fn dense_forward<T: Real>(
    act: DenseActivation,
    kernel: ArrayView2<T>,
    bias: Option<ArrayViewD<T>>,
    x: ArrayViewD<T>,
) -> Result<ArrayD<T>> {
    let lead = &x.shape()[..x.ndim() - 1];
    let mut z = rows(x.view())?.dot(&kernel);
    if let Some(b) = bias {
        let b = b
            .into_dimensionality::<ndarray::Ix1>()
            .map_err(|e| Error::Shape(e.to_string()))?;
        z.scaled_add(T::one(), &b);
    }
    match act {
        DenseActivation::Elementwise(a) => z.mapv_inplace(|v| a.apply(v)),
        DenseActivation::Softmax => {
            for mut r in z.axis_iter_mut(Axis(0)) {
                let m = r.iter().fold(T::neg_infinity(), |a, &b| a.max(b));
                r.mapv_inplace(|v| (v - m).exp());
                let s: T = r.iter().copied().sum();
                r.mapv_inplace(|v| v / s);
            }
        }
    }
    unrows(z, lead)
}

/// Dense backward from the input `x`, output `y` and `dy`: `(dx, dK, db)`.
pub(crate) fn dense_backward<T: Real>(
    act: DenseActivation,
    kernel: ArrayView2<T>,
    x: ArrayViewD<T>,
    y: ArrayViewD<T>,
    dy: ArrayViewD<T>,
) -> Result<(ArrayD<T>, Array2<T>, ndarray::Array1<T>)> {
    let lead = &x.shape()[..x.ndim() - 1];
    let (xr, yr, dyr) = (rows(x.view())?, rows(y)?, rows(dy)?);
    let dz = match act {
        DenseActivation::Elementwise(a) => Zip::from(&dyr)
            .and(&yr)
            .map_collect(|&g, &v| g * a.derivative_from_output(v)),
        DenseActivation::Softmax => {
            let mut dz = Array2::<T>::zeros(yr.raw_dim());
            for ((mut o, yv), gv) in dz
                .axis_iter_mut(Axis(0))
                .zip(yr.axis_iter(Axis(0)))
                .zip(dyr.axis_iter(Axis(0)))
            {
                let dot: T = yv.iter().zip(gv.iter()).map(|(&a, &b)| a * b).sum();
                Zip::from(&mut o)
                    .and(&yv)
                    .and(&gv)
                    .for_each(|o, &y, &g| *o = y * (g - dot));
            }
            dz
        }
    };
    Ok((
        unrows(dz.dot(&kernel.t()), lead)?,
        xr.t().dot(&dz),
        dz.sum_axis(Axis(0)),
    ))
}

/// Merges the forward output and the (time-aligned) backward output.
pub(crate) fn merge<T: Real>(mode: MergeMode, f: &ArrayD<T>, b: &ArrayD<T>) -> Result<ArrayD<T>> {
    let half = T::from_f64(0.5);
    Ok(match mode {
        MergeMode::Concat => ndarray::concatenate(Axis(f.ndim() - 1), &[f.view(), b.view()])
            .map_err(|e| Error::Shape(format!("concat merge: {e}")))?,
        MergeMode::Sum => f + b,
        MergeMode::Mul => f * b,
        MergeMode::Ave => (f + b) * half,
        MergeMode::None => {
            return Err(Error::Unsupported(
                "merge_mode None gives two outputs, not one".into(),
            ));
        }
    })
}

/// Splits the gradient of a merged output into `(d forward, d backward)`.
pub(crate) fn unmerge<T: Real>(
    mode: MergeMode,
    f: &ArrayD<T>,
    b: &ArrayD<T>,
    dy: &ArrayD<T>,
) -> (ArrayD<T>, ArrayD<T>) {
    let half = T::from_f64(0.5);
    match mode {
        MergeMode::Concat => {
            let ax = Axis(dy.ndim() - 1);
            let uf = *f.shape().last().unwrap_or(&0);
            let (a, c) = dy.view().split_at(ax, uf);
            (a.to_owned(), c.to_owned())
        }
        MergeMode::Sum | MergeMode::None => (dy.clone(), dy.clone()),
        MergeMode::Mul => (dy * b, dy * f),
        MergeMode::Ave => (dy * half, dy * half),
    }
}
