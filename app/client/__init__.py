"""The client side: the Python client and the `nnforge` command line. The service never imports it."""
