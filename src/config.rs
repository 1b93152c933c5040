//! Configuration: built-in defaults, `flo.toml`, and command-line flags, in that order of
//! precedence (flags win).
//!
//! The documented default file is `flo.toml` at the repository root; it is embedded here
//! (`DEFAULT_TOML`) so `flo server start --default-config` prints exactly it, and a unit test
//! checks that parsing it yields [`Config::default`] — the document and the code cannot drift.
//!
//! Invariants after [`Config::validate`]: `shards >= 1`, `partitions >= shards`, ports differ,
//! `bind` is an IP address, every auth digest is 32 bytes, auth enabled implies at least one
//! token. Errors name the key they are about and fit on one line.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

/// The commented default configuration (the repository's `flo.toml`).
pub const DEFAULT_TOML: &str = include_str!("../flo.toml");

/// Upper bound on `shards`; a shard is an OS thread with its own io_uring.
pub const SHARDS_MAX: usize = 1024;
/// Upper bound on `partitions`.
pub const PARTITIONS_MAX: u32 = 65536;

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address the API and metrics listeners bind to.
    pub bind: String,
    /// API port (the seed's name for it).
    pub dashboard_port: u16,
    /// Prometheus metrics port.
    pub metrics_port: u16,
    /// Where the shards keep their logs.
    pub data_dir: PathBuf,
    /// Number of shards; 0 means one per CPU.
    pub shards: usize,
    /// Number of partitions objects hash into (fixed for a data directory's life).
    pub partitions: u32,
    /// This node's id, reported by status and cluster endpoints.
    pub node_id: u64,
    /// When a mutation is acknowledged: after fdatasync (`sync`) or after the write (`async`).
    pub durability: Durability,
    /// Pin each shard's thread to one CPU.
    pub pin_shards: bool,
    pub http: HttpConfig,
    pub log: LogConfig,
    pub limits: LimitsConfig,
    pub kv: KvSection,
    pub queue: QueueSection,
    pub ts: TsSection,
    pub auth: AuthConfig,
    pub logging: LoggingConfig,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct KvSection {
    /// How long the record of a deleted or expired key is kept after the delete or expiry: a
    /// stale CAS keeps failing that long, and a key written again continues after the old
    /// version; once the record is gone, a key written again starts at version 1.
    pub tombstone_retention_ms: u64,
}

impl Default for KvSection {
    fn default() -> Self {
        KvSection {
            tombstone_retention_ms: 60_000,
        }
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct QueueSection {
    /// Leases of one message before it moves to the dead-letter queue.
    pub max_deliveries: u32,
    /// How long a `dedup_key` keeps answering with the original message.
    pub dedup_window_ms: u64,
}

impl Default for QueueSection {
    fn default() -> Self {
        QueueSection {
            max_deliveries: 5,
            dedup_window_ms: 300_000,
        }
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TsSection {
    /// A series' head not full after this long (since its first point arrived) is cut into a
    /// chunk anyway.
    pub head_age_ms: u64,
}

impl Default for TsSection {
    fn default() -> Self {
        TsSection {
            head_age_ms: crate::ts::series::HEAD_AGE_MS,
        }
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest KV value, after base64 decoding (413 beyond).
    pub max_value_bytes: u64,
    /// Long-polling readers (KV waits and watches) one shard keeps at once; more get 429.
    pub max_waiters_per_shard: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_value_bytes: 1024 * 1024,
            max_waiters_per_shard: 10_000,
        }
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// Size of each preallocated segment file.
    pub segment_bytes: u64,
    /// Largest group-commit batch; appends beyond it wait for the next one (429 when full).
    pub batch_max_bytes: u64,
    /// `async` durability: how often written entries are made durable.
    pub flush_interval_ms: u64,
    /// `sync` durability: at most how long a batch smaller than the last one waits for more
    /// entries before it is written, bounded by how long the last sync took (0: never waits).
    pub commit_wait_us: u64,
    /// A shard snapshots its state after this many bytes of log since its last snapshot
    /// (0: only at clean shutdown). Bounds how much log recovery replays.
    pub snapshot_bytes: u64,
    /// Sealed segments whose live bytes are below this percentage of their entries are
    /// compacted (0 disables compaction).
    pub compact_live_percent: u64,
    /// The scrub reads every sealed segment and snapshot once the shard has recovered, then
    /// every this many seconds (0: never), and logs and counts damage it finds.
    pub scrub_interval_s: u64,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 64 * 1024 * 1024,
            batch_max_bytes: 4 * 1024 * 1024,
            flush_interval_ms: 5,
            commit_wait_us: 1000,
            snapshot_bytes: 256 * 1024 * 1024,
            compact_live_percent: 50,
            scrub_interval_s: 24 * 3600,
        }
    }
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    Sync,
    Async,
}

impl Durability {
    pub fn as_str(self) -> &'static str {
        match self {
            Durability::Sync => "sync",
            Durability::Async => "async",
        }
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Largest request body accepted (413 beyond, answered before the body is read).
    pub max_body_bytes: u64,
    /// Request-body bytes buffered across all connections; a body that would exceed it is 429.
    pub max_buffered_body_bytes: u64,
    /// A request's head and body must arrive within this time (408 and close otherwise).
    pub request_timeout_ms: u64,
    /// Keep-alive connections with no request in progress are closed after this time.
    pub idle_timeout_ms: u64,
    /// Open API connections across all shards; beyond it a new connection gets 429.
    pub max_connections: u64,
    /// Commands another shard may have queued for one shard before it answers 429.
    pub inbox_capacity: usize,
    /// Writes one shard's connections may have in progress at once; more are answered 429 at
    /// once (see `server::admission`).
    pub max_writes_in_flight: usize,
    /// How long a stopping server lets in-flight requests finish.
    pub shutdown_grace_ms: u64,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Require `Authorization: Bearer <token>` on `/api/v1/*` and the metrics port.
    pub enabled: bool,
    /// SHA-256 hex digests of tokens with full access.
    pub token_sha256: Vec<String>,
    /// Scoped tokens.
    pub tokens: Vec<ScopedTokenConfig>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ScopedTokenConfig {
    pub sha256: String,
    /// Namespaces the token may touch; absent means all.
    #[serde(default)]
    pub namespaces: Option<Vec<String>>,
    /// Reads only (GET, HEAD and time-series queries).
    #[serde(default)]
    pub read_only: bool,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LoggingConfig {
    /// A level (`error`..`trace`) or a tracing filter directive (`info,flo::http=debug`).
    pub level: String,
    pub format: LogFormat,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            bind: "127.0.0.1".into(),
            dashboard_port: 9002,
            metrics_port: 9001,
            data_dir: PathBuf::from("./data"),
            shards: 0,
            partitions: 64,
            node_id: 1,
            durability: Durability::Sync,
            pin_shards: true,
            http: HttpConfig::default(),
            log: LogConfig::default(),
            limits: LimitsConfig::default(),
            kv: KvSection::default(),
            queue: QueueSection::default(),
            ts: TsSection::default(),
            auth: AuthConfig::default(),
            logging: LoggingConfig::default(),
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            max_body_bytes: 32 * 1024 * 1024,
            max_buffered_body_bytes: 1024 * 1024 * 1024,
            request_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
            max_connections: 10_000,
            inbox_capacity: 4096,
            max_writes_in_flight: 10_000,
            shutdown_grace_ms: 10_000,
        }
    }
}

impl Default for LoggingConfig {
    fn default() -> Self {
        LoggingConfig {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

/// A configuration error: the key it is about and what is wrong. Displays as one line.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    pub key: String,
    pub message: String,
    pub file: Option<PathBuf>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let message = self.message.replace('\n', " ");
        match &self.file {
            Some(p) => write!(f, "config error in {}: {}: {}", p.display(), self.key, message),
            None => write!(f, "config error: {}: {}", self.key, message),
        }
    }
}

impl std::error::Error for ConfigError {}

fn err(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.to_string(),
        message: message.into(),
        file: None,
    }
}

/// Values given on the command line; `None` leaves the file's (or default) value.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub data_dir: Option<PathBuf>,
    pub bind: Option<String>,
    pub dashboard_port: Option<u16>,
    pub metrics_port: Option<u16>,
    pub shards: Option<usize>,
    pub partitions: Option<u32>,
    pub durability: Option<Durability>,
    pub auth: bool,
    pub log_level: Option<String>,
    pub log_format: Option<LogFormat>,
}

impl Config {
    /// Parses a TOML document; the error names the offending key.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let de = toml::Deserializer::new(text);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            // toml's messages carry a multi-line excerpt; keep the first line of the
            // message proper, and say where a syntax error is.
            let mut message = inner.message().lines().next().unwrap_or("invalid").to_string();
            let key = if path == "." || path.is_empty() {
                if let Some(span) = inner.span() {
                    let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
                    message = format!("line {line}: {message}");
                }
                "(syntax)".to_string()
            } else {
                path
            };
            err(&key, message)
        })
    }

    /// Reads and parses a config file.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            key: "--config".into(),
            message: format!("cannot read {}: {e}", path.display()),
            file: None,
        })?;
        Config::from_toml(&text).map_err(|mut e| {
            e.file = Some(path.to_path_buf());
            e
        })
    }

    /// Applies command-line values over this configuration.
    pub fn apply(&mut self, o: &Overrides) {
        if let Some(v) = &o.data_dir {
            self.data_dir = v.clone();
        }
        if let Some(v) = &o.bind {
            self.bind = v.clone();
        }
        if let Some(v) = o.dashboard_port {
            self.dashboard_port = v;
        }
        if let Some(v) = o.metrics_port {
            self.metrics_port = v;
        }
        if let Some(v) = o.shards {
            self.shards = v;
        }
        if let Some(v) = o.partitions {
            self.partitions = v;
        }
        if let Some(v) = o.durability {
            self.durability = v;
        }
        if o.auth {
            self.auth.enabled = true;
        }
        if let Some(v) = &o.log_level {
            self.logging.level = v.clone();
        }
        if let Some(v) = o.log_format {
            self.logging.format = v;
        }
    }

    /// Resolves `shards = 0` to the CPU count and checks every invariant in the module doc.
    /// `env_tokens` is the value of `FLO_AUTH_TOKENS`, if set.
    pub fn validate(&mut self, env_tokens: Option<&str>) -> Result<Resolved, ConfigError> {
        let bind: IpAddr = self
            .bind
            .parse()
            .map_err(|_| err("bind", format!("{:?} is not an IP address", self.bind)))?;
        if self.shards == 0 {
            self.shards = std::thread::available_parallelism().map_or(1, |n| n.get());
        }
        if self.shards > SHARDS_MAX {
            return Err(err("shards", format!("must be at most {SHARDS_MAX}")));
        }
        if self.partitions == 0 || self.partitions > PARTITIONS_MAX {
            return Err(err("partitions", format!("must be in 1..={PARTITIONS_MAX}")));
        }
        if (self.partitions as usize) < self.shards {
            return Err(err(
                "partitions",
                format!(
                    "{} partitions cannot cover {} shards: partitions must be >= shards",
                    self.partitions, self.shards
                ),
            ));
        }
        if self.dashboard_port == 0 {
            return Err(err("dashboard_port", "must be a port number in 1..=65535"));
        }
        if self.metrics_port == 0 {
            return Err(err("metrics_port", "must be a port number in 1..=65535"));
        }
        if self.dashboard_port == self.metrics_port {
            return Err(err("metrics_port", "must differ from dashboard_port"));
        }
        if self.data_dir.as_os_str().is_empty() {
            return Err(err("data_dir", "must not be empty"));
        }
        let h = &self.http;
        if h.max_body_bytes == 0 {
            return Err(err("http.max_body_bytes", "must be at least 1"));
        }
        if h.max_buffered_body_bytes < h.max_body_bytes {
            return Err(err(
                "http.max_buffered_body_bytes",
                "must be at least http.max_body_bytes (a largest body must fit)",
            ));
        }
        if h.request_timeout_ms == 0 {
            return Err(err("http.request_timeout_ms", "must be at least 1"));
        }
        if h.idle_timeout_ms == 0 {
            return Err(err("http.idle_timeout_ms", "must be at least 1"));
        }
        if h.max_connections == 0 {
            return Err(err("http.max_connections", "must be at least 1"));
        }
        if h.inbox_capacity == 0 {
            return Err(err("http.inbox_capacity", "must be at least 1"));
        }
        if h.max_writes_in_flight == 0 {
            return Err(err("http.max_writes_in_flight", "must be at least 1"));
        }
        let l = &self.log;
        if l.segment_bytes < crate::log::format::MIN_SEGMENT_BYTES
            || l.segment_bytes > crate::log::format::MAX_SEGMENT_BYTES
            || !l.segment_bytes.is_multiple_of(4096)
        {
            return Err(err(
                "log.segment_bytes",
                "must be a multiple of 4096, at least 1 MiB and at most 4 GiB",
            ));
        }
        if l.batch_max_bytes < 4096 || l.batch_max_bytes > l.segment_bytes / 4 {
            return Err(err(
                "log.batch_max_bytes",
                "must be at least 4096 and at most a quarter of log.segment_bytes",
            ));
        }
        if !(1_000..=86_400_000).contains(&self.ts.head_age_ms) {
            return Err(err("ts.head_age_ms", "must be in 1000..=86400000"));
        }
        if self.kv.tombstone_retention_ms > 30 * 24 * 3600 * 1000 {
            return Err(err("kv.tombstone_retention_ms", "must be in 0..=2592000000 (30 days)"));
        }
        if !(1..=1000).contains(&self.queue.max_deliveries) {
            return Err(err("queue.max_deliveries", "must be in 1..=1000"));
        }
        if !(1..=7 * 24 * 3600 * 1000).contains(&self.queue.dedup_window_ms) {
            return Err(err("queue.dedup_window_ms", "must be in 1..=604800000 (7 days)"));
        }
        let max_value = self.limits.max_value_bytes;
        if max_value == 0 || max_value > 8 * 1024 * 1024 {
            return Err(err("limits.max_value_bytes", "must be in 1..=8388608"));
        }
        if max_value + 4096 > l.batch_max_bytes {
            return Err(err(
                "limits.max_value_bytes",
                "must leave room in log.batch_max_bytes for one entry",
            ));
        }
        if l.snapshot_bytes != 0 && l.snapshot_bytes < l.batch_max_bytes {
            return Err(err(
                "log.snapshot_bytes",
                "must be 0 (at shutdown only) or at least log.batch_max_bytes",
            ));
        }
        if l.compact_live_percent > 90 {
            return Err(err("log.compact_live_percent", "must be in 0..=90"));
        }
        if l.flush_interval_ms == 0 {
            return Err(err("log.flush_interval_ms", "must be at least 1"));
        }
        if l.commit_wait_us > 100_000 {
            return Err(err("log.commit_wait_us", "must be at most 100000 (100 ms)"));
        }
        if tracing_subscriber::EnvFilter::try_new(&self.logging.level).is_err() {
            return Err(err(
                "logging.level",
                format!("{:?} is not a level or filter directive", self.logging.level),
            ));
        }
        let tokens = self.resolve_tokens(env_tokens)?;
        if self.auth.enabled && tokens.is_empty() {
            return Err(err(
                "auth.enabled",
                "auth is on but no token is configured (auth.token_sha256, [[auth.tokens]] or FLO_AUTH_TOKENS)",
            ));
        }
        Ok(Resolved { bind, tokens })
    }

    fn resolve_tokens(&self, env_tokens: Option<&str>) -> Result<Vec<TokenSpec>, ConfigError> {
        let mut out = Vec::new();
        for (i, hex) in self.auth.token_sha256.iter().enumerate() {
            let digest = parse_digest(hex).ok_or_else(|| {
                err(
                    &format!("auth.token_sha256[{i}]"),
                    "must be 64 hexadecimal characters (a SHA-256 digest)",
                )
            })?;
            out.push(TokenSpec {
                digest,
                namespaces: None,
                read_only: false,
            });
        }
        for (i, t) in self.auth.tokens.iter().enumerate() {
            let digest = parse_digest(&t.sha256).ok_or_else(|| {
                err(
                    &format!("auth.tokens[{i}].sha256"),
                    "must be 64 hexadecimal characters (a SHA-256 digest)",
                )
            })?;
            if let Some(ns) = &t.namespaces {
                if let Some(bad) = ns.iter().find(|n| !crate::api::path::is_valid_name(n)) {
                    return Err(err(
                        &format!("auth.tokens[{i}].namespaces"),
                        format!("{bad:?} is not a valid namespace name"),
                    ));
                }
            }
            out.push(TokenSpec {
                digest,
                namespaces: t.namespaces.clone(),
                read_only: t.read_only,
            });
        }
        if let Some(list) = env_tokens {
            for tok in list.split(',').map(str::trim).filter(|t| !t.is_empty()) {
                out.push(TokenSpec {
                    digest: Sha256::digest(tok.as_bytes()).into(),
                    namespaces: None,
                    read_only: false,
                });
            }
        }
        Ok(out)
    }
}

/// Values derived during validation.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub bind: IpAddr,
    pub tokens: Vec<TokenSpec>,
}

/// One accepted token, by digest, with its scope.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenSpec {
    pub digest: [u8; 32],
    pub namespaces: Option<Vec<String>>,
    pub read_only: bool,
}

fn parse_digest(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.trim();
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in hex.as_bytes().chunks(2).enumerate() {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        out[i] = (hi * 16 + lo) as u8;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_file_is_the_default_config() {
        let parsed = Config::from_toml(DEFAULT_TOML).expect("flo.toml parses");
        assert_eq!(parsed, Config::default());
    }

    #[test]
    fn unknown_key_is_named() {
        let e = Config::from_toml("dashboard_prot = 1\n").unwrap_err();
        assert!(e.message.contains("dashboard_prot"), "{e}");
        let e = Config::from_toml("[http]\nmax_body = 1\n").unwrap_err();
        assert_eq!(e.key, "http.max_body");
        assert!(e.message.contains("max_body"), "{e}");
    }

    #[test]
    fn syntax_errors_say_where() {
        let e = Config::from_toml("shards = 2\nbind = = 1\n").unwrap_err();
        assert!(e.message.starts_with("line 2:"), "{e}");
    }

    #[test]
    fn wrong_type_names_the_key() {
        let e = Config::from_toml("[http]\nmax_body_bytes = \"big\"\n").unwrap_err();
        assert_eq!(e.key, "http.max_body_bytes");
        let e = Config::from_toml("dashboard_port = 70000\n").unwrap_err();
        assert_eq!(e.key, "dashboard_port");
        let e = Config::from_toml("durability = \"sometimes\"\n").unwrap_err();
        assert_eq!(e.key, "durability");
        assert!(!e.to_string().contains('\n'));
    }

    #[test]
    fn flags_override_file_and_file_overrides_defaults() {
        let mut c = Config::from_toml("dashboard_port = 7000\nmetrics_port = 7001\nshards = 3\n").unwrap();
        assert_eq!(c.dashboard_port, 7000);
        assert_eq!(c.partitions, 64);
        c.apply(&Overrides {
            dashboard_port: Some(8000),
            ..Default::default()
        });
        assert_eq!(c.dashboard_port, 8000);
        assert_eq!(c.metrics_port, 7001);
        assert_eq!(c.shards, 3);
    }

    #[test]
    fn validation_names_keys() {
        let mut c = Config {
            shards: 8,
            partitions: 4,
            ..Config::default()
        };
        assert_eq!(c.validate(None).unwrap_err().key, "partitions");
        let mut c = Config {
            bind: "localhost:1".into(),
            ..Config::default()
        };
        assert_eq!(c.validate(None).unwrap_err().key, "bind");
        let mut c = Config::default();
        c.auth.enabled = true;
        assert_eq!(c.validate(None).unwrap_err().key, "auth.enabled");
        let mut c = Config::default();
        c.auth.token_sha256 = vec!["abc".into()];
        assert_eq!(c.validate(None).unwrap_err().key, "auth.token_sha256[0]");
        let mut c = Config::default();
        c.log.commit_wait_us = 100_001;
        assert_eq!(c.validate(None).unwrap_err().key, "log.commit_wait_us");
        c.log.commit_wait_us = 0;
        assert!(c.validate(None).is_ok(), "0 turns the wait off");
    }

    #[test]
    fn env_tokens_are_hashed() {
        let mut c = Config::default();
        c.auth.enabled = true;
        let r = c.validate(Some("s3cret, other")).unwrap();
        assert_eq!(r.tokens.len(), 2);
        let expect: [u8; 32] = Sha256::digest(b"s3cret").into();
        assert_eq!(r.tokens[0].digest, expect);
        assert!(c.shards >= 1);
    }
}
