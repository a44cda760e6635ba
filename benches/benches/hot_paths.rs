//! Criterion micro-benchmarks of the hot paths: digest verification,
//! manifest parsing, metadata key encoding and page reads.

use berth_core::{Algorithm, Digest, Hasher, Manifest};
use berth_meta::{ManifestRecord, Meta, PutManifest, RocksStore};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

fn digests(c: &mut Criterion) {
    let data = vec![0x5au8; 1 << 20];
    let mut g = c.benchmark_group("digest");
    g.throughput(Throughput::Bytes(data.len() as u64));
    for alg in [Algorithm::Sha256, Algorithm::Sha512] {
        g.bench_function(format!("{alg:?} 1MiB in 64KiB chunks"), |b| {
            b.iter(|| {
                let mut h = Hasher::new(alg);
                for chunk in data.chunks(64 * 1024) {
                    h.update(chunk);
                }
                h.finish()
            })
        });
    }
    g.bench_function("parse digest", |b| {
        let s = Digest::sha256_of(b"x").to_string();
        b.iter(|| Digest::parse(std::hint::black_box(&s)).unwrap())
    });
    g.finish();
}

fn manifests(c: &mut Criterion) {
    let d = Digest::sha256_of(b"x").to_string();
    let layers: Vec<_> = (0..10)
        .map(|_| serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d, "size": 1234}))
        .collect();
    let image = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": d, "size": 100},
        "layers": layers,
    }))
    .unwrap();
    let children: Vec<_> = (0..8)
        .map(|_| serde_json::json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": d, "size": 500, "platform": {"os": "linux", "architecture": "amd64"}}))
        .collect();
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": children,
    }))
    .unwrap();
    let mut g = c.benchmark_group("manifest");
    g.bench_function("parse image manifest (10 layers)", |b| {
        b.iter(|| Manifest::parse(&image, None).unwrap())
    });
    g.bench_function("parse index (8 children)", |b| {
        b.iter(|| Manifest::parse(&index, None).unwrap())
    });
    g.finish();
}

fn pages(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let meta = Meta::new(RocksStore::open(dir.path()).unwrap());
    let d = Digest::sha256_of(b"m");
    let rec = ManifestRecord {
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        size: 1,
        artifact_type: None,
        subject: None,
        config_media_type: None,
        blobs: vec![],
        children: vec![],
        pushed_ms: 0,
        rev: 0,
    };
    let mut g = c.benchmark_group("metadata");
    for n in [100usize, 10_000] {
        let repo = format!("repo{n}");
        for i in 0..n {
            meta.put_manifest(PutManifest {
                repo: &repo,
                digest: &d,
                record: rec.clone(),
                body: b"m",
                tags: &[format!("tag{i:07}")],
                referrer: None,
                refs: vec![],
                allow_missing: false,
                by: "test",
            })
            .unwrap()
            .unwrap();
        }
        let mid = format!("tag{:07}", n / 2);
        g.bench_with_input(BenchmarkId::new("tags page n=100", n), &n, |b, _| {
            b.iter(|| meta.list_tags(&repo, Some(&mid), 100).unwrap())
        });
    }
    g.bench_function("tag lookup", |b| {
        b.iter(|| meta.tag("repo10000", "tag0005000").unwrap().unwrap())
    });
    g.bench_function("manifest lookup", |b| {
        b.iter(|| meta.manifest("repo10000", &d).unwrap().unwrap())
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(2));
    targets = digests, manifests, pages
}
criterion_main!(benches);
