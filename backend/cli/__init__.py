"""One module per CLI command; see `backend/__main__.py`."""
