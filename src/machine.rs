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

/// The machine's memory in bytes (`MemTotal` of `/proc/meminfo`; `None` where the system does
/// not report it).
pub fn total_memory_bytes() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Copies of a batch's images that an attack on it holds at once, at least (the images, the
/// iterate, the best one so far, the perturbation, the gradient, ...). A lower bound: the
/// model's activations come on top.
pub const ATTACK_COPIES: u64 = 16;

/// f32 values per input value that a training step of the built-in networks holds, roughly and
/// at least: their activations (the MNIST CNN's are about 70 per input value) are kept for the
/// backward pass and matched by their gradients.
pub const TRAINING_COPIES: u64 = 256;

/// Refuses `flag` = `batch` when `batch` images of `values_per_image` f32 values, held `copies`
/// times, would not fit in this machine's memory (`memory`, from [`total_memory_bytes`] when
/// it is `None` and the system says; no check where it does not). What this refuses could
/// never run; what it lets through may still need more.
pub fn check_batch_fits(
    flag: &str,
    batch: usize,
    values_per_image: usize,
    copies: u64,
    memory: Option<u64>,
) -> crate::Result<()> {
    let Some(memory) = memory.or_else(total_memory_bytes) else {
        return Ok(());
    };
    let need = (batch as u64)
        .saturating_mul(values_per_image as u64)
        .saturating_mul(4 * copies);
    match need > memory {
        true => Err(crate::Error::Invalid(format!(
            "{flag} {batch}: a batch of {batch} images of {values_per_image} values needs at least {:.1} GiB, more than this machine's {:.1} GiB",
            need as f64 / (1u64 << 30) as f64,
            memory as f64 / (1u64 << 30) as f64
        ))),
        false => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_that_cannot_fit_in_memory_are_refused_naming_the_flag() {
        let gib = 1u64 << 30;
        let err = check_batch_fits("--batch-sizes", 1_000_000, 784, ATTACK_COPIES, Some(16 * gib))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("--batch-sizes 1000000:") && err.contains("16.0 GiB"),
            "{err}"
        );
        check_batch_fits("--batch-sizes", 1000, 3 * 224 * 224, ATTACK_COPIES, Some(16 * gib)).unwrap();
        assert!(check_batch_fits("--batch-size", usize::MAX, 784, TRAINING_COPIES, Some(16 * gib)).is_err());
        // All 60 000 MNIST images in one training step: refused on 16 GiB, a batch of 128 is not.
        assert!(check_batch_fits("--batch-size", 60_000, 784, TRAINING_COPIES, Some(16 * gib)).is_err());
        check_batch_fits("--batch-size", 128, 784, TRAINING_COPIES, Some(16 * gib)).unwrap();
        if cfg!(target_os = "linux") {
            assert!(total_memory_bytes().unwrap() > 1 << 28);
        }
    }

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
