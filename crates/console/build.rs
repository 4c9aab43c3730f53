//! Rebuilds this crate when the built console changes (`include_dir!` cannot tell
//! cargo on stable Rust).

fn main() {
    println!("cargo:rerun-if-changed=assets");
}
