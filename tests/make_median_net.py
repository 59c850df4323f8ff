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



# ---- the 5x5 median of two vertically adjacent outputs --------------------------------------
#
# Outputs (x, y) and (x, y+1) share rows y-1..y+2 of the window's 5 columns: 20 values,
# each column's 4 sorted once (SORT4_NET, shared by the 5 outputs of a row pair that see
# it). The median of 25 is rank 12; each window adds 5 values to the 20, so the 7 lowest and
# the 7 highest of the 20 are below / above the median of either window: the median is rank 5
# of the 20's ranks 7..12 and the 5 extra values. MED20_NET: 5 sorted columns of 4 (slot
# c*4 + r) -> ranks 7..12 of the 20, sorted, in the slots MED20_SEL names (shared by both
# outputs); MED11_NET: those 6 in slots 0..5 and the window's 5 extra values (row y-2 resp.
# y+3) in slots 6..10 -> the median in slot MED11_OUT.

K4 = 4
ONES4 = np.array(list(itertools.product(range(K4 + 1), repeat=C)))  # (3125, 5): ones per column
SORT5 = [(0, 1), (3, 4), (2, 4), (2, 3), (0, 3), (0, 2), (1, 4), (1, 3), (1, 2)]


def _merge_padded(kinds: Dict[int, str], n: int, first: int, net: List[Tuple[int, int]]) -> List[int]:
    """Batcher's merge stages on n wires from groups of ``first``; kinds[w] is 'r' (real),
    '+' (+inf) or '-' (-inf). Comparators on an infinity are dropped (no-op) or become
    relabelings; the rest are appended to net. Returns the wire label at each position."""
    label = list(range(n))
    for i, j in _stages(n, first):
        a, b = label[i], label[j]
        if kinds[a] == "-" or kinds[b] == "+":
            continue
        if kinds[a] == "+" or kinds[b] == "-":
            label[i], label[j] = b, a
            continue
        net.append((a, b))
    return label


def _minimize(net, outs, inputs, expect):
    """Pruned to outs, comparators that never exchange on the inputs removed, repeated;
    then greedily any comparator whose removal keeps every output right on the inputs."""
    def prune(pairs):
        need, kept = set(outs), []
        for a, b in reversed(pairs):
            if a in need or b in need:
                kept.append((a, b, a in need, b in need))
                need |= {a, b}
        return kept[::-1]

    def right(ops):
        v, _ = _simulate(ops, inputs)
        return all((v[w] == e).all() for w, e in zip(outs, expect))

    ops = prune(net)
    while True:
        _, swaps = _simulate(ops, inputs)
        if all(swaps):
            break
        ops = prune([(a, b) for (a, b, *_), s in zip(ops, swaps) if s])
    assert right(ops)
    k = 0
    while k < len(ops):
        cand = prune([(a, b) for n, (a, b, *_) in enumerate(ops) if n != k])
        if right(cand):
            ops, k = cand, 0
        else:
            k += 1
    return ops


def _text(ops, slot) -> List[str]:
    items = [("CE" if mn and mx else "MN" if mn else "MX") + f"({slot[a]},{slot[b]})" for a, b, mn, mx in ops]
    return [" ".join(items[k:k + 8]) for k in range(0, len(items), 8)]


def _med20():
    """5 sorted columns of 4 in 5 of 8 groups of 4 (the rest +inf or -inf), Batcher's merge,
    minimised to ranks 7..12; the first of the layouts with the fewest operations."""
    n1 = ONES4.sum(1)
    expect = [(t >= 20 - n1).astype(np.int8) for t in range(7, 13)]
    best = None
    for pat in itertools.product("r+-", repeat=G):
        if pat.count("r") != C:
            continue
        kinds, real, c = {}, {}, 0
        for g, k in enumerate(pat):
            for r in range(K4):
                kinds[g * K4 + r] = k
                if k == "r":
                    real[g * K4 + r] = (c, r)
            c += k == "r"
        net: List[Tuple[int, int]] = []
        label = _merge_padded(kinds, G * K4, K4, net)
        neg = K4 * pat.count("-")
        outs = [label[t + neg] for t in range(7, 13)]
        inputs = {w: (r >= K4 - ONES4[:, c]).astype(np.int8) for w, (c, r) in real.items()}
        ops = _minimize(net, outs, inputs, expect)
        cost = sum(mn + mx for *_, mn, mx in ops)
        if best is None or cost < best[0]:
            best = (cost, ops, outs, real)
    _, ops, outs, real = best
    slot = {w: c * K4 + r for w, (c, r) in real.items()}
    return ops, [slot[w] for w in outs], slot


def _med11():
    """The 5 extra values sorted (SORT5), Batcher's 8 + 8 merge with the 6 sorted ranks (the
    groups padded with -inf below / +inf above), minimised to rank 5 of the 11."""
    a = np.repeat(np.arange(7), 32)
    e = np.tile(np.array(list(itertools.product((0, 1), repeat=5))), (7, 1))
    expect = [(a + e.sum(1) >= 6).astype(np.int8)]
    best = None
    for p in range(3):
        for q in range(4):
            kinds, inputs, slot = {}, {}, {}
            for w in range(16):
                g, r = divmod(w, 8)
                lo, n = (p, 6) if g == 0 else (q, 5)
                kinds[w] = "-" if r < lo else "r" if r < lo + n else "+"
                if kinds[w] == "r":
                    slot[w] = r - lo + 6 * g
                    inputs[w] = (r - lo >= 6 - a).astype(np.int8) if g == 0 else e[:, r - lo].astype(np.int8)
            ew = [8 + q + i for i in range(5)]
            net = [(ew[i], ew[j]) for i, j in SORT5]
            # the extras are sorted in place: the merge sees them as a sorted group
            label = _merge_padded(kinds, 16, 8, net)
            out = label[5 + p + q]
            ops = _minimize(net, [out], inputs, expect)
            cost = sum(mn + mx for *_, mn, mx in ops)
            if best is None or cost < best[0]:
                best = (cost, ops, slot[out], slot)
    _, ops, out, slot = best
    return ops, out, slot


def generate_pair() -> str:
    ops20, sel, slot20 = _med20()
    ops11, out11, slot11 = _med11()
    text = ("#define MED20_SEL " + ", ".join(f"v[{s}]" for s in sel) + "\n#define MED20_NET \\\n"
            + " \\\n".join(_text(ops20, slot20)) + "\n"
            + f"#define MED11_OUT {out11}\n#define MED11_NET \\\n" + " \\\n".join(_text(ops11, slot11)) + "\n")
    check_pair(text)
    return text


def _parse_net(text: str, name: str) -> List[Tuple[str, int, int]]:
    body = re.search(r"#define " + name + r" \\\n((?:.*\\\n)*.*\n)", text).group(1)
    return [(k, int(a), int(b)) for k, a, b in re.findall(r"(CE|MN|MX)\((\d+),(\d+)\)", body)]


def _run(ops, v):
    for kind, a, b in ops:
        lo, hi = np.minimum(v[a], v[b]), np.maximum(v[a], v[b])
        if kind in ("CE", "MN"):
            v[a] = lo
        if kind in ("CE", "MX"):
            v[b] = hi
    return v


def _cost(ops) -> int:
    return sum(2 if k == "CE" else 1 for k, _, _ in ops)


def check_pair(text: str) -> Tuple[int, int, int, int]:
    """Raises AssertionError unless MED20_NET / MED20_SEL select ranks 7..12 of 5 sorted
    columns of 4 (every 0-1 input: 5^5), MED11_NET / MED11_OUT rank 5 of 6 sorted values and 5
    others (every 0-1 input: 7 * 2^5), and the two together with SORT4_NET the median of
    random 6x5 blocks with ties for both outputs; returns (MED20 comparators, operations,
    MED11 comparators, operations)."""
    ops20, ops11 = _parse_net(text, "MED20_NET"), _parse_net(text, "MED11_NET")
    sel = [int(s) for s in re.findall(r"v\[(\d+)\]", re.search(r"#define MED20_SEL (.*)\n", text).group(1))]
    out11 = int(re.search(r"#define MED11_OUT (\d+)", text).group(1))
    assert len(sel) == 6
    n1 = ONES4.sum(1)
    v = _run(ops20, {c * K4 + r: (r >= K4 - ONES4[:, c]).astype(np.int8) for c in range(C) for r in range(K4)})
    for t, s in zip(range(7, 13), sel):
        assert (v[s] == (t >= 20 - n1)).all(), f"MED20_NET: rank {t} wrong on a 0-1 input"
    a = np.repeat(np.arange(7), 32)
    e = np.tile(np.array(list(itertools.product((0, 1), repeat=5))), (7, 1))
    v = {r: (r >= 6 - a).astype(np.int8) for r in range(6)}
    v.update({6 + i: e[:, i].astype(np.int8) for i in range(5)})
    assert (_run(ops11, v)[out11] == (a + e.sum(1) >= 6)).all(), "MED11_NET: wrong on a 0-1 input"
    sort4 = _parse_sort4()
    rng = np.random.default_rng(0)
    for _ in range(300):
        # 64 random 6x5 blocks at once, values with many ties; rows 1..4 shared
        blk = rng.integers(0, rng.integers(2, 12), (6, 5, 64)).astype(np.float32)
        blk = np.where(rng.random((6, 5, 64)) < 0.3, rng.random((6, 5, 64)).astype(np.float32), blk)
        v = {c * K4 + r: blk[1 + r, c].copy() for c in range(C) for r in range(K4)}
        for c in range(C):
            cv = _run(sort4, {r: v[c * K4 + r] for r in range(K4)})
            v.update({c * K4 + r: cv[r] for r in range(K4)})
        v = _run(ops20, v)
        mid = [v[s] for s in sel]
        for row, rows in ((0, slice(0, 5)), (5, slice(1, 6))):
            w = {i: m.copy() for i, m in enumerate(mid)}
            w.update({6 + c: blk[row, c].copy() for c in range(C)})
            want = np.median(blk[rows].reshape(25, -1), axis=0)
            assert (_run(ops11, w)[out11] == want).all(), "pair median wrong on a random block"
    return len(ops20), _cost(ops20), len(ops11), _cost(ops11)


def _parse_sort4() -> List[Tuple[str, int, int]]:
    with open(SRC) as fh:
        src = fh.read()
    m = re.search(r"#define SORT4_NET (.*)\n", src)
    if m is None:  # not in the source yet (generating): Batcher's 4-sort
        return [("CE", 0, 1), ("CE", 2, 3), ("CE", 0, 2), ("CE", 1, 3), ("CE", 1, 2)]
    return [(k, int(a), int(b)) for k, a, b in re.findall(r"(CE|MN|MX)\((\d+),(\d+)\)", m.group(1))]


if __name__ == "__main__":
    if "--check" in sys.argv:
        with open(SRC) as fh:
            src = fh.read()
        n, cost = check(src)
        print(f"flowprep/_tvl1.c: MED25_COLS_NET selects the median: {n} comparators, {cost} operations")
        n20, c20, n11, c11 = check_pair(src)
        print(f"flowprep/_tvl1.c: MED20_NET selects ranks 7..12 of 20: {n20} comparators, {c20} operations; "
              f"MED11_NET the median of the pair's windows: {n11} comparators, {c11} operations")
    elif "--pair" in sys.argv:
        sys.stdout.write(generate_pair())
    else:
        sys.stdout.write(generate())
