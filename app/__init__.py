"""nnforge's service side in wings: api/ (HTTP), core/ (infrastructure), db/ (tables, engine, job state)
and client/ (the Python client and the CLI, which the service never imports)."""
