//! A minimal reader of the kernel's BTF (`/sys/kernel/btf/vmlinux`): enough to find where a struct
//! member lives, how big a type is, an enumerator's value and a function prototype's parameters.
//!
//! Format: the kernel's `Documentation/bpf/btf.rst` (a header, a type section of variable-length
//! records numbered from 1, a string section). Only the running kernel's own (native-endian) BTF
//! is read. Why not a crate: aya parses BTF but keeps its type table private, and the crates that
//! expose one are LGPL (this project is MIT/Apache) or much larger than the ~250 lines needed.
//! Nothing here panics on bad input: every lookup is bounds-checked and reports [`BtfError`].
use std::path::Path;

pub const VMLINUX: &str = "/sys/kernel/btf/vmlinux";

const MAGIC: u16 = 0xeb9f;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BtfError {
    #[error("{0}: cannot read it: {1}")]
    Read(String, String),
    #[error("not BTF: {0}")]
    Format(String),
    #[error("{0}")]
    NotFound(String),
}

/// BTF kinds (`BTF_KIND_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Int,
    Ptr,
    Array,
    Struct,
    Union,
    Enum,
    Fwd,
    Typedef,
    Volatile,
    Const,
    Restrict,
    Func,
    FuncProto,
    Var,
    Datasec,
    Float,
    DeclTag,
    TypeTag,
    Enum64,
    Void,
}

impl Kind {
    fn of(k: u32) -> Option<Kind> {
        Some(match k {
            1 => Kind::Int,
            2 => Kind::Ptr,
            3 => Kind::Array,
            4 => Kind::Struct,
            5 => Kind::Union,
            6 => Kind::Enum,
            7 => Kind::Fwd,
            8 => Kind::Typedef,
            9 => Kind::Volatile,
            10 => Kind::Const,
            11 => Kind::Restrict,
            12 => Kind::Func,
            13 => Kind::FuncProto,
            14 => Kind::Var,
            15 => Kind::Datasec,
            16 => Kind::Float,
            17 => Kind::DeclTag,
            18 => Kind::TypeTag,
            19 => Kind::Enum64,
            _ => return None,
        })
    }

    /// Bytes that follow the 12-byte common record, for `vlen` entries.
    fn extra(self, vlen: usize) -> usize {
        match self {
            Kind::Int | Kind::Var | Kind::DeclTag => 4,
            Kind::Array => 12,
            Kind::Struct | Kind::Union | Kind::Datasec | Kind::Enum64 => 12 * vlen,
            Kind::Enum | Kind::FuncProto => 8 * vlen,
            _ => 0,
        }
    }
}

/// One type record: where it is and its common fields.
#[derive(Debug, Clone, Copy)]
struct Rec {
    at: usize,
    name_off: u32,
    kind: Kind,
    vlen: usize,
    kind_flag: bool,
    /// `size` or `type`, depending on the kind.
    size_type: u32,
}

/// A struct or union member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub name: String,
    pub type_id: u32,
    pub bit_offset: u32,
    /// Non-zero for a bitfield.
    pub bitfield_size: u32,
}

pub struct Btf {
    data: Vec<u8>,
    /// Start of each type record; type id `i` is `recs[i - 1]` (id 0 is void).
    recs: Vec<Rec>,
    str_start: usize,
    str_end: usize,
}

impl std::fmt::Debug for Btf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Btf({} types)", self.recs.len())
    }
}

fn u32_at(d: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(d.get(at..at.checked_add(4)?)?.try_into().ok()?))
}

impl Btf {
    pub fn read(path: &Path) -> Result<Btf, BtfError> {
        let data = std::fs::read(path).map_err(|e| BtfError::Read(path.display().to_string(), e.to_string()))?;
        Btf::parse(data)
    }

    pub fn parse(data: Vec<u8>) -> Result<Btf, BtfError> {
        let bad = |what: &str| BtfError::Format(what.to_string());
        let magic = data.get(0..2).map(|b| u16::from_ne_bytes([b[0], b[1]]));
        if magic != Some(MAGIC) {
            return Err(bad(if magic == Some(MAGIC.swap_bytes()) {
                "BTF of the other byte order"
            } else {
                "bad magic"
            }));
        }
        let field = |i: usize| u32_at(&data, 8 + 4 * i).ok_or_else(|| bad("short header"));
        let hdr_len = u32_at(&data, 4).ok_or_else(|| bad("short header"))? as usize;
        let (type_off, type_len, str_off, str_len) = (field(0)?, field(1)?, field(2)?, field(3)?);
        let span = |off: u32, len: u32| -> Result<(usize, usize), BtfError> {
            let s = hdr_len.checked_add(off as usize).ok_or_else(|| bad("section offset"))?;
            let e = s.checked_add(len as usize).ok_or_else(|| bad("section length"))?;
            if e > data.len() {
                return Err(bad("section past the end of the data"));
            }
            Ok((s, e))
        };
        let (ts, te) = span(type_off, type_len)?;
        let (ss, se) = span(str_off, str_len)?;
        let mut recs = Vec::new();
        let mut at = ts;
        while at < te {
            let (Some(name_off), Some(info), Some(size_type)) =
                (u32_at(&data, at), u32_at(&data, at + 4), u32_at(&data, at + 8))
            else {
                return Err(bad("truncated type record"));
            };
            let kind = Kind::of((info >> 24) & 0x1f).ok_or_else(|| {
                bad(&format!(
                    "unknown kind {} (type {})",
                    (info >> 24) & 0x1f,
                    recs.len() + 1
                ))
            })?;
            let vlen = (info & 0xffff) as usize;
            recs.push(Rec {
                at,
                name_off,
                kind,
                vlen,
                kind_flag: info >> 31 != 0,
                size_type,
            });
            at += 12 + kind.extra(vlen);
        }
        if at != te {
            return Err(bad("type section ends inside a record"));
        }
        Ok(Btf {
            data,
            recs,
            str_start: ss,
            str_end: se,
        })
    }

    fn rec(&self, id: u32) -> Option<&Rec> {
        self.recs.get((id as usize).checked_sub(1)?)
    }

    fn str_at(&self, off: u32) -> &str {
        let s = self.str_start.saturating_add(off as usize);
        let Some(tail) = self.data.get(s..self.str_end) else {
            return "";
        };
        let end = tail.iter().position(|&b| b == 0).unwrap_or(tail.len());
        std::str::from_utf8(&tail[..end]).unwrap_or("")
    }

    /// `(word0, word1, word2)` of entry `i` of a record's trailing array of `width`-byte entries.
    fn entry(&self, r: &Rec, width: usize, i: usize) -> Option<[u32; 3]> {
        let at = r.at + 12 + width * i;
        Some([
            u32_at(&self.data, at)?,
            u32_at(&self.data, at + 4)?,
            if width > 8 { u32_at(&self.data, at + 8)? } else { 0 },
        ])
    }

    pub fn kind(&self, id: u32) -> Kind {
        self.rec(id).map_or(Kind::Void, |r| r.kind)
    }

    pub fn name(&self, id: u32) -> &str {
        self.rec(id).map_or("", |r| self.str_at(r.name_off))
    }

    /// The first type called `name` of kind `kind` (for structs: a definition, not a forward
    /// declaration).
    pub fn find(&self, name: &str, kind: Kind) -> Option<u32> {
        (1..=self.recs.len() as u32).find(|&id| {
            let r = &self.recs[id as usize - 1];
            r.kind == kind && self.str_at(r.name_off) == name
        })
    }

    /// Follow typedefs and qualifiers (const, volatile, restrict, type tags) to the real type.
    pub fn strip(&self, mut id: u32) -> u32 {
        for _ in 0..32 {
            match self.rec(id) {
                Some(r)
                    if matches!(
                        r.kind,
                        Kind::Typedef | Kind::Volatile | Kind::Const | Kind::Restrict | Kind::TypeTag
                    ) =>
                {
                    id = r.size_type
                }
                _ => break,
            }
        }
        id
    }

    /// The type a pointer, typedef or qualifier refers to.
    pub fn target(&self, id: u32) -> Option<u32> {
        let r = self.rec(id)?;
        matches!(
            r.kind,
            Kind::Ptr | Kind::Typedef | Kind::Volatile | Kind::Const | Kind::Restrict | Kind::TypeTag
        )
        .then_some(r.size_type)
    }

    /// Size in bytes (None for void, functions and forward declarations).
    pub fn size(&self, id: u32) -> Option<u64> {
        let id = self.strip(id);
        let r = self.rec(id)?;
        match r.kind {
            Kind::Int | Kind::Struct | Kind::Union | Kind::Enum | Kind::Enum64 | Kind::Float | Kind::Datasec => {
                Some(u64::from(r.size_type))
            }
            Kind::Ptr => Some(8),
            Kind::Array => {
                let (elem, n) = self.array(id)?;
                self.size(elem)?.checked_mul(u64::from(n))
            }
            _ => None,
        }
    }

    /// An array's element type and length.
    pub fn array(&self, id: u32) -> Option<(u32, u32)> {
        let r = self.rec(self.strip(id))?;
        if r.kind != Kind::Array {
            return None;
        }
        let [elem, _index, n] = self.entry(r, 12, 0)?;
        Some((elem, n))
    }

    /// The members of a struct or union, in order.
    pub fn members(&self, id: u32) -> Vec<Member> {
        let Some(r) = self
            .rec(self.strip(id))
            .filter(|r| matches!(r.kind, Kind::Struct | Kind::Union))
        else {
            return Vec::new();
        };
        (0..r.vlen)
            .filter_map(|i| {
                let [name_off, type_id, off] = self.entry(r, 12, i)?;
                let (bit_offset, bitfield_size) = if r.kind_flag {
                    (off & 0x00ff_ffff, off >> 24)
                } else {
                    (off, 0)
                };
                Some(Member {
                    name: self.str_at(name_off).to_string(),
                    type_id,
                    bit_offset,
                    bitfield_size,
                })
            })
            .collect()
    }

    /// Byte offset and type of member `name` of struct/union `id`, looking inside anonymous
    /// struct/union members the way C does (`mm_struct` keeps its fields in one).
    pub fn member(&self, id: u32, name: &str) -> Option<(u64, u32)> {
        self.member_in(id, name, 0)
    }

    fn member_in(&self, id: u32, name: &str, depth: u32) -> Option<(u64, u32)> {
        if depth > 8 {
            return None;
        }
        let ms = self.members(id);
        if let Some(m) = ms.iter().find(|m| m.name == name && m.bitfield_size == 0) {
            return (m.bit_offset % 8 == 0).then(|| (u64::from(m.bit_offset / 8), m.type_id));
        }
        ms.iter().filter(|m| m.name.is_empty()).find_map(|m| {
            let (off, t) = self.member_in(m.type_id, name, depth + 1)?;
            Some((off + u64::from(m.bit_offset / 8), t))
        })
    }

    /// Member offset by struct name, as "struct.member" for messages.
    pub fn offset_of(&self, struct_name: &str, member: &str) -> Result<(u64, u32), BtfError> {
        let s = self
            .find(struct_name, Kind::Struct)
            .ok_or_else(|| BtfError::NotFound(format!("no struct {struct_name} in BTF")))?;
        self.member(s, member)
            .ok_or_else(|| BtfError::NotFound(format!("no member {struct_name}.{member} in BTF")))
    }

    /// The value of enumerator `name` in any enum (named or anonymous).
    pub fn enumerator(&self, name: &str) -> Option<i64> {
        self.recs.iter().find_map(|r| match r.kind {
            Kind::Enum => (0..r.vlen).find_map(|i| {
                let [n, v, _] = self.entry(r, 8, i)?;
                let v = if r.kind_flag { i64::from(v as i32) } else { i64::from(v) };
                (self.str_at(n) == name).then_some(v)
            }),
            Kind::Enum64 => (0..r.vlen).find_map(|i| {
                let [n, lo, hi] = self.entry(r, 12, i)?;
                (self.str_at(n) == name).then_some(((u64::from(hi) << 32) | u64::from(lo)) as i64)
            }),
            _ => None,
        })
    }

    /// A function prototype's parameter types (through typedefs and a pointer to it, as in
    /// `typedef void (*btf_trace_x)(void *, ...)`).
    pub fn params(&self, id: u32) -> Option<Vec<u32>> {
        let mut id = self.strip(id);
        if self.kind(id) == Kind::Ptr {
            id = self.strip(self.target(id)?);
        }
        let r = self.rec(id).filter(|r| r.kind == Kind::FuncProto)?;
        (0..r.vlen).map(|i| self.entry(r, 8, i).map(|[_, t, _]| t)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny BTF blob built by hand: `int`, `struct s { int a; struct { int b; }; int c[3]; }`,
    /// `enum { X = 7 }`, `typedef void (*fp)(int, struct s *)`.
    fn blob() -> Vec<u8> {
        let strings = b"\0int\0s\0a\0b\0c\0X\0fp\0".to_vec();
        let s = |name: &str| -> u32 {
            let mut at = 0;
            for part in strings.split(|&b| b == 0) {
                if part == name.as_bytes() {
                    return at;
                }
                at += part.len() as u32 + 1;
            }
            panic!("{name}")
        };
        let mut t: Vec<u32> = Vec::new();
        let info = |kind: u32, vlen: u32, flag: bool| (u32::from(flag) << 31) | (kind << 24) | vlen;
        // 1: int (4 bytes, 32 bits)
        t.extend([s("int"), info(1, 0, false), 4, 32]);
        // 2: anonymous struct { int b; } size 4
        t.extend([0, info(4, 1, false), 4, s("b"), 1, 0]);
        // 3: int[3]
        t.extend([0, info(3, 0, false), 0, 1, 1, 3]);
        // 4: struct s { int a @0; anon @32; int c[3] @64 } size 20
        t.extend([s("s"), info(4, 3, false), 20, s("a"), 1, 0, 0, 2, 32, s("c"), 3, 64]);
        // 5: enum { X = 7 }
        t.extend([0, info(6, 1, false), 4, s("X"), 7]);
        // 6: ptr to 4
        t.extend([0, info(2, 0, false), 4]);
        // 7: func_proto void (int, struct s *)
        t.extend([0, info(13, 2, false), 0, 0, 1, 0, 6]);
        // 8: ptr to 7
        t.extend([0, info(2, 0, false), 7]);
        // 9: typedef fp -> 8
        t.extend([s("fp"), info(8, 0, false), 8]);
        let types: Vec<u8> = t.iter().flat_map(|w| w.to_ne_bytes()).collect();
        let mut out = Vec::new();
        out.extend(MAGIC.to_ne_bytes());
        out.extend([1u8, 0]);
        for w in [24u32, 0, types.len() as u32, types.len() as u32, strings.len() as u32] {
            out.extend(w.to_ne_bytes());
        }
        out.extend(types);
        out.extend(strings);
        out
    }

    #[test]
    fn reads_members_enums_and_prototypes_of_a_hand_made_blob() {
        let b = Btf::parse(blob()).unwrap();
        assert_eq!(b.recs.len(), 9);
        let s = b.find("s", Kind::Struct).unwrap();
        assert_eq!(b.size(s), Some(20));
        assert_eq!(b.member(s, "a"), Some((0, 1)));
        assert_eq!(b.member(s, "b"), Some((4, 1)), "found inside the anonymous struct");
        assert_eq!(b.member(s, "c"), Some((8, 3)));
        assert_eq!(b.array(3), Some((1, 3)));
        assert_eq!(b.size(3), Some(12));
        assert_eq!(b.member(s, "nope"), None);
        assert_eq!(b.enumerator("X"), Some(7));
        assert_eq!(b.enumerator("Y"), None);
        let fp = b.find("fp", Kind::Typedef).unwrap();
        assert_eq!(b.params(fp), Some(vec![1, 6]));
        assert_eq!(b.target(6), Some(4));
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        assert!(matches!(Btf::parse(Vec::new()), Err(BtfError::Format(_))));
        assert!(matches!(Btf::parse(vec![0x9f, 0xeb]), Err(BtfError::Format(_))));
        let mut swapped = blob();
        swapped.swap(0, 1);
        assert!(Btf::parse(swapped).unwrap_err().to_string().contains("byte order"));
        let full = blob();
        for cut in [5, 20, 30, full.len() - 30, full.len() - 1] {
            let _ = Btf::parse(full[..cut].to_vec()); // must not panic
        }
        let mut bad_kind = blob();
        bad_kind[24 + 4 + 3] = 0x1f; // kind 31 of the first type
        assert!(Btf::parse(bad_kind).unwrap_err().to_string().contains("unknown kind"));
        assert!(Btf::read(Path::new("/nonexistent/btf")).is_err());
    }

    /// The running kernel's own BTF (skipped where the kernel has none).
    #[test]
    fn reads_the_running_kernels_btf() {
        let Ok(b) = Btf::read(Path::new(VMLINUX)) else {
            eprintln!("SKIP: no {VMLINUX}");
            return;
        };
        assert!(b.recs.len() > 10_000, "{} types", b.recs.len());
        let (mm_off, mm_ty) = b.offset_of("task_struct", "mm").unwrap();
        assert!(mm_off > 0 && mm_off < 16384, "task_struct.mm at {mm_off}");
        assert_eq!(b.kind(b.strip(mm_ty)), Kind::Ptr);
        assert_eq!(b.name(b.strip(b.target(b.strip(mm_ty)).unwrap())), "mm_struct");
        assert_eq!(b.enumerator("MM_FILEPAGES"), Some(0));
        assert_eq!(b.enumerator("MM_ANONPAGES"), Some(1));
        let list = b.find("list_head", Kind::Struct).unwrap();
        assert_eq!(b.size(list), Some(16));
        assert_eq!(b.member(list, "prev").map(|m| m.0), Some(8));
    }
}
