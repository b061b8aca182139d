"""Built-in architectures, one module per `arch` of the `ModelSpec` union, named after it; the registry
imports each (`models.registry`), and importing one registers it."""
