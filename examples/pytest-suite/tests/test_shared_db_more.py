import os
import tempfile

import pytest

DB = os.path.join(tempfile.gettempdir(), "shardrun-example-db.txt")


@pytest.mark.serial
def test_overwrite():
    with open(DB, "w") as f:
        f.write("two")
    with open(DB) as f:
        assert f.read() == "two"
