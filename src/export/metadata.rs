//! The class names in an ONNX file's metadata, written as yolov5's export.py writes them:
//! `str(dict)` of a Python dict, `{0: 'person', 1: 'bicycle'}`, which yolov5's
//! `DetectMultiBackend` reads back with `eval`.

/// A string as Python's `repr` writes it: single quotes unless it holds one and no double.
fn python_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// `{0: 'a', 1: 'b'}`.
pub fn names_to_python(names: &[String]) -> String {
    let entries: Vec<String> = names
        .iter()
        .enumerate()
        .map(|(i, n)| format!("{i}: {}", python_repr(n)))
        .collect();
    format!("{{{}}}", entries.join(", "))
}

/// Reads a dict `{0: 'a', 1: 'b'}` (keys 0..n in any order) or a list `['a', 'b']`.
pub fn parse_names(text: &str) -> Result<Vec<String>, String> {
    let mut chars = text.trim().chars().peekable();
    let (close, keyed) = match chars.next() {
        Some('{') => ('}', true),
        Some('[') => (']', false),
        _ => return Err(format!("`{text}` is neither a dict nor a list of names")),
    };
    let mut entries: Vec<(usize, String)> = Vec::new();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        match chars.peek() {
            Some(c) if *c == close => break,
            None => return Err(format!("`{text}` ends before its closing `{close}`")),
            _ => {}
        }
        let key = if keyed {
            let digits: String =
                std::iter::from_fn(|| chars.next_if(char::is_ascii_digit)).collect();
            while chars.next_if(|c| c.is_whitespace()).is_some() {}
            if digits.is_empty() || chars.next() != Some(':') {
                return Err(format!("`{text}`: expected `number: 'name'`"));
            }
            while chars.next_if(|c| c.is_whitespace()).is_some() {}
            digits
                .parse()
                .map_err(|_| format!("`{digits}` is too large a class number"))?
        } else {
            entries.len()
        };
        let quote = match chars.next() {
            Some(q @ ('\'' | '"')) => q,
            _ => return Err(format!("`{text}`: expected a quoted name")),
        };
        let mut name = String::new();
        loop {
            match chars.next() {
                Some('\\') => match chars.next() {
                    Some('n') => name.push('\n'),
                    Some('r') => name.push('\r'),
                    Some('t') => name.push('\t'),
                    Some(c) => name.push(c),
                    None => return Err(format!("`{text}` ends inside a name")),
                },
                Some(c) if c == quote => break,
                Some(c) => name.push(c),
                None => return Err(format!("`{text}` ends inside a name")),
            }
        }
        entries.push((key, name));
    }
    entries.sort_by_key(|(k, _)| *k);
    if entries.iter().enumerate().any(|(i, (k, _))| i != *k) {
        return Err(format!("`{text}`: the class numbers are not 0, 1, 2, ..."));
    }
    Ok(entries.into_iter().map(|(_, n)| n).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_python_syntax() {
        let names: Vec<String> = ["person", "it's", "a\\b", "say \"hi\" 'x'"]
            .map(String::from)
            .to_vec();
        let text = names_to_python(&names);
        // As Python 3 prints str({0: 'person', 1: "it's", 2: 'a\\b', 3: 'say "hi" \'x\''}).
        assert_eq!(
            text,
            r#"{0: 'person', 1: "it's", 2: 'a\\b', 3: 'say "hi" \'x\''}"#
        );
        assert_eq!(parse_names(&text).unwrap(), names);
        assert_eq!(parse_names("['a', \"b\"]").unwrap(), vec!["a", "b"]);
        assert_eq!(parse_names("{1: 'b', 0: 'a'}").unwrap(), vec!["a", "b"]);
        assert!(parse_names("{0: 'a', 2: 'c'}").is_err());
        assert!(parse_names("{0: 'a'").is_err());
        assert!(parse_names("names").is_err());
    }
}
