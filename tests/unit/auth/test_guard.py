"""The refusal rules of auth.guard and jobs.access: 404 for the unseen, 403 for read-only."""

from __future__ import annotations

import pytest

from dicomgate.auth.guard import require, require_any, require_import, require_one_of
from dicomgate.auth.roles import Caller, Permission, Role
from dicomgate.errors import ForbiddenError, NotFoundError
from dicomgate.jobs.access import can_see, require_writable
from dicomgate.jobs.models import Job

READER = Caller("rita", roles={"LUNG": Role.COLLABORATOR})
MEMBER = Caller("mia", roles={"LUNG": Role.MEMBER})
ADMIN = Caller("root", is_admin=True)
SCOPED = Caller(
    "tess",
    roles={"LUNG": Role.MEMBER, "BRAIN": Role.MEMBER},
    scope_projects=frozenset({"BRAIN"}),
)
READ_TOKEN = Caller(
    "mia", roles={"LUNG": Role.MEMBER}, scope_permissions=frozenset({Permission.READ})
)


def test_require_answers_unseen_projects_like_missing_objects() -> None:
    with pytest.raises(NotFoundError, match=r"^no staging session 7$"):
        require(MEMBER, "BRAIN", Permission.WRITE, "no staging session 7")
    with pytest.raises(NotFoundError, match=r"^no project BRAIN$"):
        require(MEMBER, "BRAIN", Permission.READ)
    with pytest.raises(NotFoundError):
        require(SCOPED, "LUNG", Permission.WRITE)
    with pytest.raises(NotFoundError):  # no project yet: site admins only
        require(MEMBER, None, Permission.WRITE, "no staging session 7")
    require(ADMIN, None, Permission.WRITE)


def test_require_forbids_what_the_caller_may_only_read() -> None:
    for caller in (READER, READ_TOKEN):
        with pytest.raises(ForbiddenError):
            require(caller, "LUNG", Permission.WRITE)
        require(caller, "LUNG", Permission.READ)
    require(MEMBER, "LUNG", Permission.WRITE)
    with pytest.raises(ForbiddenError):
        require(MEMBER, "LUNG", Permission.MANAGE)


def test_one_of_several_projects() -> None:
    require_one_of(MEMBER, ["QUARANTINE", "LUNG"], Permission.WRITE, "gone")
    with pytest.raises(ForbiddenError):
        require_one_of(READER, ["QUARANTINE", "LUNG"], Permission.WRITE, "gone")
    with pytest.raises(NotFoundError, match=r"^gone$"):
        require_one_of(READER, ["QUARANTINE", None], Permission.WRITE, "gone")


def test_imports_without_a_project_and_importers_anywhere() -> None:
    with pytest.raises(ForbiddenError):
        require_import(MEMBER, None, "no project")
    require_import(ADMIN, None, "no project")
    require_any(MEMBER, Permission.WRITE)
    with pytest.raises(ForbiddenError):
        require_any(READER, Permission.WRITE)
    with pytest.raises(ForbiddenError):
        require_any(READ_TOKEN, Permission.WRITE)


def _job(owner: str | None, **params: str) -> Job:
    return Job(id="0" * 32, kind="import_files", params=params, owner=owner, status="PENDING")


def test_jobs_are_seen_by_their_owner_and_their_projects() -> None:
    lung = _job("mia", project="LUNG")
    assert can_see(READER, lung) and can_see(MEMBER, lung) and can_see(ADMIN, lung)
    assert not can_see(Caller("bert", roles={"BRAIN": Role.MEMBER}), lung)
    assert not can_see(SCOPED, lung)
    unrouted = _job("mia")
    assert can_see(MEMBER, unrouted) and not can_see(READER, unrouted)
    shared = _job("root", source_project="LUNG", target_project="RESEARCH")
    assert can_see(READER, shared)


def test_jobs_are_changed_by_their_owner_or_a_writer() -> None:
    lung = _job("root", project="LUNG")
    require_writable(MEMBER, lung)
    with pytest.raises(ForbiddenError):
        require_writable(READER, lung)
    with pytest.raises(NotFoundError):
        require_writable(Caller("bert", roles={"BRAIN": Role.MEMBER}), lung)
    mine = _job("mia", project="LUNG")
    with pytest.raises(ForbiddenError):  # a read-only token does not carry ownership
        require_writable(READ_TOKEN, mine)
    require_writable(None, mine)  # the server itself
