//! Private files written whole: a new file under an unpredictable name, synced, then renamed
//! into place by the caller. Used for the token signing keys and the directory state store.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

/// `len` random bytes, hex-encoded: an unpredictable part of a temporary file's name. `None`
/// if the system has no random numbers to give.
pub(crate) fn random_hex(len: usize) -> Option<String> {
    let mut bytes = vec![0u8; len];
    aws_lc_rs::rand::fill(&mut bytes).ok()?;
    Some(hex::encode(bytes))
}

/// Creates `tmp` (never an existing file or symlink there: `create_new`), mode 0600, writes
/// `data` and syncs it. A file it created is removed again if writing fails.
pub(crate) fn write_new(tmp: &Path, data: &[u8]) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(tmp)?;
    let written = f.write_all(data).and_then(|()| f.sync_all());
    if written.is_err() {
        let _ = std::fs::remove_file(tmp);
    }
    written
}
