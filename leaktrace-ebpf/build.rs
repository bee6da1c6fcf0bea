use which::which;

/// Rebuild when bpf-linker changes. A missing linker is not an error here: this script also runs
/// for the host build of the (empty) library that the agent depends on; the BPF build itself fails
/// with a clear message if bpf-linker is not on PATH (`cargo xtask run|test` put it there).
fn main() {
    if let Ok(bpf_linker) = which("bpf-linker") {
        println!("cargo:rerun-if-changed={}", bpf_linker.display());
    }
}
