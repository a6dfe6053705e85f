"""``dicomgate media ls PATH``, and the choice of job kind behind ``dicomgate import``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.tree import Tree

from dicomgate.jobs import Jobs
from dicomgate.sources.dicomdir import (
    MISSING,
    Media,
    MediaError,
    SeriesNode,
    disagreements,
    find_dicomdir,
    read_header,
    read_media,
    summary,
)

media_app = typer.Typer(help="CDs, DVDs and other DICOMDIR media.", no_args_is_help=True)
console = Console()
err = Console(stderr=True)


def submit_import(
    jobs: Jobs,
    paths: list[Path],
    study: str | None,
    series: str | None,
    workers: int = 4,
    *,
    identity: dict[str, str] | None = None,
    remove: bool = False,
) -> str:
    """Submit the import of ``paths``: through the DICOMDIR of a media folder, else as files.

    ``identity`` (an operator-confirmed identity) is carried by a files import only, and so
    is ``remove`` (each file deleted once imported: the job's ``cleanup``).
    """
    from dicomgate.sources.files import KIND
    from dicomgate.sources.handlers import MEDIA, media_params

    if len(paths) == 1 and paths[0].name.upper() == "DICOMDIR" and paths[0].is_file():
        paths = [paths[0].parent]  # the DICOMDIR file itself names its media
    media = len(paths) == 1 and paths[0].is_dir() and not paths[0].is_symlink()
    if media and find_dicomdir(paths[0]) is not None:
        if identity is not None:
            # The media job has no identity parameter: refuse rather than drop the check.
            err.print("[red]--identity is not supported for DICOMDIR media[/]")
            raise typer.Exit(2)
        if remove:
            err.print("[red]--remove-imported is not supported for DICOMDIR media[/]")
            raise typer.Exit(2)
        params = media_params(paths[0].resolve(), None, study, series, workers)
        return jobs.submit(MEDIA, params)
    if study or series:
        err.print("[red]--study and --series need one folder holding a DICOMDIR[/]")
        raise typer.Exit(2)
    files: dict[str, object] = {"paths": [str(p) for p in paths], "cleanup": remove}
    if identity is not None:
        files["identity"] = identity
    return jobs.submit(KIND, files)


def _series_label(series: SeriesNode) -> str:
    files = series.files
    missing = sum(f.problem == MISSING for f in files)
    refused = sum(f.problem.startswith("refused") for f in files)
    extra = "".join(
        f", {n} {what}" for n, what in ((missing, "missing"), (refused, "refused")) if n
    )
    return f"series {series.uid} {series.modality} #{series.number}: {len(files)} files{extra}"


def _tree(media: Media) -> Tree:
    tree = Tree(f"{media.root} ({len(media.files())} files listed)", highlight=False)
    for patient in media.patients:
        branch = tree.add(f"patient {patient.patient_id} {patient.name}".rstrip(), highlight=False)
        for study in patient.studies.values():
            count = sum(len(se.files) for se in study.series.values())
            label = f"study {study.uid} {study.date} {study.description}: {count} files"
            node = branch.add(label, highlight=False)
            for series in study.series.values():
                node.add(_series_label(series), highlight=False)
    return tree


def _verify(media: Media) -> list[str]:
    lines = []
    for listed in media.files():
        if listed.path is None:
            continue
        try:
            differ = disagreements(listed, read_header(listed.path))
        except MediaError as exc:
            lines.append(f"{listed.key}: {exc}")
            continue
        if differ:
            names = ", ".join(differ)
            lines.append(f"{listed.key}: the record disagrees with the header on {names}")
    return lines


@media_app.command("ls")
def media_ls(
    path: Annotated[Path, typer.Argument(help="The media root (the folder holding DICOMDIR).")],
    verify: Annotated[
        bool, typer.Option("--verify", help="Also read each file's header and compare.")
    ] = False,
) -> None:
    """Print the DICOMDIR tree (patients, studies, series, counts) and every problem."""
    try:
        media = read_media(path)
    except MediaError as exc:
        err.print(f"[red]{exc}[/]", highlight=False)
        raise typer.Exit(2) from exc
    console.print(_tree(media))
    problems = list(summary(media)) + (_verify(media) if verify else [])
    for line in problems:
        console.print(f"  {line}", markup=False, highlight=False, soft_wrap=True)
    if problems:
        raise typer.Exit(1)
