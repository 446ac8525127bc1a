"""Running experiments: the typed config schema, :func:`solve` (the Python API), the CLI entry that
wraps it, the catalogue listing and thread shares.  Importing it registers the schema with Hydra."""
from kanpde.experiment.schema import register

register()
