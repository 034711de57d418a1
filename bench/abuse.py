#!/usr/bin/env python3
"""GraphQL load for bench/run-abuse.sh, standard library only (no wrk: one honest client's
latency is the measurement, and the attackers must keep their keys' slots full).

  abuse.py honest URL KEY BODY_FILE SECONDS
      one client, one keep-alive connection, requests back to back; prints one JSON line:
      {"n", "p50_ms", "p99_ms", "errors"} (errors: any answer but 200 with no `errors`).
  abuse.py attack URL KEY SECONDS THREADS BODY_FILE [BODY_FILE ...]
      THREADS connections of one key, each cycling through the bodies back to back until
      SECONDS pass; prints {"requests", "by_status", "mb_received"}.

The attacker runs in its own process so the honest client's timings never wait on its GIL.
"""

import http.client
import json
import sys
import threading
import time
import urllib.parse


def connect(url):
    parts = urllib.parse.urlsplit(url)
    return http.client.HTTPConnection(parts.hostname, parts.port, timeout=60), parts.path


def post(connection, path, key, body):
    headers = {
        "Content-Type": "application/json",
        "Accept": "application/graphql-response+json",
        "Authorization": f"Bearer {key}",
    }
    connection.request("POST", path, body=body, headers=headers)
    response = connection.getresponse()
    return response.status, response.read()


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def honest(url, key, body_file, seconds):
    body = open(body_file, "rb").read()
    connection, path = connect(url)
    latencies, errors = [], 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        start = time.perf_counter()
        try:
            status, answer = post(connection, path, key, body)
        except (OSError, http.client.HTTPException):
            connection.close()
            connection, path = connect(url)
            errors += 1
            continue
        latencies.append((time.perf_counter() - start) * 1000)
        if status != 200 or b'"errors"' in answer:
            errors += 1
    print(json.dumps({
        "n": len(latencies),
        "p50_ms": round(percentile(latencies, 0.50), 2),
        "p99_ms": round(percentile(latencies, 0.99), 2),
        "errors": errors,
    }))


def attack(url, key, seconds, threads, body_files):
    bodies = [open(f, "rb").read() for f in body_files]
    lock = threading.Lock()
    by_status, received = {}, [0]
    end = time.monotonic() + seconds

    def run(offset):
        connection, path = connect(url)
        i = offset
        while time.monotonic() < end:
            try:
                status, answer = post(connection, path, key, bodies[i % len(bodies)])
            except (OSError, http.client.HTTPException):
                connection.close()
                connection, path = connect(url)
                status, answer = "io-error", b""
            i += 1
            with lock:
                by_status[str(status)] = by_status.get(str(status), 0) + 1
                received[0] += len(answer)

    workers = [threading.Thread(target=run, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    print(json.dumps({
        "requests": sum(by_status.values()),
        "by_status": by_status,
        "mb_received": round(received[0] / 1e6, 1),
    }))


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "honest":
        honest(sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5]))
    elif mode == "attack":
        attack(sys.argv[2], sys.argv[3], float(sys.argv[4]), int(sys.argv[5]), sys.argv[6:])
    else:
        sys.exit(__doc__)
