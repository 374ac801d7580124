//! Reading a disbursement file never panics: any bytes give rows and typed problems by line,
//! or a typed refusal of the whole file, and checking a file writes nothing to the ledger.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use sanad_engine::disburse::{DisburseOptions, check_file};
use sanad_engine::{Agency, Options};
use sanad_money::Currency;

/// One agency for the whole run, with one registered beneficiary, in a folder of its own.
static AGENCY: LazyLock<(tempfile::TempDir, Agency)> = LazyLock::new(|| {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let agency = Agency::create(dir.path(), "fuzz.example/csv", Some("JO"), Options::default())
        .expect("an agency");
    let person = sanad_engine::registry::NewPerson {
        phone: "0791234567".into(),
        national_id: Some("9871234567".into()),
        ..Default::default()
    };
    agency.register(&person, currency()).expect("a registration");
    (dir, agency)
});

fn currency() -> Currency {
    Currency::parse("JOD").expect("JOD")
}

fuzz_target!(|data: &[u8]| {
    let (_, agency) = &*AGENCY;
    let size = agency.ledger().size();
    for register in [false, true] {
        let options = DisburseOptions { register, skip_invalid: false };
        if let Ok((rows, problems)) = check_file(agency, data, currency(), options) {
            assert!(problems.windows(2).all(|pair| pair[0].line <= pair[1].line));
            assert!(rows + problems.len() <= data.len());
        }
    }
    assert_eq!(agency.ledger().size(), size, "checking a file wrote to the ledger");
});
