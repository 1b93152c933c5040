//! Snapshot decoding (`format-spec/snapshot.md`) on arbitrary bytes: the container check and
//! every section's restore never panic and never allocate without bound. The first byte picks
//! what the rest is fed to (a whole file, or one section's body, since a fuzzer rarely forges a
//! file whose CRCs match); what restores re-encodes, and that encoding restores again to the
//! same bytes.

use crate::kv::KvStore;
use crate::namespace::NamespaceRegistry;
use crate::queue::state::{QueueConfig, QueueStore};
use crate::snapshot::codec::{Dec, Enc};
use crate::snapshot::file;
use crate::stream::state::StreamStore;
use crate::ts::series::SeriesStore;

fn queue_config() -> QueueConfig {
    QueueConfig {
        max_deliveries: 5,
        dedup_window_ms: 300_000,
    }
}

/// Restores `body` with `restore`; if it restores, its snapshot restores to the same bytes.
fn round_trip<T>(body: &[u8], restore: impl Fn(&mut Dec<'_>) -> Result<T, String>, snapshot: impl Fn(&T, &mut Enc)) {
    let mut d = Dec::new(body);
    let Ok(t) = restore(&mut d) else {
        return;
    };
    let mut e = Enc::new();
    snapshot(&t, &mut e);
    let (once, pending, _) = e.finish();
    assert!(pending.is_empty(), "a restored store has nothing in flight");
    let back = restore(&mut Dec::new(&once)).expect("a snapshot of a restored store restores");
    let mut e = Enc::new();
    snapshot(&back, &mut e);
    assert_eq!(e.finish().0, once, "snapshots of a restored store are stable");
}

/// Checks one input; panics on a violation.
pub fn check(data: &[u8]) {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    match which % 6 {
        0 => {
            if let Ok(p) = file::decode(rest) {
                let _ = file::decode_segments(&mut p.section(file::SECTION_SEGMENTS));
            }
        }
        1 => round_trip(rest, NamespaceRegistry::restore, NamespaceRegistry::snapshot),
        2 => round_trip(rest, KvStore::restore, KvStore::snapshot),
        3 => round_trip(rest, |d| QueueStore::restore(queue_config(), d), QueueStore::snapshot),
        4 => round_trip(rest, StreamStore::restore, StreamStore::snapshot),
        _ => round_trip(rest, SeriesStore::restore, SeriesStore::snapshot),
    }
}
