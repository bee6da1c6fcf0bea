//! A JVM class histogram (the text of HotSpot's `inspectheap`, as `jmap -histo` prints it), and the
//! difference between two.
//!
//! ```text
//!  num     #instances         #bytes  class name (module)
//! -------------------------------------------------------
//!    1:         20928         990560  [B (java.base@17.0.15)
//!    3:          6800         217600  LeakedOrderDto
//! Total         57417        2403984
//! ```
use std::collections::HashMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassEntry {
    /// As the JVM names it: `java.lang.String`, `[B` (byte[]), `[Ljava.lang.Object;`.
    pub name: String,
    /// `java.base@17.0.15`; absent for classes of the unnamed module (application classes on
    /// the class path).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub module: Option<String>,
    pub instances: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Histogram {
    /// Wall-clock time it was taken (ms since the epoch).
    pub taken_unix_ms: u64,
    /// Only live objects: the JVM ran a full collection first.
    pub live: bool,
    pub total_instances: u64,
    pub total_bytes: u64,
    /// Largest first.
    pub classes: Vec<ClassEntry>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HistogramError {
    #[error("the JVM answered with no class histogram: {0}")]
    NoTable(String),
}

/// Parse `inspectheap` output (without the attach protocol's status line).
pub fn parse(text: &str, live: bool, taken_unix_ms: u64) -> Result<Histogram, HistogramError> {
    let mut classes = Vec::new();
    let mut total = None;
    for line in text.lines() {
        let l = line.trim();
        if let Some(rest) = l.strip_prefix("Total") {
            let mut it = rest.split_whitespace().filter_map(|v| v.parse::<u64>().ok());
            if let (Some(i), Some(b)) = (it.next(), it.next()) {
                total = Some((i, b));
            }
            continue;
        }
        let Some((num, rest)) = l.split_once(':') else { continue };
        if num.is_empty() || !num.bytes().all(|c| c.is_ascii_digit()) {
            continue;
        }
        let Some((inst_s, rest)) = rest.trim_start().split_once(char::is_whitespace) else {
            continue;
        };
        let Some((bytes_s, rest)) = rest.trim_start().split_once(char::is_whitespace) else {
            continue;
        };
        let (Ok(instances), Ok(bytes)) = (inst_s.parse::<u64>(), bytes_s.parse::<u64>()) else {
            continue;
        };
        let after_bytes = rest.trim();
        let (name, module) = match after_bytes.strip_suffix(')').and_then(|s| s.rsplit_once(" (")) {
            Some((n, m)) => (n.trim().to_string(), Some(m.to_string())),
            None => (after_bytes.to_string(), None),
        };
        if name.is_empty() {
            continue;
        }
        classes.push(ClassEntry {
            name,
            module,
            instances,
            bytes,
        });
    }
    if classes.is_empty() {
        let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("(empty)");
        return Err(HistogramError::NoTable(first.chars().take(200).collect()));
    }
    classes.sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.name.cmp(&b.name)));
    let (total_instances, total_bytes) = total.unwrap_or_else(|| {
        (
            classes.iter().map(|c| c.instances).sum(),
            classes.iter().map(|c| c.bytes).sum(),
        )
    });
    Ok(Histogram {
        taken_unix_ms,
        live,
        total_instances,
        total_bytes,
        classes,
    })
}

/// One class's change between two histograms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassGrowth {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub module: Option<String>,
    pub growth_bytes: i64,
    pub growth_instances: i64,
    pub bytes: u64,
    pub instances: u64,
}

/// What grew between two histograms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistogramDiff {
    pub secs: f64,
    pub growth_bytes: i64,
    /// Largest growth first; classes that did not grow are left out.
    pub classes: Vec<ClassGrowth>,
    /// The first class by growth that is the program's own: not an array, not a class of the
    /// JDK (`java.*`, `javax.*`, `jdk.*`, `sun.*`, or a `java.*`/`jdk.*` module) — byte arrays and
    /// strings usually grow *because* an application object holding them leaks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suspect: Option<String>,
}

fn is_platform(c: &ClassGrowth) -> bool {
    c.name.starts_with('[')
        || ["java.", "javax.", "jdk.", "sun.", "com.sun."]
            .iter()
            .any(|p| c.name.starts_with(p))
        || c.module
            .as_deref()
            .is_some_and(|m| m.starts_with("java.") || m.starts_with("jdk."))
}

pub fn diff(before: &Histogram, after: &Histogram) -> HistogramDiff {
    let old: HashMap<&str, &ClassEntry> = before.classes.iter().map(|c| (c.name.as_str(), c)).collect();
    let mut classes: Vec<ClassGrowth> = after
        .classes
        .iter()
        .map(|c| {
            let (b, i) = old.get(c.name.as_str()).map_or((0, 0), |o| (o.bytes, o.instances));
            ClassGrowth {
                name: c.name.clone(),
                module: c.module.clone(),
                growth_bytes: c.bytes as i64 - b as i64,
                growth_instances: c.instances as i64 - i as i64,
                bytes: c.bytes,
                instances: c.instances,
            }
        })
        .filter(|g| g.growth_bytes > 0)
        .collect();
    classes.sort_by(|a, b| b.growth_bytes.cmp(&a.growth_bytes).then_with(|| a.name.cmp(&b.name)));
    let suspect = classes.iter().find(|c| !is_platform(c)).map(|c| c.name.clone());
    HistogramDiff {
        secs: after.taken_unix_ms.saturating_sub(before.taken_unix_ms) as f64 / 1000.0,
        growth_bytes: after.total_bytes as i64 - before.total_bytes as i64,
        classes,
        suspect,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const JDK17: &str = " num     #instances         #bytes  class name (module)
-------------------------------------------------------
   1:         20928         990560  [B (java.base@17.0.15)
   2:         14043         337032  java.lang.String (java.base@17.0.15)
   3:          6800         217600  LeakedOrderDto
   4:          1458         179592  java.lang.Class (java.base@17.0.15)
   5:             1             16  jdk.internal.loader.ClassLoaders$AppClassLoader$1 (java.base@17.0.15)
   6:             3             96  java.lang.invoke.LambdaForm$MH/0x0000000800c04800 (java.base@17.0.15)
Total         43233        1724896
";

    #[test]
    fn parses_jdk17_output() {
        let h = parse(JDK17, true, 1000).unwrap();
        assert_eq!((h.total_instances, h.total_bytes, h.classes.len()), (43233, 1724896, 6));
        assert_eq!(h.classes[0].name, "[B");
        assert_eq!(h.classes[0].module.as_deref(), Some("java.base@17.0.15"));
        let dto = h.classes.iter().find(|c| c.name == "LeakedOrderDto").unwrap();
        assert_eq!((dto.instances, dto.bytes, dto.module.as_deref()), (6800, 217600, None));
        assert!(
            h.classes
                .iter()
                .any(|c| c.name == "java.lang.invoke.LambdaForm$MH/0x0000000800c04800")
        );
        // JDK 8 had no module column.
        let h8 = parse("   1:   5 80  java.lang.Object\nTotal 5 80\n", false, 0).unwrap();
        assert_eq!(h8.classes[0].name, "java.lang.Object");
        assert!(h8.classes[0].module.is_none());
    }

    #[test]
    fn an_error_answer_is_not_a_table() {
        assert_eq!(
            parse("Invalid argument to inspectheap operation: -x\n", true, 0),
            Err(HistogramError::NoTable(
                "Invalid argument to inspectheap operation: -x".into()
            ))
        );
        assert!(parse("", true, 0).is_err());
    }

    #[test]
    fn diff_ranks_by_growth_and_names_the_programs_class() {
        let a = parse(JDK17, true, 1000).unwrap();
        let b_text = JDK17
            .replace("20928         990560", "90928        5990560")
            .replace("6800         217600", "76800        2457600");
        let b = parse(&b_text, true, 31_000).unwrap();
        let d = diff(&a, &b);
        assert_eq!(d.secs, 30.0);
        assert_eq!(d.classes.len(), 2, "{d:?}");
        assert_eq!(
            (d.classes[0].name.as_str(), d.classes[0].growth_bytes),
            ("[B", 5_000_000)
        );
        assert_eq!(d.classes[1].growth_instances, 70000);
        assert_eq!(d.suspect.as_deref(), Some("LeakedOrderDto"));
    }
}
