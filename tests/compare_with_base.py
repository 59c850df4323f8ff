#!/usr/bin/env python3
"""Make the same stores with this checkout and with an older commit; they must be the same.

    .venv/bin/python tests/compare_with_base.py [COMMIT] [--new-meta-keys K1,K2]
                                                 (default 50978b7, before issue 17)

The older commit is checked out with `git worktree add` into a temporary folder and run
with this checkout's Python environment (its compiled extensions copied over). Each
command of CASES runs on both sides, into two new stores:

- JPEG stores must be byte-identical, file by file (flowprep.json, meta.json, every
  JPEG, the annotation lists);
- HDF5 stores name their shards after the writing process (host, pid), so two runs
  of one version differ in names; they must hold the same videos with the same meta,
  the same stored frame bytes and the same config.

Prints one line per case and exits 1 on any difference. Used for issue 17 (the run
package refactor: "a store made by the same command before and after is byte-identical").

--new-meta-keys: keys that other work added to every video's meta.json since COMMIT
(issue 20 added "motion,motion_p95", and their per-stream variants motion_backward,
motion_warped...): a meta.json that differs only by them counts as the same, and the line
says so; every other file must still be byte-identical.
"""
from __future__ import annotations

import filecmp
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLES = os.path.join(HERE, "data", "samples")

#: (name, extra options); every case also gets --jobs 2 and the sample videos
CASES = [
    ("tvl1 default (native)", ["--short-side", "64"]),
    ("dis backward warped flow-only", ["--algo", "dis", "--short-side", "64", "--backward",
                                       "--warped", "--task", "flow"]),
    ("farneback fps/start adaptive", ["--algo", "farneback", "--short-side", "48", "--fps", "10",
                                      "--start", "0.2", "--quant", "adaptive", "--step", "2"]),
    ("rgb only", ["--task", "rgb", "--size", "40x30"]),
    ("hdf5 dis", ["--algo", "dis", "--short-side", "48", "--format", "hdf5"]),
    ("hdf5 raw", ["--algo", "dis", "--short-side", "48", "--format", "hdf5",
                  "--payload", "raw"]),
]

NEW = "from flowprep.cli.main import main; main()"
OLD = "import sys; sys.path.insert(0, {root!r}); from cli.main import main; main()"
#: commits since the CLI moved into the package (flowprep/cli/main.py)
OLD_PKG = "import sys; sys.path.insert(0, {root!r}); from flowprep.cli.main import main; main()"


def run(code: str, out: str, extra, cwd: str) -> None:
    cmd = [sys.executable, "-c", code, "extract", SAMPLES, "-o", out, "--jobs", "2",
           "--no-progress"] + extra
    p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stderr}")


def same_meta(a: str, b: str, new_keys) -> bool:
    """Two meta.json files equal once ``new_keys`` are dropped from the new one (b)."""
    with open(a, encoding="utf-8") as fa, open(b, encoding="utf-8") as fb:
        old, new = json.load(fa), json.load(fb)
    return bool(new_keys) and old == {k: v for k, v in new.items() if not is_new(k, new_keys)}


def is_new(key: str, new_keys) -> bool:
    """``key`` is one of ``new_keys`` or a per-stream variant of one (K_backward, K_warped...)."""
    return any(key == k or key.startswith(k + "_") for k in new_keys)


def same_tree(a: str, b: str, new_keys=(), relaxed=None):
    """Paths that differ between two folders (missing on one side, or other bytes)."""
    diffs = []
    cmp = filecmp.dircmp(a, b)

    def walk(c, rel):
        diffs.extend(os.path.join(rel, n) for n in c.left_only + c.right_only + c.funny_files)
        _, mismatch, errors = filecmp.cmpfiles(c.left, c.right, c.common_files, shallow=False)
        for n in mismatch:
            if n == "meta.json" and same_meta(os.path.join(c.left, n), os.path.join(c.right, n),
                                              new_keys):
                if relaxed is not None:
                    relaxed.append(os.path.join(rel, n))
                continue
            diffs.append(os.path.join(rel, n))
        diffs.extend(os.path.join(rel, n) for n in errors)
        for name, sub in c.subdirs.items():
            walk(sub, os.path.join(rel, name))
    walk(cmp, "")
    return diffs


def hdf5_content(root: str, code_root: str, new_keys=()):
    """Everything an HDF5 store holds, by video (names of shards left out)."""
    script = (
        "import sys, json, hashlib; sys.path.insert(0, %r)\n"
        "import flowprep.store as s\n"
        "st = s.open_store(%r)\n"
        "out = {'config': st.config, 'failures': st.failures}\n"
        "for vid in st.video_ids:\n"
        "    v = st[vid]; h = hashlib.sha256()\n"
        "    for i in range(v.num_frames):\n"
        "        h.update(v.rgb(i).tobytes()) if v.task != 'flow' else None\n"
        "    for i in range(v.num_flows):\n"
        "        h.update(v.flow_quantized(i).tobytes())\n"
        "    meta = dict(v.meta); meta.pop('shard', None)\n"
        "    [meta.pop(k) for k in list(meta) if any(k == n or k.startswith(n + '_') for n in %r)]\n"
        "    out[vid] = [h.hexdigest(), meta]\n"
        "print(json.dumps(out, sort_keys=True, default=str))\n") % (code_root, root, list(new_keys))
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(p.stderr)
    return json.loads(p.stdout)


def main() -> int:
    import argparse
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("commit", nargs="?", default="50978b7")
    ap.add_argument("--new-meta-keys", default="")
    args = ap.parse_args()
    commit = args.commit
    new_keys = [k for k in args.new_meta_keys.split(",") if k]
    work = tempfile.mkdtemp(prefix="flowprep-compare-")
    base = os.path.join(work, "base")
    subprocess.run(["git", "-C", HERE, "worktree", "add", "--detach", base, commit],
                   check=True, capture_output=True)
    bad = 0
    try:
        for so in glob.glob(os.path.join(HERE, "flowprep", "*.so")):
            shutil.copy(so, os.path.join(base, "flowprep"))
        for i, (name, extra) in enumerate(CASES):
            a, b = os.path.join(work, f"old{i}"), os.path.join(work, f"new{i}")
            old = OLD_PKG if os.path.exists(os.path.join(base, "flowprep", "cli", "main.py")) else OLD
            run(old.format(root=base), a, extra, work)
            run(NEW, b, extra, HERE)
            relaxed = []
            if "hdf5" in extra:
                ca, cb = hdf5_content(a, base), hdf5_content(b, HERE, new_keys)
                diffs = sorted(k for k in set(ca) | set(cb) if ca.get(k) != cb.get(k))
                if len(ca) < 2 + 3:  # config, failures and the three sample videos
                    diffs.append(f"only {len(ca) - 2} videos in the old store")
            else:
                diffs = same_tree(a, b, new_keys, relaxed)
            bad += bool(diffs)
            note = (f" (byte-identical but {len(relaxed)} meta.json, equal without "
                    f"{', '.join(new_keys)})" if relaxed else "")
            if "hdf5" in extra and new_keys and not diffs:
                note = f" (meta compared without {', '.join(new_keys)})"
            print(f"{'SAME' if not diffs else 'DIFFERENT'}  {name}: flowprep extract "
                  f"{' '.join(extra)}{note}" + (f"\n    differ: {diffs[:10]}" if diffs else ""))
    finally:
        subprocess.run(["git", "-C", HERE, "worktree", "remove", "--force", base],
                       capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
