//! Chup Online: arbitrary bytes as a delivery body, signed over its raw `payload` text as Chup
//! would sign it, verified, then `vendors::normalize` (envelope parsing and the live-queue,
//! appointment, client, service and staff mappers). Seeds: `fixtures/chup/`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    carebridge_fuzz::fuzz_chup(data);
});
