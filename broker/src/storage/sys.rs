//! Raw system calls storage needs that the standard library lacks:
//! `fallocate`, `posix_fadvise`, `sync_file_range`, positioned gather
//! writes (`pwritev`) and io_uring submission. Besides `mmap.rs`, the only module
//! allowed `unsafe`; each use carries its `// SAFETY:` argument.

#![allow(unsafe_code)]

use std::fs::File;
use std::io::{self, IoSlice};
use std::os::fd::AsRawFd;

use io_uring::{opcode, squeue, types, IoUring};

/// Most resubmissions for one write before a run of short writes is an error.
const MAX_WRITE_ROUNDS: usize = 1024;
const WRITE_TAG: u64 = 1;
const FSYNC_TAG: u64 = 2;
/// Most buffers one gather write takes (Linux's IOV_MAX); a write of more
/// goes out in several.
const MAX_IOVECS: usize = 1024;

/// A byte position or length as the system call's offset type; past it,
/// the file would be too large.
fn file_offset<T: TryFrom<u64>>(value: u64) -> io::Result<T> {
    T::try_from(value).map_err(|_| io::Error::from_raw_os_error(libc::EFBIG))
}

/// Grows `file` to at least `len_bytes` with allocated blocks (so a full disk
/// shows up here, not as SIGBUS under a map). Falls back to `set_len` where
/// the filesystem does not support fallocate.
pub(crate) fn preallocate(file: &File, len_bytes: u64) -> io::Result<()> {
    let len = file_offset(len_bytes)?;
    // SAFETY: fallocate reads only its integer arguments; the fd is open and
    // owned by `file` for the duration of the call.
    let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, len) };
    if rc == 0 {
        return Ok(());
    }
    let error = io::Error::last_os_error();
    match error.raw_os_error() {
        Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS) => {
            if file.metadata()?.len() < len_bytes {
                file.set_len(len_bytes)?;
            }
            Ok(())
        }
        _ => Err(error),
    }
}

/// Drops the clean, unmapped pages of `start..start + len` of `file` from
/// the page cache (dirty ones are only queued for writeback).
pub(crate) fn drop_cached(file: &File, start: u64, len: u64) -> io::Result<()> {
    let start = file_offset(start)?;
    let len = file_offset(len)?;
    // SAFETY: posix_fadvise reads only its integer arguments; the fd is
    // open and owned by `file` for the duration of the call.
    let rc =
        unsafe { libc::posix_fadvise(file.as_raw_fd(), start, len, libc::POSIX_FADV_DONTNEED) };
    // posix_fadvise returns the error number instead of setting errno.
    match rc {
        0 => Ok(()),
        errno => Err(io::Error::from_raw_os_error(errno)),
    }
}

/// Starts writeback of the dirty pages of `start..start + len` of `file`
/// without waiting for it (and without making anything durable).
pub(crate) fn start_writeback(file: &File, start: u64, len: u64) -> io::Result<()> {
    let start = file_offset(start)?;
    let len = file_offset(len)?;
    // SAFETY: sync_file_range reads only its integer arguments; the fd is
    // open and owned by `file` for the duration of the call.
    let rc =
        unsafe { libc::sync_file_range(file.as_raw_fd(), start, len, libc::SYNC_FILE_RANGE_WRITE) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Pages of `start..start + len` of `file` that are dirty or under
/// writeback, by `cachestat` (Linux 6.5).
#[cfg(test)]
pub(crate) fn unclean_pages(file: &File, start: u64, len: u64) -> io::Result<u64> {
    // Not in the libc crate for every target; system calls from 424 on
    // have one number on all architectures but alpha.
    const SYS_CACHESTAT: libc::c_long = 451;
    #[repr(C)]
    struct Range {
        off: u64,
        len: u64,
    }
    #[repr(C)]
    #[derive(Default)]
    struct Stat {
        nr_cache: u64,
        nr_dirty: u64,
        nr_writeback: u64,
        nr_evicted: u64,
        nr_recently_evicted: u64,
    }
    let range = Range { off: start, len };
    let mut stat = Stat::default();
    // SAFETY: cachestat reads `range` and writes one `Stat`, both laid out
    // as the kernel's structs and alive for the call; the fd is open.
    let rc = unsafe {
        libc::syscall(
            SYS_CACHESTAT,
            file.as_raw_fd(),
            &range as *const Range,
            &mut stat as *mut Stat,
            0u32,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(stat.nr_dirty + stat.nr_writeback)
}

/// Which pages of `file`'s first `len` bytes are in the page cache, by a
/// private map of its own and `mincore`.
#[cfg(test)]
pub(crate) fn cached_pages(file: &File, len: usize) -> io::Result<Vec<bool>> {
    // SAFETY: sysconf reads a constant.
    let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) })
        .map_err(|_| io::Error::last_os_error())?;
    // SAFETY: a fresh read-only shared map of `len` bytes of an open file;
    // it is only passed to mincore and unmapped before returning, never
    // read through.
    let addr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        )
    };
    if addr == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    let mut flags = vec![0u8; len.div_ceil(page)];
    // SAFETY: `addr` maps `len` bytes and `flags` has a byte per page.
    let rc = unsafe { libc::mincore(addr, len, flags.as_mut_ptr()) };
    let error = io::Error::last_os_error();
    // SAFETY: unmaps exactly the map made above.
    unsafe { libc::munmap(addr, len) };
    if rc != 0 {
        return Err(error);
    }
    Ok(flags.iter().map(|flag| flag & 1 == 1).collect())
}

/// Writes all of `bufs`, in order, at `position` with `pwritev`,
/// continuing after a short write.
pub(crate) fn pwritev_all(
    file: &File,
    mut position: u64,
    mut bufs: &mut [IoSlice<'_>],
) -> io::Result<()> {
    IoSlice::advance_slices(&mut bufs, 0);
    while !bufs.is_empty() {
        let count = bufs.len().min(MAX_IOVECS);
        let offset = file_offset(position)?;
        // SAFETY: `IoSlice` is ABI-compatible with `iovec` on Unix, and the
        // first `count` of `bufs` are valid borrowed buffers for the call.
        let written = unsafe {
            libc::pwritev(
                file.as_raw_fd(),
                bufs.as_ptr().cast::<libc::iovec>(),
                count as libc::c_int,
                offset,
            )
        };
        match written {
            0 => {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "pwritev wrote 0 bytes",
                ))
            }
            n if n > 0 => {
                IoSlice::advance_slices(&mut bufs, n as usize);
                position += n as u64;
            }
            _ => {
                let error = io::Error::last_os_error();
                if error.kind() != io::ErrorKind::Interrupted {
                    return Err(error);
                }
            }
        }
    }
    Ok(())
}

/// Writes all of `bufs`, in order, at `position` through `ring`, with a
/// linked datasync when `sync`, resubmitting the rest after a short write.
pub(crate) fn uring_write_all(
    ring: &mut IoUring,
    file: &File,
    mut position: u64,
    mut bufs: &mut [IoSlice<'_>],
    sync: bool,
) -> io::Result<()> {
    let fd = types::Fd(file.as_raw_fd());
    IoSlice::advance_slices(&mut bufs, 0);
    for _ in 0..MAX_WRITE_ROUNDS {
        let count = bufs.len().min(MAX_IOVECS) as u32;
        // `IoSlice` is ABI-compatible with `iovec` on Unix.
        let write = opcode::Writev::new(fd, bufs.as_ptr().cast::<libc::iovec>(), count)
            .offset(position)
            .build()
            .user_data(WRITE_TAG);
        let (written, synced) = if sync {
            let link = write.flags(squeue::Flags::IO_LINK);
            let fsync = opcode::Fsync::new(fd)
                .flags(types::FsyncFlags::DATASYNC)
                .build()
                .user_data(FSYNC_TAG);
            submit_and_reap(ring, &[link, fsync])?
        } else {
            submit_and_reap(ring, &[write])?
        };
        if written == 0 {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "io_uring wrote 0 bytes",
            ));
        }
        IoSlice::advance_slices(&mut bufs, written);
        position += written as u64;
        if bufs.is_empty() {
            if sync && !synced {
                // The write completed in one go but its linked fsync was
                // cancelled (a short result severs a link): sync directly.
                file.sync_data()?;
            }
            return Ok(());
        }
    }
    Err(io::Error::new(
        io::ErrorKind::WriteZero,
        "too many short io_uring writes",
    ))
}

/// Pushes `entries`, waits for all their completions, and returns the bytes
/// the write reported and whether a linked fsync succeeded.
fn submit_and_reap(ring: &mut IoUring, entries: &[squeue::Entry]) -> io::Result<(usize, bool)> {
    // Drain completions a previous, failed call may have left behind.
    ring.completion().for_each(drop);
    for entry in entries {
        // SAFETY: the write entry points at buffers (and their iovec array)
        // borrowed by our caller for the whole call, and we wait below for
        // the completion of every entry pushed here before returning, so
        // the kernel never reads them after the borrow ends.
        unsafe { ring.submission().push(entry) }
            .map_err(|_| io::Error::other("io_uring submission queue full"))?;
    }
    let mut written: Option<usize> = None;
    let mut synced = false;
    let mut reaped = 0;
    let mut first_error: Option<io::Error> = None;
    while reaped < entries.len() {
        match ring.submit_and_wait(entries.len() - reaped) {
            Ok(_) => {}
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) if error.raw_os_error() == Some(libc::EBUSY) => continue,
            Err(error) => return Err(error),
        }
        for cqe in ring.completion() {
            reaped += 1;
            let result = cqe.result();
            match (cqe.user_data(), result) {
                (WRITE_TAG, res) if res >= 0 => written = Some(res as usize),
                (FSYNC_TAG, 0) => synced = true,
                (FSYNC_TAG, res) if res == -libc::ECANCELED => {}
                (_, res) => {
                    first_error.get_or_insert(io::Error::from_raw_os_error(-res));
                }
            }
        }
    }
    if let Some(error) = first_error {
        return Err(error);
    }
    let written = written.ok_or_else(|| io::Error::other("io_uring write lost its completion"))?;
    Ok((written, synced))
}
