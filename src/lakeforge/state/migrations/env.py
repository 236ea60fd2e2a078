"""Alembic environment: migrations run on the connection the state store passes in."""

from alembic import context

from lakeforge.state._schema import metadata
from lakeforge.state._store import VERSION_TABLE

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=True,
    version_table=VERSION_TABLE,
)
with context.begin_transaction():
    context.run_migrations()
