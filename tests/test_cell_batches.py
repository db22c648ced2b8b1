"""Sparse host data, dense per batch (cradlekit.train.CellBatches): same numbers as the dense path,
backed h5ad training and resume, memory that does not grow with the number of cells."""

from __future__ import annotations

import tracemalloc

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp
import torch

from cradlekit.data import counterfactual_references, simulate_perturbseq, split_combinations
from cradlekit.model import PerturbationModel
from cradlekit.model._batches import build_batches
from cradlekit.model._setup import build_tensors
from cradlekit.qc import label_artifacts
from cradlekit.train import CellBatches, DeviceData, TrainConfig, Trainer

SMALL = dict(latent_dim=8, hidden_dim=32, num_particles=2)
FAST = dict(batch_size=64, lr=1e-3, progress_bar=False, accelerator="cpu", patience=None)

pytestmark = [
    pytest.mark.usefixtures("single_thread"),
    pytest.mark.filterwarnings("ignore:QC criterion 'doublet' skipped"),
]


def _screen(n_cells: int, n_genes: int = 160, seed: int = 3):
    adata = simulate_perturbseq(n_cells=n_cells, n_genes=n_genes, true_ate_cells=20, seed=seed)
    label_artifacts(adata, run_scrublet=False)
    split_combinations(adata, seed=0)
    counterfactual_references(adata, n_max=10)
    return adata


@pytest.fixture(scope="module")
def screen():
    return _screen(900)


def _grads(module, batch, seed=0):
    module.zero_grad(set_to_none=True)
    torch.manual_seed(seed)
    loss, _ = module.loss(batch)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in module.named_parameters() if p.grad is not None}


def test_sparse_batch_equals_the_dense_path_losses_and_gradients(screen):
    model = PerturbationModel(screen, **SMALL)
    dense = build_tensors(screen, model.registry)["train"]  # the previous, independent dense path
    sparse = model._datasets()["train"]
    assert isinstance(sparse, CellBatches) and sp.issparse(sparse.X)
    pos = np.random.default_rng(0).permutation(len(sparse))[:96]
    a = {k: v[torch.from_numpy(pos)] for k, v in dense.items()}
    b = sparse.take(pos)
    assert set(a) == set(b) == {"X", "D", "A", "X_cf", "cf_mask"}
    for k in a:
        assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), k
    loss_a, grad_a = _grads(model.module, a)
    loss_b, grad_b = _grads(model.module, b)
    assert torch.isfinite(loss_a) and torch.equal(loss_a, loss_b)
    assert grad_a.keys() == grad_b.keys() and len(grad_a) > 5
    assert all(torch.equal(grad_a[n], grad_b[n]) for n in grad_a)


def test_training_follows_the_dense_trajectory(screen):
    """Same shuffling draws, same batches: two epochs give the same losses and weights."""
    model = PerturbationModel(screen, **SMALL)
    dense = build_tensors(screen, model.registry)
    sparse = model._datasets()
    start = {k: v.clone() for k, v in model.module.state_dict().items()}
    cfg = TrainConfig(batch_size=64, max_epochs=2, patience=None, progress_bar=False, lr=1e-3)
    runs = []
    for train, val in ((DeviceData(dense["train"]), DeviceData(dense["val"])), (sparse["train"], sparse["val"])):
        model.module.load_state_dict(start)
        history = Trainer(model.module, train, val, config=cfg).fit()
        runs.append(
            (
                [(r["train_loss"], r["val_loss"]) for r in history],
                {k: v.clone() for k, v in model.module.state_dict().items()},
            )
        )
    assert runs[0][0] == runs[1][0]
    assert all(torch.equal(runs[0][1][k], runs[1][1][k]) for k in runs[0][1])


def test_backed_chunks_visit_every_cell_once_and_match_memory(screen, tmp_path):
    path = tmp_path / "screen.h5ad"
    screen.write_h5ad(path)
    backed = ad.read_h5ad(path, backed="r")
    model = PerturbationModel(screen, **SMALL)
    disk = build_batches(backed, model.registry, chunk_cells=64, buffer_chunks=2)["train"]
    mem = model._datasets()["train"]
    assert not disk.in_memory and len(disk) == len(mem)
    g = torch.Generator().manual_seed(0)
    seen = [batch["X"] for batch in disk.batches(32, shuffle=True, generator=g)]
    assert len(seen) == -(-len(disk) // 32) and sum(x.shape[0] != 32 for x in seen) == 1  # one short batch
    X_all = torch.cat(seen)
    ref = mem.take(np.arange(len(mem)))["X"]
    # a permutation of the training cells: sorted rows agree
    key = lambda T: T[torch.from_numpy(np.lexsort(T.numpy().T[::-1].copy()))]  # noqa: E731
    assert torch.equal(key(X_all), key(ref))
    pos = np.array([5, 600, 3, 64, 65, 5])
    a, b = disk.take(pos), mem.take(pos)
    assert all(torch.equal(a[k], b[k]) for k in a)
    backed.file.close()


def test_backed_h5ad_trains_and_resumes(screen, tmp_path):
    path = tmp_path / "screen.h5ad"
    screen.write_h5ad(path)

    def run(epochs, ckpt):
        backed = ad.read_h5ad(path, backed="r")
        model = PerturbationModel(backed, **SMALL)
        model._data = build_batches(backed, model.registry, chunk_cells=128, buffer_chunks=2)
        history = model.train(max_epochs=epochs, checkpoint_dir=ckpt, **FAST)
        backed.file.close()
        return history, model

    full, full_model = run(3, tmp_path / "full")
    run(2, tmp_path / "cut")
    resumed, resumed_model = run(3, tmp_path / "cut")  # picks up last.pt after epoch 2
    assert len(full) == len(resumed) == 3
    assert [r["train_loss"] for r in full] == [r["train_loss"] for r in resumed]
    assert np.isfinite(full[-1]["val_loss"]) and full[-1]["train_loss"] < full[0]["train_loss"]
    sa, sb = full_model.module.state_dict(), resumed_model.module.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def _peak_bytes(fn) -> int:
    """Peak bytes allocated through Python/numpy while ``fn`` runs (tracemalloc)."""
    tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    try:
        fn()
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


def test_training_memory_does_not_grow_with_the_number_of_cells():
    """Peak memory allocated while training, on screens of 1x and 4x the cells: flat on the sparse
    path, growing by cells x genes on the dense path (which shows the measurement can see it).

    CPU here, so the device is the host: the host-side sources (the CSR counts, which belong to
    ``adata``, and the reference table) are built before measuring, as on CUDA they never leave the host.
    """
    small, large = _screen(1000, n_genes=300, seed=1), _screen(4000, n_genes=300, seed=1)
    fast = {**FAST, "batch_size": 256}
    PerturbationModel(small, **SMALL).train(max_epochs=1, **fast)  # first-use imports and caches, unmeasured
    peaks = {}
    for name, adata in (("small", small), ("large", large)):
        model = PerturbationModel(adata, **SMALL)
        model._datasets()
        peaks[name, "sparse"] = _peak_bytes(lambda model=model: model.train(max_epochs=1, **fast))
        model = PerturbationModel(adata, **SMALL)

        def dense(adata=adata, model=model):
            t = build_tensors(adata, model.registry)
            cfg = TrainConfig(batch_size=256, max_epochs=1, patience=None, progress_bar=False)
            Trainer(model.module, DeviceData(t["train"]), DeviceData(t["val"]), config=cfg).fit()

        peaks[name, "dense"] = _peak_bytes(dense)
    n_fit = lambda a: int(a.obs["split"].isin(["train", "val"]).sum())  # noqa: E731
    # what the dense path must hold in addition: X and X_cf of the extra cells, float32
    extra = 2 * 4 * 300 * (n_fit(large) - n_fit(small))
    grow_dense = peaks["large", "dense"] - peaks["small", "dense"]
    grow_sparse = peaks["large", "sparse"] - peaks["small", "sparse"]
    assert grow_dense > 0.8 * extra  # the measurement sees cells x genes allocations
    assert grow_sparse < 0.05 * extra, (grow_sparse, extra, peaks)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_peak_allocated_does_not_grow_with_the_number_of_cells():
    peaks = []
    for n in (1000, 4000):
        model = PerturbationModel(_screen(n, n_genes=300, seed=1), **SMALL)
        torch.cuda.reset_peak_memory_stats()
        model.train(max_epochs=1, **{**FAST, "batch_size": 256, "accelerator": "cuda"})
        peaks.append(torch.cuda.max_memory_allocated())
    assert peaks[1] < 1.05 * peaks[0] + 2**20, peaks


def test_qc_labels_on_a_backed_file_match_in_memory(screen, tmp_path):
    """label_artifacts reads a backed h5ad in chunks and gives the in-memory labels."""
    path = tmp_path / "screen.h5ad"
    screen.write_h5ad(path)
    backed = ad.read_h5ad(path, backed="r")
    mem = screen.copy()
    label_artifacts(mem, run_scrublet=False)
    label_artifacts(backed, run_scrublet=False)
    for col in ("total_counts", "n_genes_by_counts", "pct_counts_mt", "artifact_k3", "artifact_k5"):
        np.testing.assert_array_equal(backed.obs[col].to_numpy(), mem.obs[col].to_numpy())
    backed.file.close()


def test_mixed_index_dtypes_are_aligned_without_copying_the_counts():
    """anndata can read CSR with int32 indices and int64 indptr; scipy would then cast every index
    on each row selection. The batch source narrows indptr and shares data and indices."""
    X = sp.random(300, 40, density=0.2, format="csr", dtype=np.float32, random_state=0)
    X.indptr, X.indices = X.indptr.astype(np.int64), X.indices.astype(np.int32)
    source = CellBatches(X, np.arange(0, 300, 2))
    assert source.X.indptr.dtype == source.X.indices.dtype == np.int32
    assert np.shares_memory(source.X.data, X.data) and np.shares_memory(source.X.indices, X.indices)
    np.testing.assert_array_equal(source.take(np.array([3, 0, 149]))["X"].numpy(), X[[6, 0, 298]].toarray())


@pytest.mark.parametrize("name", ["svae_plus", "cvae"])
def test_baseline_batches_equal_the_dense_path(screen, name):
    """Condition one-hots (sVAE+) and plain dosages: the gathered batch is the dense path's rows."""
    model = PerturbationModel(screen, model=name, **SMALL)
    for split in ("train", "val"):
        dense = build_tensors(screen, model.registry)[split]
        sparse = model._datasets()[split]
        pos = np.arange(len(sparse))[::7]
        got = sparse.take(pos)
        assert set(got) == set(dense) == {"X", "D"}
        assert all(torch.equal(got[k], dense[k][torch.from_numpy(pos)]) for k in got)


class _CountRegression(torch.nn.Module):
    """A linear read-out of the counts: enough for the trainer, independent of the model package."""

    def __init__(self, n_genes: int):
        super().__init__()
        self.lin = torch.nn.Linear(n_genes, 1)

    def loss(self, batch):
        loss = ((self.lin(torch.log1p(batch["X"])).squeeze(-1) - batch["y"]) ** 2).mean()
        return loss, {"mse": loss.detach()}


def _count_batches(X, rows, y):
    return CellBatches(X, rows, columns={"y": torch.as_tensor(y[rows], dtype=torch.float32)})


def _direct_trainer(X, y, checkpoint_dir, epochs):
    torch.manual_seed(0)
    module = _CountRegression(X.shape[1])
    cfg = TrainConfig(max_epochs=epochs, batch_size=50, lr=1e-2, progress_bar=False,
                      patience=None, checkpoint_dir=str(checkpoint_dir))
    return Trainer(module, _count_batches(X, np.arange(0, 160), y), _count_batches(X, np.arange(160, 200), y),
                   config=cfg)


def test_trainer_checkpoints_cell_batches_without_run_info(tmp_path):
    """A direct Trainer user (no PerturbationModel, so no ``run_info['data']``) with CellBatches and a
    checkpoint folder: the run record fingerprints the batches, a resume with the same data goes on,
    one with other counts or another split is refused."""
    from cradlekit.errors import CheckpointMismatchError
    from cradlekit.train.fingerprint import batch_source_fingerprint

    rng = np.random.default_rng(0)
    X = sp.random(200, 30, density=0.3, format="csr", dtype=np.float32, random_state=1)
    X.data = np.rint(X.data * 10)
    y = rng.normal(size=200)
    first = _direct_trainer(X, y, tmp_path, epochs=2)
    first.fit()
    record = first.run_record()["data"]
    assert record["n_train"] == 160 and record["n_val"] == 40 and record["train"] != record["val"]
    assert (tmp_path / "last.pt").is_file()

    resumed = _direct_trainer(X, y, tmp_path, epochs=4)
    resumed.fit()
    assert [r["epoch"] for r in resumed.history] == [1, 2, 3, 4]

    # the same counts stored densely, or as int64 CSR, fingerprint alike; other counts do not
    same = batch_source_fingerprint(_count_batches(X.toarray(), np.arange(160), y), None)["train"]
    assert same == record["train"]
    assert (
        batch_source_fingerprint(_count_batches(sp.csr_matrix(X, dtype=np.int64), np.arange(160), y), None)["train"]
        == same
    )
    changed = X.copy()
    changed.data[0] += 1
    with pytest.raises(CheckpointMismatchError, match="data"):
        _direct_trainer(changed, y, tmp_path, epochs=5).fit()
    other_split = _direct_trainer(X, y, tmp_path, epochs=5)
    other_split.train_data = _count_batches(X, np.arange(1, 161), y)
    with pytest.raises(CheckpointMismatchError, match="data"):
        other_split.fit()
