"""`dmm worker`: run the Faust worker in the foreground (production entry point)."""

from __future__ import annotations

import logging.config

from dmm.cli.app import app
from dmm.logs import logging_config
from settings import get_settings


@app.command()
def worker() -> None:
    """Consume dm.events, store to ClickHouse, raise alerts, serve /metrics until stopped."""
    from faust import Worker

    from streams.app import create_app

    settings = get_settings()
    config = logging_config(settings.log_json, settings.log_level)
    logging.config.dictConfig(config)
    faust_app = create_app(settings)
    Worker(
        faust_app, loglevel=settings.log_level, logging_config=config, quiet=True
    ).execute_from_commandline()
