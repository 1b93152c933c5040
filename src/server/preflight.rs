//! Start-up checks of the machine, run by `flo server start` before anything else touches the
//! data directory: io_uring can be set up (and if not, why: no kernel support, the
//! `kernel.io_uring_disabled` sysctl, a seccomp filter, the memlock limit), the data directory
//! exists or can be created and is writable, its file system suits the log, it has room for the
//! log's first segments, and the file-descriptor and memlock limits fit the configuration.
//!
//! Each check gathers its facts from the OS and hands them to a decision function without I/O
//! (`*_verdict`), which says what is wrong in words an operator can act on. Errors stop the
//! start (exit code 1); warnings are logged and the server starts.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::config::Config;

/// How serious a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// The server cannot run well here: refuse to start.
    Error,
    /// The server runs, but something will hurt (durability, limits).
    Warning,
}

/// Something the checks found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub level: Level,
    pub message: String,
}

impl Finding {
    fn error(message: String) -> Finding {
        Finding {
            level: Level::Error,
            message,
        }
    }
    fn warning(message: String) -> Finding {
        Finding {
            level: Level::Warning,
            message,
        }
    }
}

/// The io_uring ring entries a shard asks for (the shard's runtime uses the same number).
pub const RING_ENTRIES: u32 = 1024;
/// Locked memory one ring of [`RING_ENTRIES`] takes on kernels that charge it to
/// RLIMIT_MEMLOCK (64-byte SQEs, 16-byte CQEs at twice the entries, the index array, headers).
const RING_MEMLOCK_BYTES: u64 = 64 * 1024 + 32 * 1024 + 4 * 1024 + 8 * 1024;
/// File descriptors a shard uses beyond connections: listeners, segments, snapshots, ring.
const FDS_PER_SHARD: u64 = 64;
/// Segments the log of a fresh shard needs at once: the active one and the spare made ahead.
const SEGMENTS_AT_START: u64 = 2;

/// Runs every check for `config`; raises the soft file-descriptor limit to what the
/// configuration needs when the hard limit allows.
pub fn run(config: &Config) -> Vec<Finding> {
    let mut findings = Vec::new();
    let kernel = kernel_version();
    let memlock = rlimit(Limit::Memlock);
    let shards = config.shards.max(1) as u64;

    let probe = probe_io_uring(RING_ENTRIES).err();
    let disabled = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
        .ok()
        .and_then(|s| s.trim().parse().ok());
    findings.extend(io_uring_verdict(probe, disabled, kernel, memlock.map(|l| l.0)));
    if probe.is_none() {
        findings.extend(memlock_verdict(kernel, memlock.map(|l| l.0), shards));
    }

    let needed_fds = config.http.max_connections + shards * FDS_PER_SHARD;
    let nofile = raise_nofile(needed_fds);
    findings.extend(nofile_verdict(nofile, config.http.max_connections, needed_fds));

    match check_data_dir(&config.data_dir) {
        Err(f) => findings.push(f),
        Ok(()) => {
            let fresh = !config.data_dir.join(crate::log::topology::FILE_NAME).exists();
            let needed = shards * SEGMENTS_AT_START * config.log.segment_bytes;
            match fs_stats(&config.data_dir) {
                Ok(st) => {
                    findings.extend(fs_verdict(&config.data_dir, st.fs_type));
                    findings.extend(space_verdict(&config.data_dir, st.avail_bytes, needed, fresh, shards));
                }
                Err(e) => findings.push(Finding::warning(format!(
                    "data_dir {}: cannot read its file system's figures (statvfs): {e}",
                    config.data_dir.display()
                ))),
            }
        }
    }
    findings
}

// ---------------------------------------------------------------------------------------------
// io_uring

/// Sets up (and closes) an io_uring instance; the errno when the kernel refuses.
fn probe_io_uring(entries: u32) -> Result<(), i32> {
    // struct io_uring_params is 120 bytes; zeroed means no flags and no features asked for.
    let mut params = [0u64; 15];
    // SAFETY: io_uring_setup reads and writes only the 120-byte params struct we pass, and
    // returns a new descriptor (which we own and close) or -1 with errno set.
    let fd = unsafe { libc::syscall(libc::SYS_io_uring_setup, entries, params.as_mut_ptr()) };
    if fd < 0 {
        return Err(io::Error::last_os_error().raw_os_error().unwrap_or(0));
    }
    // SAFETY: `fd` is the descriptor io_uring_setup just gave us; nothing else holds it.
    unsafe { libc::close(fd as libc::c_int) };
    Ok(())
}

/// What a failed `io_uring_setup` means, given the `kernel.io_uring_disabled` sysctl (absent
/// before Linux 6.6), the kernel version and the soft memlock limit.
pub fn io_uring_verdict(
    errno: Option<i32>,
    disabled: Option<u32>,
    kernel: Option<(u32, u32)>,
    memlock_soft: Option<u64>,
) -> Option<Finding> {
    let errno = errno?;
    let kernel_s = kernel.map_or_else(|| "unknown".to_string(), |(a, b)| format!("{a}.{b}"));
    let message = match errno {
        libc::ENOSYS => format!(
            "io_uring is not available: the io_uring_setup system call does not exist here (kernel \
             {kernel_s}). flo needs Linux 5.11 or newer built with CONFIG_IO_URING=y; in a container, \
             the seccomp profile may also hide it (allow io_uring_setup, io_uring_enter and \
             io_uring_register)"
        ),
        libc::EPERM | libc::EACCES => match disabled {
            Some(2) => "io_uring is disabled on this machine: sysctl kernel.io_uring_disabled = 2. \
                        Allow it with `sysctl -w kernel.io_uring_disabled=0` (and a file in \
                        /etc/sysctl.d/ to keep it after a reboot)"
                .to_string(),
            Some(1) => "io_uring is restricted on this machine: sysctl kernel.io_uring_disabled = 1 \
                        lets only members of the group in kernel.io_uring_group (and CAP_SYS_ADMIN) \
                        use it. Add the user flo runs as to that group, or set \
                        kernel.io_uring_disabled = 0"
                .to_string(),
            _ => "io_uring_setup was refused (permission denied): a seccomp filter or security \
                  module forbids io_uring for this process. Containers' default seccomp profiles \
                  (docker, podman) block it: run flo with a profile that allows io_uring_setup, \
                  io_uring_enter and io_uring_register"
                .to_string(),
        },
        libc::ENOMEM => {
            let limit = memlock_soft.map_or_else(|| "unknown".to_string(), human_limit);
            format!(
                "io_uring_setup could not allocate a ring of {RING_ENTRIES} entries (out of memory). \
                 Kernels before 5.12 (this one: {kernel_s}) charge rings to the locked-memory limit, \
                 now {limit}: raise it (LimitMEMLOCK=infinity in the systemd unit, `ulimit -l \
                 unlimited`, or memlock in /etc/security/limits.conf)"
            )
        }
        libc::EMFILE | libc::ENFILE => {
            "io_uring_setup failed: no file descriptor left (raise LimitNOFILE / ulimit -n)".to_string()
        }
        e => format!(
            "io_uring_setup failed: {} (kernel {kernel_s}); flo needs io_uring",
            io::Error::from_raw_os_error(e)
        ),
    };
    Some(Finding::error(message))
}

/// Kernels before 5.12 charge each shard's ring to RLIMIT_MEMLOCK: warn when the limit is below
/// what the shards' rings need (the probe's one ring fit, so the start may still fail later).
pub fn memlock_verdict(kernel: Option<(u32, u32)>, memlock_soft: Option<u64>, shards: u64) -> Option<Finding> {
    let kernel = kernel?;
    if kernel >= (5, 12) {
        return None; // rings are charged to the memory cgroup instead
    }
    let soft = memlock_soft?;
    // One ring for the start-up checks of the data directory, one per shard.
    let needed = (shards + 1) * RING_MEMLOCK_BYTES;
    (soft < needed).then(|| {
        Finding::warning(format!(
            "RLIMIT_MEMLOCK is {}; kernel {}.{} charges io_uring rings to it and {shards} shards need \
             about {}: raise it (LimitMEMLOCK=infinity in the systemd unit, or `ulimit -l unlimited`)",
            human_limit(soft),
            kernel.0,
            kernel.1,
            human_bytes(needed)
        ))
    })
}

// ---------------------------------------------------------------------------------------------
// limits

/// The resource limits the checks read.
#[derive(Clone, Copy, Debug)]
enum Limit {
    Memlock,
    Nofile,
}

/// (soft, hard) of a resource limit, `u64::MAX` meaning unlimited.
fn rlimit(which: Limit) -> Option<(u64, u64)> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes only into the struct we pass.
    let rc = unsafe {
        match which {
            Limit::Memlock => libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim),
            Limit::Nofile => libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim),
        }
    };
    let conv = |v: libc::rlim_t| if v == libc::RLIM_INFINITY { u64::MAX } else { v };
    (rc == 0).then(|| (conv(lim.rlim_cur), conv(lim.rlim_max)))
}

/// Raises the soft RLIMIT_NOFILE towards `needed` (never past the hard limit); returns the
/// limits as they are afterwards.
fn raise_nofile(needed: u64) -> Option<(u64, u64)> {
    let (soft, hard) = rlimit(Limit::Nofile)?;
    if soft >= needed {
        return Some((soft, hard));
    }
    let target = needed.min(hard);
    let lim = libc::rlimit {
        rlim_cur: target,
        rlim_max: if hard == u64::MAX { libc::RLIM_INFINITY } else { hard },
    };
    // SAFETY: setrlimit reads only the struct we pass.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } == 0 {
        tracing::info!(from = soft, to = target, "raised the soft limit on open files");
        Some((target, hard))
    } else {
        Some((soft, hard))
    }
}

/// Warns when the file-descriptor limit is below what `http.max_connections` implies.
pub fn nofile_verdict(limits: Option<(u64, u64)>, max_connections: u64, needed: u64) -> Option<Finding> {
    let (soft, hard) = limits?;
    (soft < needed).then(|| {
        Finding::warning(format!(
            "the open-files limit is {soft} (hard limit {}) but http.max_connections = {max_connections} \
             needs about {needed}: connections beyond it will fail to be accepted. Raise it \
             (LimitNOFILE= in the systemd unit, `ulimit -n`), or lower http.max_connections",
            human_count(hard)
        ))
    })
}

// ---------------------------------------------------------------------------------------------
// the data directory

/// Creates the data directory if needed and proves it writable: a file is created, written,
/// fdatasync'd and removed.
fn check_data_dir(dir: &Path) -> Result<(), Finding> {
    let fail = |what: &str, e: &io::Error| Finding::error(data_dir_message(dir, what, e));
    std::fs::create_dir_all(dir).map_err(|e| fail("cannot create it", &e))?;
    let meta = std::fs::metadata(dir).map_err(|e| fail("cannot read it", &e))?;
    if !meta.is_dir() {
        return Err(Finding::error(format!(
            "data_dir {}: is not a directory",
            dir.display()
        )));
    }
    let probe = dir.join(format!(".flo-preflight-{}", std::process::id()));
    let result = write_probe(&probe);
    let _ = std::fs::remove_file(&probe);
    result.map_err(|e| fail("cannot write a file in it", &e))
}

fn write_probe(path: &Path) -> io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(path)?;
    f.write_all(&[0u8; 4096])?;
    f.sync_data()
}

/// What an I/O error on the data directory means for the operator.
pub fn data_dir_message(dir: &Path, what: &str, e: &io::Error) -> String {
    let d = dir.display();
    match e.raw_os_error() {
        Some(libc::ENOTDIR | libc::EEXIST) => match first_non_directory(dir) {
            Some(p) => format!(
                "data_dir {d}: {} is a file, not a directory; choose another data_dir",
                p.display()
            ),
            None => format!("data_dir {d}: {what}: a part of the path is not a directory ({e})"),
        },
        Some(libc::EACCES | libc::EPERM) => {
            // SAFETY: geteuid has no preconditions and cannot fail.
            let uid = unsafe { libc::geteuid() };
            format!(
                "data_dir {d}: {what}: permission denied for uid {uid}. The directory (and its \
                 parents) must be writable by the user flo runs as: chown it to that user"
            )
        }
        Some(libc::EROFS) => format!("data_dir {d}: {what}: the file system is mounted read-only"),
        Some(libc::ENOSPC | libc::EDQUOT) => {
            format!("data_dir {d}: {what}: no space left on its file system (or quota reached)")
        }
        _ => format!("data_dir {d}: {what}: {e}"),
    }
}

/// The first existing component of `path` (from the root down) that is not a directory.
fn first_non_directory(path: &Path) -> Option<PathBuf> {
    let mut p = PathBuf::new();
    for c in path.components() {
        p.push(c);
        match std::fs::metadata(&p) {
            Ok(m) if !m.is_dir() => return Some(p),
            Ok(_) => {}
            Err(_) => return None,
        }
    }
    None
}

/// What `statfs`/`statvfs` say about the data directory's file system.
#[derive(Clone, Copy, Debug)]
struct FsStats {
    fs_type: i64,
    avail_bytes: u64,
}

fn fs_stats(dir: &Path) -> io::Result<FsStats> {
    let c = CString::new(dir.as_os_str().as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: both structs are plain data the calls fill in; `c` is a valid C string.
    let (sfs, svfs) = unsafe {
        let mut sfs: libc::statfs = std::mem::zeroed();
        let mut svfs: libc::statvfs = std::mem::zeroed();
        if libc::statfs(c.as_ptr(), &mut sfs) != 0 || libc::statvfs(c.as_ptr(), &mut svfs) != 0 {
            return Err(io::Error::last_os_error());
        }
        (sfs, svfs)
    };
    #[allow(clippy::unnecessary_cast, reason = "f_type's width differs between architectures")]
    let fs_type = sfs.f_type as i64;
    Ok(FsStats {
        fs_type,
        avail_bytes: svfs.f_bavail.saturating_mul(svfs.f_frsize),
    })
}

/// File system magic numbers (`statfs.f_type`, from linux/magic.h).
mod magic {
    pub const EXT4: i64 = 0xEF53; // also ext2 and ext3
    pub const XFS: i64 = 0x5846_5342;
    pub const BTRFS: i64 = 0x9123_683E;
    pub const TMPFS: i64 = 0x0102_1994;
    pub const OVERLAYFS: i64 = 0x794C_7630;
    pub const NFS: i64 = 0x6969;
    pub const SMB2: i64 = 0xFE53_4D42;
    pub const CIFS: i64 = 0xFF53_4D42;
    pub const FUSE: i64 = 0x6573_5546;
}

/// Warns about file systems the log is not meant for (ext4 and xfs are what it is tested on).
pub fn fs_verdict(dir: &Path, fs_type: i64) -> Option<Finding> {
    let d = dir.display();
    let why = match fs_type {
        magic::EXT4 | magic::XFS | magic::BTRFS => return None,
        magic::TMPFS => "is on tmpfs: everything in it is lost at reboot (use ext4 or xfs)",
        magic::OVERLAYFS => "is on overlayfs (a container's writable layer): mount a volume with ext4 or xfs for it",
        magic::NFS | magic::SMB2 | magic::CIFS => {
            "is on a network file system: flock, fdatasync and preallocation there do not give the \
             guarantees the log relies on (use a local ext4 or xfs)"
        }
        magic::FUSE => "is on a FUSE file system: fdatasync may not reach the disk (use ext4 or xfs)",
        _ => return None,
    };
    Some(Finding::warning(format!("data_dir {d} {why}")))
}

/// A fresh data directory needs room for each shard's first segments; an existing one starts
/// anyway (reads work, writes needing a new segment answer 507 until space is freed).
pub fn space_verdict(dir: &Path, avail_bytes: u64, needed_bytes: u64, fresh: bool, shards: u64) -> Option<Finding> {
    if avail_bytes >= needed_bytes {
        return None;
    }
    let d = dir.display();
    let (avail, needed) = (human_bytes(avail_bytes), human_bytes(needed_bytes));
    Some(if fresh {
        Finding::error(format!(
            "data_dir {d}: {avail} free on its file system, but a new data directory needs {needed} \
             ({shards} shards × {SEGMENTS_AT_START} preallocated segments of log.segment_bytes): free \
             space, choose another data_dir, or lower log.segment_bytes or shards"
        ))
    } else {
        Finding::warning(format!(
            "data_dir {d}: only {avail} free on its file system (below {needed}): writes that need a \
             new log segment will be answered 507 insufficient_storage until space is freed"
        ))
    })
}

// ---------------------------------------------------------------------------------------------
// helpers

/// The running kernel's (major, minor) version.
fn kernel_version() -> Option<(u32, u32)> {
    // SAFETY: uname fills in the struct we pass; zeroed is a valid starting state.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::uname(&mut u) } != 0 {
        return None;
    }
    let bytes: Vec<u8> = u.release.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
    parse_kernel(&String::from_utf8_lossy(&bytes))
}

/// `6.1.0-18-amd64` → (6, 1).
pub fn parse_kernel(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["bytes", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} bytes")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn human_limit(b: u64) -> String {
    if b == u64::MAX {
        "unlimited".into()
    } else {
        human_bytes(b)
    }
}

fn human_count(n: u64) -> String {
    if n == u64::MAX {
        "unlimited".into()
    } else {
        n.to_string()
    }
}

/// Joins the errors among `findings` into one message (`None` when there are none).
pub fn errors_message(findings: &[Finding]) -> Option<String> {
    let errors: Vec<&str> = findings
        .iter()
        .filter(|f| f.level == Level::Error)
        .map(|f| f.message.as_str())
        .collect();
    match errors.as_slice() {
        [] => None,
        [one] => Some((*one).to_string()),
        many => Some(format!(
            "{} problems stop the start:\n  - {}",
            many.len(),
            many.join("\n  - ")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(f: Option<Finding>) -> (Level, String) {
        let f = f.expect("a finding");
        (f.level, f.message)
    }

    #[test]
    fn io_uring_ok_says_nothing() {
        assert_eq!(io_uring_verdict(None, Some(2), Some((6, 8)), Some(0)), None);
    }

    #[test]
    fn io_uring_disabled_by_sysctl_is_named() {
        let (level, m) = msg(io_uring_verdict(Some(libc::EPERM), Some(2), Some((6, 8)), None));
        assert_eq!(level, Level::Error);
        assert!(m.contains("kernel.io_uring_disabled = 2"), "{m}");
        assert!(m.contains("sysctl -w kernel.io_uring_disabled=0"), "{m}");
        let (_, m) = msg(io_uring_verdict(Some(libc::EPERM), Some(1), Some((6, 8)), None));
        assert!(m.contains("kernel.io_uring_group"), "{m}");
        // No sysctl (before 6.6) or 0: a seccomp filter is the usual reason.
        let (_, m) = msg(io_uring_verdict(Some(libc::EPERM), None, Some((5, 15)), None));
        assert!(m.contains("seccomp"), "{m}");
        let (_, m) = msg(io_uring_verdict(Some(libc::EPERM), Some(0), Some((6, 8)), None));
        assert!(m.contains("seccomp"), "{m}");
    }

    #[test]
    fn io_uring_missing_and_memlock() {
        let (_, m) = msg(io_uring_verdict(Some(libc::ENOSYS), None, Some((4, 19)), None));
        assert!(m.contains("5.11") && m.contains("4.19"), "{m}");
        let (_, m) = msg(io_uring_verdict(Some(libc::ENOMEM), None, Some((5, 11)), Some(65536)));
        assert!(m.contains("64.0 KiB") && m.contains("LimitMEMLOCK"), "{m}");
        let (_, m) = msg(io_uring_verdict(Some(libc::EINVAL), None, None, None));
        assert!(m.contains("Invalid argument"), "{m}");
    }

    #[test]
    fn memlock_matters_only_before_5_12() {
        assert_eq!(memlock_verdict(Some((6, 1)), Some(65536), 64), None);
        assert_eq!(memlock_verdict(Some((5, 11)), Some(u64::MAX), 64), None);
        assert_eq!(memlock_verdict(Some((5, 11)), Some(64 << 20), 4), None);
        let (level, m) = msg(memlock_verdict(Some((5, 11)), Some(65536), 4));
        assert_eq!(level, Level::Warning);
        assert!(m.contains("4 shards") && m.contains("5.11"), "{m}");
    }

    #[test]
    fn nofile_below_connections_warns() {
        assert_eq!(nofile_verdict(Some((20_000, 20_000)), 10_000, 10_128), None);
        let (level, m) = msg(nofile_verdict(Some((1024, 4096)), 10_000, 10_128));
        assert_eq!(level, Level::Warning);
        assert!(
            m.contains("1024") && m.contains("4096") && m.contains("max_connections = 10000"),
            "{m}"
        );
    }

    #[test]
    fn space_fresh_is_an_error_existing_a_warning() {
        let dir = Path::new("/srv/flo");
        assert_eq!(space_verdict(dir, 1 << 30, 256 << 20, true, 2), None);
        let (level, m) = msg(space_verdict(dir, 100 << 20, 256 << 20, true, 2));
        assert_eq!(level, Level::Error);
        assert!(
            m.contains("100.0 MiB free") && m.contains("needs 256.0 MiB") && m.contains("2 shards"),
            "{m}"
        );
        let (level, m) = msg(space_verdict(dir, 100 << 20, 256 << 20, false, 2));
        assert_eq!(level, Level::Warning);
        assert!(m.contains("507"), "{m}");
    }

    #[test]
    fn file_systems() {
        let dir = Path::new("/d");
        assert_eq!(fs_verdict(dir, magic::EXT4), None);
        assert_eq!(fs_verdict(dir, magic::XFS), None);
        assert!(msg(fs_verdict(dir, magic::TMPFS)).1.contains("tmpfs"));
        assert!(msg(fs_verdict(dir, magic::NFS)).1.contains("network"));
        assert_eq!(fs_verdict(dir, 0x1234), None);
    }

    #[test]
    fn data_dir_messages() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let file = tmp.path().join("plain-file");
        std::fs::write(&file, b"x").expect("write");
        let dir = file.join("data");
        let e = std::fs::create_dir_all(&dir).expect_err("under a file");
        let m = data_dir_message(&dir, "cannot create it", &e);
        assert!(
            m.contains(&format!("{} is a file, not a directory", file.display())),
            "{m}"
        );

        let m = data_dir_message(
            Path::new("/x"),
            "cannot create it",
            &io::Error::from_raw_os_error(libc::EACCES),
        );
        assert!(m.contains("permission denied") && m.contains("chown"), "{m}");
        let m = data_dir_message(
            Path::new("/x"),
            "cannot write",
            &io::Error::from_raw_os_error(libc::EROFS),
        );
        assert!(m.contains("read-only"), "{m}");
    }

    #[test]
    fn checks_a_real_directory() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("a/b/data");
        check_data_dir(&dir).expect("creatable and writable");
        assert!(dir.is_dir());
        assert_eq!(
            std::fs::read_dir(&dir).expect("read").count(),
            0,
            "the probe file is removed"
        );
        let file = tmp.path().join("f");
        std::fs::write(&file, b"x").expect("write");
        let f = check_data_dir(&file.join("data")).expect_err("under a file");
        assert_eq!(f.level, Level::Error);
        let st = fs_stats(tmp.path()).expect("statvfs");
        assert!(st.avail_bytes > 0);
    }

    #[test]
    fn kernel_versions_and_joined_errors() {
        assert_eq!(parse_kernel("6.1.0-18-amd64"), Some((6, 1)));
        assert_eq!(parse_kernel("5.15.153.1-microsoft-standard-WSL2"), Some((5, 15)));
        assert_eq!(parse_kernel("junk"), None);
        assert!(kernel_version().is_some());
        let e = |m: &str| Finding::error(m.into());
        assert_eq!(errors_message(&[Finding::warning("w".into())]), None);
        assert_eq!(errors_message(&[e("a")]).as_deref(), Some("a"));
        let both = errors_message(&[e("a"), Finding::warning("w".into()), e("b")]).expect("errors");
        assert!(
            both.starts_with("2 problems") && both.contains("  - a\n  - b"),
            "{both}"
        );
    }
}
