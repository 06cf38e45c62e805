//! Fuzzes the event decoder: any bytes give an event or a one-line rejection,
//! never a panic, and an accepted event is well formed.
//!
//! Run: `cd fuzz && cargo +nightly fuzz run decode`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use redcloud_engine::event::{decode, MAX_AT, MAX_ID_BYTES, MIN_AT};

fuzz_target!(|data: &[u8]| {
    let levels: Vec<String> = ["city", "county", "town", "village", "group"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    match decode(data, &levels) {
        Ok(e) => {
            assert!((1..=MAX_ID_BYTES).contains(&e.id.len()));
            assert!(e.at >= MIN_AT && e.at <= MAX_AT);
            assert!(!e.routing_key().is_empty());
            let owned = e.clone().into_owned();
            assert_eq!(owned, e);
        }
        Err(r) => {
            assert!(!r.reason.is_empty());
            assert!(!r.reason.contains('\n'));
        }
    }
});
