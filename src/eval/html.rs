//! One self-contained `report.html`: summary, audit warnings, figures (inline SVG) and a contact
//! sheet of example images (inline PNG thumbnails).

use super::plots;
use super::report::{Evaluation, Metrics, Row};
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
    let labelled: Vec<&Row> = rows.iter().filter(|r| r.truth.is_some()).collect();
    let missed_malignant = |r: &&Row| {
        r.truth.is_some_and(|t| t.malignant())
            && r.prediction.malignancy.call() == Pathology::Benign
    };
    let wrong = |r: &&Row| r.truth != Some(r.prediction.class);
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

/// The headline numbers and the per-class table.
fn metrics_table(h: &mut String, m: &Metrics) {
    let auc = m.malignancy.auc.map_or("n/a".into(), |a| format!("{a:.3}"));
    let ci = m.malignancy.auc_ci95.map_or("n/a".into(), |(lo, hi)| {
        format!(
            "{lo:.3}–{hi:.3} (resampling {})",
            m.malignancy.ci_resampling
        )
    });
    for (name, value) in [
        ("8-class accuracy", format!("{:.3}", m.accuracy)),
        ("balanced accuracy", format!("{:.3}", m.balanced_accuracy)),
        ("malignancy ROC AUC", auc),
        ("AUC 95% CI", ci),
        (
            "sensitivity / specificity",
            format!(
                "{:.3} / {:.3} at threshold {:.4}",
                m.malignancy.sensitivity, m.malignancy.specificity, m.malignancy.threshold
            ),
        ),
        (
            "sensitivity at 90% specificity",
            format!("{:.3}", m.malignancy.sensitivity_at_90_specificity),
        ),
        ("density accuracy", format!("{:.3}", m.density.accuracy)),
        (
            "density linear-weighted κ",
            format!("{:.3}", m.density.kappa_linear),
        ),
        (
            "expected calibration error (8 classes, top class)",
            format!("{:.3}", m.expected_calibration_error),
        ),
        (
            "P(malignant): binary ECE (15 bins) / Brier / average precision",
            format!(
                "{:.3} / {:.3} / {}",
                m.malignancy.binary_ece,
                m.malignancy.brier,
                m.malignancy
                    .average_precision
                    .map_or("n/a".into(), |a| format!("{a:.3}"))
            ),
        ),
    ] {
        let _ = write!(h, "<tr><th>{name}</th><td>{}</td></tr>", escape(&value));
    }
    h.push_str("</table><h3>Per class</h3><table><tr><th>class</th><th>precision</th><th>recall</th><th>F1</th><th>support</th></tr>");
    for c in &m.per_class {
        let _ = write!(
            h,
            "<tr><th>{}</th><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td><td>{}</td></tr>",
            c.label, c.precision, c.recall, c.f1, c.support
        );
    }
}

/// Confusion matrices, ROC, reliability and precision-recall.
fn figures(h: &mut String, m: &Metrics) {
    h.push_str("</table><h2>Figures</h2><div class=\"figs\">");
    h.push_str(&plots::confusion(&m.confusion, "8 classes"));
    h.push_str(&plots::confusion(&m.density.confusion, "Density"));
    h.push_str(&plots::confusion(
        &m.malignancy.confusion,
        "Malignancy at the threshold",
    ));
    h.push_str(&plots::roc(
        &m.malignancy.roc,
        m.malignancy.auc,
        (m.malignancy.sensitivity, m.malignancy.specificity),
        m.malignancy.threshold,
    ));
    h.push_str(&plots::reliability(
        &m.reliability,
        m.expected_calibration_error,
        "Reliability, 8 classes",
        "confidence (top class)",
        "accuracy",
    ));
    h.push_str(&plots::reliability(
        &m.malignancy.reliability,
        m.malignancy.binary_ece,
        "Reliability of P(malignant)",
        "P(malignant)",
        "share malignant",
    ));
    h.push_str(&plots::precision_recall(
        &m.malignancy.precision_recall,
        m.malignancy.average_precision,
    ));
}

/// A contact sheet of examples, malignant misses first.
fn examples_sheet(h: &mut String, rows: &[Row]) {
    h.push_str("</div><h2>Examples</h2><p>Malignant cases called benign first (red), then other errors, then correct answers.</p><div class=\"sheet\">");
    for row in examples(rows) {
        let truth = row.truth.map_or("?", |t| t.code());
        let missed = row.truth.is_some_and(|t| t.malignant())
            && row.prediction.malignancy.call() == Pathology::Benign;
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
            truth: Some("D2M".parse().unwrap()),
            prediction,
            family: None,
        };
        assert_eq!(examples(std::slice::from_ref(&row)).len(), 1);
    }
}
