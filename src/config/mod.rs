//! Configuration: a raw serde layer read by the `config` crate, validated into
//! [`Config`]. Validation reports every problem at once, each with its key path
//! and how to fix it; `portcullis check` is [`load_file`] plus printing, with
//! the [`Config::warnings`] of a valid file.

mod document;
mod interpolate;
mod model;
mod raw;
mod unknown;
mod validate;
mod warnings;

#[cfg(test)]
mod tests;

pub use model::*;
pub use warnings::Warning;

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

impl Format {
    /// `.yaml`/`.yml`, `.toml` or `.json` (any case); `None` for anything else.
    pub fn from_path(path: &Path) -> Option<Format> {
        let extension = path.extension()?.to_str()?.to_ascii_lowercase();
        match extension.as_str() {
            "yaml" | "yml" => Some(Format::Yaml),
            "toml" => Some(Format::Toml),
            "json" => Some(Format::Json),
            _ => None,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Format::Yaml => "YAML",
            Format::Toml => "TOML",
            Format::Json => "JSON",
        }
    }

    fn file_format(self) -> config::FileFormat {
        match self {
            Format::Yaml => config::FileFormat::Yaml,
            Format::Toml => config::FileFormat::Toml,
            Format::Json => config::FileFormat::Json,
        }
    }
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
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: unknown extension; use .yaml, .yml, .toml or .json")]
    UnknownFormat { path: PathBuf },
    #[error("the file is not valid {}: {message}", .format.name())]
    Syntax {
        format: Format,
        /// The parser's message without the source lines some parsers quote
        /// (TOML's do): the offending line may hold a secret. Text rather
        /// than the parser's error, whose `Display` would show them again.
        message: String,
    },
    #[error("{} problem(s) in the configuration", .0.len())]
    Invalid(Vec<Problem>),
}

/// Reads, parses and validates a configuration file.
pub fn load_file(path: &Path, env: &dyn Environment) -> Result<Config, ConfigError> {
    let format = Format::from_path(path).ok_or_else(|| ConfigError::UnknownFormat {
        path: path.to_path_buf(),
    })?;
    let text = env.read_file(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    load_str(&text, format, env)
}

/// Parses and validates configuration text.
///
/// The stages, each adding to one list of problems: parse with the `config`
/// crate into a JSON value; expand `${NAME}` in every string; deserialize the
/// raw structs, noting unknown keys; validate into the model. The problems
/// are then listed in file order, with hidden values taken out.
pub fn load_str(text: &str, format: Format, env: &dyn Environment) -> Result<Config, ConfigError> {
    let mut value = parse(text, format)?;
    let mut problems = Vec::new();
    let from_environment = interpolate::interpolate(&mut value, env, &mut problems);
    let document = document::Document::new(&value, from_environment);
    match check(&value, &document, env, problems) {
        Ok(config) => Ok(Config {
            fingerprint: fingerprint(text),
            ..config
        }),
        Err(mut problems) => {
            problems
                .iter_mut()
                .for_each(|problem| document.redact(problem));
            document.sort_in_file_order(&mut problems);
            Err(ConfigError::Invalid(problems))
        }
    }
}

/// The first 16 hex digits of the SHA-256 of `text`.
pub fn fingerprint(text: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, text.as_bytes());
    digest.as_ref()[..8]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// The stages after interpolation: deserialize the raw structs, noting
/// unknown keys; validate into the model.
fn check(
    value: &serde_json::Value,
    document: &document::Document<'_>,
    env: &dyn Environment,
    mut problems: Vec<Problem>,
) -> Result<Config, Vec<Problem>> {
    // A value whose variable was missing is wrong in a way already reported;
    // what validation would add about it is noise.
    let interpolation_paths: Vec<String> = problems.iter().map(|p| p.path.clone()).collect();

    let mut unknown_keys = Vec::new();
    let raw = deserialize_raw(value, document, &mut unknown_keys);
    problems.extend(
        unknown_keys
            .iter()
            .map(|path| unknown::unknown_key_problem(path)),
    );
    let raw = match raw {
        Ok(raw) => raw,
        Err(problem) => {
            problems.push(*problem);
            return Err(problems);
        }
    };

    match validate::validate(raw, env, &unknown_keys) {
        Ok(config) if problems.is_empty() => Ok(config),
        Ok(_) => Err(problems),
        Err(more) => {
            problems.extend(
                more.into_iter()
                    .filter(|problem| !interpolation_paths.contains(&problem.path)),
            );
            Err(problems)
        }
    }
}

/// One line per problem, for `portcullis check` and start-up errors.
pub fn describe(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|problem| format!("{problem}\n"))
        .collect()
}

/// The file as a JSON value, through the `config` crate's parsers. (It keeps
/// keys' case and, with `preserve_order`, their order.)
fn parse(text: &str, format: Format) -> Result<serde_json::Value, ConfigError> {
    parse_value(text, format).map_err(|message| ConfigError::Syntax { format, message })
}

/// [`parse`] for the other files portcullis reads (`dev-idp --config`): the
/// error is the parser's message without the lines of the file it quotes.
pub(crate) fn parse_value(text: &str, format: Format) -> Result<serde_json::Value, String> {
    config::Config::builder()
        .add_source(config::File::from_str(text, format.file_format()))
        .build()
        .and_then(|parsed| parsed.try_deserialize::<serde_json::Value>())
        .map_err(|error| match error {
            config::ConfigError::FileParse { cause, .. } => without_source_lines(&*cause),
            other => without_source_lines(&other),
        })
}

/// Deserializes a parsed file (see [`parse_value`]) as [`load_str`] does:
/// a value of the wrong type is reported with its key path, and the message
/// never quotes it; where `is_secret` holds for the keys on that path (list
/// indices left out), it also says the value is hidden.
pub(crate) fn deserialize_value<T: serde::de::DeserializeOwned>(
    value: &serde_json::Value,
    is_secret: fn(&[&str]) -> bool,
) -> Result<T, (String, String)> {
    serde_path_to_error::deserialize(value).map_err(|error| {
        let segments = error_segments(error.path());
        let hidden = is_secret(&document::keys(&segments)).then_some(document::Hidden::Secret);
        let got = document::value_at(value, &segments);
        (
            unknown::format_path(&segments),
            document::wrong_type(error.inner(), got, hidden),
        )
    })
}

/// A parser's message on one line, without the lines of the file it quotes:
///
/// ```text
/// TOML parse error at line 2, column 39
///   |
/// 2 | secrets = ["…"
///   |                                       ^
/// unclosed array, expected `]`
/// ```
///
/// becomes `TOML parse error at line 2, column 39: unclosed array, expected `]``.
fn without_source_lines(error: &dyn std::error::Error) -> String {
    let is_quoted_source = |line: &str| {
        line.trim_start()
            .trim_start_matches(|c: char| c.is_ascii_digit())
            .trim_start()
            .starts_with('|')
    };
    error
        .to_string()
        .lines()
        .filter(|line| !line.trim().is_empty() && !is_quoted_source(line))
        .collect::<Vec<_>>()
        .join(": ")
}

/// Deserializes the raw structs, pushing the path of every unknown key onto
/// `unknown_keys`.
///
/// A value of the wrong type that serde cannot step over (a list where a
/// string belongs) ends deserialization: unlike every other check, this kind
/// stops at the first, reported with its path through `serde_path_to_error`.
fn deserialize_raw(
    value: &serde_json::Value,
    document: &document::Document<'_>,
    unknown_keys: &mut Vec<Vec<unknown::Segment>>,
) -> Result<raw::RawConfig, Box<Problem>> {
    let mut on_unknown = |path: serde_ignored::Path<'_>| {
        unknown_keys.push(unknown::segments_of(&path));
    };
    let deserializer = serde_ignored::Deserializer::new(value, &mut on_unknown);
    serde_path_to_error::deserialize(deserializer).map_err(|error| {
        let mut segments = error_segments(error.path());
        let mut error = error.into_inner();
        if let Some((inner, inner_error)) = document
            .value_at(&segments)
            .and_then(|action| raw::error_inside_flattened(&segments, action))
        {
            segments.extend(error_segments(&inner));
            error = inner_error;
        }
        Box::new(Problem {
            message: document.type_error(&segments, &error),
            path: unknown::format_path(&segments),
            fix: "give this key a value of the type it takes (see config/full.yaml); \
                  other problems are reported once this one is fixed"
                .to_string(),
        })
    })
}

fn error_segments(path: &serde_path_to_error::Path) -> Vec<unknown::Segment> {
    path.iter()
        .filter_map(|segment| match segment {
            serde_path_to_error::Segment::Seq { index } => Some(unknown::Segment::Index(*index)),
            serde_path_to_error::Segment::Map { key }
            | serde_path_to_error::Segment::Enum { variant: key } => {
                Some(unknown::Segment::Key(key.clone()))
            }
            serde_path_to_error::Segment::Unknown => None,
        })
        .collect()
}
