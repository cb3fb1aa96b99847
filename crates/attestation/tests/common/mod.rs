//! Helpers shared by the attestation integration tests: policy signer keys and certificates.
#![allow(dead_code, clippy::unwrap_used)]

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::Algorithm;
use serde_json::{Value, json};

/// `{"AttestationPolicy": "<base64url of the policy text>"}`: MAA's policy JWS payload.
pub fn policy_payload(text: &str) -> Value {
    json!({ "AttestationPolicy": URL_SAFE_NO_PAD.encode(text) })
}

/// A policy signing key and its self-signed certificate (rcgen), signing with `jsonwebtoken`.
pub struct Signer {
    pub alg: Algorithm,
    pub key_pem: String,
    pub cert_der: Vec<u8>,
    pub cert_pem: String,
}

impl Signer {
    /// A new key (RSA 2048 for RS256, else P-256) and certificate.
    pub fn generate(alg: Algorithm) -> Self {
        let key = match alg {
            Algorithm::RS256 => rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap(),
            _ => rcgen::KeyPair::generate().unwrap(),
        };
        let cert = rcgen::CertificateParams::new(vec!["policy-signer".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        Self {
            alg,
            key_pem: key.serialize_pem(),
            cert_der: cert.der().to_vec(),
            cert_pem: cert.pem(),
        }
    }

    /// A compact JWS of `payload` signed with this key, presenting `x5c_der` (normally this
    /// signer's own certificate).
    pub fn sign_with_x5c(&self, payload: &Value, x5c_der: &[u8]) -> String {
        let mut header = jsonwebtoken::Header::new(self.alg);
        header.typ = None;
        header.x5c = Some(vec![STANDARD.encode(x5c_der)]);
        let key = match self.alg {
            Algorithm::RS256 => {
                jsonwebtoken::EncodingKey::from_rsa_pem(self.key_pem.as_bytes()).unwrap()
            }
            _ => jsonwebtoken::EncodingKey::from_ec_pem(self.key_pem.as_bytes()).unwrap(),
        };
        jsonwebtoken::encode(&header, payload, &key).unwrap()
    }

    /// A compact JWS of `payload`, presenting this signer's certificate.
    pub fn sign(&self, payload: &Value) -> String {
        self.sign_with_x5c(payload, &self.cert_der)
    }

    /// A signed policy `PUT` body.
    pub fn policy(&self, text: &str) -> String {
        self.sign(&policy_payload(text))
    }
}
