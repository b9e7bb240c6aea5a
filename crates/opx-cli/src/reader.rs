//! Splits an input stream into raw payloads without reading it all into memory.
//!
//! An input holds one payload (pretty-printed or not), a JSON array of payloads, or NDJSON
//! (one payload per line; concatenated values work too). The splitter only tracks string
//! and nesting state to find where each top-level value ends; the payload parser does the
//! real validation, so a malformed payload becomes one rejected item instead of stopping
//! the input.
//!
//! Two rules keep one bad line from swallowing the rest of an NDJSON file:
//! - a top-level scalar (anything not starting with `{` or `[`) ends at the end of its line;
//! - when a value is still open after its first line and the next line starts with `{` in
//!   column one, the open value is cut there (a truncated NDJSON line). Pretty-printed
//!   payloads are unaffected: their inner lines are indented or start with `}`/`"`.
//!
//! At most [`PAYLOAD_LEN_MAX`] + 1 bytes of a payload are kept; [`RawPayload::len`] still
//! counts all of them, so an oversized payload is refused with its true size and the
//! memory used stays bounded whatever the input.

use opx_domain::source::PAYLOAD_LEN_MAX;
use std::io::{self, BufRead};

/// One top-level value of the input.
#[derive(Debug)]
pub struct RawPayload {
    /// 1-based position of the payload in its input.
    pub index: u64,
    /// The payload's bytes, cut after `PAYLOAD_LEN_MAX + 1` bytes.
    pub bytes: Vec<u8>,
    /// The payload's full length in bytes.
    pub len: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Nothing but whitespace seen yet.
    Undecided,
    /// Inside a top-level JSON array: each element is a payload.
    Array,
    /// A sequence of top-level values (one payload, NDJSON, concatenated values).
    Values,
}

/// What one byte did to the payload being assembled.
enum Step {
    /// Keep going.
    Continue,
    /// The payload ends after this byte.
    EndAfter,
    /// The payload ends before this byte; look at the byte again for the next payload.
    EndBefore,
}

/// The streaming splitter; see the module documentation.
pub struct PayloadReader<R> {
    input: R,
    scanner: Scanner,
}

/// The splitter's state between bytes.
struct Scanner {
    mode: Mode,
    emitted: u64,
    current: Vec<u8>,
    current_len: usize,
    depth: u64,
    in_string: bool,
    escaped: bool,
    newlines_in_current: u64,
    at_line_start: bool,
}

impl<R: BufRead> PayloadReader<R> {
    /// A splitter over `input`.
    pub fn new(input: R) -> Self {
        PayloadReader {
            input,
            scanner: Scanner::new(),
        }
    }

    /// The next payload, or `None` at the end of the input.
    pub fn next_payload(&mut self) -> io::Result<Option<RawPayload>> {
        loop {
            let chunk = match self.input.fill_buf() {
                Ok(chunk) => chunk,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(error),
            };
            if chunk.is_empty() {
                let scanner = &mut self.scanner;
                return Ok(if scanner.current_len > 0 {
                    Some(scanner.take())
                } else {
                    None
                });
            }
            let mut consumed = 0;
            let mut finished = false;
            for &byte in chunk {
                match self.scanner.step(byte) {
                    Step::Continue => consumed += 1,
                    Step::EndAfter => {
                        consumed += 1;
                        finished = true;
                        break;
                    }
                    Step::EndBefore => {
                        finished = true;
                        break;
                    }
                }
            }
            self.input.consume(consumed);
            if finished && self.scanner.current_len > 0 {
                return Ok(Some(self.scanner.take()));
            }
        }
    }
}

impl Scanner {
    fn new() -> Self {
        Scanner {
            mode: Mode::Undecided,
            emitted: 0,
            current: Vec::new(),
            current_len: 0,
            depth: 0,
            in_string: false,
            escaped: false,
            newlines_in_current: 0,
            at_line_start: true,
        }
    }

    fn take(&mut self) -> RawPayload {
        self.emitted += 1;
        let payload = RawPayload {
            index: self.emitted,
            bytes: std::mem::take(&mut self.current),
            len: self.current_len,
        };
        self.current_len = 0;
        self.depth = 0;
        self.in_string = false;
        self.escaped = false;
        self.newlines_in_current = 0;
        payload
    }

    fn push(&mut self, byte: u8) {
        if self.current.len() <= PAYLOAD_LEN_MAX {
            self.current.push(byte);
        }
        self.current_len += 1;
    }

    fn step(&mut self, byte: u8) -> Step {
        let line_start = self.at_line_start;
        self.at_line_start = byte == b'\n';
        if self.mode == Mode::Undecided {
            if byte.is_ascii_whitespace() {
                return Step::Continue;
            }
            if byte == b'[' {
                self.mode = Mode::Array;
                return Step::Continue;
            }
            self.mode = Mode::Values;
        }
        let started = self.current_len > 0;
        if self.in_string {
            self.push(byte);
            if self.escaped {
                self.escaped = false;
            } else if byte == b'\\' {
                self.escaped = true;
            } else if byte == b'"' {
                self.in_string = false;
            } else if byte == b'\n' {
                self.newlines_in_current += 1;
            }
            return Step::Continue;
        }
        // A truncated NDJSON line: cut it where the next line's object begins.
        if started
            && self.depth > 0
            && line_start
            && byte == b'{'
            && self.mode == Mode::Values
            && self.newlines_in_current == 1
        {
            return Step::EndBefore;
        }
        match byte {
            b'{' | b'[' => {
                self.push(byte);
                self.depth += 1;
                Step::Continue
            }
            b'}' | b']' if self.depth > 0 => {
                self.push(byte);
                self.depth -= 1;
                if self.depth == 0 {
                    Step::EndAfter
                } else {
                    Step::Continue
                }
            }
            b']' if self.mode == Mode::Array => {
                // The end of the top-level array; anything after it is read as values.
                self.mode = Mode::Values;
                if started {
                    Step::EndAfter
                } else {
                    Step::Continue
                }
            }
            b',' if self.depth == 0 && self.mode == Mode::Array => {
                if started {
                    Step::EndAfter
                } else {
                    Step::Continue
                }
            }
            b'\n' => {
                if self.depth == 0 {
                    // Only a top-level scalar (or nothing) is open: it ends with its line.
                    if started {
                        Step::EndAfter
                    } else {
                        Step::Continue
                    }
                } else {
                    self.push(byte);
                    self.newlines_in_current += 1;
                    Step::Continue
                }
            }
            _ if byte.is_ascii_whitespace() && !started => Step::Continue,
            b'"' => {
                self.push(byte);
                self.in_string = true;
                Step::Continue
            }
            _ => {
                self.push(byte);
                Step::Continue
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(input: &str) -> Vec<String> {
        let mut reader = PayloadReader::new(input.as_bytes());
        let mut out = Vec::new();
        while let Some(payload) = reader.next_payload().unwrap() {
            out.push(String::from_utf8(payload.bytes).unwrap().trim().to_owned());
        }
        out
    }

    #[test]
    fn splits_every_input_shape() {
        let cases: &[(&str, &str, &[&str])] = &[
            (
                "one pretty payload",
                "{\n  \"a\": [1, 2],\n  \"b\": \"}\"\n}\n",
                &["{\n  \"a\": [1, 2],\n  \"b\": \"}\"\n}"],
            ),
            (
                "ndjson",
                "{\"a\":1}\n{\"b\":2}\n\n{\"c\":3}",
                &["{\"a\":1}", "{\"b\":2}", "{\"c\":3}"],
            ),
            (
                "array",
                " [ {\"a\":1} , {\"b\":[2]} ]\n",
                &["{\"a\":1}", "{\"b\":[2]}"],
            ),
            ("array of scalars", "[1, \"x\"]", &["1", "\"x\""]),
            (
                "truncated ndjson line",
                "{\"a\":1\n{\"b\":2}\n",
                &["{\"a\":1", "{\"b\":2}"],
            ),
            (
                "garbage line",
                "not json at all\n{\"b\":2}\n",
                &["not json at all", "{\"b\":2}"],
            ),
            (
                "escaped quote in string",
                "{\"a\":\"x\\\"}\"}\n{}",
                &["{\"a\":\"x\\\"}\"}", "{}"],
            ),
            ("truncated at end", "{\"a\":[1", &["{\"a\":[1"]),
            ("empty", "  \n", &[]),
        ];
        for (name, input, expected) in cases {
            assert_eq!(split(input), *expected, "{name}");
        }
    }

    #[test]
    fn oversized_payload_is_cut_but_counted() {
        let big = format!("{{\"a\":\"{}\"}}\n{{}}", "x".repeat(PAYLOAD_LEN_MAX + 10));
        let mut reader = PayloadReader::new(big.as_bytes());
        let first = reader.next_payload().unwrap().unwrap();
        assert_eq!(first.len, PAYLOAD_LEN_MAX + 18);
        assert_eq!(first.bytes.len(), PAYLOAD_LEN_MAX + 1);
        let second = reader.next_payload().unwrap().unwrap();
        assert_eq!((second.index, second.bytes), (2, b"{}".to_vec()));
    }
}
