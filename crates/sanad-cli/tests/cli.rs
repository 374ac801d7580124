//! The `sanad` command end to end: its contract forms, an independent verifier (Go's x/mod),
//! and tampered exports.

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use sanad_tlog::{
    Hash, NoteVerifier, SignedCheckpoint, leaf_hash, verify_consistency, verify_inclusion,
};

fn sanad(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sanad"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run sanad");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

fn ok(args: &[&str], stdin: &[u8]) -> String {
    let out = sanad(args, stdin);
    assert!(
        out.status.success(),
        "sanad {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn lines(count: u32, tag: &str) -> Vec<u8> {
    (0..count).map(|i| format!("{tag} entry {i}\n")).collect::<String>().into_bytes()
}

struct Fixture {
    _dir: tempfile::TempDir,
    data: PathBuf,
    export: PathBuf,
    vkey: String,
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// A log with `sizes.len()` appends of the given sizes, exported.
fn fixture(sizes: &[u32]) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let export = dir.path().join("export");
    let vkey = ok(&["log", "init", "--data", s(&data), "--origin", "example.org/aid-log"], b"");
    let vkey = vkey.strip_suffix('\n').expect("one line").to_owned();
    assert!(!vkey.contains('\n'), "init prints the verifier key and nothing else");
    let mut total = 0;
    for (i, size) in sizes.iter().enumerate() {
        total += size;
        let printed = ok(&["log", "append", "--data", s(&data)], &lines(*size, &i.to_string()));
        assert_eq!(printed, format!("{total}\n"));
    }
    ok(&["log", "export", "--data", s(&data), "--out", s(&export)], b"");
    Fixture { _dir: dir, data, export, vkey }
}

fn hashes(text: &str) -> Vec<Hash> {
    text.lines().map(|l| Hash::parse_base64(l).unwrap()).collect()
}

#[test]
fn init_append_export_verify_prove_and_receipt() {
    let f = fixture(&[3, 1000, 70_000]);
    let verifier = NoteVerifier::parse(&f.vkey).unwrap();
    let checkpoint = ok(&["log", "checkpoint", "--data", s(&f.data)], b"");
    let checkpoint = SignedCheckpoint::parse_and_verify(checkpoint.as_bytes(), &verifier).unwrap();
    let (size, root) = (checkpoint.checkpoint().size(), checkpoint.checkpoint().root());
    assert_eq!(size, 71_003);
    assert_eq!(std::fs::read(f.export.join("checkpoint")).unwrap(), checkpoint.to_bytes());

    let report = ok(&["log", "verify", "--tiles", s(&f.export), "--key", &f.vkey], b"");
    assert!(report.starts_with("ok: example.org/aid-log tree size 71003"), "{report}");

    // Lines are entries without their newline: entry 3 is the first line of the second append.
    let path = hashes(&ok(
        &["log", "prove", "--data", s(&f.data), "--index", "3", "--size", &size.to_string()],
        b"",
    ));
    verify_inclusion(&leaf_hash(b"1 entry 0"), 3, size, &path, &root).unwrap();

    let old_checkpoint_root = {
        let mut tree = sanad_tlog::tree::MemoryTree::new();
        for line in String::from_utf8(lines(3, "0")).unwrap().lines() {
            tree.push_entry(line.as_bytes());
        }
        sanad_tlog::tree::root(&tree, 3).unwrap()
    };
    let proof = hashes(&ok(
        &["log", "prove", "--data", s(&f.data), "--from", "3", "--size", &size.to_string()],
        b"",
    ));
    verify_consistency(3, size, &proof, &old_checkpoint_root, &root).unwrap();

    let receipt = ok(&["log", "receipt", "--data", s(&f.data), "--index", "3"], b"");
    assert!(receipt.starts_with("c2sp.org/tlog-proof@v1\nindex 3\n"));
    let dir = tempfile::tempdir().unwrap();
    let (receipt_file, entry_file, wrong_file) =
        (dir.path().join("r"), dir.path().join("e"), dir.path().join("w"));
    std::fs::write(&receipt_file, &receipt).unwrap();
    std::fs::write(&entry_file, b"1 entry 0").unwrap();
    std::fs::write(&wrong_file, b"1 entry 1").unwrap();
    let args =
        ["log", "verify-receipt", "--key", &f.vkey, "--receipt", s(&receipt_file), "--entry"];
    assert!(sanad(&[&args[..], &[s(&entry_file)]].concat(), b"").status.success());
    assert!(!sanad(&[&args[..], &[s(&wrong_file)]].concat(), b"").status.success());
}

#[test]
fn append_refuses_an_oversized_line_and_keeps_what_came_before() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    ok(&["log", "init", "--data", s(&data), "--origin", "example.org/l"], b"");
    let mut input = b"fine\n".to_vec();
    input.extend(vec![b'x'; 65_536]);
    input.push(b'\n');
    let out = sanad(&["log", "append", "--data", s(&data)], &input);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 2"));
    // An empty stdin appends nothing and prints the current size.
    assert_eq!(ok(&["log", "append", "--data", s(&data)], b""), "0\n");
}

#[test]
fn verify_with_since_detects_a_fork() {
    // Two copies of one log (same key) diverge after 300 entries: each export verifies on its
    // own, but neither is consistent with a checkpoint of the other.
    let f = fixture(&[300]);
    let fork = f.data.parent().unwrap().join("fork");
    copy_dir(&f.data, &fork);
    ok(&["log", "append", "--data", s(&f.data)], &lines(200, "honest"));
    ok(&["log", "append", "--data", s(&fork)], &lines(100, "forked"));
    let forked_checkpoint = f.data.parent().unwrap().join("forked.checkpoint");
    std::fs::write(&forked_checkpoint, ok(&["log", "checkpoint", "--data", s(&fork)], b""))
        .unwrap();
    ok(&["log", "export", "--data", s(&f.data), "--out", s(&f.export)], b"");

    let out = sanad(
        &[
            "log",
            "verify",
            "--tiles",
            s(&f.export),
            "--key",
            &f.vkey,
            "--since",
            s(&forked_checkpoint),
        ],
        b"",
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not consistent with the older checkpoint of size 400"), "{stderr}");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

fn all_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() { files.extend(all_files(&path)) } else { files.push(path) }
    }
    files.sort();
    files
}

#[test]
fn every_tampered_export_is_rejected_and_named() {
    // Flip one byte of every file (checkpoint, tiles, bundles) in turn, truncate, remove, and
    // substitute an older checkpoint: `verify` must fail each time and say what failed.
    let f = fixture(&[600, 70]);
    let old_checkpoint = ok(&["log", "checkpoint", "--data", s(&f.data)], b"");
    ok(&["log", "append", "--data", s(&f.data)], &lines(5, "late"));
    // A fresh export, so that every file in it belongs to the current tree (a re-export into the
    // same folder keeps older partial tiles, which are valid prefixes but not read).
    std::fs::remove_dir_all(&f.export).unwrap();
    ok(&["log", "export", "--data", s(&f.data), "--out", s(&f.export)], b"");
    let verify = |dir: &Path| sanad(&["log", "verify", "--tiles", s(dir), "--key", &f.vkey], b"");
    assert!(verify(&f.export).status.success());

    let mut cases = 0;
    for file in all_files(&f.export) {
        let original = std::fs::read(&file).unwrap();
        for position in [0, original.len() / 2, original.len() - 1] {
            let mut bytes = original.clone();
            bytes[position] ^= 0x01;
            std::fs::write(&file, &bytes).unwrap();
            let out = verify(&f.export);
            assert!(!out.status.success(), "flip at {position} of {} accepted", file.display());
            assert!(!out.stderr.is_empty());
            cases += 1;
        }
        std::fs::write(&file, &original[..original.len() - 1]).unwrap();
        assert!(!verify(&f.export).status.success(), "truncated {} accepted", file.display());
        std::fs::remove_file(&file).unwrap();
        assert!(!verify(&f.export).status.success(), "missing {} accepted", file.display());
        std::fs::write(&file, &original).unwrap();
        cases += 2;
    }
    assert!(verify(&f.export).status.success());
    assert_eq!(cases, all_files(&f.export).len() * 5);

    // Reorder, duplicate and drop entries inside a bundle.
    let bundle_path = f.export.join("tile/entries/000");
    let original = std::fs::read(&bundle_path).unwrap();
    let entries = sanad_tlog::tile::parse_bundle(&original).unwrap();
    let rebuild = |order: &[usize]| {
        sanad_tlog::tile::encode_bundle(order.iter().map(|&i| entries[i])).unwrap()
    };
    let mut swapped: Vec<usize> = (0..entries.len()).collect();
    swapped.swap(10, 11);
    let mut duplicated: Vec<usize> = (0..entries.len()).collect();
    duplicated[20] = 19;
    let dropped: Vec<usize> = (1..entries.len()).collect();
    for (what, order) in [("reordered", swapped), ("duplicated", duplicated), ("dropped", dropped)]
    {
        std::fs::write(&bundle_path, rebuild(&order)).unwrap();
        let out = verify(&f.export);
        assert!(!out.status.success(), "{what} entries accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("tile/"), "{what}: failure does not name the tile: {stderr}");
    }
    std::fs::write(&bundle_path, original).unwrap();

    std::fs::write(f.export.join("checkpoint"), old_checkpoint).unwrap();
    let out = verify(&f.export);
    assert!(!out.status.success(), "an older checkpoint over newer tiles was accepted");
}

/// Runs the Go checksum database's packages (not our code) over our export. They must
/// open our checkpoint, authenticate every tile against its root, and produce the same proofs
/// as `sanad log prove`.
#[test]
fn go_x_mod_sumdb_verifies_our_checkpoints_tiles_and_proofs() {
    let gocode = Path::new("/usr/share/gocode/src/golang.org/x/mod/sumdb/tlog");
    let go = Command::new("go").arg("version").output();
    assert!(
        go.is_ok_and(|o| o.status.success()) && gocode.exists(),
        "INTEROP CHECK CANNOT RUN: it needs Go and golang.org/x/mod. Install them with \
         `apt-get install -y golang-go golang-golang-x-mod-dev` (.ci/run does this)."
    );
    let f = fixture(&[1, 299, 65_536, 1234]);
    let size = 1 + 299 + 65_536 + 1234;
    let program = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/interop/x_mod_check.go");
    for (old, index) in
        [(1u64, 0u64), (300, 299), (65_536, 65_535), (size - 1, size - 1), (777, 4242)]
    {
        let out = Command::new("go")
            .args(["run", s(&program), &f.vkey, s(&f.export), &old.to_string(), &index.to_string()])
            .env("GO111MODULE", "off")
            .env("GOPATH", "/usr/share/gocode")
            .env("GOFLAGS", "")
            .output()
            .unwrap();
        let stdout = String::from_utf8(out.stdout).unwrap();
        assert!(out.status.success(), "x/mod: {}{}", stdout, String::from_utf8_lossy(&out.stderr));
        let mut blocks = stdout.split("tree-proof\n");
        assert_eq!(blocks.next().unwrap(), format!("ok {size}\n"));
        let (tree_proof, record_proof) =
            blocks.next().unwrap().split_once("record-proof\n").unwrap();
        let size = size.to_string();
        let ours = ok(
            &["log", "prove", "--data", s(&f.data), "--from", &old.to_string(), "--size", &size],
            b"",
        );
        assert_eq!(tree_proof, ours, "consistency {old} -> {size}");
        let ours = ok(
            &["log", "prove", "--data", s(&f.data), "--index", &index.to_string(), "--size", &size],
            b"",
        );
        assert_eq!(record_proof, ours, "inclusion {index} @ {size}");
    }
}

#[test]
fn key_rotation_is_logged_and_verifiers_follow_it() {
    // An auditor holding only the original key verifies a log whose key was rotated: the
    // hand-over entry, signed by the old key, tells it to trust the new one.
    let f = fixture(&[10]);
    let before = f.data.parent().unwrap().join("before.checkpoint");
    std::fs::write(&before, ok(&["log", "checkpoint", "--data", s(&f.data)], b"")).unwrap();
    let new_vkey = ok(&["log", "rotate-key", "--data", s(&f.data)], b"");
    let new_vkey = new_vkey.trim_end().to_owned();
    assert_ne!(new_vkey, f.vkey);
    assert!(new_vkey.starts_with("example.org/aid-log+"));
    ok(&["log", "append", "--data", s(&f.data)], &lines(5, "after"));
    ok(&["log", "export", "--data", s(&f.data), "--out", s(&f.export)], b"");

    let report = ok(
        &["log", "verify", "--tiles", s(&f.export), "--key", &f.vkey, "--since", s(&before)],
        b"",
    );
    assert!(
        report.contains(&format!("followed the signed key rotation at entry 10 to {new_vkey}"))
    );
    assert!(report.contains("consistent with the older checkpoint of size 10"), "{report}");
    let report = ok(&["log", "verify", "--tiles", s(&f.export), "--key", &new_vkey], b"");
    assert!(report.starts_with("ok:"), "{report}");

    // The new checkpoint is signed by the new key only: the old key alone, without the
    // rotation entry in the export, no longer verifies it.
    let checkpoint = ok(&["log", "checkpoint", "--data", s(&f.data)], b"");
    let old = NoteVerifier::parse(&f.vkey).unwrap();
    assert!(SignedCheckpoint::parse_and_verify(checkpoint.as_bytes(), &old).is_err());

    // Ordinary appends may not forge a rotation entry.
    let out = sanad(&["log", "append", "--data", s(&f.data)], b"sanad.key-rotation/v1 forged\n");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("reserved"));
}
