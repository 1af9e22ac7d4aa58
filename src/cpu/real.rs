//! The scalar type of the CPU reference and its numerically stable activations.
//!
//! The reference is generic so the same code runs in `f32` (to compare with the GPU, which
//! computes in `f32`) and in `f64` (so finite-difference gradient checks are accurate enough
//! to catch real mistakes rather than rounding noise).

use std::fmt::Debug;
use std::iter::Sum;

use ndarray::{LinalgScalar, ScalarOperand};
use num_traits::Float;

/// A floating-point scalar the CPU reference can compute in: `f32` or `f64`.
///
/// `LinalgScalar` lets ndarray route `.dot()` to its fast `f32`/`f64` matrix kernels;
/// `ScalarOperand` allows `array * scalar`.
pub trait Real: Float + LinalgScalar + ScalarOperand + Debug + Sum + Send + Sync + 'static {
    /// Converts from `f64`, rounding to nearest for `f32`.
    ///
    /// A plain method instead of `NumCast::from`, because the latter returns an `Option`
    /// that can never be `None` for these two types.
    fn from_f64(v: f64) -> Self;

    /// Converts to `f64` (exact for both `f32` and `f64`).
    ///
    /// Not called `to_f64` so it does not clash with `ToPrimitive::to_f64`, which `Float`
    /// brings into scope and which returns an `Option`.
    fn as_f64(self) -> f64;
}

impl Real for f32 {
    fn from_f64(v: f64) -> Self {
        v as f32
    }

    fn as_f64(self) -> f64 {
        f64::from(self)
    }
}

impl Real for f64 {
    fn from_f64(v: f64) -> Self {
        v
    }

    fn as_f64(self) -> f64 {
        self
    }
}

/// The logistic function `1 / (1 + e^-x)`, computed without overflow.
///
/// For large negative `x`, `e^-x` overflows to infinity; the result would still be 0, but
/// the branch keeps every intermediate finite, so no `inf` can leak into a later product
/// such as `inf * 0 = NaN`. Each branch only ever calls `exp` on a non-positive argument.
pub fn sigmoid<T: Real>(x: T) -> T {
    if x >= T::zero() {
        T::one() / (T::one() + (-x).exp())
    } else {
        let e = x.exp();
        e / (T::one() + e)
    }
}

/// The hyperbolic tangent.
///
/// For |x| ≥ 0.5 it is `1 - 2 / (e^{2x} + 1)` through [`sigmoid`] (exp is several times
/// cheaper than libm's tanh, which dominated the CPU LSTM's element-wise time); the result
/// is then ≥ 0.46 in magnitude, so the subtraction loses nothing. Near 0, where that form
/// would cancel, the library tanh keeps full relative accuracy. Saturates to ±1 without
/// overflow like `Float::tanh`.
pub fn tanh<T: Real>(x: T) -> T {
    let half = T::from_f64(0.5);
    if x.abs() < half {
        x.tanh()
    } else {
        let two = T::from_f64(2.0);
        two * sigmoid(two * x) - T::one()
    }
}

/// `max(x, 0)` that keeps NaN (Rust's `Float::max` would return 0 for a NaN `x`, hiding it;
/// PyTorch's relu returns NaN). `relu(±inf)` is `inf` / 0.
pub fn relu<T: Real>(x: T) -> T {
    if x > T::zero() || x.is_nan() {
        x
    } else {
        T::zero()
    }
}

/// Keras 3 `hard_sigmoid`, `relu6(x + 3) / 6`, keeping NaN (see [`relu`]).
pub fn hard_sigmoid<T: Real>(x: T) -> T {
    if x.is_nan() {
        return x;
    }
    let (zero, three, six) = (T::zero(), T::from_f64(3.0), T::from_f64(6.0));
    (x + three).max(zero).min(six) / six
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The exp-based branch agrees with the library tanh to a few ulps in f32 and f64, and
    /// saturates without NaN.
    #[test]
    fn tanh_matches_the_library_everywhere() {
        let mut x = -20.0f64;
        while x <= 20.0 {
            let (a, b) = (tanh(x), x.tanh());
            assert!(
                (a - b).abs() <= 4.0 * f64::EPSILON * b.abs().max(1e-300),
                "f64 {x}: {a} vs {b}"
            );
            let xf = x as f32;
            let (a, b) = (tanh(xf), xf.tanh());
            assert!(
                (a - b).abs() <= 4.0 * f32::EPSILON * b.abs(),
                "f32 {xf}: {a} vs {b}"
            );
            x += 0.01;
        }
        for &v in &[-1e30f32, -100.0, 100.0, 1e30] {
            assert_eq!(tanh(v), v.signum());
        }
    }

    #[test]
    fn sigmoid_is_finite_and_symmetric() {
        for &x in &[-1000.0f64, -50.0, -1.0, 0.0, 1.0, 50.0, 1000.0] {
            let s = sigmoid(x);
            assert!(
                s.is_finite() && (0.0..=1.0).contains(&s),
                "sigmoid({x}) = {s}"
            );
            assert!((s + sigmoid(-x) - 1.0).abs() < 1e-15);
        }
        assert_eq!(sigmoid(0.0f32), 0.5);
        assert!(sigmoid(-200.0f32) >= 0.0 && sigmoid(200.0f32) == 1.0);
        assert!((sigmoid(2.0f64) - 1.0 / (1.0 + (-2.0f64).exp())).abs() < 1e-16);
    }

    /// Non-finite policy: NaN in, NaN out; ±inf saturate to the activation's limits.
    #[test]
    fn activations_keep_nan_and_saturate_infinities() {
        for f in [sigmoid::<f32>, tanh, relu, hard_sigmoid] {
            assert!(f(f32::NAN).is_nan());
        }
        assert_eq!(
            [sigmoid(f32::INFINITY), sigmoid(f32::NEG_INFINITY)],
            [1.0, 0.0]
        );
        assert_eq!([tanh(f32::INFINITY), tanh(f32::NEG_INFINITY)], [1.0, -1.0]);
        assert_eq!(
            [relu(f32::INFINITY), relu(f32::NEG_INFINITY)],
            [f32::INFINITY, 0.0]
        );
        assert_eq!(
            [hard_sigmoid(f32::INFINITY), hard_sigmoid(f32::NEG_INFINITY)],
            [1.0, 0.0]
        );
        assert_eq!([relu(-2.0f64), relu(3.0)], [0.0, 3.0]);
        assert_eq!([hard_sigmoid(0.0f64), hard_sigmoid(-4.0)], [0.5, 0.0]);
    }

    #[test]
    fn conversions_round_trip() {
        assert_eq!(<f32 as Real>::from_f64(0.5).as_f64(), 0.5);
        assert_eq!(<f64 as Real>::from_f64(0.1).as_f64(), 0.1);
        assert_eq!(tanh(0.0f64), 0.0);
    }
}
