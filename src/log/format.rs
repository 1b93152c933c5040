//! The byte layout of segment files (`format-spec/log.md`): the segment header, entry framing,
//! the footer and trailer of sealed segments. Encoders and decoders side by side; every size
//! and offset is a `const` pinned by an assert, so the document and the code cannot drift.
//!
//! Decoders never trust the input: every length is checked before it is used, and a decoder
//! answers with a [`FormatError`] rather than panicking on any bytes at all (fuzzed).

/// `FLOSEG\0\1`.
pub const SEGMENT_MAGIC: [u8; 8] = *b"FLOSEG\x00\x01";
/// `FLOEND\0\1`.
pub const TRAILER_MAGIC: [u8; 8] = *b"FLOEND\x00\x01";
pub const FORMAT_VERSION: u32 = 1;

pub const SEGMENT_HEADER_BYTES: usize = 64;
pub const ENTRY_HEADER_BYTES: usize = 24;
pub const TRAILER_BYTES: usize = 32;
pub const FOOTER_FIXED_BYTES: usize = 56;
/// Entries start at multiples of this.
pub const ENTRY_ALIGN: usize = 8;
/// Largest entry body.
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
/// Smallest segment size accepted.
pub const MIN_SEGMENT_BYTES: u64 = 1024 * 1024;
/// The largest segment: offsets inside a segment fit in 32 bits (indexes store them so).
pub const MAX_SEGMENT_BYTES: u64 = 1 << 32;

/// Flag: first entry of a write batch.
pub const FLAG_BATCH_START: u16 = 1;
/// Flag, on a batch's first entry: the batch was written while the fdatasync of the batch
/// before it was still in flight, so that batch may not have been durable yet (recovery).
pub const FLAG_PIPELINED: u16 = 2;

// Field offsets of the segment header.
const H_MAGIC: usize = 0;
const H_VERSION: usize = 8;
const H_HEADER_BYTES: usize = 12;
const H_SHARD: usize = 16;
const H_FIRST_LSN: usize = 24;
const H_SEGMENT_BYTES: usize = 32;
const H_CREATED: usize = 40;
const H_CRC: usize = 60;

// Field offsets of an entry header.
const E_LEN: usize = 0;
const E_CRC: usize = 4;
const E_LSN: usize = 8;
const E_TYPE: usize = 16;
const E_FLAGS: usize = 18;
const E_BODY_LEN: usize = 20;

// Field offsets of the trailer.
const T_MAGIC: usize = 0;
const T_FOOTER_OFFSET: usize = 8;
const T_FOOTER_BYTES: usize = 16;
const T_FOOTER_CRC: usize = 20;
const T_CRC: usize = 28;

const _: () = assert!(H_CRC + 4 == SEGMENT_HEADER_BYTES);
const _: () = assert!(H_CREATED + 8 + 12 == H_CRC);
const _: () = assert!(E_BODY_LEN + 4 == ENTRY_HEADER_BYTES);
const _: () = assert!(T_CRC + 4 == TRAILER_BYTES);
const _: () =
    assert!(SEGMENT_HEADER_BYTES.is_multiple_of(ENTRY_ALIGN) && ENTRY_HEADER_BYTES.is_multiple_of(ENTRY_ALIGN));
const _: () = assert!(FOOTER_FIXED_BYTES.is_multiple_of(ENTRY_ALIGN));

/// Why bytes are not what the format says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FormatError {
    TooShort { need: usize, have: usize },
    BadMagic,
    BadVersion(u32),
    ChecksumMismatch { expected: u32, actual: u32 },
    BadLength(u64),
    BadField(&'static str),
}

impl std::fmt::Display for FormatError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FormatError::TooShort { need, have } => write!(f, "truncated: need {need} bytes, have {have}"),
            FormatError::BadMagic => f.write_str("bad magic"),
            FormatError::BadVersion(v) => write!(f, "unsupported format version {v}"),
            FormatError::ChecksumMismatch { expected, actual } => {
                write!(
                    f,
                    "checksum mismatch (stored {expected:#010x}, computed {actual:#010x})"
                )
            }
            FormatError::BadLength(n) => write!(f, "impossible length {n}"),
            FormatError::BadField(what) => write!(f, "invalid {what}"),
        }
    }
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

fn need(b: &[u8], n: usize) -> Result<(), FormatError> {
    if b.len() < n {
        Err(FormatError::TooShort { need: n, have: b.len() })
    } else {
        Ok(())
    }
}

/// Rounds up to the entry alignment.
pub const fn align_up(n: usize) -> usize {
    (n + ENTRY_ALIGN - 1) & !(ENTRY_ALIGN - 1)
}

/// The segment header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentHeader {
    pub shard_id: u32,
    pub first_lsn: u64,
    pub segment_bytes: u64,
    pub created_at_ms: u64,
}

impl SegmentHeader {
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_BYTES] {
        let mut b = [0u8; SEGMENT_HEADER_BYTES];
        b[H_MAGIC..H_MAGIC + 8].copy_from_slice(&SEGMENT_MAGIC);
        b[H_VERSION..H_VERSION + 4].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        b[H_HEADER_BYTES..H_HEADER_BYTES + 4].copy_from_slice(&(SEGMENT_HEADER_BYTES as u32).to_le_bytes());
        b[H_SHARD..H_SHARD + 4].copy_from_slice(&self.shard_id.to_le_bytes());
        b[H_FIRST_LSN..H_FIRST_LSN + 8].copy_from_slice(&self.first_lsn.to_le_bytes());
        b[H_SEGMENT_BYTES..H_SEGMENT_BYTES + 8].copy_from_slice(&self.segment_bytes.to_le_bytes());
        b[H_CREATED..H_CREATED + 8].copy_from_slice(&self.created_at_ms.to_le_bytes());
        let crc = crc32fast::hash(&b[..H_CRC]);
        b[H_CRC..H_CRC + 4].copy_from_slice(&crc.to_le_bytes());
        b
    }

    pub fn decode(b: &[u8]) -> Result<SegmentHeader, FormatError> {
        need(b, SEGMENT_HEADER_BYTES)?;
        if b[H_MAGIC..H_MAGIC + 8] != SEGMENT_MAGIC {
            return Err(FormatError::BadMagic);
        }
        let stored = u32_at(b, H_CRC);
        let actual = crc32fast::hash(&b[..H_CRC]);
        if stored != actual {
            return Err(FormatError::ChecksumMismatch {
                expected: stored,
                actual,
            });
        }
        let version = u32_at(b, H_VERSION);
        if version != FORMAT_VERSION {
            return Err(FormatError::BadVersion(version));
        }
        if u32_at(b, H_HEADER_BYTES) as usize != SEGMENT_HEADER_BYTES {
            return Err(FormatError::BadField("header_bytes"));
        }
        if !zero(&b[H_SHARD + 4..H_FIRST_LSN]) || !zero(&b[H_CREATED + 8..H_CRC]) {
            return Err(FormatError::BadField("reserved"));
        }
        let h = SegmentHeader {
            shard_id: u32_at(b, H_SHARD),
            first_lsn: u64_at(b, H_FIRST_LSN),
            segment_bytes: u64_at(b, H_SEGMENT_BYTES),
            created_at_ms: u64_at(b, H_CREATED),
        };
        if h.first_lsn == 0 {
            return Err(FormatError::BadField("first_lsn"));
        }
        if h.segment_bytes < MIN_SEGMENT_BYTES
            || h.segment_bytes > MAX_SEGMENT_BYTES
            || !h.segment_bytes.is_multiple_of(4096)
        {
            return Err(FormatError::BadLength(h.segment_bytes));
        }
        Ok(h)
    }
}

/// An entry as decoded from (a mapping of) a segment; the body borrows the segment bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryRef<'a> {
    pub lsn: u64,
    pub entry_type: u16,
    pub flags: u16,
    pub body: &'a [u8],
}

impl EntryRef<'_> {
    /// Bytes the entry takes in the segment, padding included.
    pub fn stored_bytes(&self) -> usize {
        align_up(ENTRY_HEADER_BYTES + self.body.len())
    }
}

/// Bytes an entry with this body takes in a segment, padding included.
pub const fn stored_bytes(body_bytes: usize) -> usize {
    align_up(ENTRY_HEADER_BYTES + body_bytes)
}

/// Appends an entry (header, body, zero padding) to `out`.
pub fn encode_entry(out: &mut Vec<u8>, lsn: u64, entry_type: u16, flags: u16, body: &[u8]) {
    assert!(body.len() <= MAX_BODY_BYTES, "entry body over the limit");
    assert!(entry_type != 0, "entry type 0 is never valid");
    debug_assert!(out.len().is_multiple_of(ENTRY_ALIGN), "entries start aligned");
    let start = out.len();
    let entry_bytes = (ENTRY_HEADER_BYTES + body.len()) as u32;
    out.extend_from_slice(&entry_bytes.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&lsn.to_le_bytes());
    out.extend_from_slice(&entry_type.to_le_bytes());
    out.extend_from_slice(&flags.to_le_bytes());
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(body);
    let crc = crc32fast::hash(&out[start + E_LSN..]);
    out[start + E_CRC..start + E_CRC + 4].copy_from_slice(&crc.to_le_bytes());
    out.resize(start + align_up(entry_bytes as usize), 0);
}

/// Sets `flags` bits in the header of the entry that starts `entry` (as [`encode_entry`] wrote
/// it) and updates its CRC.
pub fn add_entry_flags(entry: &mut [u8], flags: u16) {
    let entry_bytes = u32_at(entry, E_LEN) as usize;
    assert!(
        entry_bytes >= ENTRY_HEADER_BYTES && entry_bytes <= entry.len(),
        "an encoded entry"
    );
    let now = u16_at(entry, E_FLAGS) | flags;
    entry[E_FLAGS..E_FLAGS + 2].copy_from_slice(&now.to_le_bytes());
    let crc = crc32fast::hash(&entry[E_LSN..entry_bytes]);
    entry[E_CRC..E_CRC + 4].copy_from_slice(&crc.to_le_bytes());
}

/// What is at an entry offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// A well-formed entry (its LSN still has to be checked against the sequence).
    Entry(EntryRef<'a>),
    /// `entry_bytes` = 0: the end of the entries.
    End,
}

/// Decodes the entry at the start of `b` (the rest of the segment's entry area).
pub fn decode_entry(b: &[u8]) -> Result<Decoded<'_>, FormatError> {
    need(b, 4)?;
    let entry_bytes = u32_at(b, E_LEN) as usize;
    if entry_bytes == 0 {
        return Ok(Decoded::End);
    }
    if !(ENTRY_HEADER_BYTES..=ENTRY_HEADER_BYTES + MAX_BODY_BYTES).contains(&entry_bytes) {
        return Err(FormatError::BadLength(entry_bytes as u64));
    }
    need(b, entry_bytes)?;
    if u32_at(b, E_BODY_LEN) as usize != entry_bytes - ENTRY_HEADER_BYTES {
        return Err(FormatError::BadField("body_bytes"));
    }
    let stored = u32_at(b, E_CRC);
    let actual = crc32fast::hash(&b[E_LSN..entry_bytes]);
    if stored != actual {
        return Err(FormatError::ChecksumMismatch {
            expected: stored,
            actual,
        });
    }
    let entry_type = u16_at(b, E_TYPE);
    if entry_type == 0 {
        return Err(FormatError::BadField("entry_type"));
    }
    Ok(Decoded::Entry(EntryRef {
        lsn: u64_at(b, E_LSN),
        entry_type,
        flags: u16_at(b, E_FLAGS),
        body: &b[ENTRY_HEADER_BYTES..entry_bytes],
    }))
}

/// An entry's type, LSN, unchecked body and stored bytes, as [`peek_entry`] sees them.
pub type Peeked<'a> = (u16, u64, &'a [u8], usize);

/// The header of the entry at the start of `b` and its body, without checking the body: (type,
/// LSN, body, stored bytes), or `None` at the end of the entries. For skipping entries a reader
/// does not need; an entry that is used must go through [`decode_entry`].
pub fn peek_entry(b: &[u8]) -> Result<Option<Peeked<'_>>, FormatError> {
    need(b, 4)?;
    let entry_bytes = u32_at(b, E_LEN) as usize;
    if entry_bytes == 0 {
        return Ok(None);
    }
    if !(ENTRY_HEADER_BYTES..=ENTRY_HEADER_BYTES + MAX_BODY_BYTES).contains(&entry_bytes) {
        return Err(FormatError::BadLength(entry_bytes as u64));
    }
    need(b, entry_bytes)?;
    Ok(Some((
        u16_at(b, E_TYPE),
        u64_at(b, E_LSN),
        &b[ENTRY_HEADER_BYTES..entry_bytes],
        align_up(entry_bytes),
    )))
}

/// The fixed part of a sealed segment's footer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Footer {
    pub first_lsn: u64,
    pub last_lsn: u64,
    pub entry_count: u64,
    pub entries_end: u64,
    pub live_bytes: u64,
    pub dead_bytes: u64,
    pub index_count: u32,
}

impl Footer {
    /// The footer bytes (no index sections yet: `index_count` must be 0).
    pub fn encode(&self) -> [u8; FOOTER_FIXED_BYTES] {
        assert_eq!(self.index_count, 0, "stream index sections are not defined yet");
        let mut b = [0u8; FOOTER_FIXED_BYTES];
        for (i, v) in [
            self.first_lsn,
            self.last_lsn,
            self.entry_count,
            self.entries_end,
            self.live_bytes,
            self.dead_bytes,
        ]
        .into_iter()
        .enumerate()
        {
            b[i * 8..i * 8 + 8].copy_from_slice(&v.to_le_bytes());
        }
        b[48..52].copy_from_slice(&self.index_count.to_le_bytes());
        b
    }

    pub fn decode(b: &[u8]) -> Result<Footer, FormatError> {
        need(b, FOOTER_FIXED_BYTES)?;
        if !zero(&b[52..FOOTER_FIXED_BYTES]) {
            return Err(FormatError::BadField("reserved"));
        }
        Ok(Footer {
            first_lsn: u64_at(b, 0),
            last_lsn: u64_at(b, 8),
            entry_count: u64_at(b, 16),
            entries_end: u64_at(b, 24),
            live_bytes: u64_at(b, 32),
            dead_bytes: u64_at(b, 40),
            index_count: u32_at(b, 48),
        })
    }
}

/// The trailer at the end of a sealed segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Trailer {
    pub footer_offset: u64,
    pub footer_bytes: u32,
    pub footer_crc: u32,
}

impl Trailer {
    pub fn encode(&self) -> [u8; TRAILER_BYTES] {
        let mut b = [0u8; TRAILER_BYTES];
        b[T_MAGIC..T_MAGIC + 8].copy_from_slice(&TRAILER_MAGIC);
        b[T_FOOTER_OFFSET..T_FOOTER_OFFSET + 8].copy_from_slice(&self.footer_offset.to_le_bytes());
        b[T_FOOTER_BYTES..T_FOOTER_BYTES + 4].copy_from_slice(&self.footer_bytes.to_le_bytes());
        b[T_FOOTER_CRC..T_FOOTER_CRC + 4].copy_from_slice(&self.footer_crc.to_le_bytes());
        let crc = crc32fast::hash(&b[..T_CRC]);
        b[T_CRC..T_CRC + 4].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// `Ok(None)` when there is no trailer (all zeros: the segment is not sealed).
    pub fn decode(b: &[u8]) -> Result<Option<Trailer>, FormatError> {
        need(b, TRAILER_BYTES)?;
        if b[..TRAILER_BYTES].iter().all(|&x| x == 0) {
            return Ok(None);
        }
        if b[T_MAGIC..T_MAGIC + 8] != TRAILER_MAGIC {
            return Err(FormatError::BadMagic);
        }
        let stored = u32_at(b, T_CRC);
        let actual = crc32fast::hash(&b[..T_CRC]);
        if stored != actual {
            return Err(FormatError::ChecksumMismatch {
                expected: stored,
                actual,
            });
        }
        if !zero(&b[T_FOOTER_CRC + 4..T_CRC]) {
            return Err(FormatError::BadField("reserved"));
        }
        Ok(Some(Trailer {
            footer_offset: u64_at(b, T_FOOTER_OFFSET),
            footer_bytes: u32_at(b, T_FOOTER_BYTES),
            footer_crc: u32_at(b, T_FOOTER_CRC),
        }))
    }
}

/// Reserved bytes are 0: a decoder refuses others, so every decoded header, footer and trailer
/// re-encodes to the bytes it came from.
fn zero(b: &[u8]) -> bool {
    b.iter().all(|&x| x == 0)
}

/// The file name of the segment whose first LSN is `lsn`.
pub fn segment_file_name(first_lsn: u64) -> String {
    format!("{first_lsn:020}.log")
}

/// The first LSN a segment file name stands for; `None` for other names.
pub fn parse_segment_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".log")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().filter(|&lsn| lsn > 0)
}

/// The directory name of a shard.
pub fn shard_dir_name(shard_id: usize) -> String {
    format!("shard-{shard_id:03}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip_and_damage() {
        let h = SegmentHeader {
            shard_id: 3,
            first_lsn: 4097,
            segment_bytes: 64 << 20,
            created_at_ms: 1_795_900_532_984,
        };
        let b = h.encode();
        assert_eq!(SegmentHeader::decode(&b), Ok(h));
        assert!(matches!(
            SegmentHeader::decode(&b[..63]),
            Err(FormatError::TooShort { .. })
        ));
        let mut bad = b;
        bad[0] ^= 1;
        assert_eq!(SegmentHeader::decode(&bad), Err(FormatError::BadMagic));
        let mut bad = b;
        bad[16] ^= 1;
        assert!(matches!(
            SegmentHeader::decode(&bad),
            Err(FormatError::ChecksumMismatch { .. })
        ));
        let mut bad = b;
        bad[8] = 2;
        let crc = crc32fast::hash(&bad[..60]);
        bad[60..64].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(SegmentHeader::decode(&bad), Err(FormatError::BadVersion(2)));
    }

    #[test]
    fn entry_round_trip_alignment_and_end() {
        let mut out = Vec::new();
        encode_entry(&mut out, 7, 1, FLAG_BATCH_START, b"hello");
        assert_eq!(out.len(), 32);
        encode_entry(&mut out, 8, 2, 0, b"");
        assert_eq!(out.len(), 56);
        out.extend_from_slice(&[0; 8]);
        let Decoded::Entry(e) = decode_entry(&out).unwrap() else {
            panic!()
        };
        assert_eq!(
            (e.lsn, e.entry_type, e.flags, e.body),
            (7, 1, FLAG_BATCH_START, &b"hello"[..])
        );
        assert_eq!(e.stored_bytes(), 32);
        let Decoded::Entry(e) = decode_entry(&out[32..]).unwrap() else {
            panic!()
        };
        assert_eq!((e.lsn, e.body.len()), (8, 0));
        assert_eq!(decode_entry(&out[56..]), Ok(Decoded::End));
    }

    #[test]
    fn every_malformed_entry_shape_is_an_error() {
        let mut good = Vec::new();
        encode_entry(&mut good, 1, 1, 0, b"body bytes");
        // Short: every prefix that holds a nonzero length.
        for n in 4..ENTRY_HEADER_BYTES + 10 {
            assert!(decode_entry(&good[..n]).is_err(), "prefix {n}");
        }
        // Bad CRC: any flipped bit after the CRC field.
        for byte in 8..ENTRY_HEADER_BYTES + 10 {
            let mut b = good.clone();
            b[byte] ^= 0x10;
            assert!(decode_entry(&b).is_err(), "flip at {byte}");
        }
        // Bad length: too small, too large, inconsistent with body_bytes.
        for len in [1u32, 23, (ENTRY_HEADER_BYTES + MAX_BODY_BYTES + 1) as u32, 40] {
            let mut b = good.clone();
            b[0..4].copy_from_slice(&len.to_le_bytes());
            b.resize(64, 0);
            assert!(decode_entry(&b).is_err(), "len {len}");
        }
        // Type 0 with a valid CRC.
        let mut b = good.clone();
        b[16..18].copy_from_slice(&0u16.to_le_bytes());
        let crc = crc32fast::hash(&b[8..34]);
        b[4..8].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(decode_entry(&b), Err(FormatError::BadField("entry_type")));
    }

    #[test]
    fn footer_and_trailer_round_trip() {
        let f = Footer {
            first_lsn: 1,
            last_lsn: 99,
            entry_count: 99,
            entries_end: 8192,
            live_bytes: 5000,
            dead_bytes: 3000,
            index_count: 0,
        };
        assert_eq!(Footer::decode(&f.encode()), Ok(f));
        let t = Trailer {
            footer_offset: 8192,
            footer_bytes: 56,
            footer_crc: crc32fast::hash(&f.encode()),
        };
        assert_eq!(Trailer::decode(&t.encode()), Ok(Some(t)));
        assert_eq!(Trailer::decode(&[0; 32]), Ok(None));
        let mut bad = t.encode();
        bad[9] ^= 1;
        assert!(Trailer::decode(&bad).is_err());
    }

    /// Found by the `log_decode` fuzz target (`fuzz/regressions/log_decode/trailer-reserved-bytes`):
    /// a trailer with non-zero reserved bytes and a CRC over them was accepted, and re-encoded to
    /// other bytes. Reserved bytes of the header, footer and trailer must be 0.
    #[test]
    fn reserved_bytes_must_be_zero() {
        let t = Trailer {
            footer_offset: 8192,
            footer_bytes: 56,
            footer_crc: 7,
        };
        let mut b = t.encode();
        b[25] = 1;
        let crc = crc32fast::hash(&b[..T_CRC]);
        b[T_CRC..].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(Trailer::decode(&b), Err(FormatError::BadField("reserved")));

        let h = SegmentHeader {
            shard_id: 3,
            first_lsn: 4097,
            segment_bytes: 64 << 20,
            created_at_ms: 1,
        };
        for at in [20, 23, 48, 59] {
            let mut b = h.encode();
            b[at] = 1;
            let crc = crc32fast::hash(&b[..H_CRC]);
            b[H_CRC..].copy_from_slice(&crc.to_le_bytes());
            assert_eq!(
                SegmentHeader::decode(&b),
                Err(FormatError::BadField("reserved")),
                "byte {at}"
            );
        }

        let mut f = [0u8; FOOTER_FIXED_BYTES];
        f[55] = 1;
        assert_eq!(Footer::decode(&f), Err(FormatError::BadField("reserved")));
    }

    #[test]
    fn names() {
        assert_eq!(segment_file_name(4097), "00000000000000004097.log");
        assert_eq!(parse_segment_file_name("00000000000000004097.log"), Some(4097));
        assert_eq!(parse_segment_file_name("4097.log"), None);
        assert_eq!(parse_segment_file_name("00000000000000000000.log"), None);
        assert_eq!(parse_segment_file_name("0000000000000000409x.log"), None);
        assert_eq!(shard_dir_name(7), "shard-007");
    }
}
