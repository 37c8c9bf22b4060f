//! The SQLite database file: created before SQLite opens it, readable and writable by this user
//! only. SQLite gives its `-wal` and `-shm` files the mode of the database file, so they are
//! private too.

use std::fs::{self, OpenOptions};
use std::io;
use std::path::Path;

/// Mode of the database file and its journals: owner read and write, nobody else.
#[cfg(unix)]
const PRIVATE_FILE: u32 = 0o600;

/// Creates the parent directory of `path` when missing, creates the file (mode 0600) when
/// missing, and takes group and other permissions away from an existing file and its journals.
pub(crate) fn prepare_sqlite_file(path: &Path) -> io::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent)?;
    }
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(PRIVATE_FILE);
    }
    options.open(path)?;
    #[cfg(unix)]
    {
        let mut journals = [path.as_os_str().to_owned(), path.as_os_str().to_owned()];
        journals[0].push("-wal");
        journals[1].push("-shm");
        restrict(path)?;
        for journal in journals {
            match restrict(Path::new(&journal)) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                other => other?,
            }
        }
    }
    Ok(())
}

/// Takes group and other permissions away from `path`, saying so when there were any.
#[cfg(unix)]
fn restrict(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(path)?.permissions().mode();
    if mode & 0o077 != 0 {
        log::warn!(
            "{} was readable by other users (mode {:o}): now {:o}",
            path.display(),
            mode & 0o777,
            PRIVATE_FILE
        );
        fs::set_permissions(path, fs::Permissions::from_mode(PRIVATE_FILE))?;
    }
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_new_database_file_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/app.db");
        prepare_sqlite_file(&path).unwrap();
        assert_eq!(mode(&path), 0o600);
    }

    #[test]
    fn an_existing_world_readable_file_and_its_journal_are_tightened() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.db");
        let wal = dir.path().join("app.db-wal");
        for file in [&path, &wal] {
            fs::write(file, b"").unwrap();
            fs::set_permissions(file, fs::Permissions::from_mode(0o644)).unwrap();
        }
        prepare_sqlite_file(&path).unwrap();
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&wal), 0o600);
    }
}
