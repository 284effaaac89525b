//! Mini-batch k-means, like scikit-learn's MiniBatchKMeans.
