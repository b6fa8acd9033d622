"""``segue serve`` and friends. Goes only through the runtime; never touches a driver."""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
import threading
from pathlib import Path
from types import FrameType

# Before numpy loads: small matrix products (ranking, bandits) run many times slower when
# OpenBLAS spreads them over threads on a small machine. An explicit setting wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import structlog  # imported after the BLAS setting above, on purpose

from segue.cli.gc_tuning import freeze_startup_heap, tune_gc
from segue.cli.processes import (
    die_with_parent,
    pin_to_cpu,
    print_banner,
    run_worker,
    supervise,
)
from segue.errors import ConfigError
from segue.runtime import Runtime
from segue.settings import Settings, load_settings

__all__ = ["main"]


def _banner(runtime: Runtime) -> None:
    print_banner(runtime.settings, runtime.keys, runtime.generated_keys)


def _settings(args: argparse.Namespace) -> Settings | None:
    """The settings of ``args`` and the environment, with logging set up; None (after
    printing why) when they are wrong."""
    try:
        settings = load_settings(
            args.config,
            os.environ,
            {
                "host": getattr(args, "host", None),
                "port": getattr(args, "port", None),
                "data": args.data,
            },
        )
    except ConfigError as exc:
        print(exc.message, file=sys.stderr)
        return None
    level = settings.log_level.lower()
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper()))
    )
    return settings


def _passed_on(args: argparse.Namespace) -> list[str]:
    """The arguments every process of ``serve --workers`` must share."""
    out: list[str] = []
    if args.data is not None:
        out += ["--data", args.data]
    if args.config is not None:
        out += ["--config", str(args.config)]
    return out


def _worker(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if settings is None:
        return 2
    try:
        return run_worker(settings)
    except ConfigError as exc:
        print(exc.message, file=sys.stderr)
        return 2


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from segue.api.app import create_app

    settings = _settings(args)
    if settings is None:
        return 2
    level = settings.log_level.lower()
    if args.workers > 1 or args.no_worker:
        if args.demo:
            print("--demo runs with one process; drop --workers", file=sys.stderr)
            return 2
        return supervise(
            settings, _passed_on(args), args.workers, not args.no_worker, pin=not args.no_pin
        )
    # The processor folds in worker threads of this process; a short GIL switch interval
    # lets the event loop answer requests between its slices (latency over throughput).
    sys.setswitchinterval(0.001)
    tune_gc()
    if args.cpu is not None:  # first: threads started before keep every core
        pin_to_cpu(args.cpu)
    if args.fd is not None:
        die_with_parent()
    if args.demo:  # the demo shop's experiments, unless the configuration has its own
        from segue.cli.demo import with_demo_experiments

        settings = with_demo_experiments(settings)
    runtime = Runtime(settings, role=args.role)
    demo = None

    def on_started(runtime: Runtime) -> None:
        freeze_startup_heap()
        if args.fd is None:
            _banner(runtime)
        if demo is not None:
            demo.start(runtime)

    if args.demo:
        from segue.cli.demo import DemoChild

        demo = DemoChild()

    try:
        app = create_app(runtime, on_started=on_started)
    except ConfigError as exc:
        print(exc.message, file=sys.stderr)
        return 2
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_level=level,
        timeout_graceful_shutdown=10,
        backlog=4096,
    )
    server = uvicorn.Server(config)
    sockets = None if args.fd is None else [socket.socket(fileno=args.fd)]
    if demo is not None:
        stop_server = server.handle_exit

        def handle_exit(sig: int, frame: FrameType | None) -> None:
            # stop the demo first and keep serving until it has finished (at most 10 s), so
            # its last requests are answered; a second signal stops the server at once
            if demo.stopping:
                stop_server(sig, frame)
                return
            demo.stop()

            def then() -> None:
                demo.wait()
                stop_server(sig, None)

            threading.Thread(target=then, name="demo-stop", daemon=True).start()

        server.handle_exit = handle_exit  # type: ignore[method-assign]
    try:
        server.run(sockets=sockets)
    finally:
        if demo is not None:
            demo.wait()
    return 0


def _import(args: argparse.Namespace) -> int:
    from segue.cli.importer import authorization, run_import

    auth = authorization(args.key or os.environ.get("SEGUE_ADMIN_KEY"), args.write_key)
    if auth is None:
        print(
            "segue import: pass --key (or set SEGUE_ADMIN_KEY), or the source's --write-key",
            file=sys.stderr,
        )
        return 2
    return run_import(
        source=args.source,
        path=args.file,
        url=args.url,
        auth=auth,
        connector=args.connector,
        fmt=args.format,
        chunk_rows=args.chunk_rows,
        chunk_bytes=args.chunk_bytes,
        quiet=args.quiet,
        out=sys.stdout,
    )


def _catalog_import(args: argparse.Namespace) -> int:
    from segue.cli.catalog_import import run_import

    key = args.key or os.environ.get("SEGUE_ADMIN_KEY")
    if not key:
        print("segue catalog import: pass --key (or set SEGUE_ADMIN_KEY)", file=sys.stderr)
        return 2
    if not 1 <= args.chunk_items <= 1000:
        print("segue catalog import: --chunk-items must be from 1 to 1000", file=sys.stderr)
        return 2
    return run_import(
        path=args.file,
        url=args.url,
        key=key,
        fmt=args.format,
        chunk_items=args.chunk_items,
        quiet=args.quiet,
        out=sys.stdout,
    )


def _demo(args: argparse.Namespace) -> int:
    from segue.cli.demo import run

    return run(args)


def _audit_verify(args: argparse.Namespace) -> int:
    import asyncio

    try:
        settings = load_settings(args.config, os.environ, {"data": args.data})
        verdict = asyncio.run(Runtime(settings).verify_audit())
    except ConfigError as exc:
        print(f"segue audit verify: {exc.message}", file=sys.stderr)
        return 2
    if verdict.ok:
        print(f"audit log intact: {verdict.entries} entries")
        return 0
    print(f"audit log broken at entry {verdict.first_bad_seq}: {verdict.reason}")
    return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="segue", description="real-time personalization engine")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the API and the processor in one process")
    serve.add_argument("--host", default=None)
    serve.add_argument("--port", type=int, default=None)
    serve.add_argument("--data", default=None, help="state folder (default ./segue-data)")
    serve.add_argument("--config", type=Path, default=None, help="segue.yaml")
    serve.add_argument(
        "--demo", action="store_true", help="also run the demo shop's traffic against it"
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help="API processes sharing the port (more than 1: plus one `segue worker`)",
    )
    serve.add_argument(
        "--no-worker",
        action="store_true",
        help="API processes only: `segue worker` processes fold the log elsewhere",
    )
    serve.add_argument("--role", choices=["all", "api"], default="all", help=argparse.SUPPRESS)
    serve.add_argument("--fd", type=int, default=None, help=argparse.SUPPRESS)
    serve.add_argument("--cpu", type=int, default=None, help=argparse.SUPPRESS)
    serve.add_argument(
        "--no-pin",
        action="store_true",
        help="with --workers: leave the API processes to the scheduler instead of giving "
        "each its own core",
    )
    serve.set_defaults(run=_serve)
    worker = sub.add_parser(
        "worker",
        help="fold the event log into state (run beside `segue serve --no-worker`)",
        description="A processor without an API. Several may run: one holds the lease and "
        "folds, the others stand by and take over within seconds when it dies.",
    )
    worker.add_argument("--data", default=None, help="state folder (default ./segue-data)")
    worker.add_argument("--config", type=Path, default=None, help="segue.yaml")
    worker.set_defaults(run=_worker)
    demo = sub.add_parser(
        "demo",
        help="load a demo shop into segue and simulate its visitors",
        description="Load a synthetic shop (2,000 products, 5,000 customers) into a running "
        "segue, then simulate visitors who browse, click on decisions and buy according to "
        "hidden tastes; print the click-through rate of personalised and contextual "
        "decisions as it learns. Without --url, a temporary segue is started for the run.",
    )
    demo.add_argument("--url", default=None, help="a running segue (default: a temporary one)")
    demo.add_argument("--admin-key", default=None, help="default: $SEGUE_ADMIN_KEY")
    demo.add_argument("--publishable-key", default=None, help="default: $SEGUE_PUBLISHABLE_KEY")
    demo.add_argument("--write-key", default=None, help="default: $SEGUE_WRITE_KEY")
    demo.add_argument(
        "--duration", type=float, default=60.0, help="seconds of traffic; 0 runs until stopped"
    )
    demo.add_argument("--rate", type=float, default=200.0, help="most HTTP requests per second")
    demo.add_argument("--seed", type=int, default=1, help="the shop and the visitors' choices")
    demo.add_argument("--parent-pid", type=int, default=None, help=argparse.SUPPRESS)
    demo.set_defaults(run=_demo)
    imp = sub.add_parser(
        "import",
        help="run a connector on a file, sending it to a running segue",
        description="Stream FILE (CSV, JSON or JSON Lines) in chunks to a running segue, which "
        "maps every row with a connector. Exit code 0: all stored; 1: rows were rejected "
        "(they are in the quarantine); 2: the import could not run.",
    )
    imp.add_argument("source", help="the source the rows belong to")
    imp.add_argument("file", type=Path)
    imp.add_argument("--connector", default=None, help="default: the source's connector")
    imp.add_argument("--format", choices=["csv", "json", "jsonl"], default=None)
    imp.add_argument("--url", default="http://127.0.0.1:8080", help="the running segue")
    imp.add_argument("--key", default=None, help="admin key (default: $SEGUE_ADMIN_KEY)")
    imp.add_argument("--write-key", default=None, help="the source's write key, instead")
    imp.add_argument("--chunk-rows", type=int, default=500, help="rows per request")
    imp.add_argument("--chunk-bytes", type=int, default=256 * 1024, help="bytes per request")
    imp.add_argument("--quiet", action="store_true", help="no progress bar")
    imp.set_defaults(run=_import)
    catalog = sub.add_parser("catalog", help="the headless catalog of a running segue")
    catalog_sub = catalog.add_subparsers(dest="catalog_command", required=True)
    feed = catalog_sub.add_parser(
        "import",
        help="load a product feed (CSV, JSON, JSON Lines) into the catalog",
        description="Upsert the items of FILE into a running segue's catalog in chunks. "
        "Exit code 0: all stored; 1: items were rejected (listed by line); 2: the import "
        "could not run.",
    )
    feed.add_argument("file", type=Path)
    feed.add_argument("--url", default="http://127.0.0.1:8080", help="the running segue")
    feed.add_argument("--key", default=None, help="admin key (default: $SEGUE_ADMIN_KEY)")
    feed.add_argument("--format", choices=["csv", "json", "jsonl"], default=None)
    feed.add_argument("--chunk-items", type=int, default=500, help="items per request")
    feed.add_argument("--quiet", action="store_true", help="no progress bar")
    feed.set_defaults(run=_catalog_import)
    audit = sub.add_parser("audit", help="the tamper-evident audit log")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True)
    verify = audit_sub.add_parser(
        "verify",
        help="check the audit log's hash chain and sealed head",
        description="Exit code 0: intact (prints the number of entries); 1: an entry was "
        "edited, removed, reordered or the tail cut off (names the first bad entry); 2: no "
        "audit log to check.",
    )
    verify.add_argument("--data", default=None, help="state folder (default ./segue-data)")
    verify.add_argument("--config", type=Path, default=None, help="segue.yaml")
    verify.set_defaults(run=_audit_verify)
    args = parser.parse_args(argv)
    result: int = args.run(args)
    return result
