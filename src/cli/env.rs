//! The environment variables the tool reads, one constant each (docs/reference.md lists them).
//!
//! A flag beats its variable, which beats the config file.

/// The API key. Only ever read from the environment or `--api-key-file`, never a flag.
pub const API_KEY: &str = "TELEMETRON_API_KEY";
/// The ext-v1 base URL (`--base-url`).
pub const BASE_URL: &str = "TELEMETRON_BASE_URL";
/// The snapshot path (`--state`).
pub const STATE: &str = "TELEMETRON_STATE";
/// The config file (`--config`).
pub const CONFIG: &str = "TELEMETRON_CONFIG";
/// Overrides the log level `-v`/`-q` choose, in tracing's filter syntax.
pub const LOG: &str = "TELEMETRON_LOG";
