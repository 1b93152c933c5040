//! The golden segment: `tests/data/golden-segment.log`, a sealed 1 MiB segment of shard 0
//! holding three namespace entries in two batches, written once by this file's generator
//! (`FLO_WRITE_GOLDEN=1 cargo test --test log_golden`) and checked in. The test decodes it
//! byte for byte against `format-spec/log.md`: hand-written expectations for the header and the
//! first entry's bytes, the decoders for everything, and a re-encode of the whole file.

use flo::log::format::{
    decode_entry, encode_entry, Decoded, Footer, SegmentHeader, Trailer, FLAG_BATCH_START, SEGMENT_HEADER_BYTES,
    TRAILER_BYTES,
};
use flo::namespace::{decode_create, encode_create, ENTRY_NAMESPACE_CREATE};

const PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/golden-segment.log");
const SEGMENT_BYTES: u64 = 1024 * 1024;
const CREATED_AT_MS: u64 = 1_795_900_000_000;

/// (lsn, flags, name, created_at_ms) of the entries.
const ENTRIES: [(u64, u16, &str, u64); 3] = [
    (1, FLAG_BATCH_START, "alpha", 1_795_900_000_001),
    (2, 0, "beta", 1_795_900_000_002),
    (3, FLAG_BATCH_START, "gamma.prod", 1_795_900_000_003),
];

/// Builds the golden segment with the encoders.
fn build() -> Vec<u8> {
    let mut file = vec![0u8; SEGMENT_BYTES as usize];
    let header = SegmentHeader {
        shard_id: 0,
        first_lsn: 1,
        segment_bytes: SEGMENT_BYTES,
        created_at_ms: CREATED_AT_MS,
    };
    file[..SEGMENT_HEADER_BYTES].copy_from_slice(&header.encode());
    let mut entries = Vec::new();
    for (lsn, flags, name, at) in ENTRIES {
        encode_entry(
            &mut entries,
            lsn,
            ENTRY_NAMESPACE_CREATE,
            flags,
            &encode_create(name, at),
        );
    }
    let end = SEGMENT_HEADER_BYTES + entries.len();
    file[SEGMENT_HEADER_BYTES..end].copy_from_slice(&entries);
    let footer = Footer {
        first_lsn: 1,
        last_lsn: 3,
        entry_count: 3,
        entries_end: end as u64,
        live_bytes: entries.len() as u64,
        dead_bytes: 0,
        index_count: 0,
    };
    let fb = footer.encode();
    file[end..end + fb.len()].copy_from_slice(&fb);
    let trailer = Trailer {
        footer_offset: end as u64,
        footer_bytes: fb.len() as u32,
        footer_crc: crc32fast::hash(&fb),
    };
    let at = SEGMENT_BYTES as usize - TRAILER_BYTES;
    file[at..].copy_from_slice(&trailer.encode());
    file
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn golden_segment_decodes_byte_for_byte() {
    if std::env::var_os("FLO_WRITE_GOLDEN").is_some() {
        std::fs::write(PATH, build()).expect("write golden");
    }
    let file = std::fs::read(PATH).expect("golden segment is checked in");
    assert_eq!(file.len() as u64, SEGMENT_BYTES);

    // The header, by hand from the spec: magic, version 1, header_bytes 64, shard 0,
    // reserved, first_lsn 1, segment_bytes 1 MiB, created_at_ms, reserved, CRC.
    let mut expect = Vec::new();
    expect.extend_from_slice(b"FLOSEG\x00\x01");
    expect.extend_from_slice(&1u32.to_le_bytes());
    expect.extend_from_slice(&64u32.to_le_bytes());
    expect.extend_from_slice(&0u32.to_le_bytes());
    expect.extend_from_slice(&0u32.to_le_bytes());
    expect.extend_from_slice(&1u64.to_le_bytes());
    expect.extend_from_slice(&SEGMENT_BYTES.to_le_bytes());
    expect.extend_from_slice(&CREATED_AT_MS.to_le_bytes());
    expect.extend_from_slice(&[0u8; 12]);
    let crc = crc32fast::hash(&expect);
    expect.extend_from_slice(&crc.to_le_bytes());
    assert_eq!(hex(&file[..64]), hex(&expect), "segment header");

    // The first entry, by hand: entry_bytes = 24 + 15, CRC, LSN 1, type 1, BATCH_START, body
    // length 15, body (created_at_ms, name length 5, "alpha"), padding to 40.
    let mut e = Vec::new();
    e.extend_from_slice(&39u32.to_le_bytes());
    e.extend_from_slice(&[0; 4]);
    e.extend_from_slice(&1u64.to_le_bytes());
    e.extend_from_slice(&1u16.to_le_bytes());
    e.extend_from_slice(&1u16.to_le_bytes());
    e.extend_from_slice(&15u32.to_le_bytes());
    e.extend_from_slice(&1_795_900_000_001u64.to_le_bytes());
    e.extend_from_slice(&5u16.to_le_bytes());
    e.extend_from_slice(b"alpha");
    let crc = crc32fast::hash(&e[8..]);
    e[4..8].copy_from_slice(&crc.to_le_bytes());
    e.push(0);
    assert_eq!(hex(&file[64..104]), hex(&e), "first entry");

    // Everything through the decoders.
    let h = SegmentHeader::decode(&file).unwrap();
    assert_eq!(
        (h.shard_id, h.first_lsn, h.segment_bytes, h.created_at_ms),
        (0, 1, SEGMENT_BYTES, CREATED_AT_MS)
    );
    let mut pos = SEGMENT_HEADER_BYTES;
    for (lsn, flags, name, at) in ENTRIES {
        let Decoded::Entry(e) = decode_entry(&file[pos..]).unwrap() else {
            panic!("entry {lsn}")
        };
        assert_eq!((e.lsn, e.entry_type, e.flags), (lsn, ENTRY_NAMESPACE_CREATE, flags));
        assert_eq!(decode_create(e.body).unwrap(), (name.to_string(), at));
        pos += e.stored_bytes();
    }
    let t = Trailer::decode(&file[file.len() - TRAILER_BYTES..])
        .unwrap()
        .expect("sealed");
    assert_eq!(t.footer_offset as usize, pos);
    let fb = &file[pos..pos + t.footer_bytes as usize];
    assert_eq!(crc32fast::hash(fb), t.footer_crc);
    let f = Footer::decode(fb).unwrap();
    assert_eq!(
        (f.first_lsn, f.last_lsn, f.entry_count, f.entries_end),
        (1, 3, 3, pos as u64)
    );
    assert_eq!(decode_entry(&file[pos + t.footer_bytes as usize..]), Ok(Decoded::End));

    // And the encoders reproduce the file exactly.
    assert!(build() == file, "the encoders no longer produce the golden bytes");
}
