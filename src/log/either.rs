//! The disk of a unit test's shard: the real one or the simulated one (`sim.rs`), chosen when
//! the shard is built. The server's shards always use [`RealFs`] (`server::shard::ShardFs` is
//! that type outside tests); in tests `ShardFs` is [`EitherFs`], so the crash simulation can
//! run the real executors of every primitive, unchanged, on the simulated disk.
//!
//! Every call forwards to the disk the value holds; nothing here adds behaviour. Invariant: a
//! file or view always comes from the disk of the [`EitherFs`] that opened it.

use std::io;
use std::ops::Deref;
use std::path::Path;

use super::io::{Fs, RealFile, RealFs, SegmentFile};
use super::sim::{SimFile, SimFs, SimView};

/// The real disk or the simulated one.
#[derive(Clone, Debug)]
pub enum EitherFs {
    Real(RealFs),
    Sim(SimFs),
}

impl Default for EitherFs {
    fn default() -> EitherFs {
        EitherFs::Real(RealFs)
    }
}

/// A file of an [`EitherFs`].
#[derive(Debug)]
pub enum EitherFile {
    Real(RealFile),
    Sim(SimFile),
}

/// A view of an [`EitherFile`].
pub enum EitherView {
    Real(memmap2::Mmap),
    Sim(SimView),
}

impl Deref for EitherView {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            EitherView::Real(v) => v,
            EitherView::Sim(v) => v,
        }
    }
}

impl SegmentFile for EitherFile {
    type View = EitherView;

    async fn write_at(&self, buf: Vec<u8>, pos: u64) -> (io::Result<()>, Vec<u8>) {
        match self {
            EitherFile::Real(f) => f.write_at(buf, pos).await,
            EitherFile::Sim(f) => f.write_at(buf, pos).await,
        }
    }

    async fn sync_data(&self) -> io::Result<()> {
        match self {
            EitherFile::Real(f) => f.sync_data().await,
            EitherFile::Sim(f) => f.sync_data().await,
        }
    }

    async fn write_durable_at(&self, buf: Vec<u8>, pos: u64) -> (io::Result<()>, Vec<u8>) {
        match self {
            EitherFile::Real(f) => f.write_durable_at(buf, pos).await,
            EitherFile::Sim(f) => f.write_durable_at(buf, pos).await,
        }
    }

    fn len(&self) -> u64 {
        match self {
            EitherFile::Real(f) => f.len(),
            EitherFile::Sim(f) => f.len(),
        }
    }

    fn view(&self) -> io::Result<EitherView> {
        match self {
            EitherFile::Real(f) => f.view().map(EitherView::Real),
            EitherFile::Sim(f) => f.view().map(EitherView::Sim),
        }
    }

    fn live_views(&self) -> bool {
        match self {
            EitherFile::Real(f) => f.live_views(),
            EitherFile::Sim(f) => f.live_views(),
        }
    }
}

impl Fs for EitherFs {
    type File = EitherFile;

    async fn create_zeroed(&self, path: &Path, len: u64, write_zeros: bool) -> io::Result<EitherFile> {
        match self {
            EitherFs::Real(fs) => fs.create_zeroed(path, len, write_zeros).await.map(EitherFile::Real),
            EitherFs::Sim(fs) => fs.create_zeroed(path, len, write_zeros).await.map(EitherFile::Sim),
        }
    }

    async fn open(&self, path: &Path) -> io::Result<EitherFile> {
        match self {
            EitherFs::Real(fs) => fs.open(path).await.map(EitherFile::Real),
            EitherFs::Sim(fs) => fs.open(path).await.map(EitherFile::Sim),
        }
    }

    async fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        match self {
            EitherFs::Real(fs) => fs.rename(from, to).await,
            EitherFs::Sim(fs) => fs.rename(from, to).await,
        }
    }

    async fn remove(&self, path: &Path) -> io::Result<()> {
        match self {
            EitherFs::Real(fs) => fs.remove(path).await,
            EitherFs::Sim(fs) => fs.remove(path).await,
        }
    }

    async fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        match self {
            EitherFs::Real(fs) => fs.sync_dir(dir).await,
            EitherFs::Sim(fs) => fs.sync_dir(dir).await,
        }
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        match self {
            EitherFs::Real(fs) => fs.create_dir_all(dir),
            EitherFs::Sim(fs) => fs.create_dir_all(dir),
        }
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        match self {
            EitherFs::Real(fs) => fs.list(dir),
            EitherFs::Sim(fs) => fs.list(dir),
        }
    }

    fn read_small(&self, path: &Path) -> io::Result<Option<Vec<u8>>> {
        match self {
            EitherFs::Real(fs) => fs.read_small(path),
            EitherFs::Sim(fs) => fs.read_small(path),
        }
    }

    async fn write_small_atomic(&self, path: &Path, contents: &[u8]) -> io::Result<()> {
        match self {
            EitherFs::Real(fs) => fs.write_small_atomic(path, contents).await,
            EitherFs::Sim(fs) => fs.write_small_atomic(path, contents).await,
        }
    }

    async fn write_atomic(&self, path: &Path, contents: Vec<u8>) -> io::Result<()> {
        match self {
            EitherFs::Real(fs) => fs.write_atomic(path, contents).await,
            EitherFs::Sim(fs) => fs.write_atomic(path, contents).await,
        }
    }
}
