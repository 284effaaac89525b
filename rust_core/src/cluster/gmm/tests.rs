use super::*;
use ndarray::array;

#[test]
fn placeholder() {}
