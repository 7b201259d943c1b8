//! Records as text tables: values read by their field's type, CSV checked row by row before
//! anything is written, and CSV written back. The `objectos records` commands and the
//! console's import and export use this.

use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::names::Record;
use crate::defs::{FieldKind, ObjectDef};

/// Named raw values (a form's, a command line's, a CSV row's) as a record's fields, each read
/// by its field's type; the problem when one is not (an unknown field, a number that is not
/// one...). An empty value clears the field.
pub fn values<'a>(def: &ObjectDef, named: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Value, String> {
    let mut out = Map::new();
    for (name, raw) in named {
        let field = def.field(name).ok_or_else(|| format!("{} has no field `{name}`; fields: {}", def.name, def.fields.iter().map(|f| f.name.as_str()).collect::<Vec<_>>().join(", ")))?;
        let value = if raw.is_empty() {
            Value::Null
        } else {
            match &field.kind {
                FieldKind::Number { .. } => match raw.parse::<i64>() {
                    Ok(n) => json!(n),
                    Err(_) => raw.parse::<f64>().ok().and_then(|n| serde_json::Number::from_f64(n).map(Value::Number)).ok_or_else(|| format!("{name}: `{raw}` is not a number"))?,
                },
                FieldKind::Boolean => match raw {
                    "true" | "yes" => Value::Bool(true),
                    "false" | "no" => Value::Bool(false),
                    _ => return Err(format!("{name}: `{raw}` is not true or false")),
                },
                _ => Value::String(raw.to_string()),
            }
        };
        out.insert(name.to_string(), value);
    }
    Ok(Value::Object(out))
}

/// A row refused by [`check_csv`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rejected {
    /// Its line in the file (the header is line 1).
    pub line: u64,
    /// What is wrong, with the field's path.
    pub problem: String,
}

/// What a CSV file holds for a type: the rows that pass every rule of the type, ready to
/// create, and the ones that do not.
#[derive(Debug, Clone, Default)]
pub struct Checked {
    /// Fields of each valid row, in file order.
    pub valid: Vec<Value>,
    /// The line of each valid row.
    pub lines: Vec<u64>,
    /// Each invalid row, in file order.
    pub rejected: Vec<Rejected>,
}

/// Read CSV text whose header row names fields of `def` (an `id` column, as [`to_csv`] writes
/// it, is left out: ObjectOS gives ids) and check every row. The error is for the file as a
/// whole (a header naming no field, a broken quote), with the line where it was found.
pub fn check_csv(text: &[u8], def: &ObjectDef) -> Result<Checked, String> {
    let mut r = csv::ReaderBuilder::new().trim(csv::Trim::All).from_reader(text);
    let header: Vec<String> = r.headers().map_err(|e| e.to_string())?.iter().map(String::from).collect();
    for h in header.iter().filter(|h| *h != "id") {
        if def.field(h).is_none() {
            return Err(format!("line 1: `{h}` is not a field of {}; fields: {}", def.name, def.fields.iter().map(|f| f.name.as_str()).collect::<Vec<_>>().join(", ")));
        }
    }
    let mut out = Checked::default();
    for rec in r.records() {
        let rec = rec.map_err(|e| e.to_string())?;
        let line = rec.position().map_or(0, |p| line_at(text, p.byte()));
        let row = header.iter().zip(rec.iter()).filter(|(h, v)| *h != "id" && !v.is_empty()).map(|(h, v)| (h.as_str(), v));
        let checked = values(def, row).and_then(|v| {
            def.validate(&v, false).map(|_| v).map_err(|ps| ps.iter().map(|p| format!("{} {}", p.path.rsplit(' ').next().unwrap_or_default(), p.message)).collect::<Vec<_>>().join("; "))
        });
        match checked {
            Ok(v) => {
                out.valid.push(v);
                out.lines.push(line);
            }
            Err(problem) => out.rejected.push(Rejected { line, problem }),
        }
    }
    Ok(out)
}

/// The line (from 1) of the record that starts at byte `at` of `text`. The csv crate's own
/// line number is taken before a `\r\n`'s `\n` is read, so with Windows line endings it says
/// one line too few; counting the line breaks before the record's first byte is right for LF,
/// CRLF, blank lines and quoted fields that span lines.
fn line_at(text: &[u8], at: u64) -> u64 {
    let mut start = usize::try_from(at).unwrap_or(usize::MAX).min(text.len());
    while start < text.len() && matches!(text[start], b'\r' | b'\n') {
        start += 1;
    }
    text[..start].iter().filter(|&&b| b == b'\n').count() as u64 + 1
}

/// Records as CSV: a header row (`id`, then the type's fields) and a row each.
pub fn to_csv(def: &ObjectDef, records: &[Record]) -> String {
    let text = |v: Option<&Value>| match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    };
    let mut w = csv::Writer::from_writer(Vec::new());
    let header: Vec<&str> = std::iter::once("id").chain(def.fields.iter().map(|f| f.name.as_str())).collect();
    // Writing to memory cannot fail.
    let _ = w.write_record(&header);
    for r in records {
        let _ = w.write_record(std::iter::once(text(r.get("id"))).chain(def.fields.iter().map(|f| text(r.get(&f.name)))));
    }
    String::from_utf8(w.into_inner().unwrap_or_default()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn def() -> ObjectDef {
        let v = serde_json::json!({ "name": "item", "fields": { "title": { "type": "text", "required": true }, "qty": { "type": "number" } } });
        ObjectDef::parse(&v, "objects/item.yml", "item").unwrap()
    }

    #[test]
    fn a_rejected_rows_line_is_its_line_in_the_file_whatever_the_line_endings() {
        let lf = "title,qty\nok,1\nbad,lots\nfine,2\nworse,x\n";
        let crlf = lf.replace('\n', "\r\n");
        // A quoted field over two lines moves every later row down one line.
        let quoted = "title,qty\n\"two\nlines\",1\nbad,lots\n";
        for (name, text, want) in [("LF", lf.to_string(), vec![3, 5]), ("CRLF", crlf, vec![3, 5]), ("quoted", quoted.to_string(), vec![4])] {
            let checked = check_csv(text.as_bytes(), &def()).unwrap();
            let lines: Vec<u64> = checked.rejected.iter().map(|r| r.line).collect();
            assert_eq!(lines, want, "{name}: {:?}", checked.rejected);
        }
        let checked = check_csv(b"title,qty\r\nok,1\r\n\r\nnext,2\r\n", &def()).unwrap();
        assert_eq!(checked.lines, [2, 4], "a blank line counts");
    }
}
