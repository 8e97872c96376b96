"""Simulated device services, one small module per ``kind``.

Add a kind by dropping a module here with a ``@register``-ed subclass of
``StreamResponder`` (TCP), ``DatagramResponder`` (UDP) or ``Responder``;
``registry()`` finds it, scenario validation calls its ``check``, and the
responder process (``python -m lab.responders``) serves it.
"""

from __future__ import annotations

from lab.responders.base import (
    DEVICE_IFACE,
    DatagramResponder,
    OptionError,
    Responder,
    StreamResponder,
    register,
    registry,
)

__all__ = [
    "DEVICE_IFACE",
    "DatagramResponder",
    "OptionError",
    "Responder",
    "StreamResponder",
    "register",
    "registry",
]
