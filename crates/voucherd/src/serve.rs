//! `voucherd serve`: the store, the engine, the workers and the HTTP server,
//! and their orderly shutdown.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use prometheus_client::registry::Registry;
use tokio::sync::watch;
use voucherd_core::{SignedDuration, Timestamp};
use voucherd_engine::clock::SystemClock;
use voucherd_engine::workers::run_periodically;
use voucherd_engine::{ClaimLimits, Engine, EngineConfig};
use voucherd_http::HttpConfig;
use voucherd_http::auth::{Role, mint};
use voucherd_http::connections::{self, ConnectionLimits, ConnectionMetrics};

use crate::cli::ServeArgs;
use crate::demo::{demo_gateways, ensure_demo_admin, ensure_demo_campaign};
use crate::storage::{describe, open_store_to_serve};
use crate::tenancy::ensure_development_tenant;

pub async fn serve(mut args: ServeArgs) -> anyhow::Result<()> {
    let store = open_store_to_serve(&args.store).await?;
    // The development tenant and its printed tokens are the demo's alone:
    // a start on a shared database (a production start) makes no tenant
    // and prints no credential, where log collectors would keep it.
    let demo_start = args.demo || args.store.database_url.is_none();
    let development = match demo_start {
        true => Some(ensure_development_tenant(&*store).await?),
        false => None,
    };
    if args.demo && args.gateways.is_empty() {
        args.gateways = demo_gateways().await?;
    }
    let http = HttpConfig {
        requests_in_flight_max: args.requests_in_flight_max,
        ..HttpConfig::default()
    };
    let config = EngineConfig {
        // An upload gives up (and undoes itself) well before its request
        // times out: never committed after a 503.
        upload_time_max: http.request_timeout * 2 / 3,
        claims: ClaimLimits {
            claim_queue_max: args.claim_queue_max,
            claim_batch_max: args.claim_batch_max,
            claim_batch_linger: Duration::from_micros(args.claim_batch_linger_us),
            claim_batches_in_flight: args.claim_batches_in_flight.max(1),
        },
        payments: crate::payments::setup(&args)?,
        ..EngineConfig::default()
    };
    let mut registry = Registry::default();
    let engine = Engine::start(store, Arc::new(SystemClock), config, &mut registry)
        .await
        .context("starting the engine")?;
    let connection_metrics = ConnectionMetrics::register(&mut registry, engine.metrics());
    crate::disk::register(&mut registry, args.store.data_dir.clone());
    let demo = match (&development, args.demo) {
        (Some(development), true) => Some((
            ensure_demo_campaign(&engine, development.id).await?,
            ensure_demo_admin(&engine, development).await?,
        )),
        _ => None,
    };
    let router = voucherd_http::router(engine.clone(), registry, &http);
    let listener = connections::bind(args.listen, args.listen_backlog)
        .with_context(|| format!("listening on {}", args.listen))?;
    let mut limits = connection_limits(&args);
    limits.limits.metrics = connection_metrics;
    let address = listener.local_addr().context("reading the bound address")?;

    let (stop, stopped) = watch::channel(false);
    let sweeper = tokio::spawn(run_periodically(
        "sweeper",
        Duration::from_millis(args.sweep_period_ms.max(10)),
        wait_for(stopped.clone()),
        {
            let engine = engine.clone();
            move || {
                let engine = engine.clone();
                async move { engine.sweep_once(engine.now()).await }
            }
        },
    ));
    let payments = engine
        .payments()
        .map(|payments| tokio::spawn(payments.run(wait_for(stopped.clone()))));
    let refresher = tokio::spawn(run_periodically(
        "refresher",
        Duration::from_millis(args.refresh_period_ms.max(10)),
        wait_for(stopped),
        {
            let engine = engine.clone();
            move || {
                let engine = engine.clone();
                async move { engine.refresh_once().await }
            }
        },
    ));

    println!("voucherd listening on http://{address}");
    println!("database {}", describe(&args.store));
    println!(
        "connections at most {} (descriptors {}, {} MiB at {} KiB each)",
        limits.limits.connections_max,
        limits.descriptors,
        args.connections_memory_mb,
        CONNECTION_BYTES / 1024
    );
    match &development {
        Some(development) => print_demo(development, address, demo.as_ref()),
        None => println!(
            "no tenant made and no token printed: a production start. Tenants: `voucherd tenant create | list`, tokens: `voucherd token`"
        ),
    }

    connections::serve(listener, router, limits.limits, shutdown_signal()).await;
    // Every request has been answered, so every batch it waited for has
    // committed; the workers can stop.
    let _ = stop.send(true);
    let _ = tokio::join!(sweeper, refresher);
    if let Some(payments) = payments {
        // Calls under way finish; what is still queued waits in the store.
        let _ = payments.await;
    }
    tracing::info!("stopped");
    Ok(())
}

/// The demo's credentials and what to try: printed only by a demo start.
fn print_demo(
    development: &voucherd_engine::model::Tenant,
    address: std::net::SocketAddr,
    demo: Option<&(voucherd_engine::campaigns::CampaignView, (String, String))>,
) {
    let now = Timestamp::now();
    let ttl = SignedDuration::from_hours(720);
    let admin = mint(development, Role::Admin, None, now, ttl);
    let service = mint(development, Role::Service, None, now, ttl);
    println!("development tenant {}", development.id);
    println!("export VOUCHERD_ADMIN_TOKEN={admin}");
    println!("export VOUCHERD_SERVICE_TOKEN={service}");
    let Some((demo, (admin_email, admin_password))) = demo else {
        return;
    };
    let id = demo.record.id;
    println!(
        "# the shop:          http://{address}/shop/{}",
        development.id
    );
    println!(
        "# its admin console: http://{address}/shop/{}/admin  ({admin_email} / {admin_password})",
        development.id
    );
    let bearer = "-H \"Authorization: Bearer $VOUCHERD_SERVICE_TOKEN\"";
    println!("# paste the two exports above, then try the demo coupon:");
    println!("curl -s http://{address}/v1/campaigns/live {bearer}");
    println!(
        "curl -s -X POST http://{address}/v1/campaigns/{id}/claims {bearer} -H 'Content-Type: application/json' -d '{{\"user_id\": \"alice\"}}'"
    );
    println!(
        "curl -s http://{address}/v1/campaigns/{id}/report -H \"Authorization: Bearer $VOUCHERD_ADMIN_TOKEN\""
    );
    println!("curl -s http://{address}/openapi.json   # the whole API");
}

/// What one open connection costs the process, with room to spare: 4,000
/// connections that had each served a `GET /healthz` and stayed open
/// raised a fresh node's resident memory by 11.8 KiB apiece (4.9 KiB once
/// the allocator had the room), hyper's buffers, the task and the
/// socket's registration. The kernel's socket buffers are not in it.
const CONNECTION_BYTES: usize = 16 * 1024;
/// Descriptors kept for everything but client connections: the store's
/// files and pool, gateways, and the refusals under way.
const DESCRIPTORS_RESERVED: u64 = 256;

struct SizedLimits {
    limits: ConnectionLimits,
    descriptors: u64,
}

/// The connection bound: the one given, or what the descriptors and the
/// memory allowed for connections both admit.
fn connection_limits(args: &ServeArgs) -> SizedLimits {
    let descriptors = raise_descriptor_limit();
    let mut limits = ConnectionLimits {
        header_read_timeout: Duration::from_millis(args.header_read_timeout_ms.max(1)),
        ..ConnectionLimits::default()
    };
    let by_descriptors = descriptors
        .saturating_sub(DESCRIPTORS_RESERVED + limits.refusing_max as u64)
        .max(1);
    let by_memory = (args.connections_memory_mb * 1024 * 1024 / CONNECTION_BYTES).max(1);
    let sized = usize::try_from(by_descriptors)
        .unwrap_or(usize::MAX)
        .min(by_memory);
    limits.connections_max = args.connections_max.unwrap_or(sized).max(1);
    if limits.connections_max > sized {
        tracing::warn!(
            connections_max = limits.connections_max,
            sized,
            "--connections-max is above what the descriptors or memory allow"
        );
    }
    SizedLimits {
        limits,
        descriptors,
    }
}

/// Raises the soft limit on open descriptors to the hard one (a crowd
/// needs a descriptor per connection; the usual soft limit is 1,024) and
/// answers the limit in force.
fn raise_descriptor_limit() -> u64 {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let raised = rustix::process::Rlimit {
        current: limit.maximum,
        maximum: limit.maximum,
    };
    if let Err(error) = setrlimit(Resource::Nofile, raised) {
        tracing::warn!(%error, "cannot raise the descriptor limit");
    }
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

async fn wait_for(mut stopped: watch::Receiver<bool>) {
    let _ = stopped.wait_for(|stopped| *stopped).await;
}

/// SIGINT or SIGTERM: stop accepting, finish what is in flight.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    let mut terminate =
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; only Ctrl-C stops the server");
                let _ = interrupt.await;
                return;
            }
        };
    tokio::select! {
        _ = interrupt => {}
        _ = terminate.recv() => {}
    }
    tracing::info!("shutting down: finishing requests in flight");
}
