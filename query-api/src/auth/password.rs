//! Passwords: argon2id with OWASP's parameters (19 MiB, 2 passes, 1 lane), hashed and checked off
//! the async workers. A login for an unknown user checks the password against a dummy hash, so
//! it costs the same time as a wrong password.

use std::sync::LazyLock;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

/// The shortest password accepted.
pub const MIN_LENGTH: usize = 10;

fn argon2() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// A PHC string for `password`.
pub fn hash(password: &str) -> String {
    let salt = SaltString::generate(&mut OsRng);
    // Hashing fails only for parameters out of range, and these are fixed.
    argon2().hash_password(password.as_bytes(), &salt).map(|h| h.to_string()).unwrap_or_default()
}

/// True when `password` matches the PHC string `hash`.
pub fn verify(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| argon2().verify_password(password.as_bytes(), &parsed).is_ok())
}

static DUMMY: LazyLock<String> = LazyLock::new(|| hash("a password nobody has: it only spends the time"));

/// Spends the time of one check, for a login whose user does not exist.
pub fn verify_nothing(password: &str) {
    let _ = verify(password, &DUMMY);
}

/// Why a new password is refused, if it is.
pub fn weakness(password: &str) -> Option<String> {
    let length = password.chars().count();
    if length < MIN_LENGTH {
        return Some(format!("must be at least {MIN_LENGTH} characters (this one has {length})"));
    }
    if password.len() > 1024 {
        return Some("must be at most 1024 bytes".into());
    }
    None
}

/// A random password of 20 characters from an alphabet without look-alikes.
pub fn generate() -> String {
    use argon2::password_hash::rand_core::RngCore;
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut out = String::with_capacity(20);
    while out.len() < 20 {
        let byte = (OsRng.next_u32() & 0xff) as usize;
        // Rejection sampling keeps every character equally likely.
        if byte < 256 - 256 % ALPHABET.len() {
            out.push(char::from(ALPHABET[byte % ALPHABET.len()]));
        }
    }
    out
}

/// Runs a password check or hash on the blocking pool: each takes tens of milliseconds of CPU.
pub async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(work).await {
        Ok(value) => value,
        Err(join) => std::panic::resume_unwind(join.into_panic()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_argon2id_and_check_only_their_password() {
        let stored = hash("correct horse battery");
        assert!(stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{stored}");
        assert!(verify("correct horse battery", &stored));
        assert!(!verify("correct horse batterx", &stored));
        assert!(!verify("correct horse battery", "not a hash"));
        assert_ne!(stored, hash("correct horse battery"), "every hash has its own salt");
    }

    #[test]
    fn short_passwords_are_refused_and_generated_ones_are_long_enough() {
        assert!(weakness("123456789").is_some());
        assert!(weakness("1234567890").is_none());
        assert!(weakness("пароль-з-10").is_none(), "characters, not bytes, are counted");
        let generated = generate();
        assert_eq!(generated.len(), 20);
        assert!(weakness(&generated).is_none());
        assert_ne!(generated, generate());
    }
}
