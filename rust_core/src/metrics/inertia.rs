//! Inertia: the (weighted) sum of squared distances of samples to their cluster centre.

use ndarray::{ArrayView1, ArrayView2};

use crate::cluster::validate_data;
use crate::{Error, Real, Result};

/// `Σᵢ wᵢ ‖xᵢ − centres[labels[i]]‖²` in f64, the quantity k-means minimises (scikit-learn's
/// `inertia_`). Unit weights when `sample_weight` is `None`.
///
/// Errors on NaN/infinite values, mismatched lengths or widths, or a label outside
/// `0..centres.nrows()` (noise labels `-1` have no centre).
pub fn inertia<T: Real>(
    x: ArrayView2<'_, T>,
    labels: &[i64],
    centres: ArrayView2<'_, T>,
    sample_weight: Option<ArrayView1<'_, T>>,
) -> Result<f64> {
    validate_data(x, sample_weight, 1)?;
    validate_data(centres, None, 1)?;
    if labels.len() != x.nrows() {
        return Err(Error::input(format!("labels has {} values but X has {} rows", labels.len(), x.nrows())));
    }
    if centres.ncols() != x.ncols() {
        return Err(Error::input(format!("centres have {} features but X has {}", centres.ncols(), x.ncols())));
    }
    let k = centres.nrows();
    let mut total = 0.0;
    for (i, (row, &label)) in x.outer_iter().zip(labels).enumerate() {
        let c = usize::try_from(label)
            .ok()
            .filter(|&c| c < k)
            .ok_or_else(|| Error::input(format!("label {label} of row {i} is not a centre index (0..{k})")))?;
        let d2: f64 = row.iter().zip(centres.row(c)).map(|(a, b)| (a.to_f64_exact() - b.to_f64_exact()).powi(2)).sum();
        total += sample_weight.map_or(1.0, |w| w[i].to_f64_exact()) * d2;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn weighted_sum_of_squared_distances() {
        let x = array![[0.0f32, 0.0], [2.0, 0.0], [10.0, 1.0]];
        let c = array![[1.0f32, 0.0], [10.0, 0.0]];
        assert_eq!(inertia(x.view(), &[0, 0, 1], c.view(), None).unwrap(), 3.0);
        let w = array![1.0f32, 2.0, 4.0];
        assert_eq!(inertia(x.view(), &[0, 0, 1], c.view(), Some(w.view())).unwrap(), 7.0);
        assert!(inertia(x.view(), &[0, 0, 2], c.view(), None).is_err());
        assert!(inertia(x.view(), &[0, -1, 1], c.view(), None).is_err());
    }
}
