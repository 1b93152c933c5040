//! The log decoders (`format-spec/log.md`) on arbitrary bytes: segment header, entry, footer,
//! trailer, `RELOCATED` body and segment file name. Never panics; whatever decodes re-encodes
//! to the bytes it came from; a walk over an entry area as recovery does it finds entries
//! inside the input, and `peek_entry` (the reader that skips bodies unchecked) agrees with
//! `decode_entry` on every entry that decodes.

use crate::log::format::{
    decode_entry, encode_entry, parse_segment_file_name, peek_entry, segment_file_name, Decoded, Footer, SegmentHeader,
    Trailer, FOOTER_FIXED_BYTES, SEGMENT_HEADER_BYTES, TRAILER_BYTES,
};
use crate::log::relocated;

/// Checks one input; panics on a violation.
pub fn check(data: &[u8]) {
    if let Ok(h) = SegmentHeader::decode(data) {
        assert_eq!(h.encode()[..], data[..SEGMENT_HEADER_BYTES]);
    }
    if let Ok(Some(t)) = Trailer::decode(data) {
        assert_eq!(t.encode()[..], data[..TRAILER_BYTES]);
    }
    if let Ok(f) = Footer::decode(data) {
        // Index sections are not defined yet: the encoder writes the fixed part with none.
        let again = Footer { index_count: 0, ..f }.encode();
        assert_eq!(again[..48], data[..48]);
        assert_eq!(
            Footer::decode(&again).map(|g| Footer {
                index_count: f.index_count,
                ..g
            }),
            Ok(f)
        );
        assert!(data.len() >= FOOTER_FIXED_BYTES);
    }
    if let Ok(r) = relocated::decode(data) {
        assert_eq!(
            relocated::encode(r.from_segment, r.from_offset, r.entry_type, r.body),
            data
        );
        assert_eq!(
            relocated::inner(relocated::ENTRY_RELOCATED, data),
            (r.entry_type, r.body)
        );
    }
    if let Some(lsn) = parse_segment_file_name(&String::from_utf8_lossy(data)) {
        assert_eq!(segment_file_name(lsn).as_bytes(), data);
    }
    let mut pos = 0;
    while pos + 4 <= data.len() {
        let peeked = peek_entry(&data[pos..]);
        match decode_entry(&data[pos..]) {
            Ok(Decoded::Entry(e)) => {
                let mut again = Vec::new();
                encode_entry(&mut again, e.lsn, e.entry_type, e.flags, e.body);
                let n = 24 + e.body.len();
                assert_eq!(&again[..n], &data[pos..pos + n]);
                assert_eq!(peeked, Ok(Some((e.entry_type, e.lsn, e.body, e.stored_bytes()))));
                pos += e.stored_bytes();
            }
            Ok(Decoded::End) => {
                assert_eq!(peeked, Ok(None));
                break;
            }
            Err(_) => pos += 8,
        }
    }
}
