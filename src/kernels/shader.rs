//! The shader modules the crate compiles: which `shaders/` files make each one (sources
//! embedded at build time), which of them are trusted (built without runtime bounds checks),
//! and the list tools and the offline naga test read.

/// One WGSL source file in `shaders/`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Shader {
    Gemm,
    GemmPlain,
    GemmTile,
    GemmRbAny,
    GemmRbKk,
    GemmRbKn,
    LstmForward,
    LstmBackward,
    GruForward,
    GruBackward,
    RnnForward,
    RnnBackward,
    Conv,
    ConvLstmForward,
    ConvLstmBackward,
    ConvLstmTiledForward,
    ConvLstmTiledBackward,
    ConvLstmPack,
    Unfused,
    NnAct,
    Loss,
    Optim,
    ResidentForward,
    ResidentBackward,
    ResidentBiForward,
    ResidentBiBackward,
    GridForward,
    GridBackward,
    GridBiForward,
    GridBiBackward,
    TensorOps,
    Embedding,
    SeqMask,
    Merge,
    Dropout,
    KerasLoss,
    Regularize,
    RecDropout,
    LstmTiledForward,
    LstmTiledBackward,
    GruTiledForward,
    GruTiledBackward,
    RnnTiledForward,
    RnnTiledBackward,
}

impl Shader {
    const ALL: [Shader; 44] = [
        Shader::Gemm,
        Shader::GemmPlain,
        Shader::GemmTile,
        Shader::GemmRbAny,
        Shader::GemmRbKk,
        Shader::GemmRbKn,
        Shader::LstmForward,
        Shader::LstmBackward,
        Shader::GruForward,
        Shader::GruBackward,
        Shader::RnnForward,
        Shader::RnnBackward,
        Shader::Conv,
        Shader::ConvLstmForward,
        Shader::ConvLstmBackward,
        Shader::ConvLstmTiledForward,
        Shader::ConvLstmTiledBackward,
        Shader::ConvLstmPack,
        Shader::Unfused,
        Shader::NnAct,
        Shader::Loss,
        Shader::Optim,
        Shader::ResidentForward,
        Shader::ResidentBackward,
        Shader::ResidentBiForward,
        Shader::ResidentBiBackward,
        Shader::GridForward,
        Shader::GridBackward,
        Shader::GridBiForward,
        Shader::GridBiBackward,
        Shader::TensorOps,
        Shader::Embedding,
        Shader::SeqMask,
        Shader::Merge,
        Shader::Dropout,
        Shader::KerasLoss,
        Shader::Regularize,
        Shader::RecDropout,
        Shader::LstmTiledForward,
        Shader::LstmTiledBackward,
        Shader::GruTiledForward,
        Shader::GruTiledBackward,
        Shader::RnnTiledForward,
        Shader::RnnTiledBackward,
    ];

    /// The WGSL module: recurrent cells get `rnn_common.wgsl` prepended (WGSL has no include).
    pub(super) fn source(self) -> &'static str {
        match self {
            Shader::Gemm => include_str!("../../shaders/gemm.wgsl"),
            Shader::GemmPlain => include_str!("../../shaders/gemm_plain.wgsl"),
            Shader::GemmTile => concat!(
                include_str!("../../shaders/activations.wgsl"),
                include_str!("../../shaders/gemm_tile.wgsl")
            ),
            Shader::GemmRbAny => concat!(
                include_str!("../../shaders/gemm_regblock.wgsl"),
                include_str!("../../shaders/gemm_rb_any.wgsl")
            ),
            Shader::GemmRbKk => concat!(
                include_str!("../../shaders/gemm_regblock.wgsl"),
                include_str!("../../shaders/gemm_rb_kk.wgsl")
            ),
            Shader::GemmRbKn => concat!(
                include_str!("../../shaders/gemm_regblock.wgsl"),
                include_str!("../../shaders/gemm_rb_kn.wgsl")
            ),
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
            Shader::LstmTiledForward => concat!(
                include_str!("../../shaders/activations.wgsl"),
                include_str!("../../shaders/rnn_common.wgsl"),
                include_str!("../../shaders/lstm_forward.wgsl"),
                include_str!("../../shaders/step_tiled_forward.wgsl"),
                include_str!("../../shaders/lstm_tiled_forward.wgsl")
            ),
            Shader::LstmTiledBackward => concat!(
                include_str!("../../shaders/activations.wgsl"),
                include_str!("../../shaders/rnn_common.wgsl"),
                include_str!("../../shaders/lstm_backward.wgsl"),
                include_str!("../../shaders/step_tiled_backward.wgsl"),
                include_str!("../../shaders/lstm_tiled_backward.wgsl")
            ),
            Shader::GruTiledForward => concat!(
                include_str!("../../shaders/activations.wgsl"),
                include_str!("../../shaders/rnn_common.wgsl"),
                include_str!("../../shaders/gru_forward.wgsl"),
                include_str!("../../shaders/step_tiled_forward.wgsl"),
                include_str!("../../shaders/gru_tiled_forward.wgsl")
            ),
            Shader::GruTiledBackward => concat!(
                include_str!("../../shaders/activations.wgsl"),
                include_str!("../../shaders/rnn_common.wgsl"),
                include_str!("../../shaders/gru_backward.wgsl"),
                include_str!("../../shaders/step_tiled_backward.wgsl"),
                include_str!("../../shaders/gru_tiled_backward.wgsl")
            ),
            Shader::RnnTiledForward => concat!(
                include_str!("../../shaders/activations.wgsl"),
                include_str!("../../shaders/rnn_common.wgsl"),
                include_str!("../../shaders/rnn_forward.wgsl"),
                include_str!("../../shaders/step_tiled_forward.wgsl"),
                include_str!("../../shaders/rnn_tiled_forward.wgsl")
            ),
            Shader::RnnTiledBackward => concat!(
                include_str!("../../shaders/activations.wgsl"),
                include_str!("../../shaders/rnn_common.wgsl"),
                include_str!("../../shaders/rnn_backward.wgsl"),
                include_str!("../../shaders/step_tiled_backward.wgsl"),
                include_str!("../../shaders/rnn_tiled_backward.wgsl")
            ),
            Shader::Conv => include_str!("../../shaders/conv.wgsl"),
            Shader::Unfused => include_str!("../../shaders/unfused.wgsl"),
            Shader::Loss => include_str!("../../shaders/loss.wgsl"),
            Shader::Optim => include_str!("../../shaders/optim.wgsl"),
            Shader::TensorOps => include_str!("../../shaders/tensor_ops.wgsl"),
            Shader::Embedding => include_str!("../../shaders/embedding.wgsl"),
            Shader::SeqMask => include_str!("../../shaders/seq_mask.wgsl"),
            Shader::Merge => include_str!("../../shaders/merge.wgsl"),
            Shader::Dropout => concat!(
                include_str!("../../shaders/dropout_hash.wgsl"),
                include_str!("../../shaders/dropout.wgsl")
            ),
            Shader::RecDropout => concat!(
                include_str!("../../shaders/dropout_hash.wgsl"),
                include_str!("../../shaders/rec_dropout.wgsl")
            ),
            Shader::KerasLoss => include_str!("../../shaders/keras_loss.wgsl"),
            Shader::Regularize => include_str!("../../shaders/regularize.wgsl"),
            Shader::ConvLstmForward => concat!(
                include_str!("../../shaders/activations.wgsl"),
                include_str!("../../shaders/convlstm_forward.wgsl")
            ),
            Shader::ConvLstmBackward => concat!(
                include_str!("../../shaders/activations.wgsl"),
                include_str!("../../shaders/convlstm_backward.wgsl")
            ),
            Shader::ConvLstmTiledForward => concat!(
                include_str!("../../shaders/activations.wgsl"),
                include_str!("../../shaders/convlstm_tile.wgsl"),
                include_str!("../../shaders/convlstm_tiled_forward.wgsl")
            ),
            Shader::ConvLstmTiledBackward => concat!(
                include_str!("../../shaders/activations.wgsl"),
                include_str!("../../shaders/convlstm_tile.wgsl"),
                include_str!("../../shaders/convlstm_tiled_backward.wgsl")
            ),
            Shader::ConvLstmPack => include_str!("../../shaders/convlstm_pack.wgsl"),
            Shader::NnAct => concat!(
                include_str!("../../shaders/activations.wgsl"),
                include_str!("../../shaders/nn_act.wgsl")
            ),
            Shader::ResidentForward => concat!(
                include_str!("../../shaders/activations.wgsl"),
                include_str!("../../shaders/resident_common.wgsl"),
                include_str!("../../shaders/resident_regs.wgsl"),
                include_str!("../../shaders/resident_forward.wgsl")
            ),
            Shader::ResidentBackward => concat!(
                include_str!("../../shaders/activations.wgsl"),
                include_str!("../../shaders/resident_common.wgsl"),
                include_str!("../../shaders/resident_regs.wgsl"),
                include_str!("../../shaders/resident_backward.wgsl")
            ),
            Shader::ResidentBiForward => concat!(
                include_str!("../../shaders/activations.wgsl"),
                include_str!("../../shaders/resident_common.wgsl"),
                include_str!("../../shaders/resident_bi_forward.wgsl")
            ),
            Shader::ResidentBiBackward => concat!(
                include_str!("../../shaders/activations.wgsl"),
                include_str!("../../shaders/resident_common.wgsl"),
                include_str!("../../shaders/resident_bi_backward.wgsl")
            ),
            Shader::GridForward => concat!(
                include_str!("../../shaders/activations.wgsl"),
                include_str!("../../shaders/grid_common.wgsl"),
                include_str!("../../shaders/grid_regs.wgsl"),
                include_str!("../../shaders/grid_forward.wgsl")
            ),
            Shader::GridBackward => concat!(
                include_str!("../../shaders/activations.wgsl"),
                include_str!("../../shaders/grid_common.wgsl"),
                include_str!("../../shaders/grid_regs.wgsl"),
                include_str!("../../shaders/grid_backward.wgsl")
            ),
            Shader::GridBiForward => concat!(
                include_str!("../../shaders/activations.wgsl"),
                include_str!("../../shaders/grid_bi_forward.wgsl")
            ),
            Shader::GridBiBackward => concat!(
                include_str!("../../shaders/activations.wgsl"),
                include_str!("../../shaders/grid_bi_backward.wgsl")
            ),
        }
    }

    /// The files the module is made of, in order.
    fn files(self) -> &'static [&'static str] {
        match self {
            Shader::Gemm => &["gemm.wgsl"],
            Shader::GemmPlain => &["gemm_plain.wgsl"],
            Shader::GemmTile => &["activations.wgsl", "gemm_tile.wgsl"],
            Shader::GemmRbAny => &["gemm_regblock.wgsl", "gemm_rb_any.wgsl"],
            Shader::GemmRbKk => &["gemm_regblock.wgsl", "gemm_rb_kk.wgsl"],
            Shader::GemmRbKn => &["gemm_regblock.wgsl", "gemm_rb_kn.wgsl"],
            Shader::LstmForward => &["activations.wgsl", "rnn_common.wgsl", "lstm_forward.wgsl"],
            Shader::LstmBackward => &["activations.wgsl", "rnn_common.wgsl", "lstm_backward.wgsl"],
            Shader::GruForward => &["activations.wgsl", "rnn_common.wgsl", "gru_forward.wgsl"],
            Shader::GruBackward => &["activations.wgsl", "rnn_common.wgsl", "gru_backward.wgsl"],
            Shader::RnnForward => &["activations.wgsl", "rnn_common.wgsl", "rnn_forward.wgsl"],
            Shader::RnnBackward => &["activations.wgsl", "rnn_common.wgsl", "rnn_backward.wgsl"],
            Shader::LstmTiledForward => &[
                "activations.wgsl",
                "rnn_common.wgsl",
                "lstm_forward.wgsl",
                "step_tiled_forward.wgsl",
                "lstm_tiled_forward.wgsl",
            ],
            Shader::LstmTiledBackward => &[
                "activations.wgsl",
                "rnn_common.wgsl",
                "lstm_backward.wgsl",
                "step_tiled_backward.wgsl",
                "lstm_tiled_backward.wgsl",
            ],
            Shader::GruTiledForward => &[
                "activations.wgsl",
                "rnn_common.wgsl",
                "gru_forward.wgsl",
                "step_tiled_forward.wgsl",
                "gru_tiled_forward.wgsl",
            ],
            Shader::GruTiledBackward => &[
                "activations.wgsl",
                "rnn_common.wgsl",
                "gru_backward.wgsl",
                "step_tiled_backward.wgsl",
                "gru_tiled_backward.wgsl",
            ],
            Shader::RnnTiledForward => &[
                "activations.wgsl",
                "rnn_common.wgsl",
                "rnn_forward.wgsl",
                "step_tiled_forward.wgsl",
                "rnn_tiled_forward.wgsl",
            ],
            Shader::RnnTiledBackward => &[
                "activations.wgsl",
                "rnn_common.wgsl",
                "rnn_backward.wgsl",
                "step_tiled_backward.wgsl",
                "rnn_tiled_backward.wgsl",
            ],
            Shader::Conv => &["conv.wgsl"],
            Shader::Unfused => &["unfused.wgsl"],
            Shader::Loss => &["loss.wgsl"],
            Shader::Optim => &["optim.wgsl"],
            Shader::TensorOps => &["tensor_ops.wgsl"],
            Shader::Embedding => &["embedding.wgsl"],
            Shader::SeqMask => &["seq_mask.wgsl"],
            Shader::Merge => &["merge.wgsl"],
            Shader::Dropout => &["dropout_hash.wgsl", "dropout.wgsl"],
            Shader::RecDropout => &["dropout_hash.wgsl", "rec_dropout.wgsl"],
            Shader::KerasLoss => &["keras_loss.wgsl"],
            Shader::Regularize => &["regularize.wgsl"],
            Shader::ConvLstmForward => &["activations.wgsl", "convlstm_forward.wgsl"],
            Shader::ConvLstmBackward => &["activations.wgsl", "convlstm_backward.wgsl"],
            Shader::ConvLstmTiledForward => &[
                "activations.wgsl",
                "convlstm_tile.wgsl",
                "convlstm_tiled_forward.wgsl",
            ],
            Shader::ConvLstmTiledBackward => &[
                "activations.wgsl",
                "convlstm_tile.wgsl",
                "convlstm_tiled_backward.wgsl",
            ],
            Shader::ConvLstmPack => &["convlstm_pack.wgsl"],
            Shader::NnAct => &["activations.wgsl", "nn_act.wgsl"],
            Shader::ResidentForward => &[
                "activations.wgsl",
                "resident_common.wgsl",
                "resident_regs.wgsl",
                "resident_forward.wgsl",
            ],
            Shader::ResidentBackward => &[
                "activations.wgsl",
                "resident_common.wgsl",
                "resident_regs.wgsl",
                "resident_backward.wgsl",
            ],
            Shader::ResidentBiForward => &[
                "activations.wgsl",
                "resident_common.wgsl",
                "resident_bi_forward.wgsl",
            ],
            Shader::ResidentBiBackward => &[
                "activations.wgsl",
                "resident_common.wgsl",
                "resident_bi_backward.wgsl",
            ],
            Shader::GridForward => &[
                "activations.wgsl",
                "grid_common.wgsl",
                "grid_regs.wgsl",
                "grid_forward.wgsl",
            ],
            Shader::GridBackward => &[
                "activations.wgsl",
                "grid_common.wgsl",
                "grid_regs.wgsl",
                "grid_backward.wgsl",
            ],
            Shader::GridBiForward => &["activations.wgsl", "grid_bi_forward.wgsl"],
            Shader::GridBiBackward => &["activations.wgsl", "grid_bi_backward.wgsl"],
        }
    }

    /// Modules whose every index comes from a host-validated plan (and whose weight loads
    /// clamp): built without wgpu's runtime bounds checks, and with workgroup memory left
    /// uninitialised since the kernels write every workgroup element before reading it.
    pub(super) fn trusted(self) -> bool {
        matches!(
            self,
            Shader::ResidentForward
                | Shader::ResidentBackward
                | Shader::ResidentBiForward
                | Shader::ResidentBiBackward
        )
    }

    pub(super) fn name(self) -> &'static str {
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
