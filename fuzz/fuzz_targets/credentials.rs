//! Fuzzes Content Credentials reading: arbitrary bytes given as a JPEG and
//! as a PNG to the C2PA reader. Any input must give no credentials or
//! bounded ones, never a panic, an abort, a hang or a network request.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use photoclaim::imaging::credentials::CredentialReader;

fn reader() -> &'static CredentialReader {
    static READER: OnceLock<CredentialReader> = OnceLock::new();
    READER.get_or_init(CredentialReader::new)
}

fuzz_target!(|data: &[u8]| {
    for format in ["jpeg", "png"] {
        if let Some(credentials) = reader().read(data, format) {
            assert!(credentials.validation_codes.len() <= 100);
            assert!(credentials.actions.len() <= 100);
            assert!(credentials.ingredients.len() <= 100);
            for code in &credentials.validation_codes {
                assert!(code.code.chars().count() <= 500);
                assert!(code.explanation.chars().count() <= 500);
            }
            for ingredient in &credentials.ingredients {
                assert!(ingredient.hashes.len() <= 100);
                assert!(ingredient.title.chars().count() <= 500);
            }
            assert!(credentials.title.chars().count() <= 500);
            assert!(credentials.signer_subject.chars().count() <= 500);
        }
    }
});
