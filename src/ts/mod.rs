//! Time series: InfluxDB line protocol ingest, Gorilla-style compressed chunks, FloQL.
//! `line` parses line protocol; `chunk` encodes and decodes compressed chunks
//! (`format-spec/ts-chunk.md`); `entry` is the byte layout of time-series log entries
//! (`format-spec/ts.md`); `series` is the registry, tag index and heads one shard keeps;
//! `floql` parses the query language. The write path, the commit table of multi-part writes and
//! the query executor are still to come, so the API answers 501 for time series.

pub mod chunk;
pub mod entry;
pub mod floql;
pub mod line;
pub mod series;
