//! Red Cloud configuration. PLACEHOLDER: being written.
