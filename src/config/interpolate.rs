//! `${NAME}` interpolation over the parsed file, before it meets the raw
//! structs: every string value (never a key) may take environment variables.
//! `$${` writes a literal `${`. An unset variable is a problem naming both the
//! key and the variable; the walk goes on so that every one is reported.
//!
//! The environment is where secrets come from, so the paths of the values
//! that took a variable are returned: messages about them never show the
//! value (see [`super::secrecy`]).

use serde_json::Value;

use super::unknown::{Segment, format_path};
use super::{Environment, Problem};

/// Replaces `${NAME}` in every string of `value`, in place, and returns the
/// paths of the strings that took the value of a variable.
pub fn interpolate(
    value: &mut Value,
    env: &dyn Environment,
    problems: &mut Vec<Problem>,
) -> Vec<Vec<Segment>> {
    let mut walk = Walk {
        env,
        problems,
        path: Vec::new(),
        from_environment: Vec::new(),
    };
    walk.value(value);
    walk.from_environment
}

struct Walk<'a> {
    env: &'a dyn Environment,
    problems: &'a mut Vec<Problem>,
    /// Where the walk is.
    path: Vec<Segment>,
    /// Paths of the strings a variable was substituted into.
    from_environment: Vec<Vec<Segment>>,
}

impl Walk<'_> {
    fn value(&mut self, value: &mut Value) {
        match value {
            Value::String(text) => {
                if text.contains('$') {
                    let (expanded, substituted) =
                        expand(text, &format_path(&self.path), self.env, self.problems);
                    *text = expanded;
                    if substituted {
                        self.from_environment.push(self.path.clone());
                    }
                }
            }
            Value::Array(items) => {
                for (index, item) in items.iter_mut().enumerate() {
                    self.path.push(Segment::Index(index));
                    self.value(item);
                    self.path.pop();
                }
            }
            Value::Object(map) => {
                for (key, item) in map.iter_mut() {
                    self.path.push(Segment::Key(key.clone()));
                    self.value(item);
                    self.path.pop();
                }
            }
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
    }
}

/// Expands one string; `path` is only for problems. Also says whether any
/// variable was substituted.
fn expand(
    text: &str,
    path: &str,
    env: &dyn Environment,
    problems: &mut Vec<Problem>,
) -> (String, bool) {
    let mut substituted = false;
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        let after = &rest[dollar..];
        if let Some(escaped) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = escaped;
        } else if let Some(reference) = after.strip_prefix("${") {
            let Some(close) = reference.find('}') else {
                problems.push(Problem {
                    path: path.to_string(),
                    message: "`${` without a closing `}`".to_string(),
                    fix: "write ${NAME}, or $${ for a literal ${".to_string(),
                });
                out.push_str(after);
                return (out, substituted);
            };
            let name = &reference[..close];
            if !is_variable_name(name) {
                problems.push(Problem {
                    path: path.to_string(),
                    message: format!("`${{{name}}}` is not a variable reference"),
                    fix: "variable names are letters, digits and _, not starting with a digit; write $${ for a literal ${".to_string(),
                });
            } else {
                match env.var(name) {
                    Some(value) => {
                        out.push_str(&value);
                        substituted = true;
                    }
                    None => problems.push(Problem {
                        path: path.to_string(),
                        message: format!("environment variable {name} is not set"),
                        fix: format!(
                            "set {name}, or write the value (or its *_file twin) in the file"
                        ),
                    }),
                }
            }
            rest = &reference[close + 1..];
        } else {
            out.push('$');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    (out, substituted)
}

fn is_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}
