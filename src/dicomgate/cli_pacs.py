"""CLI commands of the PACS source: ``dicomgate pacs ...``, ``find/move/extract -f CONF``.

``find``/``move``/``extract`` with ``-f`` take a pacsanini configuration file as it is.
Retrieves run in this process (with our own receiver for C-MOVE) and wait for the node's
window; for a durable, resumable retrieve submit a job (``POST /api/pacs/{node}/retrieve``).
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from dicomgate.dicom.nodes import RemoteNode, RetrieveMethod
from dicomgate.dicom.query import QueryLevel, level_of
from dicomgate.errors import DicomgateError
from dicomgate.intake.origin import Origin, OriginKind
from dicomgate.settings import Settings, load_settings
from dicomgate.sources.pacs.batch import Target, retrieve_targets
from dicomgate.sources.pacs.ledger import MemoryLedger
from dicomgate.sources.pacs.service import PacsService

pacs_app = typer.Typer(help="Remote DICOM nodes: echo, find, retrieve.", no_args_is_help=True)
console = Console()
err = Console(stderr=True)

ConfigOption = Annotated[Path | None, typer.Option("--config", "-c", help="dicomgate YAML config.")]
PacsaniniFile = Annotated[Path, typer.Option("--file", "-f", help="pacsanini config (YAML/JSON).")]


@contextmanager
def _errors() -> Iterator[None]:
    try:
        yield
    except DicomgateError as exc:
        err.print(f"[red]error:[/] {exc}", markup=True, highlight=False)
        raise typer.Exit(2) from exc


def _settings(config: Path | None, **overrides: Any) -> Settings:
    with _errors():
        return load_settings(config, **overrides)


def _service(settings: Settings) -> PacsService:
    from dicomgate.app import open_intake

    return PacsService(settings, open_intake(settings))


def _keys(pairs: list[str]) -> dict[str, Any]:
    keys: dict[str, Any] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            err.print(f"[red]error:[/] key {pair!r} is not KEYWORD=VALUE")
            raise typer.Exit(2)
        keys[name.strip()] = value.split(",") if name.strip().endswith("UID") else value
    return keys


def print_rows(rows: list[dict[str, str]], fmt: str, output: Path | None) -> None:
    """Print find results as a table, JSON or CSV (to ``output`` when given)."""
    columns = list(rows[0]) if rows else []
    if fmt == "table" and output is None:
        table = Table(*columns)
        for row in rows:
            table.add_row(*(row[c] for c in columns))
        console.print(table)
        console.print(f"{len(rows)} result(s)")
        return
    handle = output.open("w", newline="", encoding="utf-8") if output else sys.stdout
    try:
        if fmt == "json":
            json.dump(rows, handle, indent=2)
            handle.write("\n")
        else:
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)
    finally:
        if output:
            handle.close()


@pacs_app.command("nodes")
def nodes_cmd(config: ConfigOption = None, probe: bool = True) -> None:
    """List the configured nodes, their window and (with --probe) reachability."""
    service = _service(_settings(config))
    rows = [service.status(node.name, probe) for node in service.settings.pacs.nodes]
    print_rows([{k: str(v) for k, v in row.items()} for row in rows], "table", None)


@pacs_app.command("echo")
def echo_cmd(node: str, config: ConfigOption = None) -> None:
    """Send C-ECHO to NODE."""
    with _errors():
        status = _service(_settings(config)).echo(node)
    console.print(f"{node}: C-ECHO status 0x{status:04X}")
    if status != 0:
        raise typer.Exit(1)


@pacs_app.command("find")
def find_cmd(
    node: str,
    level: Annotated[str, typer.Option(help="PATIENT, STUDY, SERIES or IMAGE.")] = "STUDY",
    key: Annotated[list[str], typer.Option("--key", "-k", help="KEYWORD=VALUE")] = [],  # noqa: B006
    ret: Annotated[list[str], typer.Option("--return", "-r", help="More return keys.")] = [],  # noqa: B006
    fmt: Annotated[str, typer.Option("--format", help="table, json or csv.")] = "table",
    output: Annotated[Path | None, typer.Option("--output", "-o")] = None,
    config: ConfigOption = None,
) -> None:
    """C-FIND on NODE at any level with any matching keys (wildcards, ranges, UID lists)."""
    with _errors():
        rows = _service(_settings(config)).find(node, level_of(level), _keys(key), ret)
    print_rows(rows, fmt, output)


def run_retrieve(
    service: PacsService,
    node: RemoteNode,
    targets: list[Target],
    local_ae: str,
    project: str | None,
) -> MemoryLedger:
    """Retrieve ``targets`` in this process, waiting for windows, with a progress bar."""
    from dicomgate.sources.scp import Receiver

    origin = Origin(
        OriginKind.PACS, remote_ae=node.ae_title, remote_host=node.host, project=project
    )
    retriever = service.retriever(node, origin, local_ae)
    ledger = MemoryLedger()
    receiver = None
    if node.retrieve_method is RetrieveMethod.C_MOVE:
        # Worker processes receive too: the index tells them whose move a store belongs to.
        receiver = Receiver(service.settings, service.intake)
    try:
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("retrieving", total=len(targets))
            retrieve_targets(
                retriever, targets, ledger, wait=True, progress=lambda *_: progress.advance(task)
            )
    finally:
        if receiver:
            receiver.stop()
    return ledger


def report(ledger: MemoryLedger) -> None:
    """Print the outcome counts and the requests; exit 1 when something is missing."""
    counts = ledger.counts()
    console.print(", ".join(f"{k}: {v}" for k, v in sorted(counts.items())) or "nothing to do")
    failed = sum(1 for _, c in ledger.requests if not c.ok)
    console.print(f"{len(ledger.requests)} request(s), {failed} not fully successful")
    if any(outcome not in ("stored", "already_stored") for outcome, _ in ledger.outcomes.values()):
        raise typer.Exit(1)


@pacs_app.command("retrieve")
def retrieve_cmd(
    node: str,
    uids: Annotated[list[str], typer.Argument(help="Study Instance UIDs (or Patient IDs).")],
    level: Annotated[str, typer.Option(help="PATIENT or STUDY.")] = "STUDY",
    project: Annotated[str | None, typer.Option(help="Target project.")] = None,
    config: ConfigOption = None,
) -> None:
    """Retrieve studies (or patients) from NODE into dicomgate, in this process."""
    settings = _settings(config)
    with _errors():
        service = _service(settings)
        remote = service.node(node)
        targets = [Target(level_of(level), uid) for uid in uids]
        ledger = run_retrieve(service, remote, targets, settings.ae_title, project)
    report(ledger)


def register(app: typer.Typer) -> None:
    """Add the PACS commands to the main application."""
    from dicomgate import cli_pacsanini

    app.add_typer(pacs_app, name="pacs")
    app.command("find")(cli_pacsanini.find_file)
    app.command("move")(cli_pacsanini.move_file)
    app.command("extract")(cli_pacsanini.extract_file)


__all__ = ["PacsaniniFile", "QueryLevel", "pacs_app", "register"]
