//! The agency layer: registration with duplicate detection and no personal data in the log,
//! erasure, and bulk disbursement from CSV with validation, budget checks and re-runs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use sanad_engine::disburse::{DisburseOptions, disburse};
use sanad_engine::registry::NewPerson;
use sanad_engine::{Agency, Error, Options};
use sanad_ledger::ProgrammeKind;
use sanad_money::{Amount, Currency};
use zeroize::Zeroizing;

fn jod(text: &str) -> Amount {
    Amount::parse(text, Currency::parse("JOD").unwrap()).unwrap()
}

fn agency(dir: &std::path::Path) -> Agency {
    Agency::create(dir, "example.org/agency-test", Some("JO"), Options::default()).unwrap()
}

fn person(phone: &str, national_id: Option<&str>) -> NewPerson {
    NewPerson {
        phone: phone.into(),
        name: Some("Layla Haddad".into()),
        national_id: national_id.map(Into::into),
        language: Some("ar".into()),
        pin: Some(Zeroizing::new("4821".into())),
    }
}

/// Every entry of the log, as text.
fn log_text(agency: &Agency) -> String {
    let mut text = String::new();
    let log = agency.ledger().log();
    log.for_each_entry(0, log.size(), |_, entry| {
        text.push_str(&String::from_utf8_lossy(entry));
        text.push('\n');
        Ok(())
    })
    .unwrap();
    text
}

/// The log text with its random values (`random`) and clock readings (`at_ms`) blanked: a PIN
/// or a fragment of a phone number can turn up inside a random hex commitment or a timestamp
/// by chance (once in about a thousand runs for a 4-digit PIN in a commitment).
fn without_chance_digits(text: &str, random: &[&str]) -> String {
    let text = random.iter().fold(text.to_owned(), |text, value| text.replace(value, "_"));
    let mut parts = text.split("\"at_ms\":");
    let mut blanked = parts.next().unwrap_or_default().to_owned();
    for part in parts {
        blanked.push_str("\"at_ms\":_");
        blanked.push_str(part.trim_start_matches(|c: char| c.is_ascii_digit()));
    }
    blanked
}

#[test]
fn registration_finds_duplicates_and_keeps_personal_data_out_of_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let agency = agency(dir.path());
    let jod_currency = Currency::parse("JOD").unwrap();
    let layla = agency.register(&person("079 123 4567", Some("9871-234")), jod_currency).unwrap();
    // The same phone in another format, or the same national id written differently.
    for (other, field) in [
        (person("+962791234567", None), "phone"),
        (person("00962 79 123 4567", None), "phone"),
        (person("0781234567", Some("9871 234")), "national_id"),
    ] {
        match agency.register(&other, jod_currency) {
            Err(Error::Duplicate { field: found, existing }) => {
                assert_eq!((found, &existing), (field, &layla));
            }
            unexpected => panic!("{unexpected:?}"),
        }
    }
    assert!(matches!(
        agency.register(&person("12", None), jod_currency),
        Err(Error::InvalidPhone(_))
    ));
    let mut bad_pin = person("0781234567", None);
    bad_pin.pin = Some(Zeroizing::new("12ab".into()));
    assert!(matches!(agency.register(&bad_pin, jod_currency), Err(Error::InvalidPin)));
    assert_eq!(agency.beneficiary_by_phone("+962 79 123 4567").unwrap(), Some(layla.clone()));
    assert!(agency.registry().verify_pin(&layla, "4821").unwrap());
    assert!(!agency.registry().verify_pin(&layla, "4822").unwrap());

    let (record, commitment) = agency.registry().person(&layla).unwrap().unwrap();
    assert_eq!(record.phone, "+962791234567");
    let text = log_text(&agency);
    assert!(text.contains(&commitment) && text.contains(layla.as_str()));
    let text = without_chance_digits(&text, &[&commitment, layla.as_str()]);
    for personal in ["791234567", "Layla", "Haddad", "9871", "4821", "argon2"] {
        assert!(!text.contains(personal), "{personal} leaked into the log:\n{text}");
    }
    // Nor do the registry's keyed hashes: the only 64-hex strings in the log are commitments.
    let wallets = agency.wallets(&layla);
    assert_eq!(wallets.len(), 1);
    assert_eq!(wallets[0].available(), jod("0"));
}

#[test]
fn erasure_is_logged_and_leaves_nothing_linkable() {
    let dir = tempfile::tempdir().unwrap();
    let agency = agency(dir.path());
    let currency = Currency::parse("JOD").unwrap();
    let programme =
        agency.create_programme("Winter cash", ProgrammeKind::Cash, jod("100")).unwrap();
    let layla = agency.register(&person("0791234567", Some("X1")), currency).unwrap();
    let csv = b"phone,amount\n0791234567,25\n";
    disburse(&agency, &programme, csv, DisburseOptions::default(), &mut |_, _| {}).unwrap();
    agency.erase(&layla).unwrap();
    assert_eq!(agency.registry().person(&layla).unwrap(), None);
    assert_eq!(agency.beneficiary_by_phone("0791234567").unwrap(), None);
    assert!(!dir.path().join("registry.secrets").join(layla.as_str()).exists());
    assert!(log_text(&agency).contains("\"type\":\"beneficiary.erased\""));
    // Balances still replay from the log; the phone may register again as someone new.
    let balance = agency.ledger().account(&Agency::wallet_of(&layla, currency)).unwrap().balance();
    drop(agency);
    std::fs::remove_file(dir.path().join("ledger.snapshot")).unwrap();
    let agency = Agency::open(dir.path(), Options::default()).unwrap();
    assert_eq!(
        agency.ledger().account(&Agency::wallet_of(&layla, currency)).unwrap().balance(),
        balance
    );
    assert!(agency.ledger().read(|state| state.beneficiary(&layla).unwrap().erased));
    let again = agency.register(&person("0791234567", Some("X1")), currency).unwrap();
    assert_ne!(again, layla);
}

#[test]
fn disbursement_validates_every_row_first_and_never_pays_twice() {
    let dir = tempfile::tempdir().unwrap();
    let agency = agency(dir.path());
    let currency = Currency::parse("JOD").unwrap();
    let programme =
        agency.create_programme("Winter cash", ProgrammeKind::Cash, jod("1000")).unwrap();
    assert_eq!(agency.ledger().account(&programme).unwrap().available(), jod("1000"));
    agency.register(&person("0791111111", None), currency).unwrap();

    // Kobo's shape: a byte-order mark, `;` separators, extra columns.
    let bad = "\u{feff}start;phone;amount;name;currency\n\
               x;0791111111;10;A;JOD\n\
               x;0792222222;12.5;B;JOD\n\
               x;not-a-phone;5;C;JOD\n\
               x;0793333333;1.2345;D;JOD\n\
               x;0794444444;-3;E;JOD\n\
               x;0795555555;3;F;USD\n\
               x;0796666666;4;G;JOD\n\
               x;0796666666;4;G2;JOD\n";
    let refused = disburse(
        &agency,
        &programme,
        bad.as_bytes(),
        DisburseOptions { register: true, skip_invalid: false },
        &mut |_, _| {},
    );
    let refused = refused.unwrap();
    assert!(refused.refusal.as_ref().unwrap().contains("6 bad rows"));
    let lines: Vec<u64> = refused.rejected.iter().map(|problem| problem.line).collect();
    assert_eq!(lines, [4, 5, 6, 7, 8, 9]);
    assert!(refused.rejected[5].reason.contains("line 8"), "{:?}", refused.rejected);
    assert_eq!(refused.summary(), "paid 0, already paid 0, rejected 6");
    assert_eq!(
        agency.ledger().account(&programme).unwrap().available(),
        jod("1000"),
        "nothing paid"
    );

    // Without --register, an unknown phone is a bad row; --skip-invalid pays the others.
    let options = DisburseOptions { register: false, skip_invalid: true };
    let report = disburse(&agency, &programme, bad.as_bytes(), options, &mut |_, _| {}).unwrap();
    assert_eq!(report.summary(), "paid 1, already paid 0, rejected 7");
    assert_eq!(report.rows, 8);

    // Registering now pays the rest of the same file; the first row is not paid twice.
    let options = DisburseOptions { register: true, skip_invalid: true };
    let mut progress = Vec::new();
    let report = disburse(&agency, &programme, bad.as_bytes(), options, &mut |done, total| {
        progress.push((done, total))
    })
    .unwrap();
    assert_eq!(report.summary(), "paid 1, already paid 1, rejected 6");
    assert_eq!(report.registered, 1);
    assert_eq!(progress.last(), Some(&(2, 2)));
    assert_eq!(agency.ledger().account(&programme).unwrap().available(), jod("977.5"));
    let again = disburse(&agency, &programme, bad.as_bytes(), options, &mut |_, _| {}).unwrap();
    assert_eq!(again.summary(), "paid 0, already paid 2, rejected 6");

    // A file beyond the budget pays nobody.
    let big = "phone,amount\n0791111111,900\n0792222222,100\n";
    let refused = disburse(&agency, &programme, big.as_bytes(), options, &mut |_, _| {}).unwrap();
    assert!(refused.refusal.unwrap().contains("nothing paid"));
    assert_eq!(refused.rejected.len(), 2);
    assert_eq!(agency.ledger().account(&programme).unwrap().available(), jod("977.5"));
    let header = disburse(&agency, &programme, b"telephone,amount\n1,2\n", options, &mut |_, _| {});
    assert!(matches!(header, Err(Error::Disbursement(m)) if m.contains("`phone`")));
}

#[test]
fn opening_repairs_what_a_crash_between_registry_and_log_left() {
    let dir = tempfile::tempdir().unwrap();
    let agency = agency(dir.path());
    let currency = Currency::parse("JOD").unwrap();
    let kept = agency.register(&person("0791234567", None), currency).unwrap();
    // As if the process died after the registry wrote a record but before the log took it.
    let orphan = agency.registry().register(&person("0781234567", None)).unwrap().id;
    // And after the log recorded an erasure but before the registry shredded the record.
    let half_erased = agency.register(&person("0771234567", None), currency).unwrap();
    agency.registry().begin_erasure(&half_erased).unwrap();
    let erase = sanad_ledger::Command::EraseBeneficiary { id: half_erased.clone() };
    agency.ledger().execute(erase).unwrap().unwrap();
    drop(agency);

    let agency = Agency::open(dir.path(), Options::default()).unwrap();
    assert!(agency.registry().person(&kept).unwrap().is_some());
    assert_eq!(agency.registry().person(&orphan).unwrap(), None, "never acknowledged: undone");
    assert_eq!(agency.registry().person(&half_erased).unwrap(), None, "logged: completed");
    assert!(agency.registry().pending().unwrap().is_empty());
    // The orphan's phone is free again.
    assert!(agency.register(&person("0781234567", None), currency).is_ok());
}

/// Two agencies on one PostgreSQL database, as processes on two machines run them (each folder
/// with copies of the two keys): they share the registry as they share the log, and one
/// opening never undoes the other's registration in progress.
#[test]
fn two_agencies_on_one_database_share_the_registry() {
    use std::sync::Arc;
    let server = sanad_postgres::testing::TestServer::for_test();
    let url = server.database("registry").unwrap();
    let options = || Options {
        log_backend: Some(Arc::new(sanad_postgres::PgBackend::connect(&url).unwrap())),
        shared_store: Some(Arc::new(sanad_postgres::PgKv::connect(&url).unwrap())),
        ..Options::default()
    };
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = Agency::create(dir_a.path(), "example.org/shared", Some("JO"), options()).unwrap();
    for folder in ["registry.sled", "registry.secrets"] {
        assert!(!dir_a.path().join(folder).exists(), "personal data are in the database only");
    }
    for key in ["log.key", "registry.key"] {
        std::fs::copy(dir_a.path().join(key), dir_b.path().join(key)).unwrap();
    }
    let b = Agency::open(dir_b.path(), options()).unwrap();
    let currency = Currency::parse("JOD").unwrap();
    // A folder without the registry's key is refused, not given a key of its own (with
    // another key the duplicate index would find nobody).
    let keyless = tempfile::tempdir().unwrap();
    std::fs::copy(dir_a.path().join("log.key"), keyless.path().join("log.key")).unwrap();
    let refused = Agency::open(keyless.path(), options()).unwrap_err();
    assert!(refused.to_string().contains("registry.key"), "{refused}");
    assert!(!keyless.path().join("registry.key").exists());

    let layla = a.register(&person("0791234567", Some("9871234567")), currency).unwrap();
    assert_eq!(b.beneficiary_by_phone("0791234567").unwrap(), Some(layla.clone()));
    assert!(b.registry().verify_pin(&layla, "4821").unwrap());
    match b.register(&person("+962791234567", None), currency) {
        Err(Error::Duplicate { field: "phone", existing }) => assert_eq!(existing, layla),
        other => panic!("expected a duplicate phone, got {other:?}"),
    }
    match b.register(&person("0781111111", Some("987-123-4567")), currency) {
        Err(Error::Duplicate { field: "national_id", existing }) => assert_eq!(existing, layla),
        other => panic!("expected a duplicate national id, got {other:?}"),
    }

    // A registration marked a moment ago at one and not logged yet: another process's work in
    // progress, which the other, opening now, leaves alone.
    let in_flight = a.registry().register(&person("0771234567", None)).unwrap().id;
    drop(b);
    let b = Agency::open(dir_b.path(), options()).unwrap();
    assert!(b.registry().person(&in_flight).unwrap().is_some(), "work in progress undone");
    assert_eq!(b.registry().pending().unwrap().len(), 1);

    // Guesses and locks count against one limit, whichever process sees them.
    let vendor = sanad_money::Id::parse("vnd-guesser").unwrap();
    for n in 0..sanad_engine::vouchers::GUESSES_PER_WINDOW {
        let guesser = if n % 2 == 0 { &a } else { &b };
        let guess = sanad_ledger::VoucherCode::from_random(n * 7_919 + 1).letters();
        assert!(matches!(guesser.voucher_by_code(&guess, &vendor), Err(Error::UnknownVoucherCode)));
    }
    let guess = sanad_ledger::VoucherCode::from_random(99).letters();
    assert!(matches!(a.voucher_by_code(&guess, &vendor), Err(Error::TooManyGuesses { .. })));
    assert!(matches!(b.voucher_by_code(&guess, &vendor), Err(Error::TooManyGuesses { .. })));
    let pins = sanad_engine::registry::Limit {
        name: "test-pins",
        window: sanad_engine::registry::SlidingWindow { limit: 2, window_ms: 60_000 },
        lock_ms: Some(600_000),
    };
    let phone = sanad_engine::registry::Subject::Phone("+962791234567");
    let now = 1_800_000_000_000;
    a.registry().count_against(&pins, phone, now).unwrap();
    assert_eq!(b.registry().limit_wait(&pins, phone, now).unwrap(), None);
    b.registry().count_against(&pins, phone, now + 1).unwrap();
    assert_eq!(a.registry().limit_wait(&pins, phone, now + 1).unwrap(), Some(600_000));
    assert_eq!(b.registry().limit_wait(&pins, phone, now + 600_001).unwrap(), None);
    // Swept once past: no keyed hash of the phone stays behind.
    assert!(a.registry().sweep_limits(now + 600_001).unwrap() >= 1);
    assert_eq!(a.registry().sweep_limits(now + 600_001).unwrap(), 0);

    // Erased at one: gone for the other too, the limits kept on the phone's keyed hash with it.
    for at in [now + 700_000, now + 700_001] {
        a.registry().count_against(&pins, phone, at).unwrap();
    }
    assert!(b.registry().limit_wait(&pins, phone, now + 700_002).unwrap().is_some());
    b.erase(&layla).unwrap();
    assert_eq!(a.registry().limit_wait(&pins, phone, now + 700_002).unwrap(), None);
    assert_eq!(a.registry().person(&layla).unwrap(), None);
    assert_eq!(a.beneficiary_by_phone("0791234567").unwrap(), None);
}
