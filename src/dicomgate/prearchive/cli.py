"""CLI groups of the review: ``prearchive``, ``quarantine``, ``projects`` and ``rules test``.

They open the index directly and run the same synchronous, atomic actions as the REST API.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from dicomgate.auth.guard import local_caller
from dicomgate.errors import ConfigError, DicomgateError
from dicomgate.prearchive import actions, views
from dicomgate.prearchive import quarantine as q
from dicomgate.prearchive.context import Review, build_review
from dicomgate.settings import load_settings

prearchive_app = typer.Typer(help="Review staging sessions.", no_args_is_help=True)
quarantine_app = typer.Typer(help="Quarantined sessions.", no_args_is_help=True)
projects_app = typer.Typer(help="Projects.", no_args_is_help=True)
rules_app = typer.Typer(help="The sorting protocol.", no_args_is_help=True)
console = Console()
err = Console(stderr=True)
T = TypeVar("T")

ConfigOption = Annotated[Path | None, typer.Option("--config", "-c", help="YAML config file.")]
ProjectOpt = Annotated[str | None, typer.Option("--project", "-p", help="Target project.")]
SubjectOpt = Annotated[str | None, typer.Option("--subject", help="New subject label.")]
SessionOpt = Annotated[str | None, typer.Option("--session", help="New session label.")]


@contextmanager
def _errors() -> Iterator[None]:
    try:
        yield
    except ConfigError as exc:
        err.print(f"[red]configuration error:[/] {exc}", markup=True, highlight=False)
        raise typer.Exit(2) from exc
    except DicomgateError as exc:
        err.print(f"refused: {exc}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(1) from exc


def _review(config: Path | None) -> Review:
    from dicomgate.app import open_intake

    settings = load_settings(config)
    return build_review(settings, open_intake(settings))


def _run(config: Path | None, action: Callable[[Review], T]) -> T:
    with _errors():
        return action(_review(config))


def _print_json(data: Any) -> None:
    console.print_json(json.dumps(data, default=str))


@prearchive_app.command("ls")
def prearchive_ls(
    status: Annotated[str | None, typer.Option(help="Only this status.")] = None,
    config: ConfigOption = None,
) -> None:
    """List staging sessions: id, status, target, labels, reasons."""

    def run(review: Review) -> list[dict[str, Any]]:
        with review.intake.db.reader() as session:
            return views.list_staging(session, status)

    table = Table("id", "status", "target", "subject", "session", "n", "reasons")
    for row in _run(config, run):
        codes = ",".join(r.get("code", "") for r in row["reasons"])
        # An archived session shows where it went: QUARANTINE, not the project it was meant for.
        archived = row["status"] == "ARCHIVED" and row["project_id"]
        table.add_row(
            str(row["id"]),
            row["status"],
            (row["project_id"] if archived else row["target_project"] or row["project_id"]) or "",
            row["subject"] or "",
            row["session"] or "",
            str(row["instance_count"]),
            codes,
        )
    console.print(table)


@prearchive_app.command("check")
def prearchive_check(
    now: Annotated[bool, typer.Option("--now", help="Treat receiving sessions as stable.")] = False,
    config: ConfigOption = None,
) -> None:
    """Run one pass of the spine (what ``serve`` does every few seconds)."""
    from dataclasses import replace

    from dicomgate.pipeline import advance

    def run(review: Review) -> None:
        if now:
            review = replace(
                review, settings=review.settings.model_copy(update={"stable_after": 0})
            )
        advance(review)

    _run(config, run)
    console.print("prearchive checked")


@prearchive_app.command("show")
def prearchive_show(staging_id: int, config: ConfigOption = None) -> None:
    """Show one staging session as JSON."""

    def run(review: Review) -> dict[str, Any]:
        with review.intake.db.reader() as session:
            return views.show_staging(session, staging_id)

    _print_json(_run(config, run))


@prearchive_app.command("archive")
def prearchive_archive(
    staging_id: int,
    project: ProjectOpt = None,
    subject: SubjectOpt = None,
    session: SessionOpt = None,
    config: ConfigOption = None,
) -> None:
    """Archive a session (optionally into another project, with new labels)."""
    _run(
        config,
        lambda r: actions.archive(r, staging_id, project, subject, session, caller=local_caller()),
    )
    console.print(f"staging session {staging_id} archived")


@prearchive_app.command("rename")
def prearchive_rename(
    staging_id: int,
    subject: SubjectOpt = None,
    session: SessionOpt = None,
    config: ConfigOption = None,
) -> None:
    """Give a session new labels; it is checked again."""
    status = _run(
        config, lambda r: actions.rename(r, staging_id, subject, session, caller=local_caller())
    )
    console.print(f"staging session {staging_id} renamed: {status}")


@prearchive_app.command("move")
def prearchive_move(staging_id: int, project: str, config: ConfigOption = None) -> None:
    """Target another project; the session is checked again."""
    status = _run(config, lambda r: actions.move(r, staging_id, project, caller=local_caller()))
    console.print(f"staging session {staging_id} moved to {project}: {status}")


@prearchive_app.command("merge")
def prearchive_merge(staging_id: int, project: str, into: str, config: ConfigOption = None) -> None:
    """Add a session to the archived session INTO of PROJECT (same study)."""
    _run(config, lambda r: actions.merge(r, staging_id, project, into, caller=local_caller()))
    console.print(f"staging session {staging_id} merged into {project}/{into}")


@prearchive_app.command("resolve-identity")
def prearchive_resolve_identity(
    staging_id: int,
    use: Annotated[str, typer.Argument(help="headers | confirmed | subject | reject")],
    subject: Annotated[str | None, typer.Option(help="With 'subject': its label.")] = None,
    user: Annotated[str | None, typer.Option(help="Who decides (recorded).")] = None,
    config: ConfigOption = None,
) -> None:
    """Decide whose data a session held with identity_mismatch is; archive it when clean."""
    from dicomgate.prearchive.identity import resolve_identity

    caller = local_caller()
    if user:  # the name recorded with the decision; the command still acts as a site admin
        caller = replace(caller, name=f"{caller.name}:{user}")
    status = _run(config, lambda r: resolve_identity(r, staging_id, use, subject, caller=caller))
    console.print(f"staging session {staging_id} identity resolved ({use}): {status}")


@prearchive_app.command("delete")
def prearchive_delete(staging_id: int, config: ConfigOption = None) -> None:
    """Delete a session and its instances (recorded)."""
    n = _run(config, lambda r: actions.delete(r, staging_id, caller=local_caller()))
    console.print(f"staging session {staging_id} deleted ({n} instances)")


@quarantine_app.command("ls")
def quarantine_ls(config: ConfigOption = None) -> None:
    """List quarantined sessions with their reasons."""

    def run(review: Review) -> list[dict[str, Any]]:
        with review.intake.db.reader() as session:
            return views.quarantine(session)

    table = Table("session", "subject", "proposed", "reasons")
    for row in _run(config, run):
        codes = ",".join(r.get("code", "") for r in row["reasons"])
        table.add_row(row["label"], row["subject"], row["proposed_project"] or "", codes)
    console.print(table)


@quarantine_app.command("release")
def quarantine_release(
    label: str,
    project: str,
    subject: SubjectOpt = None,
    session: SessionOpt = None,
    config: ConfigOption = None,
) -> None:
    """Move a quarantined session into PROJECT after that project's checks."""
    new = _run(
        config, lambda r: q.release(r, label, project, subject, session, caller=local_caller())
    )
    console.print(f"{label} released into {project} as {new}")


@quarantine_app.command("delete")
def quarantine_delete(label: str, config: ConfigOption = None) -> None:
    """Delete a quarantined session and its instances (recorded)."""
    n = _run(config, lambda r: q.delete_quarantined(r, label, caller=local_caller()))
    console.print(f"{label} deleted ({n} instances)")


@projects_app.command("ls")
def projects_ls(config: ConfigOption = None) -> None:
    """List projects with policy and counts."""
    from dicomgate.archive.projects import list_projects

    def run(review: Review) -> list[Any]:
        with review.intake.db.reader() as session:
            return list_projects(session)

    table = Table("id", "policy", "subjects", "sessions", "name")
    for p in _run(config, run):
        table.add_row(p.id, p.archive_policy, str(p.subjects), str(p.sessions), p.name)
    console.print(table)


@projects_app.command("apply-cards")
def projects_apply_cards(project: str, config: ConfigOption = None) -> None:
    """Re-apply PROJECT's study cards to its archived sessions."""
    n = _run(config, lambda r: q.apply_study_cards(r, project, caller=local_caller()))
    console.print(f"study cards applied to {n} session(s) of {project}")


@rules_app.command("test")
def rules_test(
    path: Annotated[Path, typer.Argument(help="Folder (or file) to dry-run.")],
    config: ConfigOption = None,
) -> None:
    """Dry-run the sorting protocol: per session, the rule, the outcome and why."""
    from dicomgate.prearchive.dry_run import dry_run

    with _errors():
        report = dry_run(load_settings(config), path)
    for line in report:
        console.print(line, markup=False, highlight=False, soft_wrap=True)
