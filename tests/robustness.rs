//! Issue 15: no crash on any input. Every probe of the issue ends as a typed error naming the
//! value and the limit (or a correct result); the GPU keeps NaN/inf exactly as the CPU does;
//! malformed golden and safetensors bytes give typed errors, never a panic.

mod common;
#[path = "support/nan_parity.rs"]
mod nan_parity;
