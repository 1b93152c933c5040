//! The decoders of KV, queue, stream and time-series entry bodies on arbitrary bytes: never
//! panic, and what decodes re-encodes to the same bytes.

use crate::kv::entry::{decode_delete, decode_put, encode_delete, encode_put};
use crate::queue::entry::{decode_enqueue, decode_op, decode_purge, encode_enqueue, encode_op};
use crate::stream::entry as stream;
use crate::ts::entry as ts;

/// Checks one input; panics on a violation.
pub fn check(data: &[u8]) {
    if let Ok(p) = decode_put(data) {
        assert_eq!(
            encode_put(p.version, p.expires_at_ms, p.namespace, p.key, p.value),
            data
        );
    }
    if let Ok(d) = decode_delete(data) {
        assert_eq!(encode_delete(d.version, d.namespace, d.key), data);
    }
    if let Ok((h, msgs)) = decode_enqueue(data) {
        let mut out = msgs.clone();
        for m in &mut out {
            m.payload_offset = 0;
        }
        assert_eq!(encode_enqueue(&h, &mut out), data);
        assert_eq!(out, msgs, "payload offsets");
    }
    if let Ok((h, op)) = decode_op(data) {
        assert_eq!(encode_op(&h, Some(&op)), data);
    }
    if let Ok(h) = decode_purge(data) {
        assert_eq!(encode_op(&h, None), data);
    }
    if let Ok(a) = stream::decode_append(data) {
        let payloads: Vec<Vec<u8>> = a.records().map(<[u8]>::to_vec).collect();
        assert_eq!(payloads.len(), a.count as usize);
        assert_eq!(stream::encode_append(&a.head, a.first_offset, &payloads), data);
    }
    if let Ok((h, before)) = stream::decode_trim(data) {
        assert_eq!(stream::encode_trim(&h, before), data);
    }
    if let Ok((h, r)) = stream::decode_retention(data) {
        assert_eq!(stream::encode_retention(&h, &r), data);
    }
    if let Ok(p) = ts::decode_points(data) {
        let points: Vec<(u32, i64, f64)> = p.iter().collect();
        assert_eq!(
            ts::encode_points(p.namespace, p.batch_id, &p.participants, &p.new_series, &points),
            data
        );
    }
    if let Ok((ns, id)) = ts::decode_abort(data) {
        assert_eq!(ts::encode_abort(ns, id), data);
    }
    if let Ok(c) = ts::decode_chunk(data) {
        assert_eq!(ts::encode_chunk(c.namespace, c.series, c.kind, c.bytes), data);
    }
    if let Ok((ns, m, age)) = ts::decode_retention(data) {
        assert_eq!(ts::encode_retention(ns, m, age), data);
    }
    if let Ok((ns, series, lsns)) = ts::decode_drop(data) {
        assert_eq!(ts::encode_drop(ns, series, &lsns), data);
    }
    for t in stream::ENTRY_GROUP_CREATE..=stream::ENTRY_GROUP_DELETE {
        if let Ok((h, group, op)) = stream::decode_group(t, data) {
            assert_eq!(stream::group_entry_type(&op), t);
            assert_eq!(stream::encode_group(&h, group, &op), data);
        }
    }
}
