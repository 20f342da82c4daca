//! Access control: roles, API key records and their tokens. No tonic, no
//! sled: the API layer maps RPCs to the role they need and the store keeps
//! the records.
//!
//! A token is `pc1_<key id: 16 hex>_<secret: 64 hex>`: the id finds the
//! record without a scan, the 256-bit secret proves possession. Only the
//! secret's SHA-256 is stored, and it is compared in constant time.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::error::{Error, Result};
use super::model::Timestamp;
use super::FORMAT_VERSION;

/// What a caller may do. Each role includes the ones before it, so roles
/// compare by their order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum Role {
    /// Not a role.
    Unspecified = 0,
    /// Read claims, responses, statuses and events.
    Reader = 1,
    /// Also register claims and attach official responses.
    Ingest = 2,
    /// Also set verdicts.
    Desk = 3,
    /// Also manage API keys.
    Admin = 4,
}

impl Role {
    /// The lower-case name used on the command line and in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Unspecified => "unspecified",
            Role::Reader => "reader",
            Role::Ingest => "ingest",
            Role::Desk => "desk",
            Role::Admin => "admin",
        }
    }

    /// Parses a lower-case role name.
    pub fn parse(name: &str) -> Option<Role> {
        [Role::Reader, Role::Ingest, Role::Desk, Role::Admin]
            .into_iter()
            .find(|r| r.as_str() == name)
    }
}

/// Length of a token's secret, in bytes (256 bits).
pub const SECRET_BYTES: usize = 32;
/// Longest key name.
pub const MAX_KEY_NAME_CHARS: usize = 64;
/// Actor names the service uses itself; no key may take them.
pub const RESERVED_NAMES: [&str; 2] = ["anonymous", "cli"];

const TOKEN_PREFIX: &str = "pc1_";

/// An API key as stored: everything but the token.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct ApiKey {
    /// Record layout version ([`FORMAT_VERSION`] when written).
    #[prost(uint32, tag = "1")]
    pub format_version: u32,
    /// Random id, the token's public part; the store's key.
    #[prost(fixed64, tag = "2")]
    pub id: u64,
    /// Unique name; the actor recorded for changes made with the key.
    #[prost(string, tag = "3")]
    pub name: String,
    /// What the key may do.
    #[prost(enumeration = "Role", tag = "4")]
    pub role: i32,
    /// SHA-256 of the token's secret.
    #[prost(bytes = "vec", tag = "5")]
    pub secret_sha256: Vec<u8>,
    /// When the key was created.
    #[prost(message, optional, tag = "6")]
    pub create_time: Option<Timestamp>,
    /// Who created it.
    #[prost(string, tag = "7")]
    pub created_by: String,
    /// When it was revoked; `None` while active.
    #[prost(message, optional, tag = "8")]
    pub revoke_time: Option<Timestamp>,
    /// Who revoked it.
    #[prost(string, tag = "9")]
    pub revoked_by: String,
}

impl ApiKey {
    /// A new key named `name` with `role`, and its token (shown once).
    pub fn create(name: &str, role: Role, actor: &str, now: Timestamp) -> Result<(ApiKey, String)> {
        validate_key_name(name)?;
        if role == Role::Unspecified {
            return Err(Error::invalid(
                "role",
                "is required (reader, ingest, desk or admin)",
            ));
        }
        let mut random = [0u8; 8 + SECRET_BYTES];
        getrandom::fill(&mut random)
            .map_err(|e| Error::Internal(format!("no randomness from the OS: {e}")))?;
        let id = u64::from_be_bytes(random[..8].try_into().expect("8 bytes"));
        let secret = &random[8..];
        let token = format!("{TOKEN_PREFIX}{id:016x}_{}", hex::encode(secret));
        let key = ApiKey {
            format_version: FORMAT_VERSION,
            id,
            name: name.to_string(),
            role: role as i32,
            secret_sha256: Sha256::digest(secret).to_vec(),
            create_time: Some(now),
            created_by: actor.to_string(),
            revoke_time: None,
            revoked_by: String::new(),
        };
        Ok((key, token))
    }

    /// True once revoked.
    pub fn is_revoked(&self) -> bool {
        self.revoke_time.is_some()
    }

    /// The token's public start, safe to show and log.
    pub fn token_prefix(&self) -> String {
        format!("{TOKEN_PREFIX}{:016x}", self.id)
    }

    /// Whether `token` carries this key's secret. Constant-time in the
    /// secret; says nothing about revocation.
    pub fn matches(&self, token: &Token) -> bool {
        let digest = Sha256::digest(token.secret);
        token.id == self.id && bool::from(digest.as_slice().ct_eq(&self.secret_sha256))
    }
}

/// A token as presented by a caller, split into its parts. Its `Debug`
/// hides the secret, and it has no `PartialEq`: compare with
/// [`ApiKey::matches`], which is constant-time.
#[derive(Clone)]
pub struct Token {
    /// The key id.
    pub id: u64,
    secret: [u8; SECRET_BYTES],
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Token({TOKEN_PREFIX}{:016x}_…)", self.id)
    }
}

impl Token {
    /// Parses `pc1_<16 hex>_<64 hex>` (lower-case hex only, so each token
    /// has exactly one spelling); `None` for anything else.
    pub fn parse(text: &str) -> Option<Token> {
        let rest = text.strip_prefix(TOKEN_PREFIX)?;
        let (id, secret) = rest.split_once('_')?;
        let lower_hex = |s: &str| s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if id.len() != 16
            || secret.len() != 2 * SECRET_BYTES
            || !lower_hex(id)
            || !lower_hex(secret)
        {
            return None;
        }
        let id = u64::from_str_radix(id, 16).ok()?;
        let mut bytes = [0u8; SECRET_BYTES];
        hex::decode_to_slice(secret, &mut bytes).ok()?;
        Some(Token { id, secret: bytes })
    }
}

/// Checks a key name: 1-64 of `[A-Za-z0-9._-]`, starting with a letter or
/// digit, not a reserved actor name.
pub fn validate_key_name(name: &str) -> Result<()> {
    let field = "name";
    if name.is_empty() {
        return Err(Error::invalid(field, "is required, e.g. \"desk-editor-1\""));
    }
    let ok_chars = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    let starts_ok = name.as_bytes()[0].is_ascii_alphanumeric();
    if name.len() > MAX_KEY_NAME_CHARS || !ok_chars || !starts_ok {
        // The value is not quoted: a token pasted here by mistake must not
        // come back in the reply or land in the log.
        return Err(Error::invalid(
            field,
            format!(
                "must be 1-{MAX_KEY_NAME_CHARS} letters, digits, '.', '_' or '-', starting with a letter or digit"
            ),
        ));
    }
    if RESERVED_NAMES.iter().any(|r| r.eq_ignore_ascii_case(name)) {
        return Err(Error::invalid(field, format!("{name:?} is reserved")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_created_token_matches_its_key_and_no_other() {
        let (key, token) = ApiKey::create("desk-1", Role::Desk, "cli", Timestamp::now()).unwrap();
        let parsed = Token::parse(&token).expect("own format");
        assert!(key.matches(&parsed));
        assert!(token.starts_with(&key.token_prefix()));
        assert_eq!(token.len(), 4 + 16 + 1 + 64);
        assert!(!key.secret_sha256.is_empty());
        assert!(!key.encode_to_vec_contains(&token));

        let (other, other_token) =
            ApiKey::create("desk-2", Role::Desk, "cli", Timestamp::now()).unwrap();
        assert_ne!(key.id, other.id);
        assert!(!key.matches(&Token::parse(&other_token).unwrap()));
        // Same id, different secret.
        let mut forged = token.clone();
        let last = forged.pop().unwrap();
        forged.push(if last == '0' { '1' } else { '0' });
        assert!(!key.matches(&Token::parse(&forged).unwrap()));
    }

    impl ApiKey {
        fn encode_to_vec_contains(&self, token: &str) -> bool {
            let secret = token.rsplit('_').next().unwrap();
            let bytes = prost::Message::encode_to_vec(self);
            String::from_utf8_lossy(&bytes).contains(secret)
        }
    }

    #[test]
    fn malformed_tokens_do_not_parse_and_debug_hides_the_secret() {
        let (_, token) = ApiKey::create("k", Role::Reader, "cli", Timestamp::now()).unwrap();
        for bad in [
            "",
            "pc1_",
            "Bearer x",
            &token[..token.len() - 1],
            &format!("{token}0"),
            &token.replace("pc1_", "pc2_"),
            &token.replacen('_', "-", 2),
            &token.to_uppercase().replace("PC1_", "pc1_"),
            &format!("pc1_+{}", &token[5..]),
            &format!(
                "{}+{}",
                &token[..token.len() - 64],
                &token[token.len() - 63..]
            ),
        ] {
            assert!(Token::parse(bad).is_none(), "{bad:?}");
        }
        let debug = format!("{:?}", Token::parse(&token).unwrap());
        assert!(
            !debug.contains(token.rsplit('_').next().unwrap()),
            "{debug}"
        );
    }

    #[test]
    fn roles_are_ordered_and_named() {
        assert!(
            Role::Reader < Role::Ingest && Role::Ingest < Role::Desk && Role::Desk < Role::Admin
        );
        for role in [Role::Reader, Role::Ingest, Role::Desk, Role::Admin] {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        assert_eq!(Role::parse("root"), None);
    }

    #[test]
    fn key_names_are_checked() {
        for ok in ["desk-1", "ingest.bot_2", "A"] {
            assert!(validate_key_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "-x",
            "has space",
            "anonymous",
            "cli",
            "Anonymous",
            "CLI",
            &"a".repeat(65),
            "é",
        ] {
            assert!(validate_key_name(bad).is_err(), "{bad}");
        }
        let err = ApiKey::create("k", Role::Unspecified, "cli", Timestamp::now()).unwrap_err();
        assert!(err.to_string().contains("role"), "{err}");
    }
}
