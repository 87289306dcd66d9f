//! The `voucherd` binary: parses the command line and runs one command.
//!
//! - `serve` ([`serve`]) runs the service; with no command, it serves the
//!   demo on the embedded store.
//! - `migrate`, `token`, `tenant` and `account` ([`storage`], [`tenancy`]) act on the
//!   store and exit.
//! - `gateway-sim` serves the payment gateway simulator.

mod cli;
mod demo;
mod disk;
mod payments;
mod serve;
mod storage;
mod tenancy;

use clap::Parser;

/// glibc's allocator was a fifth of the node's CPU under the Hot Deal's
/// mix (many threads, short-lived buffers): `malloc_consolidate`,
/// `_int_free`, `unlink_chunk`. With the `override` feature the C code in
/// the process (SQLite) allocates from mimalloc too: 7 % of a claim's
/// writer instructions were SQLite's calls into glibc's `malloc` and `free`.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use tracing_subscriber::EnvFilter;

use crate::cli::{
    AccountCommand, Cli, Command, GatewaySimArgs, LogFormat, ServeArgs, TenantCommand,
};

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        match cli.command {
            None => serve::serve(ServeArgs::with_defaults(true)).await,
            Some(Command::Serve(args)) => serve::serve(args).await,
            Some(Command::Migrate(args)) => storage::migrate(&args).await,
            Some(Command::Token(args)) => tenancy::print_token(args).await,
            Some(Command::Tenant(TenantCommand::Create(args))) => {
                tenancy::create_tenant(args).await
            }
            Some(Command::Tenant(TenantCommand::List(args))) => tenancy::list_tenants(args).await,
            Some(Command::Tenant(TenantCommand::RotateKey(args))) => {
                tenancy::rotate_key(args).await
            }
            Some(Command::Tenant(TenantCommand::SetLimits(args))) => {
                tenancy::set_limits(args).await
            }
            Some(Command::Tenant(TenantCommand::SetPublicKeys(args))) => {
                tenancy::set_public_keys(args).await
            }
            Some(Command::Account(AccountCommand::Create(args))) => {
                tenancy::create_account(args).await
            }
            Some(Command::GatewaySim(args)) => gateway_sim(args).await,
        }
    })
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn gateway_sim(args: GatewaySimArgs) -> anyhow::Result<()> {
    use voucherd_gateway_sim::config::{
        parse_latency_ms, parse_probability, parse_rate_per_second,
    };
    let config = voucherd_gateway_sim::SimulatorConfig {
        rate_per_second: parse_rate_per_second(&args.rate)?,
        latency_ms: parse_latency_ms(&args.latency_ms)?,
        decline_rate: parse_probability(&args.decline_rate)?,
        timeout_rate: parse_probability(&args.timeout_rate)?,
        seed: args.seed,
        ..voucherd_gateway_sim::SimulatorConfig::default()
    };
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    println!(
        "gateway simulator listening on http://{}",
        listener.local_addr()?
    );
    voucherd_gateway_sim::serve(listener, config, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(())
}
