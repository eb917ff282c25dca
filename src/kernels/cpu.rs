//! What this CPU offers the kernels, found out once per process: its vector instructions and
//! the size of a core's L2 cache. Every kernel asks here instead of probing on its own.

use std::sync::OnceLock;

/// The instruction sets a kernel may be compiled for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Features {
    /// AVX2 (256-bit integer and float vectors).
    pub avx2: bool,
    /// AVX2 together with FMA (fused multiply-add): what the register tiles of the
    /// convolutions and matrix products need.
    pub avx2_fma: bool,
}

/// This CPU's [`Features`].
pub(crate) fn features() -> Features {
    static FEATURES: OnceLock<Features> = OnceLock::new();
    *FEATURES.get_or_init(detect_features)
}

fn detect_features() -> Features {
    #[cfg(target_arch = "x86_64")]
    {
        let avx2 = std::arch::is_x86_feature_detected!("avx2");
        let fma = std::arch::is_x86_feature_detected!("fma");
        Features {
            avx2,
            avx2_fma: avx2 && fma,
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    Features {
        avx2: false,
        avx2_fma: false,
    }
}

/// The L2 cache size assumed where the operating system does not say (the smallest of the
/// x86-64 cores with AVX2 that the kernels were measured on).
pub(crate) const DEFAULT_L2_BYTES: usize = 512 * 1024;

/// Bytes of one core's L2 (data or unified) cache: read once from Linux's
/// `/sys/devices/system/cpu/cpu0/cache`, else [`DEFAULT_L2_BYTES`].
pub(crate) fn l2_cache_bytes() -> usize {
    static L2: OnceLock<usize> = OnceLock::new();
    *L2.get_or_init(|| read_l2_cache_bytes().unwrap_or(DEFAULT_L2_BYTES))
}

fn read_l2_cache_bytes() -> Option<usize> {
    let dir = std::fs::read_dir("/sys/devices/system/cpu/cpu0/cache").ok()?;
    for entry in dir.flatten() {
        let read = |name: &str| std::fs::read_to_string(entry.path().join(name)).ok();
        let level = read("level").map(|s| s.trim().to_owned());
        let kind = read("type").map(|s| s.trim().to_owned());
        if level.as_deref() == Some("2") && kind.as_deref() != Some("Instruction") {
            return read("size").as_deref().and_then(parse_cache_size);
        }
    }
    None
}

/// A size as sysfs writes it (`512K`, `1024K`, `2M`, or plain bytes); `None` if unreadable or
/// implausible (under 64 KiB or over 64 MiB).
fn parse_cache_size(text: &str) -> Option<usize> {
    let text = text.trim();
    let (digits, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((at, _)) => text.split_at(at),
        None => (text, ""),
    };
    let value: usize = digits.parse().ok()?;
    let bytes = match unit {
        "" => value,
        "K" | "k" => value.checked_mul(1024)?,
        "M" | "m" => value.checked_mul(1024 * 1024)?,
        _ => return None,
    };
    (64 * 1024..=64 * 1024 * 1024).contains(&bytes).then_some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_sizes_are_read_as_sysfs_writes_them() {
        assert_eq!(parse_cache_size("512K\n"), Some(512 * 1024));
        assert_eq!(parse_cache_size("1024K"), Some(1024 * 1024));
        assert_eq!(parse_cache_size("2M"), Some(2 * 1024 * 1024));
        assert_eq!(parse_cache_size("1048576"), Some(1024 * 1024));
        assert_eq!(parse_cache_size("32K"), None, "too small for an L2");
        assert_eq!(parse_cache_size("12G"), None);
        assert_eq!(parse_cache_size(""), None);
        assert_eq!(parse_cache_size("K"), None);
    }

    #[test]
    fn the_detected_sizes_and_features_are_consistent() {
        let l2 = l2_cache_bytes();
        assert!((64 * 1024..=64 * 1024 * 1024).contains(&l2), "{l2}");
        let f = features();
        assert!(!f.avx2_fma || f.avx2, "FMA tiles are only chosen with AVX2");
        assert_eq!(f, features(), "detected once");
    }
}
