//! Where an object lives: `partition = fnv1a64(namespace 0x00 name) mod partitions`,
//! `shard = partition mod shards`.
//!
//! The hash is fixed by `format-spec/partitioning.md`: it decides which shard's log holds an
//! object, so changing it would strand data. The test vectors below are the ones in that
//! document.

/// FNV-1a 64-bit offset basis.
const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
/// FNV-1a 64-bit prime.
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a 64 over `namespace`, one 0x00 byte, then `name`.
pub fn object_hash(namespace: &str, name: &str) -> u64 {
    let mut h = FNV_OFFSET_BASIS;
    for &b in namespace
        .as_bytes()
        .iter()
        .chain(std::iter::once(&0u8))
        .chain(name.as_bytes())
    {
        h ^= u64::from(b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    h
}

/// The partition table of one node: how many partitions, how many shards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Partitioner {
    partitions: u32,
    shards: u32,
}

impl Partitioner {
    pub fn new(partitions: u32, shards: u32) -> Self {
        assert!(
            shards >= 1 && partitions >= shards,
            "partitions {partitions} must be >= shards {shards} >= 1"
        );
        Partitioner { partitions, shards }
    }

    pub fn partitions(&self) -> u32 {
        self.partitions
    }

    pub fn shards(&self) -> u32 {
        self.shards
    }

    /// The partition of an object.
    pub fn partition(&self, namespace: &str, name: &str) -> u32 {
        (object_hash(namespace, name) % u64::from(self.partitions)) as u32
    }

    /// The shard that owns a partition.
    pub fn shard_of_partition(&self, partition: u32) -> usize {
        debug_assert!(partition < self.partitions);
        (partition % self.shards) as usize
    }

    /// The shard that owns an object.
    pub fn shard(&self, namespace: &str, name: &str) -> usize {
        self.shard_of_partition(self.partition(namespace, name))
    }

    /// The shard that keeps a namespace's own record (its name hashed with an empty name).
    pub fn namespace_shard(&self, namespace: &str) -> usize {
        self.shard(namespace, "")
    }

    /// How many partitions a shard owns.
    pub fn partitions_of_shard(&self, shard: usize) -> u32 {
        let s = shard as u32;
        debug_assert!(s < self.shards);
        self.partitions / self.shards + u32::from(s < self.partitions % self.shards)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The vectors of format-spec/partitioning.md.
    #[test]
    fn spec_vectors() {
        assert_eq!(object_hash("", ""), 0xaf63_bd4c_8601_b7df);
        assert_eq!(object_hash("default", "user:123"), 0xa974_23a8_faa2_bbdb);
        assert_eq!(object_hash("myapp", ""), 0x2e02_c8e8_10c9_3252);
        let p = Partitioner::new(64, 2);
        assert_eq!(
            p.partition("default", "user:123"),
            (0xa974_23a8_faa2_bbdbu64 % 64) as u32
        );
    }

    #[test]
    fn separator_keeps_pairs_apart() {
        assert_ne!(object_hash("ab", "c"), object_hash("a", "bc"));
    }

    #[test]
    fn partitions_of_shards_add_up() {
        for (parts, shards) in [(64, 1), (64, 2), (64, 3), (65, 8), (7, 7)] {
            let p = Partitioner::new(parts, shards);
            let sum: u32 = (0..shards as usize).map(|s| p.partitions_of_shard(s)).sum();
            assert_eq!(sum, parts);
            let counted = (0..parts)
                .filter(|&x| p.shard_of_partition(x) == 1 % shards as usize)
                .count() as u32;
            assert_eq!(counted, p.partitions_of_shard(1 % shards as usize));
        }
    }
}
