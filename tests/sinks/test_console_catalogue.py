"""The console's catalogue kept by the listings' version, on real embedded stores (each opened in turn: one per
process at a time)."""

from __future__ import annotations

from pathlib import Path

import pytest

from settings import SqlSettings
from sinks.clickhouse import console_queries as q
from sinks.clickhouse.store import ChdbStore

pytestmark = pytest.mark.integration


def _listed(path: Path, *products: str) -> list[q.Catalogue]:
    """A fresh store listing `products` one at a time (each a public, free listing on SHDEX recognised by SZDEX),
    the catalogue read after each through the store and through its reads."""
    opened = ChdbStore(path)
    try:
        opened.apply_schema()
        answers = []
        for n, product in enumerate(products):
            opened.command(
                "INSERT INTO datamarket.listings (exchange_id, event_id, occurred_at, action, product_id, seller_id, "
                "source, sector, pricing, high_quality, recognized_by) VALUES "
                f"('SHDEX', 'L{n}', '2026-11-21 00:0{n}:00', 'list', '{product}', 'S1', 'public', 'finance', 'free', "
                "0, ['SZDEX'])"
            )
            answers += [q.catalogue(opened), q.catalogue(opened.reads(SqlSettings()))]
        return answers
    finally:
        opened.close()


def test_the_catalogue_is_read_again_when_the_listings_change_and_never_taken_from_another_store(
    tmp_path: Path,
) -> None:
    """The same answer while nothing is stored, a new one once a listing is, and another store's, whose parts are
    named alike, never taken for it."""
    one, one_again, two, two_again = _listed(tmp_path / "a", "P1", "P2")
    assert one is one_again and one.public == {"free": 1} and one.recognized_products == 1
    assert two is two_again and two.public == {"free": 2} and two.recognized_products == 2
    [elsewhere, _] = _listed(tmp_path / "b", "P9")  # its first part is named as the first store's was
    assert elsewhere is not one
    assert elsewhere.pairs == [{"listed_on": "SHDEX", "recognized_by": "SZDEX", "products": 1}]
