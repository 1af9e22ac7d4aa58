//! Which recurrence algorithm runs the time loop on the GPU.

/// The two fused recurrence algorithms of DESIGN.md §2, plus the heuristic choice.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// Let the crate choose from the shape and the device limits.
    #[default]
    Auto,
    /// One dispatch runs many steps: each workgroup owns a batch tile and keeps h and c in
    /// workgroup memory. Limited by hidden size (an error names the limit when forced).
    Persistent,
    /// One fused dispatch per step (mat-vec + gates + state update), all steps in one compute
    /// pass and one submit. Works for any hidden size.
    Stepwise,
    /// Small hidden sizes: one workgroup per batch tile keeps ALL of W_hh on chip (one chunk
    /// of a weight row per invocation, in registers) and h in workgroup memory for the whole
    /// sequence. The largest hidden size follows from the device's invocations and workgroup
    /// memory per workgroup; forcing it beyond is an [`Error::Limit`](crate::Error::Limit).
    Resident,
    /// Larger hidden sizes: the hidden units are cut into slices, one workgroup per (slice,
    /// batch tile) keeps its slice's W_hh rows in registers, h (backward: the gate
    /// gradients) is exchanged through storage with one bounded grid barrier per step. A
    /// barrier that times out (workgroups not co-resident, e.g. llvmpipe) hands the
    /// remaining steps to a fallback in the same submit, with the same results; it never
    /// hangs. LSTM projection and GRU reset-before take two barriers per step.
    Grid,
    /// ConvLSTM2D only: each step's recurrent convolution as a tiled implicit GEMM (a
    /// workgroup computes 8×16 pixels × 8 filters, or 8×32 × 4, × 4 gates with the h tile,
    /// its halo and the weight tile in workgroup memory) with the cell update as its epilogue; the
    /// backward's transposed convolution and dX the same way. The recurrent cells (LSTM,
    /// GRU, SimpleRNN) have no such kernel: for them it means [`Algorithm::Auto`].
    Tiled,
}

impl Algorithm {
    /// Lower-case name used by the CLI and benchmark JSON.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Auto => "auto",
            Algorithm::Persistent => "persistent",
            Algorithm::Stepwise => "stepwise",
            Algorithm::Resident => "resident",
            Algorithm::Grid => "grid",
            Algorithm::Tiled => "tiled",
        }
    }
}

impl std::str::FromStr for Algorithm {
    type Err = crate::Error;
    fn from_str(s: &str) -> crate::Result<Self> {
        match s {
            "auto" => Ok(Algorithm::Auto),
            "persistent" => Ok(Algorithm::Persistent),
            "stepwise" => Ok(Algorithm::Stepwise),
            "resident" => Ok(Algorithm::Resident),
            "grid" => Ok(Algorithm::Grid),
            "tiled" => Ok(Algorithm::Tiled),
            other => Err(crate::Error::Config(format!(
                "algorithm {other:?}: expected auto, persistent, stepwise, resident, grid or tiled"
            ))),
        }
    }
}

impl Algorithm {
    /// Every algorithm, in declaration order.
    pub const ALL: [Algorithm; 6] = [
        Algorithm::Auto,
        Algorithm::Persistent,
        Algorithm::Stepwise,
        Algorithm::Resident,
        Algorithm::Grid,
        Algorithm::Tiled,
    ];

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// A set of algorithms: which ones a submission's recurrences ran
/// ([`RecordStats::algorithms`](crate::RecordStats::algorithms)), so a caller can see what
/// `Auto` chose.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Algorithms(u8);

impl Algorithms {
    /// Adds one.
    pub fn insert(&mut self, a: Algorithm) {
        self.0 |= a.bit();
    }

    /// Whether `a` is in the set.
    pub fn contains(self, a: Algorithm) -> bool {
        self.0 & a.bit() != 0
    }

    /// The members, in declaration order.
    pub fn iter(self) -> impl Iterator<Item = Algorithm> {
        Algorithm::ALL
            .into_iter()
            .filter(move |a| self.contains(*a))
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl FromIterator<Algorithm> for Algorithms {
    fn from_iter<I: IntoIterator<Item = Algorithm>>(it: I) -> Self {
        let mut s = Algorithms::default();
        it.into_iter().for_each(|a| s.insert(a));
        s
    }
}

/// The largest hidden size (no projection) [`Algorithm::Resident`] runs forward and backward
/// on `ctx`'s device, per cell: `("lstm", h), ("gru", h), ("gru_reset_before", h),
/// ("rnn", h)`. It follows from the device's invocations and workgroup memory per workgroup
/// (one invocation per 64-float chunk of a weight row; see `kernels::resident::plan`).
pub fn resident_max_hidden(ctx: &crate::Context) -> [(&'static str, usize); 4] {
    use crate::kernels::resident::{Cell, max_hidden};
    [
        ("lstm", max_hidden(ctx, Cell::Lstm)),
        (
            "gru",
            max_hidden(
                ctx,
                Cell::Gru {
                    reset_before: false,
                },
            ),
        ),
        (
            "gru_reset_before",
            max_hidden(ctx, Cell::Gru { reset_before: true }),
        ),
        ("rnn", max_hidden(ctx, Cell::Rnn)),
    ]
}

#[doc(hidden)]
pub use crate::kernels::grid::GridHook;

/// Test hooks of [`Algorithm::Grid`] (process-wide; for the crate's own tests): the slice
/// size, a barrier forced to fail after a chosen step, one dispatch per step.
#[doc(hidden)]
pub fn set_grid_test_hook(h: GridHook) {
    crate::kernels::grid::set_hook(h);
}

/// As [`resident_max_hidden`] for [`Algorithm::Grid`] (batch 1): at most 64 workgroups of
/// 256 invocations, one per 64-float chunk of the slice's weight rows.
pub fn grid_max_hidden(ctx: &crate::Context) -> [(&'static str, usize); 4] {
    use crate::kernels::resident::{Cell, max_hidden_of};
    let m = |cell| max_hidden_of(|s| crate::kernels::grid::fits(ctx, cell, s, true).is_ok());
    [
        ("lstm", m(Cell::Lstm)),
        (
            "gru",
            m(Cell::Gru {
                reset_before: false,
            }),
        ),
        ("gru_reset_before", m(Cell::Gru { reset_before: true })),
        ("rnn", m(Cell::Rnn)),
    ]
}
