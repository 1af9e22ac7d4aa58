//! The launch layer: the only code that talks to wgpu pipelines, bind groups and passes.
//!
//! Every kernel has the same binding scheme: binding 0 is a small uniform block of
//! parameters bound with a dynamic offset into one per-submission "uniform arena", and
//! bindings 1.. are storage buffers. A [`Recorder`] collects dispatches and copies, then
//! [`Recorder::submit`] writes the arena once, builds (deduplicated) bind groups, records
//! every dispatch into as few compute passes as the copies allow, and submits once.

pub(crate) mod buffers;
pub(crate) mod conv;
pub(crate) mod convlstm;
pub(crate) mod convlstm_tiled;
pub(crate) mod dropout;
pub(crate) mod embedding;
pub(crate) mod gemm;
pub(crate) mod gemm_tile;
pub(crate) mod grid;
pub(crate) mod gru;
pub(crate) mod keras_loss;
pub(crate) mod loss;
pub(crate) mod lstm;
pub(crate) mod merge;
pub(crate) mod nn_act;
pub(crate) mod optim;
pub(crate) mod rec;
pub(crate) mod rec_dropout;
pub(crate) mod recorder;
pub(crate) mod resident;
pub(crate) mod rnn;
pub(crate) mod seq_mask;
mod shader;
pub(crate) mod step_tiled;
pub(crate) mod tensor_ops;
pub(crate) mod timing;
pub(crate) mod unfused;
pub(crate) mod workspace;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::context::Context;
use crate::error::{Error, Result};

pub(crate) use shader::Shader;
pub use shader::{ShaderModuleSource, shader_modules};

/// How a kernel uses one storage binding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Access {
    Read,
    ReadWrite,
}

/// A compute entry point and its binding list (bindings 1.. in order).
#[derive(Debug)]
pub(crate) struct KernelDef {
    pub shader: Shader,
    pub entry: &'static str,
    pub storage: &'static [Access],
    /// Size in bytes of the uniform parameter block at binding 0.
    pub params_size: u64,
}

/// A built pipeline and its bind group layout.
pub(crate) struct Pipe {
    pub(crate) pipeline: wgpu::ComputePipeline,
    pub(crate) layout: wgpu::BindGroupLayout,
}

/// Thread-safe cache: each shader module and pipeline is built once per context.
#[derive(Default)]
pub(crate) struct Pipelines {
    modules: Mutex<HashMap<Shader, wgpu::ShaderModule>>,
    pipes: Mutex<HashMap<PipeKey, Arc<Pipe>>>,
    /// The split-K GEMM's partial sums (`gemm_tile`), grown on demand and reused.
    pub(crate) gemm_scratch: Mutex<Option<wgpu::Buffer>>,
    /// One vec4 (16 bytes) bound as `gemm_tile`'s unused vec4 views when no operand is that long.
    pub(crate) gemm_filler: Mutex<Option<wgpu::Buffer>>,
}

/// Pipeline-overridable constants of one pipeline (WGSL `override` name and value).
pub(crate) type Spec = [(&'static str, u32)];

type PipeKey = (Shader, &'static str, Vec<(&'static str, u32)>);

impl Pipelines {
    /// The pipeline of `k` with its `override` constants set to `spec`.
    pub(crate) fn get_spec(&self, ctx: &Context, k: &KernelDef, spec: &Spec) -> Result<Arc<Pipe>> {
        let key = (k.shader, k.entry, spec.to_vec());
        let lock_err = |_| Error::Device("pipeline cache poisoned".into());
        if let Some(p) = self.pipes.lock().map_err(lock_err)?.get(&key) {
            return Ok(p.clone());
        }
        let pipe = ctx.scoped(|| Ok(Arc::new(build_pipe(ctx, self, k, spec)?)))?;
        // Another thread may have built the same pipeline meanwhile: keep the first one, so
        // every caller gets the same Arc (bind-group caches key on its address).
        Ok(self
            .pipes
            .lock()
            .map_err(lock_err)?
            .entry(key)
            .or_insert(pipe)
            .clone())
    }
}

fn build_pipe(ctx: &Context, cache: &Pipelines, k: &KernelDef, spec: &Spec) -> Result<Pipe> {
    let dev = &ctx.device;
    let module = {
        let mut mods = cache
            .modules
            .lock()
            .map_err(|_| Error::Device("shader cache poisoned".into()))?;
        mods.entry(k.shader)
            .or_insert_with(|| {
                let desc = wgpu::ShaderModuleDescriptor {
                    label: Some(k.shader.name()),
                    source: wgpu::ShaderSource::Wgsl(k.shader.source().into()),
                };
                if k.shader.trusted() {
                    // SAFETY: every index of these modules is bounded by a plan the host
                    // validated against the buffer sizes (kernels::resident), weight loads
                    // clamp to the array, and every loop has a bound from the uniform block.
                    unsafe {
                        dev.create_shader_module_trusted(
                            desc,
                            wgpu::ShaderRuntimeChecks::unchecked(),
                        )
                    }
                } else {
                    dev.create_shader_module(desc)
                }
            })
            .clone()
    };
    let mut entries = vec![wgpu::BindGroupLayoutEntry {
        binding: 0,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer {
            ty: wgpu::BufferBindingType::Uniform,
            has_dynamic_offset: true,
            min_binding_size: wgpu::BufferSize::new(k.params_size),
        },
        count: None,
    }];
    for (i, acc) in k.storage.iter().enumerate() {
        entries.push(wgpu::BindGroupLayoutEntry {
            binding: i as u32 + 1,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: wgpu::BufferBindingType::Storage {
                    read_only: *acc == Access::Read,
                },
                has_dynamic_offset: false,
                min_binding_size: None,
            },
            count: None,
        });
    }
    let layout = dev.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
        label: Some(k.entry),
        entries: &entries,
    });
    let pl = dev.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
        label: Some(k.entry),
        bind_group_layouts: &[Some(&layout)],
        immediate_size: 0,
    });
    let constants: Vec<(&str, f64)> = spec.iter().map(|&(n, v)| (n, f64::from(v))).collect();
    let pipeline = dev.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some(k.entry),
        layout: Some(&pl),
        module: &module,
        entry_point: Some(k.entry),
        compilation_options: wgpu::PipelineCompilationOptions {
            constants: &constants,
            zero_initialize_workgroup_memory: !k.shader.trusted(),
        },
        cache: None,
    });
    Ok(Pipe { pipeline, layout })
}

pub(crate) use recorder::Phase;
pub use recorder::{RecordStats, Recorder};
