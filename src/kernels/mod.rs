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
pub(crate) mod gemm;
pub(crate) mod gru;
pub(crate) mod lstm;
pub(crate) mod rec;
pub(crate) mod rnn;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::context::Context;
use crate::error::{Error, Result};

/// One WGSL source file in `shaders/`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Shader {
    Gemm,
    LstmForward,
    LstmBackward,
    GruForward,
    GruBackward,
    RnnForward,
    RnnBackward,
    Conv,
    ConvLstmForward,
    ConvLstmBackward,
}

impl Shader {
    const ALL: [Shader; 10] = [
        Shader::Gemm,
        Shader::LstmForward,
        Shader::LstmBackward,
        Shader::GruForward,
        Shader::GruBackward,
        Shader::RnnForward,
        Shader::RnnBackward,
        Shader::Conv,
        Shader::ConvLstmForward,
        Shader::ConvLstmBackward,
    ];

    /// The WGSL module: recurrent cells get `rnn_common.wgsl` prepended (WGSL has no include).
    fn source(self) -> &'static str {
        match self {
            Shader::Gemm => include_str!("../../shaders/gemm.wgsl"),
            Shader::LstmForward => concat!(
                include_str!("../../shaders/activations.wgsl"),
                include_str!("../../shaders/rnn_common.wgsl"),
                include_str!("../../shaders/lstm_forward.wgsl")
            ),
            Shader::LstmBackward => concat!(
                include_str!("../../shaders/activations.wgsl"),
                include_str!("../../shaders/rnn_common.wgsl"),
                include_str!("../../shaders/lstm_backward.wgsl")
            ),
            Shader::GruForward => concat!(
                include_str!("../../shaders/activations.wgsl"),
                include_str!("../../shaders/rnn_common.wgsl"),
                include_str!("../../shaders/gru_forward.wgsl")
            ),
            Shader::GruBackward => concat!(
                include_str!("../../shaders/activations.wgsl"),
                include_str!("../../shaders/rnn_common.wgsl"),
                include_str!("../../shaders/gru_backward.wgsl")
            ),
            Shader::RnnForward => concat!(
                include_str!("../../shaders/activations.wgsl"),
                include_str!("../../shaders/rnn_common.wgsl"),
                include_str!("../../shaders/rnn_forward.wgsl")
            ),
            Shader::RnnBackward => concat!(
                include_str!("../../shaders/activations.wgsl"),
                include_str!("../../shaders/rnn_common.wgsl"),
                include_str!("../../shaders/rnn_backward.wgsl")
            ),
            Shader::Conv => include_str!("../../shaders/conv.wgsl"),
            Shader::ConvLstmForward => concat!(
                include_str!("../../shaders/activations.wgsl"),
                include_str!("../../shaders/convlstm_forward.wgsl")
            ),
            Shader::ConvLstmBackward => concat!(
                include_str!("../../shaders/activations.wgsl"),
                include_str!("../../shaders/convlstm_backward.wgsl")
            ),
        }
    }

    /// The files the module is made of, in order.
    fn files(self) -> &'static [&'static str] {
        match self {
            Shader::Gemm => &["gemm.wgsl"],
            Shader::LstmForward => &["activations.wgsl", "rnn_common.wgsl", "lstm_forward.wgsl"],
            Shader::LstmBackward => &["activations.wgsl", "rnn_common.wgsl", "lstm_backward.wgsl"],
            Shader::GruForward => &["activations.wgsl", "rnn_common.wgsl", "gru_forward.wgsl"],
            Shader::GruBackward => &["activations.wgsl", "rnn_common.wgsl", "gru_backward.wgsl"],
            Shader::RnnForward => &["activations.wgsl", "rnn_common.wgsl", "rnn_forward.wgsl"],
            Shader::RnnBackward => &["activations.wgsl", "rnn_common.wgsl", "rnn_backward.wgsl"],
            Shader::Conv => &["conv.wgsl"],
            Shader::ConvLstmForward => &["activations.wgsl", "convlstm_forward.wgsl"],
            Shader::ConvLstmBackward => &["activations.wgsl", "convlstm_backward.wgsl"],
        }
    }

    fn name(self) -> &'static str {
        self.files().last().copied().unwrap_or("shader")
    }
}

/// One WGSL module as the GPU compiles it: its name, the `shaders/` files it is made of,
/// and the assembled source. Lets tools (and the offline naga test) see exactly what runs.
#[derive(Clone, Copy, Debug)]
pub struct ShaderModuleSource {
    /// Main file name, e.g. `lstm_forward.wgsl`.
    pub name: &'static str,
    /// Files concatenated into the module, in order.
    pub files: &'static [&'static str],
    /// The assembled WGSL.
    pub source: &'static str,
}

/// Every shader module the crate compiles.
pub fn shader_modules() -> Vec<ShaderModuleSource> {
    Shader::ALL
        .iter()
        .map(|s| ShaderModuleSource {
            name: s.name(),
            files: s.files(),
            source: s.source(),
        })
        .collect()
}

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
    pipeline: wgpu::ComputePipeline,
    layout: wgpu::BindGroupLayout,
}

/// Thread-safe cache: each shader module and pipeline is built once per context.
#[derive(Default)]
pub(crate) struct Pipelines {
    modules: Mutex<HashMap<Shader, wgpu::ShaderModule>>,
    pipes: Mutex<HashMap<(Shader, &'static str), Arc<Pipe>>>,
}

impl Pipelines {
    fn get(&self, ctx: &Context, k: &KernelDef) -> Result<Arc<Pipe>> {
        let key = (k.shader, k.entry);
        let lock_err = |_| Error::Device("pipeline cache poisoned".into());
        if let Some(p) = self.pipes.lock().map_err(lock_err)?.get(&key) {
            return Ok(p.clone());
        }
        let pipe = ctx.scoped(|| Ok(Arc::new(build_pipe(ctx, self, k)?)))?;
        self.pipes
            .lock()
            .map_err(lock_err)?
            .insert(key, pipe.clone());
        Ok(pipe)
    }
}

fn build_pipe(ctx: &Context, cache: &Pipelines, k: &KernelDef) -> Result<Pipe> {
    let dev = &ctx.device;
    let module = {
        let mut mods = cache
            .modules
            .lock()
            .map_err(|_| Error::Device("shader cache poisoned".into()))?;
        mods.entry(k.shader)
            .or_insert_with(|| {
                dev.create_shader_module(wgpu::ShaderModuleDescriptor {
                    label: Some(k.shader.name()),
                    source: wgpu::ShaderSource::Wgsl(k.shader.source().into()),
                })
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
    let pipeline = dev.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some(k.entry),
        layout: Some(&pl),
        module: &module,
        entry_point: Some(k.entry),
        compilation_options: Default::default(),
        cache: None,
    });
    Ok(Pipe { pipeline, layout })
}

enum Op {
    Dispatch {
        pipe: Arc<Pipe>,
        buffers: Vec<wgpu::Buffer>,
        uniform_offset: u32,
        params_size: u64,
        groups: [u32; 3],
    },
    Copy {
        src: wgpu::Buffer,
        src_offset: u64,
        dst: wgpu::Buffer,
        dst_offset: u64,
        size: u64,
    },
}

/// Counts reported by benchmarks: how much work one submission recorded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecordStats {
    /// Compute dispatches.
    pub dispatches: usize,
    /// Compute passes (split only where a buffer copy sits between dispatches).
    pub passes: usize,
    /// Queue submissions (always 1 per recorder).
    pub submits: usize,
}

/// Collects the work of one forward or backward and submits it once.
pub(crate) struct Recorder<'c> {
    ctx: &'c Context,
    ops: Vec<Op>,
    arena: Vec<u8>,
    align: usize,
}

impl<'c> Recorder<'c> {
    pub fn new(ctx: &'c Context) -> Self {
        Self {
            ctx,
            ops: Vec::new(),
            arena: Vec::new(),
            align: ctx.limits.min_uniform_buffer_offset_alignment.max(16) as usize,
        }
    }

    /// Records one dispatch of `k` over `groups` workgroups (split into a 2-D grid when
    /// above the per-dimension limit; kernels flatten `workgroup_id` and bounds-check).
    pub fn dispatch<P: bytemuck::Pod>(
        &mut self,
        k: &KernelDef,
        params: &P,
        buffers: &[&wgpu::Buffer],
        groups: u32,
    ) -> Result<()> {
        debug_assert_eq!(buffers.len(), k.storage.len(), "{}", k.entry);
        debug_assert_eq!(
            std::mem::size_of::<P>() as u64,
            k.params_size,
            "{}",
            k.entry
        );
        if groups == 0 {
            return Ok(());
        }
        let pipe = self.ctx.pipelines.get(self.ctx, k)?;
        let offset = self.arena.len();
        self.arena.extend_from_slice(bytemuck::bytes_of(params));
        let padded = self.arena.len().div_ceil(self.align) * self.align;
        self.arena.resize(padded, 0);
        let max = self.ctx.limits.max_compute_workgroups_per_dimension.max(1);
        let y = groups.div_ceil(max);
        let x = groups.div_ceil(y);
        if y > max {
            return Err(Error::Limit(format!(
                "{}: {groups} workgroups exceed {max}x{max}",
                k.entry
            )));
        }
        self.ops.push(Op::Dispatch {
            pipe,
            buffers: buffers.iter().map(|b| (*b).clone()).collect(),
            uniform_offset: u32::try_from(offset)
                .map_err(|_| Error::Limit("uniform arena over 4 GiB".into()))?,
            params_size: k.params_size,
            groups: [x, y, 1],
        });
        Ok(())
    }

    /// Records a buffer-to-buffer copy of `size` bytes (splits the compute pass).
    pub fn copy(
        &mut self,
        src: &wgpu::Buffer,
        src_offset: u64,
        dst: &wgpu::Buffer,
        dst_offset: u64,
        size: u64,
    ) {
        if size == 0 {
            return;
        }
        self.ops.push(Op::Copy {
            src: src.clone(),
            src_offset,
            dst: dst.clone(),
            dst_offset,
            size,
        });
    }

    /// Writes the uniform arena, records every op, submits once. Returns what was recorded.
    pub fn submit(self) -> Result<RecordStats> {
        let ctx = self.ctx;
        let mut stats = RecordStats::default();
        ctx.scoped(|| {
            let dev = &ctx.device;
            let arena = buffers::create_uniform(ctx, &self.arena)?;
            // wgpu handles hash and compare by resource identity, which never changes.
            #[allow(clippy::mutable_key_type)]
            let mut groups_cache: HashMap<(usize, Vec<wgpu::Buffer>), wgpu::BindGroup> =
                HashMap::new();
            let mut enc = dev.create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("wgpu-rnn"),
            });
            let mut i = 0;
            while i < self.ops.len() {
                match &self.ops[i] {
                    Op::Copy {
                        src,
                        src_offset,
                        dst,
                        dst_offset,
                        size,
                    } => {
                        enc.copy_buffer_to_buffer(src, *src_offset, dst, *dst_offset, *size);
                        i += 1;
                    }
                    Op::Dispatch { .. } => {
                        let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                            label: Some("wgpu-rnn"),
                            timestamp_writes: None,
                        });
                        stats.passes += 1;
                        while let Some(Op::Dispatch {
                            pipe,
                            buffers,
                            uniform_offset,
                            params_size,
                            groups,
                        }) = self.ops.get(i)
                        {
                            // One bind group per (pipeline, buffer set): steps differ only in
                            // their dynamic uniform offset, so a T-step loop reuses one group.
                            let key = (Arc::as_ptr(pipe) as usize, buffers.clone());
                            let bg = groups_cache.entry(key).or_insert_with(|| {
                                let mut entries = vec![wgpu::BindGroupEntry {
                                    binding: 0,
                                    resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                                        buffer: &arena,
                                        offset: 0,
                                        size: wgpu::BufferSize::new(*params_size),
                                    }),
                                }];
                                for (j, b) in buffers.iter().enumerate() {
                                    entries.push(wgpu::BindGroupEntry {
                                        binding: j as u32 + 1,
                                        resource: b.as_entire_binding(),
                                    });
                                }
                                dev.create_bind_group(&wgpu::BindGroupDescriptor {
                                    label: None,
                                    layout: &pipe.layout,
                                    entries: &entries,
                                })
                            });
                            pass.set_pipeline(&pipe.pipeline);
                            pass.set_bind_group(0, &*bg, &[*uniform_offset]);
                            pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
                            stats.dispatches += 1;
                            i += 1;
                        }
                    }
                }
            }
            ctx.queue.submit(Some(enc.finish()));
            stats.submits = 1;
            Ok(())
        })?;
        Ok(stats)
    }
}
