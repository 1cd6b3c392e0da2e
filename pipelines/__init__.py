"""What we do to data: the pipeline steps as plain functions (ingest, train, validate, publish)."""
