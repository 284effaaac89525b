//! The in-process executor: every shard resident in this process, steps run one shard after
//! the other (each on every core).

use ndarray::{Array2, ArrayView1, ArrayView2};

use super::op::{ShardOp, ShardReply};
use super::shard::{owned_rows, ShardState};
use super::{ShardExecutor, ShardPlan, ShardedKMeans};
use crate::cluster::kmeans::KMeansModel;
use crate::cluster::{validate_data, Clusterer, Progress};
use crate::{CancelToken, Error, Real, Result};

/// The shards of a matrix, held in this process.
#[derive(Debug)]
pub struct LocalShards<T> {
    shards: Vec<ShardState<T>>,
    cancel: CancelToken,
}

impl<T: Real> LocalShards<T> {
    /// Copies the rows of `x` into the shards of `plan`.
    pub fn new(x: ArrayView2<'_, T>, plan: &ShardPlan) -> Self {
        let shards = (0..plan.shards())
            .map(|s| {
                let range = plan.range(s);
                ShardState::new(s, range.start, plan.d, owned_rows(x, range))
            })
            .collect();
        LocalShards { shards, cancel: CancelToken::new() }
    }

    /// Makes every step first check `cancel`: a cancelled fit stops before its next step
    /// (between Lloyd iterations, and between the steps of the initialisation).
    #[must_use]
    pub fn cancellable(self, cancel: CancelToken) -> Self {
        LocalShards { cancel, ..self }
    }
}

impl<T: Real> ShardExecutor<T> for LocalShards<T> {
    type Error = Error;

    fn run(&mut self, op: &ShardOp<Array2<T>>, shards: &[usize]) -> Result<Vec<ShardReply>> {
        self.cancel.check()?;
        shards.iter().map(|&s| self.shards[s].apply(op)).collect()
    }
}

impl<T: Real> Clusterer<T> for ShardedKMeans {
    type Model = KMeansModel<T>;

    /// Fits in this process; the same model as a fit of the same plan on a cluster. `cancel`
    /// is checked before every step: a cancelled fit stops at the end of the step it is in
    /// (a Lloyd iteration at most), with [`Error::Cancelled`].
    fn fit_cancellable(
        &self,
        x: ArrayView2<'_, T>,
        sample_weight: Option<ArrayView1<'_, T>>,
        progress: &(dyn Fn(Progress) + Sync),
        cancel: &CancelToken,
    ) -> Result<KMeansModel<T>> {
        if sample_weight.is_some() {
            return Err(Error::parameter("sample_weight", "is not supported by k-means over shards"));
        }
        self.validate()?;
        validate_data(x, None, self.n_clusters)?;
        let plan = self.plan(x.nrows(), x.ncols())?;
        self.fit_with(plan, &mut LocalShards::new(x, &plan).cancellable(cancel.clone()), progress)
    }
}

#[cfg(test)]
mod tests {
    use ndarray::{array, Array2};
    use rand::{Rng, SeedableRng};
    use rand_pcg::Pcg64Mcg;

    use super::*;
    use crate::cluster::kmeans::{KMeans, KMeansInit};
    use crate::cluster::Fitted;
    use crate::metrics::adjusted_rand_score;

    /// `k` well-separated blobs of `n` rows in `d` dimensions.
    fn blobs(n: usize, d: usize, k: usize, seed: u64) -> Array2<f32> {
        let mut rng = Pcg64Mcg::seed_from_u64(seed);
        let centres: Vec<Vec<f32>> = (0..k).map(|_| (0..d).map(|_| rng.random_range(-20.0..20.0)).collect()).collect();
        Array2::from_shape_fn((n, d), |(i, q)| centres[i % k][q] + rng.random_range(-1.0f32..1.0))
    }

    /// Local shards that lose shard `lost` just before step `at` and rebuild it from the
    /// data and the mean, as a worker taking over a dead holder's shard does.
    struct Forgetful<'a> {
        inner: LocalShards<f32>,
        x: &'a Array2<f32>,
        plan: ShardPlan,
        lost: usize,
        at: usize,
        steps: usize,
        mean: Option<Vec<f64>>,
    }

    impl ShardExecutor<f32> for Forgetful<'_> {
        type Error = Error;

        fn run(&mut self, op: &ShardOp<Array2<f32>>, shards: &[usize]) -> Result<Vec<ShardReply>> {
            self.steps += 1;
            if self.steps == self.at {
                let range = self.plan.range(self.lost);
                let mut fresh = ShardState::new(self.lost, range.start, self.plan.d, owned_rows(self.x.view(), range));
                if let Some(mean) = &self.mean {
                    fresh.centre(mean)?;
                }
                self.inner.shards[self.lost] = fresh;
            }
            if let ShardOp::Centre { mean } = op {
                self.mean = Some(mean.clone());
            }
            self.inner.run(op, shards)
        }
    }

    #[test]
    fn a_shard_rebuilt_before_any_step_answers_as_the_one_it_replaces() {
        let x = blobs(3000, 5, 6, 1);
        let km =
            ShardedKMeans { n_clusters: 6, shard_rows: 700, random_state: 3, tol: 0.0, ..ShardedKMeans::default() };
        let plan = km.plan(3000, 5).unwrap();
        let expected: KMeansModel<f32> = km.fit(x.view(), None).unwrap();
        assert!(expected.n_iter >= 2, "the fit should iterate: {}", expected.n_iter);
        for at in 1..40 {
            let mut exec =
                Forgetful { inner: LocalShards::new(x.view(), &plan), x: &x, plan, lost: 2, at, steps: 0, mean: None };
            let got = km.fit_with(plan, &mut exec, &|_| {}).unwrap();
            assert_eq!(got, expected, "shard lost before step {at}");
        }
    }

    #[test]
    fn finds_the_clusters_greedy_kmeans_finds() {
        let x = blobs(4000, 8, 7, 2);
        let reference = KMeans { n_clusters: 7, random_state: 0, ..KMeans::default() }.fit(x.view(), None).unwrap();
        for shard_rows in [4000, 999, 250] {
            let km = ShardedKMeans { n_clusters: 7, shard_rows, ..ShardedKMeans::default() };
            let model: KMeansModel<f32> = km.fit(x.view(), None).unwrap();
            assert_eq!(adjusted_rand_score(&reference.labels, &model.labels).unwrap(), 1.0, "shard_rows={shard_rows}");
            let rel = (model.inertia - reference.inertia).abs() / reference.inertia;
            assert!(rel < 1e-5, "shard_rows={shard_rows}: inertia {} vs {}", model.inertia, reference.inertia);
        }
    }

    #[test]
    fn from_given_centres_runs_lloyd_as_kmeans_does_empty_clusters_included() {
        let x = blobs(2000, 3, 4, 5).mapv(f64::from);
        // The fifth centre is nearest to no row: its cluster is empty at the first iteration.
        let mut init = Array2::from_shape_fn((5, 3), |(j, q)| x[[j, q]]);
        init.row_mut(4).fill(1e4);
        let reference = KMeans { n_clusters: 5, init: KMeansInit::Centres(init.clone()), ..KMeans::default() };
        let reference = reference.fit(x.view(), None).unwrap();
        let km = ShardedKMeans { n_clusters: 5, init: Some(init), shard_rows: 300, ..ShardedKMeans::default() };
        let model = km.fit(x.view(), None).unwrap();
        assert_eq!(model.labels(), reference.labels());
        assert_eq!(model.n_iter, reference.n_iter);
        assert!((model.inertia - reference.inertia).abs() / reference.inertia < 1e-9);
    }

    #[test]
    fn a_cancel_stops_the_fit_between_iterations() {
        let x = blobs(3000, 4, 60, 7); // 60 blobs in 6 clusters: many iterations
        let km = ShardedKMeans { n_clusters: 6, shard_rows: 500, tol: 0.0, max_iter: 50, ..ShardedKMeans::default() };
        let cancel = CancelToken::new();
        let iterations = std::sync::Mutex::new(0);
        let progress = |p: Progress| {
            *iterations.lock().unwrap() = p.done;
            if p.done == 2 {
                cancel.cancel();
            }
        };
        let e = km.fit_cancellable(x.view(), None, &progress, &cancel).unwrap_err();
        assert!(matches!(e, Error::Cancelled), "{e}");
        assert_eq!(*iterations.lock().unwrap(), 2, "the fit went on after the cancel");
        let model: KMeansModel<f32> = km.fit_cancellable(x.view(), None, &|_| {}, &CancelToken::new()).unwrap();
        assert!(model.n_iter > 2, "the fit should need more than two iterations: {}", model.n_iter);
    }

    #[test]
    fn bad_input_is_a_clear_error() {
        let km = ShardedKMeans::new(3);
        let few = array![[0.0f32, 1.0], [2.0, 3.0]];
        let e = km.fit(few.view(), None).unwrap_err().to_string();
        assert!(e.contains("at least 3 are needed"), "{e}");
        let nan = array![[0.0f32, 1.0], [f32::NAN, 3.0], [1.0, 1.0], [2.0, 2.0]];
        let e = km.fit(nan.view(), None).unwrap_err().to_string();
        assert!(e.contains("NaN"), "{e}");
        let w = array![1.0f32, 1.0, 1.0, 1.0];
        let x = array![[0.0f32, 1.0], [1.0, 3.0], [1.0, 1.0], [2.0, 2.0]];
        let e = km.fit(x.view(), Some(w.view())).unwrap_err().to_string();
        assert!(e.contains("sample_weight"), "{e}");
        let e = ShardedKMeans { shard_rows: 0, ..km }.fit(x.view(), None).unwrap_err().to_string();
        assert!(e.contains("shard_rows"), "{e}");
    }
}
