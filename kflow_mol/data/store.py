"""The prepared-cluster container: concatenated arrays + per-cluster counts, memory-mapped.

One file, ``clusters.safetensors``, holds every cluster of a prepared dataset as a few long
arrays (all atoms of all clusters one after another, all molecules likewise) plus per-cluster
atom / molecule / metadata counts; cluster ``k`` is the slice between the running sums of
the counts. :class:`ClusterStore` maps the file with :class:`numpy.memmap` and builds one
:class:`~kflow_mol.data.dataset.AssemblyData` on request, so resident memory is the
working set (the pages of the clusters touched), not the dataset.

Why safetensors, read through ``numpy.memmap``:

* it is a documented, maintained, pickle-free single-file format (a JSON header naming each
  array's dtype, shape and byte range, then the raw little-endian bytes), so a prepared
  dataset is one file that other tools (``safetensors.safe_open``) read too;
* its layout is exactly "arrays at fixed offsets", so ``numpy.memmap`` maps them with no
  extra dependency, zero copies and no per-cluster file; a forked DataLoader worker or every
  DDP rank on one machine maps the same file and shares its page cache;
* HDF5 (h5py) would add a dependency that is not installed here, handles that are not
  fork-safe, and chunking/compression that buys nothing for float32 coordinates; one
  ``.npy`` per array would be many files per dataset.

The writer streams: it writes the header from the sizes, then copies array after array slice
by slice, so merging the shards of a 133K-cluster preparation never holds them all in RAM.
Stored dtypes are compact where it is lossless (``z`` uint8, ``mol_index`` int32); reading
restores the record's dtypes, so a cluster read back is bit-identical to the one written.
"""

from __future__ import annotations

import json
import mmap
import os
import struct
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch

STORE_NAME = "clusters.safetensors"
STORE_VERSION = 1
PER_ATOM = ("z", "mol_index", "pos_start", "pos_target", "body")
PER_MOLECULE = (
    "rot_start",
    "trans_start",
    "rot_target",
    "trans_target",
    "rot_start_to_target",
    "trans_start_to_target",
)
META_FIELDS = ("cluster_id", "crystal_id", "formula", "source", "synthetic", "start_scheme")
COUNTS = ("atom_count", "mol_count", "meta_count")
# stored dtype, tail shape; ordered by item size so every array starts aligned
LAYOUT: dict[str, tuple[str, tuple[int, ...]]] = {
    "atom_count": ("<i8", ()),
    "mol_count": ("<i8", ()),
    "meta_count": ("<i8", ()),
    "pos_start": ("<f4", (3,)),
    "pos_target": ("<f4", (3,)),
    "body": ("<f4", (3,)),
    "rot_start": ("<f4", (3, 3)),
    "trans_start": ("<f4", (3,)),
    "rot_target": ("<f4", (3, 3)),
    "trans_target": ("<f4", (3,)),
    "rot_start_to_target": ("<f4", (3, 3)),
    "trans_start_to_target": ("<f4", (3,)),
    "mol_index": ("<i4", ()),
    "z": ("|u1", ()),
    "meta": ("|u1", ()),
}
SAFETENSORS_DTYPE = {"<i8": "I64", "<f4": "F32", "<i4": "I32", "|u1": "U8"}
RELEASE_EVERY = 1024  # clusters read between two releases of the mapped pages (see ClusterStore.release)
READ_DTYPE = {"z": torch.long, "mol_index": torch.long}  # others keep the stored dtype


class StoreFormatError(ValueError):
    """A cluster container that cannot be read (truncated, foreign, or another version)."""


def _group(name: str) -> str:
    if name in PER_ATOM:
        return "atom"
    if name in PER_MOLECULE:
        return "mol"
    return "meta" if name == "meta" else "cluster"


def cluster_block(clusters: Sequence) -> dict[str, np.ndarray]:
    """The arrays of :data:`LAYOUT` for in-memory clusters (``AssemblyData`` records)."""
    metas = [json.dumps({key: c[key] for key in META_FIELDS}).encode() for c in clusters]
    block = {
        "atom_count": np.array([c.num_nodes for c in clusters], dtype=np.int64),
        "mol_count": np.array([c.num_mols for c in clusters], dtype=np.int64),
        "meta_count": np.array([len(m) for m in metas], dtype=np.int64),
        "meta": np.frombuffer(b"".join(metas), dtype=np.uint8),
    }
    for name in PER_ATOM + PER_MOLECULE:
        dtype, tail = LAYOUT[name]
        parts = [c[name].numpy() for c in clusters]
        array = np.concatenate(parts) if parts else np.zeros((0, *tail))
        if name == "z" and array.size and (array.min() < 0 or array.max() > 255):
            raise ValueError("atomic numbers must be in 0..255 to be stored")
        block[name] = np.ascontiguousarray(array.astype(dtype, copy=False))
    return block


def _ptr(counts: np.ndarray) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(counts, dtype=np.int64)])


class ClusterStore:
    """A memory-mapped cluster container (read only; re-mapped lazily after pickling).

    Args:
        path: a file written by :func:`write_store`.

    Raises:
        StoreFormatError: a file that is not a container of this version (one line naming it).
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._arrays: dict[str, np.ndarray] | None = None
        self._reads = 0
        self._fd: tuple[int, int] | None = None  # (pid, descriptor): one per process
        arrays = self.arrays
        self.ptr = {group: _ptr(arrays[f"{group}_count"]) for group in ("atom", "mol", "meta")}
        self.offsets = {name: _file_offset(array) for name, array in arrays.items()}

    def __len__(self) -> int:
        return len(self.ptr["atom"]) - 1

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_arrays": None, "_fd": None}  # a spawned worker maps / opens the file itself

    def __del__(self) -> None:
        if self._fd is not None and self._fd[0] == os.getpid():
            os.close(self._fd[1])

    def read(self, name: str, k: int) -> np.ndarray:
        """The rows of array ``name`` of cluster ``k``, read into a fresh array (``pread``).

        Reading through the mapping would map ~1 MB of neighbouring pages per random cluster
        (the kernel's fault-around and read-ahead), which then counts in the RSS; ``pread``
        copies exactly the bytes asked for, so memory stays at the clusters in use.
        """
        if not hasattr(os, "preadv") or self.offsets[name] is None:
            return np.array(self.slice(name, k))
        if self._fd is None or self._fd[0] != os.getpid():
            self._fd = (os.getpid(), os.open(self.path, os.O_RDONLY))
        dtype, tail = LAYOUT[name]
        ptr = self.ptr[_group(name)]
        out = np.empty((int(ptr[k + 1] - ptr[k]), *tail), dtype=dtype)
        row_bytes = out.itemsize * int(np.prod(tail, dtype=np.int64))
        if out.nbytes and os.preadv(self._fd[1], [out], self.offsets[name] + int(ptr[k]) * row_bytes) != out.nbytes:
            raise StoreFormatError(f"{self.path}: short read of {name} for cluster {k}")
        return out

    @property
    def arrays(self) -> dict[str, np.ndarray]:
        """Every stored array as a read-only memory-mapped view."""
        if self._arrays is None:
            self._arrays = _map_arrays(self.path)
        return self._arrays

    def slice(self, name: str, k: int) -> np.ndarray:
        """The (mapped) rows of array ``name`` that belong to cluster ``k``."""
        ptr = self.ptr[_group(name)]
        return self.arrays[name][ptr[k] : ptr[k + 1]]

    def meta(self, k: int) -> dict:
        """The metadata fields of cluster ``k``."""
        return json.loads(self.read("meta", k).tobytes())

    def cluster(self, k: int):
        """Cluster ``k`` as an ``AssemblyData`` (fresh tensors; nothing stays mapped)."""
        from kflow_mol.data.dataset import AssemblyData

        if not -len(self) <= k < len(self):
            raise IndexError(f"cluster {k} out of range for {len(self)} clusters")
        k = k % len(self)
        self._reads += 1
        if self._reads % RELEASE_EVERY == 0:
            self.release()
        fields = {}
        for name in PER_ATOM + PER_MOLECULE:
            array = torch.from_numpy(self.read(name, k))
            fields[name] = array.to(READ_DTYPE[name]) if name in READ_DTYPE else array
        num_mols = int(self.ptr["mol"][k + 1] - self.ptr["mol"][k])
        return AssemblyData(
            **fields,
            pos=fields["pos_start"],
            num_mols=num_mols,
            mol_batch=torch.zeros(num_mols, dtype=torch.long),
            **self.meta(k),
        )

    def release(self) -> None:
        """Drop the mapped pages from this process's resident set (they stay in the page cache).

        Read pages of a file mapping count as resident until the kernel needs the memory; a
        training run that reads every cluster would otherwise show the whole file in its RSS.
        """
        if self._arrays:
            release_pages(self._arrays["z"])


def release_pages(array: np.ndarray) -> None:
    """``madvise(MADV_DONTNEED)`` on the file mapping under ``array`` (nothing for an in-memory array)."""
    root = array
    while isinstance(root, np.ndarray) and not isinstance(root.base, mmap.mmap):
        root = root.base
    if isinstance(root, np.ndarray) and hasattr(mmap, "MADV_DONTNEED"):
        root.base.madvise(mmap.MADV_DONTNEED)


def _file_offset(array: np.ndarray) -> int | None:
    """Byte offset in the file of a mapped array (None for an empty or unmapped one)."""
    root = array
    while isinstance(root, np.ndarray) and not isinstance(root.base, mmap.mmap):
        root = root.base
    if not isinstance(root, np.ndarray) or not array.size:
        return None
    return root.offset + array.__array_interface__["data"][0] - root.__array_interface__["data"][0]


def _map_arrays(path: Path) -> dict[str, np.ndarray]:
    """Parse the safetensors header and map each array (checks names, sizes and version)."""
    try:
        with open(path, "rb") as handle:
            (size,) = struct.unpack("<Q", handle.read(8))
            header = json.loads(handle.read(size))
        total = path.stat().st_size
    except (OSError, ValueError, struct.error) as error:
        raise StoreFormatError(f"{path}: not a readable cluster container ({error})") from None
    version = header.get("__metadata__", {}).get("kflow_cluster_store")
    if version != str(STORE_VERSION) or set(header) - {"__metadata__"} != set(LAYOUT):
        raise StoreFormatError(f"{path}: cluster container version {version} != {STORE_VERSION}; rebuild it")
    start = 8 + size
    mapped = np.memmap(path, dtype=np.uint8, mode="r") if total > start else np.zeros(0, np.uint8)
    arrays = {}
    for name, (dtype, tail) in LAYOUT.items():
        begin, end = header[name]["data_offsets"]
        if start + end > total:
            raise StoreFormatError(f"{path}: truncated at array {name} ({total} bytes)")
        raw = mapped[start + begin : start + end] if end > begin else np.zeros(0, np.uint8)
        arrays[name] = raw.view(dtype).reshape(-1, *tail)
    return arrays


def write_store(path: str | Path, parts: Iterable[tuple[dict[str, np.ndarray], Sequence[int] | None]]) -> int:
    """Write the clusters of several blocks into one container, streaming, atomically.

    Args:
        path: the container to write (replaced atomically: a tmp file, then ``os.replace``).
        parts: ``(block, clusters)`` pairs in output order; a block maps each name of
            :data:`LAYOUT` to its array (e.g. :func:`cluster_block`, ``ClusterStore.arrays``),
            ``clusters`` picks (in order) which of its clusters to keep; None keeps them all.
            It is iterated twice (sizes, then bytes), so pass a list.

    Returns:
        The number of clusters written.
    """
    parts = [(block, _runs(block, keep)) for block, keep in parts]
    sizes = {name: 0 for name in LAYOUT}
    for block, runs in parts:
        for name in LAYOUT:
            ptr = _block_ptr(block, name)
            sizes[name] += sum(int(ptr[b] - ptr[a]) for a, b in runs)
    header, offset = {"__metadata__": {"kflow_cluster_store": str(STORE_VERSION)}}, 0
    for name, (dtype, tail) in LAYOUT.items():
        nbytes = sizes[name] * int(np.prod(tail, dtype=np.int64)) * np.dtype(dtype).itemsize
        shape = [sizes[name], *tail]
        header[name] = {"dtype": SAFETENSORS_DTYPE[dtype], "shape": shape, "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the data start stays 8-byte aligned
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as handle:
        handle.write(struct.pack("<Q", len(text)) + text)
        for name, (dtype, _) in LAYOUT.items():
            for block, runs in parts:
                ptr = _block_ptr(block, name)
                for a, b in runs:
                    handle.write(np.ascontiguousarray(block[name][ptr[a] : ptr[b]], dtype=dtype).tobytes())
                release_pages(block[name])  # a mapped part: its pages leave the RSS once copied
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    return sum(b - a for _, runs in parts for a, b in runs)


def _block_ptr(block: dict[str, np.ndarray], name: str) -> np.ndarray:
    group = _group(name)
    return np.arange(len(block["atom_count"]) + 1) if group == "cluster" else _ptr(block[f"{group}_count"])


def _runs(block: dict[str, np.ndarray], keep: Sequence[int] | None) -> list[tuple[int, int]]:
    """Consecutive ``[a, b)`` cluster ranges covering ``keep`` in order (one copy per range)."""
    if keep is None:
        return [(0, len(block["atom_count"]))] if len(block["atom_count"]) else []
    runs: list[tuple[int, int]] = []
    for k in keep:
        if runs and runs[-1][1] == k:
            runs[-1] = (runs[-1][0], k + 1)
        else:
            runs.append((int(k), int(k) + 1))
    return runs
