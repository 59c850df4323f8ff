"""How flowprep/_tvl1.c's 5x5 median networks were made, and a check of them.

The native TV-L1's 5x5 median computes 2x2 tiles of outputs with MED16_NET, MED14_NET and
MED11_NET (made and checked by the second half of this file, below "the 5x5 median of a 2x2
tile"). Widths under 16 and an odd height's last row go row by row: each column of the
window sorted once per row, then the middle of the 25 values selected from the 5 sorted
columns with MED25_COLS_NET. That network:
Batcher's odd-even merge of 8 groups of 8 wires, the 5 columns placed in 5 of the groups
(ranks 5-7 and the other groups +inf), comparators on +inf dropped (no-ops) or turned into
relabelings (swaps), then pruned backwards to the middle output, then every comparator that
never exchanges on sorted-column inputs removed (checked on all 6^5 0-1 inputs: a column of
5 sorted 0-1 values is its count of ones), repeated until none is left; the group layout
that leaves the fewest operations wins (the first of them: groups 0, 1, 2, 4, 5). MN / MX: comparators of which only the min / max is
used. Slots are renumbered c*5 + r (column c, rank r ascending).

    python tests/make_median_net.py          # print MED25_COLS_* (a second)
    python tests/make_median_net.py --tile   # print MED16_*, MED14_*, MED11_* (~20 s)
    python tests/make_median_net.py --check  # check all of them in flowprep/_tvl1.c

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
        return _run(ops, v)[out]

    v = {c * K + r: (r >= K - ONES[:, c]).astype(np.int8) for c in range(C) for r in range(K)}
    assert (run(v) == (ONES.sum(1) >= 13)).all(), "wrong on a 0-1 input"
    rng = random.Random(0)
    for _ in range(2000):
        cols = [sorted(rng.choice((rng.random(), float(rng.randint(0, 3)))) for _ in range(K)) for _ in range(C)]
        v = {c * K + r: np.array([cols[c][r]]) for c in range(C) for r in range(K)}
        assert run(v)[0] == sorted(x for col in cols for x in col)[12], cols
    return len(ops), sum(2 if k == "CE" else 1 for k, _, _ in ops)



# ---- the 5x5 median of a 2x2 tile of outputs --------------------------------------------------
#
# Outputs (x, y), (x+1, y), (x, y+1), (x+1, y+1) (x even). Their windows share columns x+1..x+4
# of rows y-1..y+2 (the core: 16 values, 4-columns sorted once by SORT4_NET, shared by the
# row pair); the vertical pair at x also shares column x (rows y-1..y+2) and the one at x+1
# column x+5; the horizontal pair in row y shares columns x+1..x+4 of row y-2 (sorted by
# SORT4_NET), the one in row y+1 those of row y+3. The median of 25 is rank 12:
#   MED16_NET: the core's 4 sorted columns (slots c*4 + r) -> its ranks 3..12 (each window adds
#     9 values to the 16, so the 3 lowest and the 3 highest are below / above every median),
#     sorted, in the slots MED16_SEL names;
#   MED14_NET: those 10 (slots 0..9) and column x resp. x+5 sorted (slots 10..13) -> ranks 4..9
#     of the 14, which are ranks 7..12 of the 20 values the vertical pair shares, sorted, in
#     the slots MED14_SEL names (each window adds 5 values to the 20);
#   MED11_NET: those 6 (slots 0..5), the 4 sorted shared values of the window's extra row
#     (slots 6..9) and its fifth value (slot 10) -> rank 5 of the 11, the median, in slot
#     MED11_OUT.
# Each is Batcher's merge of the sorted groups padded with +inf / -inf to groups of equal size,
# comparators on infinities removed, pruned to the wanted outputs, comparators that never
# exchange on the 0-1 inputs removed, then greedily any comparator the outputs do not need; the
# first of the layouts with the fewest min/max operations.

K4 = 4
SORT4 = [(0, 1), (2, 3), (0, 2), (1, 3), (1, 2)]


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


def _zero_one_groups(sizes: List[int]) -> Tuple[np.ndarray, Dict[int, np.ndarray]]:
    """Every 0-1 input of sorted groups of the given sizes (slots numbered group after group):
    (ones per group (N, groups), slot -> (N,) int8)."""
    counts = np.array(list(itertools.product(*[range(n + 1) for n in sizes])))
    v, base = {}, 0
    for g, n in enumerate(sizes):
        for r in range(n):
            v[base + r] = (r >= n - counts[:, g]).astype(np.int8)
        base += n
    return counts, v


def _select(layout, gsize: int, ranks):
    """layout: per group of gsize wires, (size, low) for a sorted real group with ``low``
    -inf below it and +inf above, or '+' / '-' for a group of infinities. Returns (operations,
    ops, output wires, wire -> slot) of the minimised network leaving the given ranks of the
    real values (ascending) on the output wires."""
    sizes = [g[0] for g in layout if isinstance(g, tuple)]
    counts, zo = _zero_one_groups(sizes)
    kinds, inputs, slot, base = {}, {}, {}, 0
    for g, item in enumerate(layout):
        for r in range(gsize):
            w = g * gsize + r
            if not isinstance(item, tuple):
                kinds[w] = item
                continue
            size, low = item
            kinds[w] = "-" if r < low else "r" if r < low + size else "+"
            if kinds[w] == "r":
                slot[w] = base + r - low
                inputs[w] = zo[slot[w]]
        if isinstance(item, tuple):
            base += item[0]
    net: List[Tuple[int, int]] = []
    label = _merge_padded(kinds, gsize * len(layout), gsize, net)
    neg = sum(k == "-" for k in kinds.values())
    expect = [(t >= base - counts.sum(1)).astype(np.int8) for t in ranks]
    outs = [label[t + neg] for t in ranks]
    ops = _minimize(net, outs, inputs, expect)
    return sum(mn + mx for *_, mn, mx in ops), ops, outs, slot


def _best(layouts, gsize, ranks):
    best = None
    for layout in layouts:
        r = _select(layout, gsize, ranks)
        if best is None or r[0] < best[0]:
            best = r
    return best[1:]


def _med16():
    pats = [p for p in itertools.product("r+-", repeat=8) if p.count("r") == 4]
    return _best([[(4, 0) if k == "r" else k for k in p] for p in pats], 4, range(3, 13))


def _med14():
    return _best([[(10, a), (4, b)] for a in range(7) for b in range(13)], 16, range(4, 10))


def _med11():
    return _best([[(6, a), (4, b), (1, c), "+"] for a in range(3) for b in range(5) for c in range(8)], 8, [5])


def _text(ops, slot) -> List[str]:
    items = [("CE" if mn and mx else "MN" if mn else "MX") + f"({slot[a]},{slot[b]})" for a, b, mn, mx in ops]
    return [" ".join(items[k:k + 8]) for k in range(0, len(items), 8)]


def generate_tile() -> str:
    text = ""
    for name, (ops, outs, slot) in (("MED16", _med16()), ("MED14", _med14()), ("MED11", _med11())):
        if len(outs) > 1:
            text += f"#define {name}_SEL " + ", ".join(f"v[{slot[w]}]" for w in outs) + "\n"
        else:
            text += f"#define {name}_OUT {slot[outs[0]]}\n"
        text += f"#define {name}_NET \\\n" + " \\\n".join(_text(ops, slot)) + "\n"
    check_tile(text)
    return text


def _parse_net(text: str, name: str) -> List[Tuple[str, int, int]]:
    body = re.search(r"#define " + name + r" \\\n((?:.*\\\n)*.*\n)", text).group(1)
    return [(k, int(a), int(b)) for k, a, b in re.findall(r"(CE|MN|MX)\((\d+),(\d+)\)", body)]


def _parse_sel(text: str, name: str) -> List[int]:
    return [int(s) for s in re.findall(r"v\[(\d+)\]", re.search(r"#define " + name + r" (.*)\n", text).group(1))]


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


def _parse_sort4(text: str) -> List[Tuple[str, int, int]]:
    m = re.search(r"#define SORT4_NET (.*)\n", text)
    if m is None:  # generating: not in the text
        return [("CE", a, b) for a, b in SORT4]
    return [(k, int(a), int(b)) for k, a, b in re.findall(r"(CE|MN|MX)\((\d+),(\d+)\)", m.group(1))]


def check_tile(text: str) -> Dict[str, Tuple[int, int]]:
    """Raises AssertionError unless SORT4_NET sorts 4 values, MED16_NET / MED16_SEL select
    ranks 3..12 of 4 sorted groups of 4, MED14_NET / MED14_SEL ranks 4..9 of sorted 10 and
    sorted 4, MED11_NET / MED11_OUT rank 5 of sorted 6, sorted 4 and 1 (every 0-1 input with
    sorted groups, each), and all of them together the medians of random 6x6 blocks with ties
    (the four windows of a tile); returns {name: (comparators, min/max operations)}."""
    sort4 = _parse_sort4(text)
    nets = {n: _parse_net(text, n + "_NET") for n in ("MED16", "MED14", "MED11")}
    sel16, sel14 = _parse_sel(text, "MED16_SEL"), _parse_sel(text, "MED14_SEL")
    out11 = int(re.search(r"#define MED11_OUT (\d+)", text).group(1))
    assert len(sel16) == 10 and len(sel14) == 6
    bits = np.array(list(itertools.product((0, 1), repeat=4)), np.int8)
    v = _run(sort4, {r: bits[:, r] for r in range(4)})
    assert (np.stack([v[r] for r in range(4)], 1) == np.sort(bits, 1)).all(), "SORT4_NET does not sort"
    for name, sizes, sel in (("MED16", [4, 4, 4, 4], [(t, s) for t, s in zip(range(3, 13), sel16)]),
                             ("MED14", [10, 4], [(t, s) for t, s in zip(range(4, 10), sel14)]),
                             ("MED11", [6, 4, 1], [(5, out11)])):
        counts, v = _zero_one_groups(sizes)
        v = _run(nets[name], v)
        for t, s in sel:
            assert (v[s] == (t >= sum(sizes) - counts.sum(1))).all(), f"{name}_NET: rank {t} wrong on a 0-1 input"
    rng = np.random.default_rng(0)
    for _ in range(200):
        # 64 random 6x6 blocks at once (the tile's windows are its 5x5 corners), many ties
        blk = rng.integers(0, rng.integers(2, 12), (6, 6, 64)).astype(np.float32)
        blk = np.where(rng.random((6, 6, 64)) < 0.3, rng.random((6, 6, 64)).astype(np.float32), blk)
        col = [_run(sort4, {r: blk[1 + r, c].copy() for r in range(4)}) for c in range(6)]
        v = _run(nets["MED16"], {4 * i + r: col[c][r] for i, c in enumerate((1, 2, 3, 4)) for r in range(4)})
        core = [v[s] for s in sel16]
        for dx, c in ((0, 0), (1, 5)):
            v = {i: m.copy() for i, m in enumerate(core)}
            v.update({10 + r: col[c][r] for r in range(4)})
            v = _run(nets["MED14"], v)
            mid = [v[s] for s in sel14]
            for dy, row in ((0, 0), (1, 5)):
                shared = _run(sort4, {r: blk[row, 1 + r].copy() for r in range(4)})
                w = {i: m.copy() for i, m in enumerate(mid)}
                w.update({6 + r: shared[r] for r in range(4)})
                w[10] = blk[row, c].copy()
                want = np.median(blk[dy:dy + 5, dx:dx + 5].reshape(25, -1), axis=0)
                assert (_run(nets["MED11"], w)[out11] == want).all(), "tile median wrong on a random block"
    return {n: (len(ops), _cost(ops)) for n, ops in nets.items()}


def check_med9(text: str) -> Tuple[int, int]:
    """Raises AssertionError unless SORT3_NET sorts 3 values and MED9_COLS_NET / MED9_COLS_OUT
    select the median of 3 sorted columns of 3 (every 0-1 input with sorted columns: 4^3; random
    3x3 blocks with ties through both); returns (comparators, min/max operations)."""
    sort3 = [(k, int(a), int(b)) for k, a, b in
             re.findall(r"(CE|MN|MX)\((\d+),(\d+)\)", re.search(r"#define SORT3_NET (.*)\n", text).group(1))]
    ops = [(k, int(a), int(b)) for k, a, b in
           re.findall(r"(CE|MN|MX)\((\d+),(\d+)\)", re.search(r"#define MED9_COLS_NET (.*)\n", text).group(1))]
    out = int(re.search(r"#define MED9_COLS_OUT (\d+)", text).group(1))
    bits = np.array(list(itertools.product((0, 1), repeat=3)), np.int8)
    v = _run(sort3, {r: bits[:, r] for r in range(3)})
    assert (np.stack([v[r] for r in range(3)], 1) == np.sort(bits, 1)).all(), "SORT3_NET does not sort"
    counts, v = _zero_one_groups([3, 3, 3])
    assert (_run(ops, v)[out] == (counts.sum(1) >= 5)).all(), "MED9_COLS_NET: wrong on a 0-1 input"
    rng = np.random.default_rng(0)
    for _ in range(200):
        blk = rng.integers(0, rng.integers(2, 8), (3, 3, 64)).astype(np.float32)
        blk = np.where(rng.random((3, 3, 64)) < 0.3, rng.random((3, 3, 64)).astype(np.float32), blk)
        v = {}
        for c in range(3):
            col = _run(sort3, {r: blk[r, c].copy() for r in range(3)})
            v.update({3 * c + r: col[r] for r in range(3)})
        assert (_run(ops, v)[out] == np.median(blk.reshape(9, -1), axis=0)).all(), "3x3 median wrong"
    return len(ops), _cost(ops)


if __name__ == "__main__":
    if "--check" in sys.argv:
        with open(SRC) as fh:
            src = fh.read()
        n, cost = check(src)
        print(f"flowprep/_tvl1.c: MED25_COLS_NET selects the median: {n} comparators, {cost} operations")
        for name, (n, cost) in check_tile(src).items():
            print(f"flowprep/_tvl1.c: {name}_NET is right: {n} comparators, {cost} operations")
        n, cost = check_med9(src)
        print(f"flowprep/_tvl1.c: MED9_COLS_NET selects the 3x3 median: {n} comparators, {cost} operations")
    elif "--tile" in sys.argv:
        sys.stdout.write(generate_tile())
    else:
        sys.stdout.write(generate())
