//! Memory caps a process declares on its command line: a JVM's `-Xmx`, node's
//! `--max-old-space-size`, redis `--maxmemory`, memcached `-m`, qemu `-m`. Growth towards such a
//! cap is bounded by design (a heap expanding, a cache filling), so the live alarm judges it as
//! bounded — unless the cap lies above the limit that binds the process (then reaching it is an
//! OOM, not a plateau). Pure: the command line in, the cap out.
use serde::Serialize;

const MIB: u64 = 1 << 20;

/// A declared cap, as the resident footprint it allows (the runtime's own overhead included).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Cap {
    /// The flag as given, e.g. `-Xmx512m`.
    pub flag: String,
    /// The cap the program enforces (heap, cache), bytes.
    pub declared_bytes: u64,
    /// The footprint a process under that cap can reach: the cap plus the runtime's overhead
    /// (JVM metaspace, code cache and thread stacks; allocator fragmentation of caches).
    pub footprint_bytes: u64,
}

/// `512m`, `2g`, `1024k`, `1048576` (bytes); `unit` multiplies a bare number.
fn size(s: &str, unit: u64) -> Option<u64> {
    let s = s.trim();
    let lower = s.to_ascii_lowercase();
    let lower = lower.trim_end_matches('b');
    let (num, mult) = match lower.chars().last()? {
        'k' => (&lower[..lower.len() - 1], 1 << 10),
        'm' => (&lower[..lower.len() - 1], 1 << 20),
        'g' => (&lower[..lower.len() - 1], 1 << 30),
        't' => (&lower[..lower.len() - 1], 1u64 << 40),
        _ => (lower, unit),
    };
    let n: f64 = num.trim().parse().ok()?;
    (n.is_finite() && n > 0.0).then_some((n * mult as f64) as u64)
}

/// The program's base name (`/usr/bin/java` → `java`).
fn base(arg0: &str) -> &str {
    arg0.rsplit('/').next().unwrap_or(arg0)
}

/// The value of `--name=V` / `--name V` / `-xV` style options.
fn value_of<'a>(args: &'a [String], long: &str) -> Option<&'a str> {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if let Some(v) = a.strip_prefix(long).and_then(|r| r.strip_prefix('=')) {
            return Some(v);
        }
        if a == long {
            return it.next().map(String::as_str);
        }
    }
    None
}

fn cap(flag: String, declared: u64, scale: f64, extra: u64) -> Cap {
    Cap {
        flag,
        declared_bytes: declared,
        footprint_bytes: (declared as f64 * scale) as u64 + extra,
    }
}

/// Whether the program is a garbage-collected runtime whose resident memory grows with garbage
/// between major collections (JVM, V8, .NET, Ruby, Erlang's BEAM).
pub fn gc_runtime(cmdline: &[String], comm: &str) -> bool {
    let prog = cmdline.first().map_or(comm, |a| base(a));
    ["java", "node", "nodejs", "dotnet", "ruby", "beam.smp"]
        .iter()
        .any(|r| prog == *r || comm == *r)
}

/// Whether the process's bounds cannot be read: redis-server replaces its arguments with its
/// process title at start-up (`redis-server 127.0.0.1:6379`), `--maxmemory` among them, so a
/// redis seen after that has no declared cap although it may well have one. Its growth is then
/// judged as patiently as a collected heap's (a cache filling to an unseen `maxmemory` looks like
/// a leak for as long as it fills).
pub fn bounds_unread(cmdline: &[String], comm: &str) -> bool {
    let prog = cmdline.first().map_or(comm, |a| base(a));
    (prog.starts_with("redis-server") || comm == "redis-server") && declared(cmdline, comm).is_none()
}

/// The cap `cmdline` declares, if any. `comm` helps when argv[0] was rewritten.
pub fn declared(cmdline: &[String], comm: &str) -> Option<Cap> {
    let arg0 = cmdline.first().map_or(comm, String::as_str);
    let prog = base(arg0);
    let args = cmdline.get(1..).unwrap_or(&[]);
    if prog == "java" || comm == "java" {
        // The last one wins, as for the JVM.
        let xmx = args.iter().rev().find_map(|a| {
            a.strip_prefix("-Xmx")
                .or_else(|| a.strip_prefix("-XX:MaxHeapSize="))
                .and_then(|v| size(v, 1).map(|b| (a.clone(), b)))
        });
        return xmx.map(|(flag, b)| cap(flag, b, 1.25, 128 * MIB));
    }
    if prog == "node" || prog == "nodejs" || comm == "node" {
        let v = args
            .iter()
            .find_map(|a| a.strip_prefix("--max-old-space-size=").map(|v| (a.clone(), v)))?;
        return size(v.1, MIB).map(|b| cap(v.0, b, 1.5, 128 * MIB));
    }
    if prog.starts_with("redis-server") || comm == "redis-server" {
        let v = value_of(args, "--maxmemory")?;
        return size(v, 1).map(|b| cap(format!("--maxmemory {v}"), b, 1.5, 32 * MIB));
    }
    if prog == "memcached" || comm == "memcached" {
        // Default 64 MiB when not given: memcached always has a cap.
        let v = value_of(args, "-m")
            .or_else(|| value_of(args, "--memory-limit"))
            .unwrap_or("64");
        return size(v, MIB).map(|b| cap(format!("-m {v}"), b, 1.25, 32 * MIB));
    }
    if prog.starts_with("qemu-system") || comm.starts_with("qemu-system") {
        let v = value_of(args, "-m")?;
        // `-m size=2G,slots=..` or `-m 2048` (MiB).
        let v0 = v.split(',').next().unwrap_or(v);
        let v0 = v0.strip_prefix("size=").unwrap_or(v0);
        return size(v0, MIB).map(|b| cap(format!("-m {v}"), b, 1.1, 256 * MIB));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn redis_title_hides_its_bounds() {
        let title = argv("redis-server 127.0.0.1:16379");
        assert!(bounds_unread(&[title[0].clone(), String::new()], "redis-server"));
        assert!(!bounds_unread(&argv("redis-server --maxmemory 64mb"), "redis-server"));
        assert!(!bounds_unread(&argv("memcached -m 48"), "memcached"));
        assert!(!bounds_unread(&argv("python3 app.py"), "python3"));
    }

    #[test]
    fn caps_of_real_command_lines() {
        let c = declared(
            &argv("/usr/lib/jvm/java-17-openjdk-amd64/bin/java -XX:+UseG1GC -Xms16m -Xmx512m -cp /tmp Corpus"),
            "java",
        )
        .unwrap();
        assert_eq!((c.flag.as_str(), c.declared_bytes), ("-Xmx512m", 512 * MIB));
        assert_eq!(c.footprint_bytes, 640 * MIB + 128 * MIB);
        let c = declared(&argv("java -XX:MaxHeapSize=1g -Xmx2g Main"), "java").unwrap();
        assert_eq!(c.declared_bytes, 2 << 30, "the last one wins");
        assert!(
            declared(&argv("java -Xms64m Main"), "java").is_none(),
            "a default heap is not declared"
        );
        let c = declared(
            &argv("redis-server *:6390 --maxmemory 64mb --maxmemory-policy allkeys-lru"),
            "redis-server",
        )
        .unwrap();
        assert_eq!(c.declared_bytes, 64 * MIB);
        let c = declared(&argv("/usr/bin/memcached -m 48 -p 11300 -U 0"), "memcached").unwrap();
        assert_eq!(c.declared_bytes, 48 * MIB);
        assert_eq!(
            declared(&argv("memcached -p 1"), "memcached").unwrap().declared_bytes,
            64 * MIB
        );
        let c = declared(&argv("node --max-old-space-size=4096 app.js"), "node").unwrap();
        assert_eq!(c.declared_bytes, 4096 * MIB);
        let c = declared(
            &argv("qemu-system-x86_64 -accel tcg -m 512 -kernel vmlinuz"),
            "qemu-system-x86",
        )
        .unwrap();
        assert_eq!(c.declared_bytes, 512 * MIB);
        let c = declared(
            &argv("qemu-system-x86_64 -m size=2G,slots=2,maxmem=4G"),
            "qemu-system-x86",
        )
        .unwrap();
        assert_eq!(c.declared_bytes, 2 << 30);
        assert!(declared(&argv("python3 -m http.server"), "python3").is_none());
        assert!(declared(&[], "rustc").is_none());
        assert!(declared(&argv("java -Xmxbogus Main"), "java").is_none());
    }
}
