"""The server's own latency, from two scrapes of /metrics taken around a run: the
quantiles of boxoffice_http_request_duration_seconds for one route and status, computed
from the histogram buckets' growth between the scrapes (linear within a bucket, as
Prometheus' histogram_quantile does).

    python3 bench/histogram.py BEFORE AFTER ROUTE STATUS     → "count p50_ms p99_ms"
"""
import re
import sys

SERIES = re.compile(r'^boxoffice_http_request_duration_seconds_bucket\{(.*)\} (\S+)$')


def buckets(path, route, status):
    found = {}
    for line in open(path):
        m = SERIES.match(line.strip())
        if not m:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
        if labels.get("route") == route and labels.get("status") == status:
            le = float("inf") if labels["le"] == "+Inf" else float(labels["le"])
            found[le] = found.get(le, 0.0) + float(m.group(2))
    return found


def quantile(q, cumulative):
    total = cumulative[-1][1]
    if total <= 0:
        return float("nan")
    rank, lower, below = q * total, 0.0, 0.0
    for le, count in cumulative:
        if count >= rank:
            if le == float("inf"):
                return lower
            return lower + (le - lower) * (rank - below) / max(count - below, 1e-9)
        lower, below = le, count
    return lower


def main():
    before, after, route, status = sys.argv[1:5]
    b, a = buckets(before, route, status), buckets(after, route, status)
    cumulative = sorted((le, a.get(le, 0.0) - b.get(le, 0.0)) for le in a)
    total = cumulative[-1][1] if cumulative else 0
    if not total:
        print("0 nan nan")
        return
    print(f"{int(total)} {quantile(0.5, cumulative) * 1000:.2f} {quantile(0.99, cumulative) * 1000:.2f}")


main()
