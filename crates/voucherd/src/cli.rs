//! The command line.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "voucherd",
    version,
    about = "A burst-proof voucher and coupon engine"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// `text` for people, `json` for log collectors.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "VOUCHERD_LOG_FORMAT")]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the API (the default, with a demo campaign, when no command is given).
    Serve(ServeArgs),
    /// Apply the database migrations and exit.
    Migrate(StoreArgs),
    /// Print a token for a tenant (the development tenant by default).
    Token(TokenArgs),
    /// Manage tenants.
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Manage the accounts people sign in to a tenant's pages with.
    #[command(subcommand)]
    Account(AccountCommand),
    /// Serve a payment gateway simulator.
    GatewaySim(GatewaySimArgs),
}

#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// Where the embedded SQLite database lives (and, with PostgreSQL, the
    /// payment key).
    #[arg(long, default_value = "./voucherd-data", env = "VOUCHERD_DATA_DIR")]
    pub data_dir: PathBuf,
    /// Use PostgreSQL instead of the embedded store: a `postgres://` URL;
    /// several hosts with `target_session_attrs=read-write` follow a failover.
    #[arg(long, env = "VOUCHERD_DATABASE_URL")]
    pub database_url: Option<String>,
    /// A read-only replica for reports and exports.
    #[arg(long, env = "VOUCHERD_DATABASE_READ_URL", requires = "database_url")]
    pub database_read_url: Option<String>,
    /// PostgreSQL connections per pool at most.
    #[arg(long, default_value_t = 16)]
    pub database_pool_max: usize,
    /// How long one PostgreSQL statement may run, 100 ms to 10 minutes. A
    /// database that stalls is given twice this (plus a wait for a pooled
    /// connection of 5 s) before a request is answered 503.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(100..=600_000))]
    pub database_query_timeout_ms: u64,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    #[arg(long, default_value = "127.0.0.1:8080", env = "VOUCHERD_LISTEN")]
    pub listen: SocketAddr,
    /// Create a live demo coupon when the tenant has no campaigns yet.
    #[arg(long)]
    pub demo: bool,
    /// Claims waiting for a batch; past this, claims are answered 503.
    #[arg(long, default_value_t = 8_192)]
    pub claim_queue_max: usize,
    /// Claims decided in one transaction at most.
    #[arg(long, default_value_t = 512)]
    pub claim_batch_max: usize,
    /// How long a batch that is not full waits for more claims.
    #[arg(long, default_value_t = 200)]
    pub claim_batch_linger_us: u64,
    /// Requests served at once; past this, requests are answered 503.
    #[arg(long, default_value_t = 8_192)]
    pub requests_in_flight_max: usize,
    /// Connections open at once; past this, the connections idle longest
    /// are closed to make room, and a new connection that finds none is
    /// answered 503. Without it, the bound is sized from the descriptors
    /// the process may open and from `--connections-memory-mb`.
    #[arg(long)]
    pub connections_max: Option<usize>,
    /// The memory all open connections may hold together, in MiB; with
    /// the measured cost of one connection it sizes `--connections-max`.
    #[arg(long, default_value_t = 128)]
    pub connections_memory_mb: usize,
    /// How long a client may take to send a request's head (and how long
    /// an idle keep-alive connection stays open).
    #[arg(long, default_value_t = 10_000)]
    pub header_read_timeout_ms: u64,
    /// The listen backlog asked of the kernel (cut to net.core.somaxconn).
    #[arg(long, default_value_t = voucherd_http::connections::LISTEN_BACKLOG)]
    pub listen_backlog: u32,
    /// How often expired locks are swept.
    #[arg(long, default_value_t = 1_000)]
    pub sweep_period_ms: u64,
    /// How often memory catches up with the store (what other nodes did).
    #[arg(long, default_value_t = 500)]
    pub refresh_period_ms: u64,
    /// A payment gateway, repeatable: name=alpha,url=http://127.0.0.1:9101,rate=100,priority=1.
    /// Lower priority is preferred; rate is the gateway's charges per second
    /// for the whole deployment: nodes on one database share it through the
    /// database (configure the same rate on every node).
    #[arg(long = "gateway", value_parser = parse_gateway)]
    pub gateways: Vec<GatewayArg>,
    /// How long one gateway call may take before its outcome counts as unknown.
    #[arg(long, default_value_t = 5_000)]
    pub gateway_timeout_ms: u64,
    /// The key queued cards are sealed with (32 bytes, hex); made in the data
    /// directory when missing. Nodes that share a database share this key.
    #[arg(long, env = "VOUCHERD_PAYMENT_KEY_FILE")]
    pub payment_key_file: Option<PathBuf>,
    /// Claim batches committed at once; more than one overlaps commits on
    /// a remote database at the cost of strict first come, first served
    /// between batches.
    #[arg(long, default_value_t = 1)]
    pub claim_batches_in_flight: usize,
}

impl ServeArgs {
    pub fn with_defaults(demo: bool) -> ServeArgs {
        let mut args = ServeArgs::parse_from_defaults();
        args.demo = demo;
        args
    }

    fn parse_from_defaults() -> ServeArgs {
        #[derive(Parser)]
        struct Wrapper {
            #[command(flatten)]
            serve: ServeArgs,
        }
        Wrapper::parse_from(["voucherd"]).serve
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RoleArg {
    Admin,
    Service,
    Customer,
}

#[derive(Debug, Args)]
pub struct TokenArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    #[arg(long, value_enum)]
    pub role: RoleArg,
    /// The customer's user id (required for --role customer).
    #[arg(long)]
    pub user: Option<String>,
    /// The tenant id; the development tenant when left out.
    #[arg(long)]
    pub tenant: Option<String>,
    /// How long the token is valid, 1 to 8,760 hours (a year).
    #[arg(long, default_value_t = 720, value_parser = clap::value_parser!(i64).range(1..=8_760))]
    pub ttl_hours: i64,
}

#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Create a tenant and print its id and an admin token.
    Create(TenantCreateArgs),
    /// List the tenants: id, name, time zone, rate limit, key ids.
    List(TenantListArgs),
    /// Give a tenant a new signing key; tokens the old key signed verify
    /// until they expire, new tokens are signed with the new key.
    RotateKey(TenantKeyArgs),
    /// Set (or, with `none`, lift) a tenant's requests per second.
    SetLimits(TenantLimitsArgs),
    /// Register the public keys of the tenant's own identity provider (a
    /// JWKS file: Ed25519, P-256 or RSA keys, each with a kid), replacing
    /// those registered before; tokens they sign (EdDSA, ES256, RS256) then
    /// verify.
    SetPublicKeys(TenantPublicKeysArgs),
}

#[derive(Debug, Args)]
pub struct TenantPublicKeysArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    #[arg(long)]
    pub tenant: String,
    /// A JWKS document: {"keys": [...]}; an empty list removes them all.
    #[arg(long)]
    pub jwks: std::path::PathBuf,
}

#[derive(Debug, Args)]
pub struct TenantListArgs {
    #[command(flatten)]
    pub store: StoreArgs,
}

#[derive(Debug, Args)]
pub struct TenantKeyArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    #[arg(long)]
    pub tenant: String,
}

#[derive(Debug, Args)]
pub struct TenantLimitsArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    #[arg(long)]
    pub tenant: String,
    /// Requests per second across the tenant's tokens, or `none`.
    #[arg(long)]
    pub rate_limit_per_second: String,
}

#[derive(Debug, Args)]
pub struct TenantCreateArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    #[arg(long)]
    pub name: String,
    /// IANA time zone whose calendar days daily limits count.
    #[arg(long, default_value = "UTC")]
    pub time_zone: String,
    /// Requests per second across the tenant's tokens.
    #[arg(long)]
    pub rate_limit_per_second: Option<u32>,
}

#[derive(Debug, Subcommand)]
pub enum AccountCommand {
    /// Create an account; the password is read from the file
    /// --password-file names or from VOUCHERD_ACCOUNT_PASSWORD, never from
    /// the command line.
    Create(AccountCreateArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AccountRoleArg {
    Admin,
    Customer,
}

#[derive(Debug, Args)]
pub struct AccountCreateArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// The tenant id; the development tenant when left out.
    #[arg(long)]
    pub tenant: Option<String>,
    #[arg(long)]
    pub email: String,
    #[arg(long, value_enum, default_value_t = AccountRoleArg::Admin)]
    pub role: AccountRoleArg,
    /// A file holding the password (its first line).
    #[arg(long, conflicts_with = "password_env")]
    pub password_file: Option<std::path::PathBuf>,
    #[arg(
        long = "password-from-env",
        env = "VOUCHERD_ACCOUNT_PASSWORD",
        hide_env_values = true
    )]
    pub password_env: Option<String>,
}

#[derive(Debug, Args)]
pub struct GatewaySimArgs {
    #[arg(long, default_value = "127.0.0.1:9101")]
    pub listen: SocketAddr,
    /// Charges accepted per second; more are answered 429.
    #[arg(long, default_value = "100")]
    pub rate: String,
    /// Latency of each charge, e.g. 20..200.
    #[arg(long, default_value = "20..200")]
    pub latency_ms: String,
    #[arg(long, default_value = "0.02")]
    pub decline_rate: String,
    #[arg(long, default_value = "0.005")]
    pub timeout_rate: String,
    /// Makes declines, timeouts and latencies reproducible.
    #[arg(long)]
    pub seed: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayArg {
    pub name: String,
    pub url: String,
    pub rate_per_second: u32,
    pub priority: u32,
}

pub fn parse_gateway(text: &str) -> Result<GatewayArg, String> {
    let (mut name, mut url, mut rate, mut priority) = (None, None, None, None);
    for pair in text.split(',') {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| format!("{pair:?} is not key=value"))?;
        let value = value.trim();
        match key.trim() {
            "name" => name = Some(value.to_owned()),
            "url" => url = Some(value.to_owned()),
            "rate" => {
                rate = Some(
                    value
                        .parse::<u32>()
                        .ok()
                        .filter(|rate| *rate > 0)
                        .ok_or("rate must be a positive integer")?,
                )
            }
            "priority" => {
                priority = Some(
                    value
                        .parse::<u32>()
                        .map_err(|_| "priority must be an integer")?,
                )
            }
            other => return Err(format!("unknown gateway setting {other:?}")),
        }
    }
    let name = name
        .filter(|name| !name.is_empty())
        .ok_or("a gateway needs name=")?;
    let url = url
        .filter(|url| url.starts_with("http://") || url.starts_with("https://"))
        .ok_or("a gateway needs url=http://...")?;
    Ok(GatewayArg {
        name,
        url,
        rate_per_second: rate.ok_or("a gateway needs rate=")?,
        priority: priority.unwrap_or(1),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateways_parse_and_bad_ones_are_refused() {
        let gateway =
            parse_gateway("name=alpha,url=http://127.0.0.1:9101,rate=100,priority=1").unwrap();
        assert_eq!(
            (
                gateway.name.as_str(),
                gateway.rate_per_second,
                gateway.priority
            ),
            ("alpha", 100, 1)
        );
        for bad in [
            "name=a,url=ftp://x,rate=1",
            "name=a,url=http://x",
            "name=a,url=http://x,rate=0",
            "url=http://x,rate=5",
            "name=a,url=http://x,rate=5,colour=red",
        ] {
            assert!(parse_gateway(bad).is_err(), "{bad}");
        }
    }
}
