#![no_std]
// This file exists so the agent can have a build-dependency on this crate (cargo then rebuilds the
// agent when the probes change). The programs are in main.rs and probes/.
