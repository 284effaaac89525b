//! Clustering: k-means, mini-batch k-means, DBSCAN, Gaussian mixtures.
