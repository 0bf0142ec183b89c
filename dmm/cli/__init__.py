"""`dmm` CLI: each command lives in its own module, registered on import."""

# Command modules register themselves on `app` when imported.
from dmm.cli import (  # noqa: F401
    alerts,
    bench,
    eval,
    replay,
    rules,
    schema,
    simulate,
    sql,
    store,
    up,
    validate,
    worker,
)
from dmm.cli.app import app


def main() -> None:
    app()
