//! The GPU context: instance, adapter choice, device, queue, the limits the kernels
//! plan with, error scopes that turn wgpu errors into typed errors, and the pipeline cache.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::auto_table::{AUTO_TABLE_ENV, AutoTable};
use crate::error::{Error, Result};
use crate::kernels::Pipelines;

/// Environment variable naming an adapter by (case-insensitive) substring of its name.
pub const ADAPTER_ENV: &str = "WGPU_RNN_ADAPTER";

/// llvmpipe stops every loop of an invocation after 65535 iterations in total (DESIGN.md §5).
/// Kernels with a time loop are chunked so one invocation stays under this budget; the
/// margin covers loop bookkeeping we do not count exactly. Applied on every adapter: a
/// shorter dispatch also keeps real drivers clear of watchdog timeouts.
pub const LOOP_BUDGET: u32 = 48_000;

/// The longest the host waits for one submission to finish before reporting the device
/// as hung ([`Error::Device`]) instead of blocking forever. Generous: a long training
/// step on a software adapter takes seconds to minutes.
pub const GPU_WAIT: std::time::Duration = std::time::Duration::from_secs(900);

/// What the crate tells users about the adapter it runs on.
#[derive(Clone, Debug)]
pub struct AdapterSummary {
    /// Adapter name as the driver reports it (e.g. "llvmpipe (LLVM 15.0.6, 256 bits)").
    pub name: String,
    /// Backend: Vulkan, Metal, Dx12, Gl.
    pub backend: String,
    /// Discrete, integrated, virtual, CPU or other.
    pub device_type: String,
    /// Driver name and version information.
    pub driver: String,
}

impl AdapterSummary {
    fn from_info(info: &wgpu::AdapterInfo) -> Self {
        Self {
            name: info.name.clone(),
            backend: format!("{:?}", info.backend),
            device_type: format!("{:?}", info.device_type),
            driver: format!("{} {}", info.driver, info.driver_info)
                .trim()
                .to_string(),
        }
    }
}

/// A device and queue ready to run the crate's kernels.
///
/// Create one with [`Context::new`] (adapter chosen for you) or [`Context::from_device`]
/// (bring your own wgpu device). Cheap to share: wrap it in an `Arc`.
pub struct Context {
    pub(crate) adapter: wgpu::Adapter,
    pub(crate) device: wgpu::Device,
    pub(crate) queue: wgpu::Queue,
    pub(crate) limits: wgpu::Limits,
    pub(crate) pipelines: Pipelines,
    summary: AdapterSummary,
    /// The adapter runs on the CPU (lavapipe, WARP, SwiftShader): the heuristic differs.
    pub(crate) software: bool,
    /// The GEMM kernel for this adapter (chosen once, in `GemmKernel::for_adapter`).
    pub(crate) gemm: crate::kernels::gemm::GemmKernel,
    /// Errors no scope caught (reported by the uncaptured-error handler instead of panicking).
    uncaptured: Arc<Mutex<Vec<String>>>,
    /// Benchmarks turn this on: every submission then records GPU timestamps per pass.
    profiling: std::sync::atomic::AtomicBool,
    /// Identity of this context: device tensors and traces remember it, so one made on
    /// another context is refused instead of read as garbage.
    id: u64,
    /// Running totals of the work and host-device traffic this context has seen.
    pub(crate) totals: Totals,
    /// A measured `Algorithm::Auto` table for this adapter (`crate::auto_table`), if any.
    auto_table: std::sync::RwLock<Option<Arc<AutoTable>>>,
    /// Why `WGPU_RNN_AUTO_TABLE`'s table is not used here (measured on another adapter).
    auto_table_skipped: Option<String>,
}

/// Counters behind [`Context::totals`].
#[derive(Default)]
pub(crate) struct Totals {
    pub dispatches: AtomicUsize,
    pub submits: AtomicUsize,
    pub uploads: AtomicUsize,
    pub read_backs: AtomicUsize,
}

impl Totals {
    pub(crate) fn add(counter: &AtomicUsize, n: usize) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// Storage buffers one kernel binds at most (the GEMM with bias and the recurrent backward
/// kernels bind 8); a device offering fewer cannot run the crate.
pub const REQUIRED_STORAGE_BUFFERS: u32 = 8;
/// Invocations per workgroup the kernels use at most (16×16 and 256×1 workgroups).
pub const REQUIRED_INVOCATIONS: u32 = 256;
/// Workgroup memory the kernels need, in bytes: the recurrent kernels' pool of 4000 f32s
/// (`rnn_common.wgsl`) rounded up to WebGPU's default limit, which every conformant device
/// offers.
pub const REQUIRED_WORKGROUP_BYTES: u32 = 16384;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Checks that `limits` can run every kernel of the crate; the error names the limit.
pub fn check_limits(limits: &wgpu::Limits) -> Result<()> {
    let need = |what: &str, have: u32, want: u32| {
        if have < want {
            Err(Error::Limit(format!(
                "the device offers {what} = {have}; wgpu-rnn's kernels need at least {want}"
            )))
        } else {
            Ok(())
        }
    };
    need(
        "max_storage_buffers_per_shader_stage",
        limits.max_storage_buffers_per_shader_stage,
        REQUIRED_STORAGE_BUFFERS,
    )?;
    need(
        "max_compute_invocations_per_workgroup",
        limits.max_compute_invocations_per_workgroup,
        REQUIRED_INVOCATIONS,
    )?;
    need(
        "max_compute_workgroup_size_x",
        limits.max_compute_workgroup_size_x,
        REQUIRED_INVOCATIONS,
    )?;
    need(
        "max_compute_workgroup_storage_size",
        limits.max_compute_workgroup_storage_size,
        REQUIRED_WORKGROUP_BYTES,
    )?;
    need(
        "max_dynamic_uniform_buffers_per_pipeline_layout",
        limits.max_dynamic_uniform_buffers_per_pipeline_layout,
        1,
    )?;
    need("max_bind_groups", limits.max_bind_groups, 1)?;
    Ok(())
}

fn rank(device_type: wgpu::DeviceType, backend: wgpu::Backend) -> (u8, u8) {
    let ty = match device_type {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Cpu => 3,
        wgpu::DeviceType::Other => 4,
    };
    // Native APIs before GL: GL lacks features the kernels may use later (f16, subgroups).
    let backend = match backend {
        wgpu::Backend::Vulkan | wgpu::Backend::Metal | wgpu::Backend::Dx12 => 0,
        _ => 1,
    };
    (ty, backend)
}

fn instance() -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
    if std::env::var_os("WGPU_BACKEND").is_none() {
        desc.backends = wgpu::Backends::all();
    }
    wgpu::Instance::new(desc)
}

impl Context {
    /// Every adapter wgpu can see on this machine.
    pub fn list_adapters() -> Vec<AdapterSummary> {
        let inst = instance();
        pollster::block_on(inst.enumerate_adapters(wgpu::Backends::all()))
            .iter()
            .map(|a| AdapterSummary::from_info(&a.get_info()))
            .collect()
    }

    /// Picks an adapter (high performance first; `WGPU_RNN_ADAPTER=<substring>` to choose one;
    /// software adapters allowed) and opens a device with the adapter's own limits.
    pub fn new() -> Result<Self> {
        let inst = instance();
        let mut adapters = pollster::block_on(inst.enumerate_adapters(wgpu::Backends::all()));
        if adapters.is_empty() {
            return Err(Error::NoAdapter(
                "wgpu found no adapter (install a Vulkan driver, e.g. Mesa lavapipe: \
                 apt-get install mesa-vulkan-drivers libvulkan1)"
                    .into(),
            ));
        }
        if let Ok(want) = std::env::var(ADAPTER_ENV) {
            let want_lc = want.to_lowercase();
            let names: Vec<String> = adapters.iter().map(|a| a.get_info().name).collect();
            adapters.retain(|a| a.get_info().name.to_lowercase().contains(&want_lc));
            if adapters.is_empty() {
                return Err(Error::NoAdapter(format!(
                    "{ADAPTER_ENV}={want:?} matches none of the adapters {names:?}"
                )));
            }
        }
        adapters.sort_by_key(|a| {
            let i = a.get_info();
            rank(i.device_type, i.backend)
        });
        let adapter = adapters.swap_remove(0);
        Self::open(adapter)?.with_env_auto_table()
    }

    fn open(adapter: wgpu::Adapter) -> Result<Self> {
        // Grid exchanges state between workgroups through `@coherent` storage.
        let wanted = wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::MEMORY_DECORATION_COHERENT;
        let features = adapter.features() & wanted;
        let limits = adapter.limits();
        let desc = wgpu::DeviceDescriptor {
            label: Some("wgpu-rnn"),
            required_features: features,
            required_limits: limits.clone(),
            experimental_features: wgpu::ExperimentalFeatures::disabled(),
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        };
        check_limits(&limits)?;
        let (device, queue) = pollster::block_on(adapter.request_device(&desc))
            .map_err(|e| Error::RequestDevice(e.to_string()))?;
        let uncaptured = Arc::new(Mutex::new(Vec::new()));
        // The device is ours: the default handler panics, so we keep the message and report
        // it as an error instead.
        let sink = uncaptured.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            if let Ok(mut v) = sink.lock() {
                v.push(e.to_string());
            }
        }));
        let lost = uncaptured.clone();
        device.set_device_lost_callback(move |reason, msg| {
            if let Ok(mut v) = lost.lock() {
                v.push(format!("device lost ({reason:?}): {msg}"));
            }
        });
        Ok(Self::assemble(adapter, device, queue, uncaptured))
    }

    /// Wraps a device the caller already has (bring your own wgpu device). The application's
    /// uncaptured-error and device-lost handlers are left alone: the crate catches its own
    /// errors with error scopes only. The kernels plan with `device.limits()` (request the
    /// adapter's limits when creating the device for the fastest kernels); a device whose
    /// limits cannot run them is a typed [`Error::Limit`] naming the limit, here rather than
    /// at first use (see [`check_limits`]).
    pub fn from_device(
        adapter: wgpu::Adapter,
        device: wgpu::Device,
        queue: wgpu::Queue,
    ) -> Result<Self> {
        check_limits(&device.limits())?;
        Self::assemble(adapter, device, queue, Arc::new(Mutex::new(Vec::new())))
            .with_env_auto_table()
    }

    /// Loads the table `WGPU_RNN_AUTO_TABLE` names, if set. A file that cannot be read or is
    /// not a table is an error. A table measured on another adapter is left unused on this
    /// context (the variable is process-wide, and a host may open several adapters) and the
    /// reason kept for [`auto_table_skipped`](Self::auto_table_skipped).
    fn with_env_auto_table(mut self) -> Result<Self> {
        if let Some(path) = std::env::var_os(AUTO_TABLE_ENV) {
            let path = std::path::PathBuf::from(path);
            let table = AutoTable::load(&path)
                .map_err(|e| Error::Config(format!("{AUTO_TABLE_ENV}={}: {e}", path.display())))?;
            if let Err(e) = self.set_auto_table(Some(table)) {
                self.auto_table_skipped = Some(format!(
                    "{AUTO_TABLE_ENV}={} is not used: {e}",
                    path.display()
                ));
            }
        }
        Ok(self)
    }

    /// Why the table `WGPU_RNN_AUTO_TABLE` names is not used on this context (it was
    /// measured on another adapter), if so.
    pub fn auto_table_skipped(&self) -> Option<&str> {
        self.auto_table_skipped.as_deref()
    }

    /// Sets (or with `None` removes) the measured table `Algorithm::Auto` consults before its
    /// built-in rules (see [`crate::auto_table`]). A table measured on another adapter
    /// (name or backend differ) is refused with [`Error::Config`] naming both.
    pub fn set_auto_table(&self, table: Option<AutoTable>) -> Result<()> {
        if let Some(t) = &table {
            t.check()?;
            let (a, s) = (&t.adapter, &self.summary);
            if a.name != s.name || a.backend != s.backend {
                return Err(Error::Config(format!(
                    "the Auto table was measured on {:?} ({}); this context runs on {:?} ({})",
                    a.name, a.backend, s.name, s.backend
                )));
            }
        }
        // The slot holds a plain Option<Arc>: a panic elsewhere cannot leave it half-written,
        // so a poisoned lock is simply taken over.
        let mut slot = self.auto_table.write().unwrap_or_else(|e| e.into_inner());
        *slot = table.map(Arc::new);
        Ok(())
    }

    /// The measured Auto table in use, if any. A layer call takes it once, so every
    /// layer-direction of that call follows the same table.
    pub fn auto_table(&self) -> Option<Arc<AutoTable>> {
        self.auto_table
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn assemble(
        adapter: wgpu::Adapter,
        device: wgpu::Device,
        queue: wgpu::Queue,
        uncaptured: Arc<Mutex<Vec<String>>>,
    ) -> Self {
        let limits = device.limits();
        let info = adapter.get_info();
        let summary = AdapterSummary::from_info(&info);
        let software = info.device_type == wgpu::DeviceType::Cpu;
        Self {
            software,
            gemm: crate::kernels::gemm::GemmKernel::for_adapter(software),
            adapter,
            device,
            queue,
            limits,
            pipelines: Pipelines::default(),
            summary,
            uncaptured,
            profiling: std::sync::atomic::AtomicBool::new(false),
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            totals: Totals::default(),
            auto_table: std::sync::RwLock::new(None),
            auto_table_skipped: None,
        }
    }

    /// This context's identity (unique within the process).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Running totals since the context was made: dispatches and submits recorded through the
    /// crate, host-to-device uploads and device-to-host read-backs (each read-back is one
    /// wait for the GPU). Take two snapshots and subtract ([`RecordStats::since`]) to count
    /// one training step's transfers.
    ///
    /// [`RecordStats::since`]: crate::RecordStats::since
    pub fn totals(&self) -> crate::RecordStats {
        let t = &self.totals;
        crate::RecordStats {
            dispatches: t.dispatches.load(Ordering::Relaxed),
            submits: t.submits.load(Ordering::Relaxed),
            uploads: t.uploads.load(Ordering::Relaxed),
            read_backs: t.read_backs.load(Ordering::Relaxed),
            ..Default::default()
        }
    }

    /// The adapter this context runs on.
    pub fn adapter(&self) -> &AdapterSummary {
        &self.summary
    }

    /// The wgpu adapter (for callers that bring their own buffers).
    pub fn wgpu_adapter(&self) -> &wgpu::Adapter {
        &self.adapter
    }

    /// The wgpu device.
    pub fn device(&self) -> &wgpu::Device {
        &self.device
    }

    /// The wgpu queue.
    pub fn queue(&self) -> &wgpu::Queue {
        &self.queue
    }

    /// The device limits kernels plan with.
    pub fn limits(&self) -> &wgpu::Limits {
        &self.limits
    }

    /// Whether the device can write GPU timestamps at compute-pass boundaries.
    pub fn has_timestamps(&self) -> bool {
        self.device
            .features()
            .contains(wgpu::Features::TIMESTAMP_QUERY)
    }

    /// Turns per-pass GPU timestamps on or off for later submissions (benchmarks; each timed
    /// submission waits for the GPU). Has no effect without TIMESTAMP_QUERY.
    pub fn set_profiling(&self, on: bool) {
        self.profiling
            .store(on, std::sync::atomic::Ordering::Relaxed);
    }

    pub(crate) fn profiling_timestamps(&self) -> bool {
        self.profiling.load(std::sync::atomic::Ordering::Relaxed) && self.has_timestamps()
    }

    /// Waits (at most [`GPU_WAIT`]) for the work submitted so far, including map callbacks;
    /// `what` names the wait in the error.
    pub(crate) fn wait(&self, what: &str) -> Result<()> {
        let poll = wgpu::PollType::Wait {
            submission_index: None,
            timeout: Some(GPU_WAIT),
        };
        self.device.poll(poll).map(|_| ()).map_err(|e| match e {
            wgpu::PollError::Timeout => Error::Device(format!(
                "{what}: the GPU did not finish within {} s (a hung or lost device)",
                GPU_WAIT.as_secs()
            )),
            e => Error::Device(format!("{what}: poll failed: {e}")),
        })
    }

    /// Runs `f` inside validation and out-of-memory error scopes; any error they catch, or
    /// any uncaptured error reported meanwhile, becomes a typed [`Error`].
    pub(crate) fn scoped<R>(&self, f: impl FnOnce() -> Result<R>) -> Result<R> {
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let val = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let out = f();
        let val_err = pollster::block_on(val.pop());
        let oom_err = pollster::block_on(oom.pop());
        if let Some(e) = val_err {
            return Err(Error::Validation(e.to_string()));
        }
        if let Some(e) = oom_err {
            return Err(Error::OutOfMemory(e.to_string()));
        }
        self.take_uncaptured()?;
        out
    }

    fn take_uncaptured(&self) -> Result<()> {
        let mut v = self
            .uncaptured
            .lock()
            .map_err(|_| Error::Device("error log poisoned".into()))?;
        if v.is_empty() {
            return Ok(());
        }
        let msg = v.join("; ");
        v.clear();
        Err(Error::Device(msg))
    }
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("adapter", &self.summary)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_errors_become_typed_errors() {
        let ctx =
            Context::new().expect("GPU tests need an adapter (scripts/test.sh installs lavapipe)");
        // MAP_READ may only be combined with COPY_DST: wgpu reports a validation error,
        // which the scope must turn into Error::Validation instead of a panic.
        let r = ctx.scoped(|| {
            Ok(ctx.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("invalid"),
                size: 16,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::STORAGE,
                mapped_at_creation: false,
            }))
        });
        match r {
            Err(Error::Validation(msg)) => assert!(!msg.is_empty()),
            other => panic!("expected a validation error, got {other:?}"),
        }
        // The context stays usable afterwards.
        ctx.scoped(|| Ok(())).expect("clean scope after an error");
    }

    #[test]
    fn adapter_ranking_prefers_discrete_native_gpus() {
        let discrete = rank(wgpu::DeviceType::DiscreteGpu, wgpu::Backend::Vulkan);
        let cpu_vk = rank(wgpu::DeviceType::Cpu, wgpu::Backend::Vulkan);
        let cpu_gl = rank(wgpu::DeviceType::Cpu, wgpu::Backend::Gl);
        assert!(discrete < cpu_vk && cpu_vk < cpu_gl);
    }
}
