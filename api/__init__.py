"""PipeTwin's HTTP server: a thin FastAPI layer of sign-in, typed parameters and routes over
the library functions of twin/, ingest/, analysis/ and tiles/ (``create_app`` in :mod:`api.app`)."""
