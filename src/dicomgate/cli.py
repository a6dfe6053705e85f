"""The ``dicomgate`` command: parses, calls services, prints with rich."""

from __future__ import annotations

import gc
from collections import Counter
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from dicomgate.auth.cli import audit_app, bind, users_app
from dicomgate.cli_jobs import jobs_app
from dicomgate.cli_media import media_app
from dicomgate.deid.cli import deid_app
from dicomgate.errors import ConfigError
from dicomgate.intake.receive import Outcome
from dicomgate.jobs.statuses import JobStatus
from dicomgate.logs import configure as configure_logging
from dicomgate.prearchive.cli import prearchive_app, projects_app, quarantine_app, rules_app
from dicomgate.settings import Settings, load_settings

app = typer.Typer(help="dicomgate: research DICOM intake and archive.", no_args_is_help=True)
config_app = typer.Typer(help="Configuration.")
db_app = typer.Typer(help="The index database.")
app.add_typer(config_app, name="config")
app.add_typer(db_app, name="db")
app.add_typer(users_app, name="users")
app.add_typer(audit_app, name="audit")
app.add_typer(jobs_app, name="jobs")
app.add_typer(prearchive_app, name="prearchive")
app.add_typer(quarantine_app, name="quarantine")
app.add_typer(projects_app, name="projects")
app.add_typer(rules_app, name="rules")
app.add_typer(media_app, name="media")
app.add_typer(jobs_app, name="jobs")
app.add_typer(deid_app, name="deid")
console = Console()
err = Console(stderr=True)

StudyOption = Annotated[
    str | None, typer.Option("--study", help="Only this Study Instance UID (DICOMDIR media).")
]
SeriesOption = Annotated[
    str | None, typer.Option("--series", help="Only this Series Instance UID (DICOMDIR media).")
]
ConfigOption = Annotated[
    Path | None, typer.Option("--config", "-c", help="YAML config file.", exists=False)
]
IdentityOption = Annotated[
    list[str] | None,
    typer.Option(
        "--identity",
        help="Operator-confirmed identity, FIELD=VALUE, repeatable (first_name, last_name, "
        "birth_name, birth_date, sex); a de-identified project holds a session whose headers "
        "contradict it (identity_mismatch).",
    ),
]
RemoveOption = Annotated[
    bool,
    typer.Option(
        "--remove-imported",
        help="Delete each file once the archive has it durably (stored or already stored), "
        "then the folders it emptied; the archive then takes the files themselves instead of "
        "copies where it can (docs/sources.md). Not for DICOMDIR media.",
    ),
]

IdentityFileOption = Annotated[
    Path | None,
    typer.Option(
        "--identity-file",
        help="The confirmed identity as FIELD=VALUE lines in a file, instead of --identity "
        "(whose values other users of the machine can read in the process list).",
    ),
]


def _settings(config: Path | None) -> Settings:
    try:
        return load_settings(config)
    except ConfigError as exc:
        err.print(f"[red]configuration error:[/] {exc}")
        raise typer.Exit(2) from exc


bind(_settings)


@app.command()
def serve(config: ConfigOption = None) -> None:
    """Run the HTTP API, the DICOM receiver and the archiving spine."""
    import uvicorn

    from dicomgate.app import Service, check_vault, create_app, open_auth, open_intake
    from dicomgate.auth.http import check_exposure
    from dicomgate.auth.tls import check_https

    settings = _settings(config)
    try:
        check_exposure(settings.auth.enabled, [settings.http_host, settings.dicom_host])
        check_vault(settings)  # a de-identifying site must hold its vault key before it starts
        certfile, keyfile = check_https(settings.auth) or (None, None)
    except ConfigError as exc:
        err.print(f"[red]refusing to start:[/] {exc}")
        raise typer.Exit(2) from exc
    configure_logging(settings.log_level)
    intake = open_intake(settings)
    service = Service(settings, intake, open_auth(settings, intake))
    uvicorn.run(
        create_app(service),
        host=settings.http_host,
        port=settings.http_port,
        log_level=settings.log_level.lower(),
        # Open event streams would hold the shutdown until their job ends; cut them after 5 s
        # so the job workers stop and hand their jobs back.
        timeout_graceful_shutdown=5,
        ssl_certfile=certfile,
        ssl_keyfile=keyfile,
    )


@app.command("import")
def import_(
    paths: Annotated[list[Path], typer.Argument(help="Files and folders (recursive).")],
    config: ConfigOption = None,
    study: StudyOption = None,
    series: SeriesOption = None,
    identity: IdentityOption = None,
    identity_file: IdentityFileOption = None,
    remove_imported: RemoveOption = False,
) -> None:
    """Import files through the same intake as every other source (as a job).

    A folder holding a DICOMDIR (a CD/DVD) is imported through it: what the DICOMDIR lists
    but the media lacks, and what the media holds but the DICOMDIR does not list, is reported.
    """
    from dicomgate.app import open_intake, open_jobs
    from dicomgate.cli_jobs import run_with_progress
    from dicomgate.cli_media import submit_import

    settings = _settings(config)
    warm_import_processes(settings, paths)
    confirmed = _identity(identity, identity_file)
    jobs = open_jobs(settings, open_intake(settings), queue=False)
    # Everything loaded so far lives as long as this command: out of every collection, which
    # walked it again and again while the import parsed headers.
    gc.freeze()
    workers = settings.sources.import_workers
    job_id = submit_import(
        jobs, paths, study, series, workers, identity=confirmed, remove=remove_imported
    )
    job = run_with_progress(jobs, job_id)
    counts: Counter[Outcome] = Counter()
    problems: list[tuple[Path, str]] = []
    for item in jobs.items(job_id, limit=1_000_000).items:
        if item.outcome == "skipped":
            err.print(f"[yellow]skipped ({item.reason}):[/] {item.key}", highlight=False)
            continue
        if "intake" in item.detail:
            counts[Outcome(item.detail["intake"])] += 1
        if item.outcome not in ("stored", "already_stored"):
            problems.append((Path(item.key), item.reason))
    _summary(counts, problems)
    if job.status is JobStatus.FAILED:
        err.print(f"[red]import failed:[/] {job.message}", highlight=False)
    if problems or job.status is not JobStatus.SUCCEEDED:
        raise typer.Exit(1)


def warm_import_processes(settings: Settings, paths: list[Path]) -> None:
    """Start the import processes now when this import is large enough to hand them batches.

    They are forked from this command, which runs no other thread yet and has imported
    intake already, so the job's first batches find them ready (spawned, each imported
    pydicom and SQLAlchemy again, and the first batch waited for them).
    """
    from dicomgate.sources import import_processes
    from dicomgate.sources.scan import holds_at_least

    sources = settings.sources
    import_processes.configure(sources.import_processes, sources.import_processes_from)
    if holds_at_least(paths, sources.import_processes_from):
        import_processes.prestart(fork=True)


def _identity_pairs(pairs: list[str] | None, file: Path | None) -> list[tuple[str, str]]:
    """Return the FIELD=VALUE pairs of ``--identity`` or of ``--identity-file``, or exit 2.

    Messages name the argument or the line, never a value: these are a patient's identifiers.
    """
    if pairs and file is not None:
        err.print("[red]give --identity or --identity-file, not both[/]")
        raise typer.Exit(2)
    if file is None:
        named = [(f"--identity argument {n}", pair) for n, pair in enumerate(pairs or (), 1)]
    else:
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            err.print(f"[red]--identity-file: cannot read {file}:[/] {exc}", highlight=False)
            raise typer.Exit(2) from exc
        lines = enumerate(text.splitlines(), 1)
        named = [
            (f"--identity-file line {n}", line)
            for n, line in lines
            if line.strip() and not line.lstrip().startswith("#")
        ]
    result = []
    for where, pair in named:
        name, sep, value = pair.partition("=")
        if not sep:
            err.print(f"[red]{where} is not FIELD=VALUE[/]", highlight=False)
            raise typer.Exit(2)
        result.append((name.strip(), value.strip() if file is not None else value))
    return result


def _identity(pairs: list[str] | None, file: Path | None = None) -> dict[str, str] | None:
    """Return the confirmed identity of ``--identity`` pairs or an ``--identity-file``, or exit 2.

    Parameters
    ----------
    pairs
        The ``--identity`` values; ``None`` or empty when none were given.
    file
        A file of FIELD=VALUE lines (``#`` comments and blank lines ignored), which keeps
        the identity out of the process list that other users of the machine can read.
    """
    from dicomgate.deid.errors import IdentityError
    from dicomgate.deid.identity import confirmed_identity

    found = _identity_pairs(pairs, file)
    if not found:
        return None
    values = dict(found)
    try:
        return confirmed_identity(values).to_dict()
    except IdentityError as exc:
        err.print(f"[red]--identity:[/] {exc}", highlight=False)
        raise typer.Exit(2) from exc


def _summary(counts: Counter[Outcome], problems: list[tuple[Path, str]]) -> None:
    console.print(", ".join(f"{outcome.value}: {counts[outcome]}" for outcome in Outcome))
    for path, reason in problems:
        console.print(f"  {path}: {reason}", markup=False, highlight=False, soft_wrap=True)


@config_app.command("check")
def config_check(config: Annotated[Path, typer.Argument(help="YAML config file.")]) -> None:
    """Validate a config file (and its sorting protocol, study cards); names the bad key."""
    from dicomgate.prearchive.context import load_rules

    try:
        load_rules(_settings(config))
    except ConfigError as exc:
        err.print(f"[red]configuration error:[/] {exc}")
        raise typer.Exit(2) from exc
    console.print(f"{config}: OK")


@db_app.command("upgrade")
def db_upgrade(config: ConfigOption = None) -> None:
    """Create or migrate the index schema to the newest revision."""
    from dicomgate.app import open_intake

    open_intake(_settings(config))
    console.print("index schema is up to date")


def _register_pacs() -> None:
    from dicomgate.cli_pacs import register

    register(app)


_register_pacs()

if __name__ == "__main__":
    app()
