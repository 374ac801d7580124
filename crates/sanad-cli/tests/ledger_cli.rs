//! The ledger commands' contract: `init`, `programme create`, `disburse`, `balance`, `vendor`,
//! `voucher issue` and `settle`, exactly as other tools call them, and the `log` commands
//! working on the same folder.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};

fn sanad(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sanad")).args(args).output().expect("run sanad")
}

fn ok(args: &[&str]) -> String {
    let out = sanad(args);
    assert!(
        out.status.success(),
        "sanad {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn last_line(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).lines().last().unwrap_or_default().to_owned()
}

#[test]
fn init_programme_disburse_balance_and_audit_one_folder() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let vkey =
        ok(&["init", "--data", s(&data), "--origin", "example.org/agency", "--region", "JO"]);
    let vkey = vkey.strip_suffix('\n').unwrap();
    assert!(
        !vkey.contains('\n') && vkey.starts_with("example.org/agency+"),
        "only the vkey: {vkey}"
    );
    assert!(
        !sanad(&["init", "--data", s(&data), "--origin", "example.org/agency"]).status.success()
    );

    let programme = ok(&[
        "programme",
        "create",
        "--data",
        s(&data),
        "--name",
        "Winter cash 2026",
        "--currency",
        "JOD",
        "--budget",
        "1000",
    ]);
    let programme = programme.trim();
    assert!(programme.starts_with("prog-") && !programme.contains(char::is_whitespace));
    assert_eq!(ok(&["balance", "--data", s(&data), "--programme", programme]), "1000.000 JOD\n");

    let csv = dir.path().join("tranche.csv");
    std::fs::write(
        &csv,
        "phone,amount,name\n0791234567,25.5,Layla\n+962781234567,10,Omar\nnot-a-phone,1,X\n",
    )
    .unwrap();
    let disburse = |extra: &[&str]| {
        let mut args =
            vec!["disburse", "--data", s(&data), "--programme", programme, "--csv", s(&csv)];
        args.extend_from_slice(extra);
        sanad(&args)
    };
    // A bad row: nothing paid, exit 1, the bad line named.
    let out = disburse(&["--register"]);
    assert!(!out.status.success());
    assert_eq!(last_line(&out), "paid 0, already paid 0, rejected 1");
    assert!(String::from_utf8_lossy(&out.stdout).contains("line 4:"));
    assert_eq!(ok(&["balance", "--data", s(&data), "--programme", programme]), "1000.000 JOD\n");
    // Unregistered phones without --register are bad rows too.
    let out = disburse(&["--skip-invalid"]);
    assert_eq!(last_line(&out), "paid 0, already paid 0, rejected 3");
    // --skip-invalid pays the good rows; still exit 1, as one row is not paid.
    let out = disburse(&["--register", "--skip-invalid"]);
    assert!(!out.status.success());
    assert_eq!(last_line(&out), "paid 2, already paid 0, rejected 1");
    // A clean file that was paid in part: only the rest is paid, and exit 0.
    std::fs::write(
        &csv,
        "phone,amount,name\n0791234567,25.5,Layla\n+962781234567,10,Omar\n0771234567,4.5,Sara\n",
    )
    .unwrap();
    let out = disburse(&["--register"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(
        last_line(&out),
        "paid 3, already paid 0, rejected 0",
        "a changed file is a new run"
    );
    let out = disburse(&["--register"]);
    assert!(out.status.success());
    assert_eq!(last_line(&out), "paid 0, already paid 3, rejected 0");

    assert_eq!(ok(&["balance", "--data", s(&data), "--phone", "+962791234567"]), "51.000 JOD\n");
    assert_eq!(ok(&["balance", "--data", s(&data), "--phone", "0771234567"]), "4.500 JOD\n");
    assert_eq!(ok(&["balance", "--data", s(&data), "--programme", programme]), "924.500 JOD\n");
    assert!(!sanad(&["balance", "--data", s(&data), "--phone", "+962790000000"]).status.success());

    // The log commands work on the same folder, and the export verifies.
    let export = dir.path().join("export");
    ok(&["log", "export", "--data", s(&data), "--out", s(&export)]);
    let verified = ok(&["log", "verify", "--tiles", s(&export), "--key", vkey]);
    assert!(verified.starts_with("ok: example.org/agency tree size "), "{verified}");
    let entries = std::fs::read_dir(export.join("tile/entries")).unwrap().count();
    assert!(entries > 0);

    // The full audit replays the money too, and says what it found.
    let report = dir.path().join("audit.json");
    let audited = ok(&["audit", "--tiles", s(&export), "--key", vkey, "--report", s(&report)]);
    assert!(audited.starts_with("ok: example.org/agency tree size "), "{audited}");
    assert!(audited.contains("currency JOD: "), "{audited}");
    assert!(
        audited.contains(&format!(
            "programme {programme} (Cash, JOD): Winter cash 2026: funding holds 924.500"
        )),
        "{audited}"
    );
    assert!(audited.lines().last().unwrap().starts_with("ok: the money holds ("), "{audited}");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(report["money"]["currencies"][0]["sum"], "0.000");
    assert_eq!(report["money"]["currencies"][0]["entered"], "1000.000");
    assert_eq!(report["money"]["anomalies"].as_array().unwrap().len(), 0);
}

/// A log whose entries are well-formed and signed but break the ledger's rules: the audit
/// names each entry that does not hold, goes on past it, and fails.
#[test]
fn audit_names_every_entry_that_breaks_the_rules() {
    use sanad_ledger::{AccountKind, Actor, Event, ProgrammeKind};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("log");
    let vkey = ok(&["log", "init", "--data", s(&data), "--origin", "example.org/forged"]);
    let vkey = vkey.trim();
    let id = |text: &str| sanad_money::Id::parse(text).unwrap();
    let jod = sanad_money::Currency::parse("JOD").unwrap();
    let amount = |text: &str| sanad_money::Amount::parse(text, jod).unwrap();
    let open = |account: &str, kind| Event::AccountOpened {
        account: id(account),
        kind,
        currency: jod,
        owner: id("agency"),
        at_ms: 1,
    };
    let pay = |transfer: &str, from: &str, to: &str, value: &str| Event::TransferPosted {
        transfer: id(transfer),
        from: id(from),
        to: id(to),
        amount: amount(value),
        programme: id("prog"),
        actor: Actor::Operator,
        reference: None,
        at_ms: 1,
    };
    let entries = [
        open("donor", AccountKind::External).to_entry(),
        open("prog", AccountKind::ProgrammeFunding).to_entry(),
        open("w1", AccountKind::Wallet).to_entry(),
        Event::ProgrammeCreated {
            programme: id("prog"),
            name: "Forged".into(),
            kind: ProgrammeKind::Cash,
            funding: id("prog"),
            at_ms: 1,
        }
        .to_entry(),
        pay("fund", "donor", "prog", "100").to_entry(),
        // More than the programme has: it would go below zero.
        pay("t1", "prog", "w1", "500").to_entry(),
        pay("t2", "prog", "w1", "10").to_entry(),
        // Caused by a principal nobody granted.
        pay("t3", "w1", "prog", "1").to_entry_by(Some(&id("tok-ghost"))),
    ];
    let mut lines = Vec::new();
    for entry in &entries {
        lines.extend_from_slice(entry);
        lines.push(b'\n');
    }
    let mut append = Command::new(env!("CARGO_BIN_EXE_sanad"))
        .args(["log", "append", "--data", s(&data)])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut append.stdin.take().unwrap(), &lines).unwrap();
    assert!(append.wait().unwrap().success());
    let export = dir.path().join("export");
    ok(&["log", "export", "--data", s(&data), "--out", s(&export)]);
    // The cryptography holds: only the money does not.
    ok(&["log", "verify", "--tiles", s(&export), "--key", vkey]);
    let out = sanad(&["audit", "--tiles", s(&export), "--key", vkey]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("ANOMALY at entry 5: insufficient funds in account prog"), "{text}");
    assert!(text.contains("ANOMALY at entry 7: principal tok-ghost is not granted"), "{text}");
    assert_eq!(last_line(&out), "FAILED: 2 anomalies", "{text}");
}

#[test]
fn voucher_programme_vendors_issue_and_settle() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    ok(&["init", "--data", s(&data), "--origin", "example.org/vouchers", "--region", "JO"]);
    let create = |extra: &[&str]| {
        let mut args = vec![
            "programme",
            "create",
            "--data",
            s(&data),
            "--name",
            "Food",
            "--currency",
            "JOD",
            "--budget",
            "500",
        ];
        args.extend_from_slice(extra);
        ok(&args).trim().to_owned()
    };
    let programme = create(&["--kind", "value_voucher"]);
    let basket = create(&[
        "--kind",
        "commodity_voucher",
        "--item",
        "rice:Rice:kg:10:1.2",
        "--item",
        "oil:Oil:L:2:2.5",
    ]);
    assert!(basket.starts_with("prog-"));
    let bad_item = sanad(&[
        "programme",
        "create",
        "--data",
        s(&data),
        "--name",
        "X",
        "--currency",
        "JOD",
        "--budget",
        "1",
        "--kind",
        "commodity_voucher",
        "--item",
        "rice:Rice",
    ]);
    assert!(!bad_item.status.success());

    let shop =
        ok(&["vendor", "add", "--data", s(&data), "--currency", "JOD", "--category", "food"]);
    let shop = shop.trim();
    ok(&["vendor", "enrol", "--data", s(&data), "--programme", &programme, "--vendor", shop]);
    ok(&[
        "vendor",
        "enrol",
        "--data",
        s(&data),
        "--programme",
        &basket,
        "--vendor",
        shop,
        "--price",
        "rice=1.1",
    ]);
    let too_dear = sanad(&[
        "vendor",
        "enrol",
        "--data",
        s(&data),
        "--programme",
        &basket,
        "--vendor",
        shop,
        "--price",
        "oil=3",
    ]);
    assert!(!too_dear.status.success());

    let csv = dir.path().join("vouchers.csv");
    std::fs::write(&csv, "phone,amount\n+962791234567,30\n0791234568,20\n").unwrap();
    let codes = dir.path().join("codes.csv");
    let issue = [
        "voucher",
        "issue",
        "--data",
        s(&data),
        "--programme",
        &programme,
        "--csv",
        s(&csv),
        "--codes",
        s(&codes),
        "--register",
    ];
    assert_eq!(last_line(&sanad(&issue)), "issued 2, already issued 0, rejected 0");
    assert_eq!(std::fs::metadata(&codes).unwrap().permissions().mode() & 0o777, 0o600);
    let written = std::fs::read_to_string(&codes).unwrap();
    assert_eq!(last_line(&sanad(&issue)), "issued 0, already issued 2, rejected 0");
    assert_eq!(std::fs::read_to_string(&codes).unwrap(), written, "a re-run writes the same codes");
    let lines: Vec<&str> = written.lines().collect();
    assert_eq!(lines[0], "line,voucher,code");
    let code = lines[1].split(',').nth(2).unwrap();

    // The vendor redeems 12 JOD with the code; the beneficiary confirms by phone.
    {
        let agency = sanad_engine::Agency::open(&data, sanad_engine::Options::default()).unwrap();
        let shop = sanad_money::Id::parse(shop).unwrap();
        let amount =
            sanad_money::Amount::parse("12", sanad_money::Currency::parse("JOD").unwrap()).unwrap();
        let request =
            agency.request_redemption(code, &shop, Some(amount), Vec::new(), None).unwrap();
        let (_, digits) = agency.confirmation_for(&request.id).unwrap();
        agency.answer_confirmation(&request.id, &digits, true).unwrap();
        agency.close().unwrap();
    }
    let statements = dir.path().join("statements");
    let settled = ok(&[
        "settle",
        "--data",
        s(&data),
        "--programme",
        &programme,
        "--run",
        "dec",
        "--statements",
        s(&statements),
    ]);
    let fields: Vec<&str> = settled.split_whitespace().collect();
    assert_eq!(
        (fields[0], &fields[2..]),
        (shop, &["12.000", "JOD", "1", "redemptions"][..]),
        "{settled}"
    );
    let statement = std::fs::read_to_string(statements.join(format!("{}.csv", fields[1]))).unwrap();
    assert_eq!(statement.lines().count(), 2, "{statement}");
    assert!(statement.lines().nth(1).unwrap().contains(",confirmation,12.000,JOD,"));
    assert_eq!(
        ok(&["settle", "--data", s(&data), "--programme", &programme, "--run", "dec"]),
        settled
    );
    assert_eq!(ok(&["settle", "--data", s(&data), "--programme", &programme]), "");
}

/// A new ledger in `dir/data` named `origin`: a programme of 100 JOD that paid 25 to one new
/// beneficiary. Its folder, verifier key and programme.
fn paid_once(dir: &Path, origin: &str) -> (std::path::PathBuf, String, String) {
    let data = dir.join("data");
    let vkey = ok(&["init", "--data", s(&data), "--origin", origin, "--region", "JO"]);
    let programme = ok(&[
        "programme",
        "create",
        "--data",
        s(&data),
        "--name",
        "Winter cash",
        "--currency",
        "JOD",
        "--budget",
        "100",
    ]);
    let programme = programme.trim().to_owned();
    let csv = dir.join("first.csv");
    std::fs::write(&csv, "phone,amount\n0791234567,25\n").unwrap();
    ok(&[
        "disburse",
        "--data",
        s(&data),
        "--programme",
        &programme,
        "--csv",
        s(&csv),
        "--register",
    ]);
    (data, vkey.trim().to_owned(), programme)
}

/// A throwaway PostgreSQL server and a database on it, named `name`.
fn postgres(name: &str) -> (sanad_postgres::testing::TestServer, String) {
    let server = sanad_postgres::testing::TestServer::for_test();
    let url = server.database(name).unwrap();
    (server, url)
}

/// `sanad ARGS --data DATA --database-url URL`, which must succeed; its output.
fn ok_on(data: &Path, url: &str, args: &[&str]) -> String {
    let mut all = args.to_vec();
    all.extend_from_slice(&["--data", s(data), "--database-url", url]);
    ok(&all)
}

/// The same commands with the log on PostgreSQL (a throwaway server the test starts): the
/// folder keeps the key, snapshots and registry; the export and the audit hold as on sled.
#[test]
fn the_ledger_commands_run_on_postgresql() {
    let (_server, url) = postgres("cli");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let on_pg = |args: &[&str]| ok_on(&data, &url, args);
    let vkey = on_pg(&["init", "--origin", "example.org/pg-agency", "--region", "JO"]);
    let vkey = vkey.trim();
    assert!(!data.join("log.sled").exists(), "the log is on PostgreSQL, not in the folder");
    let programme = on_pg(&[
        "programme",
        "create",
        "--name",
        "Winter cash",
        "--currency",
        "JOD",
        "--budget",
        "500",
    ]);
    let programme = programme.trim();
    let csv = dir.path().join("tranche.csv");
    std::fs::write(&csv, "phone,amount\n0791234567,25\n0781234567,10\n").unwrap();
    let paid = on_pg(&["disburse", "--programme", programme, "--csv", s(&csv), "--register"]);
    assert_eq!(paid.lines().last().unwrap(), "paid 2, already paid 0, rejected 0");
    assert_eq!(on_pg(&["balance", "--phone", "+962791234567"]), "25.000 JOD\n");
    assert_eq!(on_pg(&["balance", "--programme", programme]), "465.000 JOD\n");

    let export = dir.path().join("export");
    on_pg(&["log", "export", "--out", s(&export)]);
    let audited = ok(&["audit", "--tiles", s(&export), "--key", vkey]);
    assert!(audited.lines().last().unwrap().starts_with("ok: the money holds ("), "{audited}");
    assert!(audited.contains("funding holds 465.000"), "{audited}");
}

/// An agency that outgrows one machine: its ledger's log and registry copied from the folder
/// into PostgreSQL, then run from there with the same balances, and from a second folder too.
#[test]
fn a_ledger_moves_from_sled_to_postgresql() {
    let (_server, url) = postgres("moved");
    let dir = tempfile::tempdir().unwrap();
    let (data, _, programme) = paid_once(dir.path(), "example.org/moving");
    let programme = programme.as_str();
    let csv = dir.path().join("tranche.csv");
    let copied = ok(&["log", "copy", "--data", s(&data), "--to", &url]);
    assert!(copied.starts_with("copied "), "{copied}");
    assert!(copied.contains("the log opens on PostgreSQL at tree size "), "{copied}");
    let on_pg = |args: &[&str]| ok_on(&data, &url, args);
    assert_eq!(on_pg(&["balance", "--phone", "+962791234567"]), "25.000 JOD\n");
    std::fs::write(&csv, "phone,amount\n0791234567,5\n").unwrap();
    on_pg(&["disburse", "--programme", programme, "--csv", s(&csv)]);
    assert_eq!(on_pg(&["balance", "--phone", "+962791234567"]), "30.000 JOD\n");
    assert_eq!(on_pg(&["balance", "--programme", programme]), "70.000 JOD\n");

    // The registry went along: a second folder holding only copies of the two keys, as another
    // machine would, finds the same beneficiary by phone on the same database.
    assert!(copied.contains("copied the registry: 1 people's records"), "{copied}");
    let other = dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    for key in ["log.key", "registry.key"] {
        std::fs::copy(data.join(key), other.join(key)).unwrap();
    }
    assert_eq!(ok_on(&other, &url, &["balance", "--phone", "+962791234567"]), "30.000 JOD\n");
}

/// A ledger whose store is lost comes back from an export (a backup, or a mirror of `/log/`)
/// and a backup of its key: the log is rebuilt and checked against its signed checkpoint, the
/// ledger replays to the same balances and carries on. A tampered backup is refused, and so is
/// a folder that holds a log already.
#[test]
fn a_lost_ledger_is_restored_from_an_export_and_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let (data, vkey, programme) = paid_once(dir.path(), "example.org/restored");
    let backup = dir.path().join("backup");
    ok(&["log", "export", "--data", s(&data), "--out", s(&backup)]);
    let key = std::fs::read(data.join("log.key")).unwrap();

    // The machine is lost. A new folder holds only the key, restored from its own backup.
    let fresh = dir.path().join("fresh");
    std::fs::create_dir(&fresh).unwrap();
    let write_key = |folder: &Path| {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(folder.join("log.key"))
            .unwrap();
        file.write_all(&key).unwrap();
    };
    write_key(&fresh);
    let restored = ok(&["log", "restore", "--from", s(&backup), "--data", s(&fresh)]);
    assert!(restored.starts_with("restored "), "{restored}");
    assert_eq!(ok(&["balance", "--data", s(&fresh), "--programme", &programme]), "75.000 JOD\n");
    let export = dir.path().join("again");
    ok(&["log", "export", "--data", s(&fresh), "--out", s(&export)]);
    let verified = ok(&["log", "verify", "--tiles", s(&export), "--key", &vkey]);
    assert!(verified.starts_with("ok:"), "{verified}");
    ok(&[
        "programme",
        "create",
        "--data",
        s(&fresh),
        "--name",
        "Spring",
        "--currency",
        "JOD",
        "--budget",
        "5",
    ]);

    // Into a folder that holds a log: refused.
    let twice = sanad(&["log", "restore", "--from", s(&backup), "--data", s(&fresh)]);
    assert!(!twice.status.success());
    assert!(String::from_utf8_lossy(&twice.stderr).contains("holds a log already"));

    // From a tampered backup: refused, nothing served.
    // The log's one bundle: `tile/entries/000.p/<its width>`.
    let partial = backup.join("tile/entries/000.p");
    let bundle = std::fs::read_dir(&partial).unwrap().next().unwrap().unwrap().path();
    let mut bytes = std::fs::read(&bundle).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    std::fs::write(&bundle, bytes).unwrap();
    let other = dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    write_key(&other);
    let refused = sanad(&["log", "restore", "--from", s(&backup), "--data", s(&other)]);
    assert!(!refused.status.success(), "a tampered backup was restored");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("root") || stderr.contains("checkpoint"), "{stderr}");
}
