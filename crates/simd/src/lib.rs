//! Which vector instructions coppice's own kernels (the sparse engine's, and the flex kernels'
//! elementwise loops) are run with. Each kernel is compiled for AVX-512, AVX2 with FMA and plain
//! x86-64, and by default the widest the CPU has runs; `COPPICE_SIMD=avx512|avx2|scalar` forces
//! one, so that a machine with AVX-512 can check the other paths too (CI does), and a result can
//! be compared across CPUs. The variable is read once, when a kernel first asks.

use std::sync::OnceLock;

/// The environment variable that forces a path.
pub const VAR: &str = "COPPICE_SIMD";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Simd {
    /// AVX-512F (with AVX2 and FMA): sixteen floats at a time.
    Avx512,
    /// AVX2 with FMA: eight floats at a time.
    Avx2,
    /// What every CPU of the target runs: SSE2 on x86-64, NEON on aarch64.
    Scalar,
}

impl Simd {
    /// Widest first.
    pub const ALL: [Simd; 3] = [Simd::Avx512, Simd::Avx2, Simd::Scalar];

    pub fn name(self) -> &'static str {
        match self {
            Simd::Avx512 => "avx512",
            Simd::Avx2 => "avx2",
            Simd::Scalar => "scalar",
        }
    }

    /// Whether this CPU can run the path.
    pub fn is_available(self) -> bool {
        match self {
            Simd::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Simd::Avx512 => {
                std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
            }
            #[cfg(target_arch = "x86_64")]
            Simd::Avx2 => std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma"),
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// The paths this CPU can run, widest first.
    pub fn available() -> Vec<Simd> {
        Simd::ALL.into_iter().filter(|s| s.is_available()).collect()
    }

    /// The widest path this CPU can run.
    pub fn widest() -> Simd {
        Simd::ALL.into_iter().find(|s| s.is_available()).unwrap_or(Simd::Scalar)
    }

    /// `name` as a path this CPU can run, or why not.
    pub fn parse(name: &str) -> Result<Simd, String> {
        let simd = Simd::ALL.into_iter().find(|s| s.name() == name.trim()).ok_or_else(|| {
            format!("{VAR}={name:?} is not a path; fix: set it to avx512, avx2 or scalar, or unset it for the widest")
        })?;
        if !simd.is_available() {
            let have: Vec<&str> = Simd::available().into_iter().map(Simd::name).collect();
            return Err(format!(
                "{VAR}={name}: this CPU lacks {}; fix: use one it has ({}), or unset it",
                simd.name(),
                have.join(", ")
            ));
        }
        Ok(simd)
    }

    /// The path `COPPICE_SIMD` names, or the widest when it is unset; an error when it names a
    /// path that is not one or that this CPU lacks. Read once.
    pub fn configured() -> Result<Simd, String> {
        static CHOSEN: OnceLock<Result<Simd, String>> = OnceLock::new();
        CHOSEN
            .get_or_init(|| match std::env::var(VAR) {
                Ok(name) if !name.trim().is_empty() => Simd::parse(&name),
                _ => Ok(Simd::widest()),
            })
            .clone()
    }

    /// [`Simd::configured`] for kernels, which cannot fail: a refused setting falls back to the
    /// widest path, since programs check [`Simd::configured`] first and report the error.
    pub fn current() -> Simd {
        Simd::configured().unwrap_or_else(|_| Simd::widest())
    }
}

impl std::fmt::Display for Simd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back_and_what_the_cpu_lacks_is_refused() {
        for simd in Simd::available() {
            assert_eq!(Simd::parse(simd.name()), Ok(simd));
        }
        assert_eq!(Simd::parse("scalar"), Ok(Simd::Scalar));
        assert!(Simd::parse("sse9").unwrap_err().contains("avx512, avx2 or scalar"));
        for lacking in Simd::ALL.into_iter().filter(|s| !s.is_available()) {
            assert!(Simd::parse(lacking.name()).unwrap_err().contains("this CPU lacks"));
        }
        assert_eq!(Simd::available()[0], Simd::widest());
    }
}
