//! Bundled and generated data sets: scikit-learn's digits and a seeded synthetic generator.
