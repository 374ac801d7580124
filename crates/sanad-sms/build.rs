//! Embeds every reply file in `locales/` (one per language, named by its BCP 47 tag): adding a
//! language is adding a file, with no change to the code.

use std::fmt::Write as _;
use std::path::PathBuf;

fn main() {
    let dir =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it")).join("locales");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut files: Vec<(String, PathBuf)> = std::fs::read_dir(&dir)
        .expect("the locales folder")
        .filter_map(|entry| {
            let path = entry.ok()?.path();
            let tag = path.file_stem()?.to_str()?.to_owned();
            (path.extension()? == "ftl").then_some((tag, path))
        })
        .collect();
    files.sort();
    let mut code = String::from("/// Every embedded reply file: (language tag, Fluent source).\n");
    code.push_str("pub(crate) const LOCALES: &[(&str, &str)] = &[\n");
    for (tag, path) in &files {
        println!("cargo:rerun-if-changed={}", path.display());
        let _ = writeln!(code, "    ({tag:?}, include_str!({:?})),", path.display().to_string());
    }
    code.push_str("];\n");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets it")).join("locales.rs");
    std::fs::write(out, code).expect("writing locales.rs");
}
