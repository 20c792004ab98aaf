//! Incremental UTF-8 assembly for streamed generation: token pieces may end in the middle of a
//! character (byte-fallback tokens, byte-level BPE); only complete characters are released.

/// Feed piece bytes with `push`; it returns the longest complete UTF-8 prefix available.
/// Bytes that can never become valid UTF-8 are released as U+FFFD (like Python's
/// `errors="replace"`); `flush` releases a trailing incomplete sequence the same way.
#[derive(Clone, Debug, Default)]
pub struct StreamDecoder {
    /// Bytes received but not yet released: at most one incomplete character (< 4 bytes)
    /// between calls.
    pending: Vec<u8>,
}

impl StreamDecoder {
    pub fn new() -> StreamDecoder {
        StreamDecoder::default()
    }

    pub fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut out = String::new();
        let mut rest: &[u8] = &self.pending;
        loop {
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    out.push_str(s);
                    rest = &[];
                    break;
                }
                Err(e) => {
                    let good = e.valid_up_to();
                    out.push_str(std::str::from_utf8(&rest[..good]).unwrap_or_default());
                    match e.error_len() {
                        Some(bad) => {
                            out.push('\u{FFFD}');
                            rest = &rest[good + bad..];
                        }
                        None => {
                            rest = &rest[good..]; // incomplete tail: wait for more bytes
                            break;
                        }
                    }
                }
            }
        }
        let keep = rest.len();
        let len = self.pending.len();
        self.pending.drain(..len - keep);
        out
    }

    /// End of stream: release whatever is pending (an incomplete character becomes U+FFFD).
    pub fn flush(&mut self) -> String {
        let out = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        out
    }

    /// Bytes held back waiting for the rest of a character.
    pub fn pending(&self) -> &[u8] {
        &self.pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_multibyte_chars() {
        let text = "a🦙é中".as_bytes();
        for split in 0..=text.len() {
            let mut d = StreamDecoder::new();
            let mut s = d.push(&text[..split]);
            // Nothing released may end in half a character: it is a `String`, so it cannot.
            s += &d.push(&text[split..]);
            s += &d.flush();
            assert_eq!(s, "a🦙é中");
        }
        let mut d = StreamDecoder::new();
        let mut s = String::new();
        for b in text {
            s += &d.push(std::slice::from_ref(b));
        }
        assert_eq!(s, "a🦙é中");
        assert!(d.pending().is_empty());
    }

    #[test]
    fn invalid_and_truncated() {
        let mut d = StreamDecoder::new();
        assert_eq!(d.push(b"x\xFFy"), "x\u{FFFD}y");
        assert_eq!(d.push(b"\xE4\xB8"), "");
        assert_eq!(d.flush(), "\u{FFFD}");
        assert_eq!(String::from_utf8_lossy(b"\xE4\xB8"), "\u{FFFD}");
    }
}
