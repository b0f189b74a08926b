"""Serve the fake Asaas API v3 on 127.0.0.1 in this process.

    .venv/bin/python -m tests.fake_asaas --port 8089 --token my-test-token

``--port 0`` lets the system pick a free port. The first line printed on stdout is the address,
``fake-asaas listening on http://127.0.0.1:PORT``, so a parent process can read it.
"""

from __future__ import annotations

import argparse
import socket
import sys

import uvicorn

from tests.fake_asaas.control import DEFAULT_TOKEN
from tests.fake_asaas.server import create_app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.fake_asaas", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8089, help="port on 127.0.0.1 (0: any free port)")
    parser.add_argument("--token", default=DEFAULT_TOKEN, help="the API key clients must send as access_token")
    parser.add_argument("--webhook-timeout", type=float, default=5.0, help="seconds to wait for a webhook receiver")
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    port = sock.getsockname()[1]
    print(f"fake-asaas listening on http://127.0.0.1:{port}", flush=True)
    config = uvicorn.Config(
        create_app(args.token, webhook_timeout=args.webhook_timeout),
        http="h11",
        lifespan="on",
        log_level=args.log_level,
        access_log=False,
    )
    uvicorn.Server(config).run(sockets=[sock])
    sys.exit(0)


if __name__ == "__main__":
    main()
