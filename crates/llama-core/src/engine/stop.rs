//! Stop strings over streamed text: text is released as soon as it cannot be the start of a stop
//! string, so a stream never shows part of a stop string that then matches (as llama-server and
//! llama-cpp-python hold back a partial match).

/// Feed released text with `push`; it returns the text safe to show and whether a stop string
/// matched (then the text before the match is returned and nothing after it ever is).
#[derive(Clone, Debug, Default)]
pub struct StopMatcher {
    stops: Vec<String>,
    /// Text received but held back: a suffix that is a proper prefix of some stop string.
    held: String,
    stopped: bool,
}

impl StopMatcher {
    /// Empty stop strings are dropped (they would match before any text).
    pub fn new(stops: &[String]) -> StopMatcher {
        StopMatcher { stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(), ..Default::default() }
    }

    /// Appends `text`; returns (text to release, matched).
    pub fn push(&mut self, text: &str) -> (String, bool) {
        if self.stopped {
            return (String::new(), true);
        }
        self.held.push_str(text);
        // the earliest full match wins
        if let Some(at) = self.stops.iter().filter_map(|s| self.held.find(s.as_str())).min() {
            let out = self.held[..at].to_string();
            self.held.clear();
            self.stopped = true;
            return (out, true);
        }
        // hold back the longest suffix that could still grow into a stop string
        let keep = self.partial_suffix();
        let cut = self.held.len() - keep;
        let out = self.held[..cut].to_string();
        self.held.drain(..cut);
        (out, false)
    }

    /// End of generation: whatever is held back is ordinary text.
    pub fn flush(&mut self) -> String {
        std::mem::take(&mut self.held)
    }

    /// Bytes of the longest suffix of `held` (on a char boundary) that is a proper prefix of a
    /// stop string.
    fn partial_suffix(&self) -> usize {
        let mut best = 0;
        for s in &self.stops {
            let max = (s.len() - 1).min(self.held.len());
            for n in (best + 1..=max).rev() {
                let start = self.held.len() - n;
                if self.held.is_char_boundary(start) && s.starts_with(&self.held[start..]) {
                    best = n;
                    break;
                }
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stops: &[&str], pieces: &[&str]) -> (String, bool) {
        let stops: Vec<String> = stops.iter().map(|s| s.to_string()).collect();
        let mut m = StopMatcher::new(&stops);
        let mut out = String::new();
        for p in pieces {
            let (t, hit) = m.push(p);
            out.push_str(&t);
            if hit {
                return (out, true);
            }
        }
        out.push_str(&m.flush());
        (out, false)
    }

    #[test]
    fn matches_across_pieces_and_holds_partials() {
        assert_eq!(run(&["\n\n"], &["a", "\n", "\nb"]), ("a".into(), true));
        assert_eq!(run(&["STOP"], &["xS", "TO", "y"]), ("xSTOy".into(), false));
        assert_eq!(run(&["ab", "b"], &["cab"]), ("c".into(), true));
        assert_eq!(run(&[""], &["x"]), ("x".into(), false));
        // multibyte: a held suffix never splits a character
        assert_eq!(run(&["é!"], &["aé", "é", "!"]), ("aé".into(), true));
    }

    #[test]
    fn released_text_never_contains_a_partial_that_later_matches() {
        let stops = vec!["<end>".to_string()];
        let mut m = StopMatcher::new(&stops);
        let (a, _) = m.push("hello <e");
        assert_eq!(a, "hello ");
        let (b, _) = m.push("n");
        assert_eq!(b, "");
        let (c, hit) = m.push("d> more");
        assert_eq!((c.as_str(), hit), ("", true));
    }
}
