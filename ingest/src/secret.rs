//! Webhook secrets: generated once, kept only as a SHA-256 digest, compared in constant time.

/// The hex SHA-256 digest under which a secret is stored.
pub fn secret_digest(secret: &str) -> String {
    ksa_state::secret::sha256_hex(secret)
}

/// True when `offered` hashes to `stored_digest`. Both digests have a fixed length, and every
/// byte is compared, so the time taken says nothing about how much matched.
pub fn secret_matches(offered: &str, stored_digest: &str) -> bool {
    let offered = secret_digest(offered);
    let (a, b) = (offered.as_bytes(), stored_digest.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_same_secret_matches_its_digest() {
        let stored = secret_digest("s3cret-value");
        assert_eq!(stored.len(), 64);
        // SHA-256 of "abc" (FIPS 180-2, appendix B.1).
        assert_eq!(secret_digest("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert!(secret_matches("s3cret-value", &stored));
        assert!(!secret_matches("s3cret-valuf", &stored));
        assert!(!secret_matches("", &stored));
        assert!(!secret_matches("s3cret-value", "short"));
    }
}
