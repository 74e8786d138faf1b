//! A small YAML writer for the imported configuration: block style, keys in
//! the order given, every string double-quoted. JSON's string escapes are a
//! subset of YAML's double-quoted ones, so serde_json quotes them: no value
//! (`*.example.com`, `#{host}`, `yes`, `0755`) can be read back as anything
//! but the text it was. A `${` in a value is written `$${`, so that the
//! loader does not take it for an environment variable: only [`Node::Env`]
//! is one.

/// A YAML value.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    /// Text as it is: a literal `${` stays literal.
    Str(String),
    /// `${NAME}`: the environment variable, expanded by the loader.
    Env(String),
    Int(u64),
    Seq(Vec<Node>),
    /// Entries in the order they are written.
    Map(Vec<(String, Node)>),
}

impl Node {
    pub fn str(text: impl Into<String>) -> Node {
        Node::Str(text.into())
    }

    pub fn strs<S: AsRef<str>>(texts: &[S]) -> Node {
        Node::Seq(texts.iter().map(|text| Node::str(text.as_ref())).collect())
    }
}

/// A map under construction, in insertion order.
#[derive(Default)]
pub struct MapBuilder(Vec<(String, Node)>);

impl MapBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn put(&mut self, key: &str, value: Node) -> &mut Self {
        self.0.push((key.to_owned(), value));
        self
    }

    pub fn put_str(&mut self, key: &str, value: Option<&str>) -> &mut Self {
        if let Some(value) = value {
            self.put(key, Node::str(value));
        }
        self
    }

    pub fn build(&mut self) -> Node {
        Node::Map(std::mem::take(&mut self.0))
    }
}

/// The document for `node`, ending with a newline.
pub fn to_string(node: &Node) -> String {
    let mut out = String::new();
    match node {
        Node::Map(entries) if !entries.is_empty() => map(entries, 0, &mut out),
        Node::Seq(items) if !items.is_empty() => seq(items, 0, &mut out),
        other => {
            out.push_str(&inline(other));
            out.push('\n');
        }
    }
    out
}

fn map(entries: &[(String, Node)], indent: usize, out: &mut String) {
    for (key, value) in entries {
        push_indent(out, indent);
        out.push_str(&quote_key(key));
        out.push(':');
        match value {
            Node::Map(entries) if !entries.is_empty() => {
                out.push('\n');
                map(entries, indent + 2, out);
            }
            Node::Seq(items) if !items.is_empty() => {
                out.push('\n');
                seq(items, indent + 2, out);
            }
            scalar => {
                out.push(' ');
                out.push_str(&inline(scalar));
                out.push('\n');
            }
        }
    }
}

fn seq(items: &[Node], indent: usize, out: &mut String) {
    for item in items {
        let nested = match item {
            Node::Map(entries) if !entries.is_empty() => {
                let mut nested = String::new();
                map(entries, indent + 2, &mut nested);
                nested
            }
            Node::Seq(items) if !items.is_empty() => {
                let mut nested = String::new();
                seq(items, indent + 2, &mut nested);
                nested
            }
            scalar => {
                push_indent(out, indent);
                out.push_str("- ");
                out.push_str(&inline(scalar));
                out.push('\n');
                continue;
            }
        };
        // The first line of the nested block goes after the dash.
        push_indent(out, indent);
        out.push_str("- ");
        out.push_str(&nested[indent + 2..]);
    }
}

fn inline(node: &Node) -> String {
    match node {
        Node::Str(text) => quote(&text.replace("${", "$${")),
        Node::Env(name) => quote(&format!("${{{name}}}")),
        Node::Int(number) => number.to_string(),
        Node::Seq(_) => "[]".to_owned(),
        Node::Map(_) => "{}".to_owned(),
    }
}

fn quote(text: &str) -> String {
    serde_json::to_string(text).expect("a string always serializes to JSON")
}

/// Plain snake_case keys stay bare; anything else (a header name, an extra
/// parameter chosen by the user) is quoted.
fn quote_key(key: &str) -> String {
    let plain = key
        .bytes()
        .next()
        .is_some_and(|first| first.is_ascii_lowercase())
        && key
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_');
    if plain { key.to_owned() } else { quote(key) }
}

fn push_indent(out: &mut String, indent: usize) {
    out.extend(std::iter::repeat_n(' ', indent));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_blocks_and_quoting() {
        let document = MapBuilder::new()
            .put(
                "listeners",
                Node::Seq(vec![
                    MapBuilder::new()
                        .put("address", Node::str("0.0.0.0:443"))
                        .put("rules", Node::Seq(vec![]))
                        .put("list", Node::strs(&["a\"b", "#{host}", "${HOME}"]))
                        .put("secret", Node::Env("SECRET".to_owned()))
                        .build(),
                ]),
            )
            .put("X-Odd Key", Node::Int(3))
            .build();
        assert_eq!(
            to_string(&document),
            "listeners:\n  - address: \"0.0.0.0:443\"\n    rules: []\n    list:\n      - \"a\\\"b\"\n      - \"#{host}\"\n      - \"$${HOME}\"\n    secret: \"${SECRET}\"\n\"X-Odd Key\": 3\n"
        );
    }
}
