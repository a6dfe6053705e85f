"""Benchmark: folder import through the watched folder and through ``dicomgate import``.

Usage: .venv/bin/python bench/bench_sources.py [--small N] [--large N]

Generates the benchmark corpus (bench_store's CT-like instances, headers from ct_corpus.py),
then, in the same run and on the same files:

- reads every file's header with pydicom (``dcmread(stop_before_pixels=True)``): the reference;
- imports the corpus with ``dicomgate import FOLDER`` into a fresh data folder (one job);
- the same with ``--remove-imported`` on a synced copy (the archive takes the files);
- drops a copy into the watched folder of a fresh ``dicomgate serve`` and waits for its job.

Prints instances/s of each beside the header-read rate, and their ratio (target >= 0.5). For
the two imports the rate is taken over the job's own run (``started_at`` to ``finished_at``)
and, in brackets, over the wall time a user waits (process start-up and, for the watched
folder, the stability wait included).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from pydicom import dcmread

from bench_store import PYTHON, free_port, generate, wait_http
from dicomgate.app import open_intake, open_jobs
from dicomgate.settings import load_settings

STABLE_FOR = 0.5


def header_rate(files: list[Path]) -> float:
    start = time.perf_counter()
    for path in files:
        dcmread(path, stop_before_pixels=True)
    return len(files) / (time.perf_counter() - start)


def _job_seconds(job: dict[str, object]) -> float:
    started = dt.datetime.fromisoformat(str(job["started_at"]))
    finished = dt.datetime.fromisoformat(str(job["finished_at"]))
    return (finished - started).total_seconds()


def _config(work: Path, extra: str = "") -> Path:
    config = work / "config.yaml"
    config.write_text(
        f"data_dir: {work / 'data'}\nhttp_port: {free_port()}\ndicom_port: {free_port()}\n"
        f"log_level: WARNING\nstable_after: 3600\nprojects: [{{id: BENCH}}]\n"
        # The bench polls the jobs API without credentials; auth is not what is measured.
        f"auth: {{enabled: false}}\n{extra}",
        encoding="utf-8",
    )
    return config


def run_cli_import(corpus: Path, work: Path, remove: bool = False) -> tuple[float, float]:
    """Return (job seconds, wall seconds) of ``dicomgate import corpus``.

    With ``remove``, of ``dicomgate import --remove-imported`` on a synced copy of the corpus.
    """
    config = _config(work)
    if remove:
        corpus = _synced_copy(corpus, work / "staging" / "corpus")
    cmd = [str(PYTHON), "-m", "dicomgate", "import", str(corpus), "--config", str(config)]
    cmd += ["--remove-imported"] if remove else []
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"dicomgate import failed: {done.stdout[-2000:]} {done.stderr[-2000:]}")
    return _cli_job_seconds(config), wall


def _cli_job_seconds(config: Path) -> float:
    settings = load_settings(config)
    jobs = open_jobs(settings, open_intake(settings), queue=False)
    [job] = jobs.list().jobs
    if job.status.value != "SUCCEEDED" or job.started_at is None or job.finished_at is None:
        raise RuntimeError(f"dicomgate import ended {job.status}: {job.message}")
    return (job.finished_at - job.started_at).total_seconds()


def run_watched(corpus: Path, work: Path, count: int) -> tuple[float, float]:
    """Return (job seconds, wall seconds from the drop to the job's end) of a watched import."""
    watch = work / "watch"
    extra = (
        f"sources: {{stable_for: {STABLE_FOR}, poll_interval: 0.1, "
        f"watch: [{{path: {watch}, project: BENCH, after_import: remove}}]}}\n"
    )
    config = _config(work, extra)
    port = int(config.read_text().split("http_port: ")[1].split()[0])
    cmd = [str(PYTHON), "-m", "dicomgate", "serve", "--config", str(config)]
    log = (work / "server.log").open("wb")
    proc = subprocess.Popen(cmd, cwd=work, stdout=log, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/api/health", proc)
        drop = _synced_copy(corpus, work / "staging" / "corpus")
        start = time.perf_counter()
        drop.rename(watch / "corpus")
        job = _wait_watched(base, proc)
        wall = time.perf_counter() - start
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    if job["status"] != "SUCCEEDED" or job["done"] != count:
        raise RuntimeError(f"watched import ended {job['status']}: {job['message']}")
    return _job_seconds(job), wall


def _synced_copy(corpus: Path, target: Path) -> Path:
    """Copy the corpus to ``target`` and write it to disk, as a finished drop would be."""
    shutil.copytree(corpus, target)
    os.sync()  # the copy's dirty pages are not the import's to write (its syncfs would)
    return target


def _wait_watched(base: str, proc: subprocess.Popen[bytes]) -> dict[str, object]:
    while proc.poll() is None:
        with urllib.request.urlopen(f"{base}/api/jobs?kind=watched_folder", timeout=10) as resp:
            jobs = json.load(resp)["jobs"]
        if jobs and jobs[0]["finished_at"]:
            return dict(jobs[0])
        time.sleep(0.05)
    raise RuntimeError("dicomgate serve exited during the benchmark")


def bench(name: str, corpus: Path, tmp: Path) -> None:
    files = sorted(corpus.rglob("*.dcm"))
    count = len(files)
    header_rate(files[: min(50, count)])  # warm the page cache and the imports
    reference = header_rate(files)
    cli_job, cli_wall = run_cli_import(corpus, Path(tempfile.mkdtemp(dir=tmp)))
    taken = run_cli_import(corpus, Path(tempfile.mkdtemp(dir=tmp)), remove=True)
    watch_job, watch_wall = run_watched(corpus, Path(tempfile.mkdtemp(dir=tmp)), count)
    print(f"\n{name}: {count} instances")
    print(f"  {'pydicom header read':24} {reference:9.1f} inst/s   (reference)")
    for label, job_s, wall_s in (
        ("dicomgate import", cli_job, cli_wall),
        ("  --remove-imported", *taken),
        ("watched folder", watch_job, watch_wall),
    ):
        rate, wall_rate = count / job_s, count / wall_s
        print(
            f"  {label:24} {rate:9.1f} inst/s   ratio {rate / reference:5.3f} (target >= 0.5)"
            f"   [wall {wall_rate:7.1f} inst/s, ratio {wall_rate / reference:5.3f}]"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=1000, help="64x64 8-bit instances")
    parser.add_argument("--large", type=int, default=300, help="512x512 16-bit instances")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-import-") as name:
        tmp = Path(name)
        for label, count, size in (("small", args.small, 64), ("large", args.large, 512)):
            if count:
                generate(tmp / label, count, size)
                bench(f"{label} ({size}x{size})", tmp / label, tmp)
    return 0


if __name__ == "__main__":
    sys.exit(main())
