"""Command line: ``proxyd [--config PATH] [--check] [--version]``.

Loads the config, sets up logging and hands over to the daemon. A bad config ends in one
line on stderr naming file, key and reason, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys

from proxyd import __version__
from proxyd.config import Config, ConfigError, load_config
from proxyd.config_view import secrets_warning, world_readable_secrets
from proxyd.logs import journal_stream, setup_logging

DEFAULT_CONFIG = "/etc/proxyd/proxyd.yaml"

# sysexits.h EX_CONFIG: lets a systemd unit say RestartPreventExitStatus=78 instead of
# restarting forever on a config that will never load.
EX_CONFIG = 78

log = logging.getLogger("proxyd")

_EPILOG = f"""\
exit status:
  0    config valid (--check), or the daemon stopped cleanly
  1    config invalid (--check); one line on stderr: proxyd: FILE: KEY: REASON
  2    bad command line
  {EX_CONFIG}   config invalid at start (EX_CONFIG), same one line on stderr; a systemd
       unit can set RestartPreventExitStatus={EX_CONFIG} to stop restarting
  Any other status comes from the daemon.
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="proxyd",
        description="MySQL/MariaDB connection-pool proxy.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "-c",
        "--config",
        metavar="PATH",
        default=DEFAULT_CONFIG,
        help=f"YAML config file (default: {DEFAULT_CONFIG})",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="validate the config, print 'PATH: OK' and exit",
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
    except SystemExit as e:  # --help or a usage error, already printed by argparse
        return e.code if isinstance(e.code, int) else 2

    if args.version:
        print(f"proxyd {__version__}")
        return 0

    try:
        config = load_config(args.config)
    except ConfigError as e:
        # Under systemd the <3> makes journald file the line as an error (and strips it).
        priority = "<3>" if not args.check and journal_stream() else ""
        print(f"{priority}proxyd: {e}", file=sys.stderr)
        return 1 if args.check else EX_CONFIG

    if args.check:
        if world_readable_secrets(config.path):
            print(f"proxyd: warning: {secrets_warning(config.path)}", file=sys.stderr)
        print(f"{config.path}: OK")
        return 0

    return _run(config)


def _run(config: Config) -> int:
    setup_logging(config.log.level, config.log.format)
    if world_readable_secrets(config.path):
        log.warning(secrets_warning(config.path))
    # Imported here so that --check and --version work without the daemon's dependencies.
    from proxyd.daemon import run

    return run(config)
