//! Python bindings: the only crate that sees pyo3.
