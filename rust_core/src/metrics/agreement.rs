//! Agreement between two labelings of the same samples: adjusted Rand index and normalized
//! mutual information, computed from their contingency table as scikit-learn does.

use super::labels::EncodedLabels;
use crate::{Error, Result};

/// The non-zero cells of the contingency table of two labelings, with its margins.
struct Contingency {
    /// `(row, column, count)` of every non-zero cell, in row-major order.
    cells: Vec<(usize, usize, u64)>,
    /// Row sums: samples per class of the true labeling.
    rows: Vec<usize>,
    /// Column sums: samples per cluster of the predicted labeling.
    cols: Vec<usize>,
}

impl Contingency {
    fn new(labels_true: &[i64], labels_pred: &[i64]) -> Result<Self> {
        if labels_true.len() != labels_pred.len() {
            return Err(Error::input(format!(
                "labels_true and labels_pred must have the same length, got {} and {}",
                labels_true.len(),
                labels_pred.len()
            )));
        }
        let (t, p) = (EncodedLabels::new(labels_true), EncodedLabels::new(labels_pred));
        let mut pairs: Vec<(usize, usize)> = t.codes.iter().copied().zip(p.codes.iter().copied()).collect();
        pairs.sort_unstable();
        let mut cells: Vec<(usize, usize, u64)> = Vec::new();
        for (r, c) in pairs {
            match cells.last_mut() {
                Some(last) if (last.0, last.1) == (r, c) => last.2 += 1,
                _ => cells.push((r, c, 1)),
            }
        }
        Ok(Contingency { cells, rows: t.counts, cols: p.counts })
    }
}

/// The adjusted Rand index between two labelings: 1 for identical partitions (up to renaming),
/// about 0 for independent ones; equal to `sklearn.metrics.adjusted_rand_score`.
///
/// Like scikit-learn it is 1.0 when no pair of samples is split differently (including fewer
/// than two samples, or one cluster in both). Errors if the lengths differ.
pub fn adjusted_rand_score(labels_true: &[i64], labels_pred: &[i64]) -> Result<f64> {
    let c = Contingency::new(labels_true, labels_pred)?;
    let n = labels_true.len() as i128;
    let cells: i128 = c.cells.iter().map(|&(_, _, v)| i128::from(v).pow(2)).sum();
    let sum_sq = |counts: &[usize]| counts.iter().map(|&v| (v as i128).pow(2)).sum::<i128>();
    let (rows, cols) = (sum_sq(&c.rows), sum_sq(&c.cols));
    // The pair confusion matrix; i128 keeps the products below exact, as Python's integers do.
    let tp = cells - n;
    let fp = cols - cells;
    let fn_ = rows - cells;
    let tn = n * n - fp - fn_ - cells;
    if fn_ == 0 && fp == 0 {
        return Ok(1.0);
    }
    let numerator = (tp * tn - fn_ * fp) as f64;
    let denominator = ((tp + fn_) * (fn_ + tn) + (tp + fp) * (fp + tn)) as f64;
    Ok(2.0 * numerator / denominator)
}

/// The normalized mutual information between two labelings, normalized by the arithmetic mean
/// of their entropies; equal to `sklearn.metrics.normalized_mutual_info_score`.
///
/// 1.0 when both labelings have a single cluster (or are empty), 0.0 when they share no
/// information. Errors if the lengths differ.
pub fn normalized_mutual_info_score(labels_true: &[i64], labels_pred: &[i64]) -> Result<f64> {
    let c = Contingency::new(labels_true, labels_pred)?;
    if c.rows.len() == c.cols.len() && c.rows.len() <= 1 {
        return Ok(1.0);
    }
    let mi = mutual_info(&c);
    if mi == 0.0 {
        return Ok(0.0);
    }
    let normalizer = (entropy(&c.rows) + entropy(&c.cols)) / 2.0;
    Ok(mi / normalizer)
}

/// Mutual information in nats, term by term as scikit-learn's `mutual_info_score`.
fn mutual_info(c: &Contingency) -> f64 {
    if c.rows.len() == 1 || c.cols.len() == 1 {
        return 0.0;
    }
    let total: usize = c.rows.iter().sum();
    let (n, ln_n) = (total as f64, (total as f64).ln());
    let mi: f64 = c
        .cells
        .iter()
        .map(|&(r, k, v)| {
            let p = v as f64 / n;
            let log_outer = -((c.rows[r] as i64 * c.cols[k] as i64) as f64).ln() + ln_n + ln_n;
            let term = p * ((v as f64).ln() - ln_n) + p * log_outer;
            // scikit-learn zeroes rounding noise term by term before summing.
            if term.abs() < f64::EPSILON {
                0.0
            } else {
                term
            }
        })
        .sum();
    mi.max(0.0)
}

/// The entropy in nats of a labeling given its cluster sizes.
fn entropy(counts: &[usize]) -> f64 {
    if counts.len() <= 1 {
        return 0.0;
    }
    let total = counts.iter().sum::<usize>() as f64;
    let ln_total = total.ln();
    -counts.iter().map(|&c| (c as f64 / total) * ((c as f64).ln() - ln_total)).sum::<f64>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_values() {
        // Values printed by scikit-learn 1.9.
        let a = [0, 0, 1, 1, 2, 2];
        let b = [0, 0, 1, 2, 2, 2];
        assert!((adjusted_rand_score(&a, &b).unwrap() - 0.444_444_444_444_444_4).abs() < 1e-15);
        assert!((normalized_mutual_info_score(&a, &b).unwrap() - 0.739_667_376_800_759_2).abs() < 1e-15);
    }

    #[test]
    fn edge_cases_match_scikit_learn() {
        assert_eq!(adjusted_rand_score(&[], &[]).unwrap(), 1.0);
        assert_eq!(adjusted_rand_score(&[1], &[2]).unwrap(), 1.0);
        assert_eq!(adjusted_rand_score(&[0, 0, 1], &[0, 0, 0]).unwrap(), 0.0);
        assert_eq!(normalized_mutual_info_score(&[], &[]).unwrap(), 1.0);
        assert_eq!(normalized_mutual_info_score(&[1], &[2]).unwrap(), 1.0);
        assert_eq!(normalized_mutual_info_score(&[0, 0, 1], &[0, 0, 0]).unwrap(), 0.0);
        assert!(adjusted_rand_score(&[0, 1], &[0]).is_err());
        assert!(normalized_mutual_info_score(&[0], &[0, 1]).is_err());
    }

    proptest! {
        #[test]
        fn ari_is_symmetric_and_one_on_renamed_copies(
            a in prop::collection::vec(0i64..5, 0..60),
            b_seed in prop::collection::vec(0i64..5, 60),
        ) {
            let b = &b_seed[..a.len()];
            let ab = adjusted_rand_score(&a, b).unwrap();
            prop_assert!((ab - adjusted_rand_score(b, &a).unwrap()).abs() < 1e-12);
            prop_assert!(ab <= 1.0 + 1e-12);
            let renamed: Vec<i64> = a.iter().map(|v| 100 - 7 * v).collect();
            prop_assert_eq!(adjusted_rand_score(&a, &renamed).unwrap(), 1.0);
            let nmi = normalized_mutual_info_score(&a, b).unwrap();
            prop_assert!((-1e-12..=1.0 + 1e-12).contains(&nmi));
            prop_assert!((nmi - normalized_mutual_info_score(b, &a).unwrap()).abs() < 1e-12);
        }
    }
}
