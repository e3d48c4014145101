//! Configuration from the environment: on ketch, the container's `env` in the Pod spec
//! (values, ConfigMap and Secret references, the downward API). Nothing is inherited from the
//! node.
//!
//! ```no_run
//! let greeting = ketch_sdk::config::get_or("GREETING", "Hello");
//! let limit: u32 = ketch_sdk::config::parse("LIMIT")?.unwrap_or(10);
//! let backend = ketch_sdk::config::require("BACKEND_URL")?;
//! # Ok::<(), ketch_sdk::Error>(())
//! ```

use crate::error::Error;

/// The value of `name`, when set (and valid UTF-8).
pub fn get(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// The value of `name`, or `default` when unset.
pub fn get_or(name: &str, default: &str) -> String {
    get(name).unwrap_or_else(|| default.to_string())
}

/// The value of `name`.
///
/// # Errors
/// [`Error::Config`] naming the variable when it is not set.
pub fn require(name: &str) -> Result<String, Error> {
    get(name).ok_or_else(|| Error::Config(format!("environment variable {name} is not set")))
}

/// The value of `name` parsed as `T`; `None` when unset.
///
/// # Errors
/// [`Error::Config`] naming the variable and its value when it does not parse.
pub fn parse<T: std::str::FromStr>(name: &str) -> Result<Option<T>, Error>
where
    T::Err: std::fmt::Display,
{
    match get(name) {
        None => Ok(None),
        Some(v) => v
            .trim()
            .parse()
            .map(Some)
            .map_err(|e| Error::Config(format!("environment variable {name}={v:?}: {e}"))),
    }
}
