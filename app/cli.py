"""The `orders-api` command line: serve, migrate, seed-demo, create-user, export-schema,
export-persisted-queries, send-emails."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys
from pathlib import Path

from app.settings import Settings


def _settings() -> Settings:
    return Settings.from_env()


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from app.logging_setup import configure_logging
    from app.main import create_app
    from app.migrate import upgrade
    from app.serving import raise_open_file_limit, slow_client_protocol
    from app.tracking import places

    settings = _settings()
    configure_logging(settings.log_level)
    raise_open_file_limit()  # one descriptor per connection: 1,024 is a few hundred clients
    if not args.no_migrate:
        upgrade(settings.database_url)
    host = args.host or os.environ.get("HOST", "127.0.0.1")
    port = int(args.port or os.environ.get("PORT", "8000"))
    app = create_app(settings, run_sender=not args.no_sender, freeze_heap=True)
    # The public tracking view's gazetteer (a third of a second to load), before the loop
    # runs: the first carrier event must not wait for it (app/tracking/places.py).
    places.gazetteer()
    # The start-up heap is frozen when the app's lifespan starts (app/heap.py), after
    # uvicorn has built its own part of it.
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_config=None,
        # URLs and bodies may hold codes: the app writes its own access line per request
        # (app/access_log.py, masked, with request id and operation), uvicorn none
        access_log=False,
        proxy_headers=False,  # client IPs are taken from TRUSTED_PROXIES by the app
        timeout_graceful_shutdown=10,
        ws_max_size=64 * 1024,  # the same cap as HTTP bodies
        # headers and body read deadlines (uvicorn has none): app/serving.py
        http=slow_client_protocol(
            settings.http_header_timeout_seconds, settings.http_body_timeout_seconds
        ),
    )
    return 0


def cmd_migrate(_: argparse.Namespace) -> int:
    from app.migrate import upgrade

    upgrade(_settings().database_url)
    print("migrations applied")
    return 0


def cmd_seed_demo(_: argparse.Namespace) -> int:
    from app.container import build_services
    from app.demo import seed_demo

    async def seed() -> int:
        # Built and closed on this one event loop: the async pools belong to it.
        services = build_services(_settings())
        try:
            return await seed_demo(services)
        finally:
            await services.aclose()

    created = asyncio.run(seed())
    print(f"demo data ready ({created} records created or updated)")
    return 0


def cmd_create_user(args: argparse.Namespace) -> int:
    from app.accounts.models import User
    from app.container import build_services
    from app.errors import DomainError
    from app.security.roles import Role

    password = args.password or os.environ.get("NEW_USER_PASSWORD") or getpass.getpass()

    async def create() -> User:
        services = build_services(_settings())
        try:
            return await services.accounts.create_user(
                args.email, password, name=args.name, role=Role(args.role)
            )
        finally:
            await services.aclose()

    try:
        user = asyncio.run(create())
    except DomainError as error:
        print(f"error: {error.message}", file=sys.stderr)
        return 1
    print(f"created {user.role} {user.email}")
    return 0


def cmd_export_schema(args: argparse.Namespace) -> int:
    from app.schema import schema

    return _write(schema.as_str() + "\n", args.output)


def cmd_export_persisted_queries(args: argparse.Namespace) -> int:
    from app.console.routes import CONSOLE_DIR
    from app.graphql.persisted import export_allowlist
    from app.schema import schema

    sources = [Path(args.examples), CONSOLE_DIR]  # the console's documents, for allowlist mode
    return _write(export_allowlist(sources, schema._schema), args.output)


def _write(text: str, output: str | None) -> int:
    if output:
        with open(output, "w", encoding="utf-8") as handle:
            handle.write(text)
    else:
        sys.stdout.write(text)
    return 0


def cmd_send_emails(_: argparse.Namespace) -> int:
    from app.db import Database
    from app.notifications.preferences import UnsubscribeLinks
    from app.notifications.sender import OutboxSender, SendReport
    from app.notifications.templates import Shop
    from app.notifications.transports import transport_from_settings

    settings = _settings()

    async def one_pass() -> SendReport:
        db = Database(settings.database_url)
        try:
            sender = OutboxSender(
                db,
                transport_from_settings(settings),
                settings.mail_from,
                max_attempts=settings.outbox_max_attempts,
                shop=Shop.from_settings(settings),
                unsubscribe=UnsubscribeLinks.from_secret(
                    settings.jwt_secret, settings.public_api_url
                ),
            )
            return await sender.send_pending()
        finally:
            await db.dispose()

    report = asyncio.run(one_pass())
    print(f"sent {report.sent}, retry later {report.retried}, dead {report.dead}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="orders-api", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="migrate and serve the API (GraphiQL at /graphql)")
    serve.add_argument("--host")
    serve.add_argument("--port")
    serve.add_argument("--no-migrate", action="store_true")
    serve.add_argument("--no-sender", action="store_true", help="do not send emails here")
    serve.set_defaults(func=cmd_serve)

    sub.add_parser("migrate", help="apply database migrations").set_defaults(func=cmd_migrate)
    sub.add_parser("seed-demo", help="load demo data (idempotent)").set_defaults(func=cmd_seed_demo)

    create = sub.add_parser("create-user", help="create an account (staff roles only here)")
    create.add_argument("--email", required=True)
    create.add_argument("--password", help="or NEW_USER_PASSWORD, or asked for")
    create.add_argument("--name", default="")
    create.add_argument(
        "--role", default="CUSTOMER", choices=["CUSTOMER", "SUPPORT", "WAREHOUSE", "ADMIN"]
    )
    create.set_defaults(func=cmd_create_user)

    export = sub.add_parser("export-schema", help="print the GraphQL SDL")
    export.add_argument("--output", "-o")
    export.set_defaults(func=cmd_export_schema)

    persisted = sub.add_parser(
        "export-persisted-queries",
        help="print the persisted-query allow-list: every operation of the example clients "
        "and the staff console",
    )
    persisted.add_argument("--examples", default="examples")
    persisted.add_argument("--output", "-o")
    persisted.set_defaults(func=cmd_export_persisted_queries)

    sub.add_parser("send-emails", help="one pass of the email outbox").set_defaults(
        func=cmd_send_emails
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
