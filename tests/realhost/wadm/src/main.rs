//! `wsp-test-wadm`: wadm, the wasmCloud application deployment manager, for the
//! real-host end-to-end tests.
//!
//! It is the `wadm` library, version 0.21.1 (the newest on crates.io; async-nats 0.39 and
//! wadm-types 0.8, like `wadm-client` 0.10 that wash 0.41-0.43 talk to wadm with), started
//! the way its own `wadm` binary starts it (`wadm::start_wadm(WadmConfig { .. })`, then wait for a task to end or for
//! SIGINT/SIGTERM), with only the settings the tests need:
//!
//! - one NATS server (`--nats-url`) with JetStream: wadm keeps manifests and lattice
//!   state in KV buckets and its events and commands in streams;
//! - every lattice: wadm watches `wasmbus.evt.*.>` and answers the API on
//!   `wadm.api.<lattice>.…` for any lattice (there is no lattice setting);
//! - streams and buckets in memory (`--stream-persistence memory`, default `file`);
//! - everything else at the library's defaults (`WadmConfig::default()`).
//!
//! Usage: `wsp-test-wadm --nats-url 127.0.0.1:4222 [--host-id ID]
//!         [--stream-persistence file|memory] [--cleanup-interval-seconds N]`
//!
//! On start it prints one line `WSP_TEST_WADM_READY=<id>` on stdout (then flushes) once
//! the API is subscribed (`start_wadm` returns after the server's subscription).
//! Logs go to stderr (filter with `RUST_LOG`, default `info`).

use std::io::Write as _;

use anyhow::{bail, Context as _};
use tokio::signal::unix::{signal, SignalKind};
use wadm::config::WadmConfig;
use wadm::StreamPersistence;

fn usage() -> &'static str {
    "usage: wsp-test-wadm --nats-url URL [--host-id ID] [--stream-persistence file|memory] \
     [--cleanup-interval-seconds N]"
}

fn parse_args() -> anyhow::Result<WadmConfig> {
    let mut config = WadmConfig::default();
    let mut nats_url = None;
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
            "--nats-url" => nats_url = Some(value()?),
            "--host-id" => config.host_id = Some(value()?),
            "--stream-persistence" => {
                config.stream_persistence = match value()?.as_str() {
                    "file" => StreamPersistence::File,
                    "memory" => StreamPersistence::Memory,
                    other => bail!("--stream-persistence: file or memory, not {other:?}"),
                }
            }
            "--cleanup-interval-seconds" => config.cleanup_interval = value()?.parse()?,
            other => bail!("unknown argument {other:?}\n{}", usage()),
        }
    }
    // wadm's client connects with async-nats, which takes `host:port` or `nats://host:port`.
    config.nats_server = nats_url.with_context(|| format!("--nats-url is required\n{}", usage()))?;
    Ok(config)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = parse_args()?;
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();

    let id = config.host_id.clone().unwrap_or_else(|| "wadm".to_string());
    let mut tasks = wadm::start_wadm(config)
        .await
        .context("failed to start wadm")?;

    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "WSP_TEST_WADM_READY={id}")?;
        out.flush()?;
    }

    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = interrupt.recv() => {}
        _ = terminate.recv() => {}
        res = tasks.join_next() => match res {
            Some(Ok(Ok(()))) | None => bail!("wadm stopped on its own"),
            Some(Ok(Err(e))) => return Err(e.context("wadm failed")),
            Some(Err(e)) => bail!("wadm task panicked: {e}"),
        },
    }
    tasks.abort_all();
    eprintln!("wsp-test-wadm: stopped");
    Ok(())
}
