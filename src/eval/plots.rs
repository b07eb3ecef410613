//! SVG figures for the report (plotters' SVG backend: no fonts or files needed).

use super::metrics::ReliabilityBin;
use super::report::Matrix;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

const FONT: &str = "sans-serif";

fn svg(
    width: u32,
    height: u32,
    draw: impl FnOnce(DrawingArea<SVGBackend, plotters::coord::Shift>) -> Result<(), String>,
) -> String {
    let mut out = String::new();
    {
        let area = SVGBackend::with_string(&mut out, (width, height)).into_drawing_area();
        if let Err(e) = area
            .fill(&WHITE)
            .map_err(|e| e.to_string())
            .and_then(|_| draw(area.clone()))
            .and_then(|_| area.present().map_err(|e| e.to_string()))
        {
            return format!("<p>figure failed: {e}</p>");
        }
    }
    out
}

/// A confusion matrix heat map: cells shaded by the share of their true-class row, with counts.
pub fn confusion(matrix: &Matrix, title: &str) -> String {
    let k = matrix.labels.len();
    let cell = if k > 4 { 52 } else { 72 };
    let (left, top) = (70u32, 60u32);
    let size = (left + cell * k as u32 + 20, top + cell * k as u32 + 40);
    svg(size.0, size.1, |area| {
        let style = |s: u32| (FONT, s).into_font();
        area.draw(&Text::new(title.to_string(), (10, 10), style(16)))
            .map_err(|e| e.to_string())?;
        area.draw(&Text::new("predicted →", (left as i32, 34), style(12)))
            .map_err(|e| e.to_string())?;
        area.draw(&Text::new("true ↓", (6, 34), style(12)))
            .map_err(|e| e.to_string())?;
        for (i, row) in matrix.counts.iter().enumerate() {
            let total: u64 = row.iter().sum();
            let y = (top + cell * i as u32) as i32;
            area.draw(&Text::new(
                matrix.labels[i].clone(),
                (10, y + cell as i32 / 2 - 6),
                style(13),
            ))
            .map_err(|e| e.to_string())?;
            for (j, &count) in row.iter().enumerate() {
                let x = (left + cell * j as u32) as i32;
                let share = if total == 0 {
                    0.0
                } else {
                    count as f64 / total as f64
                };
                let shade = (255.0 * (1.0 - 0.85 * share)) as u8;
                let fill = if i == j {
                    RGBColor(shade, 255, shade)
                } else {
                    RGBColor(255, shade, shade)
                };
                area.draw(&Rectangle::new(
                    [(x, y), (x + cell as i32, y + cell as i32)],
                    fill.filled(),
                ))
                .map_err(|e| e.to_string())?;
                area.draw(&Rectangle::new(
                    [(x, y), (x + cell as i32, y + cell as i32)],
                    BLACK.mix(0.2),
                ))
                .map_err(|e| e.to_string())?;
                area.draw(&Text::new(
                    count.to_string(),
                    (x + 6, y + cell as i32 / 2 - 6),
                    style(13),
                ))
                .map_err(|e| e.to_string())?;
            }
            if i == 0 {
                for (j, label) in matrix.labels.iter().enumerate() {
                    area.draw(&Text::new(
                        label.clone(),
                        ((left + cell * j as u32) as i32 + 6, top as i32 - 14),
                        style(12),
                    ))
                    .map_err(|e| e.to_string())?;
                }
            }
        }
        Ok(())
    })
}

type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;
type UnitChart<'a, 'b> =
    ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// A [0,1]×[0,1] chart with axis titles and the diagonal drawn.
fn unit_square<'a, 'b>(
    area: &'a Area<'b>,
    caption: String,
    x: &str,
    y: &str,
) -> Result<UnitChart<'a, 'b>, String> {
    let mut chart = ChartBuilder::on(area)
        .caption(caption, (FONT, 16))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(45)
        .build_cartesian_2d(0.0..1.0, 0.0..1.0)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc(x)
        .y_desc(y)
        .draw()
        .map_err(|e| e.to_string())?;
    chart
        .draw_series(LineSeries::new([(0.0, 0.0), (1.0, 1.0)], BLACK.mix(0.3)))
        .map_err(|e| e.to_string())?;
    Ok(chart)
}

/// The malignancy ROC curve with the model's operating point.
pub fn roc(
    points: &[(f64, f64, f64)],
    auc: Option<f64>,
    operating: (f64, f64),
    threshold: f64,
) -> String {
    svg(420, 400, |area| {
        let caption = format!(
            "Malignancy ROC (AUC {})",
            auc.map_or("n/a".into(), |a| format!("{a:.3}"))
        );
        let mut chart = unit_square(&area, caption, "1 − specificity", "sensitivity")?;
        chart
            .draw_series(LineSeries::new(
                points.iter().map(|&(f, t, _)| (f, t)),
                BLUE.stroke_width(2),
            ))
            .map_err(|e| e.to_string())?;
        chart
            .draw_series([Circle::new(
                (1.0 - operating.1, operating.0),
                6,
                RED.filled(),
            )])
            .map_err(|e| e.to_string())?
            .label(format!("threshold {threshold:.3}"))
            .legend(|(x, y)| Circle::new((x, y), 5, RED.filled()));
        chart
            .configure_series_labels()
            .border_style(BLACK)
            .background_style(WHITE)
            .draw()
            .map_err(|e| e.to_string())?;
        Ok(())
    })
}

/// The malignancy precision–recall curve.
pub fn precision_recall(points: &[(f64, f64, f64)], average_precision: Option<f64>) -> String {
    svg(420, 400, |area| {
        let caption = format!(
            "Malignancy precision–recall (AP {})",
            average_precision.map_or("n/a".into(), |a| format!("{a:.3}"))
        );
        let mut chart = unit_square(&area, caption, "recall (sensitivity)", "precision")?;
        chart
            .draw_series(LineSeries::new(
                points.iter().map(|&(r, p, _)| (r, p)),
                BLUE.stroke_width(2),
            ))
            .map_err(|e| e.to_string())?;
        Ok(())
    })
}

/// Reliability diagram: the outcome rate against the mean predicted probability per bin,
/// with the diagonal; `x` and `y` name the two (e.g. the top class's confidence and accuracy).
pub fn reliability(bins: &[ReliabilityBin], ece: f64, title: &str, x: &str, y: &str) -> String {
    svg(420, 400, |area| {
        let caption = format!("{title} (ECE {ece:.3})");
        let mut chart = unit_square(&area, caption, x, y)?;
        chart
            .draw_series(bins.iter().map(|b| {
                Rectangle::new(
                    [(b.lower, 0.0), (b.upper, b.accuracy)],
                    BLUE.mix(0.35).filled(),
                )
            }))
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(
                bins.iter()
                    .map(|b| Circle::new((b.confidence, b.accuracy), 4, RED.filled())),
            )
            .map_err(|e| e.to_string())?;
        Ok(())
    })
}
