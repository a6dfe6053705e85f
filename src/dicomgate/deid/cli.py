"""``dicomgate deid``: de-identify a folder, verify files, re-identify, load a study's mapping.

``dicomgate deid IN OUT --profile FILE`` runs :func:`deid_folder` (the ``run`` subcommand is
implied: a first argument that is not a subcommand is taken as IN); ``dicomgate deid verify
PATH --profile FILE`` lists every attribute that violates the profile; ``dicomgate deid
mapping PROJECT CSV`` adds a Patient ID -> pseudonym mapping to the vault. Exit codes: 0 clean,
1 something was quarantined, failed or violates the profile, 2 bad arguments or config.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from typer.core import TyperGroup

from dicomgate.deid.config import read_profile_file
from dicomgate.deid.offline import deid_folder, keyed_provider, verify_path
from dicomgate.deid.profile import Profile

SECRET_ENV = "DICOMGATE_DEID_SECRET"
console = Console()
err = Console(stderr=True)


class _RunByDefault(TyperGroup):
    """A group whose first argument, when it names no subcommand, goes to ``run``."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:  # typer vendors click
        if args and not args[0].startswith("-") and args[0] not in self.commands:
            args = ["run", *args]
        return super().parse_args(ctx, args)


deid_app = typer.Typer(
    cls=_RunByDefault,
    help="De-identify offline (dicomgate deid IN OUT --profile FILE), verify, re-identify.",
    no_args_is_help=True,
)
ProfileOpt = Annotated[
    Path, typer.Option("--profile", "-p", help="De-identification profile (YAML).")
]


def _profile(path: Path) -> Profile:
    try:
        return read_profile_file(path)
    except ValueError as exc:
        err.print(f"profile error: {exc}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(2) from exc


def _secret(secret_file: Path | None) -> bytes:
    if secret_file is not None:
        try:
            secret = secret_file.read_bytes().strip()
        except OSError as exc:
            err.print(f"cannot read --secret-file: {exc.strerror}")
            raise typer.Exit(2) from exc
    else:
        secret = os.environ.get(SECRET_ENV, "").encode()
    if not secret:
        err.print(f"no --secret-file or {SECRET_ENV}: a random secret is used for this run")
        return secrets.token_bytes(32)
    if len(secret) < 16:
        err.print("the de-identification secret needs at least 16 bytes")
        raise typer.Exit(2)
    return secret


@deid_app.command("run")
def deid_run(
    in_dir: Annotated[Path, typer.Argument(help="Input file or folder (recursive).")],
    out_dir: Annotated[Path, typer.Argument(help="Output folder (created).")],
    profile: ProfileOpt,
    secret_file: Annotated[
        Path | None,
        typer.Option(help=f"Project secret keying UIDs and pseudonyms (else ${SECRET_ENV})."),
    ] = None,
    prefix: Annotated[str, typer.Option(help="Pseudonym prefix.")] = "SUBJ-",
) -> None:
    """De-identify every DICOM file under IN into OUT (files named 000001.dcm, ...)."""
    if not in_dir.exists():
        err.print(f"no such file or folder: {in_dir}", markup=False, highlight=False)
        raise typer.Exit(2)
    chosen = _profile(profile)
    summary = deid_folder(in_dir, out_dir, chosen, keyed_provider(_secret(secret_file), prefix))
    console.print(
        f"processed: {summary.processed}, written: {summary.written}, "
        f"quarantined: {len(summary.quarantined)}, failed: {len(summary.failed)}"
    )
    for label, items in (("quarantined", summary.quarantined), ("failed", summary.failed)):
        for path, reason in items:
            console.print(f"  {label} {path}: {reason}", markup=False, highlight=False)
    if summary.quarantined or summary.failed:
        raise typer.Exit(1)


@deid_app.command("verify")
def deid_verify(
    path: Annotated[Path, typer.Argument(help="A DICOM file or a folder of them.")],
    profile: ProfileOpt,
) -> None:
    """List every attribute that violates the profile; exit 1 when there is any."""
    if not path.exists():
        err.print(f"no such file or folder: {path}", markup=False, highlight=False)
        raise typer.Exit(2)
    violations = verify_path(path, _profile(profile))
    if not violations:
        console.print(f"{path}: no violation of profile {profile.name}")
        return
    table = Table("file", "attribute", "tag", "rule")
    for v in violations:
        table.add_row(v.file, v.path, v.tag, v.rule)
    console.print(table)
    console.print(f"{len(violations)} violation(s)")
    raise typer.Exit(1)


@deid_app.command("reidentify")
def deid_reidentify(
    project: Annotated[str, typer.Argument(help="The project of the pseudonym.")],
    pseudonym: Annotated[str, typer.Argument(help="The subject's pseudonym.")],
    actor: Annotated[str, typer.Option("--actor", help="Who asks (deid.reidentify_actors).")],
    purpose: Annotated[str, typer.Option("--purpose", help="Why (recorded).")],
    config: Annotated[Path | None, typer.Option("--config", "-c", help="YAML config.")] = None,
) -> None:
    """Print the identity behind a pseudonym; refused unless --actor is allowed. Recorded."""
    from dicomgate.deid.config import open_vault
    from dicomgate.deid.errors import DeidError
    from dicomgate.deid.reidentify import allow_listed, reidentify
    from dicomgate.errors import ConfigError, PermissionDeniedError
    from dicomgate.settings import load_settings

    try:
        settings = load_settings(config)
        check = allow_listed(settings.deid.reidentify_actors)
        with open_vault(settings.deid, settings.data_dir) as vault:
            identity = reidentify(vault, check, actor, project, pseudonym, purpose)
    except PermissionDeniedError as exc:
        err.print(f"refused (recorded): {exc}", markup=False, highlight=False)
        raise typer.Exit(1) from exc
    except (ConfigError, DeidError) as exc:
        err.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(2) from exc
    for field, value in identity.to_dict().items():
        console.print(f"{field}: {value}", markup=False, highlight=False)


@deid_app.command("mapping")
def deid_mapping(
    project: Annotated[str, typer.Argument(help="A project with the 'mapping' scheme.")],
    csv_file: Annotated[Path, typer.Argument(help="CSV with columns original,pseudonym.")],
    config: Annotated[Path | None, typer.Option("--config", "-c", help="YAML config.")] = None,
) -> None:
    """Add a study's Patient ID -> pseudonym mapping to the vault (entries never change)."""
    from dicomgate.deid.errors import DeidError
    from dicomgate.deid.mapping import upload_mapping
    from dicomgate.deid.pseudonyms import mapping_from_csv
    from dicomgate.errors import ConfigError
    from dicomgate.settings import load_settings

    try:
        settings = load_settings(config)
        text = csv_file.read_text(encoding="utf-8-sig")
        deid = next((p.deid for p in settings.projects if p.id == project), None)
        done = upload_mapping(
            settings.deid, settings.data_dir, deid, project, mapping_from_csv(text)
        )
    except (OSError, UnicodeDecodeError) as exc:
        err.print(f"cannot read {csv_file}: {exc}", markup=False, highlight=False)
        raise typer.Exit(2) from exc
    except (ConfigError, DeidError) as exc:
        err.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(1) from exc
    console.print(f"{done.project}: {done.added} new mapping entries, {done.total} in all")
