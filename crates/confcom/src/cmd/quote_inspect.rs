//! `confcom quote inspect FILE [--json]`: print the fields of a DCAP quote file.
//!
//! The input may be the binary quote, ASCII hex (optionally `0x`-prefixed, whitespace
//! allowed) or base64; the encoding is detected. Quote buffers from Intel's libraries are
//! often zero-padded, so the quote is parsed tolerantly and the number of ignored trailing
//! bytes is reported. A file that is not a quote exits with code 2 and one line on stderr
//! naming the field and offset that failed.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use base64::Engine;
use serde_json::{Value, json};
use sgx_quote::pck::{self, PckCa, SgxExtension, SgxType};
use sgx_quote::{
    Attributes, CertDataType, Quote, QuoteBody, QuoteError, ReportBody, TdReport10, TeeType,
};

/// Exit code for a file that is not a well-formed quote.
pub const EXIT_BAD_QUOTE: u8 = 2;

/// Arguments of `confcom quote inspect`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Quote file (binary, hex or base64); `-` reads standard input.
    pub file: PathBuf,
    /// Print one JSON object instead of the human-readable summary.
    #[arg(long)]
    pub json: bool,
}

/// Runs `confcom quote inspect`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let name = args.file.display().to_string();
    let raw = if name == "-" {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .context("reading standard input")?;
        buf
    } else {
        match std::fs::read(&args.file) {
            Ok(b) => b,
            Err(e) => return Ok(bad(&name, &format!("cannot read file: {e}"))),
        }
    };
    let (bytes, encoding) = match decode_input(&raw) {
        Ok(v) => v,
        Err(msg) => return Ok(bad(&name, &msg)),
    };
    let (quote, trailing) = match Quote::parse_tolerant(&bytes) {
        Ok(v) => v,
        Err(e) => return Ok(bad(&name, &quote_error_line(&e))),
    };
    let pck = match pck_info(&quote, &bytes) {
        Ok(v) => v,
        Err(msg) => return Ok(bad(&name, &msg)),
    };
    let summary = Summary {
        quote: &quote,
        encoding,
        len: bytes.len(),
        trailing,
        pck,
    };
    if args.json {
        println!("{}", summary.json());
    } else {
        print!("{}", summary.human());
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints the one-line error and gives exit code 2.
fn bad(name: &str, msg: &str) -> ExitCode {
    eprintln!("confcom: quote inspect: {name}: {msg}");
    ExitCode::from(EXIT_BAD_QUOTE)
}

/// `"invalid quote: <what> (field F, offset N)"`, without repeating what the message says.
fn quote_error_line(e: &QuoteError) -> String {
    let msg = e.to_string();
    let mut extra = Vec::new();
    if let Some(f) = e.field().filter(|f| !msg.contains(f)) {
        extra.push(format!("field {f}"));
    }
    if let Some(o) = e.offset().filter(|_| !msg.contains("offset")) {
        extra.push(format!("offset {o}"));
    }
    if extra.is_empty() {
        format!("invalid quote: {msg}")
    } else {
        format!("invalid quote: {msg} ({})", extra.join(", "))
    }
}

/// How the input file was encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Encoding {
    Binary,
    Hex,
    Base64,
}

impl Encoding {
    fn as_str(self) -> &'static str {
        match self {
            Self::Binary => "binary",
            Self::Hex => "hex",
            Self::Base64 => "base64",
        }
    }
}

/// Detects binary, hex (optionally `0x`-prefixed, whitespace anywhere) or base64 input.
///
/// A binary quote starts with a little-endian version (`03 00`, ...), which is never text,
/// so any input that is entirely printable ASCII is treated as text.
fn decode_input(raw: &[u8]) -> Result<(Vec<u8>, Encoding), String> {
    let is_text = !raw.is_empty()
        && raw
            .iter()
            .all(|b| b.is_ascii_graphic() || b.is_ascii_whitespace());
    if !is_text {
        return Ok((raw.to_vec(), Encoding::Binary));
    }
    let compact: Vec<u8> = raw
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    let hex_digits = compact
        .strip_prefix(b"0x")
        .or_else(|| compact.strip_prefix(b"0X"))
        .unwrap_or(&compact);
    if !hex_digits.is_empty() && hex_digits.iter().all(u8::is_ascii_hexdigit) {
        return hex::decode(hex_digits)
            .map(|b| (b, Encoding::Hex))
            .map_err(|e| format!("input looks like hex but does not decode: {e}"));
    }
    let engines = [
        base64::engine::general_purpose::STANDARD,
        base64::engine::general_purpose::STANDARD_NO_PAD,
        base64::engine::general_purpose::URL_SAFE,
        base64::engine::general_purpose::URL_SAFE_NO_PAD,
    ];
    engines
        .iter()
        .find_map(|e| e.decode(&compact).ok())
        .map(|b| (b, Encoding::Base64))
        .ok_or_else(|| "input is text but neither hex nor base64".to_owned())
}

/// What the PCK leaf certificate of a type-5 chain says.
struct PckInfo {
    chain_len: usize,
    ca: PckCa,
    ext: SgxExtension,
}

/// Reads the PCK chain, when the certification data is type 5 (directly or inside type 6).
fn pck_info(quote: &Quote<'_>, bytes: &[u8]) -> Result<Option<PckInfo>, String> {
    let Some(pem) = quote.pck_chain_pem() else {
        return Ok(None);
    };
    let offset = (pem.as_ptr() as usize).wrapping_sub(bytes.as_ptr() as usize);
    let fail =
        |what: &str| format!("invalid pck chain in certification_data at offset {offset}: {what}");
    let chain = pck::split_pem_chain(pem).map_err(|e| fail(&e.to_string()))?;
    let Some((leaf, ext)) = pck::find_pck_leaf(&chain) else {
        return Err(fail("no certificate carries the sgx extension"));
    };
    let ca = chain
        .get(leaf)
        .map(|der| PckCa::from_cert_der(der))
        .transpose()
        .map_err(|e| fail(&e.to_string()))?
        .ok_or_else(|| fail("pck leaf missing"))?;
    Ok(Some(PckInfo {
        chain_len: chain.len(),
        ca,
        ext,
    }))
}

struct Summary<'q, 'a> {
    quote: &'q Quote<'a>,
    encoding: Encoding,
    len: usize,
    trailing: usize,
    pck: Option<PckInfo>,
}

fn att_key_type_str(q: &Quote<'_>) -> &'static str {
    match q.header.att_key_type {
        sgx_quote::AttestationKeyType::EcdsaP256 => "ecdsa-p256",
        _ => "unknown",
    }
}

fn cert_type_str(t: CertDataType) -> &'static str {
    match t {
        CertDataType::PpidCleartext => "PPID in clear text",
        CertDataType::PpidRsa2048Encrypted => "PPID encrypted with RSA-2048-OAEP",
        CertDataType::PpidRsa3072Encrypted => "PPID encrypted with RSA-3072-OAEP",
        CertDataType::PckLeafCert => "PCK leaf certificate",
        CertDataType::PckCertChain => "PCK certificate chain",
        CertDataType::QeReportCertData => "QE report certification data",
        CertDataType::PlatformManifest => "platform manifest",
    }
}

fn sgx_type_str(t: SgxType) -> &'static str {
    match t {
        SgxType::Standard => "standard",
        SgxType::Scalable => "scalable",
        SgxType::ScalableWithIntegrity => "scalable-with-integrity",
    }
}

fn attributes_json(a: &Attributes) -> Value {
    json!({
        "debug": a.is_debug(),
        "mode64bit": a.is_mode64bit(),
        "provision_key": a.has_provision_key(),
        "kss": a.has_kss(),
        "flags": format!("{:#018x}", a.flags),
        "xfrm": format!("{:#018x}", a.xfrm),
        "hex": hex::encode(a.to_bytes()),
    })
}

fn td_json(td: &TdReport10) -> Value {
    json!({
        "tee_tcb_svn": hex::encode(td.tee_tcb_svn),
        "mr_seam": hex::encode(td.mr_seam),
        "mr_signer_seam": hex::encode(td.mr_signer_seam),
        "seam_attributes": format!("{:#018x}", td.seam_attributes),
        "td_attributes": format!("{:#018x}", td.td_attributes),
        "xfam": format!("{:#018x}", td.xfam),
        "mr_td": hex::encode(td.mr_td),
        "mr_config_id": hex::encode(td.mr_config_id),
        "mr_owner": hex::encode(td.mr_owner),
        "mr_owner_config": hex::encode(td.mr_owner_config),
        "rtmr": td.rtmr.iter().map(hex::encode).collect::<Vec<_>>(),
    })
}

fn report_body_json(b: &ReportBody) -> serde_json::Map<String, Value> {
    let Value::Object(m) = json!({
        "cpu_svn": hex::encode(b.cpu_svn.0),
        "misc_select": format!("{:#010x}", b.misc_select.0),
        "isv_ext_prod_id": hex::encode(b.isv_ext_prod_id),
        "attributes": attributes_json(&b.attributes),
        "mr_enclave": hex::encode(b.mr_enclave.0),
        "mr_signer": hex::encode(b.mr_signer.0),
        "config_id": hex::encode(b.config_id),
        "isv_prod_id": b.isv_prod_id,
        "isv_svn": b.isv_svn,
        "config_svn": b.config_svn,
        "isv_family_id": hex::encode(b.isv_family_id),
        "report_data": hex::encode(b.report_data.0),
    }) else {
        return serde_json::Map::new();
    };
    m
}

impl Summary<'_, '_> {
    fn json(&self) -> Value {
        let q = self.quote;
        let qe = &q.signature.qe;
        let mut m = serde_json::Map::new();
        m.insert("version".into(), json!(q.header.version));
        m.insert("tee".into(), json!(q.header.tee_type.as_str()));
        m.insert("att_key_type".into(), json!(att_key_type_str(q)));
        m.insert("qe_svn".into(), json!(q.header.qe_svn));
        m.insert("pce_svn".into(), json!(q.header.pce_svn));
        m.insert(
            "qe_vendor_id".into(),
            json!(hex::encode(q.header.qe_vendor_id)),
        );
        m.insert("user_data".into(), json!(hex::encode(q.header.user_data)));
        match &q.body {
            QuoteBody::Sgx(b) => {
                m.insert("body".into(), json!("sgx"));
                m.extend(report_body_json(b));
            }
            QuoteBody::Td10(td) => {
                m.insert("body".into(), json!("td10"));
                m.insert("attributes".into(), td_attributes_json(td));
                m.insert("report_data".into(), json!(hex::encode(td.report_data.0)));
                m.insert("td".into(), td_json(td));
            }
            QuoteBody::Td15(td) => {
                m.insert("body".into(), json!("td15"));
                m.insert("attributes".into(), td_attributes_json(&td.base));
                m.insert(
                    "report_data".into(),
                    json!(hex::encode(td.base.report_data.0)),
                );
                let mut t = td_json(&td.base);
                if let Value::Object(o) = &mut t {
                    o.insert("tee_tcb_svn2".into(), json!(hex::encode(td.tee_tcb_svn2)));
                    o.insert("mr_service_td".into(), json!(hex::encode(td.mr_service_td)));
                }
                m.insert("td".into(), t);
            }
        }
        m.insert(
            "qe_report".into(),
            Value::Object(report_body_json(&qe.qe_report)),
        );
        m.insert("qe_auth_data".into(), json!(hex::encode(qe.qe_auth_data)));
        m.insert(
            "attestation_key".into(),
            json!(hex::encode(q.signature.attestation_key)),
        );
        m.insert(
            "cert_data_type".into(),
            json!(qe.certification.cert_type.to_u16()),
        );
        m.insert("cert_data_len".into(), json!(qe.certification.data.len()));
        if let Some(id) = qe.certification.pck_cert_id() {
            m.insert(
                "pck_cert_id".into(),
                json!({
                    "ppid": hex::encode(id.ppid),
                    "cpu_svn": hex::encode(id.cpu_svn.0),
                    "pce_svn": id.pce_svn,
                    "pce_id": hex::encode(id.pce_id),
                }),
            );
        }
        if let Some(p) = &self.pck {
            m.insert("fmspc".into(), json!(hex::encode(p.ext.fmspc)));
            m.insert("pce_id".into(), json!(hex::encode(p.ext.pce_id)));
            m.insert("pck_ca".into(), json!(p.ca.as_str()));
            m.insert("pck_chain_len".into(), json!(p.chain_len));
            m.insert("sgx_type".into(), json!(sgx_type_str(p.ext.sgx_type)));
            m.insert("ppid".into(), json!(hex::encode(p.ext.ppid)));
            m.insert(
                "platform_instance_id".into(),
                json!(p.ext.platform_instance_id.map(hex::encode)),
            );
            m.insert(
                "tcb".into(),
                json!({
                    "comp_svn": p.ext.tcb.comp_svn.to_vec(),
                    "pce_svn": p.ext.tcb.pce_svn,
                    "cpu_svn": hex::encode(p.ext.tcb.cpu_svn),
                }),
            );
        }
        m.insert("signed_region_len".into(), json!(q.signed_region.len()));
        m.insert(
            "quote_len".into(),
            json!(self.len.saturating_sub(self.trailing)),
        );
        m.insert("trailing_bytes".into(), json!(self.trailing));
        m.insert("input_encoding".into(), json!(self.encoding.as_str()));
        Value::Object(m)
    }

    fn human(&self) -> String {
        use std::fmt::Write;
        let q = self.quote;
        let qe = &q.signature.qe;
        let mut s = String::new();
        let tee = match q.header.tee_type {
            TeeType::Sgx => "SGX",
            TeeType::Tdx => "TDX",
        };
        let _ = writeln!(
            s,
            "quote        v{} {tee}, {}, {} bytes ({} input, {} trailing bytes ignored)",
            q.header.version,
            att_key_type_str(q),
            self.len.saturating_sub(self.trailing),
            self.encoding.as_str(),
            self.trailing,
        );
        let vendor = if q.header.qe_vendor_id == sgx_quote::quote::INTEL_QE_VENDOR_ID {
            " (Intel)"
        } else {
            ""
        };
        let _ = writeln!(
            s,
            "header       QE SVN {}, PCE SVN {}, QE vendor {}{vendor}",
            q.header.qe_svn,
            q.header.pce_svn,
            hex::encode(q.header.qe_vendor_id)
        );
        match &q.body {
            QuoteBody::Sgx(b) => {
                let _ = writeln!(s, "MRENCLAVE    {}", hex::encode(b.mr_enclave.0));
                let _ = writeln!(s, "MRSIGNER     {}", hex::encode(b.mr_signer.0));
                let _ = writeln!(
                    s,
                    "ISV          product {}, SVN {}, CPUSVN {}",
                    b.isv_prod_id,
                    b.isv_svn,
                    hex::encode(b.cpu_svn.0)
                );
                let _ = writeln!(
                    s,
                    "attributes   {} (debug: {})",
                    hex::encode(b.attributes.to_bytes()),
                    if b.attributes.is_debug() { "YES" } else { "no" }
                );
            }
            QuoteBody::Td10(td) | QuoteBody::Td15(sgx_quote::TdReport15 { base: td, .. }) => {
                let _ = writeln!(s, "MRTD         {}", hex::encode(td.mr_td));
                for (i, r) in td.rtmr.iter().enumerate() {
                    let _ = writeln!(s, "RTMR{i}        {}", hex::encode(r));
                }
                let _ = writeln!(s, "TEE TCB SVN  {}", hex::encode(td.tee_tcb_svn));
                let _ = writeln!(
                    s,
                    "attributes   {:#018x} (debug: {})",
                    td.td_attributes,
                    if td.is_debug() { "YES" } else { "no" }
                );
            }
        }
        let _ = writeln!(s, "report data  {}", hex::encode(q.report_data().0));
        let _ = writeln!(
            s,
            "QE report    ISVSVN {}, product {}, MRENCLAVE {}",
            qe.qe_report.isv_svn,
            qe.qe_report.isv_prod_id,
            hex::encode(qe.qe_report.mr_enclave.0)
        );
        let _ = writeln!(
            s,
            "cert data    type {} ({}), {} bytes",
            qe.certification.cert_type.to_u16(),
            cert_type_str(qe.certification.cert_type),
            qe.certification.data.len()
        );
        if let Some(id) = qe.certification.pck_cert_id() {
            let _ = writeln!(
                s,
                "PCK cert id  PPID {} bytes, CPUSVN {}, PCESVN {}, PCE-ID {}",
                id.ppid.len(),
                hex::encode(id.cpu_svn.0),
                id.pce_svn,
                hex::encode(id.pce_id)
            );
        }
        if let Some(p) = &self.pck {
            let _ = writeln!(
                s,
                "PCK          FMSPC {}, PCE-ID {}, {} CA, SGX type {}, {} certificates",
                hex::encode(p.ext.fmspc),
                hex::encode(p.ext.pce_id),
                p.ca.as_str(),
                sgx_type_str(p.ext.sgx_type),
                p.chain_len
            );
            let comps: Vec<String> = p.ext.tcb.comp_svn.iter().map(u8::to_string).collect();
            let _ = writeln!(
                s,
                "PCK TCB      comp SVNs [{}], PCESVN {}, CPUSVN {}",
                comps.join(" "),
                p.ext.tcb.pce_svn,
                hex::encode(p.ext.tcb.cpu_svn)
            );
        }
        s
    }
}

fn td_attributes_json(td: &TdReport10) -> Value {
    json!({
        "debug": td.is_debug(),
        "hex": hex::encode(td.td_attributes.to_le_bytes()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_hex_base64_and_binary() {
        assert_eq!(
            decode_input(b"0x0300 02\n00\n").unwrap(),
            (vec![3, 0, 2, 0], Encoding::Hex)
        );
        assert_eq!(
            decode_input(b"AwACAA==\n").unwrap(),
            (vec![3, 0, 2, 0], Encoding::Base64)
        );
        assert_eq!(
            decode_input(&[3, 0, 2, 0]).unwrap(),
            (vec![3, 0, 2, 0], Encoding::Binary)
        );
        assert!(decode_input(b"0x030").is_err());
        assert!(decode_input(b"not a quote!").is_err());
    }
}
