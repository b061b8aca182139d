"""nnforge's service side: the HTTP API and the command line."""
