#!/usr/bin/env python3
"""Peak RSS of the ingestion server for its worst bodies.

Usage: python3 scripts/peak_rss_per_body.py target/release/examples/ingest_server

Starts the server (entries as JSON values), sends each body once, and
prints the answer and the server process's peak RSS (VmHWM) after it.
"""
import re
import socket
import subprocess
import sys
import time

PORT = 18089


def hwm(pid):
    status = open(f"/proc/{pid}/status").read()
    return int(re.search(r"VmHWM:\s+(\d+)", status).group(1)) / 1024


def post(body):
    s = socket.create_connection(("127.0.0.1", PORT))
    head = (
        f"POST /ingest HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    s.sendall(head.encode() + body)
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    return data.split(b"\r\n")[0].decode()


def main():
    server = subprocess.Popen([sys.argv[1], str(PORT)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(1)
        base = hwm(server.pid)
        print(f"baseline peak RSS {base:.1f} MiB")
        zeros = b"[[" + b",".join([b"0"] * ((8 * 1024 * 1024 - 4) // 2)) + b"]]"
        row = b"[" + b",".join([b"0"] * 2000) + b"]"
        rows = b"[" + b",".join([row] * 2048) + b"]"
        obj = b"[" + b",".join([b'{"a":0}'] * 500) + b"]"
        nested = b"[" + b",".join([obj] * 2048) + b"]"
        for name, body in [("8 MiB [[0,0,...]]", zeros), ("2048 rows of 2000 zeros", rows), ("2048 rows of 500 tiny objects", nested)]:
            answer = post(body)
            peak = hwm(server.pid)
            print(f"{name} ({len(body) / 2**20:.2f} MiB): {answer}; peak RSS {peak:.1f} MiB (+{peak - base:.1f})")
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
