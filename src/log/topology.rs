//! The data directory's `TOPOLOGY` file (`format-spec/log.md`): the shard and partition counts
//! the data was placed with. Written once, atomically; checked at every start, because a start
//! with other counts would look for objects on the wrong shard.

use std::path::Path;

use super::error::LogError;
use super::io::Fs;

pub const FILE_NAME: &str = "TOPOLOGY";
pub const TOPOLOGY_VERSION: u32 = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Topology {
    pub shards: u32,
    pub partitions: u32,
    pub created_at_ms: u64,
}

impl Topology {
    pub fn encode(&self) -> String {
        let body = format!(
            "format_version = {TOPOLOGY_VERSION}\nshards = {}\npartitions = {}\ncreated_at_ms = {}\n",
            self.shards, self.partitions, self.created_at_ms
        );
        let crc = crc32fast::hash(body.as_bytes());
        format!("{body}crc32 = {crc}\n")
    }

    pub fn decode(text: &[u8]) -> Result<Topology, String> {
        let text = std::str::from_utf8(text).map_err(|_| "not UTF-8".to_string())?;
        let crc_at = text.find("crc32 = ").ok_or("no crc32 line")?;
        let (body, crc_line) = text.split_at(crc_at);
        let stored: u32 = crc_line
            .trim_end()
            .strip_prefix("crc32 = ")
            .and_then(|v| v.parse().ok())
            .ok_or("bad crc32 line")?;
        if crc32fast::hash(body.as_bytes()) != stored {
            return Err("checksum mismatch".into());
        }
        let mut version = None;
        let (mut shards, mut partitions, mut created) = (None, None, None);
        for line in body.lines() {
            let (k, v) = line.split_once(" = ").ok_or_else(|| format!("bad line {line:?}"))?;
            let n: u64 = v.parse().map_err(|_| format!("bad value in {line:?}"))?;
            match k {
                "format_version" => version = Some(n),
                "shards" => shards = u32::try_from(n).ok(),
                "partitions" => partitions = u32::try_from(n).ok(),
                "created_at_ms" => created = Some(n),
                _ => return Err(format!("unknown key {k:?}")),
            }
        }
        if version != Some(u64::from(TOPOLOGY_VERSION)) {
            return Err(format!("unsupported format_version {version:?}"));
        }
        Ok(Topology {
            shards: shards.ok_or("no shards")?,
            partitions: partitions.ok_or("no partitions")?,
            created_at_ms: created.ok_or("no created_at_ms")?,
        })
    }
}

/// Checks the data directory's topology against the configured one, writing it on first use.
pub async fn check_or_write<F: Fs>(
    fs: &F,
    data_dir: &Path,
    shards: u32,
    partitions: u32,
) -> Result<Topology, LogError> {
    let path = data_dir.join(FILE_NAME);
    let existing = fs
        .read_small(&path)
        .map_err(|e| LogError::from_io("read TOPOLOGY", &e))?;
    match existing {
        Some(bytes) => {
            let t = Topology::decode(&bytes)
                .map_err(|e| LogError::Topology(format!("{}: damaged ({e})", path.display())))?;
            if t.shards != shards || t.partitions != partitions {
                return Err(LogError::Topology(format!(
                    "{} was created with {} shards and {} partitions; this start asks for {shards} shards and {partitions} \
                     partitions. Objects are placed by these counts: start with --shards {} --partitions {}",
                    data_dir.display(),
                    t.shards,
                    t.partitions,
                    t.shards,
                    t.partitions
                )));
            }
            Ok(t)
        }
        None => {
            let t = Topology {
                shards,
                partitions,
                created_at_ms: crate::clock::system_ms(),
            };
            fs.write_small_atomic(&path, t.encode().as_bytes())
                .await
                .map_err(|e| LogError::from_io("write TOPOLOGY", &e))?;
            Ok(t)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage() {
        let t = Topology {
            shards: 2,
            partitions: 64,
            created_at_ms: 1_795_900_532_984,
        };
        let text = t.encode();
        assert!(text.starts_with("format_version = 1\nshards = 2\npartitions = 64\n"));
        assert_eq!(Topology::decode(text.as_bytes()), Ok(t));
        let bad = text.replace("shards = 2", "shards = 3");
        assert!(Topology::decode(bad.as_bytes()).unwrap_err().contains("checksum"));
        assert!(Topology::decode(b"").is_err());
    }
}
