//! `RELOCATED` entries (type 2, `format-spec/log.md`): compaction's copy of an entry it moves
//! out of a segment it is about to free. The body names where the original was and carries the
//! original's type and body unchanged, so every reader sees the copy as the original
//! ([`inner`]) and replay can tell the state machines "the entry at (segment, offset) is now
//! here".
//!
//! Invariant: a copy never wraps a copy (compaction unwraps before copying again), and the
//! original body starts 8-aligned in the segment (24-byte entry header + 24-byte prefix).

/// Log entry type of a relocated copy.
pub const ENTRY_RELOCATED: u16 = 2;
/// Bytes before the original body: u64 from_segment, u64 from_offset, u16 type, u16 + u32 zero.
pub const PREFIX_BYTES: usize = 24;

/// A decoded `RELOCATED` body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Relocated<'a> {
    /// Where the original entry was: its segment (first LSN) and offset.
    pub from_segment: u64,
    pub from_offset: u64,
    pub entry_type: u16,
    pub body: &'a [u8],
}

/// The body of a copy of the entry of `entry_type` with `body` found at (`segment`, `offset`).
pub fn encode(from_segment: u64, from_offset: u64, entry_type: u16, body: &[u8]) -> Vec<u8> {
    debug_assert_ne!(entry_type, ENTRY_RELOCATED, "copies are never wrapped twice");
    let mut out = Vec::with_capacity(PREFIX_BYTES + body.len());
    out.extend_from_slice(&from_segment.to_le_bytes());
    out.extend_from_slice(&from_offset.to_le_bytes());
    out.extend_from_slice(&entry_type.to_le_bytes());
    out.extend_from_slice(&[0u8; 6]);
    out.extend_from_slice(body);
    out
}

/// Decodes a `RELOCATED` body.
pub fn decode(body: &[u8]) -> Result<Relocated<'_>, String> {
    if body.len() < PREFIX_BYTES {
        return Err(format!("relocated entry of {} bytes is too short", body.len()));
    }
    let u64_at = |at: usize| {
        let mut a = [0u8; 8];
        a.copy_from_slice(&body[at..at + 8]);
        u64::from_le_bytes(a)
    };
    let entry_type = u16::from_le_bytes([body[16], body[17]]);
    if body[18..24].iter().any(|&b| b != 0) {
        return Err("relocated entry: reserved bytes are not zero".into());
    }
    if entry_type == ENTRY_RELOCATED || entry_type == 0 {
        return Err(format!("relocated entry wraps type {entry_type}"));
    }
    let from_segment = u64_at(0);
    if from_segment == 0 {
        return Err("relocated entry from segment 0".into());
    }
    Ok(Relocated {
        from_segment,
        from_offset: u64_at(8),
        entry_type,
        body: &body[PREFIX_BYTES..],
    })
}

/// The type and body a reader sees: a copy's original, or the entry itself.
pub fn inner(entry_type: u16, body: &[u8]) -> (u16, &[u8]) {
    if entry_type == ENTRY_RELOCATED {
        if let Ok(r) = decode(body) {
            return (r.entry_type, r.body);
        }
    }
    (entry_type, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let b = encode(4097, 640, 100, b"original body");
        let r = decode(&b).unwrap();
        assert_eq!(
            (r.from_segment, r.from_offset, r.entry_type, r.body),
            (4097, 640, 100, &b"original body"[..])
        );
        assert_eq!(inner(ENTRY_RELOCATED, &b), (100, &b"original body"[..]));
        assert_eq!(inner(100, b"x"), (100, &b"x"[..]));
        assert!(decode(&b[..23]).is_err());
        let mut twice = b.clone();
        twice[16] = ENTRY_RELOCATED as u8;
        assert!(decode(&twice).is_err());
        let mut reserved = b;
        reserved[20] = 1;
        assert!(decode(&reserved).is_err());
    }
}
