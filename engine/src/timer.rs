//! Timers: a hierarchical timing wheel. PLACEHOLDER: being written.
