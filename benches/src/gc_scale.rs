//! Garbage collection at scale, in process: seed a fresh metadata store
//! (RocksDB, unsynced) with `--manifests` image manifests referencing
//! `--blobs` blobs in all (a tenth of the blobs referenced by nothing, a
//! tenth of the manifests untagged), then time one full collection (marks
//! through the store, sweeps with one transaction per candidate) and print
//! the figures as JSON. Blob bytes are not written: the sweep's deletes of
//! absent files cost what a missing-file delete costs.
//!
//! `cargo run --release --bin berth-gc-scale -- --blobs 1000000 --manifests 100000`

use anyhow::Context;
use berth_core::Digest;
use berth_meta::{ManifestRecord, Meta, PutManifest, Ref, RocksStore};
use clap::Parser;
use std::sync::Arc;
use std::time::Instant;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 1_000_000)]
    blobs: usize,
    #[arg(long, default_value_t = 100_000)]
    manifests: usize,
    /// Where the store goes (default: a temporary directory).
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
    /// Repositories the manifests are spread over.
    #[arg(long, default_value_t = 100)]
    repos: usize,
}

fn digest(kind: &str, i: usize) -> Digest {
    Digest::sha256_of(format!("{kind} {i}").as_bytes())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let tmp = tempfile::tempdir()?;
    let dir = a.dir.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    let meta = Meta::new(RocksStore::open(&dir.join("meta"))?.synced(false));
    let blobs = Arc::new(berth_storage::BlobStore::local(&dir.join("store"))?.synced(false));
    let referenced = a.blobs - a.blobs / 10;
    let per = (referenced / a.manifests.max(1)).max(1);
    let seed = Instant::now();
    let m = meta.clone();
    let (nb, nm, nr) = (a.blobs, a.manifests, a.repos.max(1));
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        for i in 0..nb {
            // referenced blobs go to their manifest's repository; the rest
            // are spread over all
            let repo = if i < referenced {
                format!("scale/r{}", (i / per) % nr)
            } else {
                format!("scale/r{}", i % nr)
            };
            m.link_blob(&repo, &digest("blob", i), 1000)?;
        }
        for j in 0..nm {
            let repo = format!("scale/r{}", j % nr);
            let refs: Vec<Ref> = (j * per..((j + 1) * per).min(referenced))
                .map(|i| Ref::Blob {
                    digest: digest("blob", i),
                    size: 1000,
                })
                .collect();
            let tags = if j % 10 == 0 {
                vec![]
            } else {
                vec![format!("t{j}")]
            };
            let d = digest("manifest", j);
            m.put_manifest(PutManifest {
                repo: &repo,
                digest: &d,
                record: ManifestRecord {
                    media_type: "application/vnd.oci.image.manifest.v1+json".into(),
                    size: 500,
                    artifact_type: None,
                    subject: None,
                    config_media_type: None,
                    blobs: vec![],
                    children: vec![],
                    pushed_ms: 0,
                    rev: 0,
                },
                body: b"{}",
                tags: &tags,
                referrer: None,
                refs,
                allow_missing: true,
                by: "bench",
            })?
            .map_err(|r| anyhow::anyhow!("refused: {r:?}"))?;
        }
        Ok(())
    })
    .await
    .context("seeding")??;
    let seeded = seed.elapsed();
    let collector = berth_gc::Collector::new(meta.clone(), blobs);
    let o = berth_gc::Options {
        registry: None,
        delete_untagged: true,
        dry_run: false,
        grace_ms: 0,
    };
    let t = Instant::now();
    let report = collector.run(&o, &berth_gc::Progress::default()).await?;
    let gc = t.elapsed();
    println!(
        "{}",
        serde_json::json!({
            "blobs": a.blobs,
            "manifests": a.manifests,
            "repositories": nr,
            "seed_seconds": seeded.as_secs_f64(),
            "gc_seconds": gc.as_secs_f64(),
            "report": report,
        })
    );
    Ok(())
}
