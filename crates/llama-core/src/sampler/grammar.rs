//! `grammar`: llama.cpp's grammar sampler over our llguidance [`Matcher`]: every token the
//! constraint forbids gets logit -inf (end-of-generation only where the grammar may end), and the
//! chosen token advances the matcher. It needs the whole vocabulary, so it runs before any stage
//! that sorts or truncates ([`Chain::insert_grammar`](super::Chain::insert_grammar)).

use super::{Candidates, Sampler};
use crate::grammar::Matcher;
use crate::{Error, Result};

/// The text of an error, without the "grammar: " its display adds (it is wrapped again).
fn message(e: Error) -> String {
    match e {
        Error::Grammar(m) => m,
        other => other.to_string(),
    }
}

#[derive(Clone)]
pub struct GrammarStage {
    m: Matcher,
    /// The first failure (mask or accept), reported by the chain after the stage ran.
    error: Option<String>,
}

impl GrammarStage {
    pub fn new(m: Matcher) -> Self {
        GrammarStage { m, error: None }
    }
}

impl Sampler for GrammarStage {
    fn name(&self) -> &'static str {
        "grammar"
    }

    fn apply(&mut self, cur: &mut Candidates) {
        if self.error.is_some() {
            return;
        }
        if let Err(e) = self.m.mask_candidates(&mut cur.data) {
            self.error = Some(message(e));
        }
    }

    fn accept(&mut self, token: u32) {
        if self.error.is_none() {
            if let Err(e) = self.m.accept(token) {
                self.error = Some(message(e));
            }
        }
    }

    fn reset(&mut self) {
        self.m.reset();
        self.error = None;
    }

    fn check(&mut self) -> Result<()> {
        match self.error.take() {
            Some(e) => Err(Error::Grammar(e)),
            None => Ok(()),
        }
    }

    fn clone_box(&self) -> Box<dyn Sampler> {
        Box::new(self.clone())
    }
}
