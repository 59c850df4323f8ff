"""How flowprep/_tvl1.c's 5x5 median network on sorted columns was made, and a check of it.

The native TV-L1's 5x5 median sorts each column of the window once per row, then selects
the middle of the 25 values from the 5 sorted columns with MED25_COLS_NET. The network:
Batcher's odd-even merge of 8 groups of 8 wires, the 5 columns placed in 5 of the groups
(ranks 5-7 and the other groups +inf), comparators on +inf dropped (no-ops) or turned into
relabelings (swaps), then pruned backwards to the middle output, then every comparator that
never exchanges on sorted-column inputs removed (checked on all 6^5 0-1 inputs: a column of
5 sorted 0-1 values is its count of ones), repeated until none is left; the group layout
that leaves the fewest operations wins (the first of them: groups 0, 1, 2, 4, 5). MN / MX: comparators of which only the min / max is
used. Slots are renumbered c*5 + r (column c, rank r ascending).

    python tests/make_median_net.py          # print the macros (a second)
    python tests/make_median_net.py --check  # check the network in flowprep/_tvl1.c

A selection network is right for every input iff it is right for every 0-1 input (the 0-1
principle; inputs with sorted columns map to 0-1 inputs with sorted columns), so the check
is exhaustive; random real inputs with ties are checked too.
"""
from __future__ import annotations

import itertools
import os
import random
import re
import sys
from typing import Dict, List, Tuple

import numpy as np

K = C = 5  # ranks per column, columns
G = 8      # Batcher: 8 groups of 8
SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "flowprep", "_tvl1.c")
ONES = np.array(list(itertools.product(range(K + 1), repeat=C)))  # (7776, 5): ones per column


def _merge(lo: int, n: int, r: int):
    step = r * 2
    if step < n:
        yield from _merge(lo, n, step)
        yield from _merge(lo + r, n, step)
        for i in range(lo + r, lo + n - r, step):
            yield (i, i + r)
    else:
        yield (lo, lo + r)


def _stages(n: int, first: int):
    size = first
    while size < n:
        for lo in range(0, n, 2 * size):
            yield from _merge(lo, 2 * size, 1)
        size *= 2


def _build(groups: Tuple[int, ...]):
    real = {g * G + r: (c, r) for c, g in enumerate(groups) for r in range(K)}
    inf = {w for w in range(G * G) if w not in real}
    label, net = list(range(G * G)), []
    for i, j in _stages(G * G, G):
        if j in inf:
            continue
        if i in inf:
            inf.discard(i); inf.add(j)
            label[i], label[j] = label[j], label[i]
            continue
        net.append((label[i], label[j]))
    return net, label[12], real


def _prune(net, out):
    need, kept = {out}, []
    for a, b in reversed(net):
        if a in need or b in need:
            kept.append((a, b, a in need, b in need))
            need |= {a, b}
    return kept[::-1]


def _simulate(ops, inputs: Dict[int, np.ndarray]):
    v, swaps = dict(inputs), []
    for a, b, *_ in ops:
        x, y = v[a], v[b]
        swaps.append(bool((x > y).any()))
        v[a], v[b] = np.minimum(x, y), np.maximum(x, y)
    return v, swaps


def _zero_one(real):
    return {w: (r >= K - ONES[:, c]).astype(np.int8) for w, (c, r) in real.items()}


def generate() -> str:
    best = None
    for groups in itertools.combinations(range(G), C):
        net, out, real = _build(groups)
        ops = _prune(net, out)
        while True:
            _, swaps = _simulate(ops, _zero_one(real))
            if all(swaps):
                break
            ops = _prune([(a, b) for (a, b, *_), s in zip(ops, swaps) if s], out)
        cost = sum(mn + mx for *_, mn, mx in ops)
        if best is None or cost < best[0]:
            best = (cost, ops, out, real)
    cost, ops, out, real = best
    slot = {w: c * K + r for w, (c, r) in real.items()}
    items = [("CE" if mn and mx else "MN" if mn else "MX") + f"({slot[a]},{slot[b]})" for a, b, mn, mx in ops]
    lines = [" ".join(items[k:k + 8]) for k in range(0, len(items), 8)]
    text = f"#define MED25_COLS_OUT {slot[out]}\n#define MED25_COLS_NET \\\n" + " \\\n".join(lines) + "\n"
    assert check(text) == (len(ops), cost)
    return text


def parse(text: str) -> Tuple[List[Tuple[str, int, int]], int]:
    """(ops, output slot) of the MED25_COLS_* macros in ``text`` (the C source or generate()'s)."""
    out = int(re.search(r"#define MED25_COLS_OUT (\d+)", text).group(1))
    body = re.search(r"#define MED25_COLS_NET \\\n((?:.*\\\n)*.*\n)", text).group(1)
    return [(k, int(a), int(b)) for k, a, b in re.findall(r"(CE|MN|MX)\((\d+),(\d+)\)", body)], out


def check(text: str) -> Tuple[int, int]:
    """Raises AssertionError unless the network selects the median of 5 sorted columns of 5;
    returns (comparators, min/max operations)."""
    ops, out = parse(text)

    def run(v):
        for kind, a, b in ops:
            lo, hi = np.minimum(v[a], v[b]), np.maximum(v[a], v[b])
            if kind in ("CE", "MN"):
                v[a] = lo
            if kind in ("CE", "MX"):
                v[b] = hi
        return v[out]

    v = {c * K + r: (r >= K - ONES[:, c]).astype(np.int8) for c in range(C) for r in range(K)}
    assert (run(v) == (ONES.sum(1) >= 13)).all(), "wrong on a 0-1 input"
    rng = random.Random(0)
    for _ in range(2000):
        cols = [sorted(rng.choice((rng.random(), float(rng.randint(0, 3)))) for _ in range(K)) for _ in range(C)]
        v = {c * K + r: np.array([cols[c][r]]) for c in range(C) for r in range(K)}
        assert run(v)[0] == sorted(x for col in cols for x in col)[12], cols
    return len(ops), sum(2 if k == "CE" else 1 for k, _, _ in ops)


if __name__ == "__main__":
    if "--check" in sys.argv:
        with open(SRC) as fh:
            n, cost = check(fh.read())
        print(f"flowprep/_tvl1.c: MED25_COLS_NET selects the median: {n} comparators, {cost} operations")
    else:
        sys.stdout.write(generate())
