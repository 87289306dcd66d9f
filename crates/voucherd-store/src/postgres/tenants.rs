//! Tenants on PostgreSQL: their rows, current keys and retired keys.

use std::collections::HashMap;

use tokio_postgres::{Client, Transaction};
use voucherd_core::ids::TenantId;

use super::connection::database;
use super::rows::{self, TENANT_COLUMNS, get, stored};
use crate::StoreResult;
use crate::model::{KeyRotation, PublicKey, RetiredKey, Tenant};

pub(crate) async fn insert(client: &Client, tenant: &Tenant) -> StoreResult<()> {
    assert!(tenant.retired_keys.is_empty(), "a new tenant has one key");
    let rate_limit = tenant.rate_limit_per_second.map(rows::integer);
    client
        .execute(
            &format!("INSERT INTO tenants ({TENANT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"),
            &[
                tenant.id.as_uuid(),
                &tenant.name,
                &tenant.signing_key,
                &tenant.time_zone,
                &rate_limit,
                &stored(tenant.created_at),
                &tenant.key_id,
            ],
        )
        .await
        .map_err(database)?;
    Ok(())
}

pub(crate) async fn all(client: &Client) -> StoreResult<Vec<Tenant>> {
    let mut retired: HashMap<uuid::Uuid, Vec<RetiredKey>> = HashMap::new();
    for row in client
        .query(
            "SELECT tenant_id, key_id, signing_key, retired_at FROM tenant_retired_keys
             ORDER BY retired_at",
            &[],
        )
        .await
        .map_err(database)?
    {
        retired.entry(get(&row, 0)?).or_default().push(RetiredKey {
            key_id: get(&row, 1)?,
            signing_key: get(&row, 2)?,
            retired_at: get(&row, 3)?,
        });
    }
    let mut public: HashMap<uuid::Uuid, Vec<PublicKey>> = HashMap::new();
    for row in client
        .query(
            "SELECT tenant_id, key_id, jwk FROM tenant_public_keys ORDER BY key_id",
            &[],
        )
        .await
        .map_err(database)?
    {
        public.entry(get(&row, 0)?).or_default().push(PublicKey {
            key_id: get(&row, 1)?,
            jwk: get(&row, 2)?,
        });
    }
    client
        .query(
            &format!("SELECT {TENANT_COLUMNS} FROM tenants ORDER BY created_at, id"),
            &[],
        )
        .await
        .map_err(database)?
        .iter()
        .map(|row| {
            let mut tenant = rows::tenant(row)?;
            tenant.retired_keys = retired.remove(tenant.id.as_uuid()).unwrap_or_default();
            tenant.public_keys = public.remove(tenant.id.as_uuid()).unwrap_or_default();
            Ok(tenant)
        })
        .collect()
}

/// In one transaction: the current key is retired and the new one takes
/// its place, or nothing changes.
pub(crate) async fn rotate_key(
    transaction: &Transaction<'_>,
    rotation: &KeyRotation,
) -> StoreResult<bool> {
    let moved = transaction
        .execute(
            "INSERT INTO tenant_retired_keys (tenant_id, key_id, signing_key, retired_at)
             SELECT id, key_id, signing_key, $3 FROM tenants
             WHERE id = $1 AND key_id = $2 FOR UPDATE",
            &[
                rotation.tenant_id.as_uuid(),
                &rotation.replacing,
                &stored(rotation.now),
            ],
        )
        .await
        .map_err(database)?;
    if moved == 0 {
        return Ok(false);
    }
    let replaced = transaction
        .execute(
            "UPDATE tenants SET signing_key = $2, key_id = $3 WHERE id = $1",
            &[
                rotation.tenant_id.as_uuid(),
                &rotation.signing_key,
                &rotation.key_id,
            ],
        )
        .await
        .map_err(database)?;
    assert_eq!(replaced, 1, "the tenant whose key was retired exists");
    Ok(true)
}

pub(crate) async fn set_rate_limit(
    client: &Client,
    tenant_id: TenantId,
    rate_limit_per_second: Option<u32>,
) -> StoreResult<bool> {
    let rate_limit = rate_limit_per_second.map(rows::integer);
    let changed = client
        .execute(
            "UPDATE tenants SET rate_limit_per_second = $2 WHERE id = $1",
            &[tenant_id.as_uuid(), &rate_limit],
        )
        .await
        .map_err(database)?;
    Ok(changed == 1)
}

/// In one transaction: the tenant's public keys become exactly `keys`.
pub(crate) async fn set_public_keys(
    transaction: &Transaction<'_>,
    tenant_id: TenantId,
    keys: &[PublicKey],
) -> StoreResult<bool> {
    let known = transaction
        .execute(
            "SELECT 1 FROM tenants WHERE id = $1 FOR UPDATE",
            &[tenant_id.as_uuid()],
        )
        .await
        .map_err(database)?;
    if known == 0 {
        return Ok(false);
    }
    transaction
        .execute(
            "DELETE FROM tenant_public_keys WHERE tenant_id = $1",
            &[tenant_id.as_uuid()],
        )
        .await
        .map_err(database)?;
    for key in keys {
        transaction
            .execute(
                "INSERT INTO tenant_public_keys (tenant_id, key_id, jwk) VALUES ($1, $2, $3)",
                &[tenant_id.as_uuid(), &key.key_id, &key.jwk],
            )
            .await
            .map_err(database)?;
    }
    Ok(true)
}
