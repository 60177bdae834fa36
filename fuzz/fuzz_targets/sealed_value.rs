//! The sealed-value decoder: arbitrary bytes as sealed text, as the age file under it and as a decrypted
//! frame, plus the seal/unseal round trip (`sealant_seal::fuzz_support::sealed_value`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sealant_seal::fuzz_support::sealed_value(data));
