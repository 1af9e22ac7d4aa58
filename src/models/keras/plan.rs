//! Shape inference: each layer's input and output shapes and its weights under their Keras
//! paths, checked layer by layer, giving a [`ModelSpec`].

use super::spec::{
    InputSpec, LayerKind, LayerSpec, MergeMode, RnnSpec, Shape, WeightSpec, nonzero, rate,
};
use crate::error::{Error, Result};

/// One layer with what shape inference found: its input, outputs and weights.
#[derive(Clone, Debug, PartialEq)]
pub struct PlannedLayer {
    /// The layer.
    pub spec: LayerSpec,
    /// Its input shape.
    pub input_shape: Shape,
    /// Its outputs (several with `return_state` or `merge_mode=None`).
    pub output_shapes: Vec<Shape>,
    /// Its weights in Keras order.
    pub weights: Vec<WeightSpec>,
}

impl PlannedLayer {
    /// Number of parameters (trainable or not).
    pub fn param_count(&self) -> usize {
        self.weights.iter().map(WeightSpec::len).sum()
    }
}

/// A Keras Sequential model's structure: its input and layers, checked and shape-inferred.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelSpec {
    /// Model name.
    pub name: String,
    /// The input.
    pub input: InputSpec,
    /// The layers after the input, each with its shapes and weights.
    pub layers: Vec<PlannedLayer>,
}

/// The last axis of a shape, which must be known (weights are sized from it).
fn features(layer: &str, shape: &Shape) -> Result<usize> {
    match shape.last() {
        Some(Some(f)) if shape.len() >= 2 => Ok(*f),
        _ => Err(Error::Shape(format!(
            "layer {layer}: input shape {} has no known feature axis",
            fmt_shape(shape)
        ))),
    }
}

/// Keras' way of printing a shape: `(None, 10, 64)`.
pub fn fmt_shape(s: &Shape) -> String {
    let parts: Vec<String> = s
        .iter()
        .map(|d| d.map_or("None".to_string(), |v| v.to_string()))
        .collect();
    if parts.len() == 1 {
        format!("({},)", parts[0])
    } else {
        format!("({})", parts.join(", "))
    }
}

fn rnn_outputs(r: &RnnSpec, input: &Shape, units: usize) -> Vec<Shape> {
    let (b, t) = (input[0], input[1]);
    let out = if r.return_sequences {
        vec![b, t, Some(units)]
    } else {
        vec![b, Some(units)]
    };
    let mut v = vec![out];
    if r.return_state {
        v.extend((0..r.cell.state_count()).map(|_| vec![b, Some(r.units)]));
    }
    v
}

fn need_seq(layer: &str, class: &str, input: &Shape) -> Result<()> {
    if input.len() != 3 {
        return Err(Error::Shape(format!(
            "layer {layer} ({class}) needs a (batch, steps, features) input; got {}",
            fmt_shape(input)
        )));
    }
    Ok(())
}

/// Shapes and weights of one layer given its input shape.
fn plan_layer(spec: &LayerSpec, input: &Shape, index: usize) -> Result<PlannedLayer> {
    let name = spec.name.as_str();
    let class = spec.class_name();
    let (outputs, weights) = match &spec.kind {
        LayerKind::Embedding {
            input_dim,
            output_dim,
            regularizer,
            initializer,
            ..
        } => {
            if index != 0 {
                return Err(Error::Unsupported(format!(
                    "layer {name} (Embedding) must be the first layer after the input: it reads \
                     the model's integer token ids"
                )));
            }
            nonzero(&format!("{name} input_dim"), *input_dim)?;
            nonzero(&format!("{name} output_dim"), *output_dim)?;
            if input.len() != 2 {
                return Err(Error::Unsupported(format!(
                    "layer {name} (Embedding) takes token ids of shape (batch, steps); got {}",
                    fmt_shape(input)
                )));
            }
            let mut out = input.clone();
            out.push(Some(*output_dim));
            let w = WeightSpec {
                path: format!("{name}/embeddings"),
                shape: vec![*input_dim, *output_dim],
                trainable: spec.trainable,
                init: initializer.clone(),
                regularizer: *regularizer,
            };
            (vec![out], vec![w])
        }
        LayerKind::Masking { .. } => {
            need_seq(name, class, input)?;
            (vec![input.clone()], vec![])
        }
        LayerKind::Dropout { rate: r } => {
            rate(&format!("{name} rate"), *r)?;
            (vec![input.clone()], vec![])
        }
        LayerKind::Dense(d) | LayerKind::TimeDistributed(d) => {
            nonzero(&format!("{name} units"), d.units)?;
            if matches!(spec.kind, LayerKind::TimeDistributed(_)) {
                need_seq(name, class, input)?;
            } else if !(2..=3).contains(&input.len()) {
                return Err(Error::Unsupported(format!(
                    "layer {name} (Dense) on a rank-{} input {}; rank 2 or 3 is supported",
                    input.len(),
                    fmt_shape(input)
                )));
            }
            let f = features(name, input)?;
            let prefix = if matches!(spec.kind, LayerKind::TimeDistributed(_)) {
                format!("{name}/")
            } else {
                String::new()
            };
            let mut out = input.clone();
            *out.last_mut().expect("rank checked") = Some(d.units);
            (vec![out], d.weights(&prefix, f, spec.trainable))
        }
        LayerKind::Rnn(r) => {
            need_seq(name, class, input)?;
            r.validate()?;
            let f = features(name, input)?;
            (
                rnn_outputs(r, input, r.units),
                r.weights("", f, spec.trainable),
            )
        }
        LayerKind::Bidirectional {
            forward,
            backward,
            merge,
        } => {
            need_seq(name, class, input)?;
            forward.validate()?;
            backward.validate()?;
            if forward.go_backwards == backward.go_backwards {
                return Err(Error::Config(format!(
                    "layer {name} (Bidirectional): the forward and backward layers both have \
                     go_backwards={}",
                    forward.go_backwards
                )));
            }
            for (what, a, b) in [
                (
                    "return_sequences",
                    forward.return_sequences,
                    backward.return_sequences,
                ),
                ("return_state", forward.return_state, backward.return_state),
                ("stateful", forward.stateful, backward.stateful),
            ] {
                if a != b {
                    return Err(Error::Config(format!(
                        "layer {name} (Bidirectional): {what} is {a} forward but {b} backward"
                    )));
                }
            }
            let units = match merge {
                MergeMode::Concat => forward.units + backward.units,
                _ if forward.units != backward.units => {
                    return Err(Error::Config(format!(
                        "layer {name} (Bidirectional): merge_mode {merge:?} needs equal units; \
                         forward has {}, backward {}",
                        forward.units, backward.units
                    )));
                }
                _ => forward.units,
            };
            let f = features(name, input)?;
            let prefix = format!("{name}/");
            let mut w = forward.weights(&prefix, f, spec.trainable);
            w.extend(backward.weights(&prefix, f, spec.trainable));
            let fo = rnn_outputs(forward, input, forward.units);
            let mut outs = if *merge == MergeMode::None {
                vec![
                    fo[0].clone(),
                    rnn_outputs(backward, input, backward.units)[0].clone(),
                ]
            } else {
                vec![rnn_outputs(forward, input, units)[0].clone()]
            };
            if forward.return_state {
                outs.extend(fo[1..].iter().cloned());
                outs.extend(
                    rnn_outputs(backward, input, backward.units)[1..]
                        .iter()
                        .cloned(),
                );
            }
            (outs, w)
        }
    };
    Ok(PlannedLayer {
        spec: spec.clone(),
        input_shape: input.clone(),
        output_shapes: outputs,
        weights,
    })
}

impl ModelSpec {
    /// Checks the layers in order (names unique, shapes compatible, every layer but the last
    /// with a single output) and infers every shape and weight.
    pub fn new(name: &str, input: InputSpec, layers: Vec<LayerSpec>) -> Result<Self> {
        if layers.is_empty() {
            return Err(Error::Config(format!("model {name} has no layers")));
        }
        let mut shape: Shape = std::iter::once(input.batch)
            .chain(input.dims.iter().copied())
            .collect();
        if input.dims.is_empty() {
            return Err(Error::Config(format!(
                "model {name}: the input has no axes after the batch"
            )));
        }
        let mut seen = std::collections::BTreeSet::new();
        let mut planned = Vec::with_capacity(layers.len());
        for (i, l) in layers.into_iter().enumerate() {
            if !seen.insert(l.name.clone()) {
                return Err(Error::Config(format!(
                    "model {name}: two layers are named {:?}",
                    l.name
                )));
            }
            if let Some(prev) = planned.last()
                && let PlannedLayer {
                    spec: p,
                    output_shapes,
                    ..
                } = prev
                && output_shapes.len() != 1
            {
                return Err(Error::Config(format!(
                    "layer {} ({}) returns {} tensors (return_state or merge_mode=None); the \
                     layer after it, {}, takes one",
                    p.name,
                    p.class_name(),
                    output_shapes.len(),
                    l.name
                )));
            }
            let p = plan_layer(&l, &shape, i)?;
            if let LayerKind::Rnn(r) = &l.kind
                && r.stateful
                && input.batch.is_none()
            {
                return Err(Error::Config(format!(
                    "layer {} is stateful, which needs a fixed batch size in the input's \
                     batch_shape",
                    l.name
                )));
            }
            shape = p.output_shapes[0].clone();
            planned.push(p);
        }
        Ok(Self {
            name: name.into(),
            input,
            layers: planned,
        })
    }

    /// Every weight in Keras order (layer by layer; kernel, recurrent_kernel, bias).
    pub fn weights(&self) -> impl Iterator<Item = &WeightSpec> {
        self.layers.iter().flat_map(|l| l.weights.iter())
    }

    /// Keras' `model.count_params()`: every weight, trainable or not.
    pub fn param_count(&self) -> usize {
        self.layers.iter().map(PlannedLayer::param_count).sum()
    }

    /// Parameters with a gradient.
    pub fn trainable_param_count(&self) -> usize {
        self.weights()
            .filter(|w| w.trainable)
            .map(WeightSpec::len)
            .sum()
    }

    /// The shapes the model outputs (one unless its last layer returns states or both
    /// directions unmerged).
    pub fn output_shapes(&self) -> &[Shape] {
        &self
            .layers
            .last()
            .expect("a model has at least one layer")
            .output_shapes
    }
}
