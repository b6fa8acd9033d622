"""``segue serve`` and friends. Goes only through the runtime; never touches a driver."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from segue.errors import ConfigError
from segue.runtime import Runtime
from segue.settings import load_settings

__all__ = ["main"]


def _banner(runtime: Runtime) -> None:
    s = runtime.settings
    url = f"http://{s.host}:{s.port}"
    lines = [
        f"segue is running at {url}",
        f"  API docs   {url}/docs",
        f"  OpenAPI    {url}/openapi.json",
        f"  metrics    {url}/metrics",
        f"  data       {Path(s.data).resolve()}",
    ]
    shown = [k for k in runtime.generated_keys if k != "secret"]
    if shown:
        lines.append("New keys were generated and saved in the data folder (shown only this once):")
        for name in shown:
            if name == "admin":
                lines.append(f"  admin key        {runtime.keys.admin}")
            elif name == "publishable":
                lines.append(f"  publishable key  {runtime.keys.publishable}")
            else:
                source = name.split(":", 1)[1]
                lines.append(f"  write key ({source}) {runtime.keys.write[source]}")
    print("\n".join(lines), flush=True)


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from segue.api.app import create_app

    try:
        settings = load_settings(
            args.config,
            os.environ,
            {"host": args.host, "port": args.port, "data": args.data},
        )
    except ConfigError as exc:
        print(exc.message, file=sys.stderr)
        return 2
    runtime = Runtime(settings)
    app = create_app(runtime, on_started=_banner)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_level="warning",
        timeout_graceful_shutdown=10,
        backlog=4096,
    )
    uvicorn.Server(config).run()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="segue", description="real-time personalization engine")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the API and the processor in one process")
    serve.add_argument("--host", default=None)
    serve.add_argument("--port", type=int, default=None)
    serve.add_argument("--data", default=None, help="state folder (default ./segue-data)")
    serve.add_argument("--config", type=Path, default=None, help="segue.yaml")
    serve.set_defaults(run=_serve)
    args = parser.parse_args(argv)
    result: int = args.run(args)
    return result
