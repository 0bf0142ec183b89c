"""`dmm` CLI: each command lives in its own module, registered on import."""

# Command modules register themselves on `app` when imported.
from dmm.cli import (  # noqa: E402,F401
    alerts,  # noqa: E402,F401
    bench,
    eval,  # noqa: E402,F401
    replay,  # noqa: E402,F401
    rules,
    schema,
    simulate,  # noqa: E402,F401
    sql,
    store,
    up,
    validate,
    worker,
)
from dmm.cli.app import app


def main() -> None:
    app()
