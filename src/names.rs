//! The rules for names that reach the log and snapshots: namespaces, queues, streams, groups
//! and measurements match `[A-Za-z0-9_.:-]{1,128}`; KV keys are 1..=1024 bytes of UTF-8. The API
//! checks them on the way in, the decoders of stored data on the way out.

/// Longest name (namespace, queue, stream, group, measurement).
pub const NAME_MAX_BYTES: usize = 128;
/// Longest KV key, after decoding.
pub const KEY_MAX_BYTES: usize = 1024;

/// True for a valid namespace, queue, stream, group or measurement name.
pub fn is_valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= NAME_MAX_BYTES
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'))
}
