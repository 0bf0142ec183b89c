"""The regulator's web console: a bilingual page at `/` and its JSON under `/api/console/`.

Served by the worker's web server (so `dmm up` serves it too) from static files
shipped in this package; no build step. Every figure is read from the store the
worker already holds, through `sinks.clickhouse.console_queries`.
"""

from streams.console.routes import register_console

__all__ = ["register_console"]
