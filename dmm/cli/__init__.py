"""`dmm` CLI: each command lives in its own module, registered on import."""

from dmm.cli.app import app

# Command modules register themselves on `app` when imported.
from dmm.cli import bench, rules, schema, sql, up, worker  # noqa: E402,F401
from dmm.cli import replay  # noqa: E402,F401
from dmm.cli import simulate  # noqa: E402,F401
from dmm.cli import alerts  # noqa: E402,F401
from dmm.cli import eval  # noqa: E402,F401


def main() -> None:
    app()
