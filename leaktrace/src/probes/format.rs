//! Parser for tracepoint `format` files (`/sys/kernel/tracing/events/<cat>/<name>/format`).
use std::collections::HashMap;

use leaktrace_common::Field;

/// One `field:` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatField {
    pub name: String,
    pub c_type: String,
    pub offset: u16,
    pub size: u16,
    pub signed: bool,
    /// `__data_loc` string: a u32 whose low 16 bits are the string's offset in the record.
    pub data_loc: bool,
}

impl FormatField {
    pub fn to_field(&self) -> Field {
        Field {
            offset: self.offset,
            size: self.size.min(255) as u8,
            signed: self.signed as u8,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FormatError {
    #[error("line {line}: {what}")]
    Bad { line: usize, what: String },
    #[error("no fields found")]
    Empty,
}

/// All fields of a format file by name (common_* fields included).
pub fn parse(text: &str) -> Result<HashMap<String, FormatField>, FormatError> {
    let mut out = HashMap::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        let Some(rest) = line.strip_prefix("field:") else {
            continue;
        };
        let bad = |what: &str| FormatError::Bad {
            line: i + 1,
            what: what.to_string(),
        };
        let mut decl = None;
        let (mut offset, mut size, mut signed) = (None, None, None);
        for (n, part) in rest.split(';').enumerate() {
            let part = part.trim();
            if n == 0 {
                decl = Some(part);
            } else if let Some(v) = part.strip_prefix("offset:") {
                offset = Some(v.trim().parse::<u16>().map_err(|_| bad("offset is not a number"))?);
            } else if let Some(v) = part.strip_prefix("size:") {
                size = Some(v.trim().parse::<u16>().map_err(|_| bad("size is not a number"))?);
            } else if let Some(v) = part.strip_prefix("signed:") {
                signed = Some(v.trim() == "1");
            }
        }
        let decl = decl.filter(|d| !d.is_empty()).ok_or_else(|| bad("empty declaration"))?;
        let (offset, size) = (
            offset.ok_or_else(|| bad("no offset"))?,
            size.ok_or_else(|| bad("no size"))?,
        );
        // "unsigned long len", "char comm[16]", "__data_loc char[] filename"
        let last = decl.rsplit(' ').next().unwrap_or(decl);
        let name = last.split('[').next().unwrap_or(last).trim().to_string();
        if name.is_empty() {
            return Err(bad("no field name"));
        }
        let c_type = decl[..decl.len() - last.len()].trim().to_string();
        out.insert(
            name.clone(),
            FormatField {
                name,
                data_loc: c_type.contains("__data_loc"),
                c_type,
                offset,
                size,
                signed: signed.unwrap_or(false),
            },
        );
    }
    if out.is_empty() {
        return Err(FormatError::Empty);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MARK_VICTIM: &str = "name: mark_victim\nID: 480\nformat:\n\
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;\n\
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;\n\
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n\n\
\tfield:int pid;\toffset:8;\tsize:4;\tsigned:1;\n\
\tfield:__data_loc char[] comm;\toffset:12;\tsize:4;\tsigned:0;\n\
\tfield:unsigned long total_vm;\toffset:16;\tsize:8;\tsigned:0;\n\
\tfield:unsigned long anon_rss;\toffset:24;\tsize:8;\tsigned:0;\n\
\tfield:short oom_score_adj;\toffset:64;\tsize:2;\tsigned:1;\n\n\
print fmt: \"pid=%d comm=%s\", REC->pid, __get_str(comm)\n";

    #[test]
    fn parses_mark_victim() {
        let f = parse(MARK_VICTIM).unwrap();
        assert_eq!(
            f["pid"],
            FormatField {
                name: "pid".into(),
                c_type: "int".into(),
                offset: 8,
                size: 4,
                signed: true,
                data_loc: false
            }
        );
        assert!(f["comm"].data_loc);
        assert_eq!(f["comm"].offset, 12);
        assert_eq!(f["total_vm"].c_type, "unsigned long");
        assert_eq!(
            f["oom_score_adj"].to_field(),
            Field {
                offset: 64,
                size: 2,
                signed: 1
            }
        );
        assert!(f.contains_key("common_pid"));
    }

    #[test]
    fn old_mark_victim_has_only_pid() {
        let old = "format:\n\tfield:int pid;\toffset:8;\tsize:4;\tsigned:1;\n";
        let f = parse(old).unwrap();
        assert_eq!(f.len(), 1);
        assert!(!f.contains_key("anon_rss"));
    }

    #[test]
    fn arrays_and_errors() {
        let f = parse("\tfield:char comm[16];\toffset:8;\tsize:16;\tsigned:0;").unwrap();
        assert_eq!(f["comm"].size, 16);
        assert!(parse("nothing here").is_err());
        assert!(parse("field:int x;\toffset:zz;\tsize:4;").is_err());
        assert!(parse("field:int x;\tsize:4;").is_err());
        assert!(parse("field:;offset:1;size:1;").is_err());
    }

    #[test]
    fn never_panics_on_prefixes_and_garbage() {
        for i in 0..MARK_VICTIM.len() {
            if MARK_VICTIM.is_char_boundary(i) {
                let _ = parse(&MARK_VICTIM[..i]);
            }
        }
        for s in [
            "field:",
            "field:;;;;",
            "field: [;offset:1;size:1",
            "\u{0}\u{ff}field:x[[[;offset:99999999;size:-1;",
        ] {
            let _ = parse(s);
        }
    }
}
