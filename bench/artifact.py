"""Deterministic release artifacts for the fan-out benchmark.

A release is 2005 files, 19.9 MiB in all, in a small tree that looks like an application build:

    src/pkgNN/modNNN.py        1600 text files   (9.0 MiB, compressible ~3-4x)
    data/catalog-N.txt            2 text files   (1.5 MiB)
    static/assets/NNNN.bin      400 random files (6.4 MiB, incompressible)
    lib/blob-N.so                 3 random files (3.0 MiB)

Everything comes from ``random.Random(<seed>)``: the same seed gives the same bytes, file sizes and modes on
every machine. ``make_release(dest, seed)`` writes a release; ``make_release(dest, seed, changed_from=...)``
writes the "small change" variant: the release of ``seed`` with ``CHANGED_FILES`` files (7 text, 3 binary)
rewritten from another seed. Every file of a release carries the same mtime (``mtime_for(seed)``), and the
changed files of a variant a later one, as a build that leaves unchanged outputs alone would; rsync's quick
check (size + mtime) relies on that.

A ``manifest.json`` beside the tree lists every file's size and sha256, for verification on the hosts.
"""

# ruff: noqa: S311 - seeded, reproducible test data, not secrets
from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path

GENERATOR_VERSION = 3
MIB = 1 << 20
FILES = 2005
CHANGED_FILES = 10
TOTAL_BYTES = round(19.9 * MIB)

# (kind, count, byte budget)
_GROUPS = (
    ("text", 1600, 9.0 * MIB),
    ("bigtext", 2, 1.5 * MIB),
    ("bin", 400, 6.4 * MIB),
    ("bigbin", 3, 0),  # whatever is left of TOTAL_BYTES (3.0 MiB)
)
_BASE_MTIME = 1_700_000_000  # 2023-11-14; each seed gets its own day after it


def mtime_for(seed: str) -> int:
    """The mtime of every file of the release built from `seed` (distinct per seed, stable)."""
    day = int(hashlib.sha256(seed.encode()).hexdigest()[:6], 16) % 3650
    return _BASE_MTIME + day * 86400


@dataclass(frozen=True)
class Entry:
    """One file of a release: where it lives, how big it is, what makes its bytes."""

    path: str
    kind: str  # text | bigtext | bin | bigbin
    size: int
    executable: bool


def layout(seed: str) -> list[Entry]:
    """The 2005 files of the release of `seed`: paths, kinds and sizes (sum = TOTAL_BYTES)."""
    rng = random.Random(f"layout:{seed}")
    entries: list[Entry] = []
    used = 0
    for kind, count, share in _GROUPS:
        budget = share or TOTAL_BYTES - used
        weights = [rng.lognormvariate(0, 0.8) for _ in range(count)]
        scale = budget / sum(weights)
        sizes = [max(64, int(w * scale)) for w in weights]
        sizes[-1] += int(budget) - sum(sizes)  # exact budget
        for i, size in enumerate(sizes):
            if kind == "text":
                path = f"src/pkg{i // 40:02d}/mod{i % 40:03d}.py"
            elif kind == "bigtext":
                path = f"data/catalog-{i}.txt"
            elif kind == "bin":
                path = f"static/assets/{i:04d}.bin"
            else:
                path = f"lib/blob-{i}.so"
            entries.append(Entry(path, kind, size, executable=kind == "bigbin"))
            used += size
    assert len(entries) == FILES, len(entries)
    assert used == TOTAL_BYTES, used
    return entries


def _vocabulary(rng: random.Random) -> list[str]:
    letters = "abcdefghijklmnopqrstuvwxyz_"
    words = ["".join(rng.choices(letters, k=rng.randint(2, 12))) for _ in range(3000)]
    return [*words, "def", "return", "self", "import", "class", "if", "for", "in", "=", "(", ")", ":", "\n    "]


def _text(rng: random.Random, vocab: list[str], size: int) -> bytes:
    """`size` bytes of word-salad text: roughly as compressible as source code (gzip ~3.5x)."""
    out = bytearray()
    while len(out) < size:
        line = " ".join(rng.choices(vocab, k=rng.randint(4, 14)))
        out += line.encode() + b"\n"
    return bytes(out[:size])


def changed_paths(seed: str) -> list[str]:
    """The CHANGED_FILES paths that the small-change variant of `seed` rewrites (7 text, 3 binary)."""
    entries = layout(seed)
    rng = random.Random(f"changed:{seed}")
    text = [e.path for e in entries if e.kind == "text"]
    binary = [e.path for e in entries if e.kind == "bin"]
    return sorted(rng.sample(text, 7) + rng.sample(binary, 3))


def make_release(dest: Path, seed: str, *, changed_from: str | None = None) -> dict[str, dict[str, object]]:
    """Write the release of `seed` (or, with `changed_from`, the small-change variant of that release, its
    changed files made from `seed`) into `dest` (emptied first). Returns and writes the manifest."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    base = changed_from or seed
    entries = layout(base)
    changed = set(changed_paths(base)) if changed_from else set()
    vocab_cache: dict[str, list[str]] = {}
    manifest: dict[str, dict[str, object]] = {}
    for entry in entries:
        source_seed = seed if entry.path in changed else base
        rng = random.Random(f"content:{source_seed}:{entry.path}")
        if entry.kind in ("bin", "bigbin"):
            data = rng.randbytes(entry.size)
        else:
            vocab = vocab_cache.get(source_seed)
            if vocab is None:
                vocab = vocab_cache[source_seed] = _vocabulary(random.Random(f"vocab:{source_seed}"))
            data = _text(rng, vocab, entry.size)
        path = dest / entry.path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        path.chmod(0o755 if entry.executable else 0o644)
        stamp = mtime_for(source_seed)
        os.utime(path, (stamp, stamp))
        manifest[entry.path] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                                "changed": entry.path in changed}
    for folder, _, _ in os.walk(dest):
        stamp = mtime_for(base)
        os.utime(folder, (stamp, stamp))
    (dest.parent / f"{dest.name}.manifest.json").write_text(json.dumps(manifest, sort_keys=True))
    return manifest


def load_manifest(dest: Path) -> dict[str, dict[str, object]]:
    """The manifest written beside a release by make_release."""
    data: dict[str, dict[str, object]] = json.loads((dest.parent / f"{dest.name}.manifest.json").read_text())
    return data


def ensure_release(cache: Path, name: str, seed: str, *, changed_from: str | None = None) -> Path:
    """The release directory `cache/name`, generated unless a complete one of this generator version is there."""
    dest = cache / name
    stamp = cache / f"{name}.stamp"
    wanted = json.dumps({"version": GENERATOR_VERSION, "seed": seed, "changed_from": changed_from})
    if dest.is_dir() and stamp.is_file() and stamp.read_text() == wanted:
        return dest
    stamp.unlink(missing_ok=True)
    make_release(dest, seed, changed_from=changed_from)
    stamp.write_text(wanted)
    return dest


if __name__ == "__main__":  # python bench/artifact.py DEST SEED [CHANGED_FROM]: write one release
    import sys

    args = sys.argv[1:]
    if len(args) not in (2, 3):
        sys.exit("usage: python bench/artifact.py DEST SEED [CHANGED_FROM]")
    made = make_release(Path(args[0]), args[1], changed_from=args[2] if len(args) == 3 else None)
    total = sum(int(str(m["size"])) for m in made.values())
    print(f"{args[0]}: {len(made)} files, {total} bytes ({total / MIB:.1f} MiB)")
