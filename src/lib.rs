//! telemetron-sync keeps Telemetron's device ownership (ext-v1) in step with a company's CSV
//! exports of customers, devices and ownership.
//!
//! The stages, each in its own module: [`load`] reads and validates the exports, [`snapshot`]
//! keeps what Telemetron has been told, [`diff`] compares the two, [`plan`] groups the difference
//! into API calls, [`execute`] sends them. The values that flow between stages are in [`model`].
//! [`client`] talks to ext-v1 (wire types in [`api`]), and [`emulator`] serves a local copy of
//! it. [`cli`] holds the arguments, settings, exit codes and output; [`cmd`] wires the stages to
//! it, one file per command. See ARCHITECTURE.md for the map and the invariants.

pub mod api;
pub mod cli;
pub mod client;
pub mod cmd;
pub mod config;
pub mod diff;
pub mod emulator;
pub mod error;
pub mod execute;
pub mod files;
pub mod front;
pub mod load;
pub mod mem;
pub mod model;
pub mod pii;
pub mod plan;
pub mod private;
pub mod snapshot;
pub mod sync;
pub mod text;
pub mod time;

pub use error::Error;
