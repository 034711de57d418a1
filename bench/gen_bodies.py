#!/usr/bin/env python3
"""Writes N signed Chup `live_queue_updated` webhook bodies, one per line, for the wrk script.

Every body is a distinct delivery (its own queue entry id and timestamps), so none is a
DUPLICATE: the gateway does the full pipeline for each. Clients come from a pool of 2,000,
services and staff from pools of 20, as at a busy clinic group. The signature is HMAC-SHA256
over the raw `payload` text, exactly what `carebridge::vendors::chup::sign_chup` produces.

usage: gen_bodies.py N SECRET OUT
"""
import hashlib
import hmac
import json
import sys

STATES = [("WAITING", 1, "In Queue"), ("ARRIVED", 3, "Arrived"), ("SERVING", 4, "Serving"),
          ("SERVED", 5, "Served"), ("PHARMACY", 7, "Pharmacy")]


def payload(i: int) -> str:
    name, value, label = STATES[i % len(STATES)]
    client = 100000 + i % 2000
    service = 200 + i % 20
    staff = 300 + i % 20
    minute, second = divmod(i % 3600, 60)
    stamp = f"2024-01-17T{(i // 3600) % 24:02d}:{minute:02d}:{second:02d}+08:00"
    data = {
        "id": 1_000_000 + i,
        "appointment_id": None,
        "appointment_date": None,
        "appointment_time": None,
        "registered_client_id": client,
        "registered_client_name": f"Client {client}",
        "registered_client_phone": f"9230939{client:05d}",
        "client_name": f"Client {client}",
        "state": {"name": name, "value": value},
        "state_name": label,
        "service_id": service,
        "service_name": f"Service {service}",
        "staff_id": staff,
        "staff_name": f"Staff {staff}",
        "notes": {"items": [{"id": 5000 + i, "type": "alert",
                             "message": "Please proceed to Counter 2 / Kaunter 2",
                             "created_by": "Registration", "created_at": stamp}],
                  "escapeWhenCastingToString": False},
        "created_at": stamp,
        "updated_at": stamp,
    }
    return json.dumps({"event": "live_queue_updated", "timestamp": stamp, "data": data},
                      separators=(",", ":"))


def main() -> None:
    count, secret, out = int(sys.argv[1]), sys.argv[2].encode(), sys.argv[3]
    with open(out, "w") as f:
        for i in range(count):
            raw = payload(i)
            sig = hmac.new(secret, raw.encode(), hashlib.sha256).hexdigest()
            f.write(f'{{"payload":{raw},"signature":"{sig}"}}\n')


if __name__ == "__main__":
    main()
