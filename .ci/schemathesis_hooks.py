"""Rules of the API that JSON Schema cannot state, applied to the requests schemathesis
generates as *valid* ones, so that `positive_data_acceptance` holds the server to the rest.

Each rule here relates two fields, or a field to data that exists; the schema states every
rule about one field alone (bounds, lengths, patterns, exactly one of two fields). Requests
generated as invalid are left as they are: they must be refused whatever these rules say.
"""

import os
import uuid
from datetime import datetime

import schemathesis

# A venue of the organizer whose token the run uses (seeded by `boxoffice seed-demo`).
VENUE_ID = int(os.environ.get("SCHEMATHESIS_VENUE_ID", "1"))
# Seats of one seated section (boxoffice_engine::limits::MAX_RESERVED_SEATS).
MAX_RESERVED_SEATS = 200_000


def _instant(text):
    try:
        return datetime.fromisoformat(text.replace("z", "Z").replace("t", "T"))
    except (AttributeError, TypeError, ValueError):
        return None


def _in_order(body, first, second, strict):
    """`first` not after (`strict`: before) `second` when both are given."""
    a, b = _instant(body.get(first)), _instant(body.get(second))
    if a is None or b is None:
        return
    try:
        wrong = a >= b if strict else a > b
    except TypeError:  # one with an offset, one without: not RFC 3339 anyway
        return
    if wrong:
        body[first], body[second] = body[second], body[first]
    if strict and a == b:
        del body[first]


@schemathesis.hook
def map_case(context, case):
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive or not isinstance(case.body, dict):
        return case
    body = case.body
    route = (case.operation.method.upper(), case.operation.path)
    if route == ("POST", "/events"):
        # saleStartTime is not after eventDate; a venue must exist and be the organizer's.
        _in_order(body, "saleStartTime", "eventDate", strict=False)
        if "venueId" in body and body["venueId"] is not None:
            body["venueId"] = VENUE_ID
    elif route == ("PATCH", "/events/{id}"):
        # The dates are checked against the event's current ones: send both or neither.
        if ("saleStartTime" in body) != ("eventDate" in body):
            body.pop("saleStartTime", None)
            body.pop("eventDate", None)
        _in_order(body, "saleStartTime", "eventDate", strict=False)
        if "venueId" in body and body["venueId"] is not None:
            body["venueId"] = VENUE_ID
    elif route == ("POST", "/events/{id}/discounts"):
        _in_order(body, "validFrom", "validUntil", strict=True)
    elif route == ("POST", "/events/{id}/sections") and body.get("type") == "RESERVED":
        # rows × seatsPerRow is at most MAX_RESERVED_SEATS (a whole float is a whole number).
        rows, seats = body.get("rows"), body.get("seatsPerRow")
        whole = all(isinstance(v, (int, float)) and not isinstance(v, bool) and v == int(v) for v in (rows, seats))
        if whole and rows > 0 and int(rows) * int(seats) > MAX_RESERVED_SEATS:
            body["seatsPerRow"] = max(1, MAX_RESERVED_SEATS // int(rows))
    # An Idempotency-Key names one request: a generated key used again for a different
    # request is rightly refused (422 IDEMPOTENCY_KEY_REUSED), so each valid case gets its own.
    headers = case.headers or {}
    for name in list(headers):
        if name.lower() == "idempotency-key":
            headers[name] = uuid.uuid4().hex
    return case
