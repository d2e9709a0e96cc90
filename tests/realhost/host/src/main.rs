//! `wsp-test-host`: a minimal wasmCloud 1.x host for the real-host end-to-end tests.
//!
//! It is the `wasmcloud-host` library, version 0.27.1 (the host of wasmCloud v1.9.2),
//! started the way the `wasmcloud` binary of v1.9.2 starts it (`src/main.rs` there:
//! `wasmcloud_host::wasmbus::Host::new(WasmbusHostConfig { .. })`, then wait for
//! SIGINT/SIGTERM or the host stopping, drop it and await the shutdown future), with
//! only the settings the tests need:
//!
//! - control interface and RPC on the same NATS server (`--nats-url`), the control
//!   interface on `wasmbus.ctl.v1.<lattice>.…` (the library's default topic prefix);
//! - the lattice data (config, links) in JetStream KV (what the library always does);
//! - `file://` references allowed for components and providers (`allow_file_load`);
//! - everything else at the library's defaults (no policy, no secrets backend, no OTEL).
//!
//! Usage: `wsp-test-host --nats-url nats://127.0.0.1:4222 --lattice default
//!         [--host-seed SNAA…] [--label key=value]… [--heartbeat-seconds N]
//!         [--provider-shutdown-delay-ms N] [--rpc-timeout-ms N]`
//!
//! On start it prints one line `WSP_TEST_HOST_ID=<N… public key>` on stdout (then
//! flushes) once the host is up: its control interface is subscribed by then.
//! Logs go to stderr (filter with `RUST_LOG`, default `info`).

use std::collections::HashMap;
use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use nkeys::KeyPair;
use tokio::signal::unix::{signal, SignalKind};
use tokio::time::{timeout, timeout_at};
use wasmcloud_host::url::Url;
use wasmcloud_host::WasmbusHostConfig;

/// The `wasmcloud` binary's `DEFAULT_SHUTDOWN_TIMEOUT` is 10 s; the tests want a bound too.
const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

struct Args {
    nats_url: Url,
    lattice: String,
    host_seed: Option<String>,
    labels: HashMap<String, String>,
    heartbeat: Option<Duration>,
    provider_shutdown_delay: Duration,
    rpc_timeout: Duration,
}

fn usage() -> &'static str {
    "usage: wsp-test-host --nats-url URL [--lattice NAME] [--host-seed SEED] \
     [--label KEY=VALUE]... [--heartbeat-seconds N] [--provider-shutdown-delay-ms N] \
     [--rpc-timeout-ms N]"
}

fn parse_args() -> anyhow::Result<Args> {
    let mut nats_url = None;
    let mut lattice = "default".to_string();
    let mut host_seed = std::env::var("WASMCLOUD_HOST_SEED").ok();
    let mut labels = HashMap::new();
    let mut heartbeat = None;
    // The `wasmcloud` binary's defaults: 300 ms provider shutdown delay, 2000 ms RPC timeout.
    let mut provider_shutdown_delay = Duration::from_millis(300);
    let mut rpc_timeout = Duration::from_millis(2000);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        if flag == "--help" || flag == "-h" {
            println!("{}", usage());
            std::process::exit(0);
        }
        let mut value = || -> anyhow::Result<String> {
            match inline.clone() {
                Some(v) => Ok(v),
                None => args.next().with_context(|| format!("{flag} needs a value")),
            }
        };
        match flag.as_str() {
            "--nats-url" => {
                nats_url = Some(Url::parse(&value()?).context("invalid --nats-url")?);
            }
            "--lattice" => lattice = value()?,
            "--host-seed" => host_seed = Some(value()?),
            "--label" => {
                let v = value()?;
                let (k, v) = v.split_once('=').context("--label wants KEY=VALUE")?;
                labels.insert(k.to_string(), v.to_string());
            }
            "--heartbeat-seconds" => {
                heartbeat = Some(Duration::from_secs(value()?.parse()?));
            }
            "--provider-shutdown-delay-ms" => {
                provider_shutdown_delay = Duration::from_millis(value()?.parse()?);
            }
            "--rpc-timeout-ms" => rpc_timeout = Duration::from_millis(value()?.parse()?),
            other => bail!("unknown argument {other:?}\n{}", usage()),
        }
    }
    let nats_url = nats_url.with_context(|| format!("--nats-url is required\n{}", usage()))?;
    Ok(Args {
        nats_url,
        lattice,
        host_seed,
        labels,
        heartbeat,
        provider_shutdown_delay,
        rpc_timeout,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();

    // The host generates a key when given none; make it here so its id can be printed.
    let host_key = match args.host_seed.as_deref() {
        Some(seed) => KeyPair::from_seed(seed).context("invalid host seed")?,
        None => KeyPair::new_server(),
    };
    let host_id = host_key.public_key();
    let host_key = Arc::new(host_key);

    let (host, shutdown) = Box::pin(wasmcloud_host::wasmbus::Host::new(WasmbusHostConfig {
        ctl_nats_url: args.nats_url.clone(),
        rpc_nats_url: args.nats_url,
        lattice: Arc::from(args.lattice),
        host_key: Some(host_key),
        labels: args.labels,
        allow_file_load: true,
        provider_shutdown_delay: Some(args.provider_shutdown_delay),
        rpc_timeout: args.rpc_timeout,
        heartbeat_interval: args.heartbeat,
        version: "1.9.2".to_string(),
        ..WasmbusHostConfig::default()
    }))
    .await
    .context("failed to initialize host")?;

    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "WSP_TEST_HOST_ID={host_id}")?;
        out.flush()?;
    }

    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let deadline = tokio::select! {
        _ = interrupt.recv() => None,
        _ = terminate.recv() => None,
        deadline = host.stopped() => deadline?,
    };
    drop(host);
    if let Some(deadline) = deadline {
        timeout_at(deadline, shutdown).await
    } else {
        timeout(DEFAULT_SHUTDOWN_TIMEOUT, shutdown).await
    }
    .context("host shutdown timed out")?
    .context("failed to shut down host")?;
    eprintln!("wsp-test-host: stopped");
    Ok(())
}
