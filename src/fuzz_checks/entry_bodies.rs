//! The decoders of KV, queue, stream and time-series entry bodies on arbitrary bytes: never
//! panic, and what decodes re-encodes to the same bytes.

use crate::kv::entry::{
    decode_delete, decode_delete_at, decode_put, decode_sweep, encode_delete, encode_delete_at, encode_put,
    encode_sweep,
};
use crate::queue::entry::{
    decode_any_enqueue, decode_enqueue, decode_op, decode_purge, encode_add, encode_enqueue, encode_op, ENTRY_QUEUE_ADD,
};
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
    if let Ok(d) = decode_delete_at(data) {
        assert_eq!(encode_delete_at(d.version, d.deleted_at_ms, d.namespace, d.key), data);
    }
    if let Ok(s) = decode_sweep(data) {
        assert_eq!(encode_sweep(s.at_ms, s.namespace, &s.records), data);
    }
    if let Ok((h, window, msgs)) = decode_any_enqueue(ENTRY_QUEUE_ADD, data) {
        let mut out = msgs.clone();
        for m in &mut out {
            m.payload_offset = 0;
        }
        assert_eq!(encode_add(&h, window, &mut out), data);
        assert_eq!(out, msgs, "payload offsets");
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
    // Time-series entries of form 0 (before per-partition state) are decoded, never written:
    // only the points re-encode in that form.
    if let Ok(p) = ts::decode_points(data) {
        let points: Vec<(u32, i64, f64)> = p.iter().collect();
        let again = match p.partition {
            Some(part) => ts::encode_points(
                p.namespace,
                part,
                p.batch_id,
                p.part_count,
                p.at_ms,
                &p.new_series,
                &points,
            ),
            None => ts::encode_points_form0(p.namespace, p.batch_id, &p.participants, &p.new_series, &points),
        };
        assert_eq!(again, data);
    }
    if let Ok((h, id)) = ts::decode_abort(data) {
        if let Some(part) = h.partition {
            assert_eq!(ts::encode_abort(h.namespace, part, id), data);
        }
    }
    if let Ok(c) = ts::decode_chunk(data) {
        if let Some(part) = c.partition {
            assert_eq!(ts::encode_chunk(c.namespace, part, c.series, c.kind, c.bytes), data);
        }
    }
    if let Ok((h, m, age)) = ts::decode_retention(data) {
        if let Some(part) = h.partition {
            assert_eq!(ts::encode_retention(h.namespace, part, m, age), data);
        }
    }
    if let Ok((h, series, what)) = ts::decode_drop(data) {
        if let (Some(part), ts::Dropped::Before(before)) = (h.partition, what) {
            assert_eq!(ts::encode_drop(h.namespace, part, series, before), data);
        }
    }
    for t in stream::ENTRY_GROUP_CREATE..=stream::ENTRY_GROUP_DELETE {
        if let Ok((h, group, op)) = stream::decode_group(t, data) {
            assert_eq!(stream::group_entry_type(&op), t);
            assert_eq!(stream::encode_group(&h, group, &op), data);
        }
    }
}
