import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pathlib  # noqa: E402

import pandas as pd  # noqa: E402
import pytest  # noqa: E402

TABLES = pathlib.Path(__file__).parent / "data" / "tables"


@pytest.fixture(scope="session")
def published_table():
    """Read a published table from tests/data/tables as strings ("" for empty cells)."""

    def read(name):
        return pd.read_csv(TABLES / name, dtype=str, keep_default_na=False)

    return read
