//! A k-d tree over tiled rows for exact radius searches.
//!
//! Nodes split at the median of their widest feature, at a multiple of the tile width so that
//! every leaf is a run of whole [`Panels`]; a search prunes subtrees whose bounding box is
//! farther than the radius from the query tile's box and computes whole tiles in the leaves.
//! Pruning is exact in floating point: the box gap is a monotone lower bound of every computed
//! pair distance, so nothing within the radius is ever skipped.

use ndarray::{Array2, ArrayView2, Axis};

use crate::metrics::distance::{Panels, LANES};
use crate::Real;

/// Rows per leaf (a multiple of [`LANES`]); about scikit-learn's default `leaf_size` of 30.
const LEAF_ROWS: usize = 8 * LANES;

/// The bounding box of a set of rows.
#[derive(Debug, Clone)]
pub(super) struct BoundingBox {
    lo: Vec<f64>,
    hi: Vec<f64>,
}

impl BoundingBox {
    /// The box of `rows` of `x`.
    pub fn of(x: ArrayView2<'_, f64>, rows: impl IntoIterator<Item = usize>) -> Self {
        let d = x.ncols();
        let mut b = BoundingBox { lo: vec![f64::INFINITY; d], hi: vec![f64::NEG_INFINITY; d] };
        for i in rows {
            for (k, &v) in x.row(i).iter().enumerate() {
                b.lo[k] = b.lo[k].min(v);
                b.hi[k] = b.hi[k].max(v);
            }
        }
        b
    }

    /// A lower bound of the squared distance between any point of `self` and any of `other`,
    /// summed in feature order like the distances themselves.
    fn gap2(&self, other: &BoundingBox) -> f64 {
        let mut s = 0.0;
        for k in 0..self.lo.len() {
            let g = (other.lo[k] - self.hi[k]).max(self.lo[k] - other.hi[k]).max(0.0);
            s += g * g;
        }
        s
    }

    fn widest_feature(&self) -> (usize, f64) {
        self.lo.iter().zip(&self.hi).map(|(l, h)| h - l).enumerate().fold((0, 0.0), |best, (k, w)| {
            if w > best.1 {
                (k, w)
            } else {
                best
            }
        })
    }
}

#[derive(Debug)]
struct Node {
    bounds: BoundingBox,
    /// The panels `first_panel..end_panel` of the tree's (reordered) rows under this node.
    first_panel: usize,
    end_panel: usize,
    children: Option<(usize, usize)>,
}

/// A k-d tree over the rows of a matrix, stored reordered in tiles.
#[derive(Debug)]
pub(super) struct KdTree {
    rows: Array2<f64>,
    panels: Panels,
    /// `order[p]` is the original index of the tree's `p`-th row.
    order: Vec<usize>,
    nodes: Vec<Node>,
}

impl KdTree {
    /// Builds the tree over the rows of `x`.
    pub fn new<T: Real>(x: ArrayView2<'_, T>) -> Self {
        let x = x.mapv(Real::to_f64_exact);
        let mut order: Vec<usize> = (0..x.nrows()).collect();
        let mut nodes = Vec::new();
        if !order.is_empty() {
            build(x.view(), &mut order, 0, &mut nodes);
        }
        let rows = x.select(Axis(0), &order);
        KdTree { panels: Panels::new(rows.view()), rows, order, nodes }
    }

    /// The rows in tree order, tiled: search queries for the tree's own rows come from here.
    pub fn panels(&self) -> &Panels {
        &self.panels
    }

    /// The original index of the tree's `p`-th row.
    pub fn original_index(&self, p: usize) -> usize {
        self.order[p]
    }

    /// The bounding box of the tree's own rows in panel `a`.
    pub fn panel_bounds(&self, a: usize) -> BoundingBox {
        BoundingBox::of(self.rows.view(), self.panels.rows(a))
    }

    /// Calls `visit(r, j, d2)` for every row `r` of panel `a` of `queries` (`r` counts from the
    /// panel's first row), whose
    /// box is `query_box`, and every tree row with original index `j` at squared distance
    /// `d2 ≤ eps2`; leaves are visited in tree order.
    pub fn within(
        &self,
        queries: &Panels,
        a: usize,
        query_box: &BoundingBox,
        eps2: f64,
        mut visit: impl FnMut(usize, usize, f64),
    ) {
        let n_queries = queries.rows(a).len();
        let mut stack = if self.nodes.is_empty() { vec![] } else { vec![0] };
        while let Some(id) = stack.pop() {
            let node = &self.nodes[id];
            if node.bounds.gap2(query_box) > eps2 {
                continue;
            }
            if let Some((left, right)) = node.children {
                stack.extend([right, left]);
                continue;
            }
            for b in node.first_panel..node.end_panel {
                let Some(tile) = queries.tile(a, &self.panels, b, eps2) else {
                    continue;
                };
                for (r, tile_r) in tile.iter().enumerate().take(n_queries) {
                    for (p, &d2) in self.panels.rows(b).zip(tile_r) {
                        if d2 <= eps2 {
                            visit(r, self.order[p], d2);
                        }
                    }
                }
            }
        }
    }
}

/// Builds the subtree over `order` (rows of `x` starting at tree position `start`, a multiple
/// of [`LANES`]) and returns its node id.
fn build(x: ArrayView2<'_, f64>, order: &mut [usize], start: usize, nodes: &mut Vec<Node>) -> usize {
    let bounds = BoundingBox::of(x, order.iter().copied());
    let (feature, width) = bounds.widest_feature();
    let id = nodes.len();
    nodes.push(Node {
        bounds,
        first_panel: start / LANES,
        end_panel: (start + order.len()).div_ceil(LANES),
        children: None,
    });
    // Identical rows cannot be split; they stay one (large) leaf.
    if order.len() > LEAF_ROWS && width > 0.0 {
        let mid = (order.len() / 2 / LANES) * LANES;
        order.select_nth_unstable_by(mid, |&i, &j| x[[i, feature]].total_cmp(&x[[j, feature]]));
        let (left, right) = order.split_at_mut(mid);
        let l = build(x, left, start, nodes);
        let r = build(x, right, start + mid, nodes);
        nodes[id].children = Some((l, r));
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_exactly_the_pairs_within_the_radius() {
        let n = 203;
        let x = Array2::from_shape_fn((n, 3), |(i, k)| ((i * 37 + k * 11) % 101) as f64 / 10.0 + (i % 7) as f64);
        let tree = KdTree::new(x.view());
        let eps2 = 2.5;
        let mut found = vec![Vec::new(); n];
        for a in 0..tree.panels().n_panels() {
            let bounds = tree.panel_bounds(a);
            let rows: Vec<usize> = tree.panels().rows(a).map(|p| tree.original_index(p)).collect();
            tree.within(tree.panels(), a, &bounds, eps2, |r, j, _| found[rows[r]].push(j));
        }
        for (i, list) in found.iter_mut().enumerate() {
            list.sort_unstable();
            let expected: Vec<usize> = (0..n)
                .filter(|&j| x.row(i).iter().zip(x.row(j)).map(|(a, b)| (a - b) * (a - b)).sum::<f64>() <= eps2)
                .collect();
            assert_eq!(*list, expected, "row {i}");
        }
    }
}
