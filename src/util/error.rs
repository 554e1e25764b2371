//! Errors as text. An error that wraps another keeps it as its `source` and leaves it out
//! of its own message, so the message and its causes are read by walking the chain. Some
//! crates' errors (image's, for one) also repeat their source in their message; a cause
//! already written is not written again.

use std::error::Error;

/// The message and every cause, joined by ": " (as the command line prints an error).
pub fn chain(error: &dyn Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(next) = cause {
        let message = next.to_string();
        if !text.ends_with(&message) {
            text.push_str(": ");
            text.push_str(&message);
        }
        cause = next.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("reading {path}")]
    struct Outer {
        path: &'static str,
        #[source]
        source: std::io::Error,
    }

    #[test]
    fn joins_the_message_and_its_causes() {
        let error = Outer {
            path: "a.yaml",
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
        };
        assert_eq!(chain(&error), "reading a.yaml: no such file");
    }

    /// An error whose message already ends with its source's.
    #[derive(Debug, thiserror::Error)]
    #[error("decoding: {source}")]
    struct Repeating {
        source: std::io::Error,
    }

    #[test]
    fn writes_a_repeated_cause_once() {
        let error = Outer {
            path: "a.png",
            source: std::io::Error::other(Repeating {
                source: std::io::Error::other("bad signature"),
            }),
        };
        assert_eq!(chain(&error), "reading a.png: decoding: bad signature");
    }
}
