//! Configuration: a raw serde layer read by the `config` crate, validated into
//! [`Config`]. Validation reports every problem at once, each with its key path
//! and how to fix it; `portcullis check` is [`load_file`] plus printing.

mod model;

pub use model::*;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// Where `${NAME}` and `*_file` values come from. Passed in, never read from
/// globals, so validation is a pure function that tests can feed.
pub trait Environment {
    fn var(&self, name: &str) -> Option<String>;
    fn read_file(&self, path: &Path) -> io::Result<String>;
}

/// The real process environment and file system.
pub struct ProcessEnvironment;

impl Environment for ProcessEnvironment {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }

    fn read_file(&self, path: &Path) -> io::Result<String> {
        std::fs::read_to_string(path)
    }
}

/// The file formats accepted, chosen by extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Yaml,
    Toml,
    Json,
}

/// One thing wrong with a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted key path, e.g. `listeners[0].rules[2].actions[1].forward.target`.
    pub path: String,
    pub message: String,
    /// How to fix it, in a sentence.
    pub fix: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} (fix: {})", self.path, self.message, self.fix)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: unknown extension; use .yaml, .yml, .toml or .json")]
    UnknownFormat { path: PathBuf },
    #[error("the file is not valid {format:?}: {source}")]
    Syntax {
        format: Format,
        #[source]
        source: config::ConfigError,
    },
    #[error("{} problem(s) in the configuration", .0.len())]
    Invalid(Vec<Problem>),
}

/// Reads, parses and validates a configuration file.
pub fn load_file(path: &Path, env: &dyn Environment) -> Result<Config, ConfigError> {
    let _ = (path, env);
    unimplemented!("config loading is being written")
}

/// Parses and validates configuration text.
pub fn load_str(text: &str, format: Format, env: &dyn Environment) -> Result<Config, ConfigError> {
    let _ = (text, format, env);
    unimplemented!("config loading is being written")
}
