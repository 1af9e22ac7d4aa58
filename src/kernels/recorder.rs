//! Records the work of one forward or backward and submits it once (the launch layer's
//! back half): a uniform arena for every dispatch's parameters, deduplicated bind groups, as
//! few compute passes as copies and phases allow, optional GPU timestamps per pass.

use std::collections::HashMap;
use std::sync::Arc;

use super::timing::PassTimer;
use super::workspace::{BindKey, Workspace};
use super::{KernelDef, Pipe, buffers};
use crate::algorithm::Algorithm;
use crate::context::{Context, Totals};
use crate::error::{Error, Result};

enum Op {
    Dispatch {
        pipe: Arc<Pipe>,
        buffers: Vec<wgpu::Buffer>,
        uniform_offset: u32,
        params_size: u64,
        groups: [u32; 3],
        phase: Phase,
        entry: &'static str,
    },
    /// Zero-fill (a reused workspace buffer standing in for a fresh, zeroed one).
    Clear(wgpu::Buffer),
    Copy {
        src: wgpu::Buffer,
        src_offset: u64,
        dst: wgpu::Buffer,
        dst_offset: u64,
        size: u64,
    },
}

/// What a group of dispatches does, so benchmarks can time the time loop apart from the GEMMs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Phase {
    /// GEMMs, convolutions and reductions outside the time loop.
    #[default]
    Dense,
    /// The recurrence (time loop).
    Recurrence,
}

/// Counts and times reported by benchmarks: how much work one submission recorded.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RecordStats {
    /// Compute dispatches.
    pub dispatches: usize,
    /// Compute passes (split where a buffer copy sits between dispatches or the phase changes).
    pub passes: usize,
    /// Queue submissions (always 1 per recorder).
    pub submits: usize,
    /// Host time from the first recorded op to the submit returning (encode + submit), ms.
    pub encode_ms: f64,
    /// GPU time from the first pass's start to the last pass's end (profiling contexts with
    /// TIMESTAMP_QUERY only), ms.
    pub gpu_ms: Option<f64>,
    /// GPU time of the recurrence passes alone (as `gpu_ms`), ms.
    pub recurrence_ms: Option<f64>,
    /// Bind groups this submission had to build (0 when a repeated inference call found its
    /// buffers, arena and bind groups all kept from the previous call).
    pub bind_groups_built: usize,
    /// Host-to-device uploads (in [`Context::totals`]; 0 in one submission's stats).
    pub uploads: usize,
    /// Device-to-host read-backs, each one wait for the GPU (in [`Context::totals`]; 0 in one
    /// submission's stats).
    pub read_backs: usize,
    /// The recurrence algorithms this submission's time loops ran (each layer-direction's
    /// resolved choice, so `Auto` shows what it picked; empty without a recurrence).
    pub algorithms: crate::algorithm::Algorithms,
}

impl RecordStats {
    /// The counts between an earlier snapshot of [`Context::totals`] and this one
    /// (dispatches, submits, uploads and read-backs; times are left out).
    pub fn since(&self, earlier: &RecordStats) -> RecordStats {
        RecordStats {
            dispatches: self.dispatches.saturating_sub(earlier.dispatches),
            submits: self.submits.saturating_sub(earlier.submits),
            uploads: self.uploads.saturating_sub(earlier.uploads),
            read_backs: self.read_backs.saturating_sub(earlier.read_backs),
            ..Default::default()
        }
    }
}

/// What the passes of one encoding were (for timestamps and the per-dispatch profile).
#[derive(Default)]
struct PassLog {
    per_dispatch: bool,
    phases: Vec<Phase>,
    entries: Vec<&'static str>,
}

/// Collects recorded work (layers' forwards and backwards, losses, optimizer steps) and
/// either submits it once ([`Recorder::submit`]) or encodes it into the caller's own
/// `wgpu::CommandEncoder` ([`Recorder::encode_into`]).
///
/// Every dispatch's parameters go into one uniform arena written when the recording is
/// encoded; bind groups are deduplicated, so a T-step loop reuses one.
pub struct Recorder<'c> {
    ctx: &'c Context,
    ops: Vec<Op>,
    arena: Vec<u8>,
    align: usize,
    phase: Phase,
    started: std::time::Instant,
    /// The recurrence algorithms recorded (reported in `RecordStats::algorithms`).
    algorithms: crate::algorithm::Algorithms,
}

impl<'c> Recorder<'c> {
    /// An empty recording on `ctx`.
    pub fn new(ctx: &'c Context) -> Self {
        Self {
            ctx,
            ops: Vec::new(),
            arena: Vec::new(),
            align: ctx.limits.min_uniform_buffer_offset_alignment.max(16) as usize,
            phase: Phase::Dense,
            started: std::time::Instant::now(),
            algorithms: Default::default(),
        }
    }

    /// The context dispatches are recorded for.
    pub fn ctx(&self) -> &'c Context {
        self.ctx
    }

    /// Notes that a time loop recorded here runs `a` (see `RecordStats::algorithms`).
    pub(crate) fn note_algorithm(&mut self, a: Algorithm) {
        self.algorithms.insert(a);
    }

    /// Tags the dispatches recorded from now on (a new phase starts a new compute pass).
    pub(crate) fn set_phase(&mut self, phase: Phase) {
        self.phase = phase;
    }

    /// Records one dispatch of `k` over `groups` workgroups (split into a 2-D grid when
    /// above the per-dimension limit; kernels flatten `workgroup_id` and bounds-check).
    pub(crate) fn dispatch<P: bytemuck::Pod>(
        &mut self,
        k: &KernelDef,
        params: &P,
        buffers: &[&wgpu::Buffer],
        groups: u32,
    ) -> Result<()> {
        self.dispatch_spec(k, &[], params, buffers, groups)
    }

    /// [`dispatch`](Self::dispatch) of the pipeline specialised with `override` constants.
    pub(crate) fn dispatch_spec<P: bytemuck::Pod>(
        &mut self,
        k: &KernelDef,
        spec: &super::Spec,
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
        let pipe = self.ctx.pipelines.get_spec(self.ctx, k, spec)?;
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
            phase: self.phase,
            entry: k.entry,
        });
        Ok(())
    }

    /// Records a buffer-to-buffer copy of `size` bytes (splits the compute pass).
    /// Restarts the encode clock (`RecordStats::encode_ms`): callers that upload inputs
    /// after creating the recorder call this once the uploads are done, so encode time means
    /// recording and submitting alone.
    pub(crate) fn restart_clock(&mut self) {
        self.started = std::time::Instant::now();
    }

    /// Records a zero-fill of `buf`, ordered with the dispatches around it.
    pub(crate) fn clear(&mut self, buf: &wgpu::Buffer) {
        self.ops.push(Op::Clear(buf.clone()));
    }

    pub(crate) fn copy(
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

    /// Writes the uniform arena, records every op (one compute pass per run of dispatches of
    /// one phase between copies), submits once. With a profiling context and TIMESTAMP_QUERY,
    /// also waits for the GPU and reports pass timestamps.
    pub fn submit(self) -> Result<RecordStats> {
        self.submit_with(None)
    }

    /// Dispatches recorded so far.
    pub fn dispatch_count(&self) -> usize {
        self.ops
            .iter()
            .filter(|o| matches!(o, Op::Dispatch { .. }))
            .count()
    }

    /// Encodes everything recorded, in order, into the caller's `encoder` (one compute pass
    /// per run of dispatches between copies) without submitting: the caller submits, with
    /// its own work before and after. The dispatches' parameters go into a fresh uniform buffer,
    /// initialised when it is created. `encoder` must come from this
    /// recorder's context's device. GPU timestamps are not taken on this path.
    pub fn encode_into(self, encoder: &mut wgpu::CommandEncoder) -> Result<RecordStats> {
        let ctx = self.ctx;
        let mut stats = RecordStats {
            algorithms: self.algorithms,
            ..Default::default()
        };
        ctx.scoped(|| {
            let arena = buffers::create_uniform(ctx, &self.arena)?;
            #[allow(clippy::mutable_key_type)]
            let mut groups = HashMap::new();
            self.encode_ops(
                encoder,
                &arena,
                &mut groups,
                &mut stats,
                None,
                &mut PassLog::default(),
            );
            Ok(())
        })?;
        Totals::add(&ctx.totals.dispatches, stats.dispatches);
        stats.encode_ms = self.started.elapsed().as_secs_f64() * 1e3;
        Ok(stats)
    }

    /// [`submit`](Self::submit), keeping the uniform arena and the bind groups in `ws` for the
    /// next call of the same shape (whose buffers `ws` hands out again).
    pub(crate) fn submit_with(self, mut ws: Option<&mut Workspace>) -> Result<RecordStats> {
        let ctx = self.ctx;
        let mut stats = RecordStats {
            algorithms: self.algorithms,
            ..Default::default()
        };
        // WGPU_RNN_PROFILE=dispatch: one pass per dispatch, each timed and printed to stderr
        // (a diagnostic for finding the kernel that dominates; it adds pass overhead).
        let per_dispatch = ctx.profiling_timestamps()
            && std::env::var("WGPU_RNN_PROFILE").is_ok_and(|v| v == "dispatch");
        let passes = if per_dispatch {
            self.ops
                .iter()
                .filter(|o| matches!(o, Op::Dispatch { .. }))
                .count()
        } else {
            self.pass_count()
        };
        let timer = ctx
            .profiling_timestamps()
            .then(|| PassTimer::new(ctx, passes));
        let mut pass_phase = Vec::with_capacity(passes);
        let mut pass_entry = Vec::new();
        ctx.scoped(|| {
            let dev = &ctx.device;
            // A workspace keeps the arena when it is large enough; its bind groups name it.
            let kept = ws
                .as_deref()
                .and_then(|w| w.arena.clone())
                .filter(|a| a.size() >= self.arena.len().max(256) as u64);
            let arena = match kept {
                Some(a) => {
                    if !self.arena.is_empty() {
                        ctx.queue.write_buffer(&a, 0, &self.arena);
                    }
                    a
                }
                None => {
                    let a = buffers::create_uniform(ctx, &self.arena)?;
                    if let Some(w) = ws.as_deref_mut() {
                        w.arena = Some(a.clone());
                        w.bind_groups.clear();
                    }
                    a
                }
            };
            // wgpu handles hash and compare by resource identity, which never changes.
            #[allow(clippy::mutable_key_type)]
            let mut local: HashMap<BindKey, wgpu::BindGroup> = HashMap::new();
            #[allow(clippy::mutable_key_type)]
            let groups_cache = match ws {
                Some(w) => &mut w.bind_groups,
                None => &mut local,
            };
            let mut enc = dev.create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("wgpu-rnn"),
            });
            let mut log = PassLog {
                per_dispatch,
                ..Default::default()
            };
            self.encode_ops(
                &mut enc,
                &arena,
                groups_cache,
                &mut stats,
                timer.as_ref(),
                &mut log,
            );
            pass_phase = log.phases;
            pass_entry = log.entries;
            if let Some(t) = &timer {
                t.resolve(&mut enc);
            }
            ctx.queue.submit(Some(enc.finish()));
            stats.submits = 1;
            Ok(())
        })?;
        Totals::add(&ctx.totals.dispatches, stats.dispatches);
        Totals::add(&ctx.totals.submits, 1);
        stats.encode_ms = self.started.elapsed().as_secs_f64() * 1e3;
        if let Some(t) = &timer {
            let spans = t.read(ctx)?;
            let used = &spans[..pass_phase.len().min(spans.len())];
            if per_dispatch {
                for (s, e) in used.iter().zip(&pass_entry) {
                    eprintln!("wgpu-rnn profile: {e:<28} {:9.3} ms", s.1 - s.0);
                }
            }
            if let (Some(first), Some(last)) = (used.first(), used.last()) {
                stats.gpu_ms = Some(last.1 - first.0);
                let rec: f64 = used
                    .iter()
                    .zip(&pass_phase)
                    .filter(|(_, p)| **p == Phase::Recurrence)
                    .map(|(s, _)| s.1 - s.0)
                    .sum();
                stats.recurrence_ms = Some(rec);
            }
        }
        Ok(stats)
    }

    /// Records every op into `enc`: one compute pass per run of same-phase dispatches
    /// between copies (one per dispatch when `per_dispatch`), bind groups from `groups`.
    #[allow(clippy::mutable_key_type)]
    fn encode_ops(
        &self,
        enc: &mut wgpu::CommandEncoder,
        arena: &wgpu::Buffer,
        bind_groups: &mut HashMap<BindKey, wgpu::BindGroup>,
        stats: &mut RecordStats,
        timer: Option<&PassTimer>,
        log: &mut PassLog,
    ) {
        let per_dispatch = log.per_dispatch;
        let mut i = 0;
        while i < self.ops.len() {
            let phase = match &self.ops[i] {
                Op::Copy {
                    src,
                    src_offset,
                    dst,
                    dst_offset,
                    size,
                } => {
                    enc.copy_buffer_to_buffer(src, *src_offset, dst, *dst_offset, *size);
                    i += 1;
                    continue;
                }
                Op::Clear(buf) => {
                    enc.clear_buffer(buf, 0, None);
                    i += 1;
                    continue;
                }
                Op::Dispatch { phase, .. } => *phase,
            };
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("wgpu-rnn"),
                timestamp_writes: timer.map(|t| t.writes(stats.passes)),
            });
            stats.passes += 1;
            log.phases.push(phase);
            while let Some(Op::Dispatch {
                pipe,
                buffers,
                uniform_offset,
                params_size,
                groups,
                phase: p,
                entry,
            }) = self.ops.get(i)
            {
                if *p != phase || (per_dispatch && log.entries.len() == stats.passes) {
                    break;
                }
                log.entries.push(*entry);
                // One bind group per (pipeline, buffer set): steps differ only in their
                // dynamic uniform offset, so a T-step loop reuses one group.
                let key = (Arc::as_ptr(pipe) as usize, buffers.clone());
                let bg = bind_groups.entry(key).or_insert_with(|| {
                    stats.bind_groups_built += 1;
                    let mut entries = vec![wgpu::BindGroupEntry {
                        binding: 0,
                        resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                            buffer: arena,
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
                    self.ctx
                        .device
                        .create_bind_group(&wgpu::BindGroupDescriptor {
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

    /// Compute passes `submit` will record.
    fn pass_count(&self) -> usize {
        let mut n = 0;
        let mut prev: Option<Phase> = None;
        for op in &self.ops {
            match op {
                Op::Copy { .. } | Op::Clear(_) => prev = None,
                Op::Dispatch { phase, .. } => {
                    if prev != Some(*phase) {
                        n += 1;
                    }
                    prev = Some(*phase);
                }
            }
        }
        n
    }
}
