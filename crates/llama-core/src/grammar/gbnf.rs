//! GBNF (llama.cpp's grammar format) → llguidance's Lark dialect.
//!
//! The parser accepts what llama.cpp's `llama_grammar_parser::parse` accepts and reports the same
//! faults (unknown escape, missing `::=`, undefined rule …) with a line number. GBNF is matched
//! character by character; llguidance splits its input into *lexemes* (regexes, matched greedily)
//! and runs an Earley parser over them. Making every character a lexeme is exact but slow (one
//! Earley row per character, token masks over a 150k vocabulary exceed llguidance's item budget),
//! so regular (non-recursive) rules become lexemes — but only where that cannot change the
//! language: greedy lexing loses a parse exactly when one lexeme has completed on a string `a` and
//! another (or the same) lexeme allowed at that point can still continue after `a` plus one more
//! byte (`num ::= [0-9]+ ws` followed by `"\n"` where `ws ::= [ \t\n]*` is the classic case). Every
//! pair of rule-level lexemes is checked for that with derivative automata (derivre, llguidance's
//! own regex engine); a conflicting rule is demoted to a grammar rule and a conflicting literal is
//! split into single characters (a single character can never be cut short), until no pair
//! conflicts. The check ignores whether the two lexemes can actually meet, so it is conservative.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;

use llguidance::derivre;

/// A parsed GBNF expression.
#[derive(Clone, Debug, PartialEq)]
enum Expr {
    /// A literal string (code points).
    Lit(Vec<char>),
    /// `[...]` / `[^...]`: inclusive code-point ranges.
    Class {
        neg: bool,
        ranges: Vec<(u32, u32)>,
    },
    /// `.`: any character.
    Any,
    /// A reference to rule `i`.
    Ref(usize),
    /// `<[id]>` / `!<[id]>`: a token by id (llama.cpp's token elements).
    Token {
        id: u32,
        neg: bool,
    },
    Seq(Vec<Expr>),
    Alt(Vec<Expr>),
    Rep {
        e: Box<Expr>,
        min: u32,
        max: Option<u32>,
    },
}

/// llama.cpp's MAX_REPETITION_THRESHOLD.
const MAX_REPETITION: u64 = 2000;

struct Parser<'a> {
    src: &'a [u8],
    pos: usize,
    names: Vec<String>,
    ids: HashMap<String, usize>,
    rules: Vec<Option<Expr>>,
}

type PResult<T> = std::result::Result<T, String>;

fn is_word(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'-'
}

impl<'a> Parser<'a> {
    fn peek(&self) -> u8 {
        self.src.get(self.pos).copied().unwrap_or(0)
    }
    fn at(&self, k: usize) -> u8 {
        self.src.get(self.pos + k).copied().unwrap_or(0)
    }
    fn err<T>(&self, msg: &str) -> PResult<T> {
        let line = self.src[..self.pos.min(self.src.len())].iter().filter(|&&c| c == b'\n').count() + 1;
        let rest = &self.src[self.pos.min(self.src.len())..];
        let rest = String::from_utf8_lossy(&rest[..rest.len().min(30)]).into_owned();
        Err(format!("{msg} at line {line}: {rest:?}"))
    }
    fn space(&mut self, newline_ok: bool) {
        loop {
            match self.peek() {
                b' ' | b'\t' => self.pos += 1,
                b'\r' | b'\n' if newline_ok => self.pos += 1,
                b'#' => {
                    while !matches!(self.peek(), 0 | b'\r' | b'\n') {
                        self.pos += 1;
                    }
                }
                _ => return,
            }
        }
    }
    fn name(&mut self) -> PResult<String> {
        let start = self.pos;
        while is_word(self.peek()) {
            self.pos += 1;
        }
        if self.pos == start {
            return self.err("expecting name");
        }
        Ok(String::from_utf8_lossy(&self.src[start..self.pos]).into_owned())
    }
    fn int(&mut self) -> PResult<u64> {
        let start = self.pos;
        while self.peek().is_ascii_digit() {
            self.pos += 1;
        }
        if self.pos == start {
            return self.err("expecting an int");
        }
        std::str::from_utf8(&self.src[start..self.pos])
            .unwrap()
            .parse::<u64>()
            .or_else(|_| self.err("integer too large"))
    }
    fn symbol(&mut self, name: &str) -> usize {
        if let Some(&i) = self.ids.get(name) {
            return i;
        }
        let i = self.names.len();
        self.names.push(name.to_string());
        self.ids.insert(name.to_string(), i);
        self.rules.push(None);
        i
    }
    fn hex(&mut self, n: usize) -> PResult<u32> {
        let mut v: u32 = 0;
        for _ in 0..n {
            let c = self.peek();
            let d = match c {
                b'0'..=b'9' => c - b'0',
                b'a'..=b'f' => c - b'a' + 10,
                b'A'..=b'F' => c - b'A' + 10,
                _ => return self.err(&format!("expecting {n} hex chars")),
            };
            v = (v << 4) | d as u32;
            self.pos += 1;
        }
        Ok(v)
    }
    /// One (possibly escaped) character as a code point.
    fn char(&mut self) -> PResult<u32> {
        match self.peek() {
            0 if self.pos >= self.src.len() => self.err("unexpected end of input"),
            b'\\' => {
                let c = self.at(1);
                self.pos += 2;
                match c {
                    b'x' => self.hex(2),
                    b'u' => self.hex(4),
                    b'U' => self.hex(8),
                    b't' => Ok('\t' as u32),
                    b'r' => Ok('\r' as u32),
                    b'n' => Ok('\n' as u32),
                    b'\\' | b'"' | b'[' | b']' | b'-' => Ok(c as u32),
                    _ => {
                        self.pos -= 2;
                        self.err("unknown escape")
                    }
                }
            }
            _ => {
                let rest = &self.src[self.pos..];
                let len = match rest[0] >> 4 {
                    0xC | 0xD => 2,
                    0xE => 3,
                    0xF => 4,
                    _ => 1,
                };
                match std::str::from_utf8(&rest[..len.min(rest.len())]).ok().and_then(|s| s.chars().next()) {
                    Some(ch) => {
                        self.pos += len;
                        Ok(ch as u32)
                    }
                    None => self.err("invalid UTF-8"),
                }
            }
        }
    }
    fn token(&mut self) -> PResult<u32> {
        // At '<'. Only numeric ids `<[N]>` are resolvable without a vocabulary.
        self.pos += 1;
        if self.peek() != b'[' {
            return self.err("token by text (`<text>`) is not supported, use `<[id]>`");
        }
        self.pos += 1;
        let id = self.int()?;
        if id > u32::MAX as u64 {
            return self.err("parsed token id is too big");
        }
        if self.peek() != b']' {
            return self.err("expecting ']'");
        }
        self.pos += 1;
        if self.peek() != b'>' {
            return self.err("expecting '>'");
        }
        self.pos += 1;
        Ok(id as u32)
    }
    fn alternates(&mut self, nested: bool) -> PResult<Expr> {
        let mut alts = vec![self.sequence(nested)?];
        while self.peek() == b'|' {
            self.pos += 1;
            self.space(true);
            alts.push(self.sequence(nested)?);
        }
        Ok(if alts.len() == 1 { alts.pop().unwrap() } else { Expr::Alt(alts) })
    }
    fn sequence(&mut self, nested: bool) -> PResult<Expr> {
        let mut seq: Vec<Expr> = Vec::new();
        loop {
            let c = self.peek();
            if c == b'"' {
                self.pos += 1;
                let mut s = Vec::new();
                while self.peek() != b'"' {
                    if self.pos >= self.src.len() {
                        return self.err("unexpected end of input");
                    }
                    s.push(cp(self.char()?, self)?);
                }
                self.pos += 1;
                seq.push(Expr::Lit(s));
            } else if c == b'[' {
                self.pos += 1;
                let neg = self.peek() == b'^';
                if neg {
                    self.pos += 1;
                }
                let mut ranges = Vec::new();
                while self.peek() != b']' {
                    if self.pos >= self.src.len() {
                        return self.err("unexpected end of input");
                    }
                    let lo = self.char()?;
                    let mut hi = lo;
                    if self.peek() == b'-' && self.at(1) != b']' {
                        if self.pos + 1 >= self.src.len() {
                            return self.err("unexpected end of input");
                        }
                        self.pos += 1;
                        hi = self.char()?;
                    }
                    ranges.push((lo, hi));
                }
                self.pos += 1;
                seq.push(Expr::Class { neg, ranges });
            } else if c == b'<' || c == b'!' {
                let neg = c == b'!';
                if neg {
                    self.pos += 1;
                    if self.peek() != b'<' {
                        return self.err("expecting '<'");
                    }
                }
                let id = self.token()?;
                seq.push(Expr::Token { id, neg });
            } else if is_word(c) {
                let n = self.name()?;
                seq.push(Expr::Ref(self.symbol(&n)));
            } else if c == b'(' {
                self.pos += 1;
                self.space(true);
                let e = self.alternates(true)?;
                if self.peek() != b')' {
                    return self.err("expecting ')'");
                }
                self.pos += 1;
                seq.push(e);
            } else if c == b'.' {
                self.pos += 1;
                seq.push(Expr::Any);
            } else if matches!(c, b'*' | b'+' | b'?' | b'{') {
                let Some(last) = seq.pop() else {
                    return self.err("expecting preceding item to */+/?/{");
                };
                self.pos += 1;
                let (min, max) = match c {
                    b'*' => (0, None),
                    b'+' => (1, None),
                    b'?' => (0, Some(1)),
                    _ => {
                        self.space(nested);
                        let min = self.int()?;
                        self.space(nested);
                        let max = if self.peek() == b'}' {
                            Some(min)
                        } else if self.peek() == b',' {
                            self.pos += 1;
                            self.space(nested);
                            let max = if self.peek().is_ascii_digit() { Some(self.int()?) } else { None };
                            self.space(nested);
                            if self.peek() != b'}' {
                                return self.err("expecting '}'");
                            }
                            max
                        } else {
                            return self.err("expecting ','");
                        };
                        self.pos += 1;
                        if min > MAX_REPETITION {
                            return self.err("number of repetitions exceeds sane defaults");
                        }
                        if let Some(m) = max {
                            if m < min {
                                return self.err("repetition maximum below its minimum");
                            }
                        }
                        (min as u32, max.filter(|&m| m <= MAX_REPETITION).map(|m| m as u32))
                    }
                };
                seq.push(Expr::Rep { e: Box::new(last), min, max });
            } else {
                break;
            }
            self.space(nested);
        }
        Ok(if seq.len() == 1 { seq.pop().unwrap() } else { Expr::Seq(seq) })
    }
    fn rule(&mut self) -> PResult<()> {
        let name = self.name()?;
        self.space(false);
        if !self.src[self.pos..].starts_with(b"::=") {
            return self.err("expecting ::=");
        }
        self.pos += 3;
        self.space(true);
        let id = self.symbol(&name);
        let body = self.alternates(false)?;
        self.rules[id] = Some(body);
        match self.peek() {
            b'\r' => self.pos += if self.at(1) == b'\n' { 2 } else { 1 },
            b'\n' => self.pos += 1,
            _ if self.pos >= self.src.len() => {}
            _ => return self.err("expecting newline or end"),
        }
        self.space(true);
        Ok(())
    }
}

fn cp(c: u32, p: &Parser) -> PResult<char> {
    match char::from_u32(c) {
        Some(ch) => Ok(ch),
        None => p.err(&format!("U+{c:X} is not a Unicode scalar value")),
    }
}

/// A parsed, checked GBNF grammar.
#[derive(Debug)]
pub(super) struct Gbnf {
    names: Vec<String>,
    rules: Vec<Expr>,
    root: usize,
}

impl Gbnf {
    pub(super) fn parse(text: &str, root: &str) -> PResult<Gbnf> {
        let mut p = Parser { src: text.as_bytes(), pos: 0, names: Vec::new(), ids: HashMap::new(), rules: Vec::new() };
        p.space(true);
        while p.pos < p.src.len() {
            p.rule()?;
        }
        if p.names.is_empty() {
            return Err("empty grammar: no rules".into());
        }
        let mut rules = Vec::with_capacity(p.rules.len());
        for (i, r) in p.rules.into_iter().enumerate() {
            match r {
                Some(r) => rules.push(r),
                None => return Err(format!("Undefined rule identifier '{}'", p.names[i])),
            }
        }
        let Some(&root) = p.ids.get(root) else {
            return Err(format!("grammar does not contain a '{root}' rule"));
        };
        for (i, r) in rules.iter().enumerate() {
            check_classes(r).map_err(|m| format!("rule '{}': {m}", p.names[i]))?;
        }
        Ok(Gbnf { names: p.names, rules, root })
    }

    /// The Lark text for llguidance.
    pub(super) fn to_lark(&self) -> PResult<String> {
        self.with_heads().analyse_and_emit()
    }

    /// Splits the regular, non-nullable head of each rule sequence into a rule of its own
    /// (`string ::= "\"" char* "\"" ws` → `string ::= string__h0 ws`), so it can become a lexeme
    /// even where the whole rule cannot (here the trailing optional `ws` makes it conflict with
    /// itself). Same language; a head that conflicts is simply demoted again.
    fn with_heads(&self) -> Gbnf {
        let n = self.rules.len();
        let regular = fixpoint(n, |i, r| is_regular(&self.rules[i], r));
        let nullable = fixpoint(n, |i, nl| is_nullable(&self.rules[i], nl));
        let mut g = Gbnf { names: self.names.clone(), rules: self.rules.clone(), root: self.root };
        for i in 0..n {
            let mut body = g.rules[i].clone();
            let mut count = 0;
            {
                let mut split_seq = |v: &mut Vec<Expr>, g: &mut Gbnf| {
                    let k = v.iter().take_while(|e| is_regular(e, &regular)).count().min(v.len().saturating_sub(1));
                    let head = Expr::Seq(v[..k].to_vec());
                    let worth = k >= 2 || (k == 1 && matches!(v[0], Expr::Rep { .. } | Expr::Alt(_) | Expr::Seq(_)));
                    if worth && !is_nullable(&head, &nullable) {
                        let id = g.rules.len();
                        g.names.push(format!("{}__h{count}", self.names[i]));
                        g.rules.push(head);
                        count += 1;
                        v.splice(..k, [Expr::Ref(id)]);
                    }
                };
                match &mut body {
                    Expr::Seq(v) => split_seq(v, &mut g),
                    Expr::Alt(alts) => {
                        for a in alts.iter_mut() {
                            if let Expr::Seq(v) = a {
                                split_seq(v, &mut g);
                            }
                        }
                    }
                    _ => {}
                }
            }
            g.rules[i] = body;
        }
        g
    }

    fn analyse_and_emit(&self) -> PResult<String> {
        let n = self.rules.len();
        // Regular = reaches no rule that reaches itself, and holds no token element.
        let mut regular = vec![false; n];
        loop {
            let mut changed = false;
            for i in 0..n {
                if !regular[i] && is_regular(&self.rules[i], &regular) {
                    regular[i] = true;
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        let mut nullable = vec![false; n];
        loop {
            let mut changed = false;
            for i in 0..n {
                if !nullable[i] && is_nullable(&self.rules[i], &nullable) {
                    nullable[i] = true;
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        let mut rx_cache: Vec<Option<String>> = vec![None; n];
        for i in 0..n {
            if regular[i] {
                self.rule_regex(i, &regular, &mut rx_cache);
            }
        }
        let mut terminal: Vec<bool> = (0..n).map(|i| regular[i] && !nullable[i] && i != self.root).collect();
        let mut split: HashSet<Vec<char>> = HashSet::new();
        let mut automata = Automata::default();
        // Demote / split until no two rule-level lexemes conflict.
        for _round in 0..(4 * n + 64) {
            let reach = self.reachable(&terminal);
            let mut lexemes: Vec<Lexeme> = Vec::new();
            let mut seen = HashSet::new();
            for i in 0..n {
                if reach[i] && !terminal[i] {
                    collect_lexemes(&self.rules[i], &terminal, &split, &rx_cache, &mut lexemes, &mut seen);
                }
            }
            let mut bad_terms = HashSet::new();
            let mut bad_lits = HashSet::new();
            for a in &lexemes {
                for b in &lexemes {
                    if !automata.conflict(&a.regex, &b.regex) {
                        continue;
                    }
                    // Fix the pair: demote a rule, else split a literal (A first: once A is
                    // single characters it can no longer be cut short).
                    match (&a.src, &b.src) {
                        (LexSrc::Rule(i), _) | (_, LexSrc::Rule(i)) => {
                            bad_terms.insert(*i);
                        }
                        (LexSrc::Lit(s), _) | (_, LexSrc::Lit(s)) => {
                            bad_lits.insert(s.clone());
                        }
                        (LexSrc::Char, LexSrc::Char) => {
                            return Err("internal: two single-character lexemes conflict".into())
                        }
                    }
                }
            }
            if bad_terms.is_empty() && bad_lits.is_empty() {
                return Ok(self.emit(&terminal, &split, &rx_cache));
            }
            for i in bad_terms {
                terminal[i] = false;
            }
            split.extend(bad_lits);
        }
        Err("grammar analysis did not converge".into())
    }

    fn reachable(&self, terminal: &[bool]) -> Vec<bool> {
        let mut reach = vec![false; self.rules.len()];
        let mut stack = vec![self.root];
        reach[self.root] = true;
        while let Some(i) = stack.pop() {
            if terminal[i] {
                continue;
            }
            let mut refs = Vec::new();
            refs_of(&self.rules[i], &mut refs);
            for r in refs {
                if !reach[r] {
                    reach[r] = true;
                    stack.push(r);
                }
            }
        }
        reach
    }

    fn rule_regex(&self, i: usize, regular: &[bool], cache: &mut Vec<Option<String>>) -> String {
        if let Some(r) = &cache[i] {
            return r.clone();
        }
        let r = self.regex_of(&self.rules[i], regular, cache);
        cache[i] = Some(r.clone());
        r
    }

    fn regex_of(&self, e: &Expr, regular: &[bool], cache: &mut Vec<Option<String>>) -> String {
        match e {
            Expr::Lit(s) => lit_regex(s),
            Expr::Class { neg, ranges } => class_regex(*neg, ranges),
            Expr::Any => "(?s:.)".into(),
            Expr::Ref(i) => format!("(?:{})", self.rule_regex(*i, regular, cache)),
            Expr::Token { .. } => unreachable!("token elements are never regular"),
            Expr::Seq(v) => v.iter().map(|x| format!("(?:{})", self.regex_of(x, regular, cache))).collect(),
            Expr::Alt(v) => {
                v.iter().map(|x| format!("(?:{})", self.regex_of(x, regular, cache))).collect::<Vec<_>>().join("|")
            }
            Expr::Rep { e, min, max } => format!("(?:{}){}", self.regex_of(e, regular, cache), rep_suffix(*min, *max)),
        }
    }

    fn lark_name(&self, i: usize, terminal: bool) -> String {
        let clean: String = self.names[i].chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
        if terminal {
            format!("T{i}_{}", clean.to_ascii_uppercase())
        } else {
            format!("r{i}_{}", clean.to_ascii_lowercase())
        }
    }

    fn emit(&self, terminal: &[bool], split: &HashSet<Vec<char>>, rx: &[Option<String>]) -> String {
        let reach = self.reachable(terminal);
        let mut out = String::from("%llguidance {}\n\n");
        let _ = writeln!(out, "start: {}", self.lark_name(self.root, false));
        for i in 0..self.rules.len() {
            if !reach[i] {
                continue;
            }
            if terminal[i] {
                let _ = writeln!(out, "{}: /{}/", self.lark_name(i, true), rx[i].as_ref().unwrap());
            } else {
                let body = self.lark_expr(&self.rules[i], terminal, split, true);
                let _ = writeln!(out, "{}: {}", self.lark_name(i, false), body);
            }
        }
        out
    }

    fn lark_expr(&self, e: &Expr, terminal: &[bool], split: &HashSet<Vec<char>>, top: bool) -> String {
        let atom = |s: String| s;
        match e {
            Expr::Lit(s) if s.is_empty() => "\"\"".into(),
            Expr::Lit(s) if split.contains(s) && s.len() > 1 => {
                let parts: Vec<String> = s.iter().map(|c| format!("/{}/", lit_regex(&[*c]))).collect();
                if top {
                    parts.join(" ")
                } else {
                    format!("({})", parts.join(" "))
                }
            }
            Expr::Lit(s) => atom(format!("/{}/", lit_regex(s))),
            Expr::Class { neg, ranges } => format!("/{}/", class_regex(*neg, ranges)),
            Expr::Any => "/(?s:.)/".into(),
            Expr::Ref(i) => self.lark_name(*i, terminal[*i]),
            Expr::Token { id, neg } => {
                if *neg {
                    format!("<[^{id}]>")
                } else {
                    format!("<[{id}]>")
                }
            }
            Expr::Seq(v) if v.is_empty() => "\"\"".into(),
            Expr::Seq(v) => {
                let s = v.iter().map(|x| self.lark_expr(x, terminal, split, false)).collect::<Vec<_>>().join(" ");
                if top {
                    s
                } else {
                    format!("({s})")
                }
            }
            Expr::Alt(v) => {
                let s = v.iter().map(|x| self.lark_expr(x, terminal, split, true)).collect::<Vec<_>>().join(" | ");
                if top {
                    s
                } else {
                    format!("({s})")
                }
            }
            Expr::Rep { e, min, max } => {
                let inner = self.lark_expr(e, terminal, split, false);
                let inner = if matches!(**e, Expr::Seq(_) | Expr::Alt(_)) || inner.contains(' ') {
                    if inner.starts_with('(') && inner.ends_with(')') {
                        inner
                    } else {
                        format!("({inner})")
                    }
                } else {
                    inner
                };
                format!("{inner}{}", rep_suffix(*min, *max))
            }
        }
    }
}

/// The least fixpoint of a per-rule monotone property.
fn fixpoint(n: usize, f: impl Fn(usize, &[bool]) -> bool) -> Vec<bool> {
    let mut v = vec![false; n];
    loop {
        let mut changed = false;
        for i in 0..n {
            if !v[i] && f(i, &v) {
                v[i] = true;
                changed = true;
            }
        }
        if !changed {
            return v;
        }
    }
}

fn check_classes(e: &Expr) -> PResult<()> {
    match e {
        Expr::Class { ranges, .. } => {
            for &(lo, hi) in ranges {
                for c in [lo, hi] {
                    if char::from_u32(c).is_none() {
                        return Err(format!("U+{c:X} in a character class is not a Unicode scalar value"));
                    }
                }
            }
            Ok(())
        }
        Expr::Seq(v) | Expr::Alt(v) => v.iter().try_for_each(check_classes),
        Expr::Rep { e, .. } => check_classes(e),
        _ => Ok(()),
    }
}

fn rep_suffix(min: u32, max: Option<u32>) -> String {
    match (min, max) {
        (0, None) => "*".into(),
        (1, None) => "+".into(),
        (0, Some(1)) => "?".into(),
        (m, None) => format!("{{{m},}}"),
        (m, Some(x)) if m == x => format!("{{{m}}}"),
        (m, Some(x)) => format!("{{{m},{x}}}"),
    }
}

fn esc_char(c: char, out: &mut String) {
    if c.is_ascii_alphanumeric() || c == ' ' || c == '_' {
        out.push(c);
    } else {
        let _ = write!(out, "\\x{{{:X}}}", c as u32);
    }
}

fn lit_regex(s: &[char]) -> String {
    if s.is_empty() {
        return "(?:)".into();
    }
    let mut out = String::new();
    for &c in s {
        esc_char(c, &mut out);
    }
    out
}

fn class_regex(neg: bool, ranges: &[(u32, u32)]) -> String {
    let mut out = String::from(if neg { "[^" } else { "[" });
    for &(lo, hi) in ranges {
        let (lo, hi) = (char::from_u32(lo).unwrap(), char::from_u32(hi).unwrap());
        // llama.cpp matches lo <= c <= hi, so an inverted range matches nothing.
        if lo > hi {
            continue;
        }
        let _ = write!(out, "\\x{{{:X}}}", lo as u32);
        if hi != lo {
            let _ = write!(out, "-\\x{{{:X}}}", hi as u32);
        }
    }
    if out.len() == 1 || (neg && out.len() == 2) {
        // An empty class matches nothing; an empty negated one matches any character.
        return if neg { "(?s:.)".into() } else { "[^\\x{0}-\\x{10FFFF}]".into() };
    }
    out.push(']');
    out
}

fn is_regular(e: &Expr, regular: &[bool]) -> bool {
    match e {
        Expr::Lit(_) | Expr::Class { .. } | Expr::Any => true,
        Expr::Ref(i) => regular[*i],
        Expr::Token { .. } => false,
        Expr::Seq(v) | Expr::Alt(v) => v.iter().all(|x| is_regular(x, regular)),
        Expr::Rep { e, .. } => is_regular(e, regular),
    }
}

fn is_nullable(e: &Expr, nullable: &[bool]) -> bool {
    match e {
        Expr::Lit(s) => s.is_empty(),
        Expr::Class { .. } | Expr::Any | Expr::Token { .. } => false,
        Expr::Ref(i) => nullable[*i],
        Expr::Seq(v) => v.iter().all(|x| is_nullable(x, nullable)),
        Expr::Alt(v) => v.iter().any(|x| is_nullable(x, nullable)),
        Expr::Rep { e, min, .. } => *min == 0 || is_nullable(e, nullable),
    }
}

fn refs_of(e: &Expr, out: &mut Vec<usize>) {
    match e {
        Expr::Ref(i) => out.push(*i),
        Expr::Seq(v) | Expr::Alt(v) => v.iter().for_each(|x| refs_of(x, out)),
        Expr::Rep { e, .. } => refs_of(e, out),
        _ => {}
    }
}

enum LexSrc {
    Rule(usize),
    Lit(Vec<char>),
    /// A single character (class, `.`, one-character literal): never cut short itself, but it
    /// can complete while a longer lexeme goes on.
    Char,
}

struct Lexeme {
    src: LexSrc,
    regex: String,
}

/// The lexemes a rule body puts at the parser level (token elements are not text lexemes).
fn collect_lexemes(
    e: &Expr,
    terminal: &[bool],
    split: &HashSet<Vec<char>>,
    rx: &[Option<String>],
    out: &mut Vec<Lexeme>,
    seen: &mut HashSet<String>,
) {
    let mut push = |src: LexSrc, regex: String, key: String| {
        if seen.insert(key) {
            out.push(Lexeme { src, regex });
        }
    };
    match e {
        Expr::Lit(s) if s.len() > 1 && !split.contains(s) => {
            let regex = lit_regex(s);
            push(LexSrc::Lit(s.clone()), regex.clone(), regex);
        }
        Expr::Lit(s) => {
            for c in s {
                let regex = lit_regex(&[*c]);
                push(LexSrc::Char, regex.clone(), regex);
            }
        }
        Expr::Class { neg, ranges } => {
            let regex = class_regex(*neg, ranges);
            push(LexSrc::Char, regex.clone(), regex);
        }
        Expr::Any => push(LexSrc::Char, "(?s:.)".into(), "(?s:.)".into()),
        Expr::Ref(i) if terminal[*i] => push(LexSrc::Rule(*i), rx[*i].clone().unwrap(), format!("#{i}")),
        Expr::Seq(v) | Expr::Alt(v) => v.iter().for_each(|x| collect_lexemes(x, terminal, split, rx, out, seen)),
        Expr::Rep { e, .. } => collect_lexemes(e, terminal, split, rx, out, seen),
        _ => {}
    }
}

/// Derivative automata of the lexeme regexes, kept across rounds.
#[derive(Default)]
struct Automata {
    rx: HashMap<String, Option<derivre::Regex>>,
    memo: HashMap<(String, String), bool>,
}

/// States explored per pair before giving up (and calling the pair a conflict).
const MAX_PAIR_STATES: usize = 20_000;

impl Automata {
    /// Can lexeme A complete on some string `a` while lexeme B still continues after `a` plus one
    /// more byte? Then greedy lexing would cut a parse. Unknown (too big, bad regex) counts as yes.
    fn conflict(&mut self, a: &str, b: &str) -> bool {
        let key = (a.to_string(), b.to_string());
        if let Some(&r) = self.memo.get(&key) {
            return r;
        }
        for r in [a, b] {
            if !self.rx.contains_key(r) {
                self.rx.insert(r.to_string(), derivre::Regex::new(r).ok());
            }
        }
        // Two automata (A may equal B): clone so both can be stepped independently.
        let (Some(Some(ra)), Some(Some(rb))) = (self.rx.get(a).cloned(), self.rx.get(b).cloned()) else {
            self.memo.insert(key, true);
            return true;
        };
        let r = pair_conflict(ra, rb);
        self.memo.insert(key, r);
        r
    }
}

fn pair_conflict(mut ra: derivre::Regex, mut rb: derivre::Regex) -> bool {
    // Start one byte in, so every explored A-state has consumed a non-empty `a`.
    let (ia, ib) = (ra.initial_state(), rb.initial_state());
    let mut seen = HashSet::new();
    let mut stack = Vec::new();
    for byte in 0..=255u8 {
        let (na, nb) = (ra.transition(ia, byte), rb.transition(ib, byte));
        if !na.is_dead() && !nb.is_dead() && seen.insert((na, nb)) {
            stack.push((na, nb));
        }
    }
    while let Some((sa, sb)) = stack.pop() {
        if seen.len() > MAX_PAIR_STATES {
            return true;
        }
        let a_done = ra.is_accepting(sa);
        for byte in 0..=255u8 {
            let nb = rb.transition(sb, byte);
            if nb.is_dead() {
                continue;
            }
            if a_done {
                // A has completed on `a` and B goes on after `a` + byte.
                return true;
            }
            let na = ra.transition(sa, byte);
            if !na.is_dead() && seen.insert((na, nb)) {
                stack.push((na, nb));
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_errors() {
        for (g, want) in [
            ("root ::= foo", "Undefined rule identifier 'foo'"),
            ("root ::= \"a", "unexpected end of input"),
            ("root = \"a\"", "expecting ::="),
            ("root ::= \"\\q\"", "unknown escape"),
            ("root ::= * \"a\"", "expecting preceding item"),
            ("root ::= (\"a\"", "expecting ')'"),
            ("root ::= \"\\x4\"", "expecting 2 hex chars"),
            ("root ::= \"a\"{3,1}", "below its minimum"),
            ("other ::= \"a\"", "does not contain a 'root' rule"),
        ] {
            let e = Gbnf::parse(g, "root").unwrap_err();
            assert!(e.contains(want), "{g}: {e}");
        }
    }

    #[test]
    fn greedy_conflicts_are_found() {
        let mut a = Automata::default();
        // "5\n" completes NUM and NUM goes on with another "\n".
        assert!(a.conflict("[0-9]+[ \\n]*", "[0-9]+[ \\n]*"));
        assert!(a.conflict("ab", "abc"));
        assert!(!a.conflict("abc", "ab"));
        assert!(!a.conflict("\"[a-z]*\"", "\"[a-z]*\""));
        assert!(!a.conflict("[0-9]{3}", "[a-z]+"));
    }

    #[test]
    fn arithmetic_keeps_exact_ws() {
        let g = Gbnf::parse(
            "root ::= (expr \"=\" ws num \"\\n\")+\nexpr ::= num ([-+] num)*\nnum ::= [0-9]+ ws\nws ::= [ \\t\\n]*\n",
            "root",
        )
        .unwrap();
        let lark = g.to_lark().unwrap();
        // NUM swallowing ws would eat the final newline, so it must not be a lexeme.
        assert!(!lark.contains("T2_NUM"), "{lark}");
    }

    #[test]
    fn json_string_head_is_a_lexeme() {
        let p = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/data/grammars/json.gbnf");
        let g = Gbnf::parse(&std::fs::read_to_string(p).unwrap(), "root").unwrap();
        let lark = g.to_lark().unwrap();
        // `string ::= "\"" (...)* "\"" ws`: the quoted part is prefix-free, so one lexeme.
        assert!(lark.lines().any(|l| l.starts_with('T') && l.contains("STRING__H0")), "{lark}");
    }
}
