//! Every column family, named once (tikv's `cf_defs.rs` idea).
//!
//! Keys that hold a repository name put a `0x00` byte after it: no valid
//! repository name, tag or digest contains one, so `repo\0…` prefixes never
//! collide (`a` vs `a/b`) and each repository's entries sort together.

/// A column family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Cf {
    /// `repo` → [`crate::RepoRecord`]
    Repos,
    /// `repo \0 digest` → manifest record header + body
    Manifests,
    /// `repo \0 tag` → [`crate::TagRecord`]
    Tags,
    /// `repo \0 digest \0 tag` → `` (which tags point at a manifest)
    TagsByDigest,
    /// `repo \0 digest` → [`crate::LinkRecord`] (blobs a repository may serve)
    Links,
    /// `digest` → [`crate::BlobRecord`] (blobs stored in the instance)
    Blobs,
    /// `digest \0 repo` → `` (which repositories link a blob: the reverse
    /// of `links`, for garbage collection and accounting)
    BlobRepos,
    /// `repo \0 target digest \0 manifest digest` → `b` (config or layer)
    /// or `m` (index child): which manifests reference a blob or manifest
    Refs,
    /// `repo \0 subject \0 digest` → [`crate::ReferrerRecord`]
    Referrers,
    /// `session id` → [`crate::UploadRecord`]
    Uploads,
    /// `registry name` → [`crate::RegistryRecord`] (tenants)
    Registries,
    /// `registry \0 user name` → [`crate::UserRecord`]
    Users,
    /// `token id` → [`crate::TokenRecord`]
    Tokens,
    /// `name` → value: instance-wide settings (the admin token's hash)
    Settings,
    /// `name` → little-endian `i64`, changed only by blind adds
    /// ([`crate::Op::Add`]): stored blobs and bytes, manifests,
    /// repositories, registries
    Counters,
    /// `registry \0 digest` → little-endian `i64`: how many repositories of
    /// the registry link the blob (its bytes count once in the registry's
    /// usage while this is above zero). Read with `get` and rewritten.
    RegistryBlobs,
    /// `repo \0 tag \0 {!ms:016x}{!seq:08x}{process:04x}` → [`crate::TagEvent`]: every
    /// move of a tag, newest first.
    TagHistory,
    /// `repo` and `repo \0 digest` → little-endian `u64` milliseconds: when
    /// the repository or manifest was last pulled (blind puts).
    PulledAt,
    /// `{!ms:016x}{!seq:08x}{process:04x}` → [`crate::AuditRecord`]: changes made
    /// through the APIs, newest first.
    Audit,
    /// `digest` → u64 LE ms: blobs whose records garbage collection has
    /// removed and whose bytes it is deleting; a new record of one waits.
    Deleting,
    /// `a \0 scope` → [`crate::GcRun`] (the active run of a scope: `*` or
    /// a registry) and `r \0 {!ms:016x} id` → [`crate::GcRun`] (every run,
    /// newest first).
    GcRuns,
    /// `registry` → the registry's tag rules (`rules.rs`), one record
    /// rewritten whole: every tag change reads it as a condition.
    TagRules,
    /// `repo \0 m \0 digest` → [`crate::BinnedManifest`] + body, and
    /// `repo \0 t \0 digest \0 tag` → [`crate::BinnedTag`]: the recycle bin
    /// (`bin.rs`).
    Bin,
    /// `registry \0 id` → [`crate::CleanupPolicy`]
    CleanupPolicies,
    /// `registry \0 run id` → [`crate::CleanupRun`]
    CleanupRuns,
    /// `principal \0 session id` → ``: the open upload sessions of each
    /// principal (their count is the counter `uploads/owner/<principal>`;
    /// a `principal` row alone is a guard older versions wrote, unused).
    UploadOwners,
    /// `registry id \0 {ms:016x}` → [`crate::UsageSample`]: storage use
    /// over time, one sample per interval (`usage.rs`).
    UsageHistory,
}

impl Cf {
    pub const ALL: [Cf; 27] = [
        Cf::Repos,
        Cf::Manifests,
        Cf::Tags,
        Cf::TagsByDigest,
        Cf::Links,
        Cf::Blobs,
        Cf::BlobRepos,
        Cf::Refs,
        Cf::Referrers,
        Cf::Uploads,
        Cf::Registries,
        Cf::Users,
        Cf::Tokens,
        Cf::Settings,
        Cf::Counters,
        Cf::RegistryBlobs,
        Cf::TagHistory,
        Cf::PulledAt,
        Cf::Audit,
        Cf::Deleting,
        Cf::GcRuns,
        Cf::TagRules,
        Cf::Bin,
        Cf::CleanupPolicies,
        Cf::CleanupRuns,
        Cf::UploadOwners,
        Cf::UsageHistory,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Cf::Repos => "repos",
            Cf::Manifests => "manifests",
            Cf::Tags => "tags",
            Cf::TagsByDigest => "tags_by_digest",
            Cf::Links => "links",
            Cf::Blobs => "blobs",
            Cf::BlobRepos => "blob_repos",
            Cf::Refs => "refs",
            Cf::Referrers => "referrers",
            Cf::Uploads => "uploads",
            Cf::Registries => "registries",
            Cf::Users => "users",
            Cf::Tokens => "tokens",
            Cf::Settings => "settings",
            Cf::Counters => "counters",
            Cf::RegistryBlobs => "registry_blobs",
            Cf::TagHistory => "tag_history",
            Cf::PulledAt => "pulled_at",
            Cf::Audit => "audit",
            Cf::Deleting => "deleting",
            Cf::GcRuns => "gc_runs",
            Cf::TagRules => "tag_rules",
            Cf::Bin => "bin",
            Cf::CleanupPolicies => "cleanup_policies",
            Cf::CleanupRuns => "cleanup_runs",
            Cf::UploadOwners => "upload_owners",
            Cf::UsageHistory => "usage_history",
        }
    }
}
