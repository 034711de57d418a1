//! VSee Clinic: arbitrary bytes as a delivery of a source whose URL token matches, then
//! `vendors::normalize` (envelope parsing and the pure mappers). Seeds: `fixtures/vsee/`.
#![no_main]

use carebridge::domain::Vendor;
use carebridge::vendors::MapperConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    carebridge_fuzz::fuzz_unsigned(Vendor::Vsee, data, &MapperConfig::default());
});
