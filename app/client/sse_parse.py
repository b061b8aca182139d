"""Reading a text/event-stream (the WHATWG format) line by line, for the client and the CLI."""

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Event:
    event: str
    id: str | None
    data: Any  # the decoded JSON payload


def parse_events(lines: Iterable[str]) -> Iterator[Event]:
    """Events with a data field; comments (keep-alives) and retry hints are skipped."""
    name, ident, data = "message", None, list[str]()
    for line in lines:
        if not line:
            if data:
                yield Event(name, ident, json.loads("\n".join(data)))
            name, data = "message", []
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "event":
            name = value
        elif field == "data":
            data.append(value)
        elif field == "id":
            ident = value
