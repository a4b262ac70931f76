//! Environment packages: which managers this server can install ([`spec`], pure).

pub mod spec;
