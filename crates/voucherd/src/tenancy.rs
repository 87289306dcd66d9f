//! Tenants from the command line: the development tenant made on first
//! start, `voucherd tenant create | list | rotate-key | set-limits |
//! set-public-keys`, `voucherd account create`, and `voucherd token`.

use anyhow::{Context, bail};
use voucherd_core::ids::{TenantId, UserId};
use voucherd_core::{SignedDuration, TimeZone, Timestamp};
use voucherd_http::auth::{Role, mint};
use voucherd_store::Store;
use voucherd_store::model::{Account, AccountRole, Tenant};

use crate::cli::{
    AccountCreateArgs, AccountRoleArg, RoleArg, TenantCreateArgs, TenantKeyArgs, TenantLimitsArgs,
    TenantListArgs, TenantPublicKeysArgs, TokenArgs,
};
use crate::storage::open_store;

pub const DEVELOPMENT_TENANT: &str = "development";
/// Signing keys are 256 random bits, the size of HS256's hash.
const SIGNING_KEY_BYTES: usize = 32;
/// The id of a tenant's first key; each rotation counts up (`k2`, ...).
const FIRST_KEY_ID: &str = "k1";

pub fn new_tenant(
    name: &str,
    time_zone: &str,
    rate_limit_per_second: Option<u32>,
) -> anyhow::Result<Tenant> {
    TimeZone::get(time_zone).with_context(|| format!("unknown time zone {time_zone:?}"))?;
    Ok(Tenant {
        id: TenantId::from_uuid(uuid::Uuid::new_v4()),
        name: name.to_owned(),
        signing_key: new_signing_key()?,
        time_zone: time_zone.to_owned(),
        rate_limit_per_second,
        created_at: Timestamp::now(),
        key_id: FIRST_KEY_ID.to_owned(),
        retired_keys: Vec::new(),
        public_keys: Vec::new(),
    })
}

/// 256 random bits from the operating system.
pub fn new_signing_key() -> anyhow::Result<Vec<u8>> {
    let mut signing_key = vec![0; SIGNING_KEY_BYTES];
    getrandom::fill(&mut signing_key)
        .map_err(|error| anyhow::anyhow!("drawing a signing key: {error}"))?;
    Ok(signing_key)
}

pub async fn list_tenants(args: TenantListArgs) -> anyhow::Result<()> {
    let store = open_store(&args.store).await?;
    println!("id\tname\ttime_zone\trate_limit_per_second\tkey_id\tretired_key_ids");
    for tenant in store.tenants().await.context("reading tenants")? {
        let retired: Vec<&str> = tenant
            .retired_keys
            .iter()
            .map(|retired| retired.key_id.as_str())
            .collect();
        println!(
            "{}\t{}\t{}\t{}\t{}\t{}",
            tenant.id,
            tenant.name,
            tenant.time_zone,
            tenant
                .rate_limit_per_second
                .map_or("none".to_owned(), |rate| rate.to_string()),
            tenant.key_id,
            retired.join(",")
        );
    }
    Ok(())
}

pub async fn rotate_key(args: TenantKeyArgs) -> anyhow::Result<()> {
    let store = open_store(&args.store).await?;
    let tenant = tenant_named(&*store, Some(&args.tenant)).await?;
    let rotation = voucherd_store::model::KeyRotation {
        tenant_id: tenant.id,
        replacing: tenant.key_id.clone(),
        key_id: voucherd_engine::next_key_id(&tenant),
        signing_key: new_signing_key()?,
        now: Timestamp::now(),
    };
    if !store
        .rotate_tenant_key(&rotation)
        .await
        .context("rotating the key")?
    {
        bail!("the tenant's key changed meanwhile; try again");
    }
    println!(
        "tenant {} now signs with key {} (key {} verifies its tokens until they expire); nodes follow within a refresh",
        tenant.id, rotation.key_id, rotation.replacing
    );
    Ok(())
}

pub async fn set_public_keys(args: TenantPublicKeysArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.jwks)
        .with_context(|| format!("reading {}", args.jwks.display()))?;
    let document: serde_json::Value =
        serde_json::from_str(&text).context("the JWKS is not JSON")?;
    let keys = document["keys"]
        .as_array()
        .context("a JWKS document has a \"keys\" list")?;
    let store = open_store(&args.store).await?;
    let tenant = tenant_named(&*store, Some(&args.tenant)).await?;
    let mut registered: Vec<voucherd_store::model::PublicKey> = Vec::new();
    for (index, key) in keys.iter().enumerate() {
        let kid = key["kid"]
            .as_str()
            .filter(|kid| !kid.is_empty() && kid.len() <= 128)
            .with_context(|| format!("keys[{index}] has no kid"))?;
        let parsed = voucherd_http::auth::PublicJwk::parse(&key.to_string())
            .map_err(|why| anyhow::anyhow!("keys[{index}] ({kid}): {why}"))?;
        let taken = kid == tenant.key_id
            || tenant
                .retired_keys
                .iter()
                .any(|retired| retired.key_id == kid)
            || registered.iter().any(|other| other.key_id == kid);
        if taken {
            bail!("keys[{index}]: kid {kid:?} is taken by another of the tenant's keys");
        }
        println!("{kid}: {}", parsed.alg());
        registered.push(voucherd_store::model::PublicKey {
            key_id: kid.to_owned(),
            jwk: key.to_string(),
        });
    }
    if !store
        .set_tenant_public_keys(tenant.id, &registered)
        .await
        .context("registering the keys")?
    {
        bail!("no tenant {}", tenant.id);
    }
    println!(
        "tenant {} verifies tokens of {} public keys; nodes follow within a refresh",
        tenant.id,
        registered.len()
    );
    Ok(())
}

pub async fn set_limits(args: TenantLimitsArgs) -> anyhow::Result<()> {
    let rate = match args.rate_limit_per_second.as_str() {
        "none" => None,
        text => Some(
            text.parse::<u32>()
                .ok()
                .filter(|rate| *rate > 0)
                .context("--rate-limit-per-second takes a positive whole number or none")?,
        ),
    };
    let store = open_store(&args.store).await?;
    let tenant = tenant_named(&*store, Some(&args.tenant)).await?;
    if !store
        .set_tenant_rate_limit(tenant.id, rate)
        .await
        .context("setting the limit")?
    {
        bail!("no tenant {}", tenant.id);
    }
    println!(
        "tenant {}: {} requests a second",
        tenant.id,
        rate.map_or("no limit on".to_owned(), |rate| rate.to_string())
    );
    Ok(())
}

/// The development tenant, made with its key on the first start of an
/// empty store.
pub async fn ensure_development_tenant(store: &dyn Store) -> anyhow::Result<Tenant> {
    if let Some(tenant) = development_tenant(store).await? {
        return Ok(tenant);
    }
    let tenant = new_tenant(DEVELOPMENT_TENANT, "UTC", None)?;
    if let Err(error) = store.insert_tenant(&tenant).await {
        // Nodes starting together on an empty database race to make it;
        // the one that lost uses the winner's.
        if let Some(made) = development_tenant(store).await? {
            return Ok(made);
        }
        return Err(error).context("creating the development tenant");
    }
    tracing::info!(tenant = %tenant.id, "created the development tenant");
    Ok(tenant)
}

async fn development_tenant(store: &dyn Store) -> anyhow::Result<Option<Tenant>> {
    let tenants = store.tenants().await.context("reading tenants")?;
    Ok(tenants
        .into_iter()
        .find(|tenant| tenant.name == DEVELOPMENT_TENANT))
}

pub fn role(role: RoleArg) -> Role {
    match role {
        RoleArg::Admin => Role::Admin,
        RoleArg::Service => Role::Service,
        RoleArg::Customer => Role::Customer,
    }
}

/// The tenant `id` names, or the development tenant.
async fn tenant_named(store: &dyn Store, id: Option<&str>) -> anyhow::Result<Tenant> {
    match id {
        Some(id) => {
            let id: TenantId = id
                .parse()
                .map_err(|_| anyhow::anyhow!("{id:?} is not a tenant id"))?;
            let tenants = store.tenants().await.context("reading tenants")?;
            tenants
                .into_iter()
                .find(|tenant| tenant.id == id)
                .with_context(|| format!("no tenant {id}"))
        }
        None => development_tenant(store)
            .await?
            .context("no development tenant yet; start `voucherd serve` once first"),
    }
}

pub async fn create_account(args: AccountCreateArgs) -> anyhow::Result<()> {
    let password = match (&args.password_file, &args.password_env) {
        (Some(path), _) => std::fs::read_to_string(path)
            .with_context(|| format!("reading {}", path.display()))?
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned(),
        (None, Some(password)) => password.clone(),
        (None, None) => {
            bail!("give the password with --password-file or VOUCHERD_ACCOUNT_PASSWORD")
        }
    };
    if !voucherd_http::web::password_valid(&password) {
        bail!("the password must be 10 to 128 characters long");
    }
    let email = voucherd_core::payment::Email::parse(&args.email)
        .map_err(|invalid| anyhow::anyhow!("--email: {invalid}"))?
        .as_str()
        .to_lowercase();
    let store = open_store(&args.store).await?;
    let tenant = tenant_named(&*store, args.tenant.as_deref()).await?;
    let role = match args.role {
        AccountRoleArg::Admin => AccountRole::Admin,
        AccountRoleArg::Customer => AccountRole::Customer,
    };
    let user_id = UserId::parse(&format!(
        "{}-{}",
        role.as_str(),
        uuid::Uuid::new_v4().simple()
    ))
    .map_err(|invalid| anyhow::anyhow!("{invalid}"))?;
    let account = Account {
        tenant_id: tenant.id,
        email: email.clone(),
        user_id,
        role,
        password_hash: voucherd_http::web::hash_password(&password),
        created_at: Timestamp::now(),
    };
    if !store
        .insert_account(&account)
        .await
        .context("creating the account")?
    {
        bail!("tenant {} has an account for {email} already", tenant.id);
    }
    println!(
        "{} account {email} of tenant {}; sign in at /shop/{}/signin",
        role.as_str(),
        tenant.id,
        tenant.id
    );
    Ok(())
}

pub async fn print_token(args: TokenArgs) -> anyhow::Result<()> {
    let store = open_store(&args.store).await?;
    let tenant = tenant_named(&*store, args.tenant.as_deref()).await?;
    let user = args
        .user
        .as_deref()
        .map(UserId::parse)
        .transpose()
        .map_err(|invalid| anyhow::anyhow!("--user: {invalid}"))?;
    if args.role == RoleArg::Customer && user.is_none() {
        bail!("--role customer needs --user");
    }
    let ttl = SignedDuration::from_hours(args.ttl_hours);
    println!(
        "{}",
        mint(
            &tenant,
            role(args.role),
            user.as_ref(),
            Timestamp::now(),
            ttl
        )
    );
    Ok(())
}

pub async fn create_tenant(args: TenantCreateArgs) -> anyhow::Result<()> {
    let store = open_store(&args.store).await?;
    let tenant = new_tenant(&args.name, &args.time_zone, args.rate_limit_per_second)?;
    store
        .insert_tenant(&tenant)
        .await
        .context("creating the tenant")?;
    let token = mint(
        &tenant,
        Role::Admin,
        None,
        Timestamp::now(),
        SignedDuration::from_hours(720),
    );
    println!("tenant {}\nadmin token {token}", tenant.id);
    Ok(())
}
