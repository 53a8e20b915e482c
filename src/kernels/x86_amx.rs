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
/// Reduction steps per pass over a row group's panels: the group's codes for one pass (32 rows
/// × 512 bytes) and one panel's weights for it (16 KiB) stay in L1 together, so only the
/// weights stream from L2. All of a wider reduction at once (mnist-mlp's 784 codes a row) made
/// both miss L1 on every panel.
const PASS_STEPS: usize = 8;

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
    // Weights streamed from DRAM run in one pass: parking the sums and reloading them at once
    // (the next pass of the same block) stalled on the reload (wide-mlp 1.5× slower at 32 rows).
    let passes = if w.prefetch() {
        1
    } else {
        steps.div_ceil(PASS_STEPS).max(1)
    };
    if m > 0 {
        // Every row's codes can be read in whole lines (see the tail step).
        let _ = x.row_lines(m - 1);
    }
    let mut configured = (0, 0);
    let layer = AmxLayer {
        x,
        w,
        bias,
        activation,
        col0,
        steps,
        tail_groups,
        passes,
    };
    let mut scratch = Scratch {
        sums: [[0; AMX_NR]; 2 * TILE_ROWS],
        w_tail: [0; TILE_ROWS * 2 * STEP],
    };
    let mut block = |g: usize, p: usize, pass: usize| {
        // SAFETY: AMX is available and the CPU has AVX-512F/BW (the caller's contract).
        unsafe { layer.block(&mut out, &mut scratch, &mut configured, g, p, pass) }
    };
    let row_groups = m.div_ceil(2 * TILE_ROWS);
    if w.prefetch() {
        // Weights streamed from DRAM: each panel comes from DRAM once, for every row group.
        for p in 0..panels {
            for pass in 0..passes {
                for g in 0..row_groups {
                    block(g, p, pass);
                }
            }
        }
    } else {
        // Weights in cache: each row group's codes for a pass stay in L1 across the panels.
        for g in 0..row_groups {
            for pass in 0..passes {
                for p in 0..panels {
                    block(g, p, pass);
                }
            }
        }
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

/// Buffers a layer's blocks reuse, zeroed once per call rather than once per block: the sums of
/// a block's last pass, and its weights' last partial step (only ever overwritten in its first
/// `tail_groups * 128` bytes, so the rest stays zero).
struct Scratch {
    sums: [[i32; AMX_NR]; 2 * TILE_ROWS],
    w_tail: [i8; TILE_ROWS * 2 * STEP],
}

/// One layer's operands on the AMX path, and how its reduction divides into tile steps.
#[derive(Clone, Copy)]
struct AmxLayer<'a> {
    x: QuantizedRows<'a>,
    w: &'a PackedWeights,
    bias: &'a [f32],
    activation: Activation,
    col0: usize,
    /// Whole 64-byte steps of the reduction.
    steps: usize,
    /// Groups of 4 codes after the whole steps.
    tail_groups: usize,
    /// Passes the steps are divided into.
    passes: usize,
}

impl AmxLayer<'_> {
    /// Row group `g` (up to 32 rows: two activation tiles share each pair of weight tiles)
    /// against local panel `p`, over pass `pass`'s share of the reduction; the tile
    /// configuration is changed when the group's rows need another.
    ///
    /// # Safety
    /// As [`dense_amx`].
    #[target_feature(enable = "avx512f,avx512bw,avx2,fma")]
    unsafe fn block(
        &self,
        out: &mut RowsMut<'_>,
        scratch: &mut Scratch,
        configured: &mut (usize, usize),
        g: usize,
        p: usize,
        pass: usize,
    ) {
        let AmxLayer {
            x,
            w,
            bias,
            activation,
            col0,
            steps,
            tail_groups,
            passes,
        } = *self;
        let r0 = g * 2 * TILE_ROWS;
        let rows = (2 * TILE_ROWS).min(x.rows() - r0);
        let split = (TILE_ROWS.min(rows), rows.saturating_sub(TILE_ROWS));
        let last = pass + 1 == passes;
        // A partial panel has no room in `out` for its running sums between passes: it runs
        // all its steps in the last pass.
        let whole = (p + 1) * AMX_NR <= out.cols();
        if !whole && !last {
            return;
        }
        if split != *configured {
            let config = TileConfig::new(split.0, split.1);
            // SAFETY: AMX is available (the caller's contract); the configuration is valid for
            // palette 1 (at most 16 rows of at most 64 bytes).
            unsafe { asm!("ldtilecfg [{}]", in(reg) &config, options(nostack, readonly)) };
            *configured = split;
        }
        let s0 = if whole { pass * steps / passes } else { 0 };
        let s1 = (pass + 1) * steps / passes;
        let panel = w.vnni_panel(col0 / AMX_NR + p);
        let x0 = x.row(r0).as_ptr();
        let stride = x.row_stride();
        // Running sums wait between passes in the panel's own output columns, as `i32`.
        let parked = out.row_mut(r0)[p * AMX_NR..].as_mut_ptr().cast::<i32>();
        let parked_stride = 4 * out.stride();
        let Scratch { sums, w_tail } = scratch;
        // SAFETY: AMX is configured for `split` rows. Activation tile loads read those rows (64
        // bytes each, `stride` apart) within the rows' whole lines of codes (`dense_amx` checked
        // the last row's); weight tile loads read 16 rows of 64 bytes at 128 apart, within the
        // panel's `groups * 128` bytes for the full steps, and the tail's from its zero-padded
        // copy; sums are parked in (and
        // reloaded from) the `split` rows' 32 columns of this whole panel in `out`, or stored
        // to `sums`, 32 rows of 128 bytes.
        unsafe {
            if s0 == 0 {
                asm!("tilezero tmm0", "tilezero tmm1", options(nostack, nomem));
                if split.1 > 0 {
                    asm!("tilezero tmm2", "tilezero tmm3", options(nostack, nomem));
                }
            } else {
                load_sums(parked, parked_stride, split.1 > 0);
            }
            let w0 = panel.as_ptr();
            let x1 = x0.add(TILE_ROWS * stride);
            for s in s0..s1 {
                let ws = w0.add(s * TILE_ROWS * 2 * STEP);
                if s + 1 < s1 {
                    prefetch_weights(ws.add(TILE_ROWS * 2 * STEP));
                }
                if split.1 > 0 {
                    tile_step_pair(x0.add(s * STEP), x1.add(s * STEP), stride, ws);
                } else {
                    tile_step(x0.add(s * STEP), stride, ws);
                }
            }
            if !last {
                store_sums(parked, parked_stride, split.1 > 0);
                return;
            }
            if tail_groups > 0 {
                // The rows' last partial step is read in whole 64-byte lines (whatever lies past
                // the codes meets zero weights); the weights' is a zero-padded copy, so tiles
                // never read past the panel.
                w_tail[..tail_groups * 2 * STEP]
                    .copy_from_slice(&panel[steps * TILE_ROWS * 2 * STEP..]);
                let (x0, x1) = (x0.add(steps * STEP), x1.add(steps * STEP));
                if split.1 > 0 {
                    tile_step_pair(x0, x1, stride, w_tail.as_ptr());
                } else {
                    tile_step(x0, stride, w_tail.as_ptr());
                }
            }
            store_sums(sums.as_mut_ptr().cast(), 4 * AMX_NR, split.1 > 0);
        }
        for (i, row_sums) in sums.iter().take(rows).enumerate() {
            epilogue(&x, w, bias, activation, col0, r0 + i, p, row_sums, out);
        }
    }
}

/// Asks for the weight tiles of one step (2 KiB from `w`) to be brought into L1 while the
/// current step computes: a tile load waits for the tile register's last reader, so its own
/// latency is not hidden.
///
/// # Safety
/// None beyond the CPU's SSE: a prefetch never faults.
#[inline(always)]
unsafe fn prefetch_weights(w: *const i8) {
    use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
    for line in 0..2 * TILE_ROWS {
        // SAFETY: prefetching is a hint that never faults, whatever the address.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(w.wrapping_add(line * STEP)) };
    }
}

/// Stores the sum tiles 0 and 1 (and 2 and 3 when `pair`) to 16 (32) rows of 32 `i32` at `dst`,
/// `stride` bytes apart.
///
/// # Safety
/// AMX must be configured ([`TileConfig`]) and `dst` writable for the configured rows.
#[inline(always)]
unsafe fn store_sums(dst: *mut i32, stride: usize, pair: bool) {
    // SAFETY: the caller's contract.
    unsafe {
        asm!(
            "tilestored [{dst} + {stride}*1], tmm0",
            "tilestored [{dst2} + {stride}*1], tmm1",
            dst = in(reg) dst,
            dst2 = in(reg) dst.add(TILE_ROWS),
            stride = in(reg) stride,
            options(nostack),
        );
        if pair {
            let dst = dst.byte_add(TILE_ROWS * stride);
            asm!(
                "tilestored [{dst} + {stride}*1], tmm2",
                "tilestored [{dst2} + {stride}*1], tmm3",
                dst = in(reg) dst,
                dst2 = in(reg) dst.add(TILE_ROWS),
                stride = in(reg) stride,
                options(nostack),
            );
        }
    }
}

/// Loads what [`store_sums`] stored back into the sum tiles.
///
/// # Safety
/// As [`store_sums`], `src` readable.
#[inline(always)]
unsafe fn load_sums(src: *const i32, stride: usize, pair: bool) {
    // SAFETY: the caller's contract.
    unsafe {
        asm!(
            "tileloadd tmm0, [{src} + {stride}*1]",
            "tileloadd tmm1, [{src2} + {stride}*1]",
            src = in(reg) src,
            src2 = in(reg) src.add(TILE_ROWS),
            stride = in(reg) stride,
            options(nostack, readonly),
        );
        if pair {
            let src = src.byte_add(TILE_ROWS * stride);
            asm!(
                "tileloadd tmm2, [{src} + {stride}*1]",
                "tileloadd tmm3, [{src2} + {stride}*1]",
                src = in(reg) src,
                src2 = in(reg) src.add(TILE_ROWS),
                stride = in(reg) stride,
                options(nostack, readonly),
            );
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
            "tdpbusd tmm0, tmm4, tmm6",
            "tileloadd tmm5, [{x1} + {stride}*1]",
            "tdpbusd tmm2, tmm5, tmm6",
            "tileloadd tmm7, [{w2} + {wstride}*1]",
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
