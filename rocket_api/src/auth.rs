//! API keys with roles: `read` (get, list, predict, features) and `admin` (also upload, train,
//! delete). Keys are configured in clear or as SHA-256 hex and only their hashes are kept.

use std::collections::HashMap;

use rocket::http::Status;
use rocket::outcome::Outcome;
use rocket::request::{self, FromRequest, Request};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::error::{ApiError, GuardFailure, ProblemKind};

/// What a key may do; `admin` includes `read`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read resources, extract features, predict.
    Read,
    /// Everything, including upload, train and delete.
    Admin,
}

/// One configured key: `key` in clear (hashed at start-up) or `sha256` of it in hex.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    /// The key itself.
    pub key: Option<String>,
    /// The SHA-256 of the key, in hex.
    pub sha256: Option<String>,
    /// Its role.
    pub role: Role,
}

impl std::fmt::Debug for KeyConfig {
    // Never print a key, even in a debug dump of the settings.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyConfig").field("role", &self.role).finish_non_exhaustive()
    }
}

/// The hashes of the configured keys.
#[derive(Debug, Default)]
pub struct ApiKeys {
    roles: HashMap<[u8; 32], Role>,
}

fn sha256(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

fn parse_hex(hex: &str) -> Option<[u8; 32]> {
    let bytes = hex.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks(2).enumerate() {
        out[i] = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(out)
}

impl ApiKeys {
    /// Hashes the configured keys; a key with both or neither of `key`/`sha256`, or bad hex,
    /// is a configuration error.
    pub fn new(configs: &[KeyConfig]) -> Result<Self, String> {
        let mut roles = HashMap::new();
        for (i, config) in configs.iter().enumerate() {
            let hash = match (&config.key, &config.sha256) {
                (Some(key), None) if !key.is_empty() => sha256(key),
                (None, Some(hex)) => {
                    parse_hex(hex).ok_or_else(|| format!("api_keys[{i}].sha256 is not 64 hex digits"))?
                }
                _ => return Err(format!("api_keys[{i}] needs exactly one of `key` (non-empty) or `sha256`")),
            };
            roles.insert(hash, config.role);
        }
        Ok(ApiKeys { roles })
    }

    /// How many keys are configured.
    pub fn len(&self) -> usize {
        self.roles.len()
    }

    /// Whether no key is configured.
    pub fn is_empty(&self) -> bool {
        self.roles.is_empty()
    }

    fn authorize(&self, presented: Option<&str>, needed: Role) -> Result<(), ApiError> {
        let key = presented.ok_or_else(|| {
            ApiError::new(
                ProblemKind::Unauthorized,
                "this route needs an API key: send `Authorization: Bearer <key>` or `X-API-Key: <key>`",
            )
        })?;
        let role = self
            .roles
            .get(&sha256(key))
            .ok_or_else(|| ApiError::new(ProblemKind::Unauthorized, "the API key is not recognised"))?;
        if *role < needed {
            return Err(ApiError::new(ProblemKind::Forbidden, "this route needs a key with the `admin` role"));
        }
        Ok(())
    }
}

fn presented_key<'r>(req: &'r Request<'_>) -> Option<&'r str> {
    let headers = req.headers();
    headers
        .get_one("Authorization")
        .and_then(|value| value.strip_prefix("Bearer "))
        .or_else(|| headers.get_one("X-API-Key"))
        .map(str::trim)
}

fn guard(req: &Request<'_>, needed: Role) -> request::Outcome<(), ()> {
    let keys = &req.rocket().state::<crate::service::Service>().expect("the service is managed from start-up").keys;
    match keys.authorize(presented_key(req), needed) {
        Ok(()) => Outcome::Success(()),
        Err(error) => {
            let status: Status = error.kind.status();
            GuardFailure::set(req, error);
            Outcome::Error((status, ()))
        }
    }
}

/// A request guard: the request carries a key with at least the `read` role.
#[derive(Debug)]
pub struct Reader;

/// A request guard: the request carries a key with the `admin` role.
#[derive(Debug)]
pub struct Admin;

#[rocket::async_trait]
impl<'r> FromRequest<'r> for Reader {
    type Error = ();

    async fn from_request(req: &'r Request<'_>) -> request::Outcome<Self, ()> {
        guard(req, Role::Read).map(|()| Reader)
    }
}

#[rocket::async_trait]
impl<'r> FromRequest<'r> for Admin {
    type Error = ();

    async fn from_request(req: &'r Request<'_>) -> request::Outcome<Self, ()> {
        guard(req, Role::Admin).map(|()| Admin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_matched_by_hash_and_roles_are_ordered() {
        let admin_hash: String = sha256("s3cret").iter().map(|b| format!("{b:02x}")).collect();
        let keys = ApiKeys::new(&[
            KeyConfig { key: None, sha256: Some(admin_hash), role: Role::Admin },
            KeyConfig { key: Some("reader".into()), sha256: None, role: Role::Read },
        ])
        .unwrap();
        assert!(keys.authorize(Some("s3cret"), Role::Admin).is_ok());
        assert!(keys.authorize(Some("reader"), Role::Read).is_ok());
        assert_eq!(keys.authorize(Some("reader"), Role::Admin).unwrap_err().kind, ProblemKind::Forbidden);
        assert_eq!(keys.authorize(Some("nope"), Role::Read).unwrap_err().kind, ProblemKind::Unauthorized);
        assert_eq!(keys.authorize(None, Role::Read).unwrap_err().kind, ProblemKind::Unauthorized);
        assert!(ApiKeys::new(&[KeyConfig { key: None, sha256: Some("zz".into()), role: Role::Read }]).is_err());
        assert!(ApiKeys::new(&[KeyConfig { key: Some(String::new()), sha256: None, role: Role::Read }]).is_err());
    }
}
