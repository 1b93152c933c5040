//! The scrub's check of a sealed segment: every byte of it, where recovery reads only part.
//!
//! Recovery checks a sealed segment's header, trailer and footer, and replays only the entries
//! after the snapshot; reads check the entries they use. A bit that rots in an entry nothing
//! reads any more, or in the zeros between the footer and the trailer, stays unnoticed until a
//! read fails or never. [`check_sealed`] reads all of it: the header, the footer through its
//! trailer, every entry (CRC, length, zero padding, the LSN sequence the footer states), and
//! the zeros.
//!
//! Invariant checked: a sealed segment is `header | entries | footer | zeros | trailer`, the
//! footer at `entries_end`, as `format-spec/log.md` lays it out; sealed segments never change.

use super::format::{
    decode_entry, Decoded, Footer, SegmentHeader, Trailer, ENTRY_HEADER_BYTES, SEGMENT_HEADER_BYTES, TRAILER_BYTES,
};
use super::recovery::{first_nonzero, footer_bytes};

/// What a sealed segment holds, once checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checked {
    pub first_lsn: u64,
    pub entries: u64,
}

/// Checks every byte of the sealed segment `bytes` of shard `shard_id`; the error is the
/// offset of the first damage found and what is wrong there.
pub fn check_sealed(bytes: &[u8], shard_id: u32) -> Result<Checked, (u64, String)> {
    let header = SegmentHeader::decode(bytes).map_err(|e| (0, format!("segment header: {e}")))?;
    if header.shard_id != shard_id {
        return Err((16, format!("a segment of shard {}", header.shard_id)));
    }
    if header.segment_bytes != bytes.len() as u64 || bytes.len() < SEGMENT_HEADER_BYTES + TRAILER_BYTES {
        return Err((
            32,
            format!(
                "header says {} bytes, the file has {}",
                header.segment_bytes,
                bytes.len()
            ),
        ));
    }
    let trailer_at = bytes.len() - TRAILER_BYTES;
    let trailer = match Trailer::decode(&bytes[trailer_at..]) {
        Ok(Some(t)) => t,
        Ok(None) => return Err((trailer_at as u64, "no trailer: the segment is not sealed".into())),
        Err(e) => return Err((trailer_at as u64, format!("trailer: {e}"))),
    };
    let footer_bytes = footer_bytes(bytes, trailer_at, &trailer)
        .ok_or((trailer.footer_offset, "footer does not match its trailer".to_string()))?;
    // In range: `footer_bytes` found it before the trailer.
    let footer_at = trailer.footer_offset as usize;
    let footer_end = footer_at + footer_bytes.len();
    let footer = Footer::decode(footer_bytes).map_err(|e| (footer_at as u64, format!("footer: {e}")))?;
    if footer.first_lsn != header.first_lsn || footer.entries_end != trailer.footer_offset {
        return Err((
            footer_at as u64,
            format!(
                "footer says LSN {} and entries up to {}; header LSN {}, footer at {footer_at}",
                footer.first_lsn, footer.entries_end, header.first_lsn
            ),
        ));
    }
    let mut pos = SEGMENT_HEADER_BYTES;
    let mut lsn = header.first_lsn;
    while pos < footer_at {
        match decode_entry(&bytes[pos..footer_at]) {
            Ok(Decoded::Entry(e)) if e.lsn == lsn => {
                let (used, next) = (pos + ENTRY_HEADER_BYTES + e.body.len(), pos + e.stored_bytes());
                if let Some(x) = bytes[used..next].iter().position(|&b| b != 0) {
                    return Err(((used + x) as u64, "nonzero padding after an entry".into()));
                }
                pos = next;
                lsn = lsn
                    .checked_add(1)
                    .ok_or((pos as u64, "LSNs run past the largest".to_string()))?;
            }
            Ok(Decoded::Entry(e)) => return Err((pos as u64, format!("entry {} where {lsn} belongs", e.lsn))),
            Ok(Decoded::End) => return Err((pos as u64, "zeros where the footer says entries are".into())),
            Err(e) => return Err((pos as u64, e.to_string())),
        }
    }
    let entries = lsn - header.first_lsn;
    if pos != footer_at || entries != footer.entry_count || lsn.checked_sub(1) != Some(footer.last_lsn) {
        return Err((
            pos as u64,
            format!(
                "{entries} entries up to {pos}; the footer says {} up to LSN {}",
                footer.entry_count, footer.last_lsn
            ),
        ));
    }
    let nonzero = first_nonzero(bytes, footer_end, trailer_at);
    if nonzero != trailer_at {
        return Err((
            nonzero as u64,
            "nonzero bytes between the footer and the trailer".into(),
        ));
    }
    Ok(Checked {
        first_lsn: header.first_lsn,
        entries,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::format::{encode_entry, FLAG_BATCH_START, MIN_SEGMENT_BYTES};

    /// A sealed segment of shard 3 with `n` entries from LSN 10, laid out as the writer seals.
    fn sealed(n: u64) -> Vec<u8> {
        let len = MIN_SEGMENT_BYTES as usize;
        let mut b = vec![0u8; len];
        let header = SegmentHeader {
            shard_id: 3,
            first_lsn: 10,
            segment_bytes: len as u64,
            created_at_ms: 1,
        };
        b[..SEGMENT_HEADER_BYTES].copy_from_slice(&header.encode());
        let mut entries = Vec::new();
        for i in 0..n {
            let flags = if i == 0 { FLAG_BATCH_START } else { 0 };
            encode_entry(&mut entries, 10 + i, 1, flags, format!("entry {i}").as_bytes());
        }
        let end = SEGMENT_HEADER_BYTES + entries.len();
        b[SEGMENT_HEADER_BYTES..end].copy_from_slice(&entries);
        let footer = Footer {
            first_lsn: 10,
            last_lsn: 10 + n - 1,
            entry_count: n,
            entries_end: end as u64,
            live_bytes: 0,
            dead_bytes: 0,
            index_count: 0,
        }
        .encode();
        b[end..end + footer.len()].copy_from_slice(&footer);
        let trailer = Trailer {
            footer_offset: end as u64,
            footer_bytes: footer.len() as u32,
            footer_crc: crc32fast::hash(&footer),
        }
        .encode();
        b[len - TRAILER_BYTES..].copy_from_slice(&trailer);
        b
    }

    #[test]
    fn a_sound_segment_passes_and_every_damaged_byte_is_found() {
        let good = sealed(20);
        assert_eq!(
            check_sealed(&good, 3),
            Ok(Checked {
                first_lsn: 10,
                entries: 20
            })
        );
        assert!(check_sealed(&good, 4).is_err(), "another shard's segment");
        let footer_at = good.len() - TRAILER_BYTES - 4096;
        // Flip one bit at many places: the header, entries and their padding, the footer, the
        // zeros between the footer and the trailer, the trailer. Every one is found.
        let mut rng = crate::test_rng::Rng(5);
        for _ in 0..2000 {
            let at = match rng.below(4) {
                0 => rng.index(1024),
                1 => footer_at + rng.index(4096),
                2 => good.len() - TRAILER_BYTES + rng.index(TRAILER_BYTES),
                _ => rng.index(good.len()),
            };
            let mut bad = good.clone();
            bad[at] ^= 1 << rng.below(8);
            assert!(check_sealed(&bad, 3).is_err(), "a flipped bit at {at} passed");
        }
    }
}
