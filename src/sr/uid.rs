//! UIDs derived from names (PS3.5 B.2 "UUID Derived UID"): `2.25.` and the decimal value of a
//! name-based UUID (RFC 9562 version 8: SHA-256 of a namespace and the name). The same name
//! always gives the same UID, so the same study analysed by the same model gives the same SR
//! instance and series UIDs, and a re-push replaces its result instead of adding another. No
//! registered UID root is needed.

use sha2::{Digest, Sha256};

/// This service's namespace: a random UUID fixed once, so that our names cannot collide with
/// another implementation's hashes of the same strings.
const NAMESPACE: [u8; 16] = [
    0x5e, 0x0c, 0x3b, 0x9a, 0x41, 0x7d, 0x4f, 0x62, 0x9b, 0x13, 0xc8, 0x2e, 0x77, 0xa4, 0x05, 0xd1,
];

/// The UID of `name`.
pub fn derived(name: &str) -> String {
    let digest = Sha256::new()
        .chain_update(NAMESPACE)
        .chain_update(name.as_bytes())
        .finalize();
    let mut uuid = [0u8; 16];
    uuid.copy_from_slice(&digest[..16]);
    uuid[6] = (uuid[6] & 0x0F) | 0x80; // version 8
    uuid[8] = (uuid[8] & 0x3F) | 0x80; // RFC 9562 variant
    format!("2.25.{}", u128::from_be_bytes(uuid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_always_gives_the_same_valid_uid() {
        let uid = derived("mammo-sr/instance/v1|1.2.3");
        assert_eq!(uid, derived("mammo-sr/instance/v1|1.2.3"));
        assert_ne!(uid, derived("mammo-sr/instance/v1|1.2.4"));
        // PS3.5 9.1: digits and dots, no component with a leading zero, at most 64 characters.
        assert!(uid.len() <= 64, "{uid}");
        for component in uid.split('.') {
            assert!(!component.is_empty() && component.bytes().all(|b| b.is_ascii_digit()));
            assert!(component == "0" || !component.starts_with('0'), "{uid}");
        }
    }
}
