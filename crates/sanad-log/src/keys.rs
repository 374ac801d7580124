//! The log's signing key on disk: generated with the operating system's CSPRNG, stored in the
//! Go note package's signer-key form in a file only its owner may read, never printed.

use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;

use rand::RngCore as _;
use sanad_tlog::NoteSigner;
use zeroize::Zeroizing;

use crate::Error;

/// File name of the next key while a rotation is in progress.
pub const NEXT_KEY_FILE: &str = "log.key.next";

/// Replaces the key file with the next key (atomic rename, then the folder is synced).
///
/// # Errors
/// [`Error::Io`].
pub fn install_next_key(dir: &Path) -> Result<(), Error> {
    let (next, current) = (dir.join(NEXT_KEY_FILE), dir.join(crate::KEY_FILE));
    fs::rename(&next, &current)
        .map_err(|e| Error::io(format!("installing {}", next.display()), e))?;
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(format!("syncing {}", dir.display()), e))
}

/// Finishes or abandons a rotation interrupted by a crash: if a next key exists and the stored
/// checkpoint carries its signature, the rotation committed and the next key becomes the key;
/// otherwise the rotation never committed and the next key is removed.
///
/// # Errors
/// [`Error::Io`], [`Error::KeyFilePermissions`], [`Error::Format`].
pub fn finish_rotation(dir: &Path, checkpoint: &[u8]) -> Result<(), Error> {
    let next_path = dir.join(NEXT_KEY_FILE);
    if !next_path.exists() {
        return Ok(());
    }
    let next = load_key_file(&next_path)?;
    let committed = sanad_tlog::Note::parse(checkpoint)
        .is_ok_and(|note| note.verify(&[next.verifier()]).is_ok());
    if committed {
        install_next_key(dir)
    } else {
        fs::remove_file(&next_path)
            .map_err(|e| Error::io(format!("removing {}", next_path.display()), e))
    }
}

/// Generates a fresh Ed25519 key for `origin` and writes it to `path` with mode 0600. Refuses to
/// overwrite an existing file.
///
/// # Errors
/// [`Error::Io`] when the file exists or cannot be written; [`Error::Format`] for a bad origin.
pub fn generate_key_file(path: &Path, origin: &str) -> Result<NoteSigner, Error> {
    let mut seed = Zeroizing::new([0u8; 32]);
    rand::rngs::OsRng.fill_bytes(seed.as_mut());
    let signer = NoteSigner::from_seed(origin, &seed)?;
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::io(format!("creating key file {}", path.display()), e))?;
    let text = signer.to_signer_key();
    file.write_all(text.as_bytes())
        .and_then(|()| file.write_all(b"\n"))
        .and_then(|()| file.sync_all())
        .map_err(|e| Error::io(format!("writing key file {}", path.display()), e))?;
    Ok(signer)
}

/// Loads the signing key from `path`, refusing a file that anyone but its owner can read or
/// write.
///
/// # Errors
/// [`Error::KeyFilePermissions`] for a group- or world-accessible file; [`Error::Io`];
/// [`Error::Format`] for a malformed key.
pub fn load_key_file(path: &Path) -> Result<NoteSigner, Error> {
    let metadata = fs::metadata(path)
        .map_err(|e| Error::io(format!("reading key file {}", path.display()), e))?;
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(Error::KeyFilePermissions { path: path.to_owned(), mode });
    }
    let text = Zeroizing::new(
        fs::read_to_string(path)
            .map_err(|e| Error::io(format!("reading key file {}", path.display()), e))?,
    );
    Ok(NoteSigner::parse_signer_key(text.trim_end())?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_is_private_and_loads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.key");
        let signer = generate_key_file(&path, "example.org/log").unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let loaded = load_key_file(&path).unwrap();
        assert_eq!(loaded.verifier(), signer.verifier());
        assert!(generate_key_file(&path, "example.org/log").is_err(), "must not overwrite");
    }

    #[test]
    fn readable_key_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.key");
        generate_key_file(&path, "example.org/log").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(load_key_file(&path), Err(Error::KeyFilePermissions { mode: 0o644, .. })));
    }
}
