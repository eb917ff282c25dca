//! The machine a measurement ran on: CPU model, cores, SIMD width and FLOP peak, read from
//! `/proc/cpuinfo` (Linux; elsewhere the fields are empty and the peak a guess).

/// What `/proc/cpuinfo` says about the CPU.
#[derive(Clone, Debug, Default)]
pub struct CpuInfo {
    /// Model name, e.g. `AMD EPYC 9B45`.
    pub model: String,
    /// Vendor, e.g. `AuthenticAMD`.
    pub vendor: String,
    /// CPU family number.
    pub family: String,
    /// Clock in MHz as reported.
    pub mhz: f64,
    /// Whether the CPU has AVX-512F.
    pub avx512: bool,
    /// Whether the CPU has AVX2 and FMA.
    pub avx2_fma: bool,
    /// Cores available to this process.
    pub cores: usize,
}

impl CpuInfo {
    /// Reads the CPU of this machine.
    pub fn read() -> Self {
        Self::parse(&std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default())
    }

    /// Parses the text of `/proc/cpuinfo`.
    pub fn parse(info: &str) -> Self {
        let field = |name: &str| {
            info.lines()
                .find(|l| l.split(':').next().map(str::trim) == Some(name))
                .and_then(|l| l.split(':').nth(1))
                .map(|v| v.trim().to_string())
                .unwrap_or_default()
        };
        let flags = format!(" {} ", field("flags"));
        Self {
            model: field("model name"),
            vendor: field("vendor_id"),
            family: field("cpu family"),
            mhz: field("cpu MHz").parse().unwrap_or(2500.0),
            avx512: flags.contains(" avx512f "),
            avx2_fma: flags.contains(" avx2 ") && flags.contains(" fma "),
            cores: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        }
    }

    /// Single-precision FLOPs per cycle per core: two FMA units, so 32 with AVX2 (8 lanes x 2
    /// FLOPs x 2 units) and 64 with full-width AVX-512; AMD Zen 4 (family 25) runs AVX-512 on
    /// 256-bit units, so it counts as 32.
    pub fn flops_per_cycle(&self) -> (f64, &'static str) {
        let zen4 = self.vendor == "AuthenticAMD" && self.family == "25";
        if self.avx512 && !zen4 {
            (64.0, "AVX-512 FMA")
        } else if self.avx2_fma {
            (32.0, "AVX2 FMA")
        } else {
            (8.0, "SSE")
        }
    }

    /// The FLOP peak in GFLOP/s (cores x clock x FLOPs per cycle) and how it was counted.
    pub fn peak_gflops(&self) -> (f64, String) {
        let (per_cycle, unit) = self.flops_per_cycle();
        let peak = self.cores as f64 * self.mhz / 1000.0 * per_cycle;
        (
            peak,
            format!(
                "{} cores x {:.2} GHz x {per_cycle} FLOP/cycle ({unit})",
                self.cores,
                self.mhz / 1000.0
            ),
        )
    }

    /// One line naming the CPU, for result files.
    pub fn describe(&self) -> String {
        let simd = if self.avx512 {
            "AVX-512"
        } else if self.avx2_fma {
            "AVX2"
        } else {
            "no AVX2"
        };
        let model = if self.model.is_empty() {
            "unknown CPU"
        } else {
            &self.model
        };
        format!("{model} (family {}, {simd}), {} cores", self.family, self.cores)
    }
}

/// Peak resident memory of this process so far, in bytes (`VmHWM` of `/proc/self/status`;
/// `None` where the system does not report it).
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ZEN5: &str = "vendor_id\t: AuthenticAMD\ncpu family\t: 26\nmodel name\t: AMD EPYC 9B45\ncpu MHz\t\t: 2600.000\nflags\t\t: fpu sse avx2 fma avx512f avx512bw\n";

    #[test]
    fn the_peak_counts_simd_width_and_zen4_halves() {
        let mut cpu = CpuInfo::parse(ZEN5);
        cpu.cores = 2;
        assert_eq!(cpu.model, "AMD EPYC 9B45");
        let (peak, how) = cpu.peak_gflops();
        assert!((peak - 2.0 * 2.6 * 64.0).abs() < 1e-9, "{peak} {how}");
        let mut zen4 = CpuInfo::parse(&ZEN5.replace("family\t: 26", "family\t: 25"));
        zen4.cores = 2;
        assert!((zen4.peak_gflops().0 - 2.0 * 2.6 * 32.0).abs() < 1e-9);
        let avx2 = CpuInfo::parse(&ZEN5.replace(" avx512f avx512bw", ""));
        assert_eq!(avx2.flops_per_cycle().0, 32.0);
        assert!(cpu.describe().contains("AVX-512"));
    }

    #[test]
    fn peak_memory_is_reported_on_linux() {
        if cfg!(target_os = "linux") {
            let peak = peak_rss_bytes().expect("VmHWM in /proc/self/status");
            assert!(peak > 1 << 20, "{peak}");
        }
    }
}
