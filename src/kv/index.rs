//! An ordered map from byte keys to small fixed-size records, packed for memory.
//!
//! Keys live in leaves of at most [`LEAF_CAP`] records. A leaf holds its records in key order in
//! one vector and the key bytes, unordered, in one byte buffer; each record carries a [`KeyRef`]
//! (offset and length into that buffer), so a key costs its own bytes plus the record, with no
//! allocation or pointer of its own. Leaves are found through a `BTreeMap` from a separator (the
//! smallest key the leaf may hold) to the leaf, which costs a few bytes per key at most.
//!
//! Leaves are shared by reference count: [`Index::share`] makes a copy in time proportional to
//! the number of leaves, and whichever copy changes a shared leaf afterwards copies that leaf
//! first (copy on write). A snapshot encodes such a copy bit by bit while the shard goes on.
//!
//! Invariants: the first leaf's separator is empty and it always exists; every key of a leaf is
//! ≥ its separator and < the next leaf's separator; records in a leaf are strictly increasing by
//! key; a leaf other than the first is never empty; a leaf's dead key bytes (`garbage`) never
//! exceed its live key bytes by more than [`REPACK_SLACK`].

use std::collections::BTreeMap;
use std::ops::Bound;
use std::rc::Rc;

/// Records per leaf at most. A split of a leaf filled at its end keeps it full (keys written in
/// order pack leaves completely); other splits halve it.
pub const LEAF_CAP: usize = 64;
/// Records a leaf's vector grows by: exact small steps, not doubling, so a leaf carries at most
/// this many unused slots (leaves of random inserts are about 70% full; doubling capacity
/// would leave the rest empty).
const GROW: usize = 8;
/// Dead key bytes a leaf may carry beyond its live ones before its buffer is repacked.
const REPACK_SLACK: usize = 1024;
/// Longest key an index holds.
pub const KEY_MAX: usize = (1 << KEY_LEN_BITS) - 1;
const KEY_LEN_BITS: u32 = 11;

/// Where a record's key is in its leaf's key buffer: 21 bits of offset, 11 of length.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KeyRef(u32);

impl KeyRef {
    fn new(offset: usize, len: usize) -> KeyRef {
        assert!(len <= KEY_MAX, "key of {len} bytes");
        assert!(offset < 1 << (32 - KEY_LEN_BITS), "leaf key buffer overflow");
        KeyRef(((offset as u32) << KEY_LEN_BITS) | len as u32)
    }

    fn range(self) -> std::ops::Range<usize> {
        let off = (self.0 >> KEY_LEN_BITS) as usize;
        off..off + (self.0 & ((1 << KEY_LEN_BITS) - 1)) as usize
    }
}

/// A record stored in an [`Index`]: it carries the reference to its key, which the index sets.
pub trait Keyed: Copy {
    fn key_ref(&self) -> KeyRef;
    fn set_key_ref(&mut self, r: KeyRef);
}

#[derive(Clone)]
struct Leaf<T> {
    items: Vec<T>,
    keys: Vec<u8>,
    garbage: usize,
}

impl<T: Keyed> Leaf<T> {
    fn new() -> Leaf<T> {
        Leaf {
            items: Vec::with_capacity(GROW),
            keys: Vec::new(),
            garbage: 0,
        }
    }

    fn key(&self, i: usize) -> &[u8] {
        &self.keys[self.items[i].key_ref().range()]
    }

    fn find(&self, key: &[u8]) -> Result<usize, usize> {
        self.items
            .binary_search_by(|it| self.keys[it.key_ref().range()].cmp(key))
    }

    fn push_key(&mut self, key: &[u8]) -> KeyRef {
        if self.keys.capacity() - self.keys.len() < key.len() {
            // Grow by a quarter, not double: the slack is memory every leaf carries.
            self.keys.reserve_exact(key.len().max(self.keys.len() / 4).max(64));
        }
        let r = KeyRef::new(self.keys.len(), key.len());
        self.keys.extend_from_slice(key);
        r
    }

    fn insert(&mut self, i: usize, key: &[u8], mut rec: T) {
        debug_assert!(self.items.len() < LEAF_CAP);
        if self.items.len() == self.items.capacity() {
            self.items.reserve_exact(GROW.min(LEAF_CAP - self.items.len()));
        }
        rec.set_key_ref(self.push_key(key));
        self.items.insert(i, rec);
    }

    fn remove(&mut self, i: usize) -> T {
        let rec = self.items.remove(i);
        self.garbage += rec.key_ref().range().len();
        if self.garbage > self.keys.len() - self.garbage + REPACK_SLACK {
            self.repack();
        }
        rec
    }

    /// Rewrites the key buffer with only live keys, in record order.
    fn repack(&mut self) {
        let live = self.keys.len() - self.garbage;
        let mut keys = Vec::with_capacity(live + live / 4);
        for it in &mut self.items {
            let r = it.key_ref().range();
            let nr = KeyRef::new(keys.len(), r.len());
            keys.extend_from_slice(&self.keys[r]);
            it.set_key_ref(nr);
        }
        self.keys = keys;
        self.garbage = 0;
    }

    /// Moves the records from `at` on into a new leaf.
    fn split_off(&mut self, at: usize) -> Leaf<T> {
        let mut right = Leaf::new();
        right.items.reserve_exact(self.items.len() - at);
        for i in at..self.items.len() {
            let rec = self.items[i];
            let r = right.push_key(&self.keys[rec.key_ref().range()]);
            let mut rec = rec;
            rec.set_key_ref(r);
            right.items.push(rec);
        }
        for i in at..self.items.len() {
            self.garbage += self.items[i].key_ref().range().len();
        }
        self.items.truncate(at);
        self.items.shrink_to(at + GROW);
        self.repack();
        right
    }

    /// Appends every record of `other` (all of whose keys are greater).
    fn absorb(&mut self, other: &Leaf<T>) {
        debug_assert!(self.items.len() + other.items.len() <= LEAF_CAP);
        self.items.reserve_exact(other.items.len());
        for i in 0..other.items.len() {
            let mut rec = other.items[i];
            rec.set_key_ref(self.push_key(other.key(i)));
            self.items.push(rec);
        }
    }

    fn heap_bytes(&self) -> usize {
        self.items.capacity() * std::mem::size_of::<T>() + self.keys.capacity()
    }
}

/// The ordered map.
pub struct Index<T> {
    leaves: BTreeMap<Box<[u8]>, Rc<Leaf<T>>>,
    len: usize,
}

impl<T: Keyed> Default for Index<T> {
    fn default() -> Self {
        let mut leaves = BTreeMap::new();
        leaves.insert(Box::<[u8]>::default(), Rc::new(Leaf::new()));
        Index { leaves, len: 0 }
    }
}

impl<T: Keyed> Index<T> {
    /// A copy that shares every leaf with this index: it costs the separators, not the
    /// records, and either side copies a leaf before its first change to it.
    pub fn share(&self) -> Index<T> {
        Index {
            leaves: self.leaves.clone(),
            len: self.len,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn leaf(&self, key: &[u8]) -> (&[u8], &Leaf<T>) {
        let (sep, leaf) = self
            .leaves
            .range::<[u8], _>((Bound::Unbounded, Bound::Included(key)))
            .next_back()
            .expect("the first leaf covers every key");
        (sep, leaf)
    }
}

/// The leaf covering `key`, to change: copied first if another index shares it.
fn leaf_mut<'a, T: Keyed>(leaves: &'a mut BTreeMap<Box<[u8]>, Rc<Leaf<T>>>, key: &[u8]) -> (&'a [u8], &'a mut Leaf<T>) {
    let (sep, leaf) = leaves
        .range_mut::<[u8], _>((Bound::Unbounded, Bound::Included(key)))
        .next_back()
        .expect("the first leaf covers every key");
    (sep, Rc::make_mut(leaf))
}

impl<T: Keyed> Index<T> {
    pub fn get(&self, key: &[u8]) -> Option<&T> {
        let (_, leaf) = self.leaf(key);
        leaf.find(key).ok().map(|i| &leaf.items[i])
    }

    /// The record of `key`, to change in place (its key reference must stay as it is).
    pub fn get_mut(&mut self, key: &[u8]) -> Option<&mut T> {
        // Look before copying a shared leaf for a key it does not hold.
        self.get(key)?;
        let (_, leaf) = leaf_mut(&mut self.leaves, key);
        match leaf.find(key) {
            Ok(i) => Some(&mut leaf.items[i]),
            Err(_) => None,
        }
    }

    /// Inserts or replaces; returns the record replaced.
    pub fn insert(&mut self, key: &[u8], rec: T) -> Option<T> {
        let (_, leaf) = leaf_mut(&mut self.leaves, key);
        let i = match leaf.find(key) {
            Ok(i) => {
                let old = leaf.items[i];
                let mut rec = rec;
                rec.set_key_ref(old.key_ref());
                leaf.items[i] = rec;
                return Some(old);
            }
            Err(i) => i,
        };
        self.len += 1;
        if leaf.items.len() < LEAF_CAP {
            leaf.insert(i, key, rec);
            return None;
        }
        // Full: split. Appending at the end starts a new leaf and leaves this one full.
        let (sep, right) = if i == LEAF_CAP {
            let mut right = Leaf::new();
            right.insert(0, key, rec);
            (Box::from(key), right)
        } else {
            let mut right = leaf.split_off(LEAF_CAP / 2);
            if i <= LEAF_CAP / 2 {
                leaf.insert(i, key, rec);
            } else {
                right.insert(i - LEAF_CAP / 2, key, rec);
            }
            (Box::from(right.key(0)), right)
        };
        self.leaves.insert(sep, Rc::new(right));
        None
    }

    /// Appends a record whose key is greater than every key held (building an index in key
    /// order, as a snapshot's restore does) without searching; false, and nothing changed, if
    /// the key is not the greatest.
    pub fn push_greatest(&mut self, key: &[u8], rec: T) -> bool {
        let (_, leaf) = self
            .leaves
            .iter_mut()
            .next_back()
            .expect("the first leaf always exists");
        let leaf = Rc::make_mut(leaf);
        if leaf
            .items
            .last()
            .is_some_and(|last| leaf.keys[last.key_ref().range()] >= *key)
        {
            return false;
        }
        if leaf.items.is_empty() && self.len > 0 {
            // Only the first leaf can be empty while others hold keys; not the last one.
            return false;
        }
        self.len += 1;
        if leaf.items.len() < LEAF_CAP {
            let i = leaf.items.len();
            leaf.insert(i, key, rec);
        } else {
            let mut right = Leaf::new();
            right.insert(0, key, rec);
            self.leaves.insert(Box::from(key), Rc::new(right));
        }
        true
    }

    /// Removes a key; returns its record.
    pub fn remove(&mut self, key: &[u8]) -> Option<T> {
        self.get(key)?;
        let (sep, leaf) = leaf_mut(&mut self.leaves, key);
        let i = leaf.find(key).ok()?;
        let rec = leaf.remove(i);
        self.len -= 1;
        if leaf.items.len() < LEAF_CAP / 4 {
            let sep: Box<[u8]> = sep.into();
            self.rebalance(sep);
        }
        Some(rec)
    }

    /// Merges an underfull leaf with its right neighbour when both fit in one (or drops it if it
    /// is empty and not the first).
    fn rebalance(&mut self, sep: Box<[u8]>) {
        let next = self
            .leaves
            .range::<[u8], _>((Bound::Excluded(&*sep), Bound::Unbounded))
            .next()
            .map(|(k, l)| (k.clone(), l.items.len()));
        let len = self.leaves.get(&sep).map_or(0, |l| l.items.len());
        if len == 0 && !sep.is_empty() {
            self.leaves.remove(&sep);
            return;
        }
        if let Some((next_sep, next_len)) = next {
            if len + next_len <= LEAF_CAP * 3 / 4 {
                if let Some(right) = self.leaves.remove(&next_sep) {
                    if let Some(leaf) = self.leaves.get_mut(&sep) {
                        Rc::make_mut(leaf).absorb(&right);
                    }
                }
            }
        }
    }

    /// Records from `lower` on, in key order.
    pub fn range_from<'a>(&'a self, lower: Bound<&[u8]>) -> Range<'a, T> {
        let (start_key, excluded) = match lower {
            Bound::Unbounded => (&[][..], false),
            Bound::Included(k) => (k, false),
            Bound::Excluded(k) => (k, true),
        };
        let (sep, leaf) = self.leaf(start_key);
        let idx = match leaf.find(start_key) {
            Ok(i) if excluded => i + 1,
            Ok(i) | Err(i) => i,
        };
        Range {
            rest: self.leaves.range::<[u8], _>((Bound::Excluded(sep), Bound::Unbounded)),
            leaf,
            idx,
        }
    }

    /// Heap bytes the index holds: leaf records and key buffers at their capacity, separators,
    /// and the separator map's entries (counted at the size of its nodes' slots, half full).
    pub fn heap_bytes(&self) -> usize {
        let per_map_entry = 2 * (std::mem::size_of::<Box<[u8]>>() + std::mem::size_of::<Rc<Leaf<T>>>());
        // A leaf's own allocation: its vectors' headers and the two reference counts.
        let per_leaf = std::mem::size_of::<Leaf<T>>() + 2 * std::mem::size_of::<usize>();
        self.leaves
            .iter()
            .map(|(sep, leaf)| leaf.heap_bytes() + sep.len() + per_map_entry + per_leaf)
            .sum()
    }
}

/// The iterator of [`Index::range_from`].
pub struct Range<'a, T> {
    rest: std::collections::btree_map::Range<'a, Box<[u8]>, Rc<Leaf<T>>>,
    leaf: &'a Leaf<T>,
    idx: usize,
}

impl<'a, T: Keyed> Iterator for Range<'a, T> {
    type Item = (&'a [u8], &'a T);

    fn next(&mut self) -> Option<Self::Item> {
        while self.idx >= self.leaf.items.len() {
            self.leaf = self.rest.next()?.1.as_ref();
            self.idx = 0;
        }
        let i = self.idx;
        self.idx += 1;
        Some((self.leaf.key(i), &self.leaf.items[i]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::sim::SplitMix64;

    #[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
    struct Rec {
        v: u64,
        k: KeyRef,
    }

    impl Keyed for Rec {
        fn key_ref(&self) -> KeyRef {
            self.k
        }
        fn set_key_ref(&mut self, r: KeyRef) {
            self.k = r;
        }
    }

    fn rec(v: u64) -> Rec {
        Rec {
            v,
            k: KeyRef::default(),
        }
    }

    fn check_invariants(ix: &Index<Rec>) {
        let mut prev: Option<Vec<u8>> = None;
        let mut n = 0;
        let first = ix.leaves.keys().next().unwrap();
        assert!(first.is_empty(), "the first leaf's separator is empty");
        let seps: Vec<_> = ix.leaves.keys().cloned().collect();
        for (li, (sep, leaf)) in ix.leaves.iter().enumerate() {
            assert!(li == 0 || !leaf.items.is_empty(), "only the first leaf may be empty");
            assert!(leaf.items.len() <= LEAF_CAP);
            for i in 0..leaf.items.len() {
                let k = leaf.key(i);
                assert!(k >= &**sep);
                if let Some(next) = seps.get(li + 1) {
                    assert!(k < &**next);
                }
                if let Some(p) = &prev {
                    assert!(p.as_slice() < k, "keys strictly increase");
                }
                prev = Some(k.to_vec());
                n += 1;
            }
            assert!(leaf.garbage <= leaf.keys.len() - leaf.garbage + REPACK_SLACK + KEY_MAX);
        }
        assert_eq!(n, ix.len());
    }

    #[test]
    fn a_shared_copy_keeps_its_contents_while_either_side_changes() {
        let mut rng = SplitMix64(11);
        let mut ix = Index::<Rec>::default();
        let mut model = BTreeMap::<Vec<u8>, u64>::new();
        type Model = BTreeMap<Vec<u8>, u64>;
        let mut copies: Vec<(Index<Rec>, Model)> = Vec::new();
        for step in 0..40_000u64 {
            let key = format!("k{:05}", rng.next_u64() % 2000).into_bytes();
            match rng.next_u64() % 10 {
                0..=5 => assert_eq!(ix.insert(&key, rec(step)).map(|r| r.v), model.insert(key, step)),
                6..=7 => assert_eq!(ix.remove(&key).map(|r| r.v), model.remove(&key)),
                8 => {
                    if let Some(r) = ix.get_mut(&key) {
                        r.v = step;
                        model.insert(key, step);
                    }
                }
                _ => {
                    if step % 97 == 0 {
                        copies.push((ix.share(), model.clone()));
                    }
                }
            }
            // A copy changed on its own side too: the original must not see it.
            if step % 1000 == 999 {
                if let Some((c, m)) = copies.last_mut() {
                    c.insert(b"zz-copy-only", rec(step));
                    m.insert(b"zz-copy-only".to_vec(), step);
                    c.remove(b"k00001");
                    m.remove(&b"k00001"[..]);
                }
            }
        }
        let all = |ix: &Index<Rec>| -> Vec<(Vec<u8>, u64)> {
            ix.range_from(Bound::Unbounded)
                .map(|(k, r)| (k.to_vec(), r.v))
                .collect()
        };
        let want =
            |m: &BTreeMap<Vec<u8>, u64>| -> Vec<(Vec<u8>, u64)> { m.iter().map(|(k, v)| (k.clone(), *v)).collect() };
        assert!(copies.len() > 10);
        for (c, m) in &copies {
            check_invariants(c);
            assert_eq!(all(c), want(m));
        }
        check_invariants(&ix);
        assert_eq!(all(&ix), want(&model));
        assert!(!model.contains_key(&b"zz-copy-only"[..]));
    }

    #[test]
    fn matches_a_btreemap_under_random_operations() {
        let mut rng = SplitMix64(7);
        let mut ix = Index::<Rec>::default();
        let mut model = BTreeMap::<Vec<u8>, u64>::new();
        for step in 0..60_000u64 {
            let n = rng.next_u64() % 3000;
            let key = format!("k{:0w$}", n, w = (n % 7) as usize).into_bytes();
            match rng.next_u64() % 10 {
                0..=5 => {
                    assert_eq!(ix.insert(&key, rec(step)).map(|r| r.v), model.insert(key, step));
                }
                6..=8 => assert_eq!(ix.remove(&key).map(|r| r.v), model.remove(&key)),
                _ => {
                    let lower = match rng.next_u64() % 3 {
                        0 => Bound::Unbounded,
                        1 => Bound::Included(key.as_slice()),
                        _ => Bound::Excluded(key.as_slice()),
                    };
                    let got: Vec<_> = ix.range_from(lower).take(50).map(|(k, r)| (k.to_vec(), r.v)).collect();
                    let want: Vec<_> = model
                        .range::<[u8], _>((lower, Bound::Unbounded))
                        .take(50)
                        .map(|(k, v)| (k.clone(), *v))
                        .collect();
                    assert_eq!(got, want);
                }
            }
            assert_eq!(ix.get(b"k5").map(|r| r.v), model.get(&b"k5"[..]).copied());
            if step % 5000 == 0 {
                check_invariants(&ix);
            }
        }
        check_invariants(&ix);
        for (k, v) in &model {
            assert_eq!(ix.get(k).map(|r| r.v), Some(*v));
        }
        let keys: Vec<_> = model.keys().cloned().collect();
        for k in keys {
            assert!(ix.remove(&k).is_some());
        }
        assert!(ix.is_empty());
        assert_eq!(ix.leaves.len(), 1, "emptied leaves are dropped");
        check_invariants(&ix);
    }

    #[test]
    fn get_mut_changes_in_place() {
        let mut ix = Index::<Rec>::default();
        for i in 0..500u64 {
            ix.insert(format!("{i:05}").as_bytes(), rec(i));
        }
        ix.get_mut(b"00250").unwrap().v = 9999;
        assert_eq!(ix.get(b"00250").unwrap().v, 9999);
        assert!(ix.get_mut(b"nope").is_none());
        check_invariants(&ix);
    }

    /// The budget the KV index is held to: 64 bytes a key plus the key's own bytes, for keys
    /// written in order and at random (a 32-byte record like the KV's).
    #[test]
    fn memory_per_key_within_budget() {
        #[derive(Clone, Copy, Default)]
        struct Rec32 {
            _a: [u64; 3],
            _b: u32,
            k: KeyRef,
        }
        impl Keyed for Rec32 {
            fn key_ref(&self) -> KeyRef {
                self.k
            }
            fn set_key_ref(&mut self, r: KeyRef) {
                self.k = r;
            }
        }
        assert_eq!(std::mem::size_of::<Rec32>(), 32);
        let n = 200_000u64;
        let mut rng = SplitMix64(3);
        for random in [false, true] {
            let mut ix = Index::<Rec32>::default();
            let mut key_bytes = 0;
            for i in 0..n {
                let x = if random { rng.next_u64() } else { i };
                let key = format!("user:{x:016}");
                if ix.insert(key.as_bytes(), Rec32::default()).is_none() {
                    key_bytes += key.len();
                }
            }
            let per_key = (ix.heap_bytes() - key_bytes) as f64 / ix.len() as f64;
            eprintln!("index: random={random} {per_key:.1} bytes a key beyond the key");
            assert!(
                per_key <= 64.0,
                "random={random}: {per_key:.1} bytes a key beyond the key"
            );
        }
    }
}
