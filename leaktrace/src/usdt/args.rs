//! USDT argument specs (the third string of a `.note.stapsdt` entry), as GNU `as` operands with
//! a size prefix: `-4@%eax` (a signed 4-byte register), `8@-16(%rbp)` (8 bytes of memory at
//! %rbp − 16), `8@%rdx`, `-4@$5` (a constant), `1@%dil`. Turned into the [`UsdtArgSpec`] the
//! kernel program reads with (x86-64 `pt_regs` offsets).
use leaktrace_common::usdt::{USDT_ARG_CONST, USDT_ARG_REG, USDT_ARG_REG_DEREF, UsdtArgSpec};

/// Where an argument's value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loc {
    Const(i64),
    /// A register (its `pt_regs` offset).
    Reg(u16),
    /// Memory at register + offset.
    Deref {
        reg: u16,
        off: i64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arg {
    /// 1, 2, 4 or 8 bytes.
    pub size: u8,
    pub signed: bool,
    pub loc: Loc,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArgError {
    #[error("bad size in `{0}` (1, 2, 4 or 8 bytes, optionally negative for signed)")]
    Size(String),
    #[error("unknown register in `{0}`")]
    Register(String),
    #[error("unsupported operand `{0}` (only registers, constants and offset(register) are read)")]
    Unsupported(String),
}

/// Offsets in the x86-64 kernel `struct pt_regs` (arch/x86/include/asm/ptrace.h).
mod regs {
    pub const R15: u16 = 0;
    pub const R14: u16 = 8;
    pub const R13: u16 = 16;
    pub const R12: u16 = 24;
    pub const RBP: u16 = 32;
    pub const RBX: u16 = 40;
    pub const R11: u16 = 48;
    pub const R10: u16 = 56;
    pub const R9: u16 = 64;
    pub const R8: u16 = 72;
    pub const RAX: u16 = 80;
    pub const RCX: u16 = 88;
    pub const RDX: u16 = 96;
    pub const RSI: u16 = 104;
    pub const RDI: u16 = 112;
    pub const RIP: u16 = 128;
    pub const RSP: u16 = 152;
}

/// The `pt_regs` offset and width (bytes) of a register name without `%`, any sub-register.
/// The high-byte registers (%ah, ...) are not supported: their value is not at the low end.
fn register(name: &str) -> Option<(u16, u8)> {
    use regs::*;
    let legacy: [(&[&str; 4], u16); 8] = [
        (&["rax", "eax", "ax", "al"], RAX),
        (&["rbx", "ebx", "bx", "bl"], RBX),
        (&["rcx", "ecx", "cx", "cl"], RCX),
        (&["rdx", "edx", "dx", "dl"], RDX),
        (&["rsi", "esi", "si", "sil"], RSI),
        (&["rdi", "edi", "di", "dil"], RDI),
        (&["rbp", "ebp", "bp", "bpl"], RBP),
        (&["rsp", "esp", "sp", "spl"], RSP),
    ];
    for (names, off) in legacy {
        if let Some(i) = names.iter().position(|n| *n == name) {
            return Some((off, [8, 4, 2, 1][i]));
        }
    }
    if name == "rip" {
        return Some((RIP, 8));
    }
    let n = name.strip_prefix('r')?;
    let digits = n.bytes().take_while(u8::is_ascii_digit).count();
    let (num, suffix) = n.split_at(digits);
    let off = match num.parse::<u8>().ok()? {
        8 => R8,
        9 => R9,
        10 => R10,
        11 => R11,
        12 => R12,
        13 => R13,
        14 => R14,
        15 => R15,
        _ => return None,
    };
    let width = match suffix {
        "" => 8,
        "d" => 4,
        "w" => 2,
        "b" => 1,
        _ => return None,
    };
    Some((off, width))
}

fn reg_operand(s: &str, whole: &str) -> Result<(u16, u8), ArgError> {
    let name = s.strip_prefix('%').ok_or_else(|| ArgError::Unsupported(whole.into()))?;
    register(name).ok_or_else(|| ArgError::Register(whole.into()))
}

fn int(s: &str) -> Option<i64> {
    let (neg, digits) = match s.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let v = match digits.strip_prefix("0x").or_else(|| digits.strip_prefix("0X")) {
        Some(h) => i64::from_str_radix(h, 16)
            .ok()
            .or_else(|| u64::from_str_radix(h, 16).ok().map(|u| u as i64))?,
        None => digits
            .parse::<i64>()
            .ok()
            .or_else(|| digits.parse::<u64>().ok().map(|u| u as i64))?,
    };
    Some(if neg { v.wrapping_neg() } else { v })
}

/// One argument, e.g. `-4@%eax`.
pub fn parse_arg(s: &str) -> Result<Arg, ArgError> {
    let (size_part, operand) = match s.split_once('@') {
        Some((a, b)) => (Some(a), b),
        None => (None, s),
    };
    let loc_and_width = if let Some(c) = operand.strip_prefix('$') {
        (Loc::Const(int(c).ok_or_else(|| ArgError::Unsupported(s.into()))?), 8)
    } else if operand.starts_with('%') {
        let (r, w) = reg_operand(operand, s)?;
        (Loc::Reg(r), w)
    } else if let Some(open) = operand.find('(') {
        let inner = operand[open + 1..]
            .strip_suffix(')')
            .ok_or_else(|| ArgError::Unsupported(s.into()))?;
        // `off(%base,%index,scale)` and `sym(%rip)` are not read: the first needs two registers,
        // the second the address the symbol was loaded at.
        if inner.contains(',') {
            return Err(ArgError::Unsupported(s.into()));
        }
        let (reg, _) = reg_operand(inner, s)?;
        if reg == regs::RIP {
            return Err(ArgError::Unsupported(s.into()));
        }
        let off_s = &operand[..open];
        let off = if off_s.is_empty() {
            0
        } else {
            int(off_s).ok_or_else(|| ArgError::Unsupported(s.into()))?
        };
        (Loc::Deref { reg, off }, 8)
    } else {
        return Err(ArgError::Unsupported(s.into()));
    };
    let (loc, width) = loc_and_width;
    let (size, signed) = match size_part {
        // Old notes without a size: the register's width, unsigned.
        None => (width, false),
        Some(p) => {
            let v: i32 = p.parse().map_err(|_| ArgError::Size(s.into()))?;
            let size = v.unsigned_abs();
            if ![1, 2, 4, 8].contains(&size) {
                return Err(ArgError::Size(s.into()));
            }
            (size as u8, v < 0)
        }
    };
    Ok(Arg { size, signed, loc })
}

/// Every argument of a note (space-separated); empty for a probe without arguments.
pub fn parse_args(s: &str) -> Result<Vec<Arg>, ArgError> {
    s.split_ascii_whitespace().map(parse_arg).collect()
}

impl Arg {
    /// The kernel's form of this argument.
    pub fn spec(&self) -> UsdtArgSpec {
        let (kind, reg_off, val_off) = match self.loc {
            Loc::Const(v) => (USDT_ARG_CONST, 0, v as u64),
            Loc::Reg(r) => (USDT_ARG_REG, r, 0),
            Loc::Deref { reg, off } => (USDT_ARG_REG_DEREF, reg, off as u64),
        };
        UsdtArgSpec {
            val_off,
            kind,
            signed: self.signed as u8,
            size: self.size,
            str_slot: 0,
            reg_off,
            _pad: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(size: u8, signed: bool, loc: Loc) -> Arg {
        Arg { size, signed, loc }
    }

    #[test]
    fn forms_seen_in_libjvm_and_python() {
        use regs::*;
        let cases = [
            ("-4@%eax", a(4, true, Loc::Reg(RAX))),
            ("8@%rdx", a(8, false, Loc::Reg(RDX))),
            ("8@-16(%rbp)", a(8, false, Loc::Deref { reg: RBP, off: -16 })),
            ("-4@112(%rsp)", a(4, true, Loc::Deref { reg: RSP, off: 112 })),
            ("8@152(%rdi)", a(8, false, Loc::Deref { reg: RDI, off: 152 })),
            ("1@%dil", a(1, false, Loc::Reg(RDI))),
            ("1@%cl", a(1, false, Loc::Reg(RCX))),
            ("-8@%r12", a(8, true, Loc::Reg(R12))),
            ("4@%r13d", a(4, false, Loc::Reg(R13))),
            ("2@%r15w", a(2, false, Loc::Reg(R15))),
            ("1@%r13b", a(1, false, Loc::Reg(R13))),
            ("-4@$5", a(4, true, Loc::Const(5))),
            ("-4@$-9", a(4, true, Loc::Const(-9))),
            ("8@$0x10", a(8, false, Loc::Const(16))),
            ("8@(%rax)", a(8, false, Loc::Deref { reg: RAX, off: 0 })),
            ("%r9", a(8, false, Loc::Reg(R9))),
            ("%esi", a(4, false, Loc::Reg(RSI))),
        ];
        for (s, want) in cases {
            assert_eq!(parse_arg(s), Ok(want), "{s}");
        }
    }

    #[test]
    fn refused_with_a_reason() {
        assert!(matches!(parse_arg("3@%eax"), Err(ArgError::Size(_))));
        assert!(matches!(parse_arg("x@%eax"), Err(ArgError::Size(_))));
        assert!(matches!(parse_arg("8@%xmm0"), Err(ArgError::Register(_))));
        assert!(matches!(parse_arg("1@%ah"), Err(ArgError::Register(_))));
        assert!(matches!(parse_arg("8@-8(%rax,%rdx,8)"), Err(ArgError::Unsupported(_))));
        assert!(matches!(parse_arg("8@foo(%rip)"), Err(ArgError::Unsupported(_))));
        assert!(matches!(parse_arg("8@$x"), Err(ArgError::Unsupported(_))));
        assert!(matches!(parse_arg("8@16(%rbp"), Err(ArgError::Unsupported(_))));
        assert!(matches!(parse_arg("8@"), Err(ArgError::Unsupported(_))));
    }

    #[test]
    fn lists_and_kernel_specs() {
        assert_eq!(parse_args("").unwrap(), vec![]);
        let v = parse_args("8@%rbp 8@%r12 -4@%eax").unwrap();
        assert_eq!(v.len(), 3);
        let s = v[2].spec();
        assert_eq!((s.kind, s.reg_off, s.size, s.signed), (USDT_ARG_REG, 80, 4, 1));
        let s = parse_arg("8@-16(%rbp)").unwrap().spec();
        assert_eq!((s.kind, s.reg_off, s.val_off as i64), (USDT_ARG_REG_DEREF, 32, -16));
        let s = parse_arg("-4@$-9").unwrap().spec();
        assert_eq!((s.kind, s.val_off as i64), (USDT_ARG_CONST, -9));
    }
}
