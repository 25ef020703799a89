"""Alembic's environment: run by ``store.migrate`` on the connection it opened, never from an alembic.ini."""

from alembic import context

from monitor.store.schema import metadata

context.configure(connection=context.config.attributes["connection"], target_metadata=metadata,
                  transactional_ddl=True)
with context.begin_transaction():
    context.run_migrations()
