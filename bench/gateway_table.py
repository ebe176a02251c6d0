"""Prints the gateway benchmark table from the ews-load JSON summaries in a results directory.

Usage: python3 bench/gateway_table.py RESULTS_DIR CONNECTIONS
Each figure for ews-worker is followed by its ratio to each baseline (bare tokio-tungstenite
with the default config, the same tuned like the worker, node ws), measured in the same run.
"""
import json
import os
import sys

SERVERS = [
    ("ews-worker", "ews-worker (JWT)"),
    ("bare", "bare tokio-tungstenite"),
    ("tuned", "bare, tuned (512 B read buffer)"),
    ("node", "node ws"),
]
BASELINES = [("bare", "worker / bare"), ("tuned", "worker / tuned"), ("node", "worker / node")]


def load(d, name, kind):
    with open(os.path.join(d, f"{name}.{kind}.json")) as f:
        return json.load(f)


def figures(d, name):
    idle, echo = load(d, name, "idle"), load(d, name, "echo")
    spc = idle.get("server_per_connection") or {}
    spm = echo.get("server_per_message") or {}
    return {
        "rss": spc.get("rss_delta_per_unit_bytes", float("nan")) / 1024.0,
        "hs": idle["connect"]["handshakes_per_sec"],
        "hs_cpu": spc.get("cpu_us_per_unit", float("nan")),
        "echo": echo["messages_per_sec"],
        "cpu": spm.get("cpu_us_per_unit", float("nan")),
        "p99": echo["round_trip"]["p99_us"] / 1000.0,
        "held": f'{idle["held"]}/{idle["connect"]["attempted"]}',
    }


def main():
    d, conns = sys.argv[1], sys.argv[2]
    f = {name: figures(d, name) for name, _ in SERVERS}
    rows = [
        (f"server RSS per idle connection at {conns} (KiB, lower is better)", "rss", "{:.2f}"),
        ("connections held", "held", "{}"),
        ("handshakes per second (higher is better)", "hs", "{:.0f}"),
        ("server CPU-µs per handshake (lower is better)", "hs_cpu", "{:.1f}"),
        ("echo messages per second (higher is better)", "echo", "{:.0f}"),
        ("server CPU-µs per echoed message (lower is better)", "cpu", "{:.2f}"),
        ("echo round trip p99 (ms)", "p99", "{:.2f}"),
    ]
    head = ["figure"] + [label for _, label in SERVERS] + [label for _, label in BASELINES]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for title, key, fmt in rows:
        vals = [fmt.format(f[name][key]) for name, _ in SERVERS]
        ratios = []
        for base, _ in BASELINES:
            w, b = f["ews-worker"][key], f[base][key]
            ratios.append(f"{w / b:.2f}x" if isinstance(w, float) and b else "")
        print("| " + " | ".join([title] + vals + ratios) + " |")


if __name__ == "__main__":
    main()
