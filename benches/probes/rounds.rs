//! Variants timed in turn, round after round, each against the first in the same round: the
//! rounds share the machine's noise, so the per-round ratios are steadier than the times.

/// For each of `variants`: the median over `rounds` of `time(variant)` (one block's median, µs),
/// and of its speed against variant 0's block in the same round.
pub fn against_first(
    variants: usize,
    rounds: usize,
    mut time: impl FnMut(usize) -> anyhow::Result<f64>,
) -> anyhow::Result<Vec<(f64, f64)>> {
    let mut medians = vec![Vec::with_capacity(rounds); variants];
    let mut speeds = vec![Vec::with_capacity(rounds); variants];
    for _ in 0..rounds {
        let mut first = 0.0;
        for i in 0..variants {
            let median = time(i)?;
            if i == 0 {
                first = median;
            }
            medians[i].push(median);
            speeds[i].push(first / median);
        }
    }
    let mid = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    Ok(medians
        .iter_mut()
        .zip(&mut speeds)
        .map(|(m, s)| (mid(m), mid(s)))
        .collect())
}
