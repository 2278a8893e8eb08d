//! The vector instruction set the interpreter's hand-vectorised loops run with: detected
//! once per process, shared by the kernels, the observers' key scans (`keys`) and the
//! (fake-)quantize loops of `value`. A leaf module, so that those three can all dispatch
//! on it without depending on one another.

/// Vector instruction sets the kernels have a build for, in the order of what they
/// include (a CPU that runs one runs those before it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum SimdLevel {
    /// The build's baseline (SSE2 on x86-64).
    Baseline,
    /// AVX2 (256-bit vectors), detected at run time.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    Avx2,
    /// AVX-512F (512-bit vectors), detected at run time.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    Avx512,
}

/// The best [`SimdLevel`] this CPU runs (detected once).
pub(crate) fn simd_level() -> SimdLevel {
    #[cfg(target_arch = "x86_64")]
    {
        static LEVEL: std::sync::OnceLock<SimdLevel> = std::sync::OnceLock::new();
        *LEVEL.get_or_init(|| {
            if std::is_x86_feature_detected!("avx512f") {
                SimdLevel::Avx512
            } else if std::is_x86_feature_detected!("avx2") {
                SimdLevel::Avx2
            } else {
                SimdLevel::Baseline
            }
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    SimdLevel::Baseline
}
