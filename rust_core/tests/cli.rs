//! The `ferrocluster` command line, run as a real process on a generated sample set.

mod support;

use support::cli::{ferrocluster, ok, path};

#[test]
fn sample_cluster_and_predict_end_to_end() {
    let tmp = tempfile::tempdir().unwrap();
    let (images, out) = (tmp.path().join("images"), tmp.path().join("out"));
    ok(&["sample", "synthetic", path(&images), "--n", "96", "--size", "32", "--classes", "4", "--seed", "3"]);
    // A corrupt file among the images is skipped with a warning, not fatal.
    std::fs::write(images.join("broken.png"), b"not a png").unwrap();

    let run = ferrocluster(&["cluster", path(&images), "--k", "4", "--size", "32", "-o", path(&out)]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    assert!(String::from_utf8_lossy(&run.stderr).contains("broken.png"));

    let metrics: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(metrics["images"], 96);
    assert_eq!(metrics["skipped"].as_array().unwrap().len(), 1);
    assert_eq!(metrics["cluster_sizes"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).sum::<u64>(), 96);
    // The synthetic classes differ in orientation and tint: k-means on HOG finds them.
    assert!(metrics["adjusted_rand_index"].as_f64().unwrap() > 0.9, "{metrics}");

    let assignments = std::fs::read_to_string(out.join("assignments.csv")).unwrap();
    assert_eq!(assignments.lines().count(), 97);
    let sheet = image::open(out.join("contact_sheet.png")).unwrap();
    assert!(sheet.height() > 4 * 48 && sheet.width() > 12 * 48);

    // predict labels training images as the fit did.
    let first = assignments.lines().nth(1).unwrap();
    let (file, rest) = first.split_once(',').unwrap();
    let cluster = rest.split(',').next().unwrap();
    let predicted = ok(&["predict", path(&out.join("model.json")), file]);
    assert_eq!(predicted.lines().nth(1).unwrap().split(',').nth(1).unwrap(), cluster);

    let npy = tmp.path().join("features.npy");
    ok(&["extract", path(&images), "-o", path(&npy), "--size", "32"]);
    let bytes = std::fs::read(&npy).unwrap();
    assert_eq!(&bytes[..6], b"\x93NUMPY");
    assert!(String::from_utf8_lossy(&bytes[..128]).contains("'shape': (96, "));
}

#[test]
fn bad_input_is_a_clear_error_not_a_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let out = ferrocluster(&["cluster", path(&empty), "--k", "3", "-o", path(&tmp.path().join("o"))]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no images"));

    let model = tmp.path().join("model.json");
    std::fs::write(&model, b"{\"format\": \"ferrocluster-model\", \"version\": 7}").unwrap();
    let out = ferrocluster(&["predict", path(&model), path(&model)]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("version 7") && !stderr.contains("panicked"), "{stderr}");

    let images = tmp.path().join("few");
    ok(&["sample", "synthetic", path(&images), "--n", "3", "--size", "16"]);
    let out = ferrocluster(&["cluster", path(&images), "--k", "5", "--size", "16", "-o", path(&tmp.path().join("o"))]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("smaller k"));
}
