//! Persistence of the simulation in a state directory (keys and certificates as PEM), and
//! the `confcom sim export` layout. The only module of this crate that does IO (std::fs).
//!
//! Layout of the state directory (keys are PKCS#8 PEM, mode 0600):
//! `root-ca.pem`, `root-ca.key.pem`, `pck-ca.pem`, `pck-ca.key.pem`, `pck.pem`,
//! `pck.key.pem`, `tcb-signing.pem`, `tcb-signing.key.pem`, `attestation.key.pem`.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::Path;

use time::OffsetDateTime;

use crate::pki::Entity;
use crate::{Error, PlatformTcb, Result, SimPki, Simulation, SoftQe};

const ENTITIES: [&str; 4] = ["root-ca", "pck-ca", "pck", "tcb-signing"];
const ATTESTATION_KEY: &str = "attestation.key.pem";

fn read(path: &Path) -> Result<String> {
    fs::read_to_string(path).map_err(|source| Error::Io {
        op: "reading",
        path: path.to_owned(),
        source,
    })
}

fn write(path: &Path, data: &[u8], private: bool) -> Result<()> {
    let io = |source| Error::Io {
        op: "writing",
        path: path.to_owned(),
        source,
    };
    let tmp = path.with_extension("tmp");
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(if private { 0o600 } else { 0o644 })
        .open(&tmp)
        .map_err(io)?;
    f.write_all(data).map_err(io)?;
    f.sync_all().map_err(io)?;
    fs::rename(&tmp, path).map_err(io)
}

fn mkdir(dir: &Path, mode: u32) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(dir)
        .map_err(|source| Error::Io {
            op: "creating",
            path: dir.to_owned(),
            source,
        })
}

/// Loads the simulation from `dir`, or generates it there if `dir` holds none. A stored PKI
/// whose certificates expire within 60 days of `now` is replaced by a fresh one.
///
/// # Errors
/// IO errors naming the path, malformed stored objects, generation failures.
pub fn load_or_create(dir: &Path, now: OffsetDateTime) -> Result<Simulation> {
    if dir.join(ATTESTATION_KEY).exists() {
        let sim = load(dir)?;
        let horizon = now.unix_timestamp().saturating_add(60 * 24 * 3600);
        if sim.pki.not_after()? > horizon {
            return Ok(sim);
        }
        tracing::warn!(dir = %dir.display(), "simulated PKI is about to expire; regenerating");
    }
    let sim = Simulation::generate(now)?;
    save(&sim, dir)?;
    tracing::info!(dir = %dir.display(), "generated a new simulated SGX PKI (confcom SIMULATED, not Intel)");
    Ok(sim)
}

/// Loads a simulation saved by [`save`].
///
/// # Errors
/// IO errors, malformed stored objects.
pub fn load(dir: &Path) -> Result<Simulation> {
    let mut ents = Vec::with_capacity(4);
    for name in ENTITIES {
        ents.push(Entity {
            key_pem: read(&dir.join(format!("{name}.key.pem")))?,
            cert_pem: read(&dir.join(format!("{name}.pem")))?,
        });
    }
    let mut it = ents.into_iter();
    let (Some(root), Some(pck_ca), Some(pck), Some(tcb_signing)) =
        (it.next(), it.next(), it.next(), it.next())
    else {
        return Err(Error::Malformed { what: "state" });
    };
    let ext = sgx_quote::pck::SgxExtension::from_cert_der(&pck.cert_der()?).map_err(|_| {
        Error::Malformed {
            what: "pck certificate sgx extension",
        }
    })?;
    let platform = PlatformTcb {
        fmspc: ext.fmspc,
        pce_id: ext.pce_id,
        ppid: ext.ppid,
        comp_svn: ext.tcb.comp_svn,
        pce_svn: ext.tcb.pce_svn,
        cpu_svn: ext.tcb.cpu_svn,
    };
    let pki = SimPki {
        root,
        pck_ca,
        pck,
        tcb_signing,
        platform,
    };
    let att = pem::parse(read(&dir.join(ATTESTATION_KEY))?).map_err(|_| Error::Malformed {
        what: "attestation key pem",
    })?;
    let qe = SoftQe::new(&pki, att.contents())?;
    Ok(Simulation { pki, qe })
}

/// Saves the simulation's keys and certificates to `dir` (created with mode 0700).
///
/// # Errors
/// IO errors naming the path.
pub fn save(sim: &Simulation, dir: &Path) -> Result<()> {
    mkdir(dir, 0o700)?;
    let p = &sim.pki;
    for (name, e) in ENTITIES
        .iter()
        .zip([&p.root, &p.pck_ca, &p.pck, &p.tcb_signing])
    {
        write(
            &dir.join(format!("{name}.pem")),
            e.cert_pem.as_bytes(),
            false,
        )?;
        write(
            &dir.join(format!("{name}.key.pem")),
            e.key_pem.as_bytes(),
            true,
        )?;
    }
    let att = pem::encode(&pem::Pem::new(
        "PRIVATE KEY",
        sim.qe.attestation_key_pkcs8().to_vec(),
    ));
    write(&dir.join(ATTESTATION_KEY), att.as_bytes(), true)
}

/// Writes what a verifier needs into `out`: `root-ca.pem` (the trust anchor),
/// `collateral.json` (dcap-qvl JSON form), `pck-chain.pem`, and the Intel PCS style files
/// under `pcs/` (see [`crate::collateral::pcs_files`], plus `pck_cert_chain.pem`). Returns the list of written paths.
///
/// # Errors
/// IO errors naming the path, signing failures.
pub fn export(
    sim: &Simulation,
    out: &Path,
    now: OffsetDateTime,
) -> Result<Vec<std::path::PathBuf>> {
    mkdir(out, 0o755)?;
    let pcs = out.join("pcs");
    mkdir(&pcs, 0o755)?;
    let collateral = sim.collateral(now)?;
    let mut written = Vec::new();
    let mut put = |path: std::path::PathBuf, data: &[u8]| -> Result<()> {
        write(&path, data, false)?;
        written.push(path);
        Ok(())
    };
    put(out.join("root-ca.pem"), sim.pki.root_ca_pem().as_bytes())?;
    put(out.join("collateral.json"), collateral.to_json().as_bytes())?;
    put(
        out.join("pck-chain.pem"),
        sim.pki.pck_chain_pem().as_bytes(),
    )?;
    for (name, data) in crate::collateral::pcs_files(&collateral) {
        put(pcs.join(name), &data)?;
    }
    put(
        pcs.join("pck_cert_chain.pem"),
        sim.pki.pck_chain_pem().as_bytes(),
    )?;
    Ok(written)
}
