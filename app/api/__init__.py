"""HTTP routes, one module per resource under routes/."""
