//! The serve-sim plot: latency percentiles (top, log scale) and mean batch size (bottom) against
//! offered load, one colour per model.

use std::path::Path;

use anyhow::{Result, anyhow};
use plotters::prelude::*;

use crate::serve_report::{Outcome, RunOutcome};

/// Reads one plotted value of a model's results.
type Pick = fn(&Outcome) -> f64;

/// Writes the plot of `runs` to `path` (SVG).
pub fn draw(path: &Path, runs: &[RunOutcome]) -> Result<()> {
    draw_svg(path, runs).map_err(|e| anyhow!("cannot draw {}: {e}", path.display()))
}

fn draw_svg(path: &Path, runs: &[RunOutcome]) -> Result<(), Box<dyn std::error::Error>> {
    // The x axis is the load fraction when every run was set that way, else requests/s.
    let by_fraction = runs.iter().all(|r| r.load.is_some());
    let x_of = |run: &RunOutcome| match run.load {
        Some(load) if by_fraction => load,
        _ => run.total.offered_rps,
    };
    let xs: Vec<f64> = runs.iter().map(x_of).collect();
    let (x_min, x_max) = padded_range(&xs, false);
    let models = runs.first().map_or(0, |r| r.models.len());
    let series = |pick: &dyn Fn(&Outcome) -> f64, model: usize| -> Vec<(f64, f64)> {
        runs.iter()
            .map(|r| (x_of(r), pick(&r.models[model])))
            .collect()
    };

    let root = SVGBackend::new(path, (900, 700)).into_drawing_area();
    root.fill(&WHITE)?;
    let (top, bottom) = root.split_vertically(440);
    let x_desc = if by_fraction {
        "offered load (fraction of measured capacity)"
    } else {
        "offered load (requests/s)"
    };

    let latencies: Vec<f64> = runs
        .iter()
        .flat_map(|r| r.models.iter())
        .flat_map(|o| [o.latency_us.p50, o.latency_us.p999])
        .filter(|v| *v > 0.0)
        .collect();
    let (y_min, y_max) = padded_range(&latencies, true);
    let mut chart = ChartBuilder::on(&top)
        .caption(
            "latency from scheduled send (open loop)",
            ("sans-serif", 20),
        )
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(60)
        .build_cartesian_2d(x_min..x_max, (y_min..y_max).log_scale())?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc("latency (µs)")
        .draw()?;
    let percentiles: [(&str, Pick); 3] = [
        ("p50", |o| o.latency_us.p50),
        ("p99", |o| o.latency_us.p99),
        ("p99.9", |o| o.latency_us.p999),
    ];
    for model in 0..models {
        let name = &runs[0].models[model].model;
        for (k, (label, pick)) in percentiles.iter().enumerate() {
            let colour = Palette99::pick(model * 3 + k).to_rgba();
            draw_line(
                &mut chart,
                series(pick, model),
                colour,
                format!("{name} {label}"),
            )?;
        }
    }
    draw_legend(&mut chart)?;

    let batches: Vec<f64> = runs
        .iter()
        .flat_map(|r| r.models.iter().map(|o| o.mean_batch))
        .collect();
    let batch_max = batches.iter().copied().fold(1.0, f64::max) * 1.15;
    let mut chart = ChartBuilder::on(&bottom)
        .caption("mean batch size", ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(60)
        .build_cartesian_2d(x_min..x_max, 0.0..batch_max)?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc("requests per batch")
        .draw()?;
    for model in 0..models {
        let colour = Palette99::pick(model * 3).to_rgba();
        draw_line(
            &mut chart,
            series(&|o| o.mean_batch, model),
            colour,
            runs[0].models[model].model.clone(),
        )?;
    }
    draw_legend(&mut chart)?;
    root.present()?;
    Ok(())
}

/// A chart of this plot: f64 on both axes, either of them possibly log-scaled.
type Chart<'a, X, Y> = ChartContext<'a, SVGBackend<'a>, Cartesian2d<X, Y>>;

/// One series: a line with its points and a legend entry.
fn draw_line<X, Y>(
    chart: &mut Chart<'_, X, Y>,
    points: Vec<(f64, f64)>,
    colour: RGBAColor,
    label: String,
) -> Result<(), Box<dyn std::error::Error>>
where
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    chart
        .draw_series(LineSeries::new(points.clone(), colour.stroke_width(2)))?
        .label(label)
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour));
    chart.draw_series(PointSeries::of_element(
        points,
        3,
        colour.filled(),
        &|c, s, st| Circle::new(c, s, st),
    ))?;
    Ok(())
}

/// The legend box, upper left.
fn draw_legend<X, Y>(chart: &mut Chart<'_, X, Y>) -> Result<(), Box<dyn std::error::Error>>
where
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .position(SeriesLabelPosition::UpperLeft)
        .draw()?;
    Ok(())
}

/// An axis range around `values` with some room; a single value gets room on both sides.
fn padded_range(values: &[f64], log: bool) -> (f64, f64) {
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !min.is_finite() || !max.is_finite() {
        return if log { (1.0, 10.0) } else { (0.0, 1.0) };
    }
    if log {
        (min / 1.5, max * 1.5)
    } else if max > min {
        let pad = 0.08 * (max - min);
        (min - pad, max + pad)
    } else {
        (min * 0.9, max * 1.1 + 1e-9)
    }
}
