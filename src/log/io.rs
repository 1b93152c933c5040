//! The I/O seam of the log: the few file operations the log needs, as a trait with two
//! implementations — [`RealFs`] (io_uring writes and fdatasync through monoio, mmap'd views
//! through memmap2) and the simulated disk in `sim.rs` (tests), which can lose unsynced writes,
//! tear them at sector boundaries, and fail any operation.
//!
//! Buffers are owned and handed back (io_uring needs them to stay put while the kernel uses
//! them). Durability contract, for both implementations: data written to a file is durable
//! after `sync_data` on it returns Ok; a created, removed or renamed name is durable after
//! `sync_dir` on its directory returns Ok.

use std::io;
use std::ops::Deref;
use std::path::{Path, PathBuf};

/// A read-only view of a whole file's bytes.
pub trait View: Deref<Target = [u8]> {}

impl<T: Deref<Target = [u8]>> View for T {}

/// One open segment file.
#[allow(async_fn_in_trait, reason = "used on one shard's thread; no Send bound wanted")]
#[allow(clippy::len_without_is_empty, reason = "segment files have a fixed, nonzero size")]
pub trait SegmentFile {
    type View: View;
    /// Writes all of `buf` at `pos`.
    async fn write_at(&self, buf: Vec<u8>, pos: u64) -> (io::Result<()>, Vec<u8>);
    /// Makes every write to this file so far durable.
    async fn sync_data(&self) -> io::Result<()>;
    /// Writes all of `buf` at `pos` and makes it durable, as `write_at` then `sync_data` would,
    /// when every earlier write to the file is durable already. The real disk does both in one
    /// request (an `O_DSYNC` write), which spares a round trip through the kernel's workers.
    async fn write_durable_at(&self, buf: Vec<u8>, pos: u64) -> (io::Result<()>, Vec<u8>) {
        let (r, buf) = self.write_at(buf, pos).await;
        if let Err(e) = r {
            return (Err(e), buf);
        }
        (self.sync_data().await, buf)
    }
    /// The file's size in bytes.
    fn len(&self) -> u64;
    /// Maps the file read-only.
    fn view(&self) -> io::Result<Self::View>;
    /// Whether a view shows writes made after it was taken (a shared mapping does; the
    /// simulated disk's snapshots do not).
    fn live_views(&self) -> bool {
        false
    }
}

/// The file-system operations of the log.
#[allow(async_fn_in_trait, reason = "used on one shard's thread; no Send bound wanted")]
pub trait Fs: Clone + 'static {
    type File: SegmentFile;
    /// Creates `path` (which must not exist) as `len` zero bytes that are really written, not
    /// just allocated, and makes them durable. The name is durable only after `sync_dir`.
    ///
    /// With `write_zeros` false the zeros are only allocated (unwritten extents read as zeros):
    /// half the disk traffic when the log is bandwidth-bound, at the price of an extent
    /// conversion at each fdatasync that first covers a block.
    async fn create_zeroed(&self, path: &Path, len: u64, write_zeros: bool) -> io::Result<Self::File>;
    /// Opens an existing file for reading and writing.
    async fn open(&self, path: &Path) -> io::Result<Self::File>;
    async fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    async fn remove(&self, path: &Path) -> io::Result<()>;
    async fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// The names of the entries of `dir`.
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Reads a small file whole; `Ok(None)` if it does not exist.
    fn read_small(&self, path: &Path) -> io::Result<Option<Vec<u8>>>;
    /// Writes a small file atomically: temporary file, data sync, rename, directory sync.
    async fn write_small_atomic(&self, path: &Path, contents: &[u8]) -> io::Result<()>;
    /// Writes a file of any size atomically, as [`Fs::write_small_atomic`] does, without
    /// holding up the thread while the data goes to the disk.
    async fn write_atomic(&self, path: &Path, contents: Vec<u8>) -> io::Result<()> {
        self.write_small_atomic(path, &contents).await
    }
}

/// The real disk: monoio (io_uring) for writes and syncs, memmap2 for views.
#[derive(Clone, Copy, Debug, Default)]
pub struct RealFs;

/// A segment file on the real disk.
#[derive(Debug)]
pub struct RealFile {
    file: monoio::fs::File,
    std: std::fs::File,
    /// The same file opened again with `O_DSYNC`, for `write_durable_at` (opened on first use:
    /// sealed segments never need it).
    dsync: std::cell::OnceCell<monoio::fs::File>,
    len: u64,
}

/// Bytes written per call while zero-filling a new file.
const ZERO_FILL_CHUNK_BYTES: usize = 1024 * 1024;

impl SegmentFile for RealFile {
    type View = memmap2::Mmap;

    async fn write_at(&self, buf: Vec<u8>, pos: u64) -> (io::Result<()>, Vec<u8>) {
        debug_assert!(pos + buf.len() as u64 <= self.len, "segment files never grow");
        self.file.write_all_at(buf, pos).await
    }

    async fn sync_data(&self) -> io::Result<()> {
        self.file.sync_data().await
    }

    async fn write_durable_at(&self, buf: Vec<u8>, pos: u64) -> (io::Result<()>, Vec<u8>) {
        debug_assert!(pos + buf.len() as u64 <= self.len, "segment files never grow");
        let file = match self.dsync.get() {
            Some(f) => f,
            None => match self.open_dsync() {
                Ok(f) => self.dsync.get_or_init(|| f),
                Err(e) => return (Err(e), buf),
            },
        };
        file.write_all_at(buf, pos).await
    }

    fn len(&self) -> u64 {
        self.len
    }

    fn live_views(&self) -> bool {
        true
    }

    fn view(&self) -> io::Result<memmap2::Mmap> {
        // SAFETY: segment files are only written by this process through `write_at`, at
        // offsets of entries that readers have not been given yet, and are never truncated
        // while mapped; the mapping is read-only.
        unsafe { memmap2::Mmap::map(&self.std) }
    }
}

impl RealFile {
    /// A second descriptor of this file whose writes are durable when they complete. Opened
    /// through `/proc/self/fd` so that it is this file even after a rename of its name.
    fn open_dsync(&self) -> io::Result<monoio::fs::File> {
        use std::os::unix::fs::OpenOptionsExt;
        let fd = std::os::fd::AsRawFd::as_raw_fd(&self.std);
        let std = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_DSYNC)
            .open(format!("/proc/self/fd/{fd}"))?;
        monoio::fs::File::from_std(std)
    }
}

fn open_rw(path: &Path, create_new: bool) -> io::Result<RealFile> {
    let std = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(create_new)
        .open(path)?;
    let len = std.metadata()?.len();
    let file = monoio::fs::File::from_std(std.try_clone()?)?;
    Ok(RealFile {
        file,
        std,
        dsync: std::cell::OnceCell::new(),
        len,
    })
}

impl Fs for RealFs {
    type File = RealFile;

    async fn create_zeroed(&self, path: &Path, len: u64, write_zeros: bool) -> io::Result<RealFile> {
        let mut f = open_rw(path, true)?;
        // Allocate first (one extent, ENOSPC now rather than mid-write), then write zeros over
        // it so later overwrites do not pay for unwritten-extent conversion at fdatasync.
        let len_i = libc::off_t::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: fallocate on a descriptor we own; no memory involved.
        if unsafe { libc::fallocate(std::os::fd::AsRawFd::as_raw_fd(&f.std), 0, 0, len_i) } != 0 {
            return Err(io::Error::last_os_error());
        }
        f.len = len;
        let mut buf = vec![0u8; ZERO_FILL_CHUNK_BYTES];
        let mut pos = if write_zeros { 0 } else { len };
        while pos < len {
            let n = (len - pos).min(ZERO_FILL_CHUNK_BYTES as u64) as usize;
            buf.resize(n, 0);
            let (r, b) = f.file.write_all_at(buf, pos).await;
            r?;
            buf = b;
            pos += n as u64;
        }
        f.file.sync_data().await?;
        Ok(f)
    }

    async fn open(&self, path: &Path) -> io::Result<RealFile> {
        open_rw(path, false)
    }

    async fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    async fn remove(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    async fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        std::fs::File::open(dir)?.sync_all()
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir)? {
            out.push(e?.file_name().to_string_lossy().into_owned());
        }
        Ok(out)
    }

    fn read_small(&self, path: &Path) -> io::Result<Option<Vec<u8>>> {
        match std::fs::read(path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn write_small_atomic(&self, path: &Path, contents: &[u8]) -> io::Result<()> {
        use std::io::Write;
        let tmp = tmp_path(path);
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(contents)?;
        f.sync_data()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        self.sync_dir(path.parent().unwrap_or(Path::new("."))).await
    }

    async fn write_atomic(&self, path: &Path, contents: Vec<u8>) -> io::Result<()> {
        self.write_atomic_uring(path, contents).await
    }
}

impl RealFs {
    /// The io_uring path of [`Fs::write_atomic`].
    async fn write_atomic_uring(&self, path: &Path, contents: Vec<u8>) -> io::Result<()> {
        let tmp = tmp_path(path);
        let f = monoio::fs::File::create(&tmp).await?;
        let (r, _) = f.write_all_at(contents, 0).await;
        r?;
        f.sync_data().await?;
        f.close().await?;
        std::fs::rename(&tmp, path)?;
        self.sync_dir(path.parent().unwrap_or(Path::new("."))).await
    }
}

/// `<path>.tmp`.
pub fn tmp_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".tmp");
    PathBuf::from(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A write that makes itself durable lands where `write_at` would, before and after the
    /// file is renamed (its `O_DSYNC` descriptor is the file, not the name).
    #[test]
    fn durable_writes_land_in_place_across_a_rename() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.log"), dir.path().join("b.log"));
        let mut rt = crate::crash_tally::runtime();
        rt.block_on(async {
            let f = RealFs.create_zeroed(&a, 64 * 1024, true).await.unwrap();
            let (r, _) = f.write_durable_at(b"first".to_vec(), 100).await;
            r.unwrap();
            RealFs.rename(&a, &b).await.unwrap();
            let (r, _) = f.write_durable_at(b"second".to_vec(), 4094).await;
            r.unwrap();
            let (r, _) = f.write_at(b"plain".to_vec(), 9000).await;
            r.unwrap();
            f.sync_data().await.unwrap();
            let bytes = std::fs::read(&b).unwrap();
            assert_eq!(bytes.len(), 64 * 1024);
            assert_eq!(&bytes[100..105], b"first");
            assert_eq!(&bytes[4094..4100], b"second");
            assert_eq!(&bytes[9000..9005], b"plain");
            assert!(bytes[..100].iter().chain(&bytes[105..4094]).all(|&x| x == 0));
            assert_eq!(&f.view().unwrap()[4094..4100], b"second", "the mapping sees it");
            // The durable writes went through a descriptor opened with O_DSYNC.
            let fd = std::os::fd::AsRawFd::as_raw_fd(f.dsync.get().expect("opened by the first durable write"));
            // SAFETY: F_GETFL on a descriptor the file owns.
            let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
            assert!(flags >= 0 && flags & libc::O_DSYNC == libc::O_DSYNC, "flags {flags:#x}");
        });
    }
}
