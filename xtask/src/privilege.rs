//! Root handling: the agent and the privileged tests load BPF programs, which needs root.
//! Builds always run as the invoking user; only the final program runs through `sudo`.

use std::ffi::OsStr;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::setup::Env;
use crate::util;

/// Effective uid of this process, from `/proc/self/status` (`Uid: real effective saved fs`),
/// falling back to `id -u`.
pub fn effective_uid() -> Result<u32> {
    if let Ok(status) = std::fs::read_to_string("/proc/self/status")
        && let Some(euid) = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().nth(1))
            .and_then(|euid| euid.parse().ok())
    {
        return Ok(euid);
    }
    let out = util::stdout_of(Command::new("id").arg("-u"))?;
    out.trim()
        .parse()
        .with_context(|| format!("cannot parse `id -u` output `{}`", out.trim()))
}

pub fn is_root() -> Result<bool> {
    Ok(effective_uid()? == 0)
}

/// The argv prefix that runs a program as root with the project's environment:
/// empty when we are root already, else `sudo -E env PATH=... LD_LIBRARY_PATH=...`
/// (sudo resets PATH and drops LD_LIBRARY_PATH even with `-E`, hence `env`).
pub fn root_prefix(env: &Env) -> Result<Vec<std::ffi::OsString>> {
    if is_root()? {
        return Ok(Vec::new());
    }
    let Some(sudo) = util::find_in_path("sudo") else {
        bail!(
            "this step needs root (loading BPF programs), you are uid {} and `sudo` is not \
             installed: run the command as root, or install sudo",
            effective_uid()?
        );
    };
    let mut path_kv = std::ffi::OsString::from("PATH=");
    path_kv.push(&env.path);
    let mut ld_kv = std::ffi::OsString::from("LD_LIBRARY_PATH=");
    ld_kv.push(&env.ld_library_path);
    Ok(vec![sudo.into_os_string(), "-E".into(), "env".into(), path_kv, ld_kv])
}

/// A command that runs `program` as root with the project's environment.
pub fn command_as_root(program: impl AsRef<OsStr>, env: &Env) -> Result<Command> {
    let prefix = root_prefix(env)?;
    let mut cmd = match prefix.split_first() {
        None => Command::new(program),
        Some((sudo, rest)) => {
            println!("xtask: not root, running it through sudo");
            let mut cmd = Command::new(sudo);
            cmd.args(rest).arg(program);
            cmd
        }
    };
    env.apply(&mut cmd);
    Ok(cmd)
}
