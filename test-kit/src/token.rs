//! A token server for Distribution's token authentication, the scheme Docker Hub, GHCR and
//! Harbor use: the registry answers 401 with `WWW-Authenticate: Bearer realm=...`, the client
//! exchanges basic credentials here for a JWT, and the registry verifies the JWT's signature
//! against the certificate in its `rootcertbundle`.

use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::IntoResponse;
use base64::Engine as _;
use rcgen::{CertificateParams, DnType, KeyPair};
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;

pub const SERVICE: &str = "dragonfly-test-registry";
pub const ISSUER: &str = "dragonfly-test-token-issuer";

pub struct TokenServer {
    /// `http://127.0.0.1:<port>/token`.
    pub realm: String,
    /// The signing certificate, for the registry's `rootcertbundle`.
    pub cert_pem: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Signer {
    key: ring::signature::EcdsaKeyPair,
    cert_der: Vec<u8>,
    user: String,
    password: String,
}

/// Decodes `%XX` escapes (and `+` as space) in a query value.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%' && i + 3 <= bytes.len())
            .then(|| std::str::from_utf8(&bytes[i + 1..i + 3]).ok().and_then(|hex| u8::from_str_radix(hex, 16).ok()))
            .flatten();
        match (escaped, bytes[i]) {
            (Some(byte), _) => {
                out.push(byte);
                i += 3;
                continue;
            }
            (None, b'+') => out.push(b' '),
            (None, byte) => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl Signer {
    fn token(&self, scopes: &[String]) -> String {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        let access: Vec<_> = scopes
            .iter()
            .filter_map(|scope| {
                let mut parts = scope.splitn(3, ':');
                let (kind, name, actions) = (parts.next()?, parts.next()?, parts.next()?);
                Some(json!({"type": kind, "name": name, "actions": actions.split(',').collect::<Vec<_>>()}))
            })
            .collect();
        let header = json!({"typ": "JWT", "alg": "ES256", "x5c": [base64::engine::general_purpose::STANDARD.encode(&self.cert_der)]});
        let claims = json!({"iss": ISSUER, "sub": self.user, "aud": SERVICE, "exp": now + 300, "nbf": now - 10, "iat": now,
            "jti": format!("{now}-{}", scopes.len()), "access": access});
        let input = format!(
            "{}.{}",
            b64url(&serde_json::to_vec(&header).unwrap()),
            b64url(&serde_json::to_vec(&claims).unwrap())
        );
        let signature = self.key.sign(&ring::rand::SystemRandom::new(), input.as_bytes()).unwrap();
        format!("{input}.{}", b64url(signature.as_ref()))
    }

    fn authorised(&self, headers: &HeaderMap) -> bool {
        let expected = base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", self.user, self.password));
        headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(&format!("Basic {expected}"))
    }
}

impl TokenServer {
    pub async fn start(user: &str, password: &str) -> TokenServer {
        let key_pair = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, ISSUER);
        let cert = params.self_signed(&key_pair).unwrap();
        let key = ring::signature::EcdsaKeyPair::from_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &key_pair.serialize_der(),
            &ring::rand::SystemRandom::new(),
        )
        .unwrap();
        let signer = Arc::new(Signer {
            key,
            cert_der: cert.der().to_vec(),
            user: user.to_owned(),
            password: password.to_owned(),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let realm = format!("http://{}/token", listener.local_addr().unwrap());
        let app = axum::Router::new().route(
            "/token",
            axum::routing::get(move |headers: HeaderMap, uri: Uri| {
                let signer = signer.clone();
                async move {
                    if !signer.authorised(&headers) {
                        return (StatusCode::UNAUTHORIZED, "bad credentials").into_response();
                    }
                    let scopes: Vec<String> = uri
                        .query()
                        .unwrap_or_default()
                        .split('&')
                        .filter_map(|pair| pair.strip_prefix("scope="))
                        .map(percent_decode)
                        .collect();
                    let token = signer.token(&scopes);
                    let body: HashMap<&str, serde_json::Value> = HashMap::from([
                        ("token", json!(token)),
                        ("access_token", json!(token)),
                        ("expires_in", json!(300)),
                    ]);
                    axum::Json(body).into_response()
                }
            }),
        );
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        TokenServer { realm, cert_pem: cert.pem(), task }
    }
}
