//! What distinguishes the cells inside the shared GPU stack plan: gate counts, device weight
//! layouts, saved buffers, kernel launchers, and how the recurrent-weight gradient is
//! assembled from the gate gradients.

use crate::algorithm::Algorithm;
use crate::context::Context;
use crate::error::Result;
use crate::kernels::rec::{BwdBufs, FwdBufs, Params, PoolNeed, RecShape};
use crate::kernels::{Recorder, grid, gru, lstm, resident, rnn};
pub(crate) use crate::weights::CellWeights;

/// The recurrent cell a GPU stack runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CellKind {
    /// Gates i, f, g, o; has a cell state; optional projection.
    Lstm,
    /// Gates r, z, n; `reset_before` is Keras `reset_after=False`.
    Gru { reset_before: bool },
    /// Elman RNN, tanh or relu.
    Rnn { relu: bool },
}

/// Which matrix the gate-gradient columns of a recurrent-weight block multiply.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Rhs {
    /// The state before each step (the h ring).
    HPrev,
    /// The forward's aux rows (GRU reset-before: r ⊙ h).
    Aux,
}

/// One block of rows of dW_hh: `dW_hh[w_row..w_row+rows] = dG[:, dg_col..dg_col+rows]ᵀ · rhs`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct HBlock {
    pub w_row: usize,
    pub dg_col: usize,
    pub rows: usize,
    pub rhs: Rhs,
}

impl CellKind {
    /// Gate blocks of the input projection (G).
    pub fn gates(self) -> usize {
        match self {
            CellKind::Lstm => 4,
            CellKind::Gru { .. } => 3,
            CellKind::Rnn { .. } => 1,
        }
    }

    /// Whether the cell carries a c state (LSTM).
    pub fn has_c(self) -> bool {
        self == CellKind::Lstm
    }

    /// Width of a gate-gradient row in units of H.
    pub fn dgate_blocks(self) -> usize {
        match self {
            CellKind::Lstm => 4,
            CellKind::Gru { reset_before } => gru::dgate_blocks(reset_before),
            CellKind::Rnn { .. } => 1,
        }
    }

    /// Workgroup-pool needs of the persistent kernels.
    pub fn pool_need(self, s: &RecShape) -> PoolNeed {
        match self {
            CellKind::Lstm => lstm::pool_need(s),
            CellKind::Gru { reset_before } => gru::pool_need(s, reset_before),
            CellKind::Rnn { .. } => rnn::pool_need(s),
        }
    }

    /// f32s of the forward's aux buffer: LSTM h_raw (projection), GRU hn or r⊙h.
    pub fn forward_aux_len(self, s: &RecShape, train: bool) -> usize {
        let rows = if train { s.t * s.b } else { s.b };
        match self {
            CellKind::Lstm if s.proj => rows * s.h,
            CellKind::Gru { .. } => rows * s.h,
            _ => 1,
        }
    }

    /// Recurrent weights as the shader reads them: W_hh, then W_hr (LSTM projection) or
    /// b_hn (GRU: it sits inside the reset product, so it cannot be folded into gx).
    pub fn w_rec(self, c: &CellWeights) -> Vec<f32> {
        let mut v: Vec<f32> = c.w_hh.iter().copied().collect();
        match self {
            CellKind::Lstm => {
                if let Some(w) = &c.w_hr {
                    v.extend(w.iter().copied());
                }
            }
            CellKind::Gru { .. } => {
                let h = c.b_hh.len() / 3;
                v.extend(c.b_hh.iter().skip(2 * h).copied());
            }
            CellKind::Rnn { .. } => {}
        }
        // The forward mat-vec reads W_hh transposed, so neighbouring units load neighbouring
        // addresses (backward's dG·W_hh reads the original layout the same way).
        v.extend(c.w_hh.t().iter().copied());
        v
    }

    /// The bias the input projection adds: b_ih + b_hh, except GRU's b_hn.
    pub fn folded_bias(self, c: &CellWeights) -> Vec<f32> {
        let n_start = match self {
            CellKind::Gru { .. } => 2 * (c.b_hh.len() / 3),
            _ => c.b_hh.len(),
        };
        c.b_ih
            .iter()
            .zip(&c.b_hh)
            .enumerate()
            .map(|(k, (a, b))| if k < n_start { a + b } else { *a })
            .collect()
    }

    /// How dW_hh is assembled from dG after the loop.
    pub fn hh_blocks(self, h: usize) -> Vec<HBlock> {
        let blk = |w_row, dg_col, rows, rhs| HBlock {
            w_row,
            dg_col,
            rows,
            rhs,
        };
        match self {
            CellKind::Lstm => vec![blk(0, 0, 4 * h, Rhs::HPrev)],
            CellKind::Gru {
                reset_before: false,
            } => {
                vec![
                    blk(0, 0, 2 * h, Rhs::HPrev),
                    blk(2 * h, 3 * h, h, Rhs::HPrev),
                ]
            }
            CellKind::Gru { reset_before: true } => {
                vec![blk(0, 0, 2 * h, Rhs::HPrev), blk(2 * h, 2 * h, h, Rhs::Aux)]
            }
            CellKind::Rnn { .. } => vec![blk(0, 0, h, Rhs::HPrev)],
        }
    }

    /// Whether b_hh has a gradient (Keras reset-before GRU has no recurrent bias).
    pub fn has_b_hh_grad(self) -> bool {
        self != CellKind::Gru { reset_before: true }
    }

    /// Records one layer-direction's forward recurrence.
    #[allow(clippy::too_many_arguments)]
    pub fn record_forward(
        self,
        rec: &mut Recorder<'_>,
        s: &RecShape,
        algo: Algorithm,
        train: bool,
        slots: usize,
        out_at: (usize, usize),
        bufs: &FwdBufs<'_>,
    ) -> Result<()> {
        match self {
            CellKind::Lstm => lstm::record_forward(rec, s, algo, train, slots, out_at, bufs),
            CellKind::Gru { reset_before } => {
                gru::record_forward(rec, s, reset_before, algo, train, slots, out_at, bufs)
            }
            CellKind::Rnn { relu } => rnn::record_forward(rec, s, relu, algo, slots, out_at, bufs),
        }
    }

    /// The forward kernels' parameter block of this cell (all but the per-dispatch fields).
    fn forward_params(
        self,
        s: &RecShape,
        train: bool,
        slots: usize,
        out_at: (usize, usize),
    ) -> Result<Params> {
        match self {
            CellKind::Lstm => lstm::fwd_params(s, train, slots, out_at),
            CellKind::Gru { reset_before } => {
                gru::fwd_params(s, reset_before, train, slots, out_at)
            }
            CellKind::Rnn { relu } => rnn::fwd_params(s, relu, slots, out_at),
        }
    }

    /// The backward kernels' parameter block of this cell.
    fn backward_params(self, s: &RecShape, dy_at: (usize, usize)) -> Result<Params> {
        match self {
            CellKind::Lstm => lstm::bwd_params(s, dy_at),
            CellKind::Gru { reset_before } => gru::bwd_params(s, reset_before, dy_at),
            CellKind::Rnn { relu } => rnn::bwd_params(s, relu, dy_at),
        }
    }

    /// The algorithm that runs both directions of a bidirectional layer in one dispatch, if
    /// any: both directions resolved to Resident (`resident::one_dispatch`), or both to Grid
    /// and both grids fit the co-resident cap together (`grid::bi_ok`). `s` is direction 0's
    /// shape; `backward` asks for the reversed loop.
    pub fn one_dispatch(
        self,
        ctx: &Context,
        algos: [Algorithm; 2],
        s: &RecShape,
        backward: bool,
    ) -> Option<Algorithm> {
        if resident::one_dispatch(ctx, algos) {
            Some(Algorithm::Resident)
        } else if algos == [Algorithm::Grid; 2]
            && grid::bi_ok(ctx, self.pool_need(s).cell, s, backward)
        {
            Some(Algorithm::Grid)
        } else {
            None
        }
    }

    /// Records both directions' forward recurrences of a bidirectional layer in one
    /// dispatch per chunk with `algo`, Resident or Grid (`s` is direction 0's shape; the
    /// caller checked [`one_dispatch`](Self::one_dispatch)). The output row holds 2·P columns.
    pub fn record_forward_bi(
        self,
        rec: &mut Recorder<'_>,
        (s, algo): (&RecShape, Algorithm),
        train: bool,
        slots: usize,
        bufs: [&FwdBufs<'_>; 2],
    ) -> Result<()> {
        let mut prm = self.forward_params(s, train, slots, (2 * s.p, 0))?;
        let cell = self.pool_need(s).cell;
        if algo == Algorithm::Grid {
            grid::record_forward_bi(rec, cell, s, &mut prm, bufs)
        } else {
            resident::record_forward_bi(rec, cell, s, &mut prm, bufs)
        }
    }

    /// The backward counterpart of [`record_forward_bi`](Self::record_forward_bi): both
    /// reversed loops in one dispatch per chunk, then each direction's dh0 pass.
    pub fn record_backward_bi(
        self,
        rec: &mut Recorder<'_>,
        (s, algo): ([&RecShape; 2], Algorithm),
        bufs: [&BwdBufs<'_>; 2],
    ) -> Result<()> {
        let p = s[0].p;
        let mut prm = self.backward_params(s[0], (2 * p, 0))?;
        let cell = self.pool_need(s[0]).cell;
        if algo == Algorithm::Grid {
            grid::record_backward_bi(rec, cell, s[0], &mut prm, bufs)?;
        } else {
            resident::record_backward_bi(rec, cell, s[0], &mut prm, bufs)?;
        }
        for dir in 0..2 {
            let prm = self.backward_params(s[dir], (2 * p, dir * p))?;
            match self {
                CellKind::Lstm => lstm::record_final(rec, s[dir], prm, bufs[dir])?,
                CellKind::Gru { .. } => gru::record_final(rec, s[dir], prm, bufs[dir])?,
                CellKind::Rnn { .. } => rnn::record_final(rec, s[dir], prm, bufs[dir])?,
            }
        }
        Ok(())
    }

    /// Records one layer-direction's backward recurrence (and the dh0 pass).
    pub fn record_backward(
        self,
        rec: &mut Recorder<'_>,
        s: &RecShape,
        algo: Algorithm,
        dy_at: (usize, usize),
        bufs: &BwdBufs<'_>,
    ) -> Result<()> {
        match self {
            CellKind::Lstm => lstm::record_backward(rec, s, algo, dy_at, bufs),
            CellKind::Gru { reset_before } => {
                gru::record_backward(rec, s, reset_before, algo, dy_at, bufs)
            }
            CellKind::Rnn { relu } => rnn::record_backward(rec, s, relu, algo, dy_at, bufs),
        }
    }
}

impl From<&crate::cpu::lstm::LstmCellParams<f32>> for CellWeights {
    fn from(c: &crate::cpu::lstm::LstmCellParams<f32>) -> Self {
        Self {
            w_ih: c.w_ih.clone(),
            w_hh: c.w_hh.clone(),
            b_ih: c.b_ih.clone(),
            b_hh: c.b_hh.clone(),
            w_hr: c.w_hr.clone(),
        }
    }
}

impl From<CellWeights> for crate::cpu::lstm::LstmCellParams<f32> {
    fn from(c: CellWeights) -> Self {
        Self {
            w_ih: c.w_ih,
            w_hh: c.w_hh,
            b_ih: c.b_ih,
            b_hh: c.b_hh,
            w_hr: c.w_hr,
        }
    }
}
