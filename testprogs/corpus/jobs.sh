#!/bin/bash
# Batch jobs for the leaktrace corpus: compilers in a loop, sort and compress jobs.
#
#   jobs.sh gcc-loop DIR SEED     gcc -O2 on a generated ~6000-line C file, again and again
#   jobs.sh rust-loop DIR SEED    cargo build --release of a small generated crate (no deps, offline),
#                                 touched and rebuilt again and again
#   jobs.sh sort-loop DIR SEED    sort -S 200M on a generated ~120 MB file, again and again
#   jobs.sh xz-loop DIR SEED      xz -9 then gzip -9 on a generated ~60 MB file, again and again
#
# DIR is a scratch directory (created; the caller removes it). Runs until killed.
set -eu
mode=$1 dir=$2 seed=${3:-1}
mkdir -p "$dir"
cd "$dir"
echo "pid $$: $mode in $dir (seed $seed)"
gen_lines() { # N: deterministic pseudo-random text lines
    /usr/bin/python3.11 -c "
import random, sys
r = random.Random($seed)
w = sys.stdout.write
for i in range($1):
    w('%016x %s %d\n' % (r.getrandbits(64), 'abcdefghij'[r.randrange(10)] * r.randrange(1, 60), i))
"
}
case $mode in
gcc-loop)
    /usr/bin/python3.11 - "$seed" >big.c <<'PY'
import random, sys
r = random.Random(int(sys.argv[1]))
print("#include <string.h>\n#include <stdio.h>")
for i in range(600):
    n = r.randrange(4, 12)
    print(f"static double f{i}(double *a, int n) {{ double s = 0;")
    print(f"  for (int i = 0; i < n; i++) {{ s += a[i] * {r.random():.6f} + a[(i * {n}) % n];")
    print(f"    if (s > {r.randrange(100, 1000)}) s = s / {n} - a[i % {n}]; }}")
    for j in range(n):
        print(f"  s = s * {r.random():.4f} + (a[{j} % n] > s ? {j} : -{j});")
    print(f"  return s; }}")
print("int main(int c, char **v) { double a[64]; memset(a, 0, sizeof a); double s = 0;")
for i in range(600):
    print(f"  s += f{i}(a, c + {i % 60});")
print('  printf("%f\\n", s); return 0; }')
PY
    while true; do gcc -O2 -o big big.c; sleep 1; done
    ;;
rust-loop)
    export CARGO_HOME="$dir/cargo-home" CARGO_TARGET_DIR="$dir/target"
    mkdir -p crate/src
    printf '[package]\nname = "corpus_crate"\nversion = "0.1.0"\nedition = "2021"\n\n[dependencies]\n' >crate/Cargo.toml
    /usr/bin/python3.11 - "$seed" >crate/src/main.rs <<'PY'
import random, sys
r = random.Random(int(sys.argv[1]))
print("use std::collections::HashMap;")
for i in range(120):
    print(f"#[derive(Debug, Clone, PartialEq)] struct S{i}<T> {{ a: Vec<T>, b: HashMap<u32, String>, c: u{[8,16,32,64][i % 4]} }}")
    print(f"impl<T: Clone + std::fmt::Debug> S{i}<T> {{ fn f(&self, x: T) -> Vec<T> {{ let mut v = self.a.clone(); v.push(x); "
          f"v.iter().cycle().take({r.randrange(2, 9)}).cloned().collect() }} }}")
print("fn main() { let mut n = 0usize;")
for i in range(120):
    print(f"  n += S{i} {{ a: vec![{i}u64], b: HashMap::new(), c: 1 }}.f({i}).len() + format!(\"{{:?}}\", S{i}::<u8> {{ a: vec![], b: HashMap::new(), c: 0 }}).len();")
print('  println!("{n}"); }')
PY
    while true; do touch crate/src/main.rs; cargo build --offline --release -q --manifest-path crate/Cargo.toml; sleep 1; done
    ;;
sort-loop)
    gen_lines 2000000 >in.txt
    while true; do sort -S 200M -o out.txt in.txt; rm -f out.txt; sleep 2; done
    ;;
xz-loop)
    gen_lines 1000000 >in.txt
    while true; do xz -9 -T1 -k -c in.txt >in.xz; gzip -9 -c in.txt >in.gz; rm -f in.xz in.gz; sleep 2; done
    ;;
*)
    echo "unknown mode $mode" >&2
    exit 2
    ;;
esac
