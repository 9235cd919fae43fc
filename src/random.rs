//! Unguessable values: sign-in state nonces, PKCE verifiers, and the secrets `authbridge demo` generates.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the system random number generator failed")]
pub struct RandomError;

/// 32 random bytes from the operating system, base64url without padding: 43 characters, which is also a valid
/// PKCE verifier length (RFC 7636 allows 43 to 128).
pub fn token() -> Result<String, RandomError> {
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| RandomError)?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}
