#!/usr/bin/env python3
"""Where the machine's time goes while wrk places holds: reads `perf script` output of a
system-wide `perf record --call-graph dwarf` (bench/profile.sh) and splits the samples by
process, then the server's samples by what they were doing.

A server sample is charged to the first part of the hold's path found walking its stack
from the leaf up: memcpy under hyper's write is HTTP, a futex wake under the actor's
reply is the engine. Generic frames (the kernel, libc, the allocator, core/alloc/std)
are skipped over; a stack with nothing else is charged to its leaf's kind.

    python3 bench/profile.py perf.txt [folded.txt]

With a second argument it also writes the server's stacks folded, one line per distinct
stack (`frame;frame;… count`), which inferno-flamegraph or flamegraph.pl draw as SVG.
"""
import collections
import re
import sys

# The server's parts, each by the frames that belong to it, checked in this order for
# each frame from the leaf up. The first frame that matches a part charges the sample.
PARTS = [
    ("auth (JWT check)", re.compile(r"jsonwebtoken|boxoffice::auth|::jwt::|ring::|hmac|sha2|base64")),
    ("flush (write-behind, SQL client)", re.compile(r"write_behind|sqlx|postgres_protocol|boxoffice_engine::store|boxoffice_engine::persist")),
    ("engine (actor, inventory)", re.compile(r"boxoffice_engine|ractor")),
    ("metrics, tracing", re.compile(r"metrics|tracing|hdrhistogram")),
    ("JSON", re.compile(r"serde_json|serde::")),
    ("HTTP (hyper, axum, handlers)", re.compile(r"hyper|httparse|axum|tower|http::|boxoffice::")),
    ("runtime (tokio scheduling, I/O driver)", re.compile(r"tokio|mio::|parking_lot")),
]
# Leaves with no part above them.
LEAF_KINDS = [
    ("kernel: network", re.compile(r"tcp_|ip_|__dev_|net_|sock_|skb|loopback|__sys_send|__sys_recv|inet_")),
    ("kernel: scheduling, wake-ups", re.compile(r"schedule|futex|__switch_to|finish_task_switch|try_to_wake|ep_poll|epoll|do_idle|pick_next")),
    ("allocator, memcpy", re.compile(r"mi_|malloc|free|memcpy|memmove|memset|_mi_")),
]


def process_of(comm):
    """Which program a thread belongs to, by its name."""
    if comm.startswith("postgres") or comm.startswith("postmaster"):
        return "PostgreSQL"
    if comm.startswith("wrk"):
        return "wrk"
    if comm.startswith("swapper"):
        return "idle"
    if comm.startswith(("tokio", "boxoffice", "metrics-upkeep")):
        return "server"
    return "other (" + comm + ")"


def charge(frames):
    """The part a server sample's stack (leaf first) is charged to."""
    for frame in frames:
        for part, pattern in PARTS:
            if pattern.search(frame):
                return part
    leaf = frames[0] if frames else ""
    for kind, pattern in LEAF_KINDS:
        if pattern.search(leaf):
            return kind
    return "other"


def samples(lines):
    """(comm, [frames leaf first]) for each sample of `perf script`'s default output."""
    comm, frames = None, []
    for line in lines:
        if not line.strip():
            if comm is not None:
                yield comm, frames
            comm, frames = None, []
        elif not line.startswith((" ", "\t")):
            comm, frames = line.split()[0], []
        else:
            parts = line.split(None, 1)
            symbol = parts[1] if len(parts) > 1 else "?"
            frames.append(re.sub(r"\+0x[0-9a-f]+", "", symbol.rsplit(" (", 1)[0]))
    if comm is not None:
        yield comm, frames


def main():
    by_process = collections.Counter()
    by_part = collections.Counter()
    by_thread = collections.Counter()
    folded = collections.Counter()
    with open(sys.argv[1], errors="replace") as f:
        for comm, frames in samples(f):
            process = process_of(comm)
            by_process[process] += 1
            if process == "server":
                by_part[charge(frames)] += 1
                by_thread[comm] += 1
                folded[";".join(reversed([fr.replace(";", ":") for fr in frames]))] += 1
    total = sum(by_process.values())
    busy = total - by_process["idle"]
    print(f"{total} samples; machine busy {100 * busy / max(total, 1):.0f} %")
    print("| process | share of the machine |")
    print("|---|---|")
    for process, n in by_process.most_common():
        print(f"| {process} | {100 * n / total:.1f} % |")
    server = sum(by_part.values())
    print()
    print("| server part | share of the server's CPU |")
    print("|---|---|")
    for part, n in by_part.most_common():
        print(f"| {part} | {100 * n / max(server, 1):.1f} % |")
    print()
    print("| server thread | share of the server's CPU |")
    print("|---|---|")
    for thread, n in by_thread.most_common():
        print(f"| {thread} | {100 * n / max(server, 1):.1f} % |")
    if len(sys.argv) > 2:
        with open(sys.argv[2], "w") as out:
            for stack, n in folded.items():
                out.write(f"{stack} {n}\n")


if __name__ == "__main__":
    main()
