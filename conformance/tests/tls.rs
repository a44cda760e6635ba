//! HTTPS on Berth's own listener (`[tls]`): HTTP/2 by ALPN, nothing in the
//! clear, and certificates replaced while it runs — by the reload interval
//! or SIGHUP — with a pull on an old connection finishing meanwhile; then
//! skopeo and the Docker engine pushing and pulling over HTTPS.

use berth_conformance::*;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// A certificate authority of the test's own.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name
            .push(rcgen::DnType::CommonName, format!("berth test CA {name}"));
        Ca {
            issuer: CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap(),
        }
    }

    fn pem(&self) -> Vec<u8> {
        self.issuer.pem().into_bytes()
    }

    /// A server certificate for 127.0.0.1 and localhost, and its key (PEM).
    fn leaf(&self) -> (String, String) {
        let p =
            CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// The certificate files a server is configured with.
struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new((cert, key): &(String, String)) -> Files {
        let f = Files {
            dir: tempfile::tempdir().unwrap(),
        };
        f.write(cert, key);
        f
    }
    fn cert(&self) -> PathBuf {
        self.dir.path().join("tls.crt")
    }
    fn key(&self) -> PathBuf {
        self.dir.path().join("tls.key")
    }
    /// Replace both, each by a rename (as cert-manager's atomic writer does
    /// for a mounted Secret), the key first.
    fn write(&self, cert: &str, key: &str) {
        for (path, text) in [(self.key(), key), (self.cert(), cert)] {
            let tmp = path.with_extension("new");
            std::fs::write(&tmp, text).unwrap();
            std::fs::rename(&tmp, &path).unwrap();
        }
    }
    fn env(&self, reload_secs: &str) -> Vec<(String, String)> {
        vec![
            (
                "BERTH_TLS_CERT_FILE".into(),
                self.cert().display().to_string(),
            ),
            (
                "BERTH_TLS_KEY_FILE".into(),
                self.key().display().to_string(),
            ),
            ("BERTH_TLS_RELOAD_INTERVAL_SECS".into(), reload_secs.into()),
        ]
    }
}

fn start(files: &Files, reload_secs: &str, ca: &Ca) -> Server {
    let env = files.env(reload_secs);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Server::start_tls(&env, &ca.pem())
}

/// A client trusting only `ca`, on a connection of its own.
fn trusting(ca: &Ca) -> reqwest::blocking::Client {
    trusting_only(&ca.pem())
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// Whether a fresh connection trusting only `ca` completes a request.
fn served_by(s: &Server, ca: &Ca) -> bool {
    trusting(ca)
        .get(s.url("/v2/"))
        .send()
        .is_ok_and(|r| r.status() == 401)
}

fn push_blob_with(c: &reqwest::blocking::Client, s: &Server, repo: &str, data: &[u8]) -> String {
    let digest = sha256(data);
    let r = c
        .post(s.url(&format!("/v2/{repo}/blobs/uploads/?digest={digest}")))
        .header("authorization", admin_basic())
        .header("content-type", "application/octet-stream")
        .body(data.to_vec())
        .send()
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().unwrap_or_default());
    digest
}

#[test]
fn https_with_h2_and_certificates_replaced_while_serving() {
    let (ca1, ca2) = (Ca::new("one"), Ca::new("two"));
    let files = Files::new(&ca1.leaf());
    let s = start(&files, "1", &ca1);
    let pid = s.pid();
    let c1 = trusting(&ca1);

    // HTTPS with HTTP/2 chosen by ALPN; nothing in the clear
    let r = c1.get(s.url("/v2/")).send().unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    let h1 = trusting_only(&ca1.pem()).http1_only().build().unwrap();
    assert_eq!(
        h1.get(s.url("/v2/")).send().unwrap().version(),
        reqwest::Version::HTTP_11
    );
    let clear = reqwest::blocking::get(format!("http://127.0.0.1:{}/v2/", s.port));
    assert!(
        clear.is_err(),
        "cleartext HTTP is not served: {:?}",
        clear.map(|r| r.status())
    );
    assert!(
        !served_by(&s, &ca2),
        "a client trusting another CA refuses it"
    );
    // the token realm names the HTTPS URL
    let challenge = c1.get(s.url("/v2/")).send().unwrap();
    let www = challenge.headers()["www-authenticate"].to_str().unwrap();
    assert!(
        www.contains(&format!("realm=\"https://127.0.0.1:{}/token\"", s.port)),
        "{www}"
    );

    // a long pull on a connection made with the first certificate
    let big: Vec<u8> = (0..48u32 << 20).map(|i| (i % 251) as u8).collect();
    let digest = push_blob_with(&c1, &s, "tls/app", &big);
    let mut pull = c1
        .get(s.url(&format!("/v2/tls/app/blobs/{digest}")))
        .header("authorization", admin_basic())
        .send()
        .unwrap();
    assert_eq!(pull.status(), 200);
    let mut head = vec![0u8; 1 << 20];
    pull.read_exact(&mut head).unwrap();

    // a renewal: a pair that does not match is not taken (old one served) …
    let (cert2, key2) = ca2.leaf();
    let (_, other_key) = ca2.leaf();
    files.write(&cert2, &other_key);
    std::thread::sleep(Duration::from_millis(2500));
    assert!(served_by(&s, &ca1), "a broken pair leaves the old one");
    assert!(s.log_text().contains("do not load"), "{}", s.log_text());
    // … the right pair is, without a restart
    files.write(&cert2, &key2);
    poll(
        "the renewed certificate",
        100,
        Duration::from_millis(100),
        || served_by(&s, &ca2).then_some(()),
    );
    assert!(!served_by(&s, &ca1), "new connections get the new one");
    assert_eq!(s.pid(), pid, "no restart");

    // the old connection's pull completes, byte for byte
    let mut rest = Vec::new();
    pull.read_to_end(&mut rest).unwrap();
    head.extend_from_slice(&rest);
    assert_eq!(head.len(), big.len());
    assert_eq!(sha256(&head), digest);
    assert!(s.log_text().contains("TLS certificate reloaded"));
    assert!(!s.log_text().contains("panicked"));
}

#[test]
fn sighup_reloads_the_certificate() {
    let (ca1, ca2) = (Ca::new("one"), Ca::new("two"));
    let files = Files::new(&ca1.leaf());
    let s = start(&files, "0", &ca1);
    let (cert2, key2) = ca2.leaf();
    files.write(&cert2, &key2);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        served_by(&s, &ca1),
        "reload_interval_secs = 0: the files are read on SIGHUP only"
    );
    // SAFETY: signalling our own child process.
    unsafe {
        libc::kill(s.pid() as i32, libc::SIGHUP);
    }
    poll(
        "the certificate after SIGHUP",
        100,
        Duration::from_millis(100),
        || served_by(&s, &ca2).then_some(()),
    );
}

#[test]
fn a_half_configured_or_broken_pair_is_refused_at_start() {
    let ca = Ca::new("one");
    let files = Files::new(&ca.leaf());
    let berth = berth_bin();
    let data = tempfile::tempdir().unwrap();
    let cert = files.cert();
    let check = |env: &[(&str, &Path)]| {
        let mut c = Command::new(&berth);
        c.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data.path())
            .env("BERTH_AUTH_ADMIN_TOKEN", ADMIN_TOKEN);
        for (k, v) in env {
            c.env(k, v);
        }
        let out = c.output().unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = check(&[("BERTH_TLS_CERT_FILE", &cert)]);
    assert!(err.contains("tls.cert_file"), "{err}");
    // a key that is not the certificate's
    let (_, other) = ca.leaf();
    let wrong = data.path().join("wrong.key");
    std::fs::write(&wrong, other).unwrap();
    let err = check(&[
        ("BERTH_TLS_CERT_FILE", &cert),
        ("BERTH_TLS_KEY_FILE", &wrong),
    ]);
    assert!(
        err.contains("do not form a certificate and its key"),
        "{err}"
    );
}

/// A directory with the CA as `ca.crt`, as skopeo's `--cert-dir` and the
/// Docker engine's `certs.d` read it.
fn cert_dir(at: &Path, ca: &Ca) {
    std::fs::create_dir_all(at).unwrap();
    std::fs::write(at.join("ca.crt"), ca.pem()).unwrap();
}

#[test]
fn skopeo_and_docker_over_https() {
    let skopeo = require("skopeo");
    let ca = Ca::new("clients");
    let files = Files::new(&ca.leaf());
    let s = start(&files, "10", &ca);
    let tmp = tempfile::tempdir().unwrap();
    let certs = tmp.path().join("certs");
    cert_dir(&certs, &ca);
    let src = tmp.path().join("src");
    layout::single_and_multi(&src);
    let creds = format!("admin:{ADMIN_TOKEN}");
    // skopeo verifies the chain against the CA (no --tls-verify=false)
    run(Command::new(&skopeo)
        .args(["--insecure-policy", "copy", "--all", "--dest-cert-dir"])
        .arg(&certs)
        .args(["--dest-creds", &creds])
        .arg(format!("oci:{}:multi", src.display()))
        .arg(format!("docker://{}/tls/app:multi", s.host())));
    let out = tmp.path().join("back");
    run(Command::new(&skopeo)
        .args(["--insecure-policy", "copy", "--all", "--src-cert-dir"])
        .arg(&certs)
        .args(["--src-creds", &creds])
        .arg(format!("docker://{}/tls/app:multi", s.host()))
        .arg(format!("oci:{}:multi", out.display())));
    assert!(out.join("index.json").exists());
    let refused = Command::new(&skopeo)
        .args(["inspect", "--raw", "--creds", &creds])
        .arg(format!("docker://{}/tls/app:multi", s.host()))
        .output()
        .unwrap();
    assert!(
        !refused.status.success(),
        "without the CA skopeo refuses the certificate"
    );

    // the Docker engine, with the CA in certs.d
    let engine_certs = PathBuf::from("/etc/docker/certs.d").join(s.host());
    cert_dir(&engine_certs, &ca);
    let cfg = tmp.path().join("docker-config");
    std::fs::create_dir_all(&cfg).unwrap();
    let dk = || docker_cli(&cfg);
    let archive = tmp.path().join("img.tar");
    let local = format!("berth-e2e/tls:{}", s.port);
    run(Command::new(&skopeo)
        .args(["--insecure-policy", "copy"])
        .arg(format!("oci:{}:single", src.display()))
        .arg(format!("docker-archive:{}:{local}", archive.display())));
    run(dk().arg("load").arg("-i").arg(&archive));
    let remote = format!("{}/tls/docker:v1", s.host());
    let result = (|| -> Result<(), String> {
        let ok = |c: &mut Command| {
            let o = c.output().unwrap();
            o.status
                .success()
                .then_some(())
                .ok_or_else(|| format!("{c:?}: {}", String::from_utf8_lossy(&o.stderr)))
        };
        ok(dk().args(["tag", &local, &remote]))?;
        ok(dk().args([
            "login",
            &s.host(),
            "--username",
            "admin",
            "--password",
            ADMIN_TOKEN,
        ]))?;
        ok(dk().args(["push", &remote]))?;
        ok(dk().args(["rmi", "-f", &remote, &local]))?;
        ok(dk().args(["pull", &remote]))
    })();
    let _ = dk().args(["rmi", "-f", &remote, &local]).output();
    let _ = std::fs::remove_dir_all(&engine_certs);
    result.unwrap();
    // what docker pushed is there, read over HTTPS
    let r = s
        .client()
        .get(s.url("/v2/tls/docker/tags/list"))
        .header("authorization", admin_basic())
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().unwrap().contains("v1"));
}

/// Metadata in a PostgreSQL that takes TLS connections only: Berth with the
/// server's CA (`metadata.postgres.ca_file`) pushes and pulls; with only
/// the system's authorities it refuses the certificate, and in the clear
/// the server refuses Berth — so the first one spoke TLS, verified.
#[test]
fn metadata_over_tls_to_postgres() {
    let ca = Ca::new("postgres");
    let (cert, key) = ca.leaf();
    let pg = berth_pgtest::start_tls(&cert, &key);
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("pg-ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let url = |mode: &str| format!("{}?sslmode={mode}", pg.url());
    let schema = berth_pgtest::fresh_schema("tls");
    let base = [
        ("BERTH_METADATA_BACKEND", "postgres".to_string()),
        ("BERTH_METADATA_POSTGRES_SCHEMA", schema.clone()),
    ];

    let env = [
        ("BERTH_METADATA_POSTGRES_URL", pg.url().to_string()),
        (
            "BERTH_METADATA_POSTGRES_CA_FILE",
            ca_file.display().to_string(),
        ),
    ];
    let env: Vec<(&str, &str)> = base
        .iter()
        .chain(env.iter())
        .map(|(k, v)| (*k, v.as_str()))
        .collect();
    let s = Server::start_with(&env);
    let c = admin_client();
    let img = push_image(&c, &s, "tls/app", "v1", "over tls");
    assert_blob_pulls(&c, &s, "tls/app", &img.layer, "a layer");
    drop(s);

    let refused = |env: &[(&str, String)]| -> String {
        let data = tempfile::tempdir().unwrap();
        let mut cmd = Command::new(berth_bin());
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data.path())
            .env("BERTH_AUTH_ADMIN_TOKEN", ADMIN_TOKEN);
        for (k, v) in base.iter().chain(env) {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        assert!(!out.status.success(), "berth started: {env:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    // TLS without the CA: the certificate is not trusted
    let err = refused(&[("BERTH_METADATA_POSTGRES_URL", url("require"))]);
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    // in the clear: the server wants TLS
    let err = refused(&[("BERTH_METADATA_POSTGRES_URL", url("disable"))]);
    assert!(
        err.contains("no encryption") || err.contains("pg_hba"),
        "{err}"
    );
    // a CA file and sslmode=disable contradict each other
    let err = refused(&[
        ("BERTH_METADATA_POSTGRES_URL", url("disable")),
        (
            "BERTH_METADATA_POSTGRES_CA_FILE",
            ca_file.display().to_string(),
        ),
    ]);
    assert!(err.contains("sslmode=disable"), "{err}");
}
