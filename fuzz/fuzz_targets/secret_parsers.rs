//! The CLI's document parsing, Secret and SealedSecret readers, and the SealedSecret type as the controller
//! deserializes it, plus the seal/render/parse/unseal round trip (`sealant_cli::fuzz_support::secret_parsers`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sealant_cli::fuzz_support::secret_parsers(data));
