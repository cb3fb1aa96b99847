//! The PCCS's embedded on-disk store (redb): one entry per PCS resource, holding the exact
//! body and headers to serve and the date the resource stops being valid.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::collateral::{
    CaType, CollateralBundle, CollateralExt, ENCLAVE_IDENTITY_ISSUER_CHAIN, PCK_CRL_ISSUER_CHAIN,
    TCB_INFO_ISSUER_CHAIN, crl_info, encode_chain_header,
};

const ENTRIES: redb::TableDefinition<'static, &str, &[u8]> =
    redb::TableDefinition::new("pcs_entries");

/// File name of the database inside the store directory.
pub const DB_FILE: &str = "pccs.redb";

/// Content type of DER CRLs.
pub const CT_CRL: &str = "application/pkix-crl";
/// Content type of JSON bodies.
pub const CT_JSON: &str = "application/json";
/// Content type of PEM bodies.
pub const CT_PEM: &str = "application/x-pem-file";

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The database failed.
    #[error("store database error")]
    Db(#[source] Box<redb::Error>),
    /// The store directory could not be created.
    #[error("creating store directory {path}")]
    Dir {
        /// The directory.
        path: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// A stored entry could not be decoded.
    #[error("corrupt store entry {key}")]
    Corrupt {
        /// The key.
        key: String,
    },
    /// The collateral could not be turned into entries.
    #[error("collateral not importable")]
    Collateral(#[from] crate::collateral::Error),
}

fn dberr<E: Into<redb::Error>>(e: E) -> Error {
    Error::Db(Box::new(e.into()))
}

/// Result alias of this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One stored PCS response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The exact body to serve.
    #[serde(with = "b64")]
    pub body: Vec<u8>,
    /// Its content type.
    pub content_type: String,
    /// Headers to serve with it (name, already-encoded value).
    pub headers: Vec<(String, String)>,
    /// When the resource stops being valid (UNIX seconds).
    pub next_update: i64,
    /// When we stored it (UNIX seconds).
    pub fetched_at: i64,
}

mod b64 {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(v))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        STANDARD.decode(s).map_err(serde::de::Error::custom)
    }
}

impl Entry {
    /// The value of header `name` (case-insensitive).
    #[must_use]
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Store keys.
pub mod key {
    use crate::collateral::CaType;

    /// TCB info of an FMSPC.
    #[must_use]
    pub fn tcb(fmspc: &str) -> String {
        format!("sgx/tcb/{}", fmspc.to_ascii_uppercase())
    }
    /// QE identity.
    pub const QE_IDENTITY: &str = "sgx/qe/identity";
    /// QVE identity.
    pub const QVE_IDENTITY: &str = "sgx/qve/identity";
    /// Root CA CRL.
    pub const ROOT_CA_CRL: &str = "sgx/rootcacrl";
    /// PCK CRL of a CA.
    #[must_use]
    pub fn pck_crl(ca: CaType) -> String {
        format!("sgx/pckcrl/{}", ca.as_str())
    }
    /// PCK certificate for a canonical query.
    #[must_use]
    pub fn pck_cert(canonical_query: &str) -> String {
        format!("sgx/pckcert/{canonical_query}")
    }
    /// Prefix of [`pck_cert_by_platform`] keys (distinct from [`pck_cert`]'s `sgx/pckcert/`,
    /// which the LAZY refresh re-fetches upstream by query).
    pub const PCK_CERT_BY_PLATFORM_PREFIX: &str = "sgx/pckcert-by-platform/";
    /// PCK certificate imported for a platform, keyed by the `pckcert` query parameters that
    /// identify it without the (platform-key-specific) `encrypted_ppid`: QE ID, PCE ID, raw
    /// CPUSVN, raw PCESVN, each the hex of the raw bytes as QCNL sends them (case-insensitive).
    #[must_use]
    pub fn pck_cert_by_platform(qeid: &str, pceid: &str, cpusvn: &str, pcesvn: &str) -> String {
        format!(
            "{PCK_CERT_BY_PLATFORM_PREFIX}qeid={}&pceid={}&cpusvn={}&pcesvn={}",
            qeid.to_ascii_lowercase(),
            pceid.to_ascii_lowercase(),
            cpusvn.to_ascii_lowercase(),
            pcesvn.to_ascii_lowercase()
        )
    }
}

/// The on-disk store.
#[derive(Debug)]
pub struct Store {
    db: redb::Database,
}

impl Store {
    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|source| Error::Dir {
            path: dir.display().to_string(),
            source,
        })?;
        let db = redb::Database::create(dir.join(DB_FILE)).map_err(dberr)?;
        let w = db.begin_write().map_err(dberr)?;
        w.open_table(ENTRIES).map_err(dberr)?;
        w.commit().map_err(dberr)?;
        Ok(Self { db })
    }

    /// Reads an entry.
    pub fn get(&self, key: &str) -> Result<Option<Entry>> {
        let r = self.db.begin_read().map_err(dberr)?;
        let t = r.open_table(ENTRIES).map_err(dberr)?;
        let Some(v) = t.get(key).map_err(dberr)? else {
            return Ok(None);
        };
        serde_json::from_slice(v.value())
            .map(Some)
            .map_err(|_| Error::Corrupt {
                key: key.to_owned(),
            })
    }

    /// Writes entries in one transaction.
    pub fn put_all(&self, entries: &[(String, Entry)]) -> Result<()> {
        let w = self.db.begin_write().map_err(dberr)?;
        {
            let mut t = w.open_table(ENTRIES).map_err(dberr)?;
            for (k, e) in entries {
                let v = serde_json::to_vec(e).map_err(|_| Error::Corrupt { key: k.clone() })?;
                t.insert(k.as_str(), v.as_slice()).map_err(dberr)?;
            }
        }
        w.commit().map_err(dberr)?;
        Ok(())
    }

    /// Writes one entry.
    pub fn put(&self, key: &str, entry: &Entry) -> Result<()> {
        self.put_all(&[(key.to_owned(), entry.clone())])
    }

    /// All keys with their `next_update`.
    pub fn list(&self) -> Result<Vec<(String, i64)>> {
        use redb::ReadableTable;
        let r = self.db.begin_read().map_err(dberr)?;
        let t = r.open_table(ENTRIES).map_err(dberr)?;
        let mut out = Vec::new();
        for item in t.iter().map_err(dberr)? {
            let (k, v) = item.map_err(dberr)?;
            let key = k.value().to_owned();
            let e: Entry = serde_json::from_slice(v.value())
                .map_err(|_| Error::Corrupt { key: key.clone() })?;
            out.push((key, e.next_update));
        }
        Ok(out)
    }

    /// Imports a collateral bundle as the four PCS responses it stands for; returns the keys.
    pub fn import_bundle(&self, b: &CollateralBundle, now: i64) -> Result<Vec<String>> {
        let entries = bundle_entries(b, now)?;
        let keys = entries.iter().map(|(k, _)| k.clone()).collect();
        self.put_all(&entries)?;
        Ok(keys)
    }
}

/// The PCS responses a bundle stands for, as store entries.
pub fn bundle_entries(b: &CollateralBundle, now: i64) -> Result<Vec<(String, Entry)>> {
    use crate::collateral::signed_info;
    let tcb_next = signed_info(&b.tcb_info, "TCB info")?.next_update()?;
    let qe_next = signed_info(&b.qe_identity, "QE identity")?.next_update()?;
    let ca = b.ca_type()?;
    let pck_next = crl_info(&b.pck_crl)
        .ok_or(crate::collateral::Error::Crl { which: "PCK" })?
        .next_update
        .unwrap_or(i64::MAX);
    let root_next = crl_info(&b.root_ca_crl)
        .ok_or(crate::collateral::Error::Crl { which: "root CA" })?
        .next_update
        .unwrap_or(i64::MAX);
    let json_entry = |body: String, header: &str, chain: &str, next_update| Entry {
        body: body.into_bytes(),
        content_type: CT_JSON.to_owned(),
        headers: vec![(header.to_owned(), encode_chain_header(chain))],
        next_update,
        fetched_at: now,
    };
    Ok(vec![
        (
            key::tcb(&b.fmspc()?),
            json_entry(
                b.tcb_info_body(),
                TCB_INFO_ISSUER_CHAIN,
                &b.tcb_info_issuer_chain,
                tcb_next,
            ),
        ),
        (
            key::QE_IDENTITY.to_owned(),
            json_entry(
                b.qe_identity_body(),
                ENCLAVE_IDENTITY_ISSUER_CHAIN,
                &b.qe_identity_issuer_chain,
                qe_next,
            ),
        ),
        (
            key::pck_crl(ca),
            Entry {
                body: b.pck_crl.clone(),
                content_type: CT_CRL.to_owned(),
                headers: vec![(
                    PCK_CRL_ISSUER_CHAIN.to_owned(),
                    encode_chain_header(&b.pck_crl_issuer_chain),
                )],
                next_update: pck_next,
                fetched_at: now,
            },
        ),
        (
            key::ROOT_CA_CRL.to_owned(),
            Entry {
                body: b.root_ca_crl.clone(),
                content_type: CT_CRL.to_owned(),
                headers: Vec::new(),
                next_update: root_next,
                fetched_at: now,
            },
        ),
    ])
}

/// Which CA a stored PCK CRL key is for.
#[must_use]
pub fn ca_of_key(k: &str) -> Option<CaType> {
    k.strip_prefix("sgx/pckcrl/").and_then(CaType::parse)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platform_keys_are_case_insensitive_and_apart_from_query_keys() {
        let k = key::pck_cert_by_platform("AB01", "0000", "0F0e", "0D00");
        assert_eq!(
            k,
            "sgx/pckcert-by-platform/qeid=ab01&pceid=0000&cpusvn=0f0e&pcesvn=0d00"
        );
        assert_eq!(k, key::pck_cert_by_platform("ab01", "0000", "0f0e", "0d00"));
        assert!(!k.starts_with(&key::pck_cert("")));
        assert!(k.starts_with(key::PCK_CERT_BY_PLATFORM_PREFIX));
    }

    #[test]
    fn import_then_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let p = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../testdata/dcap/dcap-qvl/sample/sgx_quote_collateral.json"
        );
        let b = crate::collateral::from_json(&std::fs::read(p).unwrap()).unwrap();
        let keys = store.import_bundle(&b, 5).unwrap();
        assert_eq!(keys.len(), 4);
        let tcb = store.get(&key::tcb("00a067110000")).unwrap().unwrap();
        assert_eq!(tcb.body, b.tcb_info_body().into_bytes());
        assert_eq!(tcb.fetched_at, 5);
        assert_eq!(store.list().unwrap().len(), 4);
        drop(store);
        // Survives a reopen.
        let store = Store::open(dir.path()).unwrap();
        let crl = store
            .get(&key::pck_crl(CaType::Processor))
            .unwrap()
            .unwrap();
        assert_eq!(crl.body, b.pck_crl);
        assert!(
            store
                .get(&key::pck_crl(CaType::Platform))
                .unwrap()
                .is_none()
        );
    }
}
