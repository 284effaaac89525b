//! Feature extractors: HOG, LBP, colour histograms, raw pixels, composed by a FeatureConfig.
