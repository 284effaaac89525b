//! Gaussian mixture models fitted by expectation–maximisation, like scikit-learn's.
