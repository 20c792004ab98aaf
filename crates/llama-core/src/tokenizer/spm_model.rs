//! Minimal reader of SentencePiece's `tokenizer.model` (a `ModelProto` protobuf), written by hand:
//! we need the pieces (text, score, type) plus a few trainer/normalizer fields, nothing else.
//!
//! Field numbers (sentencepiece_model.proto): ModelProto { 1: pieces, 2: trainer_spec,
//! 3: normalizer_spec }; SentencePiece { 1: piece, 2: score (float), 3: type (enum, default
//! NORMAL) }; TrainerSpec { 3: model_type, 4: vocab_size, 24: treat_whitespace_as_suffix,
//! 25: split_digits, 35: byte_fallback, 40..43: unk/bos/eos/pad id, 45..48: their pieces };
//! NormalizerSpec { 1: name, 2: precompiled_charsmap, 3: add_dummy_prefix, 4:
//! remove_extra_whitespaces, 5: escape_whitespaces }. Unknown fields are skipped.

use super::vocab::{token_type, Vocab, VocabKind, VocabOptions};
use crate::{Error, Result};

/// One vocabulary entry of the model, in id order.
#[derive(Clone, Debug, PartialEq)]
pub struct SpmPiece {
    pub piece: Vec<u8>,
    pub score: f32,
    /// SentencePiece type: NORMAL=1 UNKNOWN=2 CONTROL=3 USER_DEFINED=4 UNUSED=5 BYTE=6
    /// (same numbering as `tokenizer.ggml.token_type`).
    pub kind: i32,
}

/// The parts of a `tokenizer.model` a converter and the tokenizer need; defaults as in the proto.
#[derive(Clone, Debug, PartialEq)]
pub struct SpmModel {
    pub pieces: Vec<SpmPiece>,
    /// TrainerSpec.model_type: UNIGRAM=1 BPE=2 WORD=3 CHAR=4.
    pub model_type: i32,
    pub vocab_size: Option<i32>,
    pub byte_fallback: bool,
    pub treat_whitespace_as_suffix: bool,
    pub split_digits: bool,
    pub unk_id: i32,
    pub bos_id: i32,
    pub eos_id: i32,
    pub pad_id: i32,
    pub unk_piece: Vec<u8>,
    pub bos_piece: Vec<u8>,
    pub eos_piece: Vec<u8>,
    pub pad_piece: Vec<u8>,
    pub normalizer_name: Vec<u8>,
    pub precompiled_charsmap: Vec<u8>,
    pub add_dummy_prefix: bool,
    pub remove_extra_whitespaces: bool,
    pub escape_whitespaces: bool,
}

impl Default for SpmModel {
    fn default() -> Self {
        SpmModel {
            pieces: Vec::new(),
            model_type: 1,
            vocab_size: None,
            byte_fallback: false,
            treat_whitespace_as_suffix: false,
            split_digits: false,
            unk_id: 0,
            bos_id: 1,
            eos_id: 2,
            pad_id: -1,
            unk_piece: b"<unk>".to_vec(),
            bos_piece: b"<s>".to_vec(),
            eos_piece: b"</s>".to_vec(),
            pad_piece: b"<pad>".to_vec(),
            normalizer_name: Vec::new(),
            precompiled_charsmap: Vec::new(),
            add_dummy_prefix: true,
            remove_extra_whitespaces: true,
            escape_whitespaces: true,
        }
    }
}

/// A protobuf field value: varint, fixed 32/64-bit, or a length-delimited byte slice.
enum Wire<'a> {
    Varint(u64),
    Fixed64,
    Bytes(&'a [u8]),
    Fixed32(u32),
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// What is being parsed, for error messages.
    what: &'static str,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8], what: &'static str) -> Self {
        Reader { buf, pos: 0, what }
    }

    fn err(&self, msg: &str) -> Error {
        Error::Tokenizer(format!("tokenizer.model: {} at byte {}: {msg}", self.what, self.pos))
    }

    fn varint(&mut self) -> Result<u64> {
        let mut v: u64 = 0;
        for shift in (0..70).step_by(7) {
            let Some(&b) = self.buf.get(self.pos) else { return Err(self.err("truncated varint")) };
            self.pos += 1;
            if shift < 64 {
                v |= ((b & 0x7F) as u64) << shift;
            }
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(self.err("varint longer than 10 bytes"))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if n > self.buf.len() - self.pos {
            return Err(self.err(&format!("field of {n} bytes runs past the end")));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// Next (field number, value), or None at the end of the message.
    fn next(&mut self) -> Result<Option<(u64, Wire<'a>)>> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let key = self.varint()?;
        let field = key >> 3;
        let w = match key & 7 {
            0 => Wire::Varint(self.varint()?),
            1 => {
                self.take(8)?;
                Wire::Fixed64
            }
            2 => {
                let n = self.varint()?;
                let n = usize::try_from(n).map_err(|_| self.err("length overflows"))?;
                Wire::Bytes(self.take(n)?)
            }
            5 => Wire::Fixed32(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes"))),
            t => return Err(self.err(&format!("unsupported wire type {t} (field {field})"))),
        };
        Ok(Some((field, w)))
    }
}

fn int32(r: &Reader, w: &Wire, name: &str) -> Result<i32> {
    match w {
        // int32 negatives are sign-extended to 64 bits on the wire.
        Wire::Varint(v) => Ok(*v as i64 as i32),
        _ => Err(r.err(&format!("{name} is not a varint"))),
    }
}

fn boolean(r: &Reader, w: &Wire, name: &str) -> Result<bool> {
    match w {
        Wire::Varint(v) => Ok(*v != 0),
        _ => Err(r.err(&format!("{name} is not a varint"))),
    }
}

fn bytes<'a>(r: &Reader, w: &Wire<'a>, name: &str) -> Result<&'a [u8]> {
    match w {
        Wire::Bytes(b) => Ok(b),
        _ => Err(r.err(&format!("{name} is not length-delimited"))),
    }
}

impl SpmModel {
    pub fn parse(buf: &[u8]) -> Result<SpmModel> {
        let mut m = SpmModel::default();
        let mut r = Reader::new(buf, "ModelProto");
        while let Some((field, w)) = r.next()? {
            match field {
                1 => {
                    let b = bytes(&r, &w, "pieces")?;
                    m.pieces.push(parse_piece(b)?);
                }
                2 => parse_trainer(bytes(&r, &w, "trainer_spec")?, &mut m)?,
                3 => parse_normalizer(bytes(&r, &w, "normalizer_spec")?, &mut m)?,
                _ => {}
            }
        }
        if m.pieces.is_empty() {
            return Err(Error::Tokenizer("tokenizer.model: no pieces (not a SentencePiece model?)".into()));
        }
        Ok(m)
    }

    fn id(&self, id: i32) -> Option<u32> {
        (id >= 0 && (id as usize) < self.pieces.len()).then_some(id as u32)
    }

    pub fn bos(&self) -> Option<u32> {
        self.id(self.bos_id)
    }
    pub fn eos(&self) -> Option<u32> {
        self.id(self.eos_id)
    }
    pub fn unk(&self) -> Option<u32> {
        self.id(self.unk_id)
    }
    pub fn pad(&self) -> Option<u32> {
        self.id(self.pad_id)
    }

    /// An SPM vocabulary with the piece types as SentencePiece declares them (USER_DEFINED pieces
    /// stay USER_DEFINED, i.e. are matched in text like SentencePiece does).
    pub fn to_vocab(&self) -> Result<Vocab> {
        let tokens = self.pieces.iter().map(|p| p.piece.clone()).collect();
        let scores = self.pieces.iter().map(|p| p.score).collect();
        let types = self.pieces.iter().map(|p| p.kind).collect();
        let opts = VocabOptions {
            bos: self.bos(),
            eos: self.eos(),
            unk: self.unk(),
            pad: self.pad(),
            add_bos: Some(true),
            add_eos: Some(false),
            add_space_prefix: Some(self.add_dummy_prefix),
            remove_extra_whitespaces: Some(self.remove_extra_whitespaces),
            ..VocabOptions::default()
        };
        let mut v = Vocab::new(VocabKind::Spm, tokens, scores, types, Vec::new(), "", opts)?;
        // The proto's ids are authoritative: a model without BOS (bos_id = -1) has none.
        v.bos = self.bos();
        v.eos = self.eos();
        v.unk = self.unk();
        Ok(v)
    }
}

fn parse_piece(buf: &[u8]) -> Result<SpmPiece> {
    let mut p = SpmPiece { piece: Vec::new(), score: 0.0, kind: token_type::NORMAL };
    let mut r = Reader::new(buf, "SentencePiece");
    while let Some((field, w)) = r.next()? {
        match (field, &w) {
            (1, _) => p.piece = bytes(&r, &w, "piece")?.to_vec(),
            (2, Wire::Fixed32(v)) => p.score = f32::from_bits(*v),
            (2, _) => return Err(r.err("score is not a fixed32 float")),
            (3, _) => p.kind = int32(&r, &w, "type")?,
            _ => {}
        }
    }
    Ok(p)
}

fn parse_trainer(buf: &[u8], m: &mut SpmModel) -> Result<()> {
    let mut r = Reader::new(buf, "TrainerSpec");
    while let Some((field, w)) = r.next()? {
        match field {
            3 => m.model_type = int32(&r, &w, "model_type")?,
            4 => m.vocab_size = Some(int32(&r, &w, "vocab_size")?),
            24 => m.treat_whitespace_as_suffix = boolean(&r, &w, "treat_whitespace_as_suffix")?,
            25 => m.split_digits = boolean(&r, &w, "split_digits")?,
            35 => m.byte_fallback = boolean(&r, &w, "byte_fallback")?,
            40 => m.unk_id = int32(&r, &w, "unk_id")?,
            41 => m.bos_id = int32(&r, &w, "bos_id")?,
            42 => m.eos_id = int32(&r, &w, "eos_id")?,
            43 => m.pad_id = int32(&r, &w, "pad_id")?,
            45 => m.unk_piece = bytes(&r, &w, "unk_piece")?.to_vec(),
            46 => m.bos_piece = bytes(&r, &w, "bos_piece")?.to_vec(),
            47 => m.eos_piece = bytes(&r, &w, "eos_piece")?.to_vec(),
            48 => m.pad_piece = bytes(&r, &w, "pad_piece")?.to_vec(),
            _ => {}
        }
    }
    Ok(())
}

fn parse_normalizer(buf: &[u8], m: &mut SpmModel) -> Result<()> {
    let mut r = Reader::new(buf, "NormalizerSpec");
    while let Some((field, w)) = r.next()? {
        match field {
            1 => m.normalizer_name = bytes(&r, &w, "name")?.to_vec(),
            2 => m.precompiled_charsmap = bytes(&r, &w, "precompiled_charsmap")?.to_vec(),
            3 => m.add_dummy_prefix = boolean(&r, &w, "add_dummy_prefix")?,
            4 => m.remove_extra_whitespaces = boolean(&r, &w, "remove_extra_whitespaces")?,
            5 => m.escape_whitespaces = boolean(&r, &w, "escape_whitespaces")?,
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_garbage_without_panicking() {
        for bad in [&b""[..], b"\xff", b"\x0a\xff\xff\xff\xff\x0f", b"\x0b", b"\x0a\x05\x0a\x03ab"] {
            assert!(SpmModel::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn parses_handmade_model() {
        // pieces: "<unk>" type 2; "▁a" score -1.5; trainer bos_id = -1; normalizer add_dummy_prefix = 0
        let mut buf = vec![0x0a, 9, 0x0a, 5];
        buf.extend_from_slice(b"<unk>");
        buf.extend_from_slice(&[0x18, 2]);
        let mut p = vec![0x0a, 4];
        p.extend_from_slice("▁a".as_bytes());
        p.push(0x15);
        p.extend_from_slice(&(-1.5f32).to_le_bytes());
        buf.push(0x0a);
        buf.push(p.len() as u8);
        buf.extend_from_slice(&p);
        let mut t = vec![0xc8, 0x02]; // field 41 varint
        t.extend_from_slice(&[0xff; 9]);
        t.push(0x01);
        buf.push(0x12);
        buf.push(t.len() as u8);
        buf.extend_from_slice(&t);
        buf.extend_from_slice(&[0x1a, 2, 0x18, 0]);
        let m = SpmModel::parse(&buf).unwrap();
        assert_eq!(m.pieces.len(), 2);
        assert_eq!(m.pieces[0].kind, 2);
        assert_eq!(m.pieces[1].piece, "▁a".as_bytes());
        assert_eq!(m.pieces[1].score, -1.5);
        assert_eq!(m.pieces[1].kind, 1);
        assert_eq!(m.bos_id, -1);
        assert!(!m.add_dummy_prefix);
        assert!(m.remove_extra_whitespaces);
    }
}
