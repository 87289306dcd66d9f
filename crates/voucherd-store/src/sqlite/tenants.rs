//! Tenants on SQLite: their rows, current keys and retired keys.

use std::collections::HashMap;

use rusqlite::{Connection, params};
use voucherd_core::ids::TenantId;

use super::connection::database;
use super::rows::{self, TENANT_COLUMNS};
use crate::StoreResult;
use crate::model::{KeyRotation, PublicKey, RetiredKey, Tenant};

pub(crate) fn insert(connection: &Connection, tenant: &Tenant) -> StoreResult<()> {
    assert!(tenant.retired_keys.is_empty(), "a new tenant has one key");
    connection
        .execute(
            &format!("INSERT INTO tenants ({TENANT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"),
            params![
                tenant.id.to_string(),
                tenant.name,
                tenant.signing_key,
                tenant.time_zone,
                tenant.rate_limit_per_second,
                rows::millis(tenant.created_at),
                tenant.key_id,
            ],
        )
        .map_err(database)?;
    Ok(())
}

pub(crate) fn all(connection: &Connection) -> StoreResult<Vec<Tenant>> {
    let mut retired: HashMap<String, Vec<RetiredKey>> = HashMap::new();
    let mut statement = connection
        .prepare(
            "SELECT tenant_id, key_id, signing_key, retired_at FROM tenant_retired_keys
             ORDER BY retired_at",
        )
        .map_err(database)?;
    let mut found = statement.query([]).map_err(database)?;
    while let Some(row) = found.next().map_err(database)? {
        let tenant_id: String = row.get(0).map_err(database)?;
        retired.entry(tenant_id).or_default().push(RetiredKey {
            key_id: row.get(1).map_err(database)?,
            signing_key: row.get(2).map_err(database)?,
            retired_at: rows::timestamp(row.get(3).map_err(database)?)?,
        });
    }
    let mut public: HashMap<String, Vec<PublicKey>> = HashMap::new();
    let mut statement = connection
        .prepare("SELECT tenant_id, key_id, jwk FROM tenant_public_keys ORDER BY key_id")
        .map_err(database)?;
    let mut found = statement.query([]).map_err(database)?;
    while let Some(row) = found.next().map_err(database)? {
        let tenant_id: String = row.get(0).map_err(database)?;
        public.entry(tenant_id).or_default().push(PublicKey {
            key_id: row.get(1).map_err(database)?,
            jwk: row.get(2).map_err(database)?,
        });
    }
    let mut statement = connection
        .prepare(&format!(
            "SELECT {TENANT_COLUMNS} FROM tenants ORDER BY created_at"
        ))
        .map_err(database)?;
    let mut found = statement.query([]).map_err(database)?;
    let mut tenants = Vec::new();
    while let Some(row) = found.next().map_err(database)? {
        let mut tenant = rows::tenant(row)?;
        tenant.retired_keys = retired.remove(&tenant.id.to_string()).unwrap_or_default();
        tenant.public_keys = public.remove(&tenant.id.to_string()).unwrap_or_default();
        tenants.push(tenant);
    }
    Ok(tenants)
}

/// Runs on the writer, in one transaction: the current key is retired and
/// the new one takes its place, or nothing changes.
pub(crate) fn rotate_key(connection: &Connection, rotation: &KeyRotation) -> StoreResult<bool> {
    let tenant_id = rotation.tenant_id.to_string();
    let moved = connection
        .execute(
            "INSERT INTO tenant_retired_keys (tenant_id, key_id, signing_key, retired_at)
             SELECT id, key_id, signing_key, ?3 FROM tenants WHERE id = ?1 AND key_id = ?2",
            params![tenant_id, rotation.replacing, rows::millis(rotation.now)],
        )
        .map_err(database)?;
    if moved == 0 {
        return Ok(false);
    }
    let replaced = connection
        .execute(
            "UPDATE tenants SET signing_key = ?2, key_id = ?3 WHERE id = ?1",
            params![tenant_id, rotation.signing_key, rotation.key_id],
        )
        .map_err(database)?;
    assert_eq!(replaced, 1, "the tenant whose key was retired exists");
    Ok(true)
}

pub(crate) fn set_rate_limit(
    connection: &Connection,
    tenant_id: TenantId,
    rate_limit_per_second: Option<u32>,
) -> StoreResult<bool> {
    let changed = connection
        .execute(
            "UPDATE tenants SET rate_limit_per_second = ?2 WHERE id = ?1",
            params![tenant_id.to_string(), rate_limit_per_second],
        )
        .map_err(database)?;
    Ok(changed == 1)
}

/// Runs on the writer, in one transaction: the tenant's public keys become
/// exactly `keys`.
pub(crate) fn set_public_keys(
    connection: &Connection,
    tenant_id: TenantId,
    keys: &[PublicKey],
) -> StoreResult<bool> {
    let id = tenant_id.to_string();
    let known: i64 = connection
        .query_row("SELECT count(*) FROM tenants WHERE id = ?1", [&id], |row| {
            row.get(0)
        })
        .map_err(database)?;
    if known == 0 {
        return Ok(false);
    }
    connection
        .execute("DELETE FROM tenant_public_keys WHERE tenant_id = ?1", [&id])
        .map_err(database)?;
    for key in keys {
        connection
            .execute(
                "INSERT INTO tenant_public_keys (tenant_id, key_id, jwk) VALUES (?1, ?2, ?3)",
                params![id, key.key_id, key.jwk],
            )
            .map_err(database)?;
    }
    Ok(true)
}
