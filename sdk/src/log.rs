//! Log lines to stdout (`info!`, `debug!`) and stderr (`warn!`, `error!`): on ketch they are
//! the Pod's logs (`ketch logs`), elsewhere whatever the host does with them.
//!
//! ```no_run
//! ketch_sdk::info!("served {} in {} ms", "/", 3);
//! ketch_sdk::error!("backend failed: {}", "timeout");
//! ```
//!
//! Each line is written with one call, so concurrent requests do not interleave within one.

use std::io::Write as _;

/// A log level, the first word of each line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// `DEBUG`, to stdout.
    Debug,
    /// `INFO`, to stdout.
    Info,
    /// `WARN`, to stderr.
    Warn,
    /// `ERROR`, to stderr.
    Error,
}

/// Writes `LEVEL message\n`; used by the macros. A failed write is ignored (there is nowhere
/// else to report it).
pub fn write(level: Level, message: std::fmt::Arguments<'_>) {
    let (tag, to_stderr) = match level {
        Level::Debug => ("DEBUG", false),
        Level::Info => ("INFO", false),
        Level::Warn => ("WARN", true),
        Level::Error => ("ERROR", true),
    };
    let line = format!("{tag} {message}\n");
    if to_stderr {
        let _ = std::io::stderr().write_all(line.as_bytes());
    } else {
        let _ = std::io::stdout().write_all(line.as_bytes());
    }
}

/// Logs a `DEBUG` line to stdout, formatted like `println!`.
#[macro_export]
macro_rules! debug {
    ($($arg:tt)*) => { $crate::log::write($crate::log::Level::Debug, format_args!($($arg)*)) };
}

/// Logs an `INFO` line to stdout, formatted like `println!`.
#[macro_export]
macro_rules! info {
    ($($arg:tt)*) => { $crate::log::write($crate::log::Level::Info, format_args!($($arg)*)) };
}

/// Logs a `WARN` line to stderr, formatted like `println!`.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)*) => { $crate::log::write($crate::log::Level::Warn, format_args!($($arg)*)) };
}

/// Logs an `ERROR` line to stderr, formatted like `println!`.
#[macro_export]
macro_rules! error {
    ($($arg:tt)*) => { $crate::log::write($crate::log::Level::Error, format_args!($($arg)*)) };
}
