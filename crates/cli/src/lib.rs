//! The `redial` command line, as a library: argument parsing and the commands' pure logic.
//!
//! - [`args`]: the command line → [`Command`](args::Command), or a one-line
//!   [`UsageError`](args::UsageError).
//! - [`explain`](mod@explain): `redial explain`, what redial would do with a response, as JSON.
//! - [`call`]: `redial call`, requests through the full redial stack, like curl.
//!
//! The binary (`src/main.rs`) only reads the files the flags name, calls these, and prints.
#![forbid(unsafe_code)]

pub mod args;
pub mod call;
pub mod explain;
