"""``dicomgate jobs list|show|cancel|retry`` and the progress display shared with import."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Column, Table

from dicomgate.errors import ConflictError, DicomgateError
from dicomgate.jobs import JobOut, Jobs, JobStatus
from dicomgate.settings import Settings

jobs_app = typer.Typer(help="Jobs: list, follow, cancel, retry, run here.", no_args_is_help=True)
console = Console()
err = Console(stderr=True)
POLL_SECONDS = 0.25

ConfigOption = Annotated[Path | None, typer.Option("--config", "-c", help="YAML config file.")]


def _open(config: Path | None) -> Jobs:
    from dicomgate.app import open_intake, open_jobs
    from dicomgate.cli import _settings

    settings: Settings = _settings(config)
    return open_jobs(settings, open_intake(settings))


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[errors]} errors"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )


def follow(jobs: Jobs, job_id: str, done: threading.Event | None = None) -> JobOut:
    """Show a live progress bar until the job ends (or ``done`` is set); return the job."""
    with _progress() as progress:
        task = progress.add_task("queued", total=None, errors=0)
        while True:
            job = jobs.get(job_id, counts=False)
            progress.update(
                task,
                description=f"{job.kind} {job.status.value.lower()}",
                total=job.total or None,
                completed=job.done,
                errors=job.errors,
            )
            if job.final or (done is not None and done.is_set()):
                return jobs.get(job_id)
            if done is not None:
                done.wait(POLL_SECONDS)  # wakes as soon as an inline job ends
            else:
                time.sleep(POLL_SECONDS)


def run_with_progress(jobs: Jobs, job_id: str) -> JobOut:
    """Run a job inline in a worker thread while the main thread shows its progress."""
    failure: list[BaseException] = []
    finished = threading.Event()

    def work() -> None:
        try:
            jobs.run_inline(job_id)
        except BaseException as exc:  # handed to the main thread
            failure.append(exc)
        finally:
            finished.set()

    jobs.start()
    worker = threading.Thread(target=work, name=f"job-{job_id[:8]}", daemon=True)
    worker.start()
    try:
        job = follow(jobs, job_id, finished)
        worker.join()
    except KeyboardInterrupt:
        jobs.engine.begin_stop()  # the handler stops at its next item and hands the job back
        worker.join(timeout=30)
        err.print(f"interrupted; resume with: dicomgate jobs run {job_id}")
        raise typer.Exit(130) from None
    finally:
        jobs.stop()
    if failure:
        raise failure[0]
    return job


def print_job(job: JobOut) -> None:
    """Print one job's status, progress, counts and message."""
    console.print(f"[bold]{job.id}[/]  {job.kind}  {job.status.value}")
    console.print(f"  progress: {job.done}/{job.total}, errors: {job.errors}")
    if job.counts:
        console.print("  " + ", ".join(f"{k}: {v}" for k, v in sorted(job.counts.items())))
    console.print(f"  {job.message}", markup=False, highlight=False)
    if job.resume_at:
        console.print(f"  resumes at {job.resume_at.isoformat()}")


@jobs_app.command("list")
def list_jobs(
    status: Annotated[JobStatus | None, typer.Option(help="Only jobs in this status.")] = None,
    kind: Annotated[str | None, typer.Option(help="Only jobs of this kind.")] = None,
    owner: Annotated[str | None, typer.Option(help="Only jobs of this owner.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
    config: ConfigOption = None,
) -> None:
    """List jobs, newest first."""
    page = _open(config).list(status, kind, owner, limit, 0)
    table = Table("kind", "status", "progress", "errors", "created (UTC)", "message")
    table.columns.insert(0, Column("id", no_wrap=True, min_width=32))
    for job in page.jobs:
        table.add_row(
            job.id,
            job.kind,
            job.status.value,
            f"{job.done}/{job.total}",
            str(job.errors),
            job.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            job.message,
        )
    console.print(table)
    console.print(f"{len(page.jobs)} of {page.total} jobs")


@jobs_app.command("show")
def show(
    job_id: Annotated[str, typer.Argument(help="Job id.")],
    items: Annotated[bool, typer.Option("--items", help="List items that are not ok.")] = False,
    follow_: Annotated[bool, typer.Option("--follow", "-f", help="Live progress.")] = False,
    config: ConfigOption = None,
) -> None:
    """Show a job; with --follow, a live progress bar until it ends."""
    jobs = _open(config)
    try:
        job = follow(jobs, job_id) if follow_ else jobs.get(job_id)
    except DicomgateError as exc:
        err.print(f"[red]{exc}[/]")
        raise typer.Exit(1) from exc
    print_job(job)
    if items:
        for outcome in ("missing", "rejected", "conflicting", "failed", "skipped", "pending"):
            for item in jobs.items(job_id, outcome, limit=1000).items:
                line = f"  {outcome}: {item.key}: {item.reason}"
                console.print(line, markup=False, highlight=False, soft_wrap=True)


@jobs_app.command("run")
def run(job_id: Annotated[str, typer.Argument()], config: ConfigOption = None) -> None:
    """Run a pending, waiting or abandoned job here, with a progress bar.

    A job whose process died (e.g. a killed ``dicomgate import``) is taken over once its
    heartbeat is older than ``jobs.lease_seconds``; it resumes with the items left.
    """
    from dicomgate.app import open_intake, open_jobs
    from dicomgate.cli import _settings

    settings = _settings(config)
    jobs = open_jobs(settings, open_intake(settings), queue=False)
    try:
        job = jobs.get(job_id)
        if job.final:
            raise ConflictError(f"the job has already ended ({job.status.value}); retry it")
        job = run_with_progress(jobs, job_id)
    except DicomgateError as exc:
        err.print(f"[red]{exc}[/]")
        raise typer.Exit(1) from exc
    print_job(job)
    if job.status is not JobStatus.SUCCEEDED:
        raise typer.Exit(1)


def _command(job_id: str, config: Path | None, retry: bool) -> None:
    jobs = _open(config)
    try:
        job = jobs.retry(job_id) if retry else jobs.cancel(job_id)
    except DicomgateError as exc:
        err.print(f"[red]{exc}[/]")
        raise typer.Exit(1) from exc
    print_job(job)


@jobs_app.command("cancel")
def cancel(job_id: Annotated[str, typer.Argument()], config: ConfigOption = None) -> None:
    """Cancel a job (a running one stops at its next item)."""
    _command(job_id, config, retry=False)


@jobs_app.command("retry")
def retry(job_id: Annotated[str, typer.Argument()], config: ConfigOption = None) -> None:
    """Run an ended job again for its failed items only."""
    _command(job_id, config, retry=True)
