//! Cluster labels as dense indices, like scikit-learn's `LabelEncoder`.

use ndarray::ArrayView2;

use crate::cluster::validate_data;
use crate::{Error, Real, Result};

/// Labels renumbered `0..n_labels` in increasing order of their original values.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct EncodedLabels {
    /// The dense index of each sample's label.
    pub codes: Vec<usize>,
    /// How many samples carry each dense label.
    pub counts: Vec<usize>,
}

impl EncodedLabels {
    /// Encodes `labels`; sorting the distinct values keeps the numbering equal to `np.unique`'s.
    pub fn new(labels: &[i64]) -> Self {
        let mut distinct = labels.to_vec();
        distinct.sort_unstable();
        distinct.dedup();
        let codes: Vec<usize> = labels
            .iter()
            .map(|l| distinct.binary_search(l).expect("every label is among the distinct labels"))
            .collect();
        let mut counts = vec![0; distinct.len()];
        for &c in &codes {
            counts[c] += 1;
        }
        EncodedLabels { codes, counts }
    }

    /// The number of distinct labels.
    pub fn n_labels(&self) -> usize {
        self.counts.len()
    }
}

/// Validates a data matrix with one label per row for the internal (unsupervised) metrics and
/// encodes the labels; like scikit-learn, 2 to n − 1 distinct labels are required.
pub(crate) fn encode_for_data<T: Real>(x: ArrayView2<'_, T>, labels: &[i64]) -> Result<EncodedLabels> {
    validate_data(x, None, 1)?;
    if labels.len() != x.nrows() {
        return Err(Error::input(format!("labels has {} values but X has {} rows", labels.len(), x.nrows())));
    }
    let encoded = EncodedLabels::new(labels);
    let n_labels = encoded.n_labels();
    if !(2..labels.len()).contains(&n_labels) {
        return Err(Error::input(format!(
            "number of labels is {n_labels}; valid values are 2 to n_samples - 1 (inclusive)"
        )));
    }
    Ok(encoded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_in_sorted_order() {
        let e = EncodedLabels::new(&[5, -1, 5, 3]);
        assert_eq!(e.codes, vec![2, 0, 2, 1]);
        assert_eq!(e.counts, vec![1, 1, 2]);
    }

    #[test]
    fn rejects_one_label_or_one_per_sample() {
        let x = ndarray::array![[0.0], [1.0], [2.0]];
        assert!(encode_for_data(x.view(), &[0, 0, 0]).is_err());
        assert!(encode_for_data(x.view(), &[0, 1, 2]).is_err());
        assert!(encode_for_data(x.view(), &[0, 1]).is_err());
        assert!(encode_for_data(x.view(), &[0, 1, 1]).is_ok());
    }
}
