//! Files a user names, read whole: only regular files (a named pipe or a device may never end, and
//! opening a pipe waits for a writer), and no more than a cap, even if the file grows while read.

use std::io::Read;
use std::path::Path;

use crate::error::{Error, Result};

/// `path`'s bytes, if it is a regular file of at most `cap` bytes; `what` names such files in
/// errors ("photos", "weights files"). Refusals do not repeat the path: callers say which file.
pub fn read_bounded(path: &Path, cap: u64, what: &str) -> Result<Vec<u8>> {
    // Looked at before opening: opening a named pipe waits for a writer.
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if !meta.is_file() {
        return Err(Error::InvalidInput("not a regular file (a pipe, a device or a folder)".into()));
    }
    let mb = |b: u64| b.div_ceil(1 << 20);
    if meta.len() > cap {
        return Err(Error::InvalidInput(format!("the file is {} MB; {what} of at most {} MB are read", mb(meta.len()), mb(cap))));
    }
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(cap + 1).read_to_end(&mut bytes).map_err(|e| Error::io(path, e))?;
    if bytes.len() as u64 > cap {
        return Err(Error::InvalidInput(format!("the file grew past {} MB while it was read", mb(cap))));
    }
    Ok(bytes)
}
