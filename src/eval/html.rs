//! One self-contained `report.html`: summary, audit warnings, figures (inline SVG) and a contact
//! sheet of example images (inline PNG thumbnails).

use super::plots;
use super::report::{with_interval, Evaluation, Metrics, Row, SubgroupTable};
use crate::imaging::{decode, DecodeLimits};
use crate::model::Pathology;
use base64::Engine as _;
use std::fmt::Write;

/// Thumbnail side in pixels.
const THUMB: u32 = 160;
/// Wrong and right examples on the contact sheet.
const WRONG_EXAMPLES: usize = 16;
const RIGHT_EXAMPLES: usize = 8;

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A PNG thumbnail as a data URI, or `None` when the image cannot be read.
fn thumbnail(row: &Row) -> Option<String> {
    let bytes = std::fs::read(&row.path).ok()?;
    let image = decode(&bytes.into(), &DecodeLimits::default())
        .ok()?
        .grey
        .to_image()
        .thumbnail(THUMB, THUMB)
        .to_luma8();
    let mut png = Vec::new();
    image
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .ok()?;
    Some(format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(png)
    ))
}

/// Examples for the contact sheet: malignant cases called benign first, then other wrong
/// classes, then correct ones.
pub fn examples(rows: &[Row]) -> Vec<&Row> {
    let labelled: Vec<&Row> = rows.iter().filter(|r| r.truth.is_labelled()).collect();
    let missed_malignant = |r: &&Row| missed(r);
    let wrong = |r: &&Row| {
        r.truth.density.is_some_and(|d| d != r.prediction.density)
            || r.truth
                .malignant
                .is_some_and(|m| m != (r.prediction.malignancy.call() == Pathology::Malignant))
    };
    let mut chosen: Vec<&Row> = labelled.iter().copied().filter(missed_malignant).collect();
    chosen.extend(
        labelled
            .iter()
            .copied()
            .filter(|r| wrong(r) && !missed_malignant(r)),
    );
    chosen.truncate(WRONG_EXAMPLES);
    chosen.extend(
        labelled
            .iter()
            .copied()
            .filter(|r| !wrong(r) && !missed_malignant(r))
            .take(RIGHT_EXAMPLES),
    );
    chosen
}

/// Renders the report.
pub fn render(e: &Evaluation, rows: &[Row]) -> String {
    let mut h = String::new();
    header(&mut h, e);
    audit(&mut h, e);
    metrics_table(&mut h, &e.metrics);
    subgroup_tables(&mut h, &e.subgroups);
    figures(&mut h, &e.metrics);
    examples_sheet(&mut h, rows);
    h
}

/// The page head and what was evaluated with what.
fn header(h: &mut String, e: &Evaluation) {
    let _ = write!(
        h,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>mammo-eval report</title><style>\
         body{{font-family:sans-serif;margin:2em;max-width:1200px}}table{{border-collapse:collapse}}\
         td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}th{{background:#f3f3f3}}\
         .warn{{color:#a40}}.figs{{display:flex;flex-wrap:wrap;gap:1em}}figure{{margin:4px;width:170px;font-size:12px}}\
         .sheet{{display:flex;flex-wrap:wrap}}.miss{{color:#b00;font-weight:bold}}</style></head><body>"
    );
    let _ = write!(
        h,
        "<h1>mammo-eval report</h1><p>Decision-support model evaluation; not a clinical validation.</p>\
         <table><tr><th>data</th><td>{}</td></tr><tr><th>layout</th><td>{:?}</td></tr>\
         <tr><th>split</th><td>{}</td></tr><tr><th>model</th><td>{} {} (sha256 {})</td></tr>\
         <tr><th>images</th><td>{} listed, {} evaluated, {} unreadable, {:.1} images/s</td></tr></table>",
        escape(&e.data.display().to_string()),
        e.layout,
        escape(e.split.as_deref().unwrap_or("none (every image)")),
        escape(&e.model.name),
        escape(&e.model.version),
        e.model.sha256,
        e.images_listed,
        e.images_evaluated,
        e.unreadable.len(),
        e.images_per_second
    );
}

/// Warnings about the data and the share of images not assessed.
fn audit(h: &mut String, e: &Evaluation) {
    h.push_str("<h2>Audit</h2><ul>");
    for c in &e.audit.class_counts {
        for w in &c.warnings {
            let _ = write!(h, "<li class=\"warn\">{}: {}</li>", c.label, escape(w));
        }
    }
    let d = &e.audit.duplicates;
    let _ = write!(
        h,
        "<li>exact duplicates (same decoded pixels): {} groups, {} extra copies</li>",
        d.groups, d.extra_copies
    );
    let a = &e.assessment;
    let _ = write!(
        h,
        "<li>assessed {}, not assessable (unlike the training data) {} ({:.1}%); the metrics below include both</li>",
        a.assessed,
        a.not_assessable,
        100.0 * a.not_assessable_share
    );
    for u in &e.unreadable {
        let _ = write!(
            h,
            "<li class=\"warn\">unreadable: {}: {}</li>",
            escape(&u.name),
            escape(&u.error)
        );
    }
    h.push_str("</ul><h2>Metrics</h2><table>");
}

/// A malignant image called benign.
fn missed(r: &Row) -> bool {
    r.truth.malignant == Some(true) && r.prediction.malignancy.call() == Pathology::Benign
}

fn optional(value: Option<f64>, ci: Option<(f64, f64)>) -> String {
    value.map_or("n/a".into(), |v| with_interval(v, ci))
}

/// The headline numbers and the per-class table.
fn metrics_table(h: &mut String, m: &Metrics) {
    let mut lines = vec![(
        "95% intervals resample".to_string(),
        format!(
            "{} {} ({} rounds)",
            m.resampling.groups, m.resampling.unit, m.resampling.rounds
        ),
    )];
    if let Some(c) = &m.classes {
        lines.extend([
            (
                format!("8-class accuracy ({} images with both labels)", c.images),
                with_interval(c.accuracy, c.accuracy_ci95),
            ),
            (
                "balanced accuracy".into(),
                with_interval(c.balanced_accuracy, c.balanced_accuracy_ci95),
            ),
            (
                "expected calibration error (8 classes, top class)".into(),
                with_interval(
                    c.expected_calibration_error,
                    c.expected_calibration_error_ci95,
                ),
            ),
        ]);
    }
    if let Some(d) = &m.density {
        lines.extend([
            (
                format!("density accuracy ({} images with a density)", d.images),
                with_interval(d.accuracy, d.accuracy_ci95),
            ),
            (
                "density linear-weighted κ".into(),
                with_interval(d.kappa_linear, d.kappa_linear_ci95),
            ),
        ]);
    }
    if let Some(a) = &m.malignancy {
        lines.extend([
            (
                format!(
                    "malignancy ROC AUC ({} images with a malignancy label)",
                    a.images
                ),
                optional(a.auc, a.auc_ci95),
            ),
            (
                format!("sensitivity at threshold {:.4}", a.threshold),
                with_interval(a.sensitivity, a.sensitivity_ci95),
            ),
            (
                "specificity".into(),
                with_interval(a.specificity, a.specificity_ci95),
            ),
            (
                "sensitivity at 90% specificity".into(),
                with_interval(
                    a.sensitivity_at_90_specificity,
                    a.sensitivity_at_90_specificity_ci95,
                ),
            ),
            (
                "P(malignant): binary ECE (15 bins)".into(),
                with_interval(a.binary_ece, a.binary_ece_ci95),
            ),
            (
                "P(malignant): Brier".into(),
                with_interval(a.brier, a.brier_ci95),
            ),
            (
                "P(malignant): average precision".into(),
                optional(a.average_precision, a.average_precision_ci95),
            ),
        ]);
    }
    for (name, value) in lines {
        let _ = write!(
            h,
            "<tr><th>{}</th><td>{}</td></tr>",
            escape(&name),
            escape(&value)
        );
    }
    h.push_str("</table>");
    if let Some(c) = &m.classes {
        h.push_str("<h3>Per class</h3><table><tr><th>class</th><th>precision</th><th>recall</th><th>F1</th><th>support</th></tr>");
        for c in &c.per_class {
            let _ = write!(
                h,
                "<tr><th>{}</th><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td><td>{}</td></tr>",
                c.label, c.precision, c.recall, c.f1, c.support
            );
        }
        h.push_str("</table>");
    }
}

/// One table per attribute: where the model does better or worse.
fn subgroup_tables(h: &mut String, tables: &[SubgroupTable]) {
    h.push_str(
        "<h2>Subgroups</h2><p>Every evaluated image, assessed or not; 95% intervals as above.</p>",
    );
    for table in tables {
        let _ = write!(
            h,
            "<h3>By {}</h3><table><tr><th>{}</th><th>images</th><th>groups</th><th>not assessable</th>\
             <th>density accuracy</th><th>malignancy AUC</th><th>sensitivity / specificity</th></tr>",
            table.by, table.by
        );
        for r in &table.rows {
            let operating = match (r.sensitivity, r.specificity) {
                (Some(se), Some(sp)) => format!("{se:.3} / {sp:.3}"),
                _ => "n/a".into(),
            };
            let _ = write!(
                h,
                "<tr><th>{}</th><td>{}</td><td>{}</td><td>{:.1}%</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&r.value),
                r.images,
                r.groups,
                100.0 * r.not_assessable_share,
                escape(&optional(r.density_accuracy, r.density_accuracy_ci95)),
                escape(&optional(r.malignancy_auc, r.malignancy_auc_ci95)),
                operating
            );
        }
        h.push_str("</table>");
    }
}

/// Confusion matrices, ROC, reliability and precision-recall.
fn figures(h: &mut String, m: &Metrics) {
    h.push_str("<h2>Figures</h2><div class=\"figs\">");
    if let Some(c) = &m.classes {
        h.push_str(&plots::confusion(&c.confusion, "8 classes"));
    }
    if let Some(d) = &m.density {
        h.push_str(&plots::confusion(&d.confusion, "Density"));
    }
    if let Some(a) = &m.malignancy {
        h.push_str(&plots::confusion(
            &a.confusion,
            "Malignancy at the threshold",
        ));
        h.push_str(&plots::roc(
            &a.roc,
            a.auc,
            (a.sensitivity, a.specificity),
            a.threshold,
        ));
    }
    if let Some(c) = &m.classes {
        h.push_str(&plots::reliability(
            &c.reliability,
            c.expected_calibration_error,
            "Reliability, 8 classes",
            "confidence (top class)",
            "accuracy",
        ));
    }
    if let Some(a) = &m.malignancy {
        h.push_str(&plots::reliability(
            &a.reliability,
            a.binary_ece,
            "Reliability of P(malignant)",
            "P(malignant)",
            "share malignant",
        ));
        h.push_str(&plots::precision_recall(
            &a.precision_recall,
            a.average_precision,
        ));
    }
}

/// The labels an image has, as a caption says them.
fn truth_text(row: &Row) -> String {
    match (row.truth.class(), row.truth.density, row.truth.malignant) {
        (Some(class), _, _) => class.code().to_string(),
        (None, Some(d), None) => format!("density {}", d.birads()),
        (None, None, Some(m)) => if m { "malignant" } else { "not malignant" }.to_string(),
        _ => "?".to_string(),
    }
}

/// A contact sheet of examples, malignant misses first.
fn examples_sheet(h: &mut String, rows: &[Row]) {
    h.push_str("</div><h2>Examples</h2><p>Malignant cases called benign first (red), then other errors, then correct answers.</p><div class=\"sheet\">");
    for row in examples(rows) {
        let truth = truth_text(row);
        let missed = missed(row);
        let image = thumbnail(row).map_or("<p>(unreadable)</p>".into(), |uri| {
            format!("<img src=\"{uri}\" width=\"{THUMB}\">")
        });
        let _ = write!(
            h,
            "<figure>{image}<figcaption{}>{}<br>true {truth} · predicted {} ({:.2})<br>P(malignant) {:.2}</figcaption></figure>",
            if missed { " class=\"miss\"" } else { "" },
            escape(&row.name),
            row.prediction.class,
            row.prediction.class_confidence(),
            row.prediction.malignancy.probability
        );
    }
    h.push_str("</div></body></html>\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{interpret, ModelMetadata};

    #[test]
    fn a_missed_malignancy_with_the_right_class_is_shown_once() {
        let props = [
            ("mammo.labels", "D1B,D1M,D2B,D2M,D3B,D3M,D4B,D4M"),
            ("mammo.input_size", "224"),
            ("mammo.mean", "0,0,0"),
            ("mammo.std", "1,1,1"),
            ("mammo.malignancy_threshold", "0.95"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .into();
        let (metadata, _) = ModelMetadata::from_props(&props).unwrap();
        // D2M is the top class, yet P(malignant) < 0.95: the right class, called benign.
        let mut logits = [0.0f32; 8];
        logits[3] = 3.0;
        let prediction = interpret(&logits, None, &metadata).unwrap();
        assert_eq!(
            (prediction.class.code(), prediction.malignancy.call()),
            ("D2M", Pathology::Benign)
        );
        let row = Row {
            name: "a.jpg".into(),
            path: "a.jpg".into(),
            truth: crate::eval::dataset::Truth::of("D2M".parse().unwrap()),
            prediction,
            group: None,
            attributes: Default::default(),
        };
        assert_eq!(examples(std::slice::from_ref(&row)).len(), 1);
    }
}
