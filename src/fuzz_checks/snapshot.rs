//! Snapshot decoding (`format-spec/snapshot.md`) on arbitrary bytes: the container check and
//! every section's restore never panic and never allocate without bound. The first byte picks
//! what the rest is fed to (a whole file, or one section's body, since a fuzzer rarely forges a
//! file whose CRCs match); what restores re-encodes, and that encoding restores again to the
//! same bytes.

use crate::kv::KvStore;
use crate::namespace::NamespaceRegistry;
use crate::queue::state::QueueStore;
use crate::snapshot::codec::{Dec, Enc};
use crate::snapshot::file;
use crate::stream::state::StreamStore;
use crate::ts::series::SeriesStore;

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
                for (_, body) in p.sections.iter().skip(1) {
                    let _ = file::split_partition(body);
                }
            }
        }
        1 => round_trip(
            rest,
            |d| NamespaceRegistry::decode(d, None),
            NamespaceRegistry::snapshot,
        ),
        2 => round_trip(rest, |d| KvStore::decode(d, None), KvStore::snapshot),
        3 => round_trip(rest, |d| QueueStore::decode(d, None), QueueStore::snapshot),
        4 => round_trip(rest, |d| StreamStore::decode(d, None), StreamStore::snapshot),
        _ => round_trip(rest, |d| SeriesStore::decode(d, None), SeriesStore::snapshot),
    }
}
