//! One error type for the crate: each variant says what went wrong in words a user can act on.

/// Everything that can go wrong between a checkpoint, a photo and a label map.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the checkpoint's config.json is invalid: {0}")]
    Config(String),
    #[error("the checkpoint does not fit this model: {0}")]
    Weights(String),
    /// The weights file kept for reading token rows later could not be read (e.g. the browser's
    /// storage was cleared under the page).
    #[error("cannot read the token table from the weights file kept in the browser ({0}): load the model again")]
    WeightsFile(String),
    #[error("the checkpoint's tokenizer is unusable: {0}")]
    Tokenizer(String),
    #[error("cannot decode the photo: {0}")]
    Image(String),
    #[error("{0}")]
    InvalidInput(String),
    /// A COCO file or mask that cannot be read or joined.
    #[error("COCO annotations: {0}")]
    Annotations(String),
    /// No GPU could be used; the CPU path runs instead.
    #[error("no usable GPU: {0}")]
    GpuUnavailable(String),
    #[error("GPU error: {0}")]
    Gpu(String),
    #[error("computation failed: {0}")]
    Compute(#[from] candle_core::Error),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    #[cfg(native)]
    pub(crate) fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        Error::Io { path: path.as_ref().display().to_string(), source }
    }
}
