"""An annotation job's folder: what it is (job.json), what is done (progress.jsonl), and the
finished chunks whose files the exports are assembled from.

    DIR/job.json              inputs, model hashes, classes, sampling, formats, format version
    DIR/progress.jsonl        one line per finished chunk, appended and synced after its files
    DIR/chunks/VIDEO/NNNNN/   a chunk's masks (and frames), and records.json, renamed in whole

A chunk is written under a temporary name, synced and renamed, and only then logged, so a job
killed at any point resumes by redoing at most the chunk it was in. Running again on the same
folder skips the logged chunks; a different job (other models, sampling or classes) is refused.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segrefine_edge.atomic import write_atomic
from segrefine_edge.errors import SegrefineError

JOB_VERSION = 1
CHUNK_FRAMES = 32        # sampled frames per chunk: a kill loses at most this much work


def file_hash(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class ChunkKey:
    video: str
    chunk: int

    @property
    def name(self) -> str:
        return f"{self.video}/{self.chunk:05d}"


class JobFolder:
    """``DIR`` of one annotation job."""

    def __init__(self, path: str | Path, spec: dict[str, Any]) -> None:
        self.path = Path(path)
        self.spec = {"version": JOB_VERSION, **spec}

    def open(self) -> set[ChunkKey]:
        """Create the job, or check it is this one; returns the chunks already finished."""
        job = self.path / "job.json"
        if job.exists():
            saved = json.loads(job.read_text())
            if saved != json.loads(json.dumps(self.spec)):
                changed = sorted(k for k in set(saved) | set(self.spec) if saved.get(k) != self.spec.get(k))
                raise SegrefineError(f"{self.path} holds another annotation job (it differs in {', '.join(changed)}); "
                                     "rerun it as it was, or choose a new --out")
        else:
            self.path.mkdir(parents=True, exist_ok=True)
            write_atomic(job, json.dumps(self.spec, indent=1, sort_keys=True).encode())
        for leftover in (self.path / "chunks").glob("*/.tmp-*"):
            shutil.rmtree(leftover, ignore_errors=True)        # a chunk a killed run was writing
        return self.finished()

    def finished(self) -> set[ChunkKey]:
        log = self.path / "progress.jsonl"
        if not log.exists():
            return set()
        done = set()
        for line in log.read_text().splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue                    # a line cut short by a kill: its chunk is redone
            key = ChunkKey(entry["video"], entry["chunk"])
            if self.chunk_dir(key).is_dir():
                done.add(key)
        return done

    def chunk_dir(self, key: ChunkKey) -> Path:
        return self.path / "chunks" / key.video / f"{key.chunk:05d}"

    def staging_dir(self, key: ChunkKey) -> Path:
        """Where a chunk is written before it is renamed into place (wiped first)."""
        staging = self.path / "chunks" / key.video / f".tmp-{key.chunk:05d}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        return staging

    def commit(self, key: ChunkKey, staging: Path) -> None:
        """Sync the chunk's files, rename the chunk into place, then log it (synced too)."""
        for item in staging.iterdir():
            with open(item, "rb") as fh:
                os.fsync(fh.fileno())
        final = self.chunk_dir(key)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(staging, final)
        with open(self.path / "progress.jsonl", "a") as fh:
            fh.write(json.dumps({"video": key.video, "chunk": key.chunk}) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def records(self) -> list[dict]:
        """Every finished frame's record, in video and frame order."""
        records = []
        for key in sorted(self.finished(), key=lambda k: (k.video, k.chunk)):
            records += json.loads((self.chunk_dir(key) / "records.json").read_text())
        return records
