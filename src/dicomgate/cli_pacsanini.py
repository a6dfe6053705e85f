"""``dicomgate find -f CONF``, ``move -f CONF`` and ``extract -f CONF`` on pacsanini files."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import Progress

from dicomgate.access.export_tree import export_tree
from dicomgate.access.extract import (
    Extractor,
    TagSpec,
    archive_datasets,
    csv_lines,
    folder_datasets,
)
from dicomgate.cli_pacs import (
    ConfigOption,
    PacsaniniFile,
    _errors,
    _service,
    _settings,
    console,
    err,
    report,
    run_retrieve,
)
from dicomgate.dicom.query import QueryLevel
from dicomgate.errors import ConfigError
from dicomgate.sources.pacs.batch import Target
from dicomgate.sources.pacs.pacsanini import (
    BASE_FIELDS,
    PacsaniniConfig,
    load_config,
    read_resources,
    write_resources,
)
from dicomgate.sources.pacs.service import PacsService


def _find_rows(
    service: PacsService, cfg: PacsaniniConfig
) -> tuple[list[str], list[dict[str, str]]]:
    if cfg.find is None:
        raise ConfigError("the configuration file has no find section")
    net = cfg.require_net()
    node = cfg.called_remote().model_copy(update={"windows": []})  # pacsanini finds any time
    keys: dict[str, Any] = {"StudyDate": cfg.find.date_range()}
    if cfg.find.modality:
        keys["Modality"] = cfg.find.modality
    fields = [f for f in cfg.find.search_fields if f not in BASE_FIELDS]
    level = cfg.find.query_level
    returns = [*BASE_FIELDS, *fields] if level is QueryLevel.STUDY else fields
    with Progress(console=console, transient=True) as progress:
        progress.add_task("finding", total=None)
        client = service.client(node, net.local_node.aetitle)
        rows = client.find(level, keys, [r for r in returns if r != "Modality"])
    for row in rows:
        row.setdefault("Modality", row.get("ModalitiesInStudy", ""))
        if not row["Modality"]:
            row["Modality"] = row.get("ModalitiesInStudy", "")
    return list(cfg.find.search_fields), rows


def find_file(file: PacsaniniFile, config: ConfigOption = None) -> None:
    """Pacsanini ``find``: C-FIND as the file says, results to ``storage.resources`` (CSV)."""
    with _errors():
        cfg = load_config(file)
        storage = cfg.require_storage()
        fields, rows = _find_rows(_service(_settings(config)), cfg)
        write_resources(Path(storage.resources), fields, rows)
    console.print(f"{len(rows)} result(s) written to {storage.resources}")


def move_file(
    file: PacsaniniFile,
    into: Annotated[str, typer.Option(help="dicomgate (archive) or directory (storage tree).")] = (
        "dicomgate"
    ),
    project: Annotated[str | None, typer.Option(help="Target project.")] = None,
    config: ConfigOption = None,
) -> None:
    """Pacsanini ``move``: retrieve the resources CSV inside the move window."""
    if into not in ("dicomgate", "directory"):
        err.print("[red]error:[/] --into is dicomgate or directory")
        raise typer.Exit(2)
    with _errors():
        cfg = load_config(file)
        net, storage = cfg.require_net(), cfg.require_storage()
        level = cfg.move.query_level if cfg.move else QueryLevel.STUDY
        uids = read_resources(Path(storage.resources), level)
        dest = net.dest_node or net.local_node
        overrides: dict[str, Any] = {"ae_title": dest.aetitle}
        if dest.port:
            overrides["dicom_port"] = dest.port
        service = _service(_settings(config, **overrides))
        targets = [Target(level, uid) for uid in uids]
        local_ae = net.local_node.aetitle
        ledger = run_retrieve(service, cfg.called_remote(), targets, local_ae, project)
        if into == "directory":
            if not storage.directory:
                raise ConfigError("storage.directory is not set")
            ok = [k for k, (o, _r) in ledger.outcomes.items() if o in ("stored", "already_stored")]
            count = export_tree(service.intake, ok, Path(storage.directory), storage.sort_by)
            console.print(f"{count} file(s) written under {storage.directory}")
    report(ledger)


def extract_file(
    file: PacsaniniFile,
    project: Annotated[str | None, typer.Option(help="Archive project to read.")] = None,
    folder: Annotated[Path | None, typer.Option(help="Folder of DICOM files to read.")] = None,
    query: Annotated[bool, typer.Option(help="Apply the tags to the find results.")] = False,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="CSV or Parquet file.")
    ] = None,
    fmt: Annotated[
        str | None,
        typer.Option("--format", help="csv or parquet (default: from the output's suffix)."),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Pacsanini ``parse``: the ``tags`` section to CSV or Parquet (project, folder or find)."""
    if sum((project is not None, folder is not None, query)) != 1:
        err.print("[red]error:[/] give exactly one of --project, --folder, --query")
        raise typer.Exit(2)
    chosen = _output_format(fmt, output)
    problems: list[tuple[Path, str]] = []
    with _errors():
        cfg = load_config(file)
        if not cfg.tags:
            raise ConfigError("the configuration file has no tags section")
        try:
            extractor = Extractor([TagSpec.model_validate(t) for t in cfg.tags], allow_import=True)
        except ValueError as exc:
            raise ConfigError(f"tags: {exc}") from exc
        settings = _settings(config)
        if folder is not None:
            sources: Any = folder_datasets(folder, problems)
        elif query:
            sources = _find_rows(_service(settings), cfg)[1]
        else:
            intake = _service(settings).intake
            sources = archive_datasets(intake.db, intake.blobs, str(project))
        if chosen == "parquet" and output is not None:
            # Imported here: pyarrow costs every other dicomgate command a quarter second.
            from dicomgate.access.extract_parquet import write_parquet

            rows = write_parquet(extractor, sources, output)
            console.print(f"{rows} row(s) written to {output}")
        else:
            _write_csv(extractor, sources, output)
    for path, reason in problems:
        err.print(f"  skipped {path}: {reason}", markup=False, highlight=False)


def _output_format(fmt: str | None, output: Path | None) -> str:
    """Return ``csv`` or ``parquet``; exit 2 on an unknown format or Parquet to stdout."""
    chosen = (fmt or ("parquet" if output and output.suffix == ".parquet" else "csv")).lower()
    if chosen not in ("csv", "parquet"):
        err.print(f"[red]error:[/] --format must be csv or parquet, not {fmt!r}")
        raise typer.Exit(2)
    if chosen == "parquet" and output is None:
        err.print("[red]error:[/] Parquet needs a file: give --output FILE.parquet")
        raise typer.Exit(2)
    return chosen


def _write_csv(extractor: Extractor, sources: Any, output: Path | None) -> None:
    handle = output.open("w", encoding="utf-8", newline="") if output else sys.stdout
    try:
        for chunk in csv_lines(extractor, sources):
            handle.write(chunk)
    finally:
        if output:
            handle.close()
