//! Classification metrics, written out so each can be checked by hand and against
//! scikit-learn (`tests/eval_metrics.rs`, reference numbers from `scripts/eval_reference.py`).

/// A k×k confusion matrix, `counts[true][predicted]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confusion {
    pub counts: Vec<Vec<u64>>,
}

/// Precision, recall, F1 and support of one class.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClassScores {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub support: u64,
}

impl Confusion {
    /// Counts (true, predicted) pairs over `k` classes.
    pub fn new(k: usize, truth: &[usize], predicted: &[usize]) -> Self {
        let mut counts = vec![vec![0; k]; k];
        for (&t, &p) in truth.iter().zip(predicted) {
            counts[t][p] += 1;
        }
        Confusion { counts }
    }

    fn k(&self) -> usize {
        self.counts.len()
    }

    fn total(&self) -> u64 {
        self.counts.iter().flatten().sum()
    }

    fn support(&self, c: usize) -> u64 {
        self.counts[c].iter().sum()
    }

    fn predicted(&self, c: usize) -> u64 {
        self.counts.iter().map(|row| row[c]).sum()
    }

    /// Fraction on the diagonal.
    pub fn accuracy(&self) -> f64 {
        ratio((0..self.k()).map(|c| self.counts[c][c]).sum(), self.total())
    }

    /// Mean recall over the classes that occur in the truth (as scikit-learn).
    pub fn balanced_accuracy(&self) -> f64 {
        let recalls: Vec<f64> = (0..self.k())
            .filter(|&c| self.support(c) > 0)
            .map(|c| self.class(c).recall)
            .collect();
        recalls.iter().sum::<f64>() / recalls.len().max(1) as f64
    }

    /// Precision, recall, F1, support of class `c`; 0 where undefined (as scikit-learn's
    /// `zero_division=0`).
    pub fn class(&self, c: usize) -> ClassScores {
        let tp = self.counts[c][c];
        let precision = ratio(tp, self.predicted(c));
        let recall = ratio(tp, self.support(c));
        let f1 = if precision + recall > 0.0 {
            2.0 * precision * recall / (precision + recall)
        } else {
            0.0
        };
        ClassScores {
            precision,
            recall,
            f1,
            support: self.support(c),
        }
    }

    /// Cohen's kappa with linear weights |i − j| (ordinal classes such as density).
    pub fn kappa_linear(&self) -> f64 {
        let k = self.k();
        let n = self.total() as f64;
        let (mut observed, mut expected) = (0.0, 0.0);
        for i in 0..k {
            for j in 0..k {
                let w = i.abs_diff(j) as f64;
                observed += w * self.counts[i][j] as f64;
                expected += w * self.support(i) as f64 * self.predicted(j) as f64 / n;
            }
        }
        if expected == 0.0 {
            1.0
        } else {
            1.0 - observed / expected
        }
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// Area under the ROC curve (Mann–Whitney, ties counted half); `None` without both classes.
pub fn roc_auc(scores: &[f64], positive: &[bool]) -> Option<f64> {
    let n_pos = positive.iter().filter(|&&p| p).count();
    let n_neg = positive.len() - n_pos;
    if n_pos == 0 || n_neg == 0 {
        return None;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        let average_rank = (i + j) as f64 / 2.0 + 1.0;
        rank_sum += average_rank * order[i..=j].iter().filter(|&&o| positive[o]).count() as f64;
        i = j + 1;
    }
    let n_pos = n_pos as f64;
    Some((rank_sum - n_pos * (n_pos + 1.0) / 2.0) / (n_pos * n_neg as f64))
}

/// ROC points (false-positive rate, true-positive rate, threshold), from the strictest
/// threshold down, starting at (0, 0).
pub fn roc_curve(scores: &[f64], positive: &[bool]) -> Vec<(f64, f64, f64)> {
    let n_pos = positive.iter().filter(|&&p| p).count().max(1) as f64;
    let n_neg = positive.iter().filter(|&&p| !p).count().max(1) as f64;
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let mut points = vec![(0.0, 0.0, f64::INFINITY)];
    let (mut tp, mut fp) = (0.0, 0.0);
    for (i, &o) in order.iter().enumerate() {
        if positive[o] {
            tp += 1.0;
        } else {
            fp += 1.0;
        }
        if i + 1 == order.len() || scores[order[i + 1]] != scores[o] {
            points.push((fp / n_neg, tp / n_pos, scores[o]));
        }
    }
    points
}

/// (sensitivity, specificity) when `score >= threshold` is called positive.
pub fn sensitivity_specificity(scores: &[f64], positive: &[bool], threshold: f64) -> (f64, f64) {
    let called = |i: usize| scores[i] >= threshold;
    let tp = (0..scores.len())
        .filter(|&i| positive[i] && called(i))
        .count() as u64;
    let tn = (0..scores.len())
        .filter(|&i| !positive[i] && !called(i))
        .count() as u64;
    let pos = positive.iter().filter(|&&p| p).count() as u64;
    (ratio(tp, pos), ratio(tn, positive.len() as u64 - pos))
}

/// The highest sensitivity over thresholds whose specificity is at least `specificity`.
pub fn sensitivity_at_specificity(scores: &[f64], positive: &[bool], specificity: f64) -> f64 {
    roc_curve(scores, positive)
        .iter()
        .filter(|(fpr, _, _)| 1.0 - fpr >= specificity - 1e-12)
        .map(|&(_, tpr, _)| tpr)
        .fold(0.0, f64::max)
}

/// Expected calibration error: `bins` equal-width confidence bins, |accuracy − confidence|
/// weighted by the bin's share of samples.
pub fn expected_calibration_error(confidence: &[f64], correct: &[bool], bins: usize) -> f64 {
    reliability(confidence, correct, bins)
        .iter()
        .map(|b| b.count as f64 / confidence.len() as f64 * (b.accuracy - b.confidence).abs())
        .sum()
}

/// One bin of a reliability diagram.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct ReliabilityBin {
    pub lower: f64,
    pub upper: f64,
    pub count: usize,
    pub confidence: f64,
    pub accuracy: f64,
}

/// Equal-width confidence bins (the top bin includes 1.0); empty bins are left out.
pub fn reliability(confidence: &[f64], correct: &[bool], bins: usize) -> Vec<ReliabilityBin> {
    (0..bins)
        .filter_map(|b| {
            let (lower, upper) = (b as f64 / bins as f64, (b + 1) as f64 / bins as f64);
            let members: Vec<usize> = (0..confidence.len())
                .filter(|&i| {
                    confidence[i] > lower && (confidence[i] <= upper)
                        || (b == 0 && confidence[i] == 0.0)
                })
                .collect();
            (!members.is_empty()).then(|| ReliabilityBin {
                lower,
                upper,
                count: members.len(),
                confidence: members.iter().map(|&i| confidence[i]).sum::<f64>()
                    / members.len() as f64,
                accuracy: members.iter().filter(|&&i| correct[i]).count() as f64
                    / members.len() as f64,
            })
        })
        .collect()
}

/// Brier score: the mean squared difference between P(positive) and the outcome (0 or 1).
pub fn brier(scores: &[f64], positive: &[bool]) -> f64 {
    let total: f64 = scores
        .iter()
        .zip(positive)
        .map(|(&s, &p)| (s - f64::from(u8::from(p))).powi(2))
        .sum();
    total / scores.len().max(1) as f64
}

/// Precision–recall points (recall, precision, threshold), one per distinct score from the
/// highest down: everything scoring at least the threshold is called positive.
pub fn precision_recall_curve(scores: &[f64], positive: &[bool]) -> Vec<(f64, f64, f64)> {
    let positives = positive.iter().filter(|&&p| p).count();
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let (mut tp, mut called, mut points) = (0usize, 0usize, Vec::new());
    for (k, &i) in order.iter().enumerate() {
        tp += usize::from(positive[i]);
        called += 1;
        let last_of_tie = order.get(k + 1).is_none_or(|&j| scores[j] != scores[i]);
        if last_of_tie && positives > 0 {
            points.push((
                tp as f64 / positives as f64,
                tp as f64 / called as f64,
                scores[i],
            ));
        }
    }
    points
}

/// Average precision, as scikit-learn computes it: the precision at each threshold weighted
/// by the recall it adds (no interpolation). `None` without positives.
pub fn average_precision(scores: &[f64], positive: &[bool]) -> Option<f64> {
    let curve = precision_recall_curve(scores, positive);
    if curve.is_empty() {
        return None;
    }
    let mut previous = 0.0;
    Some(
        curve
            .iter()
            .map(|&(recall, precision, _)| {
                let gained = recall - previous;
                previous = recall;
                gained * precision
            })
            .sum(),
    )
}

/// A small, seedable generator (SplitMix64), so bootstrap intervals are reproducible.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Percentile with linear interpolation between order statistics (numpy's default).
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    let position = q / 100.0 * (sorted.len() - 1) as f64;
    let (low, high) = (position.floor() as usize, position.ceil() as usize);
    sorted[low] + (sorted[high] - sorted[low]) * (position - low as f64)
}

/// 95% bootstrap interval of `statistic`, resampling whole groups (patients, families) with
/// replacement: `groups[i]` is row i's group, and `statistic` gets the rows of one resample
/// (a row as often as its group was drawn). Resamples where the statistic is undefined (say,
/// an AUC without both classes) are skipped; `None` when none is defined.
pub fn bootstrap_interval(
    groups: &[usize],
    rounds: usize,
    seed: u64,
    statistic: impl Fn(&[usize]) -> Option<f64>,
) -> Option<(f64, f64)> {
    let mut members: std::collections::BTreeMap<usize, Vec<usize>> = Default::default();
    for (i, &g) in groups.iter().enumerate() {
        members.entry(g).or_default().push(i);
    }
    let members: Vec<Vec<usize>> = members.into_values().collect();
    if members.is_empty() {
        return None;
    }
    let mut rng = SplitMix64(seed);
    let mut values = Vec::with_capacity(rounds);
    let mut rows = Vec::with_capacity(groups.len());
    for _ in 0..rounds {
        rows.clear();
        for _ in 0..members.len() {
            rows.extend_from_slice(&members[rng.below(members.len())]);
        }
        values.extend(statistic(&rows).filter(|v| v.is_finite()));
    }
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    Some((percentile(&values, 2.5), percentile(&values, 97.5)))
}

/// The values of `all` at `rows`.
pub fn pick<T: Copy>(all: &[T], rows: &[usize]) -> Vec<T> {
    rows.iter().map(|&i| all[i]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confusion_by_hand() {
        // truth 0 0 0 1 1 2, predicted 0 0 1 1 2 2
        let c = Confusion::new(3, &[0, 0, 0, 1, 1, 2], &[0, 0, 1, 1, 2, 2]);
        assert_eq!(c.counts, vec![vec![2, 1, 0], vec![0, 1, 1], vec![0, 0, 1]]);
        assert!((c.accuracy() - 4.0 / 6.0).abs() < 1e-12);
        // recalls 2/3, 1/2, 1 → mean 13/18
        assert!((c.balanced_accuracy() - 13.0 / 18.0).abs() < 1e-12);
        let s = c.class(1);
        assert_eq!((s.precision, s.recall, s.support), (0.5, 0.5, 2));
        assert!((s.f1 - 0.5).abs() < 1e-12);
    }

    #[test]
    fn kappa_by_hand() {
        let perfect = Confusion::new(4, &[0, 1, 2, 3], &[0, 1, 2, 3]);
        assert!((perfect.kappa_linear() - 1.0).abs() < 1e-12);
        // 2×2: counts [[1,1],[0,2]]: observed disagreement 1 of 4 (weight 1);
        // expected = (2·3 … ) → marginals rows (2,2) cols (1,3): E01 = 2·3/4 = 1.5, E10 = 2·1/4 = 0.5
        let c = Confusion::new(2, &[0, 0, 1, 1], &[0, 1, 1, 1]);
        assert!((c.kappa_linear() - (1.0 - 1.0 / 2.0)).abs() < 1e-12);
    }

    #[test]
    fn auc_by_hand() {
        assert_eq!(
            roc_auc(&[0.1, 0.4, 0.35, 0.8], &[false, false, true, true]),
            Some(0.75)
        );
        assert_eq!(roc_auc(&[0.5, 0.5], &[false, true]), Some(0.5));
        assert_eq!(roc_auc(&[0.2, 0.3], &[true, true]), None);
        let curve = roc_curve(&[0.1, 0.4, 0.35, 0.8], &[false, false, true, true]);
        assert_eq!(curve.first().map(|p| (p.0, p.1)), Some((0.0, 0.0)));
        assert_eq!(curve.last().map(|p| (p.0, p.1)), Some((1.0, 1.0)));
    }

    #[test]
    fn operating_points_by_hand() {
        let scores = [0.1, 0.4, 0.35, 0.8, 0.7];
        let positive = [false, false, true, true, false];
        assert_eq!(
            sensitivity_specificity(&scores, &positive, 0.35),
            (1.0, 1.0 / 3.0)
        );
        // Negatives 0.1, 0.4, 0.7: specificity ≥ 0.6 allows one false positive (threshold 0.7),
        // where one of the two positives (0.8) is caught: sensitivity 1/2.
        assert!((sensitivity_at_specificity(&scores, &positive, 0.6) - 0.5).abs() < 1e-12);
    }

    #[test]
    fn calibration_by_hand() {
        // Two bins: (0.5, 1.0] holds 0.9 (right) and 0.7 (wrong): |0.5 − 0.8| · 2/3;
        // (0, 0.5] holds 0.3 (right): |1 − 0.3| · 1/3.
        let ece = expected_calibration_error(&[0.9, 0.7, 0.3], &[true, false, true], 2);
        assert!((ece - (0.3 * 2.0 / 3.0 + 0.7 / 3.0)).abs() < 1e-12);
    }

    #[test]
    fn bootstrap_is_reproducible_and_brackets_the_estimate() {
        let scores: Vec<f64> = (0..40).map(|i| (i as f64 * 0.37) % 1.0).collect();
        let positive: Vec<bool> = scores
            .iter()
            .enumerate()
            .map(|(i, s)| *s > 0.4 || i % 7 == 0)
            .collect();
        let groups: Vec<usize> = (0..40).map(|i| i / 4).collect();
        let auc_of = |rows: &[usize]| roc_auc(&pick(&scores, rows), &pick(&positive, rows));
        let a = bootstrap_interval(&groups, 200, 7, auc_of).unwrap();
        assert_eq!(a, bootstrap_interval(&groups, 200, 7, auc_of).unwrap());
        let auc = roc_auc(&scores, &positive).unwrap();
        assert!(a.0 <= auc && auc <= a.1, "{a:?} vs {auc}");
        assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0], 50.0), 2.5);
    }

    #[test]
    fn whole_groups_are_resampled() {
        // One group: every resample is the whole set, so the interval is the point itself;
        // the same rows as single images do vary.
        let values: Vec<f64> = (0..20).map(|i| f64::from(i % 5)).collect();
        let mean =
            |rows: &[usize]| Some(pick(&values, rows).iter().sum::<f64>() / rows.len() as f64);
        assert_eq!(bootstrap_interval(&[0; 20], 100, 1, mean), Some((2.0, 2.0)));
        let each: Vec<usize> = (0..20).collect();
        let (lo, hi) = bootstrap_interval(&each, 100, 1, mean).unwrap();
        assert!(lo < 2.0 && hi > 2.0, "{lo} {hi}");
    }
}
