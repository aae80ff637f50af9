//! The picture of a run: acknowledged events/s over time on top and
//! latency percentiles (produce-ack p50 and p99, end-to-end p99 when
//! consumers ran) below, from the report's per-second timeline, as SVG or
//! PNG, in the font `surge_plot` bundles.

use std::path::Path;

use plotters::prelude::*;
use surge_plot::FONT_FAMILY;

use crate::error::LoadgenError;
use crate::report::{Report, TimelineSecond};

const WIDTH_PX: u32 = 1000;
const HEIGHT_PX: u32 = 720;

/// Reads one latency series from a timeline entry.
type Metric = fn(&TimelineSecond) -> u64;

/// Writes the plot of `report` to `path` as SVG.
pub fn write_svg(report: &Report, path: &Path) -> Result<(), LoadgenError> {
    draw(SVGBackend::new(path, (WIDTH_PX, HEIGHT_PX)), report)
}

/// Writes the plot of `report` to `path` as PNG.
pub fn write_png(report: &Report, path: &Path) -> Result<(), LoadgenError> {
    draw(BitMapBackend::new(path, (WIDTH_PX, HEIGHT_PX)), report)
}

fn draw<DB: DrawingBackend>(backend: DB, report: &Report) -> Result<(), LoadgenError> {
    surge_plot::register().map_err(plot_error)?;
    let root = backend.into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let (upper, lower) = root.split_vertically(HEIGHT_PX / 2);
    let title = format!(
        "{} | durability {} | {} | batch {} B, linger {} ms",
        report.config.scenario.name(),
        report.stream.durability,
        report.event_size,
        report.batch_bytes,
        report.linger_ms
    );
    draw_rate(&upper, &report.timeline, &title)?;
    draw_latency(&lower, &report.timeline, report.config.consumers > 0)?;
    root.present().map_err(plot_error)
}

fn plot_error(error: impl std::fmt::Display) -> LoadgenError {
    LoadgenError::Plot(error.to_string())
}

fn x_range(timeline: &[TimelineSecond]) -> std::ops::Range<f64> {
    0.0..timeline
        .last()
        .map_or(1.0, |last| last.second as f64)
        .max(1.0)
}

fn draw_rate<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    timeline: &[TimelineSecond],
    title: &str,
) -> Result<(), LoadgenError> {
    let peak = timeline
        .iter()
        .map(|entry| entry.acked_per_s)
        .fold(1.0, f64::max);
    let mut chart = ChartBuilder::on(area)
        .caption(title, (FONT_FAMILY, 16))
        .margin(12)
        .x_label_area_size(32)
        .y_label_area_size(80)
        .build_cartesian_2d(x_range(timeline), 0.0..peak * 1.1)
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .x_desc("seconds")
        .y_desc("acked events/s")
        .draw()
        .map_err(plot_error)?;
    let points = timeline
        .iter()
        .map(|entry| (entry.second as f64, entry.acked_per_s));
    chart
        .draw_series(LineSeries::new(points, &BLUE))
        .map_err(plot_error)?;
    Ok(())
}

fn draw_latency<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    timeline: &[TimelineSecond],
    with_e2e: bool,
) -> Result<(), LoadgenError> {
    let to_ms = |value_us: u64| value_us as f64 / 1e3;
    let peak_us = timeline
        .iter()
        .map(|entry| {
            entry
                .produce_p99_us
                .max(if with_e2e { entry.e2e_p99_us } else { 0 })
        })
        .max()
        .unwrap_or(1);
    let mut chart = ChartBuilder::on(area)
        .margin(12)
        .x_label_area_size(32)
        .y_label_area_size(80)
        .build_cartesian_2d(x_range(timeline), 0.0..to_ms(peak_us.max(1)) * 1.1)
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .x_desc("seconds")
        .y_desc("latency (ms)")
        .draw()
        .map_err(plot_error)?;
    let mut series: Vec<(&str, RGBColor, Metric)> = vec![
        ("produce-ack p50", GREEN, |entry| entry.produce_p50_us),
        ("produce-ack p99", RED, |entry| entry.produce_p99_us),
    ];
    if with_e2e {
        series.push(("end-to-end p99", MAGENTA, |entry| entry.e2e_p99_us));
    }
    for (label, color, value) in series {
        let points = timeline
            .iter()
            .map(|entry| (entry.second as f64, to_ms(value(entry))));
        chart
            .draw_series(LineSeries::new(points, &color))
            .map_err(plot_error)?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .draw()
        .map_err(plot_error)
}
