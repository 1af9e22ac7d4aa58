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
}

impl Algorithm {
    /// Lower-case name used by the CLI and benchmark JSON.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Auto => "auto",
            Algorithm::Persistent => "persistent",
            Algorithm::Stepwise => "stepwise",
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
            other => Err(crate::Error::Config(format!(
                "algorithm {other:?}: expected auto, persistent or stepwise"
            ))),
        }
    }
}
