//! `Embedding` (Keras `Embedding(input_dim, output_dim, mask_zero)`, PyTorch
//! `nn.Embedding`): a `(V, D)` table looked up by token id. Forward gathers rows, backward
//! sums each row's output gradients in position order (deterministic), and `mask_zero`
//! gives the next recurrent layer per-sequence lengths (post-padded sequences as packed
//! lengths; Keras' general masks are the Sequential models' job).

use std::sync::Arc;

use ndarray::{Array2, Array3, ArrayView2, ArrayView3};

use super::ParamBuffer;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::kernels::{Recorder, buffers, embedding as kernel};
use crate::layer::{Forward, Layer, Origin, OutputGrads, Tape, next_layer_id};
use crate::tensor::{DType, DeviceTensor};
use crate::weights::TensorMap;

/// Sizes of an [`Embedding`], named as in Keras.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EmbeddingConfig {
    /// Vocabulary size `V` (token ids are `0..V`).
    pub input_dim: usize,
    /// Vector size `D`.
    pub output_dim: usize,
    /// Token 0 is padding: the layer also returns each sequence's length (1 + the last
    /// position holding a non-zero token).
    pub mask_zero: bool,
}

impl EmbeddingConfig {
    /// A config without masking.
    pub fn new(input_dim: usize, output_dim: usize) -> Self {
        Self {
            input_dim,
            output_dim,
            mask_zero: false,
        }
    }

    /// Checks the sizes (nonzero, table within u32 indexing).
    pub fn validate(&self) -> Result<()> {
        if self.input_dim == 0 || self.output_dim == 0 {
            return Err(Error::Config(format!(
                "embedding input_dim {} and output_dim {} must both be at least 1",
                self.input_dim, self.output_dim
            )));
        }
        let n = self
            .input_dim
            .checked_mul(self.output_dim)
            .filter(|&n| n <= u32::MAX as usize)
            .ok_or_else(|| {
                Error::Limit(format!(
                    "an embedding table of {} × {} elements exceeds u32 indexing ({})",
                    self.input_dim,
                    self.output_dim,
                    u32::MAX
                ))
            })?;
        // The table (and its gradient) are built on the host before upload.
        crate::limits::check_host_f32("embedding table", n)
    }
}

/// CPU reference: `out[b, t, :] = table[tok[b, t], :]`.
pub fn embedding_forward(table: ArrayView2<f32>, tokens: ArrayView2<u32>) -> Result<Array3<f32>> {
    let (v, d) = table.dim();
    let (b, t) = tokens.dim();
    check_ids(tokens, v)?;
    let mut out = Array3::zeros((b, t, d));
    for ((bi, ti), &tok) in tokens.indexed_iter() {
        out.slice_mut(ndarray::s![bi, ti, ..])
            .assign(&table.row(tok as usize));
    }
    Ok(out)
}

/// CPU reference: the table gradient `Σ_{(b,t): tok = v} dy[b, t, :]`.
pub fn embedding_backward(
    tokens: ArrayView2<u32>,
    dy: ArrayView3<f32>,
    input_dim: usize,
) -> Result<Array2<f32>> {
    let (b, t) = tokens.dim();
    let d = dy.dim().2;
    if dy.dim() != (b, t, d) {
        return Err(Error::Shape(format!(
            "embedding dy has shape {:?}; expected ({b}, {t}, D)",
            dy.shape()
        )));
    }
    check_ids(tokens, input_dim)?;
    let mut g = Array2::zeros((input_dim, d));
    for ((bi, ti), &tok) in tokens.indexed_iter() {
        let mut row = g.row_mut(tok as usize);
        row += &dy.slice(ndarray::s![bi, ti, ..]);
    }
    Ok(g)
}

/// Per-sequence lengths of `mask_zero` inputs: 1 + the last non-zero position (0 if none).
pub fn mask_lengths(tokens: ArrayView2<u32>) -> Vec<usize> {
    tokens
        .rows()
        .into_iter()
        .map(|r| r.iter().rposition(|&v| v != 0).map_or(0, |p| p + 1))
        .collect()
}

fn check_ids(tokens: ArrayView2<u32>, v: usize) -> Result<()> {
    if let Some(bad) = tokens.iter().find(|&&x| x as usize >= v) {
        return Err(Error::Shape(format!(
            "token id {bad} is outside the vocabulary (input_dim {v})"
        )));
    }
    Ok(())
}

/// An Embedding table on the device, with its gradient buffer.
pub struct Embedding {
    ctx: Arc<Context>,
    config: EmbeddingConfig,
    table: wgpu::Buffer,
    grad: wgpu::Buffer,
    /// Fills the scratch binding the forward does not use.
    spare: wgpu::Buffer,
    id: u64,
}

/// What an Embedding forward keeps: the tokens.
struct EmbTape {
    tokens: wgpu::Buffer,
}

impl Embedding {
    /// A layer holding `table` `(input_dim, output_dim)`.
    pub fn new(ctx: Arc<Context>, config: EmbeddingConfig, table: ArrayView2<f32>) -> Result<Self> {
        config.validate()?;
        if table.dim() != (config.input_dim, config.output_dim) {
            return Err(Error::Shape(format!(
                "embedding table has shape {:?}; expected ({}, {})",
                table.shape(),
                config.input_dim,
                config.output_dim
            )));
        }
        let data: Vec<f32> = table.iter().copied().collect();
        Ok(Self {
            table: buffers::upload(&ctx, "embeddings", &data)?,
            grad: buffers::zeros(&ctx, "embeddings grad", data.len())?,
            spare: buffers::zeros(&ctx, "spare", 1)?,
            config,
            ctx,
            id: next_layer_id(),
        })
    }

    /// Keras' default initialisation, U(-0.05, 0.05), from a seed.
    pub fn random(ctx: Arc<Context>, config: EmbeddingConfig, seed: u64) -> Result<Self> {
        config.validate()?;
        let mut rng = crate::cpu::common::SplitMix64(seed);
        let table = Array2::from_shape_fn((config.input_dim, config.output_dim), |_| {
            rng.uniform(0.05) as f32
        });
        Self::new(ctx, config, table.view())
    }

    /// A layer from Keras' tensor `embeddings` (PyTorch's `weight` is accepted too).
    pub fn from_tensors(
        ctx: Arc<Context>,
        config: EmbeddingConfig,
        map: &TensorMap,
    ) -> Result<Self> {
        let t = map
            .get("embeddings")
            .or_else(|| map.get("weight"))
            .ok_or_else(|| Error::Weights("embedding: tensor embeddings is missing".into()))?;
        let t = t
            .view()
            .into_dimensionality::<ndarray::Ix2>()
            .map_err(|_| {
                Error::Weights(format!(
                    "embeddings has shape {:?}; expected 2 axes",
                    t.shape()
                ))
            })?;
        Self::new(ctx, config, t)
    }

    /// The configuration.
    pub fn config(&self) -> EmbeddingConfig {
        self.config
    }

    /// The table, read back.
    pub fn read_table(&self) -> Result<Array2<f32>> {
        let (v, d) = (self.config.input_dim, self.config.output_dim);
        let got = buffers::read_f32(&self.ctx, &[(&self.table, 0, v * d)])?;
        Array2::from_shape_vec((v, d), got.into_iter().next().unwrap_or_default())
            .map_err(|e| Error::Shape(e.to_string()))
    }

    /// Uploads token ids `(B, T)`, checking each is inside the vocabulary.
    pub fn upload_tokens(&self, tokens: ArrayView2<u32>) -> Result<DeviceTensor> {
        check_ids(tokens, self.config.input_dim)?;
        let data: Vec<u32> = tokens.iter().copied().collect();
        DeviceTensor::from_u32(&self.ctx, tokens.shape(), &data)
    }

    /// Forward on host tokens `(B, T)` → `(B, T, D)` (upload, record, one submit, read back).
    pub fn forward(&self, tokens: ArrayView2<u32>) -> Result<Array3<f32>> {
        let x = self.upload_tokens(tokens)?;
        let mut rec = Recorder::new(&self.ctx);
        let f = Layer::record_forward(self, &mut rec, &x, false)?;
        rec.submit()?;
        let y = f.y.to_array(&self.ctx)?;
        y.into_dimensionality()
            .map_err(|e| Error::Shape(e.to_string()))
    }

    /// The table gradient for output gradient `dy` `(B, T, D)` (upload, record, one submit,
    /// read back); it also stays in the gradient buffer of [`Layer::params`].
    pub fn backward(&self, tokens: ArrayView2<u32>, dy: ArrayView3<f32>) -> Result<Array2<f32>> {
        let x = self.upload_tokens(tokens)?;
        let dyt = DeviceTensor::from_array(&self.ctx, dy)?;
        let mut rec = Recorder::new(&self.ctx);
        let f = Layer::record_forward(self, &mut rec, &x, true)?;
        let tape = f
            .tape
            .ok_or_else(|| Error::Device("training forward kept no tape".into()))?;
        Layer::record_backward(self, &mut rec, &tape, &OutputGrads::output(dyt))?;
        rec.submit()?;
        let (v, d) = (self.config.input_dim, self.config.output_dim);
        let got = buffers::read_f32(&self.ctx, &[(&self.grad, 0, v * d)])?;
        Array2::from_shape_vec((v, d), got.into_iter().next().unwrap_or_default())
            .map_err(|e| Error::Shape(e.to_string()))
    }

    fn dims_of(&self, input: &[usize]) -> Result<(usize, usize)> {
        match input {
            &[b, t] if b > 0 && t > 0 => Ok((b, t)),
            _ => Err(Error::Shape(format!(
                "embedding input has shape {input:?}; expected (batch, seq_len) token ids"
            ))),
        }
    }
}

impl Layer for Embedding {
    fn kind(&self) -> &'static str {
        "embedding"
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        let (b, t) = self.dims_of(input)?;
        Ok(vec![b, t, self.config.output_dim])
    }

    fn record_forward(
        &self,
        rec: &mut Recorder<'_>,
        x: &DeviceTensor,
        train: bool,
    ) -> Result<Forward> {
        let ctx = self.ctx.clone();
        let (b, t) = self.dims_of(x.shape())?;
        x.expect(&ctx, "embedding input", DType::U32, &[b, t])?;
        let (v, d) = (self.config.input_dim, self.config.output_dim);
        let n = b * t;
        let out = buffers::zeros(&ctx, "embedding output", n * d)?;
        kernel::forward(rec, (x.buffer(), &self.table, &out, &self.spare), (n, v, d))?;
        let lengths = if self.config.mask_zero {
            let lens = buffers::zeros(&ctx, "mask lengths", b)?;
            kernel::mask_lengths(rec, x.buffer(), &lens, (&self.spare, &self.table), (b, t))?;
            Some(DeviceTensor::from_buffer(&ctx, lens, &[b], DType::U32)?)
        } else {
            None
        };
        let tape = train.then(|| {
            Tape::new(
                Origin {
                    layer: self.id,
                    ctx: Some(ctx.id()),
                    input: x.shape().to_vec(),
                },
                EmbTape {
                    tokens: x.buffer().clone(),
                },
            )
        });
        Ok(Forward {
            y: DeviceTensor::wrap(&ctx, out, vec![b, t, d]),
            state: Vec::new(),
            lengths,
            tape,
        })
    }

    fn record_backward(
        &self,
        rec: &mut Recorder<'_>,
        tape: &Tape,
        grads: &OutputGrads,
    ) -> Result<Option<DeviceTensor>> {
        let ctx = self.ctx.clone();
        let et: &EmbTape = tape.open("embedding", self.id, Some(ctx.id()))?;
        let dy = grads
            .dy
            .as_ref()
            .ok_or_else(|| Error::Config("embedding backward needs dy".into()))?;
        let want = self.output_shape(tape.input_shape())?;
        dy.expect(&ctx, "embedding dy", DType::F32, &want)?;
        let (v, d) = (self.config.input_dim, self.config.output_dim);
        let n = want[0] * want[1];
        let work = buffers::zeros(&ctx, "embedding scratch", kernel::work_len(n, v)?)?;
        kernel::backward(rec, (&et.tokens, dy.buffer(), &work, &self.grad), (n, v, d))?;
        // Token ids have no gradient.
        Ok(None)
    }

    fn params(&self) -> Result<Vec<ParamBuffer>> {
        Ok(vec![ParamBuffer {
            name: "embeddings".into(),
            param: self.table.clone(),
            grad: self.grad.clone(),
            shape: vec![self.config.input_dim, self.config.output_dim],
        }])
    }
}
