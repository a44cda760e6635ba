//! The PostgreSQL engine: [`KvStore`] over one PostgreSQL database that
//! several Berth replicas share.
//!
//! ## Tables (in a schema of their own, `metadata.postgres.schema`)
//! - `kv (cf, key, reg, value)`: every column family's rows, primary key
//!   `(cf, key, reg)`, hash-partitioned by `reg` into [`PARTITIONS`]
//!   tables. `reg` is the registry a row belongs to — the leading segment
//!   of its key, up to the first `/` or `\0` — for the column families
//!   keyed by registry or repository, and empty for the instance-wide ones
//!   (blobs, tokens, uploads, audit, …). A registry's rows live together in
//!   one partition; a scan whose prefix names the registry reads only that
//!   partition, one that does not merges all of them in key order. `bytea`
//!   compares bytewise, as RocksDB's keys do.
//! - `counters (key, v)`: [`Cf::Counters`] as `int8`, so that a blind add is
//!   `v = v + delta` on the row.
//! - `berth_migrations`: the schema versions applied (see [`MIGRATIONS`]);
//!   each runs once, on start, under an advisory lock, so replicas starting
//!   together do not race.
//!
//! ## A batch is one transaction
//! `READ COMMITTED`, and before anything is read or written, an exclusive
//! transaction-scoped advisory lock on every key the batch names (its
//! conditions' keys and its writes' keys, hashed, taken in hash order).
//! Every writer of a key takes its lock, so between a condition's check and
//! the commit no other transaction can change that key, whether it exists
//! or not (a row lock could not cover a row that is absent); each statement
//! after the locks sees every commit that released them. A batch naming
//! more than [`MAX_KEY_LOCKS`] keys takes one cluster-wide lock exclusively
//! instead (every other batch holds it shared), so that large batches do
//! not fill PostgreSQL's lock table. A deadlock PostgreSQL detects, or a
//! serialization failure, is a [`KvError::Conflict`]: nothing was applied
//! and the transaction is run again.
//!
//! Durability: each commit is flushed by PostgreSQL (`synchronous_commit`
//! on) unless the batch is `no_sync` or the store was opened with
//! `sync = false`, which commit with `synchronous_commit = off`.
//!
//! The client is `tokio-postgres` on a small runtime of the store's own,
//! with a `deadpool` pool; the trait's blocking calls hand each query to
//! that runtime and wait, so they work from any thread.

use crate::cf::Cf;
use crate::kv::{prefix_end, Batch, KvError, KvStore, Op, Rows};
use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod};
use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::NoTls;

/// Hash partitions of the `kv` table.
pub const PARTITIONS: u32 = 16;

/// A batch naming more keys than this takes the cluster-wide lock instead
/// of one lock per key.
pub const MAX_KEY_LOCKS: usize = 128;

/// The advisory lock held shared by every batch and exclusively by a large
/// one. (Advisory lock ids are one space per database: these are chosen
/// far from small integers.)
const ALL_KEYS_LOCK: i64 = 0x6265_7274_685f_6b76; // "berth_kv"
/// Held while migrations run.
const MIGRATION_LOCK: i64 = 0x6265_7274_685f_6d67; // "berth_mg"

/// How to reach the database.
#[derive(Debug, Clone)]
pub struct PgSettings {
    /// `postgres://user:password@host:port/database` (or a key=value
    /// connection string).
    pub url: String,
    /// The schema Berth's tables live in; created when missing.
    pub schema: String,
    /// Most connections the pool opens.
    pub pool_size: usize,
    /// Flush every commit (`synchronous_commit`); `false`: commits are
    /// acknowledged before PostgreSQL's log reaches disk.
    pub sync: bool,
    /// Longest wait for a connection, from the pool or a new one.
    pub connect_timeout: Duration,
    /// PEM certificates of the authorities the server's certificate may
    /// chain to, besides the system's. Set, TLS is required.
    pub ca_file: Option<std::path::PathBuf>,
}

impl PgSettings {
    pub fn new(url: impl Into<String>, schema: impl Into<String>) -> PgSettings {
        PgSettings {
            url: url.into(),
            schema: schema.into(),
            pool_size: 16,
            sync: true,
            connect_timeout: Duration::from_secs(10),
            ca_file: None,
        }
    }
}

/// TLS to the server, verified as libpq's `verify-full` does (the
/// certificate chains to a trusted authority and names the host): when the
/// URL says `sslmode=require` or a CA file is given (which makes TLS
/// required). Otherwise (`sslmode=disable`, or `prefer`, libpq's default,
/// with no CA file) plain TCP.
fn tls_for(
    cfg: &mut tokio_postgres::Config,
    ca_file: Option<&std::path::Path>,
) -> Result<Option<tokio_postgres_rustls::MakeRustlsConnect>, KvError> {
    use tokio_postgres::config::SslMode;
    let wanted = match cfg.get_ssl_mode() {
        SslMode::Disable => {
            if ca_file.is_some() {
                return Err(KvError::Engine(
                    "PostgreSQL: a CA file is given but the URL says sslmode=disable".into(),
                ));
            }
            false
        }
        SslMode::Require => true,
        _ => ca_file.is_some(),
    };
    if !wanted {
        return Ok(None);
    }
    cfg.ssl_mode(SslMode::Require);
    let mut roots = rustls::RootCertStore::empty();
    // the system's authorities; a store that cannot be read is no error
    // when a CA file is given
    let native = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(native.certs);
    if let Some(path) = ca_file {
        use rustls::pki_types::{pem::PemObject, CertificateDer};
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .and_then(|it| it.collect())
            .map_err(|e| KvError::Engine(format!("PostgreSQL CA file {}: {e}", path.display())))?;
        if certs.is_empty() {
            return Err(KvError::Engine(format!(
                "PostgreSQL CA file {}: no certificate in it",
                path.display()
            )));
        }
        for c in certs {
            roots.add(c).map_err(|e| {
                KvError::Engine(format!("PostgreSQL CA file {}: {e}", path.display()))
            })?;
        }
    }
    if roots.is_empty() {
        return Err(KvError::Engine(
            "PostgreSQL TLS: no trusted authority (the system has none readable): \
             set metadata.postgres.ca_file"
                .into(),
        ));
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| KvError::Engine(format!("PostgreSQL TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Some(tokio_postgres_rustls::MakeRustlsConnect::new(config)))
}

/// Whether `name` is a schema name the store accepts: lowercase letters,
/// digits and `_`, not starting with a digit, at most 63 bytes.
pub fn valid_schema(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// The schema's versions, in order: (version, what it does, SQL with
/// `{s}` for the schema). Applied once each, never edited once released.
pub const MIGRATIONS: &[(i32, &str, &str)] = &[(
    1,
    "kv rows partitioned by registry, counters, heartbeat",
    "CREATE TABLE {s}.kv (
        cf text COLLATE \"C\" NOT NULL,
        key bytea NOT NULL,
        reg bytea NOT NULL,
        value bytea NOT NULL,
        PRIMARY KEY (cf, key, reg)
    ) PARTITION BY HASH (reg);
    {partitions}
    CREATE TABLE {s}.counters (key bytea PRIMARY KEY, v int8 NOT NULL);
    CREATE TABLE {s}.heartbeat (id int4 PRIMARY KEY, n int8 NOT NULL);
    INSERT INTO {s}.heartbeat VALUES (1, 0);",
)];

/// The column families whose keys start with a registry or repository
/// name (the registry's own name first), partitioned by it.
fn by_registry(cf: Cf) -> bool {
    !matches!(
        cf,
        Cf::Blobs
            | Cf::BlobRepos
            | Cf::Uploads
            | Cf::Tokens
            | Cf::Settings
            | Cf::Counters
            | Cf::Audit
            | Cf::Deleting
            | Cf::GcRuns
            | Cf::UploadOwners
    )
}

/// The partition value of a row: its key's leading segment.
fn reg_of(cf: Cf, key: &[u8]) -> &[u8] {
    if !by_registry(cf) {
        return b"";
    }
    let end = key
        .iter()
        .position(|&b| b == b'/' || b == 0)
        .unwrap_or(key.len());
    &key[..end]
}

/// The partition value every key with this prefix has, when the prefix
/// settles it (it holds the end of the leading segment).
fn reg_of_prefix(cf: Cf, prefix: &[u8]) -> Option<&[u8]> {
    if !by_registry(cf) {
        return Some(b"");
    }
    let end = prefix.iter().position(|&b| b == b'/' || b == 0)?;
    Some(&prefix[..end])
}

/// A stable 64-bit hash of a key (FNV-1a): the id of its advisory lock,
/// the same in every replica.
fn lock_id(cf: Cf, key: &[u8]) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in cf.name().as_bytes().iter().chain([&0u8]).chain(key) {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h as i64
}

fn counter_bytes(v: i64) -> Vec<u8> {
    v.to_le_bytes().to_vec()
}

fn counter_of(cf: Cf, v: &[u8]) -> Result<i64, KvError> {
    v.try_into().map(i64::from_le_bytes).map_err(|_| {
        KvError::Engine(format!(
            "a value of {} bytes written to {}: counters are 8-byte little-endian integers",
            v.len(),
            cf.name()
        ))
    })
}

/// A PostgreSQL error as the trait's kinds.
fn pg_err(e: tokio_postgres::Error) -> KvError {
    if let Some(code) = e.code() {
        if *code == SqlState::T_R_SERIALIZATION_FAILURE || *code == SqlState::T_R_DEADLOCK_DETECTED
        {
            return KvError::Conflict;
        }
        if *code == SqlState::DISK_FULL {
            return KvError::NoSpace(e.to_string());
        }
        let class = &code.code()[..2];
        // connection exceptions, insufficient resources, operator
        // intervention (shutdown, recovery), lock timeouts
        if matches!(class, "08" | "53" | "57")
            || *code == SqlState::LOCK_NOT_AVAILABLE
            || *code == SqlState::QUERY_CANCELED
        {
            return KvError::Unavailable(detail(&e));
        }
        return KvError::Engine(detail(&e));
    }
    // no answer from the server: refused, reset, timed out
    let io = std::error::Error::source(&e).is_some_and(|s| s.is::<std::io::Error>());
    if e.is_closed() || io {
        return KvError::Unavailable(format!("connection lost: {}", detail(&e)));
    }
    KvError::Engine(detail(&e))
}

/// The server's code and message, or the error with its causes (a TLS
/// handshake's says which certificate check failed).
fn detail(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => {
            let mut out = e.to_string();
            let mut cause = std::error::Error::source(e);
            while let Some(c) = cause {
                let text = c.to_string();
                if !out.ends_with(&text) {
                    out = format!("{out}: {text}");
                }
                cause = c.source();
            }
            out
        }
    }
}

fn pool_err(e: PoolError) -> KvError {
    match e {
        PoolError::Backend(e) => pg_err(e),
        other => KvError::Unavailable(format!("no PostgreSQL connection: {other}")),
    }
}

/// The SQL of the store's statements, with the schema in place.
struct Sql {
    get: String,
    get_counter: String,
    conds: String,
    cond_counters: String,
    puts: String,
    deletes: String,
    counter_sets: String,
    counter_adds: String,
    counter_deletes: String,
    locks: String,
    lock_all: String,
    heartbeat: String,
    schema: String,
}

impl Sql {
    fn new(schema: &str) -> Sql {
        let s = format!("\"{schema}\"");
        Sql {
            get: format!("SELECT value FROM {s}.kv WHERE cf = $1 AND key = $2 AND reg = $3"),
            get_counter: format!("SELECT v FROM {s}.counters WHERE key = $1"),
            conds: format!(
                "SELECT cf, key, value FROM {s}.kv WHERE (cf, key, reg) IN \
                 (SELECT * FROM unnest($1::text[], $2::bytea[], $3::bytea[]))"
            ),
            cond_counters: format!("SELECT key, v FROM {s}.counters WHERE key = ANY($1::bytea[])"),
            puts: format!(
                "INSERT INTO {s}.kv (cf, key, reg, value) \
                 SELECT * FROM unnest($1::text[], $2::bytea[], $3::bytea[], $4::bytea[]) \
                 ON CONFLICT (cf, key, reg) DO UPDATE SET value = EXCLUDED.value"
            ),
            deletes: format!(
                "DELETE FROM {s}.kv WHERE (cf, key, reg) IN \
                 (SELECT * FROM unnest($1::text[], $2::bytea[], $3::bytea[]))"
            ),
            counter_sets: format!(
                "INSERT INTO {s}.counters (key, v) SELECT * FROM unnest($1::bytea[], $2::int8[]) \
                 ON CONFLICT (key) DO UPDATE SET v = EXCLUDED.v"
            ),
            counter_adds: format!(
                "INSERT INTO {s}.counters (key, v) SELECT * FROM unnest($1::bytea[], $2::int8[]) \
                 ON CONFLICT (key) DO UPDATE SET v = {s}.counters.v + EXCLUDED.v"
            ),
            counter_deletes: format!("DELETE FROM {s}.counters WHERE key = ANY($1::bytea[])"),
            // the shared cluster-wide lock, then each key's, in the
            // order given (sorted): UNION ALL runs its parts in order
            locks: "SELECT 1 FROM (SELECT pg_advisory_xact_lock_shared($1)) a \
                    UNION ALL SELECT 1 FROM unnest($2::int8[]) k, \
                    LATERAL (SELECT pg_advisory_xact_lock(k)) l"
                .to_string(),
            lock_all: "SELECT pg_advisory_xact_lock($1)".to_string(),
            heartbeat: format!("UPDATE {s}.heartbeat SET n = n + 1 WHERE id = 1"),
            schema: s,
        }
    }

    /// A range read of `kv`: `>= $2` or `> $2` (after a key), below `$3`
    /// when there is an end, in one partition when `reg` is known.
    fn scan(&self, after: bool, end: bool, reg: bool) -> String {
        let s = &self.schema;
        let mut q = format!(
            "SELECT key, value FROM {s}.kv WHERE cf = $1 AND key {} $2",
            if after { ">" } else { ">=" }
        );
        let mut n = 3;
        if end {
            q.push_str(&format!(" AND key < ${n}"));
            n += 1;
        }
        if reg {
            q.push_str(&format!(" AND reg = ${n}"));
            n += 1;
        }
        q.push_str(&format!(" ORDER BY key LIMIT ${n}"));
        q
    }

    fn scan_counters(&self, after: bool, end: bool) -> String {
        let s = &self.schema;
        let mut q = format!(
            "SELECT key, v FROM {s}.counters WHERE key {} $1",
            if after { ">" } else { ">=" }
        );
        let mut n = 2;
        if end {
            q.push_str(&format!(" AND key < ${n}"));
            n += 1;
        }
        q.push_str(&format!(" ORDER BY key LIMIT ${n}"));
        q
    }
}

/// What a batch does to one key, its ops folded in order.
enum Effect {
    Put(Vec<u8>),
    Delete,
    /// Only counters: add to whatever is stored.
    Add(i64),
}

/// Rows of `kv` named as three parallel arrays, the statements' `unnest`.
#[derive(Default)]
struct Keys {
    cfs: Vec<String>,
    keys: Vec<Vec<u8>>,
    regs: Vec<Vec<u8>>,
}

impl Keys {
    fn push(&mut self, cf: Cf, key: Vec<u8>) {
        self.cfs.push(cf.name().to_string());
        self.regs.push(reg_of(cf, &key).to_vec());
        self.keys.push(key);
    }
    fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// A batch as the statements that apply it.
#[derive(Default)]
struct Plan {
    locks: Vec<i64>,
    cond_kv: Keys,
    /// (cf, key) → expected value, for the comparison.
    expect: HashMap<(String, Vec<u8>), Option<Vec<u8>>>,
    cond_counters: Vec<Vec<u8>>,
    expect_counters: HashMap<Vec<u8>, Option<Vec<u8>>>,
    puts: Keys,
    put_values: Vec<Vec<u8>>,
    deletes: Keys,
    counter_sets: (Vec<Vec<u8>>, Vec<i64>),
    counter_adds: (Vec<Vec<u8>>, Vec<i64>),
    counter_deletes: Vec<Vec<u8>>,
    no_sync: bool,
}

impl Plan {
    fn of(batch: Batch) -> Result<Plan, KvError> {
        let mut p = Plan {
            no_sync: batch.no_sync,
            ..Plan::default()
        };
        let mut locks = Vec::with_capacity(batch.conds.len() + batch.ops.len());
        for c in batch.conds {
            locks.push(lock_id(c.cf, &c.key));
            if c.cf == Cf::Counters {
                p.cond_counters.push(c.key.clone());
                p.expect_counters.insert(c.key, c.expect);
            } else {
                p.cond_kv.push(c.cf, c.key.clone());
                p.expect.insert((c.cf.name().to_string(), c.key), c.expect);
            }
        }
        // fold the ops per key, keeping the order keys were first written
        let mut order: Vec<(Cf, Vec<u8>)> = Vec::new();
        let mut effects: HashMap<(Cf, Vec<u8>), Effect> = HashMap::new();
        for op in batch.ops {
            let (cf, key, next) = match op {
                Op::Put(cf, k, v) => (cf, k, Effect::Put(v)),
                Op::Delete(cf, k) => (cf, k, Effect::Delete),
                Op::Add(cf, k, d) => (cf, k, Effect::Add(d)),
            };
            let slot = (cf, key);
            let folded = match (effects.remove(&slot), next) {
                (None, next) => {
                    order.push(slot.clone());
                    next
                }
                (Some(Effect::Put(v)), Effect::Add(d)) => {
                    Effect::Put(counter_bytes(counter_of(cf, &v)?.wrapping_add(d)))
                }
                (Some(Effect::Delete), Effect::Add(d)) => Effect::Put(counter_bytes(d)),
                (Some(Effect::Add(a)), Effect::Add(d)) => Effect::Add(a.wrapping_add(d)),
                (Some(_), next) => next,
            };
            effects.insert(slot, folded);
        }
        for (cf, key) in order {
            let effect = effects.remove(&(cf, key.clone())).expect("folded");
            locks.push(lock_id(cf, &key));
            match (cf, effect) {
                (Cf::Counters, Effect::Put(v)) => {
                    p.counter_sets.1.push(counter_of(cf, &v)?);
                    p.counter_sets.0.push(key);
                }
                (Cf::Counters, Effect::Add(d)) => {
                    p.counter_adds.0.push(key);
                    p.counter_adds.1.push(d);
                }
                (Cf::Counters, Effect::Delete) => p.counter_deletes.push(key),
                (cf, Effect::Put(v)) => {
                    p.puts.push(cf, key);
                    p.put_values.push(v);
                }
                (cf, Effect::Delete) => p.deletes.push(cf, key),
                (cf, Effect::Add(_)) => {
                    return Err(KvError::Engine(format!(
                        "an add to {}: only counters are added to",
                        cf.name()
                    )))
                }
            }
        }
        locks.sort_unstable();
        locks.dedup();
        p.locks = locks;
        Ok(p)
    }
}

/// The PostgreSQL engine (see the module docs).
pub struct PgStore {
    rt: Option<tokio::runtime::Runtime>,
    pool: Pool,
    sql: std::sync::Arc<Sql>,
    sync: bool,
}

impl Drop for PgStore {
    fn drop(&mut self) {
        // may be dropped on an async thread, where a blocking shutdown
        // would panic
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

impl PgStore {
    /// Connect, create the schema and apply the migrations it lacks.
    pub fn connect(s: &PgSettings) -> Result<PgStore, KvError> {
        if !valid_schema(&s.schema) {
            return Err(KvError::Engine(format!(
                "schema {:?}: lowercase letters, digits and _, not starting with a digit, at most 63",
                s.schema
            )));
        }
        let mut cfg: tokio_postgres::Config = s
            .url
            .parse()
            .map_err(|e| KvError::Engine(format!("PostgreSQL URL: {e}")))?;
        cfg.application_name("berth");
        if cfg.get_connect_timeout().is_none() {
            cfg.connect_timeout(s.connect_timeout);
        }
        if !s.sync {
            cfg.options("-c synchronous_commit=off");
        }
        // before the runtime: dropping one on an error path would panic
        // in a caller's async context
        let tls = tls_for(&mut cfg, s.ca_file.as_deref())?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("berth-pg")
            .enable_all()
            .build()
            .map_err(|e| KvError::Engine(format!("PostgreSQL client runtime: {e}")))?;
        let mgr_cfg = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let mgr = match tls {
            Some(tls) => Manager::from_config(cfg, tls, mgr_cfg),
            None => Manager::from_config(cfg, NoTls, mgr_cfg),
        };
        let built = {
            let _in_rt = rt.enter();
            Pool::builder(mgr)
                .max_size(s.pool_size.max(1))
                .runtime(deadpool_postgres::Runtime::Tokio1)
                .wait_timeout(Some(s.connect_timeout))
                .create_timeout(Some(s.connect_timeout))
                .recycle_timeout(Some(s.connect_timeout))
                .build()
                .map_err(|e| KvError::Engine(format!("PostgreSQL pool: {e}")))
        };
        let pool = match built {
            Ok(p) => p,
            Err(e) => {
                // not dropped in place: that panics in an async context
                rt.shutdown_background();
                return Err(e);
            }
        };
        let store = PgStore {
            rt: Some(rt),
            pool,
            sql: std::sync::Arc::new(Sql::new(&s.schema)),
            sync: s.sync,
        };
        store.migrate()?;
        Ok(store)
    }

    /// Run a query future on the store's runtime and wait for it.
    fn block<T: Send + 'static>(
        &self,
        f: impl Future<Output = Result<T, KvError>> + Send + 'static,
    ) -> Result<T, KvError> {
        let rt = self.rt.as_ref().expect("runtime until dropped");
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        rt.spawn(async move {
            let _ = tx.send(f.await);
        });
        rx.recv()
            .map_err(|_| KvError::Unavailable("PostgreSQL client runtime stopped".into()))?
    }

    /// The schema's version after [`PgStore::connect`] (the last migration).
    pub fn schema_version(&self) -> Result<i32, KvError> {
        let (pool, sql) = (self.pool.clone(), self.sql.clone());
        self.block(async move {
            let c = pool.get().await.map_err(pool_err)?;
            let q = format!("SELECT max(version) FROM {}.berth_migrations", sql.schema);
            let row = c.query_one(&q, &[]).await.map_err(pg_err)?;
            Ok(row.get::<_, Option<i32>>(0).unwrap_or(0))
        })
    }

    fn migrate(&self) -> Result<(), KvError> {
        let (pool, sql) = (self.pool.clone(), self.sql.clone());
        self.block(async move {
            let mut c = pool.get().await.map_err(pool_err)?;
            let s = sql.schema.clone();
            // one replica migrates; the others wait, then find it done
            c.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
                .await
                .map_err(pg_err)?;
            let out = async {
                c.batch_execute(&format!(
                    "CREATE SCHEMA IF NOT EXISTS {s};
                     CREATE TABLE IF NOT EXISTS {s}.berth_migrations (
                        version int4 PRIMARY KEY,
                        name text NOT NULL,
                        applied_at timestamptz NOT NULL DEFAULT now())"
                ))
                .await
                .map_err(pg_err)?;
                let have: i32 = c
                    .query_one(
                        &format!("SELECT coalesce(max(version), 0) FROM {s}.berth_migrations"),
                        &[],
                    )
                    .await
                    .map_err(pg_err)?
                    .get(0);
                let known = MIGRATIONS.last().map(|m| m.0).unwrap_or(0);
                if have > known {
                    return Err(KvError::Engine(format!(
                        "schema {s} is at version {have}, newer than this Berth knows ({known}): \
                         run a newer Berth"
                    )));
                }
                for (version, name, body) in MIGRATIONS.iter().filter(|m| m.0 > have) {
                    let partitions: String = (0..PARTITIONS)
                        .map(|i| {
                            format!(
                                "CREATE TABLE {s}.kv_p{i:02} PARTITION OF {s}.kv \
                                 FOR VALUES WITH (MODULUS {PARTITIONS}, REMAINDER {i});\n"
                            )
                        })
                        .collect();
                    let body = body.replace("{partitions}", &partitions).replace("{s}", &s);
                    let tx = c.transaction().await.map_err(pg_err)?;
                    tx.batch_execute(&body).await.map_err(pg_err)?;
                    tx.execute(
                        &format!(
                            "INSERT INTO {s}.berth_migrations (version, name) VALUES ($1, $2)"
                        ),
                        &[version, name],
                    )
                    .await
                    .map_err(pg_err)?;
                    tx.commit().await.map_err(pg_err)?;
                    tracing::info!(schema = %s, version, name, "metadata schema migrated");
                }
                Ok(())
            }
            .await;
            let unlocked = c
                .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
                .await
                .map_err(pg_err);
            out.and(unlocked.map(|_| ()))
        })
    }
}

async fn apply(pool: Pool, sql: std::sync::Arc<Sql>, p: Plan, sync: bool) -> Result<(), KvError> {
    let mut c = pool.get().await.map_err(pool_err)?;
    let tx = c.transaction().await.map_err(pg_err)?;
    if sync && p.no_sync {
        tx.batch_execute("SET LOCAL synchronous_commit = off")
            .await
            .map_err(pg_err)?;
    }
    if p.locks.len() > MAX_KEY_LOCKS {
        tx.execute(&sql.lock_all, &[&ALL_KEYS_LOCK])
            .await
            .map_err(pg_err)?;
    } else {
        tx.execute(&sql.locks, &[&ALL_KEYS_LOCK, &p.locks])
            .await
            .map_err(pg_err)?;
    }
    if !p.cond_kv.is_empty() {
        let c = &p.cond_kv;
        let rows = tx
            .query(&sql.conds, &[&c.cfs, &c.keys, &c.regs])
            .await
            .map_err(pg_err)?;
        let mut found: HashMap<(String, Vec<u8>), Vec<u8>> = rows
            .into_iter()
            .map(|r| ((r.get(0), r.get(1)), r.get(2)))
            .collect();
        for (k, expect) in &p.expect {
            if found.remove(k) != *expect {
                return Err(KvError::Conflict);
            }
        }
    }
    if !p.cond_counters.is_empty() {
        let rows = tx
            .query(&sql.cond_counters, &[&p.cond_counters])
            .await
            .map_err(pg_err)?;
        let mut found: HashMap<Vec<u8>, Vec<u8>> = rows
            .into_iter()
            .map(|r| (r.get(0), counter_bytes(r.get(1))))
            .collect();
        for (k, expect) in &p.expect_counters {
            if found.remove(k) != *expect {
                return Err(KvError::Conflict);
            }
        }
    }
    if !p.puts.is_empty() {
        let k = &p.puts;
        let params: [&(dyn ToSql + Sync); 4] = [&k.cfs, &k.keys, &k.regs, &p.put_values];
        tx.execute(&sql.puts, &params).await.map_err(pg_err)?;
    }
    if !p.deletes.is_empty() {
        let k = &p.deletes;
        tx.execute(&sql.deletes, &[&k.cfs, &k.keys, &k.regs])
            .await
            .map_err(pg_err)?;
    }
    if !p.counter_sets.0.is_empty() {
        tx.execute(&sql.counter_sets, &[&p.counter_sets.0, &p.counter_sets.1])
            .await
            .map_err(pg_err)?;
    }
    if !p.counter_adds.0.is_empty() {
        tx.execute(&sql.counter_adds, &[&p.counter_adds.0, &p.counter_adds.1])
            .await
            .map_err(pg_err)?;
    }
    if !p.counter_deletes.is_empty() {
        tx.execute(&sql.counter_deletes, &[&p.counter_deletes])
            .await
            .map_err(pg_err)?;
    }
    tx.commit().await.map_err(|e| match pg_err(e) {
        // the COMMIT was sent: whether it applied is not known
        KvError::Unavailable(m) => KvError::Engine(format!(
            "{m} (while committing: the write may or may not have been applied)"
        )),
        other => other,
    })
}

impl KvStore for PgStore {
    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>, KvError> {
        let (pool, sql, key) = (self.pool.clone(), self.sql.clone(), key.to_vec());
        self.block(async move {
            let c = pool.get().await.map_err(pool_err)?;
            if cf == Cf::Counters {
                let st = c.prepare_cached(&sql.get_counter).await.map_err(pg_err)?;
                let row = c.query_opt(&st, &[&key]).await.map_err(pg_err)?;
                return Ok(row.map(|r| counter_bytes(r.get(0))));
            }
            let st = c.prepare_cached(&sql.get).await.map_err(pg_err)?;
            let reg = reg_of(cf, &key).to_vec();
            let row = c
                .query_opt(&st, &[&cf.name(), &key, &reg])
                .await
                .map_err(pg_err)?;
            Ok(row.map(|r| r.get(0)))
        })
    }

    fn scan(
        &self,
        cf: Cf,
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Rows, KvError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let (pool, sql) = (self.pool.clone(), self.sql.clone());
        let lower = start_after.unwrap_or(prefix).to_vec();
        let after = start_after.is_some();
        let end = prefix_end(prefix);
        let reg = reg_of_prefix(cf, prefix).map(<[u8]>::to_vec);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.block(async move {
            let c = pool.get().await.map_err(pool_err)?;
            if cf == Cf::Counters {
                let st = c
                    .prepare_cached(&sql.scan_counters(after, end.is_some()))
                    .await
                    .map_err(pg_err)?;
                let mut params: Vec<&(dyn ToSql + Sync)> = vec![&lower];
                if let Some(e) = &end {
                    params.push(e);
                }
                params.push(&limit);
                let rows = c.query(&st, &params).await.map_err(pg_err)?;
                return Ok(rows
                    .into_iter()
                    .map(|r| (r.get(0), counter_bytes(r.get(1))))
                    .collect());
            }
            let st = c
                .prepare_cached(&sql.scan(after, end.is_some(), reg.is_some()))
                .await
                .map_err(pg_err)?;
            let name = cf.name();
            let mut params: Vec<&(dyn ToSql + Sync)> = vec![&name, &lower];
            if let Some(e) = &end {
                params.push(e);
            }
            if let Some(r) = &reg {
                params.push(r);
            }
            params.push(&limit);
            let rows = c.query(&st, &params).await.map_err(pg_err)?;
            Ok(rows.into_iter().map(|r| (r.get(0), r.get(1))).collect())
        })
    }

    fn write(&self, batch: Batch) -> Result<(), KvError> {
        if batch.ops.is_empty() && batch.conds.is_empty() {
            return Ok(());
        }
        let plan = Plan::of(batch)?;
        let (pool, sql, sync) = (self.pool.clone(), self.sql.clone(), self.sync);
        self.block(apply(pool, sql, plan, sync))
    }

    fn flush(&self) -> Result<(), KvError> {
        if !self.sync {
            return Ok(());
        }
        // A flushed commit flushes the log up to it, and so every
        // unflushed commit before it.
        let (pool, sql) = (self.pool.clone(), self.sql.clone());
        self.block(async move {
            let c = pool.get().await.map_err(pool_err)?;
            c.execute(&sql.heartbeat, &[]).await.map_err(pg_err)?;
            Ok(())
        })
    }

    fn inline_reads(&self) -> bool {
        false
    }

    fn stats(&self) -> Vec<(String, f64)> {
        let st = self.pool.status();
        vec![
            ("pg_pool_connections".into(), st.size as f64),
            ("pg_pool_idle".into(), st.available as f64),
            ("pg_pool_waiting".into(), st.waiting as f64),
            ("pg_pool_max".into(), st.max_size as f64),
        ]
    }
}

#[cfg(test)]
mod contract_tests {
    // against a real PostgreSQL (berth-pgtest), a schema per case
    crate::contract_suite!(|| {
        let s = super::PgSettings::new(
            berth_pgtest::server().url(),
            berth_pgtest::fresh_schema("contract"),
        );
        (super::PgStore::connect(&s).unwrap(), ())
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Meta;

    fn settings(tag: &str) -> PgSettings {
        PgSettings::new(
            berth_pgtest::server().url(),
            berth_pgtest::fresh_schema(tag),
        )
    }

    impl PgStore {
        /// A query's rows as text (tests look at the tables directly).
        fn rows(&self, q: &str) -> Vec<Vec<String>> {
            let (pool, q) = (self.pool.clone(), q.replace("{s}", &self.sql.schema));
            self.block(async move {
                let c = pool.get().await.map_err(pool_err)?;
                let rows = c.simple_query(&q).await.map_err(pg_err)?;
                Ok(rows
                    .into_iter()
                    .filter_map(|m| match m {
                        tokio_postgres::SimpleQueryMessage::Row(r) => Some(
                            (0..r.len())
                                .map(|i| r.get(i).unwrap_or("").to_string())
                                .collect(),
                        ),
                        _ => None,
                    })
                    .collect())
            })
            .unwrap()
        }
    }

    #[test]
    fn migrations_run_once_and_a_newer_schema_is_refused() {
        let s = settings("migrate");
        // replicas starting together: all connect, the tables made once
        std::thread::scope(|t| {
            for _ in 0..4 {
                t.spawn(|| PgStore::connect(&s).unwrap());
            }
        });
        let store = PgStore::connect(&s).unwrap();
        assert_eq!(
            store.schema_version().unwrap(),
            MIGRATIONS.last().unwrap().0
        );
        assert_eq!(
            store.rows("SELECT count(*) FROM {s}.berth_migrations"),
            vec![vec![MIGRATIONS.len().to_string()]]
        );
        store.rows("INSERT INTO {s}.berth_migrations (version, name) VALUES (9999, 'future')");
        let e = PgStore::connect(&s)
            .err()
            .expect("a newer schema is refused");
        assert!(e.to_string().contains("version 9999"), "{e}");
    }

    #[test]
    fn a_registry_lives_in_one_partition() {
        let store = PgStore::connect(&settings("partition")).unwrap();
        let mut b = Batch::new();
        for r in ["acme", "beta", "gamma"] {
            b.put(Cf::Registries, r, "{}");
            b.put(Cf::Users, format!("{r}\0ci"), "{}");
            for i in 0..20 {
                b.put(Cf::Repos, format!("{r}/app{i}"), "{}");
                b.put(Cf::Tags, format!("{r}/app{i}\0latest"), "{}");
            }
        }
        b.put(Cf::Blobs, "sha256:00", "{}");
        store.write(b).unwrap();
        for r in ["acme", "beta", "gamma"] {
            let parts = store.rows(&format!(
                "SELECT DISTINCT tableoid::regclass::text FROM {{s}}.kv WHERE reg = '\\x{}'",
                r.bytes().map(|b| format!("{b:02x}")).collect::<String>()
            ));
            assert_eq!(parts.len(), 1, "{r}'s rows in one partition: {parts:?}");
            assert_eq!(
                store.rows(&format!(
                    "SELECT count(*) FROM {{s}}.kv WHERE reg = '\\x{}'",
                    r.bytes().map(|b| format!("{b:02x}")).collect::<String>()
                )),
                vec![vec!["42".to_string()]]
            );
        }
        // a listing across registries still comes back in key order
        let keys: Vec<Vec<u8>> = store
            .scan(Cf::Repos, b"", None, 1000)
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(keys.len(), 60);
        assert!(keys.windows(2).all(|w| w[0] < w[1]));
        let page = store
            .scan(Cf::Repos, b"beta/", Some(b"beta/app3"), 2)
            .unwrap();
        assert_eq!(page[0].0, b"beta/app4".to_vec());
    }

    #[test]
    fn two_replicas_never_lose_an_increment() {
        // two stores, two pools: what two Berth processes are
        let s = settings("replicas");
        let (a, b) = (
            Meta::new(PgStore::connect(&s).unwrap()),
            Meta::new(PgStore::connect(&s).unwrap()),
        );
        let bump = |m: &Meta| {
            m.transact(|tx| {
                let n = tx
                    .get(Cf::Settings, b"n")?
                    .map(|v| u64::from_le_bytes(v.try_into().unwrap()))
                    .unwrap_or(0);
                tx.put(Cf::Settings, b"n".to_vec(), (n + 1).to_le_bytes().to_vec());
                tx.add(Cf::Counters, b"adds".to_vec(), 1);
                Ok::<_, crate::MetaError>(())
            })
            .unwrap()
        };
        std::thread::scope(|t| {
            for i in 0..8 {
                let m = if i % 2 == 0 { &a } else { &b };
                t.spawn(move || (0..25).for_each(|_| bump(m)));
            }
        });
        let n = b.kv().get(Cf::Settings, b"n").unwrap().unwrap();
        assert_eq!(u64::from_le_bytes(n.try_into().unwrap()), 200);
        assert_eq!(a.counter("adds").unwrap(), 200);
    }

    #[test]
    fn large_batches_take_the_whole_store_and_stay_atomic() {
        let store = PgStore::connect(&settings("large")).unwrap();
        // writers of 300-key batches (past MAX_KEY_LOCKS) against writers
        // of one key inside them, each conditional on what it read
        std::thread::scope(|t| {
            for w in 0..3u8 {
                let store = &store;
                t.spawn(move || {
                    for round in 0..5u8 {
                        loop {
                            let now = store.get(Cf::Tags, b"r/a\0k000").unwrap();
                            let mut b = Batch::new();
                            b.expect(Cf::Tags, "r/a\0k000", now);
                            for i in 0..300 {
                                b.put(Cf::Tags, format!("r/a\0k{i:03}"), vec![w, round]);
                            }
                            match store.write(b) {
                                Ok(()) => break,
                                Err(KvError::Conflict) => continue,
                                Err(e) => panic!("{e}"),
                            }
                        }
                    }
                });
            }
            for _ in 0..2 {
                let store = &store;
                t.spawn(move || {
                    for _ in 0..30 {
                        let now = store.get(Cf::Tags, b"r/a\0k150").unwrap();
                        let mut b = Batch::new();
                        b.expect(Cf::Tags, "r/a\0k150", now);
                        b.put(Cf::Tags, "r/a\0k150", vec![9, 9]);
                        match store.write(b) {
                            Ok(()) | Err(KvError::Conflict) => {}
                            Err(e) => panic!("{e}"),
                        }
                    }
                });
            }
        });
        // every large batch applied whole: all 300 rows but k150 agree
        let rows = store.scan(Cf::Tags, b"r/a\0", None, 1000).unwrap();
        assert_eq!(rows.len(), 300);
        let first = rows[0].1.clone();
        assert!(rows
            .iter()
            .filter(|(k, _)| k.as_slice() != b"r/a\0k150")
            .all(|(_, v)| *v == first));
    }

    #[test]
    fn an_unreachable_server_is_unavailable() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let s = PgSettings {
            connect_timeout: Duration::from_secs(2),
            ..PgSettings::new(format!("postgres://berth@127.0.0.1:{port}/x"), "berth")
        };
        match PgStore::connect(&s) {
            Err(e @ KvError::Unavailable(_)) => assert!(e.is_retryable()),
            Err(e) => panic!("expected Unavailable, got {e}"),
            Ok(_) => panic!("nothing listens there"),
        }
    }

    #[test]
    fn partition_values_and_prefix_ends() {
        assert_eq!(reg_of(Cf::Repos, b"acme/app"), b"acme");
        assert_eq!(reg_of(Cf::Users, b"acme\0ci"), b"acme");
        assert_eq!(reg_of(Cf::Registries, b"acme"), b"acme");
        assert_eq!(reg_of(Cf::Blobs, b"sha256:ab"), b"");
        assert_eq!(reg_of_prefix(Cf::Repos, b"acme/"), Some(&b"acme"[..]));
        assert_eq!(reg_of_prefix(Cf::Registries, b"ac"), None);
        assert_eq!(reg_of_prefix(Cf::Tokens, b""), Some(&b""[..]));
        assert!(valid_schema("berth") && valid_schema("t_1"));
        assert!(!valid_schema("Berth") && !valid_schema("1x") && !valid_schema("a;b"));
    }

    #[test]
    fn ops_fold_per_key_in_order() {
        let mut b = Batch::new();
        b.add(Cf::Counters, "c", 2);
        b.add(Cf::Counters, "c", 3);
        b.put(Cf::Counters, "d", 7i64.to_le_bytes().to_vec());
        b.add(Cf::Counters, "d", 1);
        b.delete(Cf::Counters, "e");
        b.add(Cf::Counters, "e", 4);
        b.put(Cf::Repos, "a/x", "1");
        b.delete(Cf::Repos, "a/x");
        b.delete(Cf::Tags, "a/x\0t");
        b.put(Cf::Tags, "a/x\0t", "2");
        let p = Plan::of(b).unwrap();
        assert_eq!(p.counter_adds, (vec![b"c".to_vec()], vec![5]));
        assert_eq!(
            p.counter_sets,
            (vec![b"d".to_vec(), b"e".to_vec()], vec![8, 4])
        );
        assert_eq!(p.deletes.keys, vec![b"a/x".to_vec()]);
        assert_eq!(p.puts.keys, vec![b"a/x\0t".to_vec()]);
        assert_eq!(p.puts.regs, vec![b"a".to_vec()]);
        assert_eq!(p.locks.len(), 5);
        assert!(p.locks.windows(2).all(|w| w[0] < w[1]));
    }
}
