"""Alembic environment: runs on the connection that ``dicomgate.archive.migrate`` passes in."""

from alembic import context

from dicomgate.archive.models import Base
from dicomgate.jobs import models as _jobs_models  # noqa: F401  (job tables on Base)

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
