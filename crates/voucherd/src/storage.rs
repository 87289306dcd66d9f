//! Opening the store the command line names.

use std::sync::Arc;

use anyhow::Context;
use voucherd_store::Store;
use voucherd_store::sqlite::{SqliteConfig, SqliteStore};

use crate::cli::StoreArgs;

pub const DATABASE_FILE: &str = "voucherd.sqlite3";

pub fn open_store(args: &StoreArgs) -> anyhow::Result<Arc<dyn Store>> {
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating the data directory {}", args.data_dir.display()))?;
    let path = args.data_dir.join(DATABASE_FILE);
    let store = SqliteStore::open(&SqliteConfig::new(&path))
        .with_context(|| format!("opening {}", path.display()))?;
    Ok(Arc::new(store))
}

pub fn migrate(args: &StoreArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating the data directory {}", args.data_dir.display()))?;
    let path = args.data_dir.join(DATABASE_FILE);
    let applied =
        SqliteStore::migrate(&path).with_context(|| format!("migrating {}", path.display()))?;
    println!("{}: applied {applied:?}", path.display());
    Ok(())
}
