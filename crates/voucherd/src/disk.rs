//! The data directory's file system, in the metrics: read with one
//! `statvfs` at each scrape, so an alert sees the disk fill before SQLite
//! answers 503 for want of space.

use std::path::PathBuf;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

#[derive(Debug)]
struct DataDirCollector {
    path: PathBuf,
}

pub fn register(registry: &mut Registry, path: PathBuf) {
    registry.register_collector(Box::new(DataDirCollector { path }));
}

impl Collector for DataDirCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        // A file system that cannot be read shows no samples (the alert on
        // the disk then relies on the node's other signals).
        let Ok(stats) = rustix::fs::statvfs(&self.path) else {
            return Ok(());
        };
        let block = stats.f_frsize.max(1);
        for (name, help, value) in [
            (
                "voucherd_data_dir_free_bytes",
                "Bytes free to unprivileged users on the data directory's file system",
                stats.f_bavail.saturating_mul(block),
            ),
            (
                "voucherd_data_dir_size_bytes",
                "Size in bytes of the data directory's file system",
                stats.f_blocks.saturating_mul(block),
            ),
        ] {
            let gauge = ConstGauge::new(value as f64);
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        Ok(())
    }
}
