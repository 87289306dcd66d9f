//! The payment router from the command line: the gateways and the key
//! queued cards are sealed with.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use voucherd_engine::PaymentSetup;
use voucherd_engine::payments::gateway::HttpGateway;
use voucherd_engine::payments::seal::{PAYMENT_KEY_BYTES, PaymentKey};
use voucherd_engine::payments::{GatewayRoute, PaymentLimits};

use crate::cli::ServeArgs;
use crate::storage::data_dir;

const PAYMENT_KEY_FILE: &str = "payment.key";

/// The router's setup, or `None` when no gateway is configured.
pub fn setup(args: &ServeArgs) -> anyhow::Result<Option<PaymentSetup>> {
    if args.gateways.is_empty() {
        return Ok(None);
    }
    let mut names: Vec<&str> = args
        .gateways
        .iter()
        .map(|gateway| gateway.name.as_str())
        .collect();
    names.sort_unstable();
    if names.windows(2).any(|pair| pair[0] == pair[1]) {
        bail!("two gateways share a name");
    }
    let timeout = Duration::from_millis(args.gateway_timeout_ms.max(100));
    let gateways = args
        .gateways
        .iter()
        .map(|gateway| GatewayRoute {
            gateway: Arc::new(HttpGateway::new(&gateway.name, &gateway.url, timeout)),
            priority: gateway.priority,
            rate_per_second: gateway.rate_per_second,
        })
        .collect();
    Ok(Some(PaymentSetup {
        key: payment_key(args)?,
        gateways,
        limits: PaymentLimits::default(),
    }))
}

/// Reads the payment key, making one (readable by this user only) the
/// first time.
fn payment_key(args: &ServeArgs) -> anyhow::Result<PaymentKey> {
    let path = match &args.payment_key_file {
        Some(path) => path.clone(),
        None => data_dir(&args.store)?.join(PAYMENT_KEY_FILE),
    };
    if !path.exists() {
        write_new_key(&path)?;
    }
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let bytes =
        decode_hex(text.trim()).with_context(|| format!("{} is not a hex key", path.display()))?;
    PaymentKey::from_bytes(&bytes)
        .with_context(|| format!("{} must hold {PAYMENT_KEY_BYTES} bytes", path.display()))
}

fn write_new_key(path: &PathBuf) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut key = [0_u8; PAYMENT_KEY_BYTES];
    getrandom::fill(&mut key).map_err(|error| anyhow::anyhow!("drawing a payment key: {error}"))?;
    let hex: String = key.iter().map(|byte| format!("{byte:02x}")).collect();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(hex.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", path.display()))?;
    tracing::info!(path = %path.display(), "made a payment key");
    Ok(())
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|index| u8::from_str_radix(text.get(index..index + 2)?, 16).ok())
        .collect()
}
