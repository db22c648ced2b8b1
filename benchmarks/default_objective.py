"""Choose CRADLE-VAE's default objective from the converged grids of the three screens (issue 18).

    python benchmarks/default_objective.py     # writes results/default_objective.md

Reads the finished runs of configs/simulator_converged.yaml, norman_converged.yaml and
mcfaline_converged.yaml (nothing is trained) and applies the rule stated in the README:

    the default is the objective whose generated artifact-free cells pass QC most often, averaged over
    the screens, among those whose held-out ATE-ρ is not below the conditional VAE's on any screen
    (paired over splits: the 95 % bootstrap interval of the difference must not lie below 0). If none
    qualifies, the objective whose worst screen loses the least held-out ATE-ρ against the conditional
    VAE (paired mean difference), the mean QCPR breaking ties.

Only converged runs count (early stopping ended them).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cradlekit.experiments import load_config  # noqa: E402
from cradlekit.experiments.paired import paired_comparison  # noqa: E402
from cradlekit.experiments.report import load_runs  # noqa: E402
from cradlekit.experiments.tables import converged_runs  # noqa: E402

SCREENS = {
    "simulator": "configs/simulator_converged.yaml",
    "Norman 2019 subset": "configs/norman_converged.yaml",
    "McFaline-Figueroa 2023 subset": "configs/mcfaline_converged.yaml",
}
#: Grid entry -> objective name.
ARMS = {
    "cradle": "published",
    "cradle_exact": "exact",
    "cradle_unweighted": "unweighted",
    "cradle_balanced": "balanced",
}
REFERENCE = "cvae"
#: An objective enters the rule on a screen only with this many converged splits paired with the reference.
MIN_SPLITS = 5


def _mean_sd(v: pd.Series, digits: int) -> str:
    v = pd.to_numeric(v, errors="coerce").dropna()
    if v.empty:
        return "–"
    return (
        f"{v.mean():.{digits}f} ± {v.std(ddof=1):.{digits}f} ({v.size})" if v.size > 1 else f"{v.mean():.{digits}f} (1)"
    )


def screen_table(results: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, dict[str, float]]]:
    runs, _ = converged_runs(results)
    rows, facts = {}, {}
    for entry, objective in {**ARMS, REFERENCE: "conditional VAE"}.items():
        sub = runs[runs["model"] == entry]
        if sub.empty:
            continue
        row = {"runs (converged / all)": f"{len(sub)} / {int((results['model'] == entry).sum())}",
               "held-out ATE-ρ": _mean_sd(sub["heldout_ate_pearson"], 3),
               "held-out ATE-ρ centred": _mean_sd(sub["heldout_ate_pearson_centered"], 3),
               "QCPR (%)": _mean_sd(sub["qcpr"], 2),
               "KL(z_b) per cell": _mean_sd(sub["kl_z_b"], 3), "J2 share": _mean_sd(sub["j2_share"], 4)}
        if "truth_qcpr" in sub:
            row["QCPR ceiling (%)"] = _mean_sd(sub["truth_qcpr"], 2)
        fact = {
            "qcpr": float(pd.to_numeric(sub["qcpr"]).mean()),
            "rho": float(pd.to_numeric(sub["heldout_ate_pearson"]).mean()),
        }
        if "truth_qcpr" in sub:
            fact["ceiling"] = float(pd.to_numeric(sub["truth_qcpr"]).mean())
        if entry != REFERENCE and REFERENCE in set(runs["model"]):
            pc = paired_comparison(runs, entry, [REFERENCE], ["heldout_ate_pearson", "qcpr"])
            for _, r in pc.iterrows():
                key = "held-out ATE-ρ" if r["metric"] == "heldout_ate_pearson" else "QCPR"
                row[f"{key} minus CVAE [95 % CI]"] = (
                    f"{r['mean_diff']:+.3f} [{r['ci_low']:+.3f}, {r['ci_high']:+.3f}] (n {r['n']})"
                )
                fact[f"{r['metric']}_ci_high"] = float(r["ci_high"])
                fact[f"{r['metric']}_diff"] = float(r["mean_diff"])
                fact["n_paired"] = int(r["n"])
        rows[f"{objective}" if entry != REFERENCE else "conditional VAE (reference)"] = row
        facts[objective if entry != REFERENCE else REFERENCE] = fact
    return pd.DataFrame(rows).T, facts


def decision_lines(all_facts: dict[str, dict[str, dict[str, float]]]) -> list[str]:
    """The rule applied to the screens with finished runs; provisional while a screen has none."""
    lines = ["## The rule applied", "", f"(A screen counts for an objective once {MIN_SPLITS} converged splits pair it "
             "with the conditional VAE.)", ""]
    eligible, score = [], {}
    finished = [s for s in SCREENS if s in all_facts]
    for objective in ARMS.values():
        per = {s: f[objective] for s, f in all_facts.items()
               if objective in f and f[objective].get("n_paired", 0) >= MIN_SPLITS}
        if not per:
            continue
        worse = [s for s, f in per.items() if f.get("heldout_ate_pearson_ci_high", np.inf) < 0]
        score[objective] = float(np.mean([f["qcpr"] for f in per.values()]))
        if not worse and len(per) == len(finished):
            eligible.append(objective)
        lines.append(f"- `{objective}` ({len(per)} screens): mean QCPR {score[objective]:.2f} %; "
                     + ("held-out ATE-ρ not below the conditional VAE's on any of them." if not worse
                        else f"held-out ATE-ρ below the conditional VAE's on: {', '.join(worse)}."))
    pending = [s for s in SCREENS if s not in finished]
    when = f" on {len(finished)} of {len(SCREENS)} screens ({', '.join(pending)} not finished)" if pending else ""
    if eligible:
        best = max(eligible, key=lambda o: score[o])
        lines += ["", f"**The rule picks `objective=\"{best}\"`{when}.**", ""]
    elif score:
        # Fallback (README): the smallest worst-screen loss of held-out ATE-ρ against the conditional VAE
        # among the objectives run on every finished screen; the mean QCPR breaks ties.
        complete = [o for o in score if all(o in all_facts[s] for s in finished)]
        worst = {o: min(all_facts[s][o].get("heldout_ate_pearson_diff", np.nan) for s in finished) for o in complete}
        worst = {o: w for o, w in worst.items() if np.isfinite(w)}
        lines += ["", f"**No objective meets the rule{when}.** Worst-screen held-out ATE-ρ minus the conditional "
                  "VAE's: " + ", ".join(f"`{o}` {w:+.3f}" for o, w in sorted(worst.items(), key=lambda t: -t[1]))
                  + "."]
        if worst:
            best = max(worst, key=lambda o: (round(worst[o], 3), score[o]))
            lines += ["", f"**The fallback picks `objective=\"{best}\"`**: the smallest worst-screen loss of "
                      f"held-out ATE-ρ ({worst[best]:+.3f}), mean QCPR {score[best]:.2f} %.", ""]
    return lines


def simulator_target_lines(facts: dict[str, dict[str, float]]) -> list[str]:
    """Issue 18's target on the simulator: QCPR >= 98 % with held-out ATE-ρ within 0.02 of the CVAE's."""
    if REFERENCE not in facts:
        return []
    ref = facts[REFERENCE]
    lines = ["## The simulator target (QCPR ≥ 98 %, held-out ATE-ρ within 0.02 of the conditional VAE's)", ""]
    for objective in ARMS.values():
        if objective in facts:
            f = facts[objective]
            hit = f["qcpr"] >= 98 and f["rho"] >= ref["rho"] - 0.02
            lines.append(f"- `{objective}`: QCPR {f['qcpr']:.2f} %, held-out ATE-ρ {f['rho'] - ref['rho']:+.3f} "
                         f"against the conditional VAE's{' (meets it)' if hit else ''}.")
    if "ceiling" in ref:
        lines += ["", "Fresh artifact-free cells drawn from the simulator's true process pass the same thresholds at "
                  f"{ref['ceiling']:.2f} % (the QCPR ceiling): a 98 % target lies above what true clean cells "
                  "reach; the data's QC-passed cells pass at nearly 100 % because they were selected by QC.", ""]
    return lines


def main() -> int:
    os.chdir(ROOT)  # the configs' output folders are relative to the repository
    lines = ["# CRADLE-VAE's default objective, chosen from converged evidence", "",
             "Written by `python benchmarks/default_objective.py` from the finished runs of the three converged "
             "grids (nothing is trained). Rule (README): the default is the objective whose generated cells pass "
             "QC most often, averaged over the screens, among those whose held-out ATE-ρ is not below the "
             "conditional VAE's on any screen (the 95 % bootstrap interval of the paired difference must not lie "
             "below 0); if none qualifies, the objective whose worst screen loses the least held-out ATE-ρ against "
             "the conditional VAE. Only runs that early stopping ended count.", ""]
    all_facts: dict[str, dict[str, dict[str, float]]] = {}
    for screen, path in SCREENS.items():
        config = load_config(ROOT / path)
        results, _ = load_runs(config)
        if results.empty:
            lines += [f"## {screen}", "", f"(no finished runs of `{path}` yet)", ""]
            continue
        table, facts = screen_table(results)
        all_facts[screen] = facts
        lines += [f"## {screen} (`{path}`)", "", table.to_markdown(), ""]
    lines += decision_lines(all_facts)
    lines += simulator_target_lines(all_facts.get("simulator", {}))
    out = ROOT / "results" / "default_objective.md"
    out.write_text("\n".join(lines) + "\n")
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
