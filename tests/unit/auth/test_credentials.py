import datetime as dt

import pytest

from dicomgate.archive.index import ensure_project
from dicomgate.archive.models import utcnow
from dicomgate.auth import credentials, users
from dicomgate.auth.roles import Permission, Role
from dicomgate.db import Database
from dicomgate.errors import ConflictError, InvalidInputError, NotFoundError

PASSWORD = "correct horse battery staple"


@pytest.fixture()
def db(database: Database) -> Database:
    with database.unit_of_work() as session:
        ensure_project(session, "LUNG")
        ensure_project(session, "BRAIN")
        users.add_user(session, "alice", PASSWORD)
        users.grant(session, "alice", "LUNG", Role.MEMBER)
        users.grant(session, "alice", "BRAIN", Role.COLLABORATOR)
    return database


def test_password_check(db: Database) -> None:
    with db.reader() as session:
        assert users.authenticate(session, "alice", PASSWORD) is not None
        assert users.authenticate(session, "alice", PASSWORD + "x") is None
        assert users.authenticate(session, "nobody", PASSWORD) is None


def test_bad_users_are_refused(db: Database) -> None:
    with pytest.raises(ConflictError), db.unit_of_work() as session:
        users.add_user(session, "alice", PASSWORD)
    with pytest.raises(InvalidInputError), db.unit_of_work() as session:
        users.add_user(session, "bob", "short")
    with pytest.raises(InvalidInputError), db.unit_of_work() as session:
        users.add_user(session, "../bob", PASSWORD)
    with pytest.raises(NotFoundError), db.unit_of_work() as session:
        users.grant(session, "alice", "NOPE", Role.OWNER)


def test_token_acts_as_its_user_within_its_scope(db: Database) -> None:
    with db.unit_of_work() as session:
        secret = credentials.create_token(
            session, "alice", projects=["LUNG"], permissions=[Permission.READ]
        )
    assert secret.startswith("dg_")
    with db.reader() as session:
        caller = credentials.caller_from_token(session, secret)
    assert caller.name == "alice" and caller.visible_projects() == {"LUNG"}
    assert not caller.allows(Permission.WRITE, "LUNG")


def test_expired_revoked_and_unknown_tokens_are_refused(db: Database) -> None:
    soon = utcnow() + dt.timedelta(hours=1)
    with db.unit_of_work() as session:
        expiring = credentials.create_token(session, "alice", expires_at=soon)
        revoked = credentials.create_token(session, "alice")
        credentials.revoke_token(session, "alice", credentials.list_tokens(session, "alice")[-1].id)
    later = soon + dt.timedelta(seconds=1)
    with db.reader() as session:
        credentials.caller_from_token(session, expiring)
        with pytest.raises(NotFoundError, match="expired"):
            credentials.caller_from_token(session, expiring, now=later)
        with pytest.raises(NotFoundError, match="revoked"):
            credentials.caller_from_token(session, revoked)
        with pytest.raises(NotFoundError):
            credentials.caller_from_token(session, "dg_" + "x" * 43)
    with pytest.raises(InvalidInputError), db.unit_of_work() as session:
        credentials.create_token(session, "alice", expires_at=utcnow() - dt.timedelta(days=1))


def test_only_the_owner_revokes_a_token(db: Database) -> None:
    with db.unit_of_work() as session:
        users.add_user(session, "bob", PASSWORD)
        credentials.create_token(session, "alice")
        token_id = credentials.list_tokens(session, "alice")[0].id
    with pytest.raises(NotFoundError), db.unit_of_work() as session:
        credentials.revoke_token(session, "bob", token_id)


def test_removing_a_user_ends_their_tokens(db: Database) -> None:
    with db.unit_of_work() as session:
        secret = credentials.create_token(session, "alice")
        users.remove_user(session, "alice")
    with pytest.raises(NotFoundError), db.reader() as session:
        credentials.caller_from_token(session, secret)


def test_first_admin_is_created_once(database: Database) -> None:
    with database.unit_of_work() as session:
        generated = users.ensure_admin(session, None)
    assert generated and len(generated) >= 20
    with database.unit_of_work() as session:
        assert users.ensure_admin(session, None) is None
    with database.reader() as session:
        admin = users.authenticate(session, "admin", generated)
        assert admin is not None and admin.is_admin
