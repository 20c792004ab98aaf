//! Tokenizers built from GGUF metadata (`tokenizer.ggml.*`) or a bare SentencePiece `tokenizer.model`.
