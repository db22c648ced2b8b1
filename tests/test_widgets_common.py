"""Shared widget behaviour: readable messages, static figures beside the widget, display in one line."""

from __future__ import annotations

import IPython.display
import ipywidgets as W
import pytest
from matplotlib.figure import Figure

import cradlekit as ck
from cradlekit.errors import EmptyPerturbationError, GeneMismatchError, MissingKeyError, UnknownPerturbationError
from cradlekit.widgets import ComparisonExplorer, LatentExplorer, PerturbationExplorer, QCExplorer, TrainingController
from cradlekit.widgets._messages import describe_error, message_html, report_errors


class _Owner:
    message = ""
    message_level = "info"


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (MissingKeyError("adata.obs['x'] not found"), "Could not act: Missing input: adata.obs['x'] not found"),
        (GeneMismatchError("genes differ"), "Could not act: Genes do not match: genes differ"),
        (UnknownPerturbationError("target FOO"), "Could not act: Unknown perturbation: target FOO"),
        (EmptyPerturbationError("no cells of A"), "Could not act: No cells: no cells of A"),
        (ValueError("bad value"), "Could not act: bad value"),
        (KeyError("col"), "Could not act: KeyError: missing key 'col'"),
        (RuntimeError(""), "Could not act: RuntimeError: RuntimeError"),
    ],
)
def test_describe_error(exc, expected):
    assert describe_error(exc, "act") == expected


def test_report_errors_turns_exceptions_and_warnings_into_state():
    owner = _Owner()
    with report_errors(owner, "divide"):
        1 / 0  # noqa: B018
    assert owner.message == "Could not divide: ZeroDivisionError: division by zero" and owner.message_level == "error"
    with report_errors(owner, "warn"):
        import warnings

        warnings.warn("careful", UserWarning, stacklevel=1)  # shown in the widget, not raised or printed
    assert owner.message == "Warning: careful" and owner.message_level == "warning"
    assert message_html("") == ""
    box = message_html("a <b> & c", "error")
    assert "a &lt;b&gt; &amp; c" in box and "cradlekit-message" in box


@pytest.fixture(scope="module")
def controllers(single_thread):
    adata = ck.data.simulate_perturbseq(n_cells=300, n_genes=200, n_single=3, n_combinations=3,
                                        true_ate_cells=20, seed=0)  # fmt: skip
    ck.qc.label_artifacts(adata)
    ck.data.split_combinations(adata, seed=0)
    ck.data.counterfactual_references(adata)
    model = ck.PerturbationModel(adata, latent_dim=4, hidden_dim=8, num_particles=1)
    model.train(max_epochs=1, batch_size=128, progress_bar=False)
    return {
        "qc": QCExplorer(adata),
        "training": TrainingController(adata, latent_dim=4, hidden_dim=8),
        "perturbation": PerturbationExplorer(model, adata, perturbation="control", n=20),
        "latent": LatentExplorer(adata, max_cells=100, method="tsne"),
        "comparison": ComparisonExplorer(model, adata, n=10, method="tsne"),
    }


@pytest.mark.parametrize("name", ["qc", "training", "perturbation", "latent", "comparison"])
def test_one_line_display_and_static_figure(controllers, name, monkeypatch):
    c = controllers[name]
    assert c.message == "" or c.message_level != "error", c.message
    bundle = c._repr_mimebundle_()  # what a notebook shows for `controller` on the last line
    assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == c.widget.model_id
    assert isinstance(c.widget, W.Box) and c.widget is c.view.root
    assert isinstance(c.static_figure(), Figure)

    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda obj, **kw: shown.append(obj))
    c.show(static=True)  # a static page (the book) gets a PNG beside the widget
    assert shown[0] is c.widget and isinstance(shown[1], IPython.display.Image)
    assert shown[1].data[:4] == b"\x89PNG"
    shown.clear()
    c.show()
    assert shown == [c.widget]
