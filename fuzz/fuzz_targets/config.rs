//! The configuration loader over arbitrary text in each format: never
//! panics, reports what is wrong as problems (each with a message and a
//! fix), and is a pure function of the text and the environment.

#![no_main]

use std::io;
use std::path::Path;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use portcullis::config::{ConfigError, Environment, Format, Problem, describe, load_str};

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Syntax {
    Yaml,
    Toml,
    Json,
}

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    format: Syntax,
    text: &'a str,
}

/// The variables and files the example configurations refer to, in memory:
/// the fuzzer never reads the real environment or file system.
struct FuzzEnv;

impl Environment for FuzzEnv {
    fn var(&self, name: &str) -> Option<String> {
        match name {
            "SESSION_SECRET" => Some("pQXWFtZVkyo8glsWW7c1rcQ+/oMwfpO+FcWRlnFfEK8=".into()),
            "CLIENT_SECRET" | "COGNITO_SECRET" => Some("fuzz-secret".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    fn read_file(&self, path: &Path) -> io::Result<String> {
        match path.to_str() {
            Some("/etc/portcullis/signing.pem") => {
                Ok("-----BEGIN PRIVATE KEY-----\nZnV6eg==\n-----END PRIVATE KEY-----\n".into())
            }
            Some("/etc/portcullis/session-secrets") => {
                Ok("pQXWFtZVkyo8glsWW7c1rcQ+/oMwfpO+FcWRlnFfEK8=\n".into())
            }
            Some("/etc/portcullis/client-secret") => Ok("fuzz-secret\n".into()),
            _ => Err(io::Error::from(io::ErrorKind::NotFound)),
        }
    }
}

#[derive(Debug, PartialEq)]
enum Outcome {
    Valid(String),
    Invalid(Vec<Problem>),
    Syntax(String),
}

fn load(text: &str, format: Format) -> Outcome {
    match load_str(text, format, &FuzzEnv) {
        Ok(config) => Outcome::Valid(format!("{config:?}")),
        Err(ConfigError::Invalid(problems)) => {
            assert!(!problems.is_empty(), "invalid without a problem");
            for problem in &problems {
                assert!(!problem.message.is_empty(), "{problem:?}");
                assert!(!problem.fix.is_empty(), "{problem:?}");
            }
            let _ = describe(&problems);
            Outcome::Invalid(problems)
        }
        Err(error @ ConfigError::Syntax { .. }) => Outcome::Syntax(error.to_string()),
        Err(error) => panic!("load_str neither reads files nor guesses a format: {error}"),
    }
}

fuzz_target!(|input: Input<'_>| {
    let format = match input.format {
        Syntax::Yaml => Format::Yaml,
        Syntax::Toml => Format::Toml,
        Syntax::Json => Format::Json,
    };
    let first = load(input.text, format);
    // Validation has no side effects and reads nothing but what is passed in.
    let second = load(input.text, format);
    assert_eq!(first, second);
});
