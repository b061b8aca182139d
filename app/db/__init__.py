"""The database layer: tables, engine and sessions (SQLAlchemy 2.0, typed)."""
