//! The snapshot file (`format-spec/snapshot.md`): a 64-byte header naming the shard and the
//! LSN the snapshot stands for, then sections (id, CRC, length, body), then a 32-byte trailer.
//! A file is valid only whole: the header, every section and the trailer check, the sections
//! are the known ones in their order, and nothing follows the trailer.
//!
//! Version 2 holds the segments section, then one section per partition of the shard, in
//! partition order (its body: u32 partition section version, u32 partition number, then each
//! machine's section, each u32-length-prefixed). Version 1 (a whole shard's state in one section per machine) is still read.

use super::codec::Dec;

pub const MAGIC: [u8; 8] = *b"FLOSNAP\x01";
pub const END_MAGIC: [u8; 8] = *b"FLOSNEND";
pub const FORMAT_VERSION: u32 = 2;
pub const HEADER_BYTES: usize = 64;
pub const SECTION_HEADER_BYTES: usize = 16;
pub const TRAILER_BYTES: usize = 32;

/// Section ids, in the order they are written.
pub const SECTION_SEGMENTS: u32 = 1;
pub const SECTION_NAMESPACES: u32 = 2;
pub const SECTION_KV: u32 = 3;
pub const SECTION_QUEUES: u32 = 4;
pub const SECTION_STREAMS: u32 = 5;
pub const SECTION_TS: u32 = 6;
/// One partition's state (version 2).
pub const SECTION_PARTITION: u32 = 7;
/// Version of a partition section's layout.
pub const PARTITION_SECTION_VERSION: u32 = 1;
/// Machine sections in a partition section, in order: namespaces, KV, queues, streams, time
/// series.
pub const MACHINE_SECTIONS: usize = 5;
/// Every section a version-1 snapshot holds, in order.
pub const SECTIONS: [u32; 6] = [
    SECTION_SEGMENTS,
    SECTION_NAMESPACES,
    SECTION_KV,
    SECTION_QUEUES,
    SECTION_STREAMS,
    SECTION_TS,
];

/// The file name of the snapshot at `lsn`: `snapshot-` + 20-digit LSN + `.snap`.
pub fn file_name(lsn: u64) -> String {
    format!("snapshot-{lsn:020}.snap")
}

/// The LSN of a snapshot file name, if it is one.
pub fn parse_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("snapshot-")?.strip_suffix(".snap")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// A decoded file: its header fields and section bodies (borrowed from the file's bytes).
#[derive(Debug)]
pub struct Parsed<'a> {
    pub version: u32,
    pub shard_id: u32,
    pub lsn: u64,
    pub created_at_ms: u64,
    /// (id, body) of every section, in the file's order.
    pub sections: Vec<(u32, &'a [u8])>,
}

impl Parsed<'_> {
    /// The first section of `id`.
    pub fn section(&self, id: u32) -> Dec<'_> {
        let body = self
            .sections
            .iter()
            .find(|(s, _)| *s == id)
            .map_or(&[][..], |(_, b)| *b);
        Dec::new(body)
    }
}

/// A partition section's parts: the partition, and each machine's section body.
pub fn split_partition(body: &[u8]) -> Result<(u32, [&[u8]; MACHINE_SECTIONS]), String> {
    let mut d = Dec::new(body);
    let v = d.u32("partition section version")?;
    if v != PARTITION_SECTION_VERSION {
        return Err(format!("partition section version {v} is not supported"));
    }
    let p = d.u32("partition")?;
    let mut parts = [&[][..]; MACHINE_SECTIONS];
    for part in parts.iter_mut() {
        *part = d.bytes("machine section")?;
    }
    d.done("partition section")?;
    Ok((p, parts))
}

const fn pad8(n: usize) -> usize {
    (n + 7) & !7
}

/// Writes a whole file of version 2 from its section bodies: the segments section, then the
/// partition sections (as `snapshot::shard::encode_partitions` lays them out).
pub fn encode(shard_id: u32, lsn: u64, created_at_ms: u64, sections: &[Vec<u8>]) -> Vec<u8> {
    let ids: Vec<u32> = (0..sections.len())
        .map(|i| if i == 0 { SECTION_SEGMENTS } else { SECTION_PARTITION })
        .collect();
    encode_with(FORMAT_VERSION, shard_id, lsn, created_at_ms, &ids, sections)
}

/// A file of version 1 (one section per machine, in [`SECTIONS`] order), for tests of old data.
#[cfg(test)]
pub fn encode_v1(shard_id: u32, lsn: u64, created_at_ms: u64, sections: &[Vec<u8>]) -> Vec<u8> {
    assert_eq!(sections.len(), SECTIONS.len(), "every section, in order");
    encode_with(1, shard_id, lsn, created_at_ms, &SECTIONS, sections)
}

fn encode_with(
    version: u32,
    shard_id: u32,
    lsn: u64,
    created_at_ms: u64,
    ids: &[u32],
    sections: &[Vec<u8>],
) -> Vec<u8> {
    let total = HEADER_BYTES
        + sections
            .iter()
            .map(|s| SECTION_HEADER_BYTES + pad8(s.len()))
            .sum::<usize>()
        + TRAILER_BYTES;
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&shard_id.to_le_bytes());
    out.extend_from_slice(&lsn.to_le_bytes());
    out.extend_from_slice(&created_at_ms.to_le_bytes());
    out.extend_from_slice(&(sections.len() as u32).to_le_bytes());
    out.resize(60, 0);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    for (id, body) in ids.iter().zip(sections) {
        out.extend_from_slice(&id.to_le_bytes());
        out.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
        out.extend_from_slice(&(body.len() as u64).to_le_bytes());
        out.extend_from_slice(body);
        out.resize(pad8(out.len()), 0);
    }
    let file_bytes = (out.len() + TRAILER_BYTES) as u64;
    let start = out.len();
    out.extend_from_slice(&END_MAGIC);
    out.extend_from_slice(&file_bytes.to_le_bytes());
    out.extend_from_slice(&(sections.len() as u32).to_le_bytes());
    out.resize(start + 28, 0);
    let crc = crc32fast::hash(&out[start..]);
    out.extend_from_slice(&crc.to_le_bytes());
    debug_assert_eq!(out.len(), total);
    out
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// Checks and splits a whole file. Every way the bytes can be wrong is an `Err` naming it.
pub fn decode(b: &[u8]) -> Result<Parsed<'_>, String> {
    if b.len() < HEADER_BYTES + TRAILER_BYTES {
        return Err(format!("{} bytes is too short for a snapshot", b.len()));
    }
    if b[..8] != MAGIC {
        return Err("not a snapshot file (bad magic)".into());
    }
    if crc32fast::hash(&b[..60]) != u32_at(b, 60) {
        return Err("header checksum mismatch".into());
    }
    let version = u32_at(b, 8);
    if version != FORMAT_VERSION && version != 1 {
        return Err(format!(
            "format version {version} is not supported (only 1 and {FORMAT_VERSION})"
        ));
    }
    let count = u32_at(b, 32) as usize;
    if version == 1 && count != SECTIONS.len() {
        return Err(format!("{count} sections, {} expected", SECTIONS.len()));
    }
    if version == FORMAT_VERSION && count == 0 {
        return Err("no segments section".into());
    }
    let t = b.len() - TRAILER_BYTES;
    if b[t..t + 8] != END_MAGIC || crc32fast::hash(&b[t..t + 28]) != u32_at(b, t + 28) {
        return Err("the trailer is missing or damaged (an incomplete file?)".into());
    }
    if u64_at(b, t + 8) != b.len() as u64 || u32_at(b, t + 16) as usize != count {
        return Err("the trailer does not match the file".into());
    }
    let mut sections = Vec::with_capacity(count.min(b.len() / SECTION_HEADER_BYTES));
    let mut at = HEADER_BYTES;
    let wanted = (0..count).map(|i| match (version, i) {
        (1, i) => SECTIONS[i],
        (_, 0) => SECTION_SEGMENTS,
        _ => SECTION_PARTITION,
    });
    for want in wanted {
        if at + SECTION_HEADER_BYTES > t {
            return Err(format!("section {want} is missing"));
        }
        let id = u32_at(b, at);
        if id != want {
            return Err(format!("section {id} found where section {want} belongs"));
        }
        let crc = u32_at(b, at + 4);
        let len = u64_at(b, at + 8);
        let body_at = at + SECTION_HEADER_BYTES;
        let end = usize::try_from(len)
            .ok()
            .and_then(|l| body_at.checked_add(l))
            .filter(|&e| e <= t)
            .ok_or_else(|| format!("section {id} runs past the end of the file"))?;
        let body = &b[body_at..end];
        if crc32fast::hash(body) != crc {
            return Err(format!("section {id} checksum mismatch"));
        }
        sections.push((id, body));
        at = pad8(end);
        if at > t || b[end..at].iter().any(|&x| x != 0) {
            return Err(format!("section {id}: padding is not zero"));
        }
    }
    if at != t {
        return Err(format!("{} unexpected bytes before the trailer", t.saturating_sub(at)));
    }
    Ok(Parsed {
        version,
        shard_id: u32_at(b, 12),
        lsn: u64_at(b, 16),
        created_at_ms: u64_at(b, 24),
        sections,
    })
}

/// The segments section: the segments whose entries the snapshot's places point at, with the
/// bytes of those entries (the live bytes compaction would have to copy).
pub fn encode_segments(live: &std::collections::BTreeMap<u64, u64>) -> Vec<u8> {
    let mut e = super::codec::Enc::new();
    e.u32(1);
    e.count(live.len());
    for (&segment, &bytes) in live {
        e.u64(segment);
        e.u64(bytes);
    }
    e.finish().0
}

/// Reads the segments section: (segment's first LSN, live bytes), ascending.
pub fn decode_segments(d: &mut Dec<'_>) -> Result<Vec<(u64, u64)>, String> {
    let v = d.u32("segments section version")?;
    if v != 1 {
        return Err(format!("segments section version {v} is not supported"));
    }
    let n = d.count("segment count", 16)?;
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(n);
    for _ in 0..n {
        let s = d.u64("segment")?;
        let bytes = d.u64("segment live bytes")?;
        if s == 0 || out.last().is_some_and(|&(p, _)| p >= s) {
            return Err(format!("segment {s} out of order"));
        }
        out.push((s, bytes));
    }
    d.done("segments section")?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let sections: Vec<Vec<u8>> = (0..4).map(|i| vec![i as u8; i * 3]).collect();
        encode(2, 12345, 99, &sections)
    }

    #[test]
    fn round_trip() {
        let b = sample();
        let p = decode(&b).unwrap();
        assert_eq!((p.version, p.shard_id, p.lsn, p.created_at_ms), (2, 2, 12345, 99));
        for (i, (id, s)) in p.sections.iter().enumerate() {
            assert_eq!(*id, if i == 0 { SECTION_SEGMENTS } else { SECTION_PARTITION });
            assert_eq!(*s, &vec![i as u8; i * 3][..]);
        }
        let sections: Vec<Vec<u8>> = (0..SECTIONS.len()).map(|i| vec![i as u8; i]).collect();
        let v1 = encode_v1(1, 5, 6, &sections);
        let old = decode(&v1).unwrap();
        assert_eq!(old.version, 1);
        assert_eq!(old.sections.iter().map(|s| s.0).collect::<Vec<_>>(), SECTIONS);
        assert_eq!(parse_file_name(&file_name(12345)), Some(12345));
        assert_eq!(parse_file_name("snapshot-1.snap"), None);
    }

    #[test]
    fn every_single_byte_flip_and_truncation_is_detected() {
        let b = sample();
        for i in 0..b.len() {
            let mut c = b.clone();
            c[i] ^= 0x20;
            assert!(decode(&c).is_err(), "flip at {i} went unnoticed");
        }
        for n in 0..b.len() {
            assert!(decode(&b[..n]).is_err(), "truncation to {n} went unnoticed");
        }
    }
}
