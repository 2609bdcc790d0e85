"""Settings for the test suite: production settings with test values in the environment.

DEBUG stays off so tests see what production does. ``DATABASE_URL`` picks the database
(``make test`` sets it to ``ANVIL_TEST_DATABASE_URL`` for the PostgreSQL pass).
"""

import os
import tempfile

os.environ["ANVIL_TESTING"] = "1"
os.environ.setdefault("SECRET_KEY", "test-secret-key-" + "x" * 40)
os.environ.setdefault("ALLOWED_HOSTS", "testserver,127.0.0.1,localhost")
os.environ.setdefault("ANVIL_DATA_DIR", tempfile.mkdtemp(prefix="anvil-test-"))

from anvil_forge.settings import *  # noqa: F403
