//! Time series: InfluxDB line protocol ingest, Gorilla-style compressed chunks, FloQL.
//! `line` parses line protocol; `chunk` encodes and decodes compressed chunks
//! (`format-spec/ts-chunk.md`); `floql` parses the query language.

pub mod chunk;
pub mod floql;
pub mod line;
