"""Anvil's benchmark suite: ``python -m bench`` (``make bench``); figures in ``bench/results``, report in
``docs/benchmarks.md``. See ``bench/__main__.py`` for the list and ``bench/common.py`` for what they share."""
