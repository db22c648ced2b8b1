"""The user-facing model API: CRADLE-VAE and its baselines on an AnnData (scvi-tools style).

Typical use::

    import cradlekit as ck
    from cradlekit.model import PerturbationModel

    adata = ck.data.load_dataset("norman_subset")
    ck.qc.label_artifacts(adata, precomputed=adata.uns["cradlekit"]["precomputed_qc"])
    ck.data.split_combinations(adata, seed=0)
    ck.data.counterfactual_references(adata, artifact_key="artifact_k3")

    model = PerturbationModel(adata, model="cradle")
    model.train(max_epochs=2000, checkpoint_dir="runs/cradle")
    cells = model.generate(["KLF1", "KLF1+MAP2K6"], n=100, seed=0)   # counts
    means = model.predict_mean(["control", "KLF1"], n=2500, seed=0)  # for ATE
    model.save("models/cradle")
    model = PerturbationModel.load("models/cradle", adata)

Modules: ``_setup`` (validation, registry, the dense tensors), ``_batches`` (the sparse per-batch
training data), ``_options`` (per-model options),
``_model`` (:class:`PerturbationModel`), ``_io`` (the saved folder).
"""

from __future__ import annotations

from ._model import PerturbationModel

__all__ = ["PerturbationModel"]
