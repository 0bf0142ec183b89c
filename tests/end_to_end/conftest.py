"""A real embedded stack (Tansu broker + `dmm worker` process + chdb store) per test module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dmm.stack import EmbeddedStack
from tests.support.stack import stack_settings


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedStack]:
    workdir = tmp_path_factory.mktemp("stack")
    with EmbeddedStack(stack_settings(workdir), workdir) as running:
        yield running
