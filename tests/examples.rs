//! The library examples, run: the very files `cargo run --example NAME` builds, included here
//! so that an example that stops working fails the suite.

#[allow(dead_code)]
#[path = "../examples/quickstart.rs"]
mod quickstart;

#[allow(dead_code)]
#[path = "../examples/audit.rs"]
mod audit;

#[allow(dead_code)]
#[path = "../examples/sms_gateway.rs"]
mod sms_gateway;

#[test]
fn quickstart_runs_a_programme_and_checks_a_receipt() {
    let dir = tempfile::tempdir().unwrap();
    quickstart::run(dir.path()).unwrap();
}

#[test]
fn the_audit_example_passes_a_good_export_and_fails_a_tampered_one() {
    let dir = tempfile::tempdir().unwrap();
    let key = audit::demo_export(dir.path()).unwrap();
    let export = dir.path().join("export");
    assert!(audit::audit(&export, &key).unwrap().is_clean());
    // One byte changed in an entry: the tiles no longer match.
    let bundle = export.join("tile/entries/000.p").read_dir().unwrap().next().unwrap().unwrap();
    let mut bytes = std::fs::read(bundle.path()).unwrap();
    let last = bytes.len() - 2;
    bytes[last] ^= 1;
    std::fs::write(bundle.path(), bytes).unwrap();
    assert!(audit::audit(&export, &key).is_err());
}

#[test]
fn the_sms_gateway_example_answers_a_signed_message() {
    let dir = tempfile::tempdir().unwrap();
    let reply = sms_gateway::run(dir.path(), None).unwrap();
    assert!(reply.contains("<Message>Your balance: 12.500 JOD</Message>"), "{reply}");
}
