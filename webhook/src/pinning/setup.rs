//! Why pinning cannot start from the registry settings: read by the credentials and the resolver
//! alike, so it lives apart from both.

use std::path::PathBuf;

/// Why the resolver cannot be built from the registry settings: a start-up error, never a
/// failure on every refresh. The I/O cause is the error's source, not part of its message, so
/// a chain printed whole (`{:#}`) names it once.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("cannot read Docker config {path}")]
    ReadDockerConfig { path: PathBuf, source: std::io::Error },
    #[error("invalid Docker config {path}: {message}")]
    InvalidDockerConfig { path: PathBuf, message: String },
    #[error("cannot read CA bundle {path}")]
    ReadCaBundle { path: PathBuf, source: std::io::Error },
    #[error("CA bundle {path} holds no PEM certificate")]
    EmptyCaBundle { path: PathBuf },
}
