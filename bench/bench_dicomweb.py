"""Benchmark: DICOMweb of dicomgate versus Orthanc + its DICOMweb plugin, same data, same run.

Usage: .venv/bin/python bench/bench_dicomweb.py [--studies N] [--per-study M] [--big K]
       [--stow N] [--repeat R] [--rounds N]

Both servers receive the same corpus by C-STORE (dcmtk storescu): N small studies of M
instances (64x64) with distinct Patient IDs and study dates spread over 2015-2024, plus one
"big" study of K 512x512 16-bit instances. Then, with raw HTTP (one keep-alive connection:
the searches with a minimal socket client, ``raw_http.py``, the rest with httpx), it measures
QIDO-RS latencies (by PatientID, by a one-year StudyDate range, all
studies), the big study's metadata, WADO-RS retrieve of the big study (MB/s), and STOW-RS of
fresh small instances (instances/s, one connection; batches of 1 and of 20 per request).
The searches run with both servers up, in --rounds rounds that alternate between them.
Prints medians and the dicomgate/Orthanc ratio against the targets of issue 7.
Quick by default (--studies 50); --studies 500 --per-study 20 is the issue's corpus size.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

import httpx
import numpy as np
from pydicom.uid import generate_uid

from bench_store import PYTHON, ROOT, free_port, make_instance, wait_http, wait_prepared
from raw_http import RawClient

sys.path.insert(0, str(ROOT))
from tests.orthanc import start_orthanc

EXPLICIT_ANY = 'multipart/related; type="application/dicom"; transfer-syntax=*'


@dataclass
class Target:
    name: str
    dicomweb: str
    aet: str
    dicom_port: int
    stop: Callable[[], None]
    index: Path | None = None  # dicomgate's SQLite index, to wait for prepared metadata


# --------------------------------------------------------------------------- corpus


@dataclass
class Corpus:
    folder: Path
    patient_ids: list[str]
    big_study: str
    big_bytes: int
    instances: int


def _save(ds: object, path: Path) -> None:
    ds.save_as(path, enforce_file_format=True)  # type: ignore[attr-defined]


def make_corpus(folder: Path, studies: int, per_study: int, big: int) -> Corpus:
    rng = np.random.default_rng(7)
    small = rng.integers(0, 256, (64, 64), dtype=np.uint8).tobytes()
    large = rng.integers(0, 4096, (512, 512), dtype=np.uint16).tobytes()
    patient_ids = []
    (folder / "small").mkdir(parents=True)
    for s in range(studies):
        study, series = generate_uid(), generate_uid()
        pid = f"PID{s:05d}"
        patient_ids.append(pid)
        date = f"{2015 + s % 10}{1 + s % 12:02d}{1 + s % 28:02d}"
        for i in range(per_study):
            ds = make_instance(i, study, series, 64, small)
            ds.PatientID, ds.StudyDate, ds.PatientName = pid, date, f"DOE^P{s:05d}"
            _save(ds, folder / "small" / f"s{s:05d}_{i:04d}.dcm")
    big_study, big_series = generate_uid(), generate_uid()
    (folder / "big").mkdir()
    for i in range(big):
        ds = make_instance(i, big_study, big_series, 512, large)
        ds.PatientID, ds.StudyDate = "PID-BIG", "20230101"
        _save(ds, folder / "big" / f"b{i:04d}.dcm")
    big_bytes = sum(p.stat().st_size for p in (folder / "big").iterdir())
    return Corpus(folder, patient_ids, big_study, big_bytes, studies * per_study + big)


def stow_parts(count: int, study_count: int = 10) -> list[bytes]:
    small = np.random.default_rng(9).integers(0, 256, (64, 64), dtype=np.uint8).tobytes()
    studies = [(generate_uid(), generate_uid()) for _ in range(study_count)]
    out = []
    for i in range(count):
        study, series = studies[i % study_count]
        ds = make_instance(i, study, series, 64, small)
        buf = BytesIO()
        _save(ds, buf)  # type: ignore[arg-type]
        out.append(buf.getvalue())
    return out


# --------------------------------------------------------------------------- servers


def start_dicomgate(work: Path) -> Target:
    http, dicom = free_port(), free_port()
    config = work / "config.yaml"
    config.write_text(
        f"data_dir: {work / 'data'}\nhttp_port: {http}\ndicom_port: {dicom}\n"
        "log_level: WARNING\nstable_after: 3600\nauth:\n  enabled: false\n",
        encoding="utf-8",
    )
    cmd = [str(PYTHON), "-m", "dicomgate", "serve", "--config", str(config)]
    log = (work / "server.log").open("wb")
    proc = subprocess.Popen(cmd, cwd=work, stdout=log, stderr=subprocess.STDOUT)
    wait_http(f"http://127.0.0.1:{http}/api/health", proc)

    def stop() -> None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    index = work / "data" / "index.sqlite3"
    return Target("dicomgate", f"http://127.0.0.1:{http}/dicomweb", "DICOMGATE", dicom, stop, index)


def start_orthanc_dicomweb(work: Path) -> Target:
    peer = start_orthanc(work, dicomweb=True)
    return Target("orthanc", peer.dicomweb_url, peer.ae_title, peer.dicom_port, peer.stop)


def load(target: Target, folder: Path) -> float:
    env = {**os.environ, "TCP_NODELAY": "1"}
    cmd = [
        "storescu",
        "-aec",
        target.aet,
        "+sd",
        "+r",
        "127.0.0.1",
        str(target.dicom_port),
        str(folder),
    ]
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, check=False)
    if done.returncode != 0 or b"E:" in done.stderr:
        raise RuntimeError(f"storescu -> {target.name} failed: {done.stderr.decode()[-2000:]}")
    return time.perf_counter() - start


# --------------------------------------------------------------------------- measurements


def timed(client: httpx.Client, url: str, repeat: int, **kwargs: object) -> tuple[float, int]:
    """Return the median milliseconds of ``repeat`` GETs and the last body size."""
    times, size = [], 0
    for _ in range(repeat):
        start = time.perf_counter()
        response = client.get(url, **kwargs)  # type: ignore[arg-type]
        response.raise_for_status()
        size = len(response.content)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), size


def retrieve_mb_s(base: str, url: str, repeat: int) -> float:
    """Return the median MB/s of ``repeat`` retrievals by curl (C client, body discarded)."""
    rates = []
    for _ in range(repeat):
        done = subprocess.run(
            [
                "curl",
                "-sS",
                "-f",
                "-o",
                "/dev/null",
                "-H",
                f"Accept: {EXPLICIT_ANY}",
                "-w",
                "%{size_download} %{time_total}",
                base + url,
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        size, seconds = done.stdout.split()
        rates.append(int(size) / float(seconds) / 1e6)
    return statistics.median(rates)


def stow_rate(client: httpx.Client, url: str, parts: list[bytes], batch: int) -> float:
    boundary = uuid.uuid4().hex
    kind = f'multipart/related; type="application/dicom"; boundary={boundary}'
    start = time.perf_counter()
    for first in range(0, len(parts), batch):
        body = (
            b"".join(
                f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + p + b"\r\n"
                for p in parts[first : first + batch]
            )
            + f"--{boundary}--\r\n".encode()
        )
        response = client.post(
            url, content=body, headers={"Content-Type": kind, "Accept": "application/dicom+json"}
        )
        if response.status_code != 200:
            raise RuntimeError(f"STOW-RS answered {response.status_code}: {response.text[:300]}")
    return len(parts) / (time.perf_counter() - start)


def search_round(client: RawClient, pids: list[str], repeat: int) -> dict[str, list[float]]:
    """Return the milliseconds of ``repeat`` requests of each QIDO search."""

    def ms(params: dict[str, str] | None = None) -> float:
        start = time.perf_counter()
        client.get("/studies", params=params)
        return (time.perf_counter() - start) * 1000

    return {
        "qido_patient_ms": [ms({"PatientID": pids[i % len(pids)]}) for i in range(repeat)],
        "qido_year_ms": [ms({"StudyDate": "20200101-20201231"}) for _ in range(repeat)],
        "qido_all_ms": [ms() for _ in range(repeat)],
    }


def measure_searches(
    targets: list[Target], corpus: Corpus, args: argparse.Namespace
) -> dict[str, dict[str, float]]:
    """Return the median search latencies, the servers taking turns round by round.

    Both servers are up and loaded; alternating rounds (ABBA...) lets a change of load on a
    shared machine hit both alike instead of one system's whole measurement.
    """
    times: dict[str, dict[str, list[float]]] = {t.name: {} for t in targets}
    clients = {t.name: RawClient(t.dicomweb) for t in targets}
    try:
        for client in clients.values():  # warm up both alike: code paths and page cache
            search_round(client, corpus.patient_ids[:5], 5)
        for n in range(args.rounds):
            for target in targets if n % 2 == 0 else targets[::-1]:
                round_times = search_round(clients[target.name], corpus.patient_ids, args.repeat)
                for key, values in round_times.items():
                    times[target.name].setdefault(key, []).extend(values)
        count = len(json.loads(clients[targets[0].name].get("/studies")))
        print(f"    all-studies search returns {count} studies")
    finally:
        for client in clients.values():
            client.close()
    return {name: {k: statistics.median(v) for k, v in t.items()} for name, t in times.items()}


def measure(target: Target, corpus: Corpus, args: argparse.Namespace) -> dict[str, float]:
    results: dict[str, float] = {}
    with httpx.Client(base_url=target.dicomweb, timeout=600) as client:
        meta = f"/studies/{corpus.big_study}/metadata"
        results["metadata_ms"], _ = timed(client, meta, args.repeat)
        url = f"/studies/{corpus.big_study}"
        results["retrieve_mb_s"] = retrieve_mb_s(target.dicomweb, url, max(3, args.repeat // 5))
        for batch in (1, 20):
            parts = stow_parts(args.stow)
            results[f"stow{batch}_per_s"] = stow_rate(client, "/studies", parts, batch)
    return results


# --------------------------------------------------------------------------- main

ROWS = [
    ("qido_patient_ms", "QIDO studies by PatientID (ms)", "<= 0.5x", lambda r: r <= 0.5),
    ("qido_year_ms", "QIDO studies, one-year StudyDate (ms)", "<= 0.5x", lambda r: r <= 0.5),
    ("qido_all_ms", "QIDO all studies (ms)", "<= 0.5x", lambda r: r <= 0.5),
    ("metadata_ms", "study metadata, big study (ms)", "<= 0.5x", lambda r: r <= 0.5),
    ("retrieve_mb_s", "WADO-RS retrieve big study (MB/s)", ">= 1x", lambda r: r >= 1),
    ("stow1_per_s", "STOW-RS 1 instance/request (inst/s)", ">= 2x", lambda r: r >= 2),
    ("stow20_per_s", "STOW-RS 20 instances/request (inst/s)", ">= 2x", lambda r: r >= 2),
]


def report(results: dict[str, dict[str, float]], corpus: Corpus) -> None:
    print(f"\ncorpus: {corpus.instances} instances; big study {corpus.big_bytes / 1e6:.0f} MB")
    print(f"{'measure':42} {'dicomgate':>10} {'orthanc':>10} {'ratio':>7}  target")
    for key, label, target, ok in ROWS:
        gate, orthanc = results["dicomgate"][key], results["orthanc"][key]
        ratio = gate / orthanc
        verdict = "met" if ok(ratio) else "NOT met"
        print(f"{label:42} {gate:10.1f} {orthanc:10.1f} {ratio:7.2f}  {target} ({verdict})")


def start_loaded(starter: Callable[[Path], Target], base: Path, corpus: Corpus) -> Target:
    """Start a server on an empty folder and load the corpus into it by C-STORE."""
    work = base / starter.__name__
    work.mkdir()
    target = starter(work)
    try:
        seconds = load(target, corpus.folder)
        print(f"  {target.name}: loaded by C-STORE in {seconds:.1f}s", flush=True)
        if target.index is not None:
            waited = wait_prepared(target.index, corpus.instances)
            print(f"  {target.name}: metadata prepared {waited:.1f}s after the load")
    except BaseException:
        target.stop()
        raise
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=50, help="small studies (500: issue size)")
    parser.add_argument("--per-study", type=int, default=20, help="instances per small study")
    parser.add_argument("--big", type=int, default=200, help="512x512 instances in the big study")
    parser.add_argument("--stow", type=int, default=400, help="instances per STOW-RS case")
    parser.add_argument("--repeat", type=int, default=20, help="requests per figure (per round)")
    parser.add_argument(
        "--rounds", type=int, default=4, help="search rounds of --repeat requests, alternating"
    )
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="bench-dicomweb-"))
    try:
        start = time.perf_counter()
        corpus = make_corpus(base / "corpus", args.studies, args.per_study, args.big)
        print(f"corpus of {corpus.instances} instances in {time.perf_counter() - start:.1f}s")
        targets: list[Target] = []
        try:
            for starter in (start_dicomgate, start_orthanc_dicomweb):
                targets.append(start_loaded(starter, base, corpus))
            results = measure_searches(targets, corpus, args)
            for target in targets:
                results[target.name].update(measure(target, corpus, args))
                print(f"  {target.name}: {results[target.name]}", flush=True)
        finally:
            for target in targets:
                target.stop()
        report(results, corpus)
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
