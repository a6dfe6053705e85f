"""The ``dicomgate`` command: parses, calls services, prints with rich."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import Progress

from dicomgate.auth.cli import audit_app, bind, users_app
from dicomgate.errors import ConfigError
from dicomgate.intake.origin import Origin, OriginKind
from dicomgate.intake.receive import Outcome, receive
from dicomgate.logs import configure as configure_logging
from dicomgate.settings import Settings, load_settings

app = typer.Typer(help="dicomgate: research DICOM intake and archive.", no_args_is_help=True)
config_app = typer.Typer(help="Configuration.")
db_app = typer.Typer(help="The index database.")
app.add_typer(config_app, name="config")
app.add_typer(db_app, name="db")
app.add_typer(users_app, name="users")
app.add_typer(audit_app, name="audit")
console = Console()
err = Console(stderr=True)

ConfigOption = Annotated[
    Path | None, typer.Option("--config", "-c", help="YAML config file.", exists=False)
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

    from dicomgate.app import Service, create_app, open_auth, open_intake
    from dicomgate.auth.http import check_exposure
    from dicomgate.auth.tls import check_https

    settings = _settings(config)
    try:
        check_exposure(settings.auth.enabled, [settings.http_host, settings.dicom_host])
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
        ssl_certfile=certfile,
        ssl_keyfile=keyfile,
    )


def _files(paths: list[Path]) -> list[Path]:
    found: list[Path] = []
    for path in paths:
        if path.is_symlink():
            continue
        if path.is_dir():
            found.extend(p for p in sorted(path.rglob("*")) if p.is_file() and not p.is_symlink())
        elif path.is_file():
            found.append(path)
        else:
            err.print(f"[yellow]skipped (not a file or folder):[/] {path}")
    return found


@app.command("import")
def import_(
    paths: Annotated[list[Path], typer.Argument(help="Files and folders (recursive).")],
    config: ConfigOption = None,
) -> None:
    """Import files through the same intake as every other source."""
    from dicomgate.app import open_intake

    intake = open_intake(_settings(config))
    counts: Counter[Outcome] = Counter()
    problems: list[tuple[Path, str]] = []
    files = _files(paths)
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("importing", total=len(files))
        for path in files:
            origin = Origin(OriginKind.IMPORT, import_path=str(path))
            result = receive(intake, path.read_bytes(), origin)
            counts[result.outcome] += 1
            if not result.ok:
                problems.append((path, result.reason))
            progress.advance(task)
    _summary(counts, problems)
    if problems:
        raise typer.Exit(1)


def _summary(counts: Counter[Outcome], problems: list[tuple[Path, str]]) -> None:
    console.print(", ".join(f"{outcome.value}: {counts[outcome]}" for outcome in Outcome))
    for path, reason in problems:
        console.print(f"  {path}: {reason}", markup=False, highlight=False, soft_wrap=True)


@config_app.command("check")
def config_check(config: Annotated[Path, typer.Argument(help="YAML config file.")]) -> None:
    """Validate a config file; exits non-zero naming the bad key."""
    _settings(config)
    console.print(f"{config}: OK")


@db_app.command("upgrade")
def db_upgrade(config: ConfigOption = None) -> None:
    """Create or migrate the index schema to the newest revision."""
    from dicomgate.app import open_intake

    open_intake(_settings(config))
    console.print("index schema is up to date")


if __name__ == "__main__":
    app()
