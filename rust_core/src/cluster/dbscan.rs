//! DBSCAN: density-based clusters with noise, equal to scikit-learn's.
