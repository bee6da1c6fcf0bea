use which::which;

/// Building this crate needs bpf-linker on PATH; cargo re-runs us when it changes.
fn main() {
    let bpf_linker = which("bpf-linker").expect("bpf-linker not found on PATH: run `cargo xtask run` or `cargo xtask test`, which build it into target/tools");
    println!("cargo:rerun-if-changed={}", bpf_linker.display());
}
