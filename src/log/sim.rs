//! The simulated disk: an in-memory [`Fs`] for the log's tests that can lose unsynced writes,
//! tear them at 512-byte sector boundaries, lose unsynced name changes, fail any operation with
//! `EIO` or `ENOSPC`, and "kill the process" after a chosen number of operations. It implements
//! the durability contract of `io.rs` and the disk assumptions of `format-spec/log.md` ("What we
//! assume of the disk"), and nothing stronger.
//!
//! What it owns: a [`SimFs`] handle (clones share one disk, through `Rc<RefCell<_>>`; one
//! thread only) and the [`SimFile`]s opened through it. Nothing here touches the real disk.
//!
//! The model:
//! * Files are identified by an internal id; names map to ids. Each file has `current` bytes
//!   (what the running process sees), `durable` bytes (what survives a power loss for sure) and
//!   the writes since its last `sync_data`, in order (`pending`). Invariant: `current` is
//!   `durable` with `pending` applied in order, and both have the file's length (files never
//!   grow or shrink; `write_at` past the end is `InvalidInput`).
//! * Names: `names` (current) and `durable_names`. `create_zeroed`, `rename`, `remove` change
//!   `names`; `sync_dir(dir)` copies the entries of `dir` (direct children only) to
//!   `durable_names`. File contents written by `create_zeroed` are durable at once (the real one
//!   fdatasyncs), its name is not.
//! * Directories are a plain set, always durable (`create_dir_all` is not crash-tested).
//! * A file that no name (current or durable) refers to and no open [`SimFile`] holds is freed.
//! * [`SimFs::crash`] builds a new, independent disk: what a machine would find after power
//!   loss ([`CrashMode`]). It goes through a [`DiskImage`]: the durable bytes of each file (shared,
//!   not copied) and the sectors power loss left different from them; an image is `Send`, so
//!   other threads can recover it ([`SimFs::from_image`]), and two images are equal when they
//!   would hold the same bytes under the same names. In `Random` mode, each pending write is kept, dropped or torn (a
//!   random subset of the sectors it touches, sector `n` being file bytes `512n..512n+512`).
//!   Applying a write to a sector writes the whole sector as the page cache held it right after
//!   that write (as writeback does), so each sector of the result is one of the versions it
//!   really had: durable, or right after one of its pending writes. Name changes are grouped
//!   (a rename's old and new names, linked through the file they name, form one group) and each
//!   group is kept or reverted as a whole, so a file is never found under two names, and a file
//!   that existed durably is never lost by an unsynced rename.
//!
//! Operations and faults: every call that does I/O (`create_zeroed`, `open`, `rename`,
//! `remove`, `sync_dir`, `write_at`, `sync_data`; `write_small_atomic` counts as FOUR: write
//! the temporary file, sync it, rename, sync the directory) takes the next operation index,
//! starting at 0; [`SimFs::ops`] is the number taken so far, i.e. the index of the next one.
//! Once the process is dead (see [`SimFs::crash_after`]) every call fails with kind `Other`,
//! "simulated crash", and nothing changes any more; the uncounted calls (`list`, `read_small`,
//! `create_dir_all`, `view`) fail too. What an injected fault ([`SimFs::fail_at`]) leaves
//! behind: a failed `write_at` writes nothing; a failed `sync_data` or `sync_dir` makes nothing
//! durable; a failed `rename` or `remove` changes nothing; a failed `create_zeroed` leaves an
//! empty (0-byte) file under the name, as the real one does when its allocation fails after
//! the file was created; a failed step of `write_small_atomic` leaves what the steps before it
//! did (a failed first step leaves nothing).
//!
//! Views are snapshots: a view taken before a write does not show it (the real mmap does).
//!
//! Capturing crash states in one run: a hook set with [`SimFs::set_op_hook`] is called before
//! every counted operation with its index and an [`Imager`] of the disk as it is then, which is
//! exactly what a process killed at that operation leaves behind (see [`SimFs::crash_after`]).
//! So one run yields the images of every crash point, without re-running the workload up to
//! each.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

use super::io::{tmp_path, Fs, SegmentFile};

/// The unit of atomic writes to the disk.
pub const SECTOR_BYTES: u64 = 512;

/// Largest file the simulated disk holds (it lives in memory).
const MAX_FILE_BYTES: u64 = 1 << 32;

/// An error to inject with [`SimFs::fail_at`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// The operation fails once with `EIO`.
    Eio,
    /// The operation fails once with `ENOSPC`.
    Enospc,
    /// The operation and every later operation of its category fail with `EIO`.
    EioForever,
    /// The operation and every later operation of its category fail with `ENOSPC`.
    EnospcForever,
}

impl FaultKind {
    fn error(self) -> io::Error {
        match self {
            FaultKind::Eio | FaultKind::EioForever => io::Error::from_raw_os_error(libc::EIO),
            FaultKind::Enospc | FaultKind::EnospcForever => io::Error::from_raw_os_error(libc::ENOSPC),
        }
    }

    fn is_forever(self) -> bool {
        matches!(self, FaultKind::EioForever | FaultKind::EnospcForever)
    }
}

/// What survives [`SimFs::crash`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrashMode {
    /// Everything the process did: unsynced writes and name changes included (a process crash;
    /// the page cache survives).
    KeepAll,
    /// Only synced data and synced names.
    DropAll,
    /// Each unsynced write kept, dropped or torn at sector granularity; each group of unsynced
    /// name changes kept or reverted. Chosen by the seed.
    Random,
    /// As [`CrashMode::Random`], and some unsynced writes leave garbage instead: in each sector
    /// they touch, their bytes are random (a drive that lost power mid-write); the sector's
    /// other bytes stay as they were.
    Garbage,
}

/// Categories of operations for the `...Forever` faults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OpClass {
    /// `open`.
    Open,
    /// Everything that writes or syncs: create, write, sync, rename, remove.
    Mutate,
}

/// What an operation may do, once counted.
enum Gate {
    Go,
    /// An injected fault: the operation fails with this error (after doing what the model says
    /// such a failure leaves behind).
    Fault(io::Error),
}

type FileId = u64;

struct FileData {
    /// What the process sees. Shared so views and images are cheap snapshots (copy on write).
    current: Arc<Vec<u8>>,
    durable: Arc<Vec<u8>>,
    /// Writes since the last sync, in order: (offset, bytes). Always inside the file.
    pending: Vec<(u64, Vec<u8>)>,
    /// Open [`SimFile`]s of this file.
    handles: usize,
}

impl FileData {
    fn new_durable(bytes: Arc<Vec<u8>>) -> FileData {
        FileData {
            current: Arc::clone(&bytes),
            durable: bytes,
            pending: Vec::new(),
            handles: 0,
        }
    }

    fn sync(&mut self) {
        self.sync_first(self.pending.len());
    }

    /// Makes the oldest `n` pending writes durable (what a sync that started when there were
    /// `n` covers; later writes may still be lost).
    fn sync_first(&mut self, n: usize) {
        let n = n.min(self.pending.len());
        if n == 0 {
            return;
        }
        if n == self.pending.len() {
            // Everything pending: the durable bytes become what the process sees (shared).
            self.pending.clear();
            self.durable = Arc::clone(&self.current);
            return;
        }
        let durable = Arc::make_mut(&mut self.durable);
        for (off, data) in self.pending.drain(..n) {
            let off = off as usize;
            durable[off..off + data.len()].copy_from_slice(&data);
        }
    }

    /// The file bytes of `range` as the page cache held them right after pending write `upto`.
    fn replayed(&self, upto: usize, range: std::ops::Range<usize>) -> Vec<u8> {
        let mut out = self.durable[range.clone()].to_vec();
        for (off, data) in &self.pending[..=upto] {
            let (start, end) = (*off as usize, *off as usize + data.len());
            let (a, b) = (start.max(range.start), end.min(range.end));
            if a < b {
                out[a - range.start..b - range.start].copy_from_slice(&data[a - start..b - start]);
            }
        }
        out
    }

    /// The file found on the disk after power loss: its durable bytes and the sectors that
    /// differ from them.
    fn after_crash(&self, mode: CrashMode, rng: &mut SplitMix64) -> ImageFile {
        let file_len = self.durable.len() as u64;
        let sector_range =
            |sector: u64| (sector * SECTOR_BYTES) as usize..((sector + 1) * SECTOR_BYTES).min(file_len) as usize;
        let touched = |off: u64, len: usize| (off / SECTOR_BYTES)..=((off + len as u64 - 1) / SECTOR_BYTES);
        // Sector → its bytes after the crash, where a pending write reached it.
        let mut sectors: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
        match mode {
            CrashMode::DropAll => {}
            CrashMode::KeepAll => {
                for (off, data) in self.pending.iter().filter(|(_, d)| !d.is_empty()) {
                    for sector in touched(*off, data.len()) {
                        sectors.insert(sector, self.current[sector_range(sector)].to_vec());
                    }
                }
            }
            CrashMode::Random | CrashMode::Garbage => {
                let fates = if mode == CrashMode::Garbage { 4 } else { 3 };
                for (i, (off, data)) in self.pending.iter().enumerate() {
                    let fate = rng.below(fates); // 0 kept, 1 dropped, 2 torn, 3 garbage
                    if data.is_empty() {
                        continue;
                    }
                    let start = *off as usize;
                    for sector in touched(*off, data.len()) {
                        let range = sector_range(sector);
                        if fate == 3 {
                            // Only the write's own bytes: the sector's other bytes were
                            // durable, and sectors are written whole (format-spec/log.md).
                            let bytes = sectors
                                .entry(sector)
                                .or_insert_with(|| self.durable[range.clone()].to_vec());
                            let (wa, wb) = (range.start.max(start), range.end.min(start + data.len()));
                            bytes[wa - range.start..wb - range.start]
                                .iter_mut()
                                .for_each(|x| *x = rng.next_u64() as u8);
                            continue;
                        }
                        let apply = match fate {
                            0 => true,
                            1 => false,
                            _ => rng.next_u64() & 1 == 1,
                        };
                        if apply {
                            // Writeback writes the whole sector as the page cache held it.
                            sectors.insert(sector, self.replayed(i, range));
                        }
                    }
                }
            }
        }
        sectors.retain(|&sector, bytes| bytes[..] != self.durable[sector_range(sector)]);
        ImageFile {
            base: Arc::clone(&self.durable),
            sectors: sectors.into_iter().map(|(s, b)| (s * SECTOR_BYTES, b)).collect(),
        }
    }
}

/// A file of a [`DiskImage`]: durable bytes shared with the disk it was taken from, and the
/// sectors (offset, bytes) that differ from them, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
struct ImageFile {
    base: Arc<Vec<u8>>,
    sectors: Vec<(u64, Vec<u8>)>,
}

impl ImageFile {
    fn bytes(&self) -> Arc<Vec<u8>> {
        if self.sectors.is_empty() {
            return Arc::clone(&self.base);
        }
        let mut out = Vec::clone(&self.base);
        for (off, bytes) in &self.sectors {
            let off = *off as usize;
            out[off..off + bytes.len()].copy_from_slice(bytes);
        }
        Arc::new(out)
    }
}

/// What a machine finds after power loss ([`SimFs::image`], [`Imager::image`]): the names, and
/// each named file's bytes. `Send`, cheap to build (unchanged bytes are shared with the disk),
/// and equal to another image exactly when both hold the same bytes under the same names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskImage {
    dirs: BTreeSet<PathBuf>,
    files: BTreeMap<PathBuf, ImageFile>,
    sync_turns: u32,
}

/// The disk as it is before a counted operation, for the hook of [`SimFs::set_op_hook`].
pub struct Imager<'a>(&'a Disk);

impl Imager<'_> {
    /// What a machine would find after power loss now (as [`SimFs::crash`]).
    pub fn image(&self, rng_seed: u64, mode: CrashMode) -> DiskImage {
        self.0.image(rng_seed, mode)
    }

    /// Whether anything is not durable yet (a write not synced, a name change whose directory
    /// was not synced): when nothing is, every crash mode gives the same image.
    pub fn unsynced(&self) -> bool {
        let d = self.0;
        d.names != d.durable_names || d.files.values().any(|f| !f.pending.is_empty())
    }
}

/// Called before each counted operation, with its index and the disk as it is then.
pub type OpHook = Box<dyn FnMut(u64, Imager<'_>)>;

#[derive(Default)]
struct Disk {
    /// Turns of the scheduler an fdatasync takes (0: it completes at once).
    sync_turns: u32,
    /// Time an fdatasync takes on top of its turns (a slow disk; not carried into images).
    sync_delay: std::time::Duration,
    files: BTreeMap<FileId, FileData>,
    names: BTreeMap<PathBuf, FileId>,
    durable_names: BTreeMap<PathBuf, FileId>,
    dirs: BTreeSet<PathBuf>,
    next_id: FileId,
    /// Operations counted so far (the index of the next one).
    ops: u64,
    /// The index of the operation at which the process dies.
    crash_at: Option<u64>,
    dead: bool,
    /// Faults by operation index, not reached yet.
    faults: BTreeMap<u64, FaultKind>,
    /// Faults that fire on every operation of a category.
    failing: Vec<(OpClass, FaultKind)>,
    /// Called before each counted operation that runs (see [`SimFs::set_op_hook`]).
    hook: Option<OpHook>,
}

/// `n` zero bytes, shared by every file created with that length on this thread (segments
/// and spares all have one length; a write copies them).
fn zeroed(n: usize) -> Arc<Vec<u8>> {
    thread_local! {
        static ZEROED: RefCell<Vec<Arc<Vec<u8>>>> = const { RefCell::new(Vec::new()) };
    }
    ZEROED.with(|cache| {
        let mut cache = cache.borrow_mut();
        if let Some(z) = cache.iter().find(|z| z.len() == n) {
            return Arc::clone(z);
        }
        let z = Arc::new(vec![0; n]);
        if cache.len() >= 4 {
            cache.remove(0);
        }
        cache.push(Arc::clone(&z));
        z
    })
}

fn crash_error() -> io::Error {
    io::Error::other("simulated crash")
}

fn kind_error(kind: io::ErrorKind, what: &str, path: &Path) -> io::Error {
    io::Error::new(kind, format!("simulated disk: {what}: {}", path.display()))
}

fn errno_error(errno: i32) -> io::Error {
    io::Error::from_raw_os_error(errno)
}

/// The map key of a path: components re-joined, so `a//b/` and `a/./b` are `a/b`.
fn key(path: &Path) -> PathBuf {
    path.components().collect()
}

/// The directory holding `path` (`""` for a bare relative name).
fn parent_of(path: &Path) -> PathBuf {
    path.parent().map(Path::to_path_buf).unwrap_or_default()
}

fn file_len_ok(len: u64, path: &Path) -> io::Result<usize> {
    if len > MAX_FILE_BYTES {
        return Err(kind_error(
            io::ErrorKind::InvalidInput,
            "file too large to simulate",
            path,
        ));
    }
    usize::try_from(len).map_err(|_| kind_error(io::ErrorKind::InvalidInput, "file too large to simulate", path))
}

impl Disk {
    /// Counts an operation and decides whether it may run.
    fn begin(&mut self, class: OpClass) -> io::Result<Gate> {
        let index = self.ops;
        if !self.dead && self.crash_at.is_none_or(|at| index < at) {
            if let Some(mut hook) = self.hook.take() {
                hook(index, Imager(self));
                self.hook = Some(hook);
            }
        }
        self.ops += 1;
        if self.dead || self.crash_at.is_some_and(|at| index >= at) {
            self.dead = true;
            return Err(crash_error());
        }
        if let Some(kind) = self.faults.remove(&index) {
            if kind.is_forever() {
                self.failing.push((class, kind));
            }
            return Ok(Gate::Fault(kind.error()));
        }
        if let Some(&(_, kind)) = self.failing.iter().find(|(c, _)| *c == class) {
            return Ok(Gate::Fault(kind.error()));
        }
        Ok(Gate::Go)
    }

    /// [`Disk::begin`] for operations whose failure leaves nothing behind.
    fn begin_plain(&mut self, class: OpClass) -> io::Result<()> {
        match self.begin(class)? {
            Gate::Go => Ok(()),
            Gate::Fault(e) => Err(e),
        }
    }

    /// For the uncounted calls.
    fn check_alive(&self) -> io::Result<()> {
        if self.dead {
            Err(crash_error())
        } else {
            Ok(())
        }
    }

    fn dir_exists(&self, dir: &Path) -> bool {
        dir.as_os_str().is_empty() || dir.parent().is_none() || dir == Path::new(".") || self.dirs.contains(dir)
    }

    /// Checks that `path` (a key) names a file in a directory that exists.
    fn check_file_path(&self, path: &Path) -> io::Result<()> {
        if path.file_name().is_none() {
            return Err(kind_error(io::ErrorKind::InvalidInput, "not a file name", path));
        }
        if !self.dir_exists(&parent_of(path)) {
            return Err(kind_error(
                io::ErrorKind::NotFound,
                "no such directory",
                &parent_of(path),
            ));
        }
        Ok(())
    }

    /// Checks that a new file can be created at `path` (a key).
    fn check_new_file(&self, path: &Path) -> io::Result<()> {
        self.check_file_path(path)?;
        if self.names.contains_key(path) || self.dirs.contains(path) {
            return Err(kind_error(io::ErrorKind::AlreadyExists, "already exists", path));
        }
        Ok(())
    }

    /// Checks that `path` (a key) can be replaced by a file, as a rename target.
    fn check_target(&self, path: &Path) -> io::Result<()> {
        self.check_file_path(path)?;
        if self.dirs.contains(path) {
            return Err(errno_error(libc::EISDIR));
        }
        Ok(())
    }

    fn lookup(&self, path: &Path) -> io::Result<FileId> {
        if self.dirs.contains(path) {
            return Err(errno_error(libc::EISDIR));
        }
        self.names
            .get(path)
            .copied()
            .ok_or_else(|| kind_error(io::ErrorKind::NotFound, "no such file", path))
    }

    /// The file named `path` (and the name as the disk keys it), for the corruption helpers.
    fn file_mut(&mut self, path: &Path) -> io::Result<(PathBuf, &mut FileData)> {
        let p = key(path);
        let id = self.lookup(&p)?;
        match self.files.get_mut(&id) {
            Some(f) => Ok((p, f)),
            None => Err(kind_error(io::ErrorKind::NotFound, "no such file", &p)),
        }
    }

    fn add_file(&mut self, data: FileData) -> FileId {
        let id = self.next_id;
        self.next_id += 1;
        self.files.insert(id, data);
        id
    }

    /// Frees a file nothing refers to any more.
    fn collect(&mut self, id: FileId) {
        let held = self.files.get(&id).is_some_and(|f| f.handles > 0);
        if held || self.names.values().any(|&v| v == id) || self.durable_names.values().any(|&v| v == id) {
            return;
        }
        self.files.remove(&id);
    }

    fn sync_file(&mut self, id: FileId) {
        if let Some(f) = self.files.get_mut(&id) {
            f.sync();
        }
    }

    /// Renames `from` to `to` (keys, checked).
    fn move_name(&mut self, from: &Path, to: &Path, id: FileId) {
        if from == to {
            return;
        }
        self.names.remove(from);
        if let Some(old) = self.names.insert(to.to_path_buf(), id) {
            self.collect(old);
        }
    }

    /// Makes the names directly inside `dir` durable as they are now.
    fn sync_names(&mut self, dir: &Path) {
        let inside: Vec<PathBuf> = self
            .names
            .keys()
            .chain(self.durable_names.keys())
            .filter(|p| p.parent().unwrap_or(Path::new("")) == dir)
            .cloned()
            .collect();
        let mut released = Vec::new();
        for name in inside {
            let old = match self.names.get(&name) {
                Some(&id) => self.durable_names.insert(name, id),
                None => self.durable_names.remove(&name),
            };
            released.extend(old);
        }
        for id in released {
            self.collect(id);
        }
    }

    /// What a machine would find after power loss now.
    fn image(&self, rng_seed: u64, mode: CrashMode) -> DiskImage {
        let mut rng = SplitMix64(rng_seed);
        let names = self.names_after_crash(mode, &mut rng);
        let ids: BTreeSet<FileId> = names.values().copied().collect();
        let mut contents = BTreeMap::new();
        for id in ids {
            if let Some(f) = self.files.get(&id) {
                contents.insert(id, f.after_crash(mode, &mut rng));
            }
        }
        let files = names
            .into_iter()
            .filter_map(|(name, id)| Some((name, contents.get(&id)?.clone())))
            .collect();
        DiskImage {
            dirs: self.dirs.clone(),
            files,
            sync_turns: self.sync_turns,
        }
    }

    /// The names found after power loss.
    fn names_after_crash(&self, mode: CrashMode, rng: &mut SplitMix64) -> BTreeMap<PathBuf, FileId> {
        match mode {
            CrashMode::KeepAll => return self.names.clone(),
            CrashMode::DropAll => return self.durable_names.clone(),
            CrashMode::Random | CrashMode::Garbage => {}
        }
        let all: BTreeSet<&PathBuf> = self.names.keys().chain(self.durable_names.keys()).collect();
        let mut out = BTreeMap::new();
        let mut differing: Vec<&PathBuf> = Vec::new();
        for name in all {
            let (now, durable) = (self.names.get(name), self.durable_names.get(name));
            if now == durable {
                if let Some(&id) = now {
                    out.insert(name.clone(), id);
                }
            } else {
                differing.push(name);
            }
        }
        // Group the differing names through the files they name, now or durably.
        let mut group: Vec<usize> = (0..differing.len()).collect();
        fn root(group: &mut [usize], mut i: usize) -> usize {
            while group[i] != i {
                group[i] = group[group[i]];
                i = group[i];
            }
            i
        }
        let mut first_of_file: BTreeMap<FileId, usize> = BTreeMap::new();
        for (i, name) in differing.iter().enumerate() {
            for id in [self.names.get(*name), self.durable_names.get(*name)]
                .into_iter()
                .flatten()
            {
                match first_of_file.get(id) {
                    Some(&j) => {
                        let (a, b) = (root(&mut group, i), root(&mut group, j));
                        group[a.max(b)] = a.min(b);
                    }
                    None => {
                        first_of_file.insert(*id, i);
                    }
                }
            }
        }
        let mut keep: BTreeMap<usize, bool> = BTreeMap::new();
        for (i, name) in differing.iter().enumerate() {
            let r = root(&mut group, i);
            let kept = *keep.entry(r).or_insert_with(|| rng.next_u64() & 1 == 1);
            let source = if kept { &self.names } else { &self.durable_names };
            if let Some(&id) = source.get(*name) {
                out.insert((*name).clone(), id);
            }
        }
        out
    }
}

/// The tests' seeded PRNG, under the name the log's tests know it by.
pub(crate) use crate::test_rng::Rng as SplitMix64;

/// The simulated disk. Clones share it.
#[derive(Clone, Default)]
pub struct SimFs {
    disk: Rc<RefCell<Disk>>,
}

impl fmt::Debug for SimFs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.disk.borrow();
        f.debug_struct("SimFs")
            .field("ops", &d.ops)
            .field("dead", &d.dead)
            .field("names", &d.names)
            .field("durable_names", &d.durable_names)
            .finish_non_exhaustive()
    }
}

impl SimFs {
    /// An empty disk (only the root and `""`, the current directory, exist as directories).
    pub fn new() -> SimFs {
        SimFs::default()
    }

    /// The number of operations counted so far: the index of the next one.
    pub fn ops(&self) -> u64 {
        self.disk.borrow().ops
    }

    /// Makes every fdatasync take `turns` turns of the scheduler, so other tasks — appenders,
    /// the next batch's write — run while it is in flight. Needs a monoio runtime.
    pub fn set_sync_turns(&self, turns: u32) {
        self.disk.borrow_mut().sync_turns = turns;
    }

    /// Makes every fdatasync also take `delay` of real time, as a slow disk's does (the
    /// runtime needs its timer).
    pub fn set_sync_delay(&self, delay: std::time::Duration) {
        self.disk.borrow_mut().sync_delay = delay;
    }

    /// The process dies `n` operations from now: the next `n` operations run, the one after
    /// (index `ops() + n`) and every later call fail with "simulated crash". Replaces an
    /// earlier `crash_after`.
    pub fn crash_after(&self, n: u64) {
        let mut d = self.disk.borrow_mut();
        d.crash_at = Some(d.ops.saturating_add(n));
    }

    /// Whether the process is dead (a counted operation reached the `crash_after` point).
    pub fn is_dead(&self) -> bool {
        self.disk.borrow().dead
    }

    /// Injects `kind` at the operation of global index `op` (compare [`SimFs::ops`]); an index
    /// already passed never fires. A `...Forever` fault also fails every later operation of the
    /// same category as the one at `op`: `open`, or everything that writes or syncs.
    pub fn fail_at(&self, op: u64, kind: FaultKind) {
        self.disk.borrow_mut().faults.insert(op, kind);
    }

    /// What a machine would find after power loss now, as a new, independent disk (this one
    /// is left as it is). Deterministic: the same disk, seed and mode give the same result.
    pub fn crash(&self, rng_seed: u64, mode: CrashMode) -> SimFs {
        SimFs::from_image(&self.image(rng_seed, mode))
    }

    /// What a machine would find after power loss now, as an image ([`SimFs::from_image`]
    /// turns it into a disk). Deterministic as [`SimFs::crash`] is.
    pub fn image(&self, rng_seed: u64, mode: CrashMode) -> DiskImage {
        self.disk.borrow().image(rng_seed, mode)
    }

    /// A new disk holding `image`, everything durable.
    pub fn from_image(image: &DiskImage) -> SimFs {
        let mut out = Disk {
            dirs: image.dirs.clone(),
            sync_turns: image.sync_turns,
            ..Disk::default()
        };
        for (name, file) in &image.files {
            let id = out.add_file(FileData::new_durable(file.bytes()));
            out.names.insert(name.clone(), id);
            out.durable_names.insert(name.clone(), id);
        }
        SimFs {
            disk: Rc::new(RefCell::new(out)),
        }
    }

    /// Calls `hook` before every counted operation from now on (`None`: no more), with the
    /// operation's index and the disk as it is then, i.e. as a process killed at that
    /// operation leaves it. Not called for the operation at which the process dies, nor after.
    /// The hook must not use this disk (it is borrowed while the hook runs).
    pub fn set_op_hook(&self, hook: Option<OpHook>) {
        self.disk.borrow_mut().hook = hook;
    }

    /// Runs `f` with an [`Imager`] of the disk as it is now.
    pub fn with_imager<R>(&self, f: impl FnOnce(Imager<'_>) -> R) -> R {
        f(Imager(&self.disk.borrow()))
    }

    /// The bytes of `path` as the process sees them; `None` if there is no such file.
    pub fn file_bytes(&self, path: &Path) -> Option<Vec<u8>> {
        let d = self.disk.borrow();
        let id = d.names.get(&key(path))?;
        d.files.get(id).map(|f| f.current.to_vec())
    }

    /// Whether `path` is a file or directory, as the process sees it.
    pub fn exists(&self, path: &Path) -> bool {
        let d = self.disk.borrow();
        let p = key(path);
        d.names.contains_key(&p) || d.dir_exists(&p)
    }

    /// Bit rot: XORs the byte at `offset` of `path` with `xor_mask`, on the disk and in the
    /// page cache alike (later replays of unsynced writes over that byte overwrite it). Works
    /// on a dead disk too; not an operation.
    pub fn corrupt(&self, path: &Path, offset: u64, xor_mask: u8) -> io::Result<()> {
        let mut d = self.disk.borrow_mut();
        let (p, f) = d.file_mut(path)?;
        let i = usize::try_from(offset)
            .ok()
            .filter(|&i| i < f.durable.len())
            .ok_or_else(|| kind_error(io::ErrorKind::InvalidInput, "offset past the end", &p))?;
        Arc::make_mut(&mut f.durable)[i] ^= xor_mask;
        Arc::make_mut(&mut f.current)[i] ^= xor_mask;
        Ok(())
    }

    /// Overwrites durable bytes of `path` at `offset` with `bytes` (a zeroed sector, a block
    /// written to the wrong place); for corruption tests.
    pub fn overwrite(&self, path: &Path, offset: u64, bytes: &[u8]) -> io::Result<()> {
        let mut d = self.disk.borrow_mut();
        let (p, f) = d.file_mut(path)?;
        let range = usize::try_from(offset)
            .ok()
            .and_then(|a| Some(a..a.checked_add(bytes.len())?))
            .filter(|r| r.end <= f.durable.len())
            .ok_or_else(|| kind_error(io::ErrorKind::InvalidInput, "range past the end", &p))?;
        Arc::make_mut(&mut f.durable)[range.clone()].copy_from_slice(bytes);
        Arc::make_mut(&mut f.current)[range].copy_from_slice(bytes);
        Ok(())
    }

    fn file(&self, id: FileId, len: u64) -> SimFile {
        if let Some(f) = self.disk.borrow_mut().files.get_mut(&id) {
            f.handles += 1;
        }
        SimFile {
            disk: Rc::clone(&self.disk),
            id,
            len,
        }
    }
}

/// A read-only snapshot of a simulated file's bytes.
#[derive(Clone, Debug)]
pub struct SimView(Arc<Vec<u8>>);

impl Deref for SimView {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.0
    }
}

/// An open file of a [`SimFs`]. Keeps working after its name is removed or replaced (like an
/// open descriptor).
pub struct SimFile {
    disk: Rc<RefCell<Disk>>,
    id: FileId,
    len: u64,
}

impl fmt::Debug for SimFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimFile")
            .field("id", &self.id)
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl Drop for SimFile {
    fn drop(&mut self) {
        if let Ok(mut d) = self.disk.try_borrow_mut() {
            if let Some(f) = d.files.get_mut(&self.id) {
                f.handles = f.handles.saturating_sub(1);
            }
            d.collect(self.id);
        }
    }
}

impl SegmentFile for SimFile {
    type View = SimView;

    async fn write_at(&self, buf: Vec<u8>, pos: u64) -> (io::Result<()>, Vec<u8>) {
        let mut d = self.disk.borrow_mut();
        if let Err(e) = d.begin_plain(OpClass::Mutate) {
            return (Err(e), buf);
        }
        let end = pos.checked_add(buf.len() as u64);
        if end.is_none_or(|end| end > self.len) {
            let e = io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "simulated disk: write of {} bytes at {pos} past the end ({})",
                    buf.len(),
                    self.len
                ),
            );
            return (Err(e), buf);
        }
        let Some(f) = d.files.get_mut(&self.id) else {
            return (Err(io::Error::other("simulated disk: file freed while open")), buf);
        };
        let start = pos as usize;
        Arc::make_mut(&mut f.current)[start..start + buf.len()].copy_from_slice(&buf);
        f.pending.push((pos, buf.clone()));
        (Ok(()), buf)
    }

    /// Like fdatasync: covers the writes made before it started; with sync turns, writes
    /// issued while it is in flight stay pending.
    async fn sync_data(&self) -> io::Result<()> {
        let (covered, turns, delay) = {
            let mut d = self.disk.borrow_mut();
            d.begin_plain(OpClass::Mutate)?;
            (
                d.files.get(&self.id).map_or(0, |f| f.pending.len()),
                d.sync_turns,
                d.sync_delay,
            )
        };
        for _ in 0..turns {
            crate::sched::yield_now().await;
        }
        if !delay.is_zero() {
            monoio::time::sleep(delay).await;
        }
        let mut d = self.disk.borrow_mut();
        d.check_alive()?;
        if let Some(f) = d.files.get_mut(&self.id) {
            f.sync_first(covered);
        }
        Ok(())
    }

    fn len(&self) -> u64 {
        self.len
    }

    fn view(&self) -> io::Result<SimView> {
        let d = self.disk.borrow();
        d.check_alive()?;
        d.files
            .get(&self.id)
            .map(|f| SimView(Arc::clone(&f.current)))
            .ok_or_else(|| io::Error::other("simulated disk: file freed while open"))
    }
}

impl Fs for SimFs {
    type File = SimFile;

    async fn create_zeroed(&self, path: &Path, len: u64, _write_zeros: bool) -> io::Result<SimFile> {
        let p = key(path);
        let id = {
            let mut d = self.disk.borrow_mut();
            let gate = d.begin(OpClass::Mutate)?;
            d.check_new_file(&p)?;
            if let Gate::Fault(e) = gate {
                // The real one has created the file when its allocation or zero-fill fails.
                let id = d.add_file(FileData::new_durable(Arc::default()));
                d.names.insert(p, id);
                return Err(e);
            }
            let n = file_len_ok(len, &p)?;
            let id = d.add_file(FileData::new_durable(zeroed(n)));
            d.names.insert(p, id);
            id
        };
        Ok(self.file(id, len))
    }

    async fn open(&self, path: &Path) -> io::Result<SimFile> {
        let p = key(path);
        let (id, len) = {
            let mut d = self.disk.borrow_mut();
            d.begin_plain(OpClass::Open)?;
            let id = d.lookup(&p)?;
            let len = d.files.get(&id).map_or(0, |f| f.durable.len() as u64);
            (id, len)
        };
        Ok(self.file(id, len))
    }

    async fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let (from, to) = (key(from), key(to));
        let mut d = self.disk.borrow_mut();
        d.begin_plain(OpClass::Mutate)?;
        if d.dirs.contains(&from) {
            return Err(kind_error(io::ErrorKind::Unsupported, "renaming a directory", &from));
        }
        let id = d.lookup(&from)?;
        d.check_target(&to)?;
        d.move_name(&from, &to, id);
        Ok(())
    }

    async fn remove(&self, path: &Path) -> io::Result<()> {
        let p = key(path);
        let mut d = self.disk.borrow_mut();
        d.begin_plain(OpClass::Mutate)?;
        let id = d.lookup(&p)?;
        d.names.remove(&p);
        d.collect(id);
        Ok(())
    }

    async fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let dir = key(dir);
        let mut d = self.disk.borrow_mut();
        d.begin_plain(OpClass::Mutate)?;
        if d.names.contains_key(&dir) {
            return Err(errno_error(libc::ENOTDIR));
        }
        if !d.dir_exists(&dir) {
            return Err(kind_error(io::ErrorKind::NotFound, "no such directory", &dir));
        }
        d.sync_names(&dir);
        Ok(())
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let dir = key(dir);
        let mut d = self.disk.borrow_mut();
        d.check_alive()?;
        let new: Vec<PathBuf> = dir
            .ancestors()
            .filter(|a| !a.as_os_str().is_empty() && a.parent().is_some() && *a != Path::new("."))
            .map(Path::to_path_buf)
            .collect();
        if let Some(file) = new.iter().find(|a| d.names.contains_key(*a)) {
            return Err(kind_error(io::ErrorKind::AlreadyExists, "a file is in the way", file));
        }
        d.dirs.extend(new);
        Ok(())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let dir = key(dir);
        let d = self.disk.borrow();
        d.check_alive()?;
        if d.names.contains_key(&dir) {
            return Err(errno_error(libc::ENOTDIR));
        }
        if !d.dir_exists(&dir) {
            return Err(kind_error(io::ErrorKind::NotFound, "no such directory", &dir));
        }
        let mut out: Vec<String> = d
            .names
            .keys()
            .chain(d.dirs.iter())
            .filter(|p| p.parent() == Some(dir.as_path()))
            .filter_map(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .collect();
        out.sort();
        out.dedup();
        Ok(out)
    }

    fn read_small(&self, path: &Path) -> io::Result<Option<Vec<u8>>> {
        let p = key(path);
        let d = self.disk.borrow();
        d.check_alive()?;
        if d.dirs.contains(&p) {
            return Err(errno_error(libc::EISDIR));
        }
        Ok(d.names
            .get(&p)
            .and_then(|id| d.files.get(id))
            .map(|f| f.current.to_vec()))
    }

    async fn write_small_atomic(&self, path: &Path, contents: &[u8]) -> io::Result<()> {
        let p = key(path);
        let tmp = key(&tmp_path(&p));
        let parent = parent_of(&p);
        let mut d = self.disk.borrow_mut();
        // 1. Create (or truncate) the temporary file and write the contents, unsynced.
        d.begin_plain(OpClass::Mutate)?;
        d.check_target(&p)?;
        d.check_target(&tmp)?;
        let n = file_len_ok(contents.len() as u64, &tmp)?;
        let id = d.add_file(FileData {
            current: Arc::new(contents.to_vec()),
            durable: Arc::new(vec![0; n]),
            pending: vec![(0, contents.to_vec())],
            handles: 0,
        });
        if let Some(old) = d.names.insert(tmp.clone(), id) {
            d.collect(old);
        }
        // 2. Sync it.
        d.begin_plain(OpClass::Mutate)?;
        d.sync_file(id);
        // 3. Rename it over `path`.
        d.begin_plain(OpClass::Mutate)?;
        d.move_name(&tmp, &p, id);
        // 4. Sync the directory.
        d.begin_plain(OpClass::Mutate)?;
        d.sync_names(&parent);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    /// Runs a future of the simulated disk, which never waits (no sync turns are set).
    fn block_on<F: Future>(f: F) -> F::Output {
        let mut f = pin!(f);
        match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(v) => v,
            Poll::Pending => panic!("a simulated disk future was pending"),
        }
    }

    fn p(s: &str) -> PathBuf {
        PathBuf::from(s)
    }

    /// Every file name and its bytes.
    fn snapshot(fs: &SimFs) -> BTreeMap<PathBuf, Vec<u8>> {
        let d = fs.disk.borrow();
        d.names
            .iter()
            .map(|(name, id)| (name.clone(), d.files[id].current.to_vec()))
            .collect()
    }

    /// A disk with directory `d` and the durable file `d/f` of `len` zeros, open.
    fn disk_with_file(len: u64) -> (SimFs, SimFile) {
        let fs = SimFs::new();
        fs.create_dir_all(&p("d")).unwrap();
        let f = block_on(fs.create_zeroed(&p("d/f"), len, true)).unwrap();
        block_on(fs.sync_dir(&p("d"))).unwrap();
        (fs, f)
    }

    fn write(f: &SimFile, buf: &[u8], pos: u64) -> io::Result<()> {
        block_on(f.write_at(buf.to_vec(), pos)).0
    }

    #[test]
    fn unsynced_write_is_lost_with_drop_all_and_kept_after_sync() {
        let (fs, f) = disk_with_file(4096);
        write(&f, b"hello", 10).unwrap();
        assert_eq!(&f.view().unwrap()[10..15], b"hello");
        let after = fs.crash(1, CrashMode::DropAll);
        assert_eq!(after.file_bytes(&p("d/f")).unwrap(), vec![0; 4096]);

        block_on(f.sync_data()).unwrap();
        let after = fs.crash(1, CrashMode::DropAll);
        assert_eq!(&after.file_bytes(&p("d/f")).unwrap()[10..15], b"hello");
    }

    #[test]
    fn keep_all_keeps_unsynced_writes() {
        let (fs, f) = disk_with_file(4096);
        write(&f, b"abc", 0).unwrap();
        write(&f, b"xyz", 1000).unwrap();
        let after = fs.crash(7, CrashMode::KeepAll);
        assert_eq!(after.file_bytes(&p("d/f")), fs.file_bytes(&p("d/f")));
    }

    #[test]
    fn torn_writes_change_whole_sectors_each_old_or_new() {
        let len = 8 * SECTOR_BYTES;
        let (fs, f) = disk_with_file(len);
        write(&f, &vec![0xAA; len as usize], 0).unwrap();
        block_on(f.sync_data()).unwrap();
        write(&f, &vec![0xBB; 3000], 100).unwrap();
        let old = vec![0xAAu8; len as usize];
        let new = fs.file_bytes(&p("d/f")).unwrap();
        let (mut torn, mut all_old, mut all_new) = (0, 0, 0);
        for seed in 0..300 {
            let got = fs.crash(seed, CrashMode::Random).file_bytes(&p("d/f")).unwrap();
            let mut sectors_new = 0;
            for s in 0..(len / SECTOR_BYTES) as usize {
                let r = s * 512..(s + 1) * 512;
                if got[r.clone()] == new[r.clone()] && got[r.clone()] != old[r.clone()] {
                    sectors_new += 1;
                } else {
                    assert_eq!(got[r.clone()], old[r], "seed {seed} sector {s} neither old nor new");
                }
            }
            // The write covers sectors 0..=6 (bytes 100..3100).
            match sectors_new {
                0 => all_old += 1,
                7 => all_new += 1,
                _ => torn += 1,
            }
        }
        assert!(torn > 0 && all_old > 0 && all_new > 0, "{torn} {all_old} {all_new}");
    }

    #[test]
    fn torn_sector_carries_earlier_writes_to_it() {
        // Two writes into one sector: the result is one of the versions the sector had.
        let (fs, f) = disk_with_file(SECTOR_BYTES);
        write(&f, &[1; 8], 0).unwrap();
        write(&f, &[2; 8], 8).unwrap();
        let mut versions = vec![vec![0u8; 512]];
        let mut v = vec![0u8; 512];
        v[..8].fill(1);
        versions.push(v.clone());
        v[8..16].fill(2);
        versions.push(v);
        for seed in 0..200 {
            let got = fs.crash(seed, CrashMode::Random).file_bytes(&p("d/f")).unwrap();
            assert!(versions.contains(&got), "seed {seed}");
        }
    }

    #[test]
    fn op_hook_sees_the_disk_before_each_operation() {
        let (fs, f) = disk_with_file(1024);
        let seen: Rc<RefCell<Vec<(u64, bool, DiskImage)>>> = Rc::default();
        let into = Rc::clone(&seen);
        fs.set_op_hook(Some(Box::new(move |k, imager| {
            into.borrow_mut()
                .push((k, imager.unsynced(), imager.image(0, CrashMode::KeepAll)));
        })));
        let start = fs.ops();
        write(&f, b"abc", 0).unwrap();
        block_on(f.sync_data()).unwrap();
        fs.set_op_hook(None);
        write(&f, b"def", 0).unwrap();
        let seen = seen.borrow();
        assert_eq!(seen.len(), 2, "one call per operation, none after the hook is removed");
        assert_eq!((seen[0].0, seen[0].1), (start, false));
        assert_eq!((seen[1].0, seen[1].1), (start + 1, true));
        // Before the write: the old bytes; before the sync: the write, as a crash there leaves it.
        let bytes = |i: usize| SimFs::from_image(&seen[i].2).file_bytes(&p("d/f")).unwrap();
        assert_eq!(bytes(0)[..3], [0, 0, 0]);
        assert_eq!(&bytes(1)[..3], b"abc");
        // Images are equal when they hold the same bytes under the same names.
        block_on(f.sync_data()).unwrap();
        assert_eq!(fs.image(1, CrashMode::DropAll), fs.image(2, CrashMode::KeepAll));
        write(&f, b"ghi", 0).unwrap();
        assert_ne!(fs.image(1, CrashMode::DropAll), fs.image(2, CrashMode::KeepAll));
    }

    #[test]
    fn unsynced_create_vanishes_with_drop_all() {
        let fs = SimFs::new();
        fs.create_dir_all(&p("d")).unwrap();
        let f = block_on(fs.create_zeroed(&p("d/new"), 1024, true)).unwrap();
        assert_eq!(f.len(), 1024);
        assert!(!fs.crash(0, CrashMode::DropAll).exists(&p("d/new")));
        let kept = fs.crash(0, CrashMode::KeepAll);
        assert_eq!(kept.file_bytes(&p("d/new")).unwrap(), vec![0; 1024]);
        block_on(fs.sync_dir(&p("d"))).unwrap();
        assert!(fs.crash(0, CrashMode::DropAll).exists(&p("d/new")));
    }

    #[test]
    fn rename_is_durable_after_sync_dir_and_never_loses_the_file() {
        let (fs, f) = disk_with_file(512);
        write(&f, b"data", 0).unwrap();
        block_on(f.sync_data()).unwrap();
        block_on(fs.rename(&p("d/f"), &p("d/g"))).unwrap();
        assert!(!fs.exists(&p("d/f")) && fs.exists(&p("d/g")));
        let dropped = fs.crash(0, CrashMode::DropAll);
        assert!(dropped.exists(&p("d/f")) && !dropped.exists(&p("d/g")));
        let kept = fs.crash(0, CrashMode::KeepAll);
        assert!(!kept.exists(&p("d/f")) && kept.exists(&p("d/g")));
        let mut seen = BTreeSet::new();
        for seed in 0..50 {
            let after = fs.crash(seed, CrashMode::Random);
            let names = after.list(&p("d")).unwrap();
            assert_eq!(names.len(), 1, "seed {seed}: {names:?}");
            assert_eq!(&after.file_bytes(&p("d").join(&names[0])).unwrap()[..4], b"data");
            seen.insert(names[0].clone());
        }
        assert_eq!(seen.len(), 2);
        block_on(fs.sync_dir(&p("d"))).unwrap();
        let dropped = fs.crash(0, CrashMode::DropAll);
        assert!(!dropped.exists(&p("d/f")) && dropped.exists(&p("d/g")));
    }

    #[test]
    fn rename_over_an_existing_file_replaces_it_atomically() {
        let fs = SimFs::new();
        fs.create_dir_all(&p("d")).unwrap();
        block_on(fs.write_small_atomic(&p("d/a"), b"A")).unwrap();
        block_on(fs.write_small_atomic(&p("d/b"), b"B")).unwrap();
        block_on(fs.rename(&p("d/a"), &p("d/b"))).unwrap();
        assert_eq!(fs.read_small(&p("d/b")).unwrap().unwrap(), b"A");
        for seed in 0..50 {
            let after = fs.crash(seed, CrashMode::Random);
            let a = after.read_small(&p("d/a")).unwrap();
            let b = after.read_small(&p("d/b")).unwrap();
            let ok = (a.is_none() && b.as_deref() == Some(b"A"))
                || (a.as_deref() == Some(b"A") && b.as_deref() == Some(b"B"));
            assert!(ok, "seed {seed}: {a:?} {b:?}");
        }
    }

    #[test]
    fn remove_is_durable_after_sync_dir_and_open_files_outlive_it() {
        let (fs, f) = disk_with_file(512);
        block_on(fs.remove(&p("d/f"))).unwrap();
        assert!(!fs.exists(&p("d/f")));
        write(&f, b"still", 0).unwrap();
        assert_eq!(&f.view().unwrap()[..5], b"still");
        assert!(fs.crash(0, CrashMode::DropAll).exists(&p("d/f")));
        assert!(!fs.crash(0, CrashMode::KeepAll).exists(&p("d/f")));
        block_on(fs.sync_dir(&p("d"))).unwrap();
        assert!(!fs.crash(0, CrashMode::DropAll).exists(&p("d/f")));
        drop(f);
        assert!(fs.disk.borrow().files.is_empty(), "the file was not freed");
    }

    #[test]
    fn write_small_atomic_is_all_or_nothing_across_crashes() {
        let path = p("d/meta");
        for crash_point in 0..=4u64 {
            for seed in 0..100 {
                let fs = SimFs::new();
                fs.create_dir_all(&p("d")).unwrap();
                block_on(fs.write_small_atomic(&path, b"old contents")).unwrap();
                // An unrelated unsynced change in the same directory, for the name lottery.
                drop(block_on(fs.create_zeroed(&p("d/other"), 512, true)).unwrap());
                fs.crash_after(crash_point);
                let r = block_on(fs.write_small_atomic(&path, b"new, longer contents"));
                assert_eq!(r.is_ok(), crash_point >= 4);
                for mode in [CrashMode::Random, CrashMode::DropAll, CrashMode::KeepAll] {
                    let got = fs.crash(seed, mode).read_small(&path).unwrap().unwrap();
                    if crash_point >= 4 {
                        assert_eq!(got, b"new, longer contents");
                    } else {
                        assert!(
                            got == b"old contents" || got == b"new, longer contents",
                            "point {crash_point} seed {seed} {mode:?}: {got:?}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn crash_after_fails_that_op_and_every_later_call() {
        let (fs, f) = disk_with_file(512);
        let start = fs.ops();
        fs.crash_after(2);
        write(&f, b"1", 0).unwrap();
        write(&f, b"2", 1).unwrap();
        assert_eq!(fs.ops(), start + 2);
        let e = write(&f, b"3", 2).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::Other);
        assert_eq!(e.to_string(), "simulated crash");
        assert!(fs.is_dead());
        assert_eq!(block_on(f.sync_data()).unwrap_err().to_string(), "simulated crash");
        assert!(block_on(fs.open(&p("d/f"))).is_err());
        assert!(block_on(fs.create_zeroed(&p("d/g"), 512, true)).is_err());
        assert!(fs.list(&p("d")).is_err());
        assert!(f.view().is_err());
        assert!(!fs.exists(&p("d/g")));
        assert_eq!(&fs.file_bytes(&p("d/f")).unwrap()[..3], b"12\0");
        // Nothing was synced: the crashed disk has none of it, and works.
        let after = fs.crash(0, CrashMode::DropAll);
        assert_eq!(after.file_bytes(&p("d/f")).unwrap(), vec![0; 512]);
        let f2 = block_on(after.open(&p("d/f"))).unwrap();
        write(&f2, b"x", 0).unwrap();
        assert_eq!(after.ops(), 2);
    }

    #[test]
    fn fail_at_returns_eio_and_enospc_once() {
        let (fs, f) = disk_with_file(512);
        let n = fs.ops();
        fs.fail_at(n, FaultKind::Eio);
        fs.fail_at(n + 2, FaultKind::Enospc);
        let e = write(&f, b"lost", 0).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EIO));
        assert_eq!(
            fs.file_bytes(&p("d/f")).unwrap()[..4],
            [0; 4],
            "a failed write wrote nothing"
        );
        write(&f, b"kept", 0).unwrap();
        let e = block_on(f.sync_data()).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOSPC));
        assert_eq!(
            fs.crash(0, CrashMode::DropAll).file_bytes(&p("d/f")).unwrap()[..4],
            [0; 4]
        );
        block_on(f.sync_data()).unwrap();
        assert_eq!(
            &fs.crash(0, CrashMode::DropAll).file_bytes(&p("d/f")).unwrap()[..4],
            b"kept"
        );
    }

    #[test]
    fn forever_faults_fail_every_later_op_of_the_category() {
        let (fs, f) = disk_with_file(512);
        fs.fail_at(fs.ops() + 1, FaultKind::EioForever);
        write(&f, b"a", 0).unwrap();
        for _ in 0..3 {
            assert_eq!(write(&f, b"b", 0).unwrap_err().raw_os_error(), Some(libc::EIO));
            assert_eq!(block_on(f.sync_data()).unwrap_err().raw_os_error(), Some(libc::EIO));
            assert_eq!(
                block_on(fs.sync_dir(&p("d"))).unwrap_err().raw_os_error(),
                Some(libc::EIO)
            );
        }
        assert!(block_on(fs.open(&p("d/f"))).is_ok(), "opens are another category");

        let (fs, _f) = disk_with_file(512);
        fs.fail_at(fs.ops(), FaultKind::EnospcForever);
        let e = block_on(fs.create_zeroed(&p("d/g"), 512, true)).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOSPC));
        assert_eq!(
            fs.file_bytes(&p("d/g")).unwrap(),
            Vec::<u8>::new(),
            "left empty, as the real one"
        );
        let e = block_on(fs.write_small_atomic(&p("d/m"), b"x")).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOSPC));
        assert!(!fs.exists(&p("d/m")));
    }

    #[test]
    fn garbage_crash_leaves_synced_bytes_and_some_random_sectors() {
        let (fs, f) = disk_with_file(64 * 1024);
        write(&f, &[7u8; 4096], 0).unwrap();
        block_on(f.sync_data()).unwrap();
        for i in 0..16u64 {
            write(&f, &[9u8; 512], 4096 + i * 1024).unwrap();
        }
        let mut garbage = 0;
        for seed in 0..64 {
            let got = fs.crash(seed, CrashMode::Garbage).file_bytes(&p("d/f")).unwrap();
            assert!(got[..4096].iter().all(|&b| b == 7), "synced bytes never change");
            for i in 0..16u64 {
                let a = (4096 + i * 1024) as usize;
                let sector = &got[a..a + 512];
                if sector.iter().any(|&b| b != 0 && b != 9) {
                    garbage += 1;
                }
                assert!(got[a + 512..a + 1024].iter().all(|&b| b == 0), "untouched sectors stay");
            }
        }
        assert!(garbage > 0, "some unsynced sectors hold garbage");
    }

    #[test]
    fn crash_is_deterministic_by_seed() {
        let fs = SimFs::new();
        fs.create_dir_all(&p("d")).unwrap();
        let mut files = Vec::new();
        for i in 0..6 {
            let f = block_on(fs.create_zeroed(&p(&format!("d/{i}")), 4096, true)).unwrap();
            if i % 2 == 0 {
                block_on(fs.sync_dir(&p("d"))).unwrap();
            }
            write(&f, &vec![i as u8 + 1; 3000], 700).unwrap();
            write(&f, &[0xEE; 100], 3000).unwrap();
            files.push(f);
        }
        block_on(fs.rename(&p("d/0"), &p("d/renamed"))).unwrap();
        let distinct: BTreeSet<_> = (0..20)
            .map(|seed| {
                let a = snapshot(&fs.crash(seed, CrashMode::Random));
                assert_eq!(a, snapshot(&fs.crash(seed, CrashMode::Random)), "seed {seed}");
                a
            })
            .collect();
        assert!(distinct.len() > 10);
    }

    #[test]
    fn corrupt_flips_durable_bits() {
        let (fs, f) = disk_with_file(512);
        write(&f, &[0x0F; 512], 0).unwrap();
        block_on(f.sync_data()).unwrap();
        fs.corrupt(&p("d/f"), 100, 0x81).unwrap();
        assert_eq!(fs.file_bytes(&p("d/f")).unwrap()[100], 0x8E);
        let after = fs.crash(0, CrashMode::DropAll).file_bytes(&p("d/f")).unwrap();
        assert_eq!(after[100], 0x8E);
        assert_eq!(after[99], 0x0F);
        assert!(fs.corrupt(&p("d/f"), 512, 1).is_err());
        assert!(fs.corrupt(&p("d/none"), 0, 1).is_err());
    }

    #[test]
    fn names_directories_and_bad_input() {
        let fs = SimFs::new();
        assert_eq!(fs.list(&p("data")).unwrap_err().kind(), io::ErrorKind::NotFound);
        fs.create_dir_all(&p("data/shard-0")).unwrap();
        fs.create_dir_all(&p("data/shard-1/")).unwrap();
        drop(block_on(fs.create_zeroed(&p("data/shard-0/b"), 16, true)).unwrap());
        drop(block_on(fs.create_zeroed(&p("data/shard-0/a"), 16, true)).unwrap());
        block_on(fs.write_small_atomic(&p("data/topology"), b"{}")).unwrap();
        assert_eq!(fs.list(&p("data")).unwrap(), ["shard-0", "shard-1", "topology"]);
        assert_eq!(fs.list(&p("data/shard-0")).unwrap(), ["a", "b"]);
        assert_eq!(fs.list(&p("data/shard-1")).unwrap(), Vec::<String>::new());
        assert_eq!(fs.read_small(&p("data/topology")).unwrap().unwrap(), b"{}");
        assert_eq!(fs.read_small(&p("data/none")).unwrap(), None);

        let e = block_on(fs.create_zeroed(&p("data/shard-0/a"), 16, true)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        let e = block_on(fs.create_zeroed(&p("nodir/a"), 16, true)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        let e = block_on(fs.open(&p("data/shard-0/c"))).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        let e = block_on(fs.rename(&p("data/shard-0/c"), &p("data/shard-0/d"))).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        let e = block_on(fs.remove(&p("data/shard-0/c"))).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        let e = block_on(fs.sync_dir(&p("nodir"))).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert!(block_on(fs.create_zeroed(&p("data/huge"), u64::MAX, true)).is_err());

        let f = block_on(fs.open(&p("data/shard-0/a"))).unwrap();
        assert_eq!(f.len(), 16);
        assert_eq!(write(&f, &[1; 4], 13).unwrap_err().kind(), io::ErrorKind::InvalidInput);
        assert_eq!(
            write(&f, &[1; 4], u64::MAX).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
        write(&f, &[1; 4], 12).unwrap();
        let old_view = f.view().unwrap();
        write(&f, &[2; 4], 0).unwrap();
        assert_eq!(old_view[0], 0, "views are snapshots");
        assert_eq!(f.view().unwrap()[..], [2, 2, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1]);
    }

    #[test]
    fn crashed_disk_is_independent() {
        let (fs, f) = disk_with_file(512);
        write(&f, b"old", 0).unwrap();
        let after = fs.crash(3, CrashMode::KeepAll);
        let g = block_on(after.open(&p("d/f"))).unwrap();
        write(&g, b"new", 0).unwrap();
        block_on(after.remove(&p("d/f"))).unwrap();
        assert_eq!(&fs.file_bytes(&p("d/f")).unwrap()[..3], b"old");
        assert!(!after.exists(&p("d/f")));
        assert!(after.exists(&p("d")));
    }
}
