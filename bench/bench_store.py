"""Benchmark: C-STORE ingest throughput of dicomgate versus Orthanc, driven by dcmtk storescu.

Usage: .venv/bin/python bench/bench_store.py [--small N] [--large N] [--runs K] [--nagle]

Generates N "large" (512x512, 16-bit) and N "small" (64x64, 8-bit) CT-like instances with a
realistic header, then for each case (small/large) x (1 or 4 associations) pushes the corpus
with ``storescu`` into a freshly started dicomgate and a freshly started Orthanc (new empty
data folder per run, so every push is new data), alternating the two. Prints instances/s,
MB/s and the dicomgate/Orthanc ratio (median over --runs).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from ct_corpus import fill_identifying_header

ROOT = Path(__file__).resolve().parents[1]
PYTHON = ROOT / ".venv" / "bin" / "python"
ORTHANC = "/usr/sbin/Orthanc"
PARTS = 4
STUDIES = 4
SERIES_PER_STUDY = 3


@dataclass(frozen=True)
class Case:
    name: str
    folder: Path
    count: int
    assocs: int
    nodelay: bool = True


@dataclass
class Server:
    name: str
    aet: str
    dicom_port: int
    proc: subprocess.Popen[bytes]
    workdir: Path


# --------------------------------------------------------------------------- corpus


def _header(ds: Dataset, study: str, series: str, index: int) -> None:
    fill_identifying_header(ds, study, f"ACC{study[-6:]}", f"PID{study[-5:]}")
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
    ds.FrameOfReferenceUID = generate_uid(entropy_srcs=[study])
    ds.StudyID, ds.SeriesNumber, ds.InstanceNumber = "S1", 2, index + 1
    ds.ImagePositionPatient = [-250.0, -250.0, -index * 1.0]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.SliceLocation = -index * 1.0
    ds.RescaleIntercept, ds.RescaleSlope, ds.WindowCenter, ds.WindowWidth = "-1024", "1", 40, 400


def make_instance(index: int, study: str, series: str, size: int, pixels: bytes) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    sop = generate_uid()
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = sop
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, sop
    _header(ds, study, series, index)
    bits = 16 if size == 512 else 8
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows = ds.Columns = size
    ds.PixelSpacing = [0.9765625, 0.9765625]
    ds.BitsAllocated, ds.BitsStored = bits, 12 if bits == 16 else 8
    ds.HighBit, ds.PixelRepresentation = ds.BitsStored - 1, 0
    ds.PixelData = pixels
    return ds


def generate(folder: Path, count: int, size: int) -> None:
    """Write ``count`` instances spread over PARTS sub-folders, STUDIES x SERIES_PER_STUDY."""
    rng = np.random.default_rng(size)
    dtype, top = (np.uint16, 4096) if size == 512 else (np.uint8, 256)
    pixels = [rng.integers(0, top, (size, size), dtype=dtype).tobytes() for _ in range(8)]
    series = [
        (study, generate_uid())
        for study in (generate_uid() for _ in range(STUDIES))
        for _ in range(SERIES_PER_STUDY)
    ]
    for part in range(PARTS):
        (folder / f"part{part}").mkdir(parents=True, exist_ok=True)
    for i in range(count):
        study, ser = series[i % len(series)]
        ds = make_instance(i, study, ser, size, pixels[i % len(pixels)])
        ds.save_as(folder / f"part{i % PARTS}" / f"i{i:06d}.dcm", enforce_file_format=True)


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*.dcm"))


# --------------------------------------------------------------------------- servers


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_prepared(index: Path, instances: int, timeout: float = 1800) -> float:
    """Wait until dicomgate's follower prepared every instance's metadata; return seconds.

    The follower prepares DICOM JSON in the background once intake is quiet; until then it
    shares the CPU (at a lower priority) with whatever is measured. ``index`` is dicomgate's
    SQLite index.
    """
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        with sqlite3.connect(index) as conn:
            (n,) = conn.execute("SELECT count(*) FROM dicomweb_instance_metadata").fetchone()
        if n >= instances:
            return time.perf_counter() - start
        time.sleep(0.2)
    raise RuntimeError("metadata preparation did not finish")


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"timed out waiting for {url}")


def start_dicomgate(base: Path) -> Server:
    work = Path(tempfile.mkdtemp(prefix="dg-", dir=base))
    http, dicom = free_port(), free_port()
    config = work / "config.yaml"
    config.write_text(
        f"data_dir: {work / 'data'}\nhttp_port: {http}\ndicom_port: {dicom}\n"
        "log_level: WARNING\nstable_after: 3600\n",
        encoding="utf-8",
    )
    cmd = [str(PYTHON), "-m", "dicomgate", "serve", "--config", str(config)]
    log = (work / "server.log").open("wb")
    proc = subprocess.Popen(cmd, cwd=work, stdout=log, stderr=subprocess.STDOUT)
    wait_http(f"http://127.0.0.1:{http}/api/health", proc)
    return Server("dicomgate", "DICOMGATE", dicom, proc, work)


def start_orthanc(base: Path) -> Server:
    work = Path(tempfile.mkdtemp(prefix="orthanc-", dir=base))
    http, dicom = free_port(), free_port()
    config = {
        "Name": "bench",
        "StorageDirectory": str(work / "storage"),
        "IndexDirectory": str(work / "index"),
        "DicomAet": "ORTHANC",
        "DicomPort": dicom,
        "HttpPort": http,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "DicomCheckCalledAet": False,
        "Plugins": [],
    }
    path = work / "orthanc.json"
    path.write_text(json.dumps(config), encoding="utf-8")
    log = (work / "server.log").open("wb")
    # TCP_NODELAY=1 reaches the DCMTK inside Orthanc too: without it Orthanc's responses wait
    # on storescu's delayed ACKs (about 22 instances/s here), which would flatter dicomgate.
    env = {**os.environ, "TCP_NODELAY": "1"}
    proc = subprocess.Popen(
        [ORTHANC, str(path)], cwd=work, stdout=log, stderr=subprocess.STDOUT, env=env
    )
    wait_http(f"http://127.0.0.1:{http}/system", proc)
    return Server("orthanc", "ORTHANC", dicom, proc, work)


def stop(server: Server) -> None:
    """Terminate by process id (then kill); its data stays until the benchmark ends.

    Deleting a run's thousands of files made the next run's file creations slow on ext4
    without a journal (the allocator skips inodes freed in the last minute, reading their
    inode blocks), so every run paid for the run before it, whichever system it was.
    """
    server.proc.send_signal(signal.SIGTERM)
    try:
        server.proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait()


# --------------------------------------------------------------------------- pushing


def storescu_cmd(server: Server, folder: Path) -> list[str]:
    port = str(server.dicom_port)
    return ["storescu", "-aec", server.aet, "+sd", "+r", "127.0.0.1", port, str(folder)]


def push(server: Server, case: Case) -> float:
    """Push the case's corpus; return wall seconds. Raises when any storescu fails."""
    env = dict(os.environ)
    if case.nodelay:
        env["TCP_NODELAY"] = "1"
    else:
        env.pop("TCP_NODELAY", None)
    folders = [case.folder] if case.assocs == 1 else sorted(case.folder.glob("part*"))
    start = time.perf_counter()
    procs = [
        subprocess.Popen(storescu_cmd(server, f), env=env, stderr=subprocess.PIPE) for f in folders
    ]
    errors = [p.communicate()[1] for p in procs]
    elapsed = time.perf_counter() - start
    for proc, err in zip(procs, errors, strict=True):
        if proc.returncode != 0 or b"E:" in err:
            raise RuntimeError(f"storescu -> {server.name} failed: {err.decode()[-2000:]}")
    return elapsed


def one_run(starter: Callable[[Path], Server], case: Case, base: Path) -> float:
    server = starter(base)
    try:
        settle_writes()
        return push(server, case)
    finally:
        stop(server)


def settle_writes() -> None:
    """Write out what earlier runs left unwritten, before the clock starts.

    Orthanc, ``storescp`` and ``getscu`` never sync what they write; the kernel writes it
    back up to 30 s later, in the middle of whichever run comes next, where it competed with
    that run's own writes and flushes (a large case leaves about 1 GB). Each run starts
    with nothing of another run's left to write.
    """
    os.sync()


# --------------------------------------------------------------------------- main


def build_cases(corpus: Path, args: argparse.Namespace) -> list[Case]:
    cases: list[Case] = []
    for kind, count in (("small", args.small), ("large", args.large)):
        if count == 0:  # --large 0: only the small cases
            continue
        for assocs in (1, PARTS):
            cases.append(Case(f"{kind} x{assocs}", corpus / kind, count, assocs))
    if args.nagle:
        n = min(200, args.small)
        cases.append(Case("small-nagle x1", corpus / "nagle", n, 1, nodelay=False))
    return cases


def make_corpus(corpus: Path, args: argparse.Namespace) -> None:
    t0 = time.perf_counter()
    generate(corpus / "small", args.small, 64)
    generate(corpus / "large", args.large, 512)
    if args.nagle:
        generate(corpus / "nagle", min(200, args.small), 64)
    print(f"corpus generated in {time.perf_counter() - t0:.1f}s", flush=True)


def run_case(case: Case, runs: int, base: Path) -> dict[str, float]:
    starters = {"dicomgate": start_dicomgate, "orthanc": start_orthanc}
    times: dict[str, list[float]] = {name: [] for name in starters}
    for run in range(runs):
        order = list(starters) if run % 2 == 0 else list(reversed(starters))
        for name in order:
            elapsed = one_run(starters[name], case, base)
            times[name].append(elapsed)
            print(f"  {case.name:15} {name:9} run {run + 1}: {elapsed:7.2f}s", flush=True)
    return {name: statistics.median(values) for name, values in times.items()}


def print_table(rows: list[tuple[Case, dict[str, float], int]]) -> None:
    print(f"\n{'case':15} {'system':10} {'n':>6} {'inst/s':>9} {'MB/s':>8} {'dg/orthanc':>11}")
    for case, medians, nbytes in rows:
        rate = {name: case.count / sec for name, sec in medians.items()}
        for name, sec in medians.items():
            ratio = f"{rate['dicomgate'] / rate['orthanc']:.2f}" if name == "dicomgate" else ""
            mbs = nbytes / sec / 1e6
            print(
                f"{case.name:15} {name:10} {case.count:6d} {rate[name]:9.1f} {mbs:8.1f} {ratio:>11}"
            )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--small", type=int, default=2000)
    parser.add_argument("--large", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--nagle", action="store_true", help="add a case without TCP_NODELAY")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-store-") as tmp:
        base = Path(tmp)
        make_corpus(base / "corpus", args)
        settle_writes()
        rows = []
        for case in build_cases(base / "corpus", args):
            medians = run_case(case, args.runs, base)
            rows.append((case, medians, folder_bytes(case.folder)))
        print_table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
