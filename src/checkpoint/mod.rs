//! Checkpoint IO: reading weights files (safetensors or PyTorch's zip) a tensor at a time, the
//! smaller copies `groupseg convert` writes (f16, int8 with per-row scales), and the token table's
//! rows read from a file left on disk.

pub mod convert;
pub mod token_rows;
pub mod weights;
