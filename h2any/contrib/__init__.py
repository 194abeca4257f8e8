"""Integrations with other HTTP libraries (optional extras).

* [`HTTP20Adapter`][h2any.contrib.HTTP20Adapter]: a transport adapter for
  [requests](https://requests.readthedocs.io/) (extra ``requests``), the successor of
  ``hyper.contrib.HTTP20Adapter``; ``response.raw`` of its responses is an
  [`H2anyRawResponse`][h2any.contrib.H2anyRawResponse].

Importing this package imports requests; ``import h2any`` does not.
"""

from __future__ import annotations

from ._requests import H2anyRawResponse as H2anyRawResponse
from ._requests import HTTP20Adapter as HTTP20Adapter

__all__ = ("H2anyRawResponse", "HTTP20Adapter")
