//! Garbage collection at scale, in process: seed a fresh metadata store
//! (RocksDB, unsynced) with `--manifests` image manifests referencing
//! `--blobs` blobs in all (a tenth of the blobs referenced by nothing, a
//! tenth of the manifests untagged), then time one full collection with
//! `delete_untagged` and no grace, and print the figures as JSON.
//!
//! The content is real: blob `i` holds the bytes `blob {i}`, each manifest
//! is an OCI image manifest (its first blob the config, the rest layers)
//! stored under the sha256 of its JSON. With `--files` the blob files are
//! written into Berth's object store too (otherwise the sweep deletes
//! absent files); with `--reference DIR` the same content is also written
//! in the reference registry's (distribution's) filesystem layout under
//! `DIR`, for its offline `garbage-collect` (`benches/gc_compare.sh`).
//! With `--seed-only` the store is left in `--dir` for a server to open
//! (its data directory: `meta/` and `store/`).
//!
//! `cargo run --release --bin berth-gc-scale -- --blobs 1000000 --manifests 100000`

use anyhow::Context;
use berth_core::Digest;
use berth_meta::{ManifestRecord, Meta, PutManifest, Ref, RocksStore};
use clap::Parser;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 1_000_000)]
    blobs: usize,
    #[arg(long, default_value_t = 100_000)]
    manifests: usize,
    /// Where the store goes (default: a temporary directory).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Repositories the manifests are spread over.
    #[arg(long, default_value_t = 100)]
    repos: usize,
    /// Write the blob files into Berth's object store as well.
    #[arg(long)]
    files: bool,
    /// Also write the content in distribution's layout under this directory.
    #[arg(long)]
    reference: Option<PathBuf>,
    /// Seed `--dir` and stop (no collection).
    #[arg(long)]
    seed_only: bool,
}

fn blob_bytes(i: usize) -> Vec<u8> {
    format!("blob {i}").into_bytes()
}

/// The content: which repository each blob goes to and what each manifest
/// references.
struct Plan {
    blobs: usize,
    manifests: usize,
    repos: usize,
    referenced: usize,
    per: usize,
}

impl Plan {
    fn new(a: &Args) -> Plan {
        let referenced = a.blobs - a.blobs / 10;
        Plan {
            blobs: a.blobs,
            manifests: a.manifests,
            repos: a.repos.max(1),
            referenced,
            per: (referenced / a.manifests.max(1)).max(1),
        }
    }

    /// Referenced blobs go to their manifest's repository; the rest are
    /// spread over all.
    fn blob_repo(&self, i: usize) -> String {
        if i < self.referenced {
            format!("scale/r{}", (i / self.per) % self.repos)
        } else {
            format!("scale/r{}", i % self.repos)
        }
    }

    fn manifest_repo(&self, j: usize) -> String {
        format!("scale/r{}", j % self.repos)
    }

    fn manifest_blobs(&self, j: usize) -> std::ops::Range<usize> {
        j * self.per..((j + 1) * self.per).min(self.referenced)
    }

    /// A tenth of each repository's manifests are untagged (a repository
    /// with no tag at all makes the reference's collection fail: "failed
    /// to retrieve tags unknown repository").
    fn tag(&self, j: usize) -> Option<String> {
        (!(j / self.repos).is_multiple_of(10)).then(|| format!("t{j}"))
    }

    /// Manifest `j`'s JSON.
    fn manifest(&self, j: usize) -> Vec<u8> {
        let descs: Vec<serde_json::Value> = self
            .manifest_blobs(j)
            .map(|i| {
                let b = blob_bytes(i);
                serde_json::json!({
                    "mediaType": OCI_LAYER,
                    "digest": Digest::sha256_of(&b).to_string(),
                    "size": b.len(),
                })
            })
            .collect();
        let (config, layers) = match descs.split_first() {
            Some((c, l)) => {
                let mut c = c.clone();
                c["mediaType"] = OCI_CONFIG.into();
                (c, l.to_vec())
            }
            // a manifest with no blob of its own: an empty config
            None => (
                serde_json::json!({
                    "mediaType": OCI_CONFIG,
                    "digest": Digest::sha256_of(b"{}").to_string(),
                    "size": 2,
                }),
                vec![],
            ),
        };
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config,
            "layers": layers,
        }))
        .expect("json")
    }
}

fn write_file(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, bytes).with_context(|| path.display().to_string())
}

/// distribution's layout: blob data, repository layer links, manifest
/// revisions and tags.
struct Reference(PathBuf);

impl Reference {
    fn v2(&self) -> PathBuf {
        self.0.join("docker/registry/v2")
    }
    fn blob(&self, d: &Digest, bytes: &[u8]) -> anyhow::Result<()> {
        let h = d.hex();
        write_file(
            &self.v2().join(format!("blobs/sha256/{}/{h}/data", &h[..2])),
            bytes,
        )
    }
    fn link(&self, repo: &str, under: &str, d: &Digest) -> anyhow::Result<()> {
        write_file(
            &self.v2().join(format!(
                "repositories/{repo}/{under}/sha256/{}/link",
                d.hex()
            )),
            d.to_string().as_bytes(),
        )
    }
    fn tag(&self, repo: &str, tag: &str, d: &Digest) -> anyhow::Result<()> {
        let t = format!("repositories/{repo}/_manifests/tags/{tag}");
        write_file(
            &self.v2().join(format!("{t}/current/link")),
            d.to_string().as_bytes(),
        )?;
        self.link(repo, &format!("_manifests/tags/{tag}/index"), d)
    }
}

fn seed(
    m: &Meta,
    plan: &Plan,
    files: Option<&Path>,
    reference: Option<&Reference>,
) -> anyhow::Result<()> {
    for i in 0..plan.blobs {
        let b = blob_bytes(i);
        let d = Digest::sha256_of(&b);
        let repo = plan.blob_repo(i);
        if let Some(root) = files {
            write_file(&root.join(berth_storage::blob_path(&d).as_ref()), &b)?;
        }
        if let Some(r) = reference {
            r.blob(&d, &b)?;
            r.link(&repo, "_layers", &d)?;
        }
        m.link_blob(&repo, &d, b.len() as u64)?;
    }
    for j in 0..plan.manifests {
        let repo = plan.manifest_repo(j);
        let body = plan.manifest(j);
        let d = Digest::sha256_of(&body);
        let refs: Vec<Ref> = plan
            .manifest_blobs(j)
            .map(|i| Ref::Blob {
                digest: Digest::sha256_of(&blob_bytes(i)),
                size: blob_bytes(i).len() as u64,
            })
            .collect();
        let tags: Vec<String> = plan.tag(j).into_iter().collect();
        if let Some(r) = reference {
            r.blob(&d, &body)?;
            r.link(&repo, "_manifests/revisions", &d)?;
            for t in &tags {
                r.tag(&repo, t, &d)?;
            }
        }
        m.put_manifest(PutManifest {
            repo: &repo,
            digest: &d,
            record: ManifestRecord {
                media_type: OCI_MANIFEST.into(),
                size: body.len() as u64,
                artifact_type: None,
                subject: None,
                config_media_type: Some(OCI_CONFIG.into()),
                blobs: vec![],
                children: vec![],
                pushed_ms: 0,
                rev: 0,
            },
            body: &body,
            tags: &tags,
            referrer: None,
            refs,
            allow_missing: true,
            by: "bench",
        })?
        .map_err(|r| anyhow::anyhow!("refused: {r:?}"))?;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let tmp = tempfile::tempdir()?;
    let dir = a.dir.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    let meta = Meta::new(RocksStore::open(&dir.join("meta"))?.synced(false));
    let store = dir.join("store");
    let blobs = Arc::new(berth_storage::BlobStore::local(&store)?.synced(false));
    let plan = Plan::new(&a);
    let t = Instant::now();
    let (m, files, reference) = (
        meta.clone(),
        a.files.then_some(store),
        a.reference.clone().map(Reference),
    );
    let plan = tokio::task::spawn_blocking(move || {
        seed(&m, &plan, files.as_deref(), reference.as_ref()).map(|()| plan)
    })
    .await
    .context("seeding")??;
    let seeded = t.elapsed();
    let mut out = serde_json::json!({
        "blobs": plan.blobs,
        "manifests": plan.manifests,
        "repositories": plan.repos,
        "files": a.files,
        "seed_seconds": seeded.as_secs_f64(),
    });
    if !a.seed_only {
        let collector = berth_gc::Collector::new(meta.clone(), blobs);
        let o = berth_gc::Options {
            registry: None,
            delete_untagged: true,
            dry_run: false,
            grace_ms: 0,
        };
        let t = Instant::now();
        let progress = Arc::new(berth_gc::Progress::default());
        // when each phase began, sampled every 10 ms
        let (p, done) = (
            progress.clone(),
            Arc::new(std::sync::atomic::AtomicBool::new(false)),
        );
        let d = done.clone();
        let sampler = tokio::spawn(async move {
            let mut began: Vec<(&'static str, f64)> = Vec::new();
            while !d.load(std::sync::atomic::Ordering::Relaxed) {
                let ph = p.phase();
                if began.last().map(|(n, _)| *n) != Some(ph) {
                    began.push((ph, t.elapsed().as_secs_f64()));
                }
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            began
        });
        let report = collector.run(&o, &progress).await?;
        out["gc_seconds"] = t.elapsed().as_secs_f64().into();
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        out["phases_began"] = serde_json::to_value(sampler.await?)?;
        out["report"] = serde_json::to_value(report)?;
    }
    println!("{out}");
    Ok(())
}
