"""The ``junctionbox`` command. Every option can also be set by the JB_* variable it names."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from junctionbox import __version__
from junctionbox.domain.identity import Role
from junctionbox.errors import ConfigurationError, JunctionboxError
from junctionbox.observability.logging import configure_logging
from junctionbox.settings import Settings, load_settings

app = typer.Typer(
    help="junctionbox: integration gateway and orchestration engine.",
    no_args_is_help=True,
    add_completion=False,
)
admin_app = typer.Typer(help="Administrative tasks run against the database directly.")
app.add_typer(admin_app, name="admin")
out = Console()
err = Console(stderr=True)
T = TypeVar("T")

ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config", envvar="JB_CONFIG_FILE", help="TOML file with settings.", show_envvar=True
    ),
]
DatabaseOpt = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        envvar="JB_DATABASE_URL",
        help="sqlite+aiosqlite:///path.db or postgresql+asyncpg://user@host/db.",
        show_envvar=True,
    ),
]


def _settings(config: Path | None, **overrides: Any) -> Settings:
    try:
        settings = load_settings(overrides, config)
    except ConfigurationError as exc:
        err.print(f"[red]error:[/red] {exc.message}")
        raise typer.Exit(2) from exc
    configure_logging(settings.log_format.value, settings.log_level)
    return settings


def _run(factory: Callable[[], Awaitable[T]]) -> T:
    try:
        return asyncio.run(factory())  # type: ignore[arg-type]
    except JunctionboxError as exc:
        err.print(f"[red]error:[/red] {exc.message}")
        raise typer.Exit(1) from exc


@app.command()
def serve(
    config: ConfigOpt = None,
    database_url: DatabaseOpt = None,
    host: Annotated[
        str | None, typer.Option(envvar="JB_HOST", help="Listen address.", show_envvar=True)
    ] = None,
    port: Annotated[
        int | None, typer.Option(envvar="JB_PORT", help="Listen port.", show_envvar=True)
    ] = None,
    roles: Annotated[
        str | None,
        typer.Option(
            envvar="JB_ROLES",
            help="Comma-separated roles (api, dispatcher, worker, scheduler) or all.",
            show_envvar=True,
        ),
    ] = None,
    log_format: Annotated[
        str | None, typer.Option(envvar="JB_LOG_FORMAT", help="json or console.", show_envvar=True)
    ] = None,
) -> None:
    """Run the gateway: migrate the database, then serve until SIGINT/SIGTERM."""
    from junctionbox.runtime import serve as run_server

    settings = _settings(
        config, database_url=database_url, host=host, port=port, roles=roles, log_format=log_format
    )
    try:
        run_server(settings)
    except ConfigurationError as exc:
        err.print(f"[red]error:[/red] {exc.message}")
        raise typer.Exit(2) from exc


@app.command()
def migrate(config: ConfigOpt = None, database_url: DatabaseOpt = None) -> None:
    """Apply database migrations up to the latest version."""
    from junctionbox.store import migrate as migrations
    from junctionbox.store.database import Database

    settings = _settings(config, database_url=database_url)

    async def run() -> str | None:
        db = Database(settings.database_url)
        try:
            await migrations.upgrade(db)
            return await migrations.current_revision(db)
        finally:
            await db.dispose()

    out.print(f"database at revision {_run(run)}")


@admin_app.command("create-user")
def create_user(
    email: Annotated[str, typer.Option(help="Login email.")],
    password: Annotated[
        str, typer.Option(prompt=True, hide_input=True, confirmation_prompt=True, help="Password.")
    ],
    role: Annotated[Role, typer.Option(help="ADMIN or USER.")] = Role.USER,
    org_id: Annotated[int | None, typer.Option(help="Organization of a USER.")] = None,
    config: ConfigOpt = None,
    database_url: DatabaseOpt = None,
) -> None:
    """Create a user (migrating the database first if needed)."""
    settings = _settings(config, database_url=database_url)

    async def run() -> str:
        services = await _prepared(settings)
        try:
            user = await services.users.create(
                None, email=email, password=password, role=role, org_id=org_id
            )
            return str(user.id)
        finally:
            await services.db.dispose()

    out.print(f"created user {_run(run)} ({email}, {role.value})")


@admin_app.command("create-api-key")
def create_api_key(
    org_id: Annotated[int, typer.Option(help="Organization the key acts for.")],
    name: Annotated[str, typer.Option(help="A name to recognise the key by.")],
    config: ConfigOpt = None,
    database_url: DatabaseOpt = None,
) -> None:
    """Create an API key. The key is printed once; only its hash is stored."""
    settings = _settings(config, database_url=database_url)

    async def run() -> tuple[str, str]:
        services = await _prepared(settings)
        try:
            created = await services.api_keys.create(None, org_id=org_id, name=name)
            return created.record.id, created.key
        finally:
            await services.db.dispose()

    key_id, key = _run(run)
    err.print(f"created API key {key_id}; it is shown only now:")
    sys.stdout.write(key + "\n")


@app.command()
def receive(
    port: Annotated[int, typer.Option(help="Port to listen on (127.0.0.1).")] = 9000,
    secret: Annotated[
        list[str] | None,
        typer.Option(
            help="The integration's signing secret (whsec_… or whpk_…); repeat during a rotation.",
            envvar="JB_RECEIVE_SECRET",
            show_envvar=True,
        ),
    ] = None,
    status: Annotated[int, typer.Option(help="Status to answer with.")] = 204,
) -> None:
    """Run a local webhook receiver that checks signatures and prints every delivery.

    For trying integrations out: point one at http://127.0.0.1:PORT/… and allow it with
    JB_SSRF_ALLOWLIST=127.0.0.1:PORT on the gateway.
    """
    from aiohttp import web

    from junctionbox.connectors.webhook_receiver import ReceivedWebhook, receiver_app

    def show(hook: ReceivedWebhook) -> None:
        verdict = {None: "unchecked", True: "[green]valid[/green]", False: "[red]INVALID[/red]"}
        out.print(
            f"{hook.method} {hook.path}  webhook-id={hook.webhook_id}  "
            f"signature {verdict[hook.signature_ok]}"
            + (f" ({hook.problem})" if hook.problem else "")
        )
        out.print(hook.body.decode("utf-8", errors="replace"), markup=False, highlight=False)

    err.print(f"receiving webhooks on http://127.0.0.1:{port}/ (Ctrl-C to stop)")
    app_ = receiver_app(show, secrets=tuple(secret or ()), status=status)
    web.run_app(app_, host="127.0.0.1", port=port, print=None, access_log=None)


@app.command()
def version() -> None:
    """Print the version."""
    out.print(__version__)


async def _prepared(settings: Settings) -> Any:
    from junctionbox.runtime import build_services, ensure_secret_key
    from junctionbox.store import migrate as migrations

    services = build_services(ensure_secret_key(settings))
    await migrations.upgrade(services.db)
    return services


def main() -> None:
    app()


if __name__ == "__main__":
    main()
