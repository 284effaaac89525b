//! Clustering quality metrics: inertia, silhouette, adjusted Rand index, NMI.
