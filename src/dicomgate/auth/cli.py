"""``dicomgate users ...`` and ``dicomgate audit ...``: thin commands over the auth services."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from dicomgate.archive.models import utcnow
from dicomgate.auth import credentials, users
from dicomgate.auth.audit import AuditTrail
from dicomgate.auth.roles import Permission, Role
from dicomgate.db import Database
from dicomgate.errors import DicomgateError
from dicomgate.settings import Settings

users_app = typer.Typer(help="Local users, their project roles and API tokens.")
audit_app = typer.Typer(help="The append-only audit trail.")
console = Console()
err = Console(stderr=True)

ConfigOption = Annotated[Path | None, typer.Option("--config", "-c", help="YAML config file.")]
SettingsLoader = Callable[[Path | None], Settings]
_load: list[SettingsLoader] = []


def bind(load: SettingsLoader) -> None:
    """Give these commands the CLI's settings loader (which prints config errors)."""
    _load[:] = [load]


def _db(config: Path | None) -> Database:
    from dicomgate.app import open_intake

    return open_intake(_load[0](config)).db


def _run(action: Callable[[], object]) -> None:
    try:
        action()
    except DicomgateError as exc:
        err.print(f"[red]error:[/] {exc}", markup=True, highlight=False)
        raise typer.Exit(2) from exc


def _password(given: str | None) -> str:
    if given:
        return given
    return str(typer.prompt("password", hide_input=True, confirmation_prompt=True))


@users_app.command("add")
def add(
    name: str,
    password: Annotated[str | None, typer.Option(help="Prompted when omitted.")] = None,
    admin: Annotated[bool, typer.Option(help="Site administrator.")] = False,
    reidentify: Annotated[bool, typer.Option(help="May re-identify (identity vault).")] = False,
    config: ConfigOption = None,
) -> None:
    """Create a local user."""
    secret = _password(password)

    def go() -> None:
        with _db(config).unit_of_work() as session:
            users.add_user(session, name, secret, admin=admin, reidentify=reidentify)

    _run(go)
    console.print(f"user {name} created")


@users_app.command("ls")
def ls(config: ConfigOption = None) -> None:
    """List users and their roles."""
    with _db(config).reader() as session:
        rows = users.list_users(session)
    table = Table("user", "admin", "reidentify", "roles")
    for row in rows:
        roles = ", ".join(f"{p}:{r}" for p, r in sorted(row.roles.items()))
        table.add_row(
            row.name, "yes" if row.is_admin else "", "yes" if row.can_reidentify else "", roles
        )
    console.print(table)


@users_app.command("rm")
def rm(name: str, config: ConfigOption = None) -> None:
    """Remove a user with their roles, tokens and sessions."""

    def go() -> None:
        with _db(config).unit_of_work() as session:
            users.remove_user(session, name)

    _run(go)
    console.print(f"user {name} removed")


@users_app.command("passwd")
def passwd(
    name: str,
    password: Annotated[str | None, typer.Option(help="Prompted when omitted.")] = None,
    config: ConfigOption = None,
) -> None:
    """Set a user's password."""
    secret = _password(password)

    def go() -> None:
        with _db(config).unit_of_work() as session:
            users.set_password(session, name, secret)

    _run(go)
    console.print(f"password of {name} changed")


@users_app.command("grant")
def grant(
    name: str,
    project: str,
    role: Annotated[str, typer.Argument(help="owner, member, collaborator, or none.")],
    config: ConfigOption = None,
) -> None:
    """Give a user a role in a project (``none`` takes it away)."""

    def go() -> None:
        chosen = None if role == "none" else Role(role)
        with _db(config).unit_of_work() as session:
            users.grant(session, name, project, chosen)

    try:
        _run(go)
    except ValueError as exc:
        err.print(f"[red]error:[/] unknown role {role!r}")
        raise typer.Exit(2) from exc
    console.print(f"{name}: {project} -> {role}")


@users_app.command("token")
def token(
    name: str,
    project: Annotated[list[str] | None, typer.Option(help="Limit to these projects.")] = None,
    permission: Annotated[list[str] | None, typer.Option(help="read, write, ...")] = None,
    days: Annotated[float, typer.Option(help="Lifetime in days.")] = 90,
    label: str = "",
    config: ConfigOption = None,
) -> None:
    """Create an API token for a user and print it once."""
    out: list[str] = []

    def go() -> None:
        perms = [Permission(p) for p in permission] if permission else None
        db = _db(config)
        expires = utcnow() + dt.timedelta(days=days)  # after the start-up, not before it
        with db.unit_of_work() as session:
            out.append(
                credentials.create_token(
                    session,
                    name,
                    label=label,
                    projects=project,
                    permissions=perms,
                    expires_at=expires,
                )
            )

    _run(go)
    console.print(out[0], markup=False, highlight=False)


def _trail(config: Path | None) -> AuditTrail:
    from dicomgate.app import open_auth, open_intake

    settings = _load[0](config)
    return open_auth(settings, open_intake(settings)).audit


@audit_app.command("verify")
def verify(config: ConfigOption = None) -> None:
    """Walk the hash chain; exit 1 naming every record that was tampered with."""
    problems = _trail(config).verify()
    for problem in problems:
        console.print(problem, markup=False, highlight=False)
    if problems:
        raise typer.Exit(1)
    console.print("audit trail intact")


@audit_app.command("export")
def export(
    since: int = 0,
    limit: int = 100000,
    config: ConfigOption = None,
) -> None:
    """Print audit records as JSON lines."""
    for record in _trail(config).records(since, limit):
        console.print(
            json.dumps(record.to_json(), sort_keys=True),
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
