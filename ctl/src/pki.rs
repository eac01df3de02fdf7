//! `drctl pki init`: a private CA and one certificate per identity. The identity is the
//! certificate's Common Name (`agent:HOST`, `operator:NAME`, `viewer:NAME`, `controller:NAME`),
//! which the controller uses to authorise every call. Keys are written with mode 0600.
//! `drctl pki issue` adds certificates from an existing CA (a new host, controller or person).

use std::fs::OpenOptions;
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use dr_proto::domain::HostName;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};

use crate::error::{CliError, CliResult};

/// What to create.
#[derive(Clone, Debug)]
pub struct PkiPlan {
    pub dir: PathBuf,
    pub controllers: Vec<HostName>,
    /// Extra names every controller certificate is valid for (e.g. `localhost`, `127.0.0.1`).
    pub controller_sans: Vec<String>,
    pub agents: Vec<HostName>,
    pub operators: Vec<HostName>,
    pub viewers: Vec<HostName>,
    pub days: u32,
    pub force: bool,
}

/// Parse `a,b,c` into validated names; `what` names the flag for the error.
pub fn names(what: &str, list: &[String]) -> CliResult<Vec<HostName>> {
    let mut out = Vec::new();
    for item in list.iter().flat_map(|s| s.split(',')) {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        let name =
            HostName::new(item).map_err(|e| CliError::config(format!("--{what} {item:?}: {e}")))?;
        if !out.contains(&name) {
            out.push(name);
        }
    }
    Ok(out)
}

fn write_file(path: &Path, contents: &str, mode: u32) -> CliResult {
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(|e| CliError::failed(format!("cannot write {}: {e}", path.display())))?;
    f.write_all(contents.as_bytes())
        .map_err(|e| CliError::failed(format!("cannot write {}: {e}", path.display())))
}

fn san(name: &str) -> CliResult<SanType> {
    if let Ok(ip) = name.parse::<IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    let dns = name
        .to_string()
        .try_into()
        .map_err(|e| CliError::config(format!("{name:?} is not a valid DNS name: {e}")))?;
    Ok(SanType::DnsName(dns))
}

fn rcgen_err(e: rcgen::Error) -> CliError {
    CliError::failed(format!("certificate generation failed: {e}"))
}

struct Ca {
    issuer: Issuer<'static, KeyPair>,
}

fn leaf_params(cn: &str, days: u32, server: bool, sans: &[String]) -> CliResult<CertificateParams> {
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, cn);
    params
        .distinguished_name
        .push(DnType::OrganizationName, "erlmcp-dr");
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::minutes(5);
    params.not_after = now + Duration::days(i64::from(days));
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    if server {
        params
            .extended_key_usages
            .push(ExtendedKeyUsagePurpose::ServerAuth);
    }
    params.subject_alt_names = sans.iter().map(|s| san(s)).collect::<CliResult<_>>()?;
    Ok(params)
}

impl Ca {
    fn create(days: u32) -> CliResult<(Ca, String, String)> {
        let key = KeyPair::generate().map_err(rcgen_err)?;
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, "erlmcp-dr CA");
        params
            .distinguished_name
            .push(DnType::OrganizationName, "erlmcp-dr");
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::minutes(5);
        params.not_after = now + Duration::days(i64::from(days.max(3650)));
        let cert = params.self_signed(&key).map_err(rcgen_err)?;
        let key_pem = key.serialize_pem();
        Ok((
            Ca {
                issuer: Issuer::new(params, key),
            },
            cert.pem(),
            key_pem,
        ))
    }

    /// The CA of a `drctl pki init` directory (`ca.pem` and `ca.key`).
    fn load(dir: &Path) -> CliResult<Ca> {
        let read = |name: &str| {
            let p = dir.join(name);
            std::fs::read_to_string(&p).map_err(|e| {
                CliError::usage(format!(
                    "cannot read {}: {e} (--dir must be the directory `drctl pki init` wrote)",
                    p.display()
                ))
            })
        };
        let cert = read("ca.pem")?;
        let key = KeyPair::from_pem(&read("ca.key")?).map_err(|e| {
            CliError::usage(format!(
                "{}: not a private key: {e}",
                dir.join("ca.key").display()
            ))
        })?;
        let issuer = Issuer::from_ca_cert_pem(&cert, key).map_err(|e| {
            CliError::usage(format!(
                "{}: not a CA certificate: {e}",
                dir.join("ca.pem").display()
            ))
        })?;
        Ok(Ca { issuer })
    }

    fn issue(&self, params: &CertificateParams) -> CliResult<(String, String)> {
        let key = KeyPair::generate().map_err(rcgen_err)?;
        let cert = params.signed_by(&key, &self.issuer).map_err(rcgen_err)?;
        Ok((cert.pem(), key.serialize_pem()))
    }
}

/// Files written, for the summary.
pub struct Written {
    pub files: Vec<PathBuf>,
}

pub fn init(plan: &PkiPlan) -> CliResult<Written> {
    if plan.controllers.is_empty() {
        return Err(CliError::config(
            "--controller: name at least one controller",
        ));
    }
    std::fs::create_dir_all(&plan.dir)
        .map_err(|e| CliError::failed(format!("cannot create {}: {e}", plan.dir.display())))?;
    let ca_path = plan.dir.join("ca.pem");
    if ca_path.exists() && !plan.force {
        return Err(CliError::config(format!(
            "{} already exists: this directory has a CA. Use another --dir, or --force to replace \
             the CA (every existing certificate stops working)",
            ca_path.display()
        )));
    }
    let (ca, ca_pem, ca_key) = Ca::create(plan.days)?;
    let mut files = Vec::new();
    write_pair(&plan.dir, "ca", &ca_pem, &ca_key, &mut files)?;
    issue_all(&ca, plan, &mut files)?;
    Ok(Written { files })
}

/// `drctl pki issue`: more certificates from the CA already in `plan.dir` (a new host, a new
/// controller, a new operator, or renewing one), without touching the others. An existing
/// certificate is replaced only with `plan.force`.
pub fn issue(plan: &PkiPlan) -> CliResult<Written> {
    let ca = Ca::load(&plan.dir)?;
    if plan.controllers.is_empty()
        && plan.agents.is_empty()
        && plan.operators.is_empty()
        && plan.viewers.is_empty()
    {
        return Err(CliError::usage(
            "name at least one identity: --controller, --agents, --operators or --viewers",
        ));
    }
    if !plan.force {
        for name in identity_files(plan) {
            let p = plan.dir.join(format!("{name}.pem"));
            if p.exists() {
                return Err(CliError::usage(format!(
                    "{} already exists: add --force to replace it (renewal), or pick another name",
                    p.display()
                )));
            }
        }
    }
    let mut files = Vec::new();
    issue_all(&ca, plan, &mut files)?;
    Ok(Written { files })
}

/// `controller-NAME`, `agent-HOST`, ... for every identity of `plan`.
fn identity_files(plan: &PkiPlan) -> Vec<String> {
    let mut out: Vec<String> = plan
        .controllers
        .iter()
        .map(|c| format!("controller-{c}"))
        .collect();
    for (kind, list) in [
        ("agent", &plan.agents),
        ("operator", &plan.operators),
        ("viewer", &plan.viewers),
    ] {
        out.extend(list.iter().map(|n| format!("{kind}-{n}")));
    }
    out
}

fn write_pair(
    dir: &Path,
    name: &str,
    cert: &str,
    key: &str,
    files: &mut Vec<PathBuf>,
) -> CliResult {
    let cert_path = dir.join(format!("{name}.pem"));
    let key_path = dir.join(format!("{name}.key"));
    write_file(&key_path, key, 0o600)?;
    write_file(&cert_path, cert, 0o644)?;
    files.push(cert_path);
    files.push(key_path);
    Ok(())
}

fn issue_all(ca: &Ca, plan: &PkiPlan, files: &mut Vec<PathBuf>) -> CliResult {
    for c in &plan.controllers {
        let mut sans = vec![c.to_string()];
        sans.extend(plan.controller_sans.iter().cloned());
        let params = leaf_params(&format!("controller:{c}"), plan.days, true, &sans)?;
        let (cert, key) = ca.issue(&params)?;
        write_pair(&plan.dir, &format!("controller-{c}"), &cert, &key, files)?;
    }
    for (kind, list) in [
        ("agent", &plan.agents),
        ("operator", &plan.operators),
        ("viewer", &plan.viewers),
    ] {
        for n in list {
            let params = leaf_params(&format!("{kind}:{n}"), plan.days, false, &[])?;
            let (cert, key) = ca.issue(&params)?;
            write_pair(&plan.dir, &format!("{kind}-{n}"), &cert, &key, files)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use dr_proto::identity::Identity;
    use dr_proto::tls::{TlsMaterial, TlsPaths};

    fn plan(dir: &Path) -> PkiPlan {
        PkiPlan {
            dir: dir.to_path_buf(),
            controllers: names("controller", &["ctl1".into()]).unwrap(),
            controller_sans: vec!["localhost".into(), "127.0.0.1".into()],
            agents: names("agents", &["a,b".into()]).unwrap(),
            operators: names("operators", &["alice".into()]).unwrap(),
            viewers: names("viewers", &["bob".into()]).unwrap(),
            days: 30,
            force: false,
        }
    }

    #[test]
    fn issues_certificates_the_loader_accepts_with_their_identities() {
        dr_proto::install_crypto_provider();
        let dir = tempfile::tempdir().unwrap();
        init(&plan(dir.path())).unwrap();
        for (file, id) in [
            ("controller-ctl1", "controller:ctl1"),
            ("agent-a", "agent:a"),
            ("operator-alice", "operator:alice"),
            ("viewer-bob", "viewer:bob"),
        ] {
            let m = TlsMaterial::load(&TlsPaths {
                ca: dir.path().join("ca.pem"),
                cert: dir.path().join(format!("{file}.pem")),
                key: dir.path().join(format!("{file}.key")),
                server_name: None,
            })
            .unwrap();
            assert_eq!(m.identity, id.parse::<Identity>().unwrap());
        }
    }

    #[test]
    fn refuses_to_overwrite_a_ca_without_force_and_catches_foreign_certs() {
        dr_proto::install_crypto_provider();
        let one = tempfile::tempdir().unwrap();
        let two = tempfile::tempdir().unwrap();
        init(&plan(one.path())).unwrap();
        let again = init(&plan(one.path())).err().unwrap();
        assert_eq!(again.code, 2);
        init(&plan(two.path())).unwrap();
        // agent cert of CA two presented with CA one: refused at load time
        let err = TlsMaterial::load(&TlsPaths {
            ca: one.path().join("ca.pem"),
            cert: two.path().join("agent-a.pem"),
            key: two.path().join("agent-a.key"),
            server_name: None,
        })
        .err()
        .unwrap()
        .to_string();
        assert!(err.contains("not issued by the CA"), "{err}");
    }

    #[test]
    fn issue_adds_certificates_from_the_same_ca_and_keeps_the_others() {
        dr_proto::install_crypto_provider();
        let dir = tempfile::tempdir().unwrap();
        init(&plan(dir.path())).unwrap();
        let before = std::fs::read(dir.path().join("agent-a.pem")).unwrap();
        let more = PkiPlan {
            controllers: names("controller", &["ctl2".into()]).unwrap(),
            agents: names("agents", &["c".into()]).unwrap(),
            operators: vec![],
            viewers: vec![],
            ..plan(dir.path())
        };
        issue(&more).unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("agent-a.pem")).unwrap(),
            before
        );
        for (file, id) in [
            ("agent-c", "agent:c"),
            ("controller-ctl2", "controller:ctl2"),
        ] {
            let m = TlsMaterial::load(&TlsPaths {
                ca: dir.path().join("ca.pem"),
                cert: dir.path().join(format!("{file}.pem")),
                key: dir.path().join(format!("{file}.key")),
                server_name: None,
            })
            .unwrap();
            assert_eq!(m.identity, id.parse::<Identity>().unwrap());
        }
        // an existing identity is only replaced with --force
        let again = issue(&more).err().unwrap();
        assert_eq!(again.code, 2);
        assert!(again.message.contains("--force"), "{}", again.message);
        issue(&PkiPlan {
            force: true,
            ..more
        })
        .unwrap();
        // no CA there: says which directory is wanted
        let empty = tempfile::tempdir().unwrap();
        let e = issue(&plan(empty.path())).err().unwrap();
        assert!(e.message.contains("pki init"), "{}", e.message);
    }

    #[test]
    fn bad_names_are_usage_errors() {
        let e = names("agents", &["a,b/c".into()]).err().unwrap();
        assert_eq!(e.code, 2);
        assert!(e.message.contains("--agents"));
    }
}
