//! The simulated PKI: root CA → PCK Processor CA → PCK certificate, and root CA → TCB signing.

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CustomExtension,
    DistinguishedName, DnType, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    PKCS_ECDSA_P256_SHA256, SerialNumber,
};
use time::{Duration, OffsetDateTime};

use crate::{Error, Result, SIM_MARK};

/// The simulated platform's TCB as certified in the PCK certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlatformTcb {
    /// FMSPC (family-model-stepping-platform-custom SKU).
    pub fmspc: [u8; 6],
    /// PCE ID.
    pub pce_id: [u8; 2],
    /// PPID (random per simulated platform).
    pub ppid: [u8; 16],
    /// The 16 SGX TCB component SVNs.
    pub comp_svn: [u8; 16],
    /// PCE SVN.
    pub pce_svn: u16,
    /// CPUSVN (raw; equals the component SVNs here).
    pub cpu_svn: [u8; 16],
}

/// The SGX extension OID arcs (1.2.840.113741.1.13.1).
const SGX_EXTENSION_OID: [u64; 7] = [1, 2, 840, 113_741, 1, 13, 1];

impl PlatformTcb {
    /// The SGX extension (as `sgx_quote` models it) certifying this platform.
    #[must_use]
    pub fn to_extension(&self) -> sgx_quote::pck::SgxExtension {
        sgx_quote::pck::SgxExtension {
            ppid: self.ppid,
            tcb: sgx_quote::pck::PckTcb {
                comp_svn: self.comp_svn,
                pce_svn: self.pce_svn,
                cpu_svn: self.cpu_svn,
            },
            pce_id: self.pce_id,
            fmspc: self.fmspc,
            sgx_type: sgx_quote::pck::SgxType::Standard,
            platform_instance_id: None,
        }
    }

    /// The fixed simulated platform, with `ppid`.
    #[must_use]
    pub fn simulated(ppid: [u8; 16]) -> Self {
        let comp_svn = [14, 14, 2, 4, 1, 128, 14, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        Self {
            fmspc: [0x00, 0x90, 0x6e, 0xd5, 0x00, 0x00],
            pce_id: [0, 0],
            ppid,
            comp_svn,
            pce_svn: 13,
            cpu_svn: comp_svn,
        }
    }
}

/// One key and its certificate.
#[derive(Clone)]
pub(crate) struct Entity {
    pub(crate) key_pem: String,
    pub(crate) cert_pem: String,
}

impl Entity {
    pub(crate) fn key(&self) -> Result<KeyPair> {
        KeyPair::from_pem(&self.key_pem).map_err(|_| Error::Malformed { what: "key pem" })
    }

    pub(crate) fn cert_der(&self) -> Result<Vec<u8>> {
        pem::parse(&self.cert_pem)
            .map(|p| p.into_contents())
            .map_err(|_| Error::Malformed {
                what: "certificate pem",
            })
    }

    fn issuer(&self) -> Result<Issuer<'static, KeyPair>> {
        Ok(Issuer::from_ca_cert_pem(&self.cert_pem, self.key()?)?)
    }

    pub(crate) fn pkcs8_der(&self) -> Result<Vec<u8>> {
        Ok(self.key()?.serialize_der())
    }
}

/// The simulated PKI. Keys and certificates are PEM, so [`crate::state`] can persist them.
#[derive(Clone)]
pub struct SimPki {
    pub(crate) root: Entity,
    pub(crate) pck_ca: Entity,
    pub(crate) pck: Entity,
    pub(crate) tcb_signing: Entity,
    /// The certified platform TCB.
    pub platform: PlatformTcb,
}

fn dn(cn: &str) -> DistinguishedName {
    let mut d = DistinguishedName::new();
    d.push(DnType::CommonName, cn);
    d.push(DnType::OrganizationName, format!("{SIM_MARK} (not Intel)"));
    d.push(DnType::CountryName, "US");
    d
}

pub(crate) fn random<const N: usize>() -> Result<[u8; N]> {
    let mut b = [0u8; N];
    SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| Error::Crypto { what: "randomness" })?;
    Ok(b)
}

fn serial() -> Result<SerialNumber> {
    let mut b = random::<16>()?;
    if let Some(first) = b.first_mut() {
        *first &= 0x7f;
        *first |= 0x01;
    }
    Ok(SerialNumber::from_slice(&b))
}

fn ca_params(cn: &str, now: OffsetDateTime, path_len: Option<u8>) -> Result<CertificateParams> {
    let mut p = CertificateParams::default();
    p.distinguished_name = dn(cn);
    p.not_before = now - Duration::days(1);
    p.not_after = now + Duration::days(365 * 20);
    p.serial_number = Some(serial()?);
    p.is_ca = IsCa::Ca(match path_len {
        Some(n) => BasicConstraints::Constrained(n),
        None => BasicConstraints::Unconstrained,
    });
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p.use_authority_key_identifier_extension = true;
    p.key_identifier_method = KeyIdMethod::Sha256;
    Ok(p)
}

fn leaf_params(cn: &str, now: OffsetDateTime, years: i64) -> Result<CertificateParams> {
    let mut p = CertificateParams::default();
    p.distinguished_name = dn(cn);
    p.not_before = now - Duration::days(1);
    p.not_after = now + Duration::days(365 * years);
    p.serial_number = Some(serial()?);
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::ContentCommitment,
    ];
    p.use_authority_key_identifier_extension = true;
    Ok(p)
}

fn new_key() -> Result<KeyPair> {
    Ok(KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?)
}

/// Subject CN (Intel's spelling; the O attribute marks the simulation) of the simulated root CA.
pub const ROOT_CN: &str = "Intel SGX Root CA";
/// Subject CN (Intel's spelling; the O attribute marks the simulation) of the simulated PCK Processor CA ("Processor" tells verifiers the CA type).
pub const PCK_CA_CN: &str = "Intel SGX PCK Processor CA";
/// Subject CN (Intel's spelling; the O attribute marks the simulation) of the simulated PCK certificate ("SGX PCK Certificate" as verifiers expect).
pub const PCK_CN: &str = "Intel SGX PCK Certificate";
/// Subject CN (Intel's spelling; the O attribute marks the simulation) of the simulated TCB signing certificate.
pub const TCB_SIGNING_CN: &str = "Intel SGX TCB Signing";

impl SimPki {
    /// Generates a new PKI with fresh keys; certificates are valid from `now - 1 day`.
    ///
    /// # Errors
    /// Key generation or signing failures.
    pub fn generate(now: OffsetDateTime) -> Result<Self> {
        let root_key = new_key()?;
        let root_params = ca_params(ROOT_CN, now, Some(1))?;
        let root_cert = root_params.self_signed(&root_key)?;
        let root = Entity {
            key_pem: root_key.serialize_pem(),
            cert_pem: root_cert.pem(),
        };
        let root_issuer = Issuer::new(root_params, root_key);

        let ca_key = new_key()?;
        let ca_params = ca_params(PCK_CA_CN, now, Some(0))?;
        let ca_cert = ca_params.signed_by(&ca_key, &root_issuer)?;
        let pck_ca = Entity {
            key_pem: ca_key.serialize_pem(),
            cert_pem: ca_cert.pem(),
        };
        let ca_issuer = Issuer::new(ca_params, ca_key);

        let platform = PlatformTcb::simulated(random::<16>()?);
        let pck_key = new_key()?;
        let mut pck_params = leaf_params(PCK_CN, now, 7)?;
        pck_params
            .custom_extensions
            .push(CustomExtension::from_oid_content(
                &SGX_EXTENSION_OID,
                platform.to_extension().to_der(),
            ));
        let pck_cert = pck_params.signed_by(&pck_key, &ca_issuer)?;
        let pck = Entity {
            key_pem: pck_key.serialize_pem(),
            cert_pem: pck_cert.pem(),
        };

        let tcb_key = new_key()?;
        let tcb_params = leaf_params(TCB_SIGNING_CN, now, 7)?;
        let tcb_cert = tcb_params.signed_by(&tcb_key, &root_issuer)?;
        let tcb_signing = Entity {
            key_pem: tcb_key.serialize_pem(),
            cert_pem: tcb_cert.pem(),
        };
        Ok(Self {
            root,
            pck_ca,
            pck,
            tcb_signing,
            platform,
        })
    }

    /// The root CA certificate (PEM): the trust anchor for simulated quotes.
    #[must_use]
    pub fn root_ca_pem(&self) -> &str {
        &self.root.cert_pem
    }

    /// The root CA certificate (DER).
    ///
    /// # Errors
    /// [`Error::Malformed`] if the stored PEM is broken.
    pub fn root_ca_der(&self) -> Result<Vec<u8>> {
        self.root.cert_der()
    }

    /// The PCK chain as concatenated PEM, leaf first (certification data type 5).
    #[must_use]
    pub fn pck_chain_pem(&self) -> String {
        format!(
            "{}{}{}",
            self.pck.cert_pem, self.pck_ca.cert_pem, self.root.cert_pem
        )
    }

    /// The TCB signing chain (TCB signing cert, root) as PEM: the issuer chain of TCB info
    /// and QE identity.
    #[must_use]
    pub fn tcb_signing_chain_pem(&self) -> String {
        format!("{}{}", self.tcb_signing.cert_pem, self.root.cert_pem)
    }

    /// The PCK CRL issuer chain (PCK Processor CA, root) as PEM.
    #[must_use]
    pub fn pck_crl_issuer_chain_pem(&self) -> String {
        format!("{}{}", self.pck_ca.cert_pem, self.root.cert_pem)
    }

    /// Signs an empty CRL (DER) by the root (`root = true`) or by the PCK Processor CA,
    /// valid from `now - 1 day` to `now + 30 days`.
    ///
    /// # Errors
    /// Signing failures.
    pub fn crl(&self, root: bool, now: OffsetDateTime) -> Result<Vec<u8>> {
        let issuer = if root {
            self.root.issuer()?
        } else {
            self.pck_ca.issuer()?
        };
        let number = u64::try_from(now.unix_timestamp()).unwrap_or(1);
        let params = CertificateRevocationListParams {
            this_update: now - Duration::days(1),
            next_update: now + Duration::days(30),
            crl_number: SerialNumber::from_slice(&number.to_be_bytes()),
            issuing_distribution_point: None,
            revoked_certs: Vec::new(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        Ok(params.signed_by(&issuer)?.der().to_vec())
    }

    /// The PCK private key as PKCS#8 DER (signs QE reports).
    pub(crate) fn pck_pkcs8(&self) -> Result<Vec<u8>> {
        self.pck.pkcs8_der()
    }

    /// The TCB signing private key as PKCS#8 DER.
    pub(crate) fn tcb_signing_pkcs8(&self) -> Result<Vec<u8>> {
        self.tcb_signing.pkcs8_der()
    }

    /// Earliest `notAfter` of the certificates, as UNIX seconds.
    ///
    /// # Errors
    /// [`Error::Malformed`] if a stored certificate cannot be parsed.
    pub fn not_after(&self) -> Result<i64> {
        use der::Decode as _;
        let mut min = i64::MAX;
        for e in [&self.root, &self.pck_ca, &self.pck, &self.tcb_signing] {
            let c =
                x509_cert::Certificate::from_der(&e.cert_der()?).map_err(|_| Error::Malformed {
                    what: "certificate",
                })?;
            let t = c
                .tbs_certificate
                .validity
                .not_after
                .to_unix_duration()
                .as_secs();
            min = min.min(i64::try_from(t).unwrap_or(i64::MAX));
        }
        Ok(min)
    }
}
