//! Secrets at rest. CRM API tokens: AES-256-GCM with a fresh random nonce per value. The key
//! comes from the configuration (64 hex digits) or, in embedded mode, from a key file in the data
//! folder that is created with mode 0600 on first use. Webhook secrets and personal API tokens
//! are random and kept only as SHA-256 digests ([`sha256_hex`]).
//!
//! A token in memory is a [`Secret`]: its `Debug` and `Display` print `***`, so it cannot reach a
//! log line or an error message by accident.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng};
use aes_gcm::{Aes256Gcm, Key, Nonce};

/// The first byte of every stored value: the layout `version | nonce (12) | ciphertext+tag`.
const FORMAT_V1: u8 = 1;
const NONCE_LEN: usize = 12;

/// A value that must never be printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value itself, for the one place that needs it (the `Authorization` header).
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.trim().is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("the secrets key must be 64 hexadecimal digits (32 bytes); generate one with `openssl rand -hex 32`")]
    BadKey,
    #[error("secrets key file `{path}`: {reason}")]
    KeyFile { path: PathBuf, reason: String },
    #[error("a stored secret is not in a format this version can read")]
    UnknownFormat,
    #[error("a stored secret cannot be decrypted with this key: was the key file or `enricher.secrets_key` changed?")]
    WrongKey,
}

/// Encrypts and decrypts secrets with one AES-256-GCM key.
#[derive(Clone)]
pub struct TokenCipher {
    cipher: Aes256Gcm,
}

impl fmt::Debug for TokenCipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenCipher(***)")
    }
}

impl TokenCipher {
    pub fn from_key(key: [u8; 32]) -> Self {
        TokenCipher { cipher: Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&key)) }
    }

    /// A key written as 64 hex digits (surrounding whitespace ignored).
    pub fn from_hex(text: &str) -> Result<Self, SecretError> {
        decode_hex_key(text.trim()).map(Self::from_key).ok_or(SecretError::BadKey)
    }

    /// Reads the key file at `path`, or creates it (mode 0600, and its folder) with a new random
    /// key when there is none.
    pub fn load_or_create(path: &Path) -> Result<Self, SecretError> {
        let existed = path.exists();
        let key = load_or_create_key(path)?;
        if !existed {
            tracing::info!(path = %path.display(), "created a new secrets key file (mode 0600); back it up, but apart from the database whose tokens it decrypts");
        }
        Ok(Self::from_key(key))
    }

    /// `version | nonce | ciphertext`, with a nonce never used before (random, 96 bits).
    pub fn encrypt(&self, secret: &Secret) -> Vec<u8> {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        // Encryption fails only for inputs longer than GCM allows (64 GiB): not a token.
        let sealed = self.cipher.encrypt(&nonce, secret.expose().as_bytes()).unwrap_or_default();
        let mut out = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
        out.push(FORMAT_V1);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    pub fn decrypt(&self, stored: &[u8]) -> Result<Secret, SecretError> {
        let (&version, rest) = stored.split_first().ok_or(SecretError::UnknownFormat)?;
        if version != FORMAT_V1 || rest.len() < NONCE_LEN + 16 {
            return Err(SecretError::UnknownFormat);
        }
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        let plain = self.cipher.decrypt(Nonce::from_slice(nonce), sealed).map_err(|_| SecretError::WrongKey)?;
        String::from_utf8(plain).map(Secret).map_err(|_| SecretError::UnknownFormat)
    }
}

/// `bytes` random bytes from the operating system, as lower-case hex.
pub fn random_hex(bytes: usize) -> String {
    use aes_gcm::aead::rand_core::RngCore;
    let mut buffer = vec![0u8; bytes];
    OsRng.fill_bytes(&mut buffer);
    hex(&buffer)
}

/// The SHA-256 digest of `text`, as lower-case hex.
pub fn sha256_hex(text: &str) -> String {
    use sha2::{Digest, Sha256};
    hex(&Sha256::digest(text.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(DIGITS[usize::from(byte >> 4)] as char);
        out.push(DIGITS[usize::from(byte & 15)] as char);
    }
    out
}

/// Writes `contents` to a new file readable by its owner only (mode 0600), replacing none.
pub fn write_private_file(path: &Path, contents: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut file = create_private(path)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()
}

/// The 32-byte key in the file at `path` (64 hex digits), created with a new random key (mode
/// 0600) when there is none: for keys that only this installation uses.
pub fn load_or_create_key(path: &Path) -> Result<[u8; 32], SecretError> {
    let fail = |reason: String| SecretError::KeyFile { path: path.to_path_buf(), reason };
    match std::fs::read_to_string(path) {
        Ok(text) => {
            warn_if_readable_by_others(path);
            decode_hex_key(text.trim()).ok_or_else(|| fail("does not hold 64 hexadecimal digits".into()))
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let hex = random_hex(32);
            write_private_file(path, &hex).map_err(|e| fail(format!("cannot create it: {e}")))?;
            decode_hex_key(&hex).ok_or_else(|| fail("was written wrongly".into()))
        }
        Err(error) => Err(fail(format!("cannot read it: {error}"))),
    }
}

/// A key written as 64 hex digits.
pub fn decode_hex_key(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    let mut key = [0u8; 32];
    for (i, byte) in key.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(key)
}

#[cfg(unix)]
fn create_private(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)
}

#[cfg(not(unix))]
fn create_private(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new().write(true).create_new(true).open(path)
}

#[cfg(unix)]
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(path = %path.display(), "the secrets key file is readable by other users; `chmod 600` it");
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_path: &Path) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print_their_value() {
        let token = Secret::new("abc-secret-token");
        assert_eq!(format!("{token}"), "***");
        assert_eq!(format!("{token:?}"), "Secret(***)");
        assert!(!format!("{:?}", TokenCipher::from_key([7; 32])).contains('7'));
    }

    #[test]
    fn encrypted_tokens_round_trip_and_use_a_new_nonce_each_time() {
        let cipher = TokenCipher::from_key([1; 32]);
        let token = Secret::new("MzQ1NjM0NTY3");
        let a = cipher.encrypt(&token);
        let b = cipher.encrypt(&token);
        assert_ne!(a, b, "same plaintext, different nonce");
        assert!(!a.windows(token.expose().len()).any(|w| w == token.expose().as_bytes()));
        assert_eq!(cipher.decrypt(&a).unwrap(), token);
        assert_eq!(cipher.decrypt(&b).unwrap(), token);
    }

    #[test]
    fn another_key_or_a_tampered_value_is_refused() {
        let sealed = TokenCipher::from_key([1; 32]).encrypt(&Secret::new("t"));
        assert!(matches!(TokenCipher::from_key([2; 32]).decrypt(&sealed), Err(SecretError::WrongKey)));
        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(matches!(TokenCipher::from_key([1; 32]).decrypt(&tampered), Err(SecretError::WrongKey)));
        assert!(matches!(TokenCipher::from_key([1; 32]).decrypt(&[9, 1, 2]), Err(SecretError::UnknownFormat)));
    }

    #[test]
    fn digests_and_random_values_are_lower_case_hex() {
        assert_eq!(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        let a = random_hex(32);
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert_ne!(a, random_hex(32));
    }

    #[test]
    fn hex_keys_must_have_64_digits() {
        assert!(TokenCipher::from_hex(&"ab".repeat(32)).is_ok());
        assert!(matches!(TokenCipher::from_hex("abc"), Err(SecretError::BadKey)));
        assert!(matches!(TokenCipher::from_hex(&"zz".repeat(32)), Err(SecretError::BadKey)));
    }

    #[cfg(unix)]
    #[test]
    fn key_file_is_created_private_and_read_back() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested").join("secret.key");
        let first = TokenCipher::load_or_create(&path).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let sealed = first.encrypt(&Secret::new("token"));
        let second = TokenCipher::load_or_create(&path).unwrap();
        assert_eq!(second.decrypt(&sealed).unwrap().expose(), "token");
    }
}
