"""Corruption that keeps a file's size (issue 20, item 2): flipped bytes in a saved model, in a checkpoint
and in a cached download are found when the file is loaded; the data fingerprint sees a 2x2 swap of counts
that keeps every row and column total."""

from __future__ import annotations

import os
import struct
import zipfile

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from cradlekit.data import counterfactual_references, simulate_perturbseq, split_combinations
from cradlekit.errors import CheckpointError, CheckpointMismatchError
from cradlekit.model import PerturbationModel
from cradlekit.qc import label_artifacts

SMALL = dict(latent_dim=4, hidden_dim=16, num_particles=1)
FAST = dict(batch_size=128, lr=1e-3, progress_bar=False, accelerator="cpu")

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def prepared():
    adata = simulate_perturbseq(n_cells=600, n_genes=150, true_ate_cells=20, seed=1)
    label_artifacts(adata)
    split_combinations(adata, seed=0)
    counterfactual_references(adata)
    return adata


def flip_tensor_bytes(path, n: int = 200) -> None:
    """Invert ``n`` bytes in the middle of the largest tensor record of a torch zip file; size kept."""
    with zipfile.ZipFile(path) as zf:
        info = max((i for i in zf.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    data = bytearray(path.read_bytes())
    name_len, extra_len = struct.unpack("<HH", data[info.header_offset + 26 : info.header_offset + 30])
    start = info.header_offset + 30 + name_len + extra_len + info.file_size // 2 - n // 2
    size = len(data)
    data[start : start + n] = bytes(b ^ 0xFF for b in data[start : start + n])
    path.write_bytes(bytes(data))
    assert path.stat().st_size == size


def test_flipped_bytes_in_a_saved_model_are_refused(prepared, tmp_path):
    model = PerturbationModel(prepared.copy(), **SMALL)
    model.train(max_epochs=2, **FAST)
    model.save(tmp_path / "saved")
    PerturbationModel.load(tmp_path / "saved")  # intact: loads
    weights = tmp_path / "saved" / "model.pt"
    flip_tensor_bytes(weights)
    torch.load(weights, weights_only=True)  # torch itself does not notice
    with pytest.raises(CheckpointError, match="does not match the checksum") as err:
        PerturbationModel.load(tmp_path / "saved")
    assert str(weights) in str(err.value)


def test_flipped_bytes_in_last_pt_are_refused_on_resume(prepared, tmp_path):
    ckpt = tmp_path / "ckpt"
    PerturbationModel(prepared.copy(), **SMALL).train(max_epochs=2, checkpoint_dir=ckpt, **FAST)
    last = ckpt / "last.pt"
    flip_tensor_bytes(last)
    before = last.read_bytes()
    with pytest.raises(CheckpointError, match="does not match the checksum") as err:
        PerturbationModel(prepared.copy(), **SMALL).train(max_epochs=3, checkpoint_dir=ckpt, **FAST)
    assert str(last) in str(err.value) and last.read_bytes() == before  # refused, and left as it was


def test_every_saved_file_records_its_checksum(tmp_path):
    from cradlekit.train import load_checkpoint, save_checkpoint
    from cradlekit.train.state_digest import CHECKSUM_KEY, state_digest

    state = {"epoch": 3, "w": torch.arange(6.0).reshape(2, 3), "history": [{"loss": 0.5}], "best": None}
    save_checkpoint(state, tmp_path / "x.pt")
    raw = torch.load(tmp_path / "x.pt", weights_only=True)
    assert raw[CHECKSUM_KEY] == state_digest(state)  # the digest of what was saved, stored with it
    loaded = load_checkpoint(tmp_path / "x.pt")
    assert CHECKSUM_KEY not in loaded and torch.equal(loaded["w"], state["w"]) and loaded["epoch"] == 3
    # an edit that keeps the file well-formed is refused too (epoch 3 -> 4)
    torch.save({**raw, "epoch": 4}, tmp_path / "x.pt")
    with pytest.raises(CheckpointError, match="does not match the checksum"):
        load_checkpoint(tmp_path / "x.pt")


def test_the_digest_sees_every_kind_of_content():
    from cradlekit.train.state_digest import state_digest

    base = {"a": torch.zeros(3), "n": 1, "s": "x", "l": [1.0, None]}
    variants = [
        {**base, "a": torch.tensor([0.0, 0.0, 1e-30])},  # one value
        {**base, "a": torch.zeros(3, dtype=torch.float64)},  # dtype
        {**base, "a": torch.zeros(1, 3)},  # shape
        {**base, "n": 1.0},  # int vs float
        {**base, "s": "y"},
        {**base, "l": [1.0, 0]},
        {**base, "extra": None},
        {**base, "a": torch.zeros(3, dtype=torch.bfloat16)},  # a dtype numpy does not have
    ]
    digests = {state_digest(v) for v in variants}
    assert len(digests) == len(variants) and state_digest(base) not in digests
    assert state_digest(dict(reversed(list(base.items())))) == state_digest(base)  # key order does not matter


# ------------------------------------------------------------------ data fingerprint
def _swap_2x2(adata, rows):
    """+1/-1/-1/+1 on two cells x two genes: every cell's and every gene's total is unchanged."""
    X = sp.csr_matrix(adata.X, dtype=np.float64).toarray()
    for i in rows:
        for j in rows:
            if i == j:
                continue
            a = int(np.flatnonzero(X[j] > 0)[0])
            b = int(next(g for g in np.flatnonzero(X[i] > 0) if g != a and X[j, g] >= 0))
            X[i, a] += 1
            X[i, b] -= 1
            X[j, a] -= 1
            X[j, b] += 1
            out = adata.copy()
            out.X = sp.csr_matrix(X.astype(np.float32))
            return out
    raise AssertionError("no pair of cells to swap")


def test_adata_fingerprint_sees_a_swap_that_keeps_every_total(prepared):
    from cradlekit.model._fingerprint import adata_fingerprint

    model = PerturbationModel(prepared.copy(), **SMALL)
    fit = np.flatnonzero(prepared.obs["split"].isin(["train", "val"]).to_numpy())
    swapped = _swap_2x2(prepared, fit[:5])
    X0, X1 = sp.csr_matrix(prepared.X), sp.csr_matrix(swapped.X)
    assert (X0 != X1).nnz == 4  # the attack: four counts changed ...
    assert np.array_equal(X0.sum(0), X1.sum(0)) and np.array_equal(X0.sum(1), X1.sum(1))  # ... no total did
    before, after = adata_fingerprint(prepared, model.registry), adata_fingerprint(swapped, model.registry)
    assert before["counts"] == after["counts"]  # totals alone cannot see it
    assert before["content"] != after["content"]
    dense = prepared.copy()
    dense.X = X0.toarray().astype(np.int64)  # the same counts stored otherwise: the same fingerprint
    assert adata_fingerprint(dense, model.registry) == before


def test_adata_fingerprint_is_the_same_for_a_backed_file(prepared, tmp_path):
    import anndata as ad

    from cradlekit.model._fingerprint import adata_fingerprint

    registry = PerturbationModel(prepared.copy(), **SMALL).registry
    prepared.write_h5ad(tmp_path / "x.h5ad")
    backed = ad.read_h5ad(tmp_path / "x.h5ad", backed="r")
    try:  # read in row chunks from disk: the same content digest as in memory
        assert adata_fingerprint(backed, registry) == adata_fingerprint(prepared, registry)
    finally:
        backed.file.close()


def test_resuming_on_swapped_counts_is_refused(prepared, tmp_path):
    fit = np.flatnonzero(prepared.obs["split"].isin(["train", "val"]).to_numpy())
    PerturbationModel(prepared.copy(), **SMALL).train(max_epochs=1, checkpoint_dir=tmp_path, **FAST)
    swapped = _swap_2x2(prepared, fit[:5])
    with pytest.raises(CheckpointMismatchError, match=r"data\.content"):
        PerturbationModel(swapped, **SMALL).train(max_epochs=2, checkpoint_dir=tmp_path, **FAST)


def test_trainer_fingerprint_of_cell_batches_sees_a_swap(prepared):
    from cradlekit.train import CellBatches
    from cradlekit.train.fingerprint import batch_source_fingerprint

    fit = np.flatnonzero(prepared.obs["split"].isin(["train", "val"]).to_numpy())
    swapped = _swap_2x2(prepared, fit[:5])
    before = batch_source_fingerprint(CellBatches(sp.csr_matrix(prepared.X), fit), None)
    assert batch_source_fingerprint(CellBatches(sp.csr_matrix(prepared.X), fit), None) == before
    assert batch_source_fingerprint(CellBatches(sp.csr_matrix(swapped.X), fit), None) != before


# ------------------------------------------------------------------ cached downloads
@pytest.mark.parametrize("process", ["same process", "new process"])
def test_a_cached_download_changed_with_size_and_mtime_kept_is_not_used(isolated_data_env, process):
    import hashlib

    from cradlekit.data import download as download_mod
    from cradlekit.data.manifest import DatasetEntry
    from cradlekit.errors import DatasetNotAvailableError

    content = b"cradlekit cached payload\n" * 200
    entry = DatasetEntry(name="toy", description="-", filename="toy.h5ad", format="h5ad", citation="-", license="-",
                         url=None, sha256=hashlib.sha256(content).hexdigest())
    cache = isolated_data_env
    cache.mkdir(parents=True)
    cached = cache / "toy.h5ad"
    cached.write_bytes(content)
    assert download_mod.fetch(entry, cache_dir=cache, download=False) == cached  # verified once
    st = cached.stat()
    flipped = bytearray(content)
    flipped[100:110] = bytes(b ^ 0xFF for b in flipped[100:110])
    with open(cached, "r+b") as fh:  # in place: same inode, same size
        fh.write(bytes(flipped))
    os.utime(cached, ns=(st.st_atime_ns, st.st_mtime_ns))  # and the modification time put back
    assert cached.stat().st_size == st.st_size and cached.stat().st_mtime_ns == st.st_mtime_ns
    if process == "new process":  # nothing hashed yet in this process
        getattr(download_mod, "_HASHED", {}).clear()
    with pytest.raises(DatasetNotAvailableError, match="no verified local copy"):
        download_mod.fetch(entry, cache_dir=cache, download=False)
    moved = list((cache / ".moved-aside").iterdir())
    assert [m.read_bytes() for m in moved] == [bytes(flipped)]  # moved aside, not deleted
