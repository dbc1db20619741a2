"""meterql: usage and billing API for platforms that host AI agents.

The public surface is deliberately small: build an app with
:func:`meterql.app.create_app` from :class:`meterql.config.Settings`.
"""

from __future__ import annotations

__version__ = "0.1.0"
