//! GPU timestamps around compute passes (when the adapter has TIMESTAMP_QUERY and the context
//! is profiling): one begin/end pair per pass, resolved and read back after the submit.

use crate::context::Context;
use crate::error::{Error, Result};

/// Query set and buffers for `passes` compute passes.
pub(crate) struct PassTimer {
    set: wgpu::QuerySet,
    resolve: wgpu::Buffer,
    staging: wgpu::Buffer,
    count: u32,
}

impl PassTimer {
    pub fn new(ctx: &Context, passes: usize) -> Self {
        let count = (2 * passes.max(1)) as u32;
        let bytes = u64::from(count) * 8;
        let set = ctx.device.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("pass timestamps"),
            ty: wgpu::QueryType::Timestamp,
            count,
        });
        let resolve = ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("timestamp resolve"),
            size: bytes,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let staging = ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("timestamp read-back"),
            size: bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        Self {
            set,
            resolve,
            staging,
            count,
        }
    }

    /// The timestamp writes of pass `i`.
    pub fn writes(&self, i: usize) -> wgpu::ComputePassTimestampWrites<'_> {
        wgpu::ComputePassTimestampWrites {
            query_set: &self.set,
            beginning_of_pass_write_index: Some(2 * i as u32),
            end_of_pass_write_index: Some(2 * i as u32 + 1),
        }
    }

    /// Records the resolve and the copy to the read-back buffer.
    pub fn resolve(&self, enc: &mut wgpu::CommandEncoder) {
        enc.resolve_query_set(&self.set, 0..self.count, &self.resolve, 0);
        enc.copy_buffer_to_buffer(
            &self.resolve,
            0,
            &self.staging,
            0,
            u64::from(self.count) * 8,
        );
    }

    /// Waits for the submission and returns each pass's (begin, end) in milliseconds.
    pub fn read(&self, ctx: &Context) -> Result<Vec<(f64, f64)>> {
        let slice = self.staging.slice(..);
        let (tx, rx) = std::sync::mpsc::channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        ctx.wait("timestamp read-back")?;
        rx.recv()
            .map_err(|_| Error::Device("map callback dropped".into()))?
            .map_err(|e| Error::Device(format!("map failed: {e}")))?;
        let ticks: Vec<u64> = {
            let view = slice
                .get_mapped_range()
                .map_err(|e| Error::Device(format!("mapped range: {e}")))?;
            bytemuck::cast_slice(&view).to_vec()
        };
        self.staging.unmap();
        let ms_per_tick = f64::from(ctx.queue.get_timestamp_period()) * 1e-6;
        Ok(ticks
            .chunks_exact(2)
            .map(|p| (p[0] as f64 * ms_per_tick, p[1] as f64 * ms_per_tick))
            .collect())
    }
}
