//! The node's resources from /proc (parsed by `procfs-core`): CPU ticks,
//! memory, network bytes (every interface but loopback), and the busy
//! time and written bytes of the disk holding the data directory. All
//! cumulative, as the autoscaler's `NodeSample` wants them. A file that is
//! missing or unreadable (another OS, a locked-down container) leaves its
//! fields at zero rather than failing the sample.

use std::io::Cursor;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use procfs_core::net::InterfaceDeviceStatus;
use procfs_core::{
    DiskStats, ExplicitSystemInfo, FromBufRead, FromBufReadSI, KernelStats, Meminfo,
};
use surge_autoscaler::NodeSample;

/// Bytes per sector in /proc/diskstats, whatever the device's own size.
const SECTOR_BYTES: u64 = 512;
/// Device name prefixes that are not disks.
const VIRTUAL_DISKS: [&str; 3] = ["loop", "ram", "zram"];

/// Which disk the data directory lives on.
#[derive(Debug, Clone)]
pub struct NodeProbe {
    proc_root: PathBuf,
    /// (major, minor) of the data directory's device.
    data_device: Option<(u32, u32)>,
}

/// The text of the /proc files one sample reads.
#[derive(Debug, Default)]
pub struct ProcTexts {
    pub stat: String,
    pub meminfo: String,
    pub net_dev: String,
    pub diskstats: String,
}

impl NodeProbe {
    pub fn new(data_dir: &Path) -> NodeProbe {
        let data_device = std::fs::metadata(data_dir)
            .ok()
            .map(|meta| (libc::major(meta.dev()), libc::minor(meta.dev())));
        NodeProbe {
            proc_root: PathBuf::from("/proc"),
            data_device,
        }
    }

    pub fn sample(&self) -> NodeSample {
        let read =
            |name: &str| std::fs::read_to_string(self.proc_root.join(name)).unwrap_or_default();
        let texts = ProcTexts {
            stat: read("stat"),
            meminfo: read("meminfo"),
            net_dev: read("net/dev"),
            diskstats: read("diskstats"),
        };
        parse(&texts, self.data_device, |name| {
            Path::new("/sys/block").join(name).exists()
        })
    }
}

/// Builds a sample from /proc texts. Disk figures come from the data
/// directory's device when diskstats lists it, else (overlay and tmpfs
/// report a device no disk has) from every whole disk, as `is_disk` tells.
pub fn parse(
    texts: &ProcTexts,
    data_device: Option<(u32, u32)>,
    is_disk: impl Fn(&str) -> bool,
) -> NodeSample {
    let mut sample = NodeSample::default();
    let system = ExplicitSystemInfo {
        boot_time_secs: 0,
        ticks_per_second: 100,
        page_size: 4096,
        is_little_endian: cfg!(target_endian = "little"),
    };
    if let Ok(stats) = KernelStats::from_buf_read(Cursor::new(&texts.stat), &system) {
        let cpu = &stats.total;
        let idle = cpu.idle + cpu.iowait.unwrap_or(0);
        let total = cpu.user
            + cpu.nice
            + cpu.system
            + idle
            + cpu.irq.unwrap_or(0)
            + cpu.softirq.unwrap_or(0)
            + cpu.steal.unwrap_or(0);
        sample.cores = stats.cpu_time.len() as u32;
        sample.cpu_total_ticks = total;
        sample.cpu_busy_ticks = total - idle;
    }
    if let Ok(memory) = Meminfo::from_buf_read(Cursor::new(&texts.meminfo)) {
        sample.mem_total_bytes = memory.mem_total;
        sample.mem_available_bytes = memory.mem_available.unwrap_or(memory.mem_free);
    }
    if let Ok(interfaces) = InterfaceDeviceStatus::from_buf_read(Cursor::new(&texts.net_dev)) {
        for (name, device) in &interfaces.0 {
            if name != "lo" {
                sample.net_rx_bytes += device.recv_bytes;
                sample.net_tx_bytes += device.sent_bytes;
            }
        }
    }
    if let Ok(disks) = DiskStats::from_buf_read(Cursor::new(&texts.diskstats)) {
        let matches_data = |disk: &procfs_core::DiskStat| {
            data_device == Some((disk.major as u32, disk.minor as u32))
        };
        let chosen: Vec<_> = if disks.0.iter().any(matches_data) {
            disks.0.iter().filter(|disk| matches_data(disk)).collect()
        } else {
            disks
                .0
                .iter()
                .filter(|disk| {
                    !VIRTUAL_DISKS
                        .iter()
                        .any(|prefix| disk.name.starts_with(prefix))
                        && is_disk(&disk.name)
                })
                .collect()
        };
        for disk in chosen {
            sample.disk_busy_ms += disk.time_in_progress;
            sample.disk_written_bytes += disk.sectors_written * SECTOR_BYTES;
        }
    }
    sample
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts() -> ProcTexts {
        ProcTexts {
            stat: "cpu  100 5 50 800 20 3 2 0 0 0\n\
                   cpu0 50 2 25 400 10 1 1 0 0 0\n\
                   cpu1 50 3 25 400 10 2 1 0 0 0\n\
                   intr 1\nctxt 10\nbtime 1700000000\nprocesses 5\n\
                   procs_running 1\nprocs_blocked 0\n"
                .into(),
            meminfo: "MemTotal: 1000 kB\nMemFree: 200 kB\nMemAvailable: 600 kB\n\
                      Buffers: 1 kB\nCached: 1 kB\nSwapCached: 0 kB\nActive: 1 kB\n\
                      Inactive: 1 kB\nSwapTotal: 0 kB\nSwapFree: 0 kB\nDirty: 0 kB\n\
                      Writeback: 0 kB\nMapped: 1 kB\nSlab: 1 kB\nCommitted_AS: 1 kB\n\
                      VmallocTotal: 1 kB\nVmallocUsed: 0 kB\nVmallocChunk: 0 kB\n"
                .into(),
            net_dev: "Inter-|   Receive                                                |  Transmit\n \
                      face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    \
                      lo: 5000 10 0 0 0 0 0 0 5000 10 0 0 0 0 0 0\n  \
                      eth0: 1000 10 0 0 0 0 0 0 300 3 0 0 0 0 0 0\n"
                .into(),
            diskstats: "   8       0 sda 10 0 100 5 20 0 40 7 0 9 12 0 0 0 0\n   \
                        8       1 sda1 10 0 100 5 20 0 30 7 0 8 12 0 0 0 0\n   \
                        7       0 loop0 1 0 8 0 0 0 0 0 0 50 0 0 0 0 0\n"
                .into(),
        }
    }

    #[test]
    fn cpu_memory_and_network_come_from_proc() {
        let sample = parse(&texts(), None, |_| true);
        assert_eq!(sample.cores, 2);
        assert_eq!(sample.cpu_total_ticks, 980);
        assert_eq!(sample.cpu_busy_ticks, 160);
        assert_eq!(sample.mem_total_bytes, 1000 * 1024);
        assert_eq!(sample.mem_available_bytes, 600 * 1024);
        assert_eq!(sample.net_rx_bytes, 1000, "loopback is left out");
        assert_eq!(sample.net_tx_bytes, 300);
    }

    #[test]
    fn disk_is_the_data_device_or_every_whole_disk() {
        let on_partition = parse(&texts(), Some((8, 1)), |_| false);
        assert_eq!(on_partition.disk_busy_ms, 8);
        assert_eq!(on_partition.disk_written_bytes, 30 * SECTOR_BYTES);
        let on_overlay = parse(&texts(), Some((0, 42)), |name| {
            name == "sda" || name == "loop0"
        });
        assert_eq!(
            on_overlay.disk_busy_ms, 9,
            "whole disks only, never loop devices"
        );
        assert_eq!(on_overlay.disk_written_bytes, 40 * SECTOR_BYTES);
    }

    #[test]
    fn unreadable_files_leave_zeros() {
        let sample = parse(&ProcTexts::default(), None, |_| true);
        assert_eq!(sample, NodeSample::default());
        let live = NodeProbe::new(Path::new(".")).sample();
        if Path::new("/proc/stat").exists() {
            assert!(live.cores > 0 && live.mem_total_bytes > 0, "{live:?}");
        }
    }
}
