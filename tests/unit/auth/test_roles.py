import pytest

from dicomgate.auth.roles import OPEN_CALLER, Caller, Permission, Role
from dicomgate.errors import ForbiddenError, NotFoundError

ALICE = Caller("alice", roles={"LUNG": Role.MEMBER, "BRAIN": Role.COLLABORATOR})


def test_roles_grant_their_permissions_only() -> None:
    assert ALICE.allows(Permission.WRITE, "LUNG")
    assert ALICE.allows(Permission.READ, "BRAIN")
    assert not ALICE.allows(Permission.WRITE, "BRAIN")
    assert not ALICE.allows(Permission.MANAGE, "LUNG")
    assert not ALICE.allows(Permission.READ, "HEART")
    assert not ALICE.allows(Permission.ADMIN)


def test_unreadable_project_is_404_readable_but_not_writable_is_403() -> None:
    with pytest.raises(NotFoundError):
        ALICE.require(Permission.WRITE, "HEART")
    with pytest.raises(ForbiddenError):
        ALICE.require(Permission.WRITE, "BRAIN")
    ALICE.require(Permission.WRITE, "LUNG")


def test_reidentify_is_never_implied() -> None:
    owner = Caller("o", roles={"LUNG": Role.OWNER})
    admin = Caller("root", is_admin=True)
    assert not owner.allows(Permission.REIDENTIFY, "LUNG")
    assert not admin.allows(Permission.REIDENTIFY)
    assert not OPEN_CALLER.allows(Permission.REIDENTIFY)
    assert Caller("r", can_reidentify=True).allows(Permission.REIDENTIFY)


def test_token_scope_narrows_the_user() -> None:
    scoped = Caller(
        "alice",
        roles=ALICE.roles,
        scope_projects=frozenset({"LUNG"}),
        scope_permissions=frozenset({Permission.READ}),
    )
    assert scoped.visible_projects() == {"LUNG"}
    assert scoped.allows(Permission.READ, "LUNG")
    assert not scoped.allows(Permission.WRITE, "LUNG")
    assert not scoped.allows(Permission.READ, "BRAIN")
    admin_scoped = Caller("root", is_admin=True, scope_projects=frozenset({"LUNG"}))
    assert admin_scoped.visible_projects() == {"LUNG"}
    assert not admin_scoped.allows(Permission.READ, "BRAIN")


def test_admin_sees_everything() -> None:
    assert Caller("root", is_admin=True).visible_projects() is None
    assert ALICE.visible_projects() == {"LUNG", "BRAIN"}
