//! Full int8 on AMX tiles, where the CPU and the OS allow them: one `tdpbusd` multiplies a
//! 16-row × 64-byte tile of activation codes by a 16 × 64-byte tile of weight codes into a
//! 16 × 16 tile of `i32` sums, 16 384 byte products per instruction against VNNI's 64. The
//! weight panels' VNNI layout is already AMX's: a 32-wide panel's reduction group is 128 bytes,
//! so its two 16-column halves are two tiles read at a 128-byte stride. Sums are exact integers,
//! as on every other path, so the bits do not change.
//!
//! The AMX instructions are written as inline assembly: Rust has no stable intrinsics for them.

use std::arch::asm;
use std::sync::OnceLock;

use super::int8_dot::epilogue;
use super::matrix::RowsMut;
use super::packed::PackedWeights;
use super::quantized_rows::QuantizedRows;
use crate::Activation;

/// Bytes of reduction one tile step covers (64 codes).
const STEP: usize = 64;
/// Rows of an activation tile and of a sum tile.
const TILE_ROWS: usize = 16;
/// Columns of a panel the AMX path runs (two 16-column tiles).
pub(super) const AMX_NR: usize = 32;

/// Whether AMX int8 can run: the CPU has it (CPUID leaf 7: AMX-TILE, AMX-INT8) and the OS granted
/// this process the tile state (Linux `arch_prctl(ARCH_REQ_XCOMP_PERM)`), asked once.
pub(super) fn available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| cpu_has_amx_int8() && request_tile_permission())
}

fn cpu_has_amx_int8() -> bool {
    // Leaf 0 says whether leaf 7 exists; an older CPU answers zeros there, read as "no AMX".
    let max_leaf = std::arch::x86_64::__cpuid(0).eax;
    let leaf7 = std::arch::x86_64::__cpuid_count(7, 0);
    max_leaf >= 7 && leaf7.edx & (1 << 24) != 0 && leaf7.edx & (1 << 25) != 0
}

#[cfg(target_os = "linux")]
fn request_tile_permission() -> bool {
    const SYS_ARCH_PRCTL: usize = 158;
    const ARCH_REQ_XCOMP_PERM: usize = 0x1023;
    const XFEATURE_XTILEDATA: usize = 18;
    let ret: isize;
    // SAFETY: a plain Linux system call with two integer arguments; `syscall` clobbers rcx and
    // r11 only, declared below, and touches no memory of ours.
    unsafe {
        asm!(
            "syscall",
            inlateout("rax") SYS_ARCH_PRCTL as isize => ret,
            in("rdi") ARCH_REQ_XCOMP_PERM,
            in("rsi") XFEATURE_XTILEDATA,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    ret == 0
}

#[cfg(not(target_os = "linux"))]
fn request_tile_permission() -> bool {
    false
}

/// The tile configuration `ldtilecfg` reads (palette 1): for the first 16 rows, sums in tiles 0
/// and 1 and activations in tile 4; for the next 16, sums in 2 and 3 and activations in 5; the
/// two weight halves in tiles 6 and 7.
#[repr(C, align(64))]
struct TileConfig {
    palette: u8,
    start_row: u8,
    reserved: [u8; 14],
    colsb: [u16; 16],
    rows: [u8; 16],
}

impl TileConfig {
    /// Tiles for `first` activation rows (1 to 16) and `second` more (0 to 16; 0 leaves tiles
    /// 2, 3 and 5 unconfigured).
    fn new(first: usize, second: usize) -> Self {
        debug_assert!((1..=TILE_ROWS).contains(&first) && second <= TILE_ROWS);
        let mut config = TileConfig {
            palette: 1,
            start_row: 0,
            reserved: [0; 14],
            colsb: [0; 16],
            rows: [0; 16],
        };
        let tiles = [(0, first), (1, first), (4, first), (6, 16), (7, 16)];
        let second_tiles = [(2, second), (3, second), (5, second)];
        for (tile, tile_rows) in tiles
            .into_iter()
            .chain(second_tiles.into_iter().filter(|_| second > 0))
        {
            config.colsb[tile] = STEP as u16;
            config.rows[tile] = tile_rows as u8;
        }
        config
    }
}

/// `out = act(x · W + b)` for columns `col0 .. col0 + out.cols()`, `W` in 32-wide full-int8
/// panels, on AMX tiles: rows in groups of up to 32, each against every panel.
///
/// # Safety
/// [`available`] must have returned true (the CPU has AMX int8 and the OS granted the tile
/// state), and the CPU must support AVX-512F and AVX-512BW.
#[target_feature(enable = "avx512f,avx512bw,avx2,fma")]
#[inline(never)]
pub(super) unsafe fn dense_amx(
    x: QuantizedRows<'_>,
    w: &PackedWeights,
    col0: usize,
    bias: &[f32],
    activation: Activation,
    mut out: RowsMut<'_>,
) {
    assert_eq!(w.nr(), AMX_NR);
    assert_eq!(col0 % AMX_NR, 0);
    assert_eq!(x.k(), w.k());
    let m = x.rows();
    let panels = out.cols().div_ceil(AMX_NR);
    let groups = w.k().div_ceil(4);
    let (steps, tail_groups) = (4 * groups / STEP, 4 * groups % STEP / 4);
    let mut r0 = 0;
    let mut configured = (0, 0);
    while r0 < m {
        // Up to 32 rows: two activation tiles share each pair of weight tiles.
        let rows = (2 * TILE_ROWS).min(m - r0);
        let split = (TILE_ROWS.min(rows), rows.saturating_sub(TILE_ROWS));
        if split != configured {
            let config = TileConfig::new(split.0, split.1);
            // SAFETY: AMX is available (the caller's contract); the configuration is valid for
            // palette 1 (at most 16 rows of at most 64 bytes).
            unsafe { asm!("ldtilecfg [{}]", in(reg) &config, options(nostack, readonly)) };
            configured = split;
        }
        // A zero-padded copy of the rows' last partial step, so tiles never read past a row.
        let mut x_tail = [0u8; 2 * TILE_ROWS * STEP];
        for i in 0..rows {
            let row = x.row(r0 + i);
            x_tail[i * STEP..i * STEP + 4 * tail_groups].copy_from_slice(&row[steps * STEP..]);
        }
        for p in 0..panels {
            let panel = w.vnni_panel(col0 / AMX_NR + p);
            let mut w_tail = [0i8; TILE_ROWS * 2 * STEP];
            w_tail[..tail_groups * 2 * STEP]
                .copy_from_slice(&panel[steps * TILE_ROWS * 2 * STEP..]);
            let mut sums = [[0i32; AMX_NR]; 2 * TILE_ROWS];
            let x0 = x.row(r0).as_ptr();
            let stride = x.row_stride();
            // SAFETY: AMX is configured for `split` rows. Activation tile loads read those rows
            // (64 bytes each, `stride` apart) within the rows' codes for the full steps; weight
            // tile loads read 16 rows of 64 bytes at 128 apart, within the panel's `groups *
            // 128` bytes for the full steps; the tails come from the zero-padded copies above;
            // the sums go to `sums`, 32 rows of 128 bytes.
            unsafe {
                let w0 = panel.as_ptr();
                if split.1 > 0 {
                    asm!(
                        "tilezero tmm0",
                        "tilezero tmm1",
                        "tilezero tmm2",
                        "tilezero tmm3",
                        options(nostack, nomem)
                    );
                    let x1 = x0.add(TILE_ROWS * stride);
                    for s in 0..steps {
                        let ws = w0.add(s * TILE_ROWS * 2 * STEP);
                        tile_step_pair(x0.add(s * STEP), x1.add(s * STEP), stride, ws);
                    }
                    if tail_groups > 0 {
                        let x1_tail = x_tail.as_ptr().add(TILE_ROWS * STEP);
                        tile_step_pair(x_tail.as_ptr(), x1_tail, STEP, w_tail.as_ptr());
                    }
                } else {
                    asm!("tilezero tmm0", "tilezero tmm1", options(nostack, nomem));
                    for s in 0..steps {
                        tile_step(x0.add(s * STEP), stride, w0.add(s * TILE_ROWS * 2 * STEP));
                    }
                    if tail_groups > 0 {
                        tile_step(x_tail.as_ptr(), STEP, w_tail.as_ptr());
                    }
                }
                let base = sums.as_mut_ptr().cast::<i32>();
                asm!(
                    "tilestored [{base} + {stride}*1], tmm0",
                    "tilestored [{base2} + {stride}*1], tmm1",
                    base = in(reg) base,
                    base2 = in(reg) base.add(16),
                    stride = in(reg) 4 * AMX_NR,
                    options(nostack),
                );
                if split.1 > 0 {
                    let base = base.add(TILE_ROWS * AMX_NR);
                    asm!(
                        "tilestored [{base} + {stride}*1], tmm2",
                        "tilestored [{base2} + {stride}*1], tmm3",
                        base = in(reg) base,
                        base2 = in(reg) base.add(16),
                        stride = in(reg) 4 * AMX_NR,
                        options(nostack),
                    );
                }
            }
            for (i, row_sums) in sums.iter().take(rows).enumerate() {
                epilogue(&x, w, bias, activation, col0, r0 + i, p, row_sums, &mut out);
            }
        }
        r0 += rows;
    }
    // SAFETY: AMX is available; releasing the tiles returns them to their initial state.
    unsafe { asm!("tilerelease", options(nostack, nomem)) };
    if activation.is_row_wise() {
        assert!(
            col0 == 0 && out.cols() == w.n(),
            "row-wise activation on a column split"
        );
        for r in 0..m {
            activation.apply_row(out.row_mut(r));
        }
    }
}

/// One 64-byte reduction step: the activation tile at `x` (`stride` bytes between rows) times
/// the weight tiles at `w` (two 16-column halves, 128 bytes between reduction groups), added to
/// the sum tiles 0 and 1.
///
/// # Safety
/// AMX must be configured ([`TileConfig`]); `x` must be readable for the configured rows of 64
/// bytes `stride` apart, `w` for 16 rows of 128 bytes.
#[inline(always)]
unsafe fn tile_step(x: *const u8, stride: usize, w: *const i8) {
    // SAFETY: the caller's contract.
    unsafe {
        asm!(
            "tileloadd tmm4, [{x} + {stride}*1]",
            "tileloadd tmm6, [{w} + {wstride}*1]",
            "tileloadd tmm7, [{w2} + {wstride}*1]",
            "tdpbusd tmm0, tmm4, tmm6",
            "tdpbusd tmm1, tmm4, tmm7",
            x = in(reg) x,
            stride = in(reg) stride,
            w = in(reg) w,
            w2 = in(reg) w.add(STEP),
            wstride = in(reg) 2 * STEP,
            options(nostack, readonly),
        );
    }
}

/// [`tile_step`] for 32 rows: activation tiles at `x0` and `x1` (16 rows each), sums in tiles
/// 0, 1 (first 16 rows) and 2, 3 (next 16); each weight tile load serves both.
///
/// # Safety
/// As [`tile_step`], for both activation tiles.
#[inline(always)]
unsafe fn tile_step_pair(x0: *const u8, x1: *const u8, stride: usize, w: *const i8) {
    // SAFETY: the caller's contract.
    unsafe {
        asm!(
            "tileloadd tmm4, [{x0} + {stride}*1]",
            "tileloadd tmm6, [{w} + {wstride}*1]",
            "tileloadd tmm5, [{x1} + {stride}*1]",
            "tileloadd tmm7, [{w2} + {wstride}*1]",
            "tdpbusd tmm0, tmm4, tmm6",
            "tdpbusd tmm2, tmm5, tmm6",
            "tdpbusd tmm1, tmm4, tmm7",
            "tdpbusd tmm3, tmm5, tmm7",
            x0 = in(reg) x0,
            x1 = in(reg) x1,
            stride = in(reg) stride,
            w = in(reg) w,
            w2 = in(reg) w.add(STEP),
            wstride = in(reg) 2 * STEP,
            options(nostack, readonly),
        );
    }
}
