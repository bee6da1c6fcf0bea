//! Pure-logic readers and parsers for the host facilities leaktrace looks at:
//! `/proc/<pid>` ([`proc`]), host-wide memory ([`host`]), the kernel's BTF ([`btf`]), memory
//! cgroups v1/v2 ([`cgroup`]), container attribution
//! from cgroup paths ([`container`]) and kernel OOM messages from `/dev/kmsg`
//! ([`kmsg`]).
//!
//! Every parser takes text (or any reader), never panics, and reports what is wrong with the
//! shared [`ParseError`] or an `io::Error` of kind `InvalidData` naming the file. Readers are
//! thin wrappers that read a file and call a parser. Where procfs-core has the parser, it is used.

pub mod bpfmap;
pub mod btf;
pub mod cgroup;
pub mod container;
pub mod fds;
pub mod host;
pub mod hostmem;
pub mod kmem;
pub mod kmsg;
pub mod memcg_levels;
pub mod proc;

use std::io;

/// Longest excerpt of offending input kept in a [`ParseError`].
const EXCERPT_MAX: usize = 120;

/// Why a piece of kernel-provided text could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// A required field/key/line was not present at all.
    #[error("{source_name}: missing required field `{field}`")]
    MissingField {
        source_name: &'static str,
        field: &'static str,
    },
    /// A field was present but its value could not be understood.
    #[error("{source_name}: invalid value for `{field}`: {value:?}")]
    InvalidValue {
        source_name: &'static str,
        field: String,
        value: String,
    },
    /// A line (or record) did not have the expected shape.
    #[error("{source_name}: malformed input: {excerpt:?}")]
    Malformed { source_name: &'static str, excerpt: String },
}

impl ParseError {
    pub(crate) fn missing(source_name: &'static str, field: &'static str) -> Self {
        ParseError::MissingField { source_name, field }
    }

    pub(crate) fn invalid(source_name: &'static str, field: &str, value: &str) -> Self {
        ParseError::InvalidValue {
            source_name,
            field: excerpt(field),
            value: excerpt(value),
        }
    }

    pub(crate) fn malformed(source_name: &'static str, input: &str) -> Self {
        ParseError::Malformed {
            source_name,
            excerpt: excerpt(input),
        }
    }
}

impl From<ParseError> for io::Error {
    fn from(e: ParseError) -> Self {
        io::Error::new(io::ErrorKind::InvalidData, e)
    }
}

/// Truncate `s` to at most [`EXCERPT_MAX`] bytes on a char boundary.
fn excerpt(s: &str) -> String {
    if s.len() <= EXCERPT_MAX {
        return s.to_string();
    }
    let mut end = EXCERPT_MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpt_truncates_on_char_boundary() {
        let s = "é".repeat(100);
        let e = excerpt(&s);
        assert!(e.len() <= EXCERPT_MAX + '…'.len_utf8());
        assert!(e.ends_with('…'));
    }

    #[test]
    fn parse_error_messages_name_the_problem() {
        let e = ParseError::missing("/proc/<pid>/status", "Tgid");
        assert_eq!(e.to_string(), "/proc/<pid>/status: missing required field `Tgid`");
        let e = ParseError::invalid("/proc/meminfo", "MemTotal", "abc kB");
        assert!(e.to_string().contains("MemTotal"));
        let io: io::Error = e.into();
        assert_eq!(io.kind(), io::ErrorKind::InvalidData);
    }
}
