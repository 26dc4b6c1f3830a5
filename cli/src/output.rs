//! Output formatting: `--output text` (human) or `--output json` (one JSON
//! document on stdout).

use serde_json::Value;

/// `print!`/`println!` that ignore a closed stdout (e.g. `kiln … | head`)
/// instead of panicking.
macro_rules! println {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}
macro_rules! print {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout(), $($t)*);
    }};
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum OutputFormat {
    #[default]
    Text,
    Json,
}

impl std::str::FromStr for OutputFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "text" => Ok(OutputFormat::Text),
            "json" => Ok(OutputFormat::Json),
            o => Err(format!(
                "unknown output format '{o}' (expected text or json)"
            )),
        }
    }
}

impl OutputFormat {
    pub fn is_json(self) -> bool {
        self == OutputFormat::Json
    }
}

/// Prints a JSON value on stdout (pretty).
pub fn print_json(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).expect("serializable"));
}

/// Renders a JSON value as indented `key: value` text (YAML-like).
pub fn to_text(v: &Value) -> String {
    let mut out = String::new();
    render(v, 0, &mut out);
    out
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) if s.is_empty() => "\"\"".into(),
        Value::String(s) => s.clone(),
        Value::Null => "null".into(),
        other => other.to_string(),
    }
}

fn render(v: &Value, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match v {
        Value::Object(map) => {
            for (k, val) in map {
                match val {
                    Value::Object(m) if !m.is_empty() => {
                        out.push_str(&format!("{pad}{k}:\n"));
                        render(val, indent + 2, out);
                    }
                    Value::Array(a) if !a.is_empty() => {
                        out.push_str(&format!("{pad}{k}:\n"));
                        render(val, indent + 2, out);
                    }
                    Value::Object(_) => out.push_str(&format!("{pad}{k}: {{}}\n")),
                    Value::Array(_) => out.push_str(&format!("{pad}{k}: []\n")),
                    _ => out.push_str(&format!("{pad}{k}: {}\n", scalar(val))),
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                match item {
                    Value::Object(m) if !m.is_empty() => {
                        let mut sub = String::new();
                        render(item, indent + 2, &mut sub);
                        // "- " replaces the first two spaces of the first line
                        let sub = sub.replacen(&format!("{pad}  "), &format!("{pad}- "), 1);
                        out.push_str(&sub);
                    }
                    Value::Array(_) => {
                        out.push_str(&format!("{pad}-\n"));
                        render(item, indent + 2, out);
                    }
                    _ => out.push_str(&format!("{pad}- {}\n", scalar(item))),
                }
            }
        }
        other => out.push_str(&format!("{pad}{}\n", scalar(other))),
    }
}

/// Prints `v` as JSON or as text, depending on `format`.
pub fn print(format: OutputFormat, v: &Value) {
    match format {
        OutputFormat::Json => print_json(v),
        OutputFormat::Text => print!("{}", to_text(v)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn text_rendering() {
        let v = json!({"a": "x", "b": [{"c": 1, "d": "y"}, {"c": 2}], "e": {}, "f": ["p"]});
        assert_eq!(
            to_text(&v),
            "a: x\nb:\n  - c: 1\n    d: y\n  - c: 2\ne: {}\nf:\n  - p\n"
        );
    }
}
