//! Rate traces (`timestamp,value` CSV, as `surge-loadgen --trace` and the
//! simulator read them) from any text: rows or an error naming a line.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(rows) = surge_trace::parse_rows(text, 10_000) {
            assert!(!rows.is_empty() && rows.len() <= 10_000);
        }
        let _ = surge_trace::parse_timestamp(text);
    }
});
