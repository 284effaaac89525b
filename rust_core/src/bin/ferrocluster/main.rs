//! The `ferrocluster` command line.

fn main() {
    println!("ferrocluster {}", env!("CARGO_PKG_VERSION"));
}
