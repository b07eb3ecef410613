//! API keys: who may call the service. Keys live in a file of `NAME:SHA256` lines (the
//! lowercase hex SHA-256 of each key, so the file holds no key itself); a request presents
//! `Authorization: Bearer KEY`. The file is re-read when it changes or on SIGHUP
//! ([`crate::reload`]), so keys are added and revoked without a restart. Keys and hashes are
//! never logged; the key's name is what the audit trail records.

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

/// The name of the key a request was let in with (a request extension).
#[derive(Debug, Clone)]
pub struct KeyName(pub Arc<str>);

/// The keys in force.
#[derive(Debug, Default, PartialEq)]
pub struct ApiKeys {
    keys: Vec<(Arc<str>, [u8; 32])>,
}

impl ApiKeys {
    /// Parses a keys file: one `NAME:SHA256` a line, blank lines and `#` comments ignored.
    /// An error names the line, never its content.
    pub fn parse(text: &str) -> Result<ApiKeys, String> {
        let mut keys = Vec::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let parsed = line
                .split_once(':')
                .and_then(|(name, hash)| Some((name.trim(), hex32(hash.trim())?)))
                .filter(|(name, _)| !name.is_empty());
            let Some((name, hash)) = parsed else {
                return Err(format!(
                    "line {} is not NAME:SHA256 (64 lowercase hex digits)",
                    number + 1
                ));
            };
            keys.push((Arc::from(name), hash));
        }
        Ok(ApiKeys { keys })
    }

    /// The name of the key whose hash matches `key`'s. Every stored hash is compared, in time
    /// that does not depend on where the bytes differ.
    pub fn name_of(&self, key: &str) -> Option<Arc<str>> {
        let presented: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        let mut found = None;
        for (name, hash) in &self.keys {
            let difference = hash
                .iter()
                .zip(&presented)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b));
            if difference == 0 {
                found = Some(Arc::clone(name));
            }
        }
        found
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

fn hex32(text: &str) -> Option<[u8; 32]> {
    let digits = text.as_bytes();
    if digits.len() != 64 {
        return None;
    }
    let value = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(digits.chunks(2)) {
        *byte = value(pair[0])? << 4 | value(pair[1])?;
    }
    Some(out)
}

/// The keys file and the keys read from it, shared by every request.
#[derive(Clone)]
pub struct KeyStore {
    path: PathBuf,
    keys: Arc<RwLock<ApiKeys>>,
}

impl KeyStore {
    /// Reads `path`; an unreadable or malformed file stops start-up.
    pub fn open(path: &Path) -> Result<KeyStore, String> {
        let keys = read(path)?;
        Ok(KeyStore {
            path: path.to_path_buf(),
            keys: Arc::new(RwLock::new(keys)),
        })
    }

    /// The name of the key `key` matches, if any.
    pub fn name_of(&self, key: &str) -> Option<Arc<str>> {
        self.keys
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .name_of(key)
    }

    /// The keys file, for [`crate::reload::watch`].
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Re-reads the file; one that became unreadable or malformed keeps the keys in force
    /// (logged).
    pub fn reload(&self) {
        match read(&self.path) {
            Ok(keys) => {
                tracing::info!(keys = keys.len(), "API keys re-read");
                *self.keys.write().unwrap_or_else(|p| p.into_inner()) = keys;
            }
            Err(why) => tracing::error!("API keys file not re-read, the old keys stay: {why}"),
        }
    }
}

fn read(path: &Path) -> Result<ApiKeys, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the API keys file {}: {e}", path.display()))?;
    ApiKeys::parse(&text).map_err(|why| format!("API keys file {}: {why}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(key: &str) -> String {
        Sha256::digest(key.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    #[test]
    fn keys_are_found_by_their_hash_and_comments_are_skipped() {
        let text = format!(
            "# radiology viewer\n\nviewer:{}\n  pacs-router : {}\n",
            hash("s3cret"),
            hash("other")
        );
        let keys = ApiKeys::parse(&text).unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys.name_of("s3cret").as_deref(), Some("viewer"));
        assert_eq!(keys.name_of("other").as_deref(), Some("pacs-router"));
        assert_eq!(keys.name_of("s3cre"), None);
        assert_eq!(keys.name_of(""), None);
    }

    #[test]
    fn a_malformed_line_is_named_without_its_content() {
        for bad in [
            "viewer".to_string(),
            format!(":{}", hash("k")),
            "viewer:abc".into(),
            format!("viewer:{}", hash("k").to_uppercase()),
        ] {
            let error = ApiKeys::parse(&format!("# ok\n{bad}\n")).unwrap_err();
            assert!(error.contains("line 2"), "{error}");
            assert!(!error.contains(&bad), "{error}");
        }
    }
}
