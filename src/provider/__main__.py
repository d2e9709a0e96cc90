"""`python -m provider`: run under a wasmCloud host (HostData on stdin), or `dev` locally."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from wasmcloud_provider_sdk.provider import Provider

PROVIDER_NAME = "wasmcloud-websocket-provider"

EPILOG = """\
exit codes:
  0  clean shutdown (host shutdown request, SIGTERM or Ctrl-C)
  1  fatal error after start (e.g. the lattice NATS server cannot be reached)
  2  bad usage, or no valid host data on stdin
"""


TERMINAL_HINT = (
    "To try the provider on this machine run `python -m provider dev` (or `make run`); "
    "`python -m provider --help` lists the commands"
)


def build_parser() -> argparse.ArgumentParser:
    """The CLI: no subcommand = run under a host; `dev` = local development mode."""
    parser = argparse.ArgumentParser(
        prog="python -m provider",
        description=(
            "wasmCloud messaging provider over WebSocket. Without a subcommand it runs as the "
            "host starts it: HostData (base64 JSON) on stdin."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    dev = sub.add_parser(
        "dev",
        help="run locally: embedded nats-server, the provider and an echo handler",
        description="Start an embedded nats-server, the provider and a built-in echo handler.",
    )
    dev.add_argument(
        "--listen",
        default="127.0.0.1:8080",
        metavar="HOST:PORT[/PATH]",
        help="WebSocket listen address (default 127.0.0.1:8080, path /ws)",
    )
    dev.add_argument(
        "--nats-url", default=None, help="use this NATS server instead of starting one"
    )
    dev.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a server-mode config key for the endpoint, e.g. METRICS=true (repeatable)",
    )
    dev.add_argument(
        "--config-file",
        action="append",
        default=[],
        metavar="FILE",
        help="KEY=VALUE lines ('#' comments), applied before --config (repeatable)",
    )
    from .packaging import cli

    cli.add_parser(sub)
    return parser


def quiet_library_loggers() -> None:
    """`websockets` logs every connection at INFO; keep that for debugging only."""
    logging.getLogger("websockets").setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit code."""
    if not (sys.argv[1:] if argv is None else argv):
        # How a host starts us: no arguments. Nothing else is imported before the control
        # subjects are live (the CLI's other commands pull in the packaging tools).
        from wasmcloud_provider_sdk.run import run_provider

        quiet_library_loggers()
        return run_provider(
            make_provider, name=PROVIDER_NAME, terminal_hint=TERMINAL_HINT, workers=True
        )
    try:
        args = build_parser().parse_args(argv)
    except KeyboardInterrupt:  # Ctrl-C while importing the CLI: nothing started yet
        return 0
    quiet_library_loggers()
    if args.command == "dev":
        try:
            from .dev import run_dev

            code = run_dev(
                listen=args.listen,
                nats_url=args.nats_url,
                config=args.config,
                config_files=args.config_file,
            )
        except KeyboardInterrupt:  # Ctrl-C while still importing: nothing started yet
            code = 0
        # Everything is cleaned up: a late Ctrl-C (the second of a double press) must not
        # kill the exiting interpreter and turn the exit code into "killed by SIGINT".
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        return code
    if args.command == "package":
        from .packaging import cli

        return cli.run(args)
    from wasmcloud_provider_sdk.run import run_provider

    return run_provider(
        make_provider, name=PROVIDER_NAME, terminal_hint=TERMINAL_HINT, workers=True
    )


def make_provider() -> Provider:
    """The provider, imported only once the runtime has subscribed its control subjects
    (the WebSocket stack takes a few hundred milliseconds to import)."""
    from .app import WebSocketMessagingProvider

    return WebSocketMessagingProvider()


if __name__ == "__main__":
    sys.exit(main())
