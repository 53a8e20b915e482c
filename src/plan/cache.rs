//! The CPU's L2 size per core, which decides whether a model's weights, split over the pool's
//! threads, stay in their L2s from one call to the next.

/// Assumed where the CPU does not say: the smallest L2 of the x86 parts we tune for (Zen 3).
pub(crate) const FALLBACK_L2_BYTES: usize = 512 * 1024;

/// One core's L2 in bytes, as the CPU reports it (CPUID leaf 0x8000_0006, which AMD and Intel
/// both fill); [`FALLBACK_L2_BYTES`] elsewhere.
pub(crate) fn l2_bytes_per_core() -> usize {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::__cpuid;
        if __cpuid(0x8000_0000).eax >= 0x8000_0006 {
            let kib = (__cpuid(0x8000_0006).ecx >> 16) as usize;
            if kib > 0 {
                return kib * 1024;
            }
        }
    }
    FALLBACK_L2_BYTES
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_l2_is_between_128_kib_and_64_mib() {
        let bytes = l2_bytes_per_core();
        assert!((128 << 10..=64 << 20).contains(&bytes), "{bytes}");
    }
}
