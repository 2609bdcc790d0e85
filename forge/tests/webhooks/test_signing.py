from __future__ import annotations

import re
import textwrap
import time
from pathlib import Path

import pytest

from anvil_forge.webhooks import signing

ROOT = Path(__file__).resolve().parents[3]


def _documented_verifiers() -> list[tuple[str, object]]:
    found = []
    for doc in ("README.md", "docs/toolchain.md"):
        for block in re.findall(r"```python\n(.*?)```", (ROOT / doc).read_text(), flags=re.S):
            if "def verify" in block:
                namespace: dict = {}
                exec(textwrap.dedent(block), namespace)  # our own documentation
                found.append((doc, namespace["verify"]))
    return found


@pytest.mark.parametrize(("doc", "verify"), _documented_verifiers())
def test_the_documented_verification_snippet_accepts_a_signature_and_refuses_forgeries(doc, verify):
    secret, body = signing.new_secret(), b'{"event":"release.publish"}'
    header = signing.sign(secret, body, int(time.time()))
    assert verify(secret, body, header), doc
    assert not verify(secret, body + b" ", header)
    assert not verify("whsec_other", body, header)
    assert not verify(secret, body, signing.sign(secret, body, int(time.time()) - 3600)), "an old replay"
    assert not verify(secret, body, "garbage")


def test_both_documents_carry_the_snippet():
    assert {doc for doc, _ in _documented_verifiers()} == {"README.md", "docs/toolchain.md"}
