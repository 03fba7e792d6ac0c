"""The compatibility lines of old notebooks (``%thanosql API_TOKEN=…``, ``%load_ext``)."""

from __future__ import annotations

from ..results import Message
from ..syntax import Magic
from .run import Run
from .services import Services


def magic(node: Magic, _: Services, __: Run) -> Message | None:
    if not node.asks_for_server:
        return None
    return Message("This kernel runs ThanoSQL locally and needs no API token or server "
                   "address, so this line is ignored. (To use another database, set "
                   "THANOSQL_DATABASE_URL before starting the kernel.)")
