"""Data index at scale: first scan, warm restart and index load for 20,000 to 1,000,000 files.

For each ``--sizes`` N it generates N real 2-s FLAC clips (16 kHz, a tone with noise) in
folders of 1,000, then measures in fresh processes (time and peak RSS of the process, which
holds torch as a training rank does):

* first scan: ``indexed_folder`` with no index: walk, check every file (header and last
  samples) in ``--workers`` processes, write the index;
* warm restart: the same call again: walk and stat only, nothing checked, nothing written;
* index load: ``manifest_table`` on the index, what ``--data.train INDEX.csv`` does (no walk).

``--small`` M (1,000,000 by default) adds a corpus of M real 2-s FLAC clips of a quiet tone
(about 7 KB each instead of 37 KB, so a million fit in 9 GB: 1,000 distinct encodings, each
written to 1,000 files), measured the same way. The scan's cost per file is opening it,
reading its header and decoding its last samples, which does not depend on what it holds.

    python benchmarks/index_scale.py [--sizes 20000 100000] [--small 1000000]

Prints Markdown, writes ``--json``. Generated files stay in ``--root`` for reruns
(``--clean`` removes them at the end).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

FOLDER = 1000  # files per folder
# Peak RSS from VmHWM, which starts afresh with the process's program (ru_maxrss does not: Linux
# carries it over from the parent through fork and exec, and the parent walked a million files).
CHILD = """
import json, re, sys, time
from pathlib import Path
def peak_mb():
    status = open("/proc/self/status").read()
    return int(re.search(r"VmHWM:\\s+(\\d+) kB", status).group(1)) / 1024
from escx.data.index import indexed_folder
from escx.data.table_sources import manifest_table
base = peak_mb()
what, folder, index, workers = sys.argv[1], sys.argv[2], Path(sys.argv[3]), int(sys.argv[4])
start = time.perf_counter()
if what == "load":
    table = manifest_table(index, 16000, workers, "bench")
else:
    table = indexed_folder(folder, index, 16000, workers, "bench")
seconds = time.perf_counter() - start
peak = peak_mb()
print(json.dumps({"seconds": seconds, "files": len(table), "peak_rss_mb": peak,
                  "after_imports_mb": base, "table_mb": table.nbytes / 2**20}))
"""


def say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _write_clips(args: tuple[Path, int, int]) -> None:
    import numpy as np
    import soundfile as sf

    folder, start, stop = args
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(start)
    t = np.arange(32000) / 16000
    for i in range(start, stop):
        tone = 0.3 * np.sin(2 * np.pi * (100 + i % 300) * t)
        audio = (tone + 0.003 * rng.standard_normal(t.size)).astype(np.float32)
        sf.write(folder / f"c{i:07d}.flac", audio, 16000)


def _write_small_clips(args: tuple[Path, int, int]) -> None:
    import io

    import numpy as np
    import soundfile as sf

    folder, start, stop = args
    folder.mkdir(parents=True, exist_ok=True)
    t = np.arange(32000) / 16000
    encodings = []
    for k in range(FOLDER):
        buffer = io.BytesIO()
        tone = 0.001 * np.sin(2 * np.pi * (100 + k % 300) * t) * (1 + k / FOLDER)
        sf.write(buffer, tone.astype(np.float32), 16000, format="FLAC")
        encodings.append(buffer.getvalue())
    for i in range(start, stop):
        (folder / f"c{i:07d}.flac").write_bytes(encodings[i % FOLDER])


WRITERS = {"real": _write_clips, "small": _write_small_clips}
LABELS = {"real": "real FLAC, 2 s", "small": "real FLAC, 2 s, 7 KB"}


def make_corpus(root: Path, kind: str, count: int, workers: int) -> Path:
    """``count`` clips of ``kind`` (a key of :data:`WRITERS`) under ``root/<kind>-<count>``, in
    folders of 1,000 (kept for reruns)."""
    corpus = root / f"{kind}-{count}"
    done = corpus / ".complete"
    if done.exists():
        return corpus
    jobs = [(corpus / f"d{k:04d}", k * FOLDER, min(count, (k + 1) * FOLDER))
            for k in range((count + FOLDER - 1) // FOLDER)]  # fmt: skip
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(WRITERS[kind], jobs, chunksize=8))
    done.touch()
    return corpus


def measure_corpus(root: Path, kind: str, count: int, workers: int) -> dict:
    """First scan, warm restart and index load of a generated corpus, in fresh processes."""
    corpus = make_corpus(root, kind, count, workers)
    index = root / f"{kind}-{count}.csv"
    index.unlink(missing_ok=True)
    cases = {w: measure(w, corpus, index, workers) for w in ("first", "warm", "load")}
    return {"files": count, "entries": LABELS[kind], **cases}


def measure(what: str, corpus: Path, index: Path, workers: int) -> dict:
    argv = [sys.executable, "-c", CHILD, what, str(corpus), str(index), str(workers)]
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{what} on {corpus} failed:\n{result.stderr[-3000:]}")
    row = json.loads(result.stdout.strip().splitlines()[-1])
    say(f"  {what:<6} {row['seconds']:8.1f} s  peak RSS {row['peak_rss_mb']:6.0f} MB")
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("/tmp/escx-index-bench"))
    parser.add_argument("--sizes", type=int, nargs="*", default=[20_000, 100_000])
    parser.add_argument("--small", type=int, default=1_000_000, help="0 skips it")
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--json", type=Path, default=Path("results/bench/index_scale.json"))
    parser.add_argument("--clean", action="store_true", help="remove the generated files")
    args = parser.parse_args()
    args.root.mkdir(parents=True, exist_ok=True)
    rows = []
    for count in args.sizes:
        say(f"{count:,} real files")
        rows.append(measure_corpus(args.root, "real", count, args.workers))
    if args.small:
        say(f"{args.small:,} real files (2-s FLAC of a quiet tone, 7 KB each)")
        rows.append(measure_corpus(args.root, "small", args.small, args.workers))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"workers": args.workers, "rows": rows}, indent=2) + "\n")
    say("\n| entries | first scan | warm restart | index load (--data.train INDEX.csv) |")
    say("|---|---|---|---|")
    for row in rows:
        cell = [f"{row[w]['seconds']:.1f} s, {row[w]['peak_rss_mb']:.0f} MB" if w in row else "-"
                for w in ("first", "warm", "load")]  # fmt: skip
        say(f"| {row['files']:,} {row['entries']} | " + " | ".join(cell) + " |")
    if args.clean:
        shutil.rmtree(args.root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
