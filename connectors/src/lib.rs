//! Red Cloud connectors: everything that talks to the outside. PLACEHOLDER.
