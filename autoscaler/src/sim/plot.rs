//! The simulator's picture: demand, the forecast band and each policy's
//! capacity over the last days of the trace, as an SVG.

use std::path::Path;

use plotters::prelude::*;
use surge_plot::FONT_FAMILY;

use super::run::Timeline;
use super::SimReport;
use crate::error::AutoscalerError;

const WIDTH_PX: u32 = 1400;
const HEIGHT_PX: u32 = 640;

fn plot_error(error: impl std::fmt::Display) -> AutoscalerError {
    AutoscalerError::invalid("svg", error.to_string())
}

pub fn write_svg(
    report: &SimReport,
    timeline: &Timeline,
    path: &Path,
) -> Result<(), AutoscalerError> {
    let Some(&first) = timeline.at_ms.first() else {
        return Err(AutoscalerError::invalid("svg", "nothing to plot"));
    };
    let hours = |at: u64| (at - first) as f64 / 3_600_000.0;
    let x_end = timeline
        .at_ms
        .last()
        .map_or(1.0, |&at| hours(at))
        .max(1.0 / 60.0);
    let peak = [
        &timeline.demand,
        &timeline.upper,
        &timeline.surge,
        &timeline.reactive,
    ]
    .iter()
    .flat_map(|series| series.iter().copied())
    .filter(|v| v.is_finite())
    .fold(1.0, f64::max);
    surge_plot::register().map_err(plot_error)?;
    let root = SVGBackend::new(path, (WIDTH_PX, HEIGHT_PX)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let title = format!(
        "{}: demand, forecast band (q{:.0}) and capacity, last {:.1} days",
        report.trace,
        report.config.quantile * 100.0,
        x_end / 24.0
    );
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FONT_FAMILY, 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(80)
        .build_cartesian_2d(0.0..x_end, 0.0..peak * 1.08)
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .x_desc("hours")
        .y_desc("events/s")
        .draw()
        .map_err(plot_error)?;
    let band_color = RGBColor(120, 160, 230);
    let lines: [(&str, &Vec<f64>, RGBColor, u32); 8] = [
        ("forecast lower", &timeline.lower, band_color, 1),
        ("forecast upper", &timeline.upper, band_color, 1),
        ("forecast mean", &timeline.mean, RGBColor(40, 80, 200), 1),
        (
            "oracle capacity",
            &timeline.oracle,
            RGBColor(150, 150, 150),
            1,
        ),
        (
            "reactive capacity (30 s lead)",
            &timeline.reactive,
            RGBColor(220, 50, 50),
            2,
        ),
        (
            "surge capacity (same lead)",
            &timeline.surge,
            RGBColor(30, 150, 60),
            2,
        ),
        (
            "surge capacity (node lead)",
            &timeline.surge_node,
            RGBColor(200, 140, 0),
            1,
        ),
        ("demand", &timeline.demand, BLACK, 2),
    ];
    for (label, values, color, width) in lines {
        let points: Vec<(f64, f64)> = timeline
            .at_ms
            .iter()
            .zip(values.iter())
            .filter(|(_, v)| v.is_finite())
            .map(|(&at, &v)| (hours(at), v))
            .collect();
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(width)))
            .map_err(plot_error)?
            .label(label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .border_style(BLACK)
        .background_style(WHITE.mix(0.85))
        .draw()
        .map_err(plot_error)?;
    root.present().map_err(plot_error)
}
