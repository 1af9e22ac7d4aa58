//! Buffer creation, upload and read-back, with sizes checked against device limits.

use wgpu::util::DeviceExt;

use crate::context::{Context, Totals};
use crate::error::{Error, Result};

const STORAGE_USAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_SRC)
    .union(wgpu::BufferUsages::COPY_DST);

fn check_size(ctx: &Context, what: &str, bytes: u64) -> Result<()> {
    let max_bind = ctx.limits.max_storage_buffer_binding_size;
    let max_buf = ctx.limits.max_buffer_size;
    let limit = max_bind.min(max_buf);
    if bytes > limit {
        return Err(Error::Limit(format!(
            "buffer {what} needs {bytes} bytes, the limit is {limit} bytes per storage binding \
             (max_buffer_size {max_buf}, max_storage_buffer_binding_size {max_bind})"
        )));
    }
    Ok(())
}

/// A zero-initialised storage buffer of `len` f32/u32 elements (at least one element, since
/// zero-sized bindings are invalid).
pub(crate) fn zeros(ctx: &Context, what: &str, len: usize) -> Result<wgpu::Buffer> {
    let bytes = (len.max(1) as u64).checked_mul(4).ok_or_else(|| {
        Error::Limit(format!(
            "buffer {what}: {len} f32 elements overflow 64 bits"
        ))
    })?;
    check_size(ctx, what, bytes)?;
    ctx.scoped(|| {
        Ok(ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(what),
            size: bytes,
            usage: STORAGE_USAGE,
            mapped_at_creation: false,
        }))
    })
}

/// A storage buffer holding `data` (a one-element zero buffer when `data` is empty).
pub(crate) fn upload<T: bytemuck::Pod>(
    ctx: &Context,
    what: &str,
    data: &[T],
) -> Result<wgpu::Buffer> {
    if data.is_empty() {
        return zeros(ctx, what, 1);
    }
    let bytes: &[u8] = bytemuck::cast_slice(data);
    check_size(ctx, what, bytes.len() as u64)?;
    Totals::add(&ctx.totals.uploads, 1);
    ctx.scoped(|| {
        Ok(ctx
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(what),
                contents: bytes,
                usage: STORAGE_USAGE,
            }))
    })
}

/// The uniform arena of one submission.
pub(crate) fn create_uniform(ctx: &Context, bytes: &[u8]) -> Result<wgpu::Buffer> {
    // At least 256 bytes: the recorder keeps a workspace's arena only when it is that long
    // (a shorter one would be replaced, with its bind groups, on every call).
    let mut data = bytes.to_vec();
    if data.len() < 256 {
        data.resize(256, 0);
    }
    Ok(ctx
        .device
        .create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("uniform arena"),
            contents: &data,
            // COPY_DST: a workspace rewrites a kept arena for the next call.
            usage: wgpu::BufferUsages::UNIFORM.union(wgpu::BufferUsages::COPY_DST),
        }))
}

/// A slice of a buffer to read back: (buffer, first f32 element, element count).
pub(crate) type ReadRange<'a> = (&'a wgpu::Buffer, usize, usize);

/// Reads several f32 ranges back with one staging buffer, one submit and one wait.
pub(crate) fn read_f32(ctx: &Context, ranges: &[ReadRange<'_>]) -> Result<Vec<Vec<f32>>> {
    let total: usize = ranges.iter().map(|r| r.2).sum();
    if total == 0 {
        return Ok(ranges.iter().map(|_| Vec::new()).collect());
    }
    Totals::add(&ctx.totals.read_backs, 1);
    let staging = ctx.scoped(|| {
        let staging = ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("read-back"),
            size: (total * 4) as u64,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut enc = ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
        let mut at = 0u64;
        for (buf, first, len) in ranges {
            let bytes = (*len * 4) as u64;
            enc.copy_buffer_to_buffer(buf, (*first * 4) as u64, &staging, at, bytes);
            at += bytes;
        }
        ctx.queue.submit(Some(enc.finish()));
        Ok(staging)
    })?;
    let slice = staging.slice(..);
    let (tx, rx) = std::sync::mpsc::channel();
    slice.map_async(wgpu::MapMode::Read, move |r| {
        let _ = tx.send(r);
    });
    ctx.wait("read-back")?;
    rx.recv()
        .map_err(|_| Error::Device("map callback dropped".into()))?
        .map_err(|e| Error::Device(format!("map failed: {e}")))?;
    let data: Vec<f32> = {
        let view = slice
            .get_mapped_range()
            .map_err(|e| Error::Device(format!("mapped range: {e}")))?;
        bytemuck::cast_slice(&view).to_vec()
    };
    staging.unmap();
    let mut out = Vec::with_capacity(ranges.len());
    let mut at = 0;
    for r in ranges {
        out.push(data[at..at + r.2].to_vec());
        at += r.2;
    }
    Ok(out)
}
