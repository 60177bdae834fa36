//! The GitSync manifest loader over a file set split out of the input
//! (`sealant_manifests::fuzz_support::manifests`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sealant_manifests::fuzz_support::manifests(data));
