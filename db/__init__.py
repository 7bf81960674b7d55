"""The database: typed SQLAlchemy models, engine/session handling, migrations and queries."""
