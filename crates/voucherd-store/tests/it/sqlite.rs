//! The conformance suite on the embedded SQLite backend.

use std::sync::Arc;

use voucherd_store::Store;
use voucherd_store::sqlite::{SqliteConfig, SqliteStore};

pub struct SqliteFixture {
    _directory: tempfile::TempDir,
    store: Arc<dyn Store>,
}

impl SqliteFixture {
    pub async fn new() -> SqliteFixture {
        let directory = tempfile::tempdir().expect("a temporary directory");
        let config = SqliteConfig::new(directory.path().join("voucherd.sqlite3"));
        let store = SqliteStore::open(&config).expect("opening SQLite");
        SqliteFixture {
            _directory: directory,
            store: Arc::new(store),
        }
    }

    pub fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }
}

crate::conformance_suite!(SqliteFixture::new());

/// The fault-injecting wrapper, with no fault set, is a store like any
/// other.
mod through_the_fault_wrapper {
    use std::sync::Arc;

    use voucherd_store::Store;
    use voucherd_store::faults::FaultyStore;

    pub struct WrappedFixture {
        inner: super::SqliteFixture,
    }

    impl WrappedFixture {
        pub async fn new() -> WrappedFixture {
            WrappedFixture {
                inner: super::SqliteFixture::new().await,
            }
        }

        pub fn store(&self) -> Arc<dyn Store> {
            Arc::new(FaultyStore::new(self.inner.store()))
        }
    }

    crate::conformance_suite!(WrappedFixture::new());
}
