"""Integrations with other HTTP libraries (optional extras).

* [`HTTP20Adapter`][h2any.contrib.HTTP20Adapter]: a transport adapter for
  [requests](https://requests.readthedocs.io/) (extra ``requests``), the successor of
  ``hyper.contrib.HTTP20Adapter``.

Importing this package imports requests; ``import h2any`` does not.
"""

from __future__ import annotations

from ._requests import HTTP20Adapter as HTTP20Adapter

__all__ = ("HTTP20Adapter",)
