//! TOML seeds for the fuzz targets: a TOML file goes through the JSON tree that
//! `fuzz_support` edits and back (a null drops its entry; TOML has none). For the crates whose
//! parsers read TOML; included with `#[path]` beside `fuzz_support`.

use serde_json::Value;

use super::support::Seeds;

/// Seeds of a TOML format.
pub fn seeds(texts: Vec<Vec<u8>>, extra_words: &[&str]) -> Seeds {
    Seeds::new(texts, parse, render, extra_words)
}

fn parse(text: &str) -> Option<Value> {
    let v: toml::Value = toml::from_str(text).ok()?;
    serde_json::to_value(v).ok()
}

pub fn render(v: &Value) -> Option<String> {
    match to_toml(v)? {
        t @ toml::Value::Table(_) => toml::to_string(&t).ok(),
        _ => None,
    }
}

fn to_toml(v: &Value) -> Option<toml::Value> {
    Some(match v {
        Value::Null => return None,
        Value::Bool(b) => toml::Value::Boolean(*b),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => toml::Value::Integer(i),
            (None, Some(f)) => toml::Value::Float(f),
            (None, None) => return None,
        },
        Value::String(s) => toml::Value::String(s.clone()),
        Value::Array(a) => toml::Value::Array(a.iter().filter_map(to_toml).collect()),
        Value::Object(m) => toml::Value::Table(
            m.iter()
                .filter_map(|(k, x)| Some((k.clone(), to_toml(x)?)))
                .collect(),
        ),
    })
}
