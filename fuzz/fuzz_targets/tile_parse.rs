//! Tile paths, tiles and entry bundles: no panic; bundles and paths round-trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sanad_tlog::tile::{TileId, encode_bundle, parse_bundle, parse_tile};

fuzz_target!(|data: &[u8]| {
    if let Ok(entries) = parse_bundle(data) {
        assert_eq!(encode_bundle(entries.iter().copied()).unwrap(), data);
    }
    if let Some(&width) = data.first() {
        let _ = parse_tile(&data[1..], u16::from(width).max(1));
    }
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok((tile, entries)) = TileId::parse_path(text)
    {
        let path = if entries { tile.entries_path() } else { tile.path() };
        assert_eq!(path, text);
    }
});
