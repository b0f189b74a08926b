"""The whitebill command line: serve, worker, migrate, demo, schema, api-key create, operations register/list."""

from __future__ import annotations

import argparse
import asyncio
import re
import signal
import socket
import sys
from importlib import metadata
from typing import Any

from whitebill.settings import (
    Settings,
    SettingsError,
    configure_domain,
    development_secret_key,
    load_settings,
    operator_password,
    shared_metrics_dir,
)


def _configured() -> Settings:
    """The settings, the domain configured with them (commands that run domain code)."""
    settings = load_settings()
    configure_domain(settings)
    return settings


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from whitebill import logs
    from whitebill.app import create_app
    from whitebill.websockets import SmallWindowWebSockets

    settings = load_settings()
    logs.configure(settings.log_level)
    settings = development_secret_key(settings)  # create_app configures the domain with it

    async def check() -> None:
        from tortoise import Tortoise

        from whitebill import db, ready

        try:
            await db.create_database_if_missing(settings.database_url)
        except Exception as error:
            problem = ready.unreachable(error)
            if problem is None:
                raise
            raise problem from error
        await ready.connect(settings)  # refuses a database it cannot reach or that is not migrated
        await Tortoise.close_connections()

    asyncio.run(check())
    port = args.port or settings.port
    processes = args.processes or settings.processes
    try:  # the port first: nothing is printed or started on a port that is taken
        listening = _bind(settings.host, port)
    except OSError as error:
        print(f"whitebill: cannot listen on {settings.host}:{port}: {error.strerror or error}", file=sys.stderr)
        return 2
    port = listening.getsockname()[1]  # PORT=0: the one the system chose
    print(f"whitebill serving on http://{settings.host}:{port}/graphql", flush=True)
    options: dict[str, Any] = {
        "host": settings.host,
        "port": port,
        "log_config": None,
        "access_log": False,
        "timeout_keep_alive": KEEP_ALIVE_SECONDS,
        "ws_max_size": settings.max_body_bytes,  # a websocket message, like a request body
        "ws": SmallWindowWebSockets,  # permessage-deflate sized for live updates
    }
    if processes > 1:
        # Several processes on one port (uvicorn's supervisor, which binds it again), each opening its own
        # pool: on PostgreSQL they share nothing else, so this is the same as N servers behind a balancer.
        listening.close()
        with shared_metrics_dir(settings):
            uvicorn.run("whitebill.app:create_app", factory=True, workers=processes, **options)
        return 0
    uvicorn.Server(uvicorn.Config(create_app(settings), **options)).run(sockets=[listening])
    return 0


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listening = socket.socket(family, socket.SOCK_STREAM)
    try:
        listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds it
        listening.bind((host, port))
        listening.listen(2048)
    except OSError:
        listening.close()
        raise
    listening.set_inheritable(True)
    return listening


# An idle kept-alive connection is closed after this long. Longer than clients' and balancers' own idle
# limits (httpx 5 s, most balancers 60 s): when both sides give up at the same moment, a request sent
# on the connection the server is closing is lost (uvicorn's default, 5 s, equals httpx's).
KEEP_ALIVE_SECONDS = 75


def _worker(args: argparse.Namespace) -> int:
    from tortoise import Tortoise

    from billing.core import clock
    from whitebill import logs, ready
    from whitebill.worker import Worker

    settings = load_settings()
    logs.configure(settings.log_level)
    settings = development_secret_key(settings)
    configure_domain(settings)
    clock.use_shared_offset(settings.test_clock)
    health = None
    if settings.worker_health_port is not None:  # bound first: a taken port is one line, before any work
        try:
            health = _bind(settings.host, settings.worker_health_port)
        except OSError as error:
            where = f"{settings.host}:{settings.worker_health_port}"
            print(f"whitebill: cannot listen on {where}: {error.strerror or error}", file=sys.stderr)
            return 2
        print(f"whitebill worker health on http://{settings.host}:{health.getsockname()[1]}/healthz", flush=True)

    async def run() -> None:
        # SIGTERM (systemd, a container's stop) stops the worker as Ctrl-C does: the work in hand is cut, its
        # transaction rolls back and its lease lets another worker take it. As a container's first process
        # the worker would otherwise ignore SIGTERM until it is killed.
        main = asyncio.current_task()
        assert main is not None
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main.cancel)
        await ready.connect(settings)
        try:
            await Worker(settings, name=args.name, poll_seconds=args.poll, health_socket=health).run_forever()
        finally:
            await Tortoise.close_connections()

    try:
        asyncio.run(run())
    except (KeyboardInterrupt, asyncio.CancelledError):
        pass
    return 0


def _migrate(args: argparse.Namespace) -> int:
    from whitebill import db, ready

    settings = load_settings()
    try:
        applied = asyncio.run(db.migrate(settings.database_url))
    except Exception as error:
        problem = ready.unreachable(error)
        if problem is None:
            raise
        raise problem from error
    print("database is up to date" if not applied else f"{len(applied)} migration(s) applied")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from whitebill.demo import seed

    settings = _configured()
    asyncio.run(seed(settings, port=settings.port, new_keys=args.new_keys))
    return 0


def _schema(args: argparse.Namespace) -> int:
    from whitebill.schema import schema

    sys.stdout.write(schema.as_str() + "\n")
    return 0


def _db_id(value: str, type_name: str) -> int | None:
    """An id given on the command line: the database id (``1``) or the API's global id (``UGFydG5lcjox``,
    base64 of ``Partner:1``, as ``whitebill demo`` prints it); None for anything else."""
    from billing.core.errors import BillingError
    from schema.ids import MAX_DB_ID, expect_id

    if value.isascii() and value.isdigit():
        return int(value) if 0 < int(value) <= MAX_DB_ID else None
    try:
        return expect_id(value, type_name, type_name)
    except BillingError:
        return None


def _api_key_create(args: argparse.Namespace) -> int:
    from tortoise import Tortoise

    from billing.core.errors import BillingError
    from billing.tenants import api_keys
    from models.enums import Permission
    from whitebill import ready

    partner_id = None if args.platform else _db_id(args.partner, "Partner")
    if not args.platform and partner_id is None:
        print(
            f"whitebill: --partner {args.partner!r} is not a partner id (a database id such as 1, "
            "or the API's global id such as UGFydG5lcjox)",
            file=sys.stderr,
        )
        return 2
    settings = _configured()

    async def run() -> str:
        await ready.connect(settings)
        try:
            permissions = (
                frozenset(Permission(p.strip().upper()) for p in args.permissions.split(",") if p.strip())
                if args.permissions
                else None
            )
            new = await api_keys.create_key(
                partner_id=partner_id, name=args.name, permissions=permissions, creator=api_keys.operator("cli")
            )
            return new.secret
        finally:
            await Tortoise.close_connections()

    try:
        print(asyncio.run(run()))
    except SettingsError:
        raise
    except ValueError as error:
        print(
            f"whitebill: unknown permission ({error}); choose from {', '.join(p.value for p in Permission)}",
            file=sys.stderr,
        )
        return 2
    except BillingError as error:
        print(f"whitebill: {error.message}", file=sys.stderr)
        return 2
    return 0


def _operator_create(args: argparse.Namespace) -> int:
    import getpass

    from tortoise import Tortoise

    from billing.core.errors import BillingError
    from billing.tenants import identity
    from whitebill import ready

    settings = _configured()
    password = operator_password() or getpass.getpass("Password: ")

    async def run() -> None:
        await ready.connect(settings)
        try:
            await identity.create_platform_user(email=args.email, password=password, name=args.name)
        finally:
            await Tortoise.close_connections()

    try:
        asyncio.run(run())
    except BillingError as error:
        print(f"whitebill: {error.message}", file=sys.stderr)
        return 2
    print(f"platform operator {args.email} created: sign in with login(input: {{email, password}}) and no brand")
    return 0


def _operations_register(args: argparse.Namespace) -> int:
    from pathlib import Path

    from tortoise import Tortoise

    from whitebill import operations, ready
    from whitebill.schema import schema

    found: list[operations.Operation] = []
    for name in args.files:
        try:
            found += operations.split(Path(name).read_text(encoding="utf-8"), schema._schema)
        except (OSError, UnicodeDecodeError) as error:
            print(f"whitebill: cannot read {name}: {error}", file=sys.stderr)
            return 2
        except ValueError as error:
            print(f"whitebill: {name}: {error}", file=sys.stderr)
            return 2
    settings = _configured()

    async def run() -> list[tuple[operations.Operation, bool]]:
        await ready.connect(settings)
        try:
            return await operations.register(found)
        finally:
            await Tortoise.close_connections()

    for operation, new in asyncio.run(run()):
        print(f"{operation.sha256}  {operation.name or '(anonymous)'}  {'registered' if new else 'already registered'}")
    return 0


def _operations_list(args: argparse.Namespace) -> int:
    import json

    from tortoise import Tortoise

    from whitebill import operations, ready

    settings = _configured()

    async def run() -> list[operations.Operation]:
        await ready.connect(settings)
        try:
            return await operations.registered()
        finally:
            await Tortoise.close_connections()

    from whitebill.schema import MAX_TOKENS, VALIDATION_RULES, schema

    for operation in asyncio.run(run()):
        executor = operations.executor_of(operation, schema._schema, VALIDATION_RULES, MAX_TOKENS)
        if args.json:
            print(
                json.dumps(
                    {
                        "name": operation.name,
                        "sha256Hash": operation.sha256,
                        "query": operation.document,
                        "executor": executor,
                    }
                )
            )
        else:
            print(f"{operation.sha256}  {operation.name or '(anonymous)'}  {executor}")
    return 0


def _operations_remove(args: argparse.Namespace) -> int:
    from tortoise import Tortoise

    from whitebill import operations, ready

    settings = _configured()

    async def run() -> bool:
        await ready.connect(settings)
        try:
            return await operations.remove(args.sha256)
        finally:
            await Tortoise.close_connections()

    if not asyncio.run(run()):
        print(f"whitebill: no registered operation has the hash {args.sha256!r}", file=sys.stderr)
        return 2
    print(f"{args.sha256}  removed (every server stops running it within {operations.RELOAD_EVERY:g} s)")
    return 0


def _secret_key(args: argparse.Namespace) -> int:
    from billing.core.credentials import new_key

    print(new_key())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="whitebill", description="Billing backend for white-label reseller programs.")
    parser.add_argument("--version", action="version", version=f"whitebill {_version()}")
    parser.add_argument("--debug", action="store_true", help="on a failure, show the traceback too")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="serve the GraphQL API (PORT, DATABASE_URL from the environment)")
    serve.add_argument("--port", type=int, default=None)
    serve.add_argument(
        "--processes", type=int, default=None, help="server processes on the port (WHITEBILL_PROCESSES, default 1)"
    )
    serve.set_defaults(run=_serve)

    worker = commands.add_parser("worker", help="run background work: renewals, retries, outbox delivery")
    worker.add_argument("--name", default="worker")
    worker.add_argument("--poll", type=float, default=1.0, help="seconds to sleep when idle")
    worker.set_defaults(run=_worker)

    commands.add_parser("migrate", help="apply database migrations").set_defaults(run=_migrate)
    demo = commands.add_parser("demo", help="seed a demo platform, partner, plans and workspaces (again: adds nothing)")
    demo.add_argument("--new-keys", action="store_true", help="replace the demo's keys (the old ones stop working)")
    demo.set_defaults(run=_demo)
    commands.add_parser("schema", help="print the GraphQL SDL").set_defaults(run=_schema)
    commands.add_parser(
        "secret-key", help="print a new key for WHITEBILL_SECRET_KEY (encrypts gateway credentials)"
    ).set_defaults(run=_secret_key)

    api_key = commands.add_parser("api-key", help="manage API keys")
    api_key_commands = api_key.add_subparsers(dest="api_key_command", required=True)
    create = api_key_commands.add_parser("create", help="create a key and print it (shown once)")
    owner = create.add_mutually_exclusive_group(required=True)
    owner.add_argument("--platform", action="store_true", help="a key for the platform operator")
    owner.add_argument(
        "--partner", metavar="ID", help="a key for this partner (its database id, or its global id: UGFydG5lcjox)"
    )
    create.add_argument("--name", default="cli")
    create.add_argument(
        "--permissions", default=None, help="comma-separated, e.g. REPORT_USAGE; default: all the owner can hold"
    )
    create.set_defaults(run=_api_key_create)

    persisted = commands.add_parser(
        "operations", help="the registry of trusted GraphQL operations (persisted queries, WHITEBILL_OPERATIONS)"
    )
    persisted_commands = persisted.add_subparsers(dest="operations_command", required=True)
    register = persisted_commands.add_parser(
        "register", help="register each operation of these .graphql files; prints each one's SHA-256 and name"
    )
    register.add_argument("files", nargs="+", metavar="FILE.graphql")
    register.set_defaults(run=_operations_register)
    listing = persisted_commands.add_parser(
        "list", help="the registered operations: SHA-256, name, and compiled or why not (on PostgreSQL)"
    )
    listing.add_argument("--json", action="store_true", help="one JSON object per line, with the document")
    listing.set_defaults(run=_operations_list)
    removing = persisted_commands.add_parser("remove", help="forget a registered operation (by its SHA-256)")
    removing.add_argument("sha256")
    removing.set_defaults(run=_operations_remove)

    operator = commands.add_parser("operator", help="manage platform operators (people)")
    operator_commands = operator.add_subparsers(dest="operator_command", required=True)
    make = operator_commands.add_parser(
        "create", help="add a platform operator; the password comes from WHITEBILL_OPERATOR_PASSWORD or a prompt"
    )
    make.add_argument("--email", required=True)
    make.add_argument("--name", default="")
    make.set_defaults(run=_operator_create)
    return parser


def _version() -> str:
    try:
        return metadata.version("whitebill")
    except metadata.PackageNotFoundError:  # run from a source tree that is not installed
        return "unknown"


_CREDENTIALS = re.compile(r"(\w+://[^/@\s:]*:)[^@\s]*@")  # a URL's password, never printed


def main(argv: list[str] | None = None) -> int:
    """Runs a command. A failure is one line on stderr, never a traceback unless ``--debug``: settings
    with problems (one line each) exit 2, anything else 1."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except SettingsError as error:
        if args.debug:
            raise
        for problem in error.problems:
            print(f"whitebill: {problem}", file=sys.stderr)
        return 2
    except Exception as error:
        if args.debug:
            raise
        text = _CREDENTIALS.sub(r"\1***@", f"{type(error).__name__}: {error}").replace("\n", " ")
        print(f"whitebill: {text} (--debug shows where)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
