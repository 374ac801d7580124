//! Tidy: mechanical checks of the architecture invariants (after TigerBeetle's `tidy.zig`).
//! The pure crates do no I/O, read no clock, draw no randomness and print nothing; the auditor
//! does not depend on the log's storage.

use std::path::Path;

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn pure_crates_do_no_io() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let forbidden = [
        "std::fs",
        "SystemTime",
        "Instant::now",
        "std::thread",
        "tokio",
        "sled",
        "rand::",
        "println!",
        "eprintln!",
        "std::net",
        "std::env",
    ];
    for krate in ["sanad-money", "sanad-tlog", "sanad-ledger"] {
        let mut files = Vec::new();
        rust_files(&root.join("crates").join(krate).join("src"), &mut files);
        assert!(!files.is_empty());
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            for word in forbidden {
                assert!(
                    !text.contains(word),
                    "{} uses {word}: pure crates do no I/O",
                    file.display()
                );
            }
        }
    }
}

#[test]
fn the_auditor_does_not_depend_on_our_storage() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let manifest = std::fs::read_to_string(root.join("crates/sanad-audit/Cargo.toml")).unwrap();
    let dependencies = manifest.split("[dev-dependencies]").next().unwrap();
    for storage in ["sanad-log", "sled"] {
        assert!(!dependencies.contains(storage), "sanad-audit must not depend on {storage}");
    }
}
