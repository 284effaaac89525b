//! `ferrocluster-api`: the REST service (training jobs and inference). Built out in its own issue.

fn main() {
    eprintln!("ferrocluster-api {}: the REST service is not built yet", env!("CARGO_PKG_VERSION"));
    std::process::exit(2);
}
