//! Time series: InfluxDB line protocol ingest, Gorilla-style compressed chunks, FloQL.
//! `line` parses line protocol; `chunk` encodes and decodes compressed chunks
//! (`format-spec/ts-chunk.md`); `entry` is the byte layout of time-series log entries
//! (`format-spec/ts.md`); `series` is the registry, tag index, heads and chunk places one
//! partition keeps; `part` the lines of a write one partition owns, as the coordinator hands them
//! over; `exec` runs writes, commits, listings and a query's shard part on the owner shard;
//! `commit` is what the shards share about multi-part writes (the commit table, the recovery
//! exchange); `floql` parses the query language and `query` executes it. The HTTP handlers,
//! which coordinate writes and merge queries, are in `api::ts`.

pub mod chunk;
pub mod commit;
pub mod entry;
pub mod exec;
pub mod floql;
pub mod line;
pub mod part;
pub mod query;
pub mod series;
pub mod split;
