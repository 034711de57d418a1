//! API keys: hashing and constant-time lookup. Keys are stored and compared only as SHA-256
//! digests, so neither the config file (with `key_sha256`) nor the database holds a usable key.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::{ApiKeyConfig, Scope};

pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Who is calling, once the key matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub key_name: String,
    pub scopes: Vec<Scope>,
}

impl Caller {
    pub fn has(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
    }
}

/// Finds the configured key matching `presented`. Every key is compared (no early exit), each
/// comparison in constant time, so timing does not reveal how many keys exist or which matched.
pub fn authenticate(keys: &[ApiKeyConfig], presented: &str) -> Option<Caller> {
    let digest = sha256(presented.as_bytes());
    let mut found = None;
    for key in keys {
        if bool::from(key.key_sha256.ct_eq(&digest)) {
            found = Some(Caller {
                key_name: key.name.clone(),
                scopes: key.scopes.clone(),
            });
        }
    }
    found
}

/// Authenticates against the config keys, then the database keys (`carebridge keys`).
/// `Err` only when the database cannot be asked; an unknown key is `Ok(None)`.
pub async fn authenticate_any(
    config_keys: &[ApiKeyConfig],
    db: &sea_orm::DatabaseConnection,
    presented: &str,
) -> Result<Option<Caller>, sea_orm::DbErr> {
    if let Some(caller) = authenticate(config_keys, presented) {
        return Ok(Some(caller));
    }
    let found = crate::store::keys::find_active(db, &sha256(presented.as_bytes())).await?;
    Ok(found.map(|(key_name, scopes)| Caller { key_name, scopes }))
}

/// The key from an `Authorization: Bearer …` header value.
pub fn bearer_token(header_value: &str) -> Option<&str> {
    let (scheme, token) = header_value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Vec<ApiKeyConfig> {
        vec![ApiKeyConfig {
            name: "tv".into(),
            key_sha256: sha256(b"0123456789abcdef"),
            scopes: vec![Scope::Read],
        }]
    }

    #[test]
    fn the_right_key_authenticates_with_its_scopes() {
        let caller = authenticate(&keys(), "0123456789abcdef").expect("known key");
        assert_eq!(caller.key_name, "tv");
        assert!(caller.has(Scope::Read));
        assert!(!caller.has(Scope::Write));
    }

    #[test]
    fn a_wrong_key_does_not_authenticate() {
        assert_eq!(authenticate(&keys(), "0123456789abcdeX"), None);
    }

    #[test]
    fn bearer_headers_are_parsed_case_insensitively() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer  abc "), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer "), None);
    }
}
