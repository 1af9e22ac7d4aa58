//! `device_wall_ms`: the wall time of one call with its input already on the device and its
//! outputs left there — record, one submit, wait for the GPU — which is what
//! bench/pytorch_baseline.py and bench/pytorch_convlstm.py time (their tensors live on the
//! GPU and each call ends with `torch.cuda.synchronize()`). `wall_ms` times the ndarray API
//! instead: the upload of x and the read-back of every output and gradient are part of it,
//! and forward+backward is two submits. Both are reported; this one is the like-for-like
//! clock beside PyTorch.
//!
//! Forward+backward here is one submit: the training forward, then the backward with
//! dL/dy = y (PyTorch's `(0.5·out²).sum()`), every gradient left on the device.

use std::time::Instant;

use super::{Case, conv_input, convlstm_layers, rec_input};
use crate::algorithm::Algorithm;
use crate::error::{Error, Result};
use crate::kernels::Recorder;
use crate::layer::{Layer, OutputGrads};
use crate::layers::Backend;
use crate::layers::convlstm_stack::ConvLstm2dStack;
use crate::layers::gru::{Gru, GruConfig};
use crate::layers::lstm::{Lstm, LstmConfig};
use crate::layers::simple_rnn::{SimpleRnn, SimpleRnnConfig};
use crate::tensor::DeviceTensor;

/// Median `device_wall_ms` of the forward and of forward+backward (`runs` timed calls each,
/// after one warm-up), GPU timestamps off so no call waits for a query read-back.
pub(super) fn measure(
    case: &Case,
    backend: &Backend,
    algo: Algorithm,
    runs: usize,
) -> Result<[f64; 2]> {
    let Backend::Gpu(ctx) = backend else {
        return Err(Error::Config("device_wall_ms needs a GPU backend".into()));
    };
    let (i, h) = (case.i.unwrap_or(1), case.h.unwrap_or(1));
    let layer: Box<dyn Layer> = match case.cell {
        "lstm" => {
            let mut l = Lstm::new(LstmConfig::new(i, h), backend.clone(), 1)?;
            l.set_algorithm(algo);
            Box::new(l)
        }
        "gru" => {
            let mut l = Gru::new(GruConfig::new(i, h), backend.clone(), 1)?;
            l.set_algorithm(algo);
            Box::new(l)
        }
        "rnn" => {
            let mut l = SimpleRnn::new(SimpleRnnConfig::new(i, h), backend.clone(), 1)?;
            l.set_algorithm(algo);
            Box::new(l)
        }
        _ => Box::new(ConvLstm2dStack::new(convlstm_layers(case, backend, algo)?)?),
    };
    let x = if case.cell == "convlstm2d" {
        DeviceTensor::from_array(ctx, conv_input(case).view())?
    } else {
        DeviceTensor::from_array(ctx, rec_input(case).view())?
    };
    let call = |train: bool| -> Result<f64> {
        let t0 = Instant::now();
        let mut rec = Recorder::new(ctx);
        let f = layer.record_forward(&mut rec, &x, train)?;
        if train {
            let tape = f
                .tape
                .as_ref()
                .ok_or_else(|| Error::Device("a training forward kept no tape".into()))?;
            layer.record_backward(&mut rec, tape, &OutputGrads::output(f.y.clone()))?;
        }
        rec.submit()?;
        ctx.wait("device_wall_ms call")?;
        Ok(t0.elapsed().as_secs_f64() * 1e3)
    };
    let profiling = ctx.profiling_timestamps();
    ctx.set_profiling(false);
    let mut out = [0.0; 2];
    let result = (|| {
        for (k, train) in [false, true].into_iter().enumerate() {
            call(train)?;
            let mut v = (0..runs)
                .map(|_| call(train))
                .collect::<Result<Vec<f64>>>()?;
            v.sort_by(f64::total_cmp);
            out[k] = v[v.len() / 2];
        }
        Ok(out)
    })();
    ctx.set_profiling(profiling);
    result
}
