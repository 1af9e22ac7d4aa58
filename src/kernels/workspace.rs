//! Device buffers, the uniform arena and bind groups kept between calls of the same shape, so
//! repeated inference (a layer's `forward` called again with the same T and B) allocates no
//! buffer and builds no bind group: the same buffers come back in the same order, so the
//! recorder finds every (pipeline, buffers) bind group it built last time.
//!
//! Buffers are handed out by position: the i-th request of a call gets the i-th buffer of the
//! previous call when the size matches (a "zeros" buffer is then cleared on the device, in
//! order, before anything reads it; an upload is rewritten with `Queue::write_buffer`). A size
//! change replaces that buffer and drops the cached bind groups, which may name the old one.

use std::collections::HashMap;

use super::{Recorder, buffers};
use crate::context::Context;
use crate::error::Result;

/// A bind group's identity: the pipeline (by address) and its storage buffers.
pub(crate) type BindKey = (usize, Vec<wgpu::Buffer>);

/// What a layer keeps between inference calls.
#[derive(Default)]
pub(crate) struct Workspace {
    buffers: Vec<(u64, wgpu::Buffer)>,
    next: usize,
    pub(crate) arena: Option<wgpu::Buffer>,
    pub(crate) bind_groups: HashMap<BindKey, wgpu::BindGroup>,
}

impl Workspace {
    /// Starts a call: requests are matched by position from the first buffer again.
    pub fn begin(&mut self) {
        self.next = 0;
    }

    fn slot(&mut self, bytes: u64) -> Option<wgpu::Buffer> {
        let i = self.next;
        self.next += 1;
        match self.buffers.get(i) {
            Some((b, buf)) if *b == bytes => Some(buf.clone()),
            _ => None,
        }
    }

    fn keep(&mut self, bytes: u64, buf: &wgpu::Buffer) {
        let i = self.next - 1;
        // The old buffer at this position may be named by cached bind groups.
        self.bind_groups.clear();
        if i < self.buffers.len() {
            self.buffers[i] = (bytes, buf.clone());
        } else {
            self.buffers.push((bytes, buf.clone()));
        }
    }

    /// A zero-filled buffer of `len` f32s (cleared in `rec` when reused).
    pub fn zeros(
        &mut self,
        rec: &mut Recorder<'_>,
        what: &str,
        len: usize,
    ) -> Result<wgpu::Buffer> {
        let bytes = (len.max(1) * 4) as u64;
        if let Some(buf) = self.slot(bytes) {
            rec.clear(&buf);
            return Ok(buf);
        }
        let buf = buffers::zeros(rec.ctx(), what, len)?;
        self.keep(bytes, &buf);
        Ok(buf)
    }

    /// A buffer holding `data` (rewritten through the queue when reused).
    pub fn upload<T: bytemuck::Pod>(
        &mut self,
        ctx: &Context,
        what: &str,
        data: &[T],
    ) -> Result<wgpu::Buffer> {
        let bytes = (std::mem::size_of_val(data).max(4)) as u64;
        if let Some(buf) = self.slot(bytes) {
            if !data.is_empty() {
                ctx.queue.write_buffer(&buf, 0, bytemuck::cast_slice(data));
                crate::context::Totals::add(&ctx.totals.uploads, 1);
            }
            return Ok(buf);
        }
        let buf = buffers::upload(ctx, what, data)?;
        self.keep(bytes, &buf);
        Ok(buf)
    }
}

/// Where one call's buffers come from: a [`Workspace`] (inference, reused) or fresh
/// allocations (training, whose buffers live on in the returned tape).
pub(crate) enum Alloc<'w> {
    Fresh,
    Reuse(&'w mut Workspace),
}

impl Alloc<'_> {
    pub fn zeros(
        &mut self,
        rec: &mut Recorder<'_>,
        what: &str,
        len: usize,
    ) -> Result<wgpu::Buffer> {
        match self {
            Alloc::Fresh => buffers::zeros(rec.ctx(), what, len),
            Alloc::Reuse(ws) => ws.zeros(rec, what, len),
        }
    }

    pub fn upload<T: bytemuck::Pod>(
        &mut self,
        ctx: &Context,
        what: &str,
        data: &[T],
    ) -> Result<wgpu::Buffer> {
        match self {
            Alloc::Fresh => buffers::upload(ctx, what, data),
            Alloc::Reuse(ws) => ws.upload(ctx, what, data),
        }
    }
}
