"""The ``harken`` command line.

``harken serve [--host H] [--port P] [--config FILE] [--providers embedded|testing] [--strict]
[--log-level LEVEL]`` runs the server. Configuration comes from defaults, then the TOML file,
then ``HARKEN_*`` environment variables, then these flags. A configuration error is printed and
the command exits with status 2. ``harken models`` lists, verifies and installs the embedded
models (see :mod:`harken.models_cli`); ``harken talk`` talks to an agent from a WAV file, a
text or the microphone (see :mod:`harken.talk`).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence

from harken import models_cli, talk
from harken.config import LOG_LEVELS, ServerConfig, load_config
from harken.errors import ConfigError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="harken", description="Self-hosted voice agent server (Deepgram Voice Agent API)."
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    serve = commands.add_parser("serve", help="run the voice agent server")
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default 8765; 0 = any)")
    serve.add_argument("--config", metavar="FILE", help="TOML configuration file")
    serve.add_argument(
        "--providers",
        choices=("embedded", "testing"),
        help="'embedded' local models (default) or 'testing' deterministic fakes",
    )
    serve.add_argument(
        "--strict",
        action="store_const",
        const=True,
        default=None,
        help="reject unknown fields in client messages instead of warning",
    )
    serve.add_argument("--log-level", choices=LOG_LEVELS, help="logging level (default info)")
    models_cli.add_parser(commands)
    talk.add_parser(commands)
    return parser


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if level != "debug":  # websockets logs every rejected handshake at INFO
        logging.getLogger("harken.websockets").setLevel(logging.WARNING)


def config_from_args(args: argparse.Namespace, env: dict[str, str]) -> ServerConfig:
    overrides = {
        "host": args.host,
        "port": args.port,
        "providers": args.providers,
        "strict": args.strict,
        "log_level": args.log_level,
    }
    return load_config(args.config, env, overrides)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        try:
            config = config_from_args(args, dict(os.environ))
        except ConfigError as exc:
            print(f"harken: configuration error: {exc}", file=sys.stderr)
            return 2
        configure_logging(config.log_level)
        from harken.server.app import serve

        return asyncio.run(serve(config))
    if args.command == "models":
        return models_cli.run(args)
    if args.command == "talk":
        return talk.run(args)
    return 2  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
