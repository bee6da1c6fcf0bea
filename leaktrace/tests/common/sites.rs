//! `leaktrace sites --json` as the tests read it.
use serde_json::Value;

use super::run_agent;

/// `leaktrace sites --json ARGS`: the table object.
pub fn sites(args: &[&str]) -> Value {
    let mut all = vec!["sites", "--json"];
    all.extend_from_slice(args);
    let (code, out, err) = run_agent(&all);
    assert_eq!(code, 0, "leaktrace {all:?}: {err}");
    let v: Value =
        serde_json::from_str(out.lines().last().unwrap_or_else(|| panic!("no output; stderr {err}"))).unwrap();
    assert_eq!(v["event"], "sites", "{v}");
    v
}

pub fn frames(site: &Value) -> Vec<String> {
    site["frames"]
        .as_array()
        .unwrap_or_else(|| panic!("no frames: {site}"))
        .iter()
        .map(|f| f.as_str().unwrap().to_string())
        .collect()
}

/// The first (largest attributable) site of a `sites` table.
pub fn top(v: &Value) -> &Value {
    let s = &v["sites"][0];
    assert!(s.is_object(), "no sites at all: {v}");
    assert_eq!(s["unattributed"], false, "only unattributed sites: {v}");
    s
}
