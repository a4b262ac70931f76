//! Environment packages: which managers this server can install ([`registries`], read from the
//! host's tools), the normalized spec, its cache key and install script ([`spec`], pure), how
//! apt packages become a layer without touching the host ([`apt`]), which layers to evict
//! ([`eviction`], pure), and the layers on disk ([`layer`], I/O).

pub mod apt;
pub mod eviction;
pub mod layer;
pub mod registries;
pub mod spec;
