"""Both tests write the same file: they must never run beside each other."""
import os
import tempfile

import pytest

pytestmark = pytest.mark.serial

DB = os.path.join(tempfile.gettempdir(), "shardrun-example-db.txt")


def test_write_then_read():
    with open(DB, "w") as f:
        f.write("one")
    with open(DB) as f:
        assert f.read() == "one"
