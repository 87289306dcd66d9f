//! Opening the store the command line names: the embedded SQLite file in
//! the data directory, or PostgreSQL with `--database-url`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use voucherd_store::postgres::{PostgresConfig, PostgresStore};
use voucherd_store::sqlite::{SqliteConfig, SqliteStore};
use voucherd_store::{Store, StoreError};

use crate::cli::StoreArgs;

pub const DATABASE_FILE: &str = "voucherd.sqlite3";
/// How long a starting node waits for PostgreSQL to answer.
const CONNECT_PATIENCE: Duration = Duration::from_secs(60);

pub async fn open_store(args: &StoreArgs) -> anyhow::Result<Arc<dyn Store>> {
    open(args, false).await
}

/// The store a node serves: on the embedded file, the one process that
/// writes it, so an upload that holds a campaign was interrupted when the
/// last node died and its campaign is free at once (on PostgreSQL another
/// node may be uploading: a lease there runs out by itself).
pub async fn open_store_to_serve(args: &StoreArgs) -> anyhow::Result<Arc<dyn Store>> {
    open(args, true).await
}

async fn open(args: &StoreArgs, serving: bool) -> anyhow::Result<Arc<dyn Store>> {
    match &args.database_url {
        Some(_) => {
            let config = postgres_config(args);
            let started = Instant::now();
            loop {
                match PostgresStore::connect(&config).await {
                    Ok(store) => return Ok(Arc::new(store)),
                    Err(error @ StoreError::Unavailable(_))
                        if started.elapsed() < CONNECT_PATIENCE =>
                    {
                        tracing::warn!(
                            error = &error as &dyn std::error::Error,
                            "PostgreSQL is not answering yet"
                        );
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    Err(error) => return Err(error).context("connecting to PostgreSQL"),
                }
            }
        }
        None => {
            let path = data_dir(args)?.join(DATABASE_FILE);
            let store = SqliteStore::open(&SqliteConfig::new(&path))
                .with_context(|| format!("opening {}", path.display()))?;
            if serving {
                let freed = store
                    .free_interrupted_uploads()
                    .await
                    .context("freeing campaigns of interrupted uploads")?;
                if freed > 0 {
                    tracing::warn!(
                        freed,
                        "campaigns held by uploads the last run interrupted are free; the next upload or publish removes what they staged"
                    );
                }
            }
            Ok(Arc::new(store))
        }
    }
}

fn postgres_config(args: &StoreArgs) -> PostgresConfig {
    let mut config = PostgresConfig::new(args.database_url.clone().unwrap_or_default());
    config.read_url = args.database_read_url.clone();
    config.pool_max = args.database_pool_max.max(1);
    config.query_timeout = Duration::from_millis(args.database_query_timeout_ms);
    config
}

/// The data directory, created when missing.
pub fn data_dir(args: &StoreArgs) -> anyhow::Result<&std::path::Path> {
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating the data directory {}", args.data_dir.display()))?;
    Ok(&args.data_dir)
}

/// Where the store is, for people.
pub fn describe(args: &StoreArgs) -> String {
    match &args.database_url {
        Some(_) => "PostgreSQL".into(),
        None => args.data_dir.join(DATABASE_FILE).display().to_string(),
    }
}

pub async fn migrate(args: &StoreArgs) -> anyhow::Result<()> {
    let applied = match &args.database_url {
        Some(_) => voucherd_store::postgres::migrate(&postgres_config(args))
            .await
            .context("migrating PostgreSQL")?,
        None => {
            let path = data_dir(args)?.join(DATABASE_FILE);
            SqliteStore::migrate(&path).with_context(|| format!("migrating {}", path.display()))?
        }
    };
    println!("{}: applied {applied:?}", describe(args));
    Ok(())
}
