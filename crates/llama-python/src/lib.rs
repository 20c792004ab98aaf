//! Python bindings: the only crate that sees pyo3. (Module wiring lands with the core APIs.)
