//! Checkpoint conversion: Meta `consolidated.NN.pth` and Hugging Face safetensors to GGUF.
