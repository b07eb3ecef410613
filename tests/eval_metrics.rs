//! `eval::metrics` against scikit-learn on a fixed prediction set
//! (`tests/fixtures/eval_reference.json`, written by `scripts/eval_reference.py`).

use mammo_serve::eval::metrics::*;
use serde_json::Value;

fn close(name: &str, ours: f64, reference: &Value) {
    let expected = reference.as_f64().unwrap();
    assert!(
        (ours - expected).abs() < 1e-9,
        "{name}: ours {ours}, scikit-learn {expected}"
    );
}

fn matrix(value: &Value) -> Vec<Vec<u64>> {
    serde_json::from_value(value.clone()).unwrap()
}

#[test]
fn metrics_agree_with_scikit_learn() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/eval_reference.json"
    );
    let r: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let truth: Vec<usize> = serde_json::from_value(r["inputs"]["truth"].clone()).unwrap();
    let probs: Vec<Vec<f64>> =
        serde_json::from_value(r["inputs"]["probabilities"].clone()).unwrap();
    let argmax = |v: &[f64]| (0..v.len()).fold(0, |best, i| if v[i] > v[best] { i } else { best });
    let predicted: Vec<usize> = probs.iter().map(|p| argmax(p)).collect();

    let classes = Confusion::new(8, &truth, &predicted);
    assert_eq!(classes.counts, matrix(&r["confusion"]));
    close("accuracy", classes.accuracy(), &r["accuracy"]);
    close(
        "balanced_accuracy",
        classes.balanced_accuracy(),
        &r["balanced_accuracy"],
    );
    for c in 0..8 {
        let s = classes.class(c);
        close("precision", s.precision, &r["precision"][c]);
        close("recall", s.recall, &r["recall"][c]);
        close("f1", s.f1, &r["f1"][c]);
        assert_eq!(s.support, r["support"][c].as_u64().unwrap());
    }

    let malignant_p: Vec<f64> = probs.iter().map(|p| p[1] + p[3] + p[5] + p[7]).collect();
    let positive: Vec<bool> = truth.iter().map(|t| t % 2 == 1).collect();
    let threshold = r["inputs"]["threshold"].as_f64().unwrap();
    close(
        "malignancy_auc",
        roc_auc(&malignant_p, &positive).unwrap(),
        &r["malignancy_auc"],
    );
    let (sensitivity, specificity) = sensitivity_specificity(&malignant_p, &positive, threshold);
    close("sensitivity", sensitivity, &r["sensitivity"]);
    close("specificity", specificity, &r["specificity"]);
    close(
        "sensitivity_at_90_specificity",
        sensitivity_at_specificity(&malignant_p, &positive, 0.9),
        &r["sensitivity_at_90_specificity"],
    );
    let called: Vec<usize> = malignant_p
        .iter()
        .map(|&p| usize::from(p >= threshold))
        .collect();
    let truth_m: Vec<usize> = positive.iter().map(|&p| usize::from(p)).collect();
    assert_eq!(
        Confusion::new(2, &truth_m, &called).counts,
        matrix(&r["malignancy_confusion"])
    );

    let density_truth: Vec<usize> = truth.iter().map(|t| t / 2).collect();
    let density_pred: Vec<usize> = probs
        .iter()
        .map(|p| argmax(&[p[0] + p[1], p[2] + p[3], p[4] + p[5], p[6] + p[7]]))
        .collect();
    let density = Confusion::new(4, &density_truth, &density_pred);
    assert_eq!(density.counts, matrix(&r["density_confusion"]));
    close(
        "density_accuracy",
        density.accuracy(),
        &r["density_accuracy"],
    );
    close(
        "density_kappa_linear",
        density.kappa_linear(),
        &r["density_kappa_linear"],
    );

    let confidence: Vec<f64> = probs.iter().map(|p| p[argmax(p)]).collect();
    let correct: Vec<bool> = truth.iter().zip(&predicted).map(|(t, p)| t == p).collect();
    close(
        "ece",
        expected_calibration_error(&confidence, &correct, 10),
        &r["ece_10_bins"],
    );
    close(
        "binary_ece",
        expected_calibration_error(&malignant_p, &positive, 15),
        &r["binary_ece_15_bins"],
    );
    close("brier", brier(&malignant_p, &positive), &r["brier"]);
    close(
        "average_precision",
        average_precision(&malignant_p, &positive).unwrap(),
        &r["average_precision"],
    );
}
