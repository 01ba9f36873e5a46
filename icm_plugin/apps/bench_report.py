"""The table (bench.md) and the chart (bench.png) of `icm bench` results (``icm_plugin.apps.bench``'s bench.json)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from icm_plugin.method.icm_config import ICMConfig

# label sets, in table and chart order: (key, what the row is called)
ZERO_SHOT = "zero-shot"
LABEL_SETS = (
    ("zero_shot", "zero-shot labels"),
    ("zero_shot_rule", "zero-shot labels + rule"),
    ("random", "random labels"),
    ("bootstrap", "bootstrap"),
    ("icm_no_consistency", "ICM, no consistency term"),
    ("icm", "ICM"),
    ("golden", "golden labels"),
)
FINE_TUNED = ("icm", "golden")
COLORS = {ZERO_SHOT: "#7f7f7f", "zero_shot": "#a6a6a6", "zero_shot_rule": "#c9c9c9", "random": "#e6e6e6",
          "bootstrap": "#8cc5a5", "icm_no_consistency": "#9ec3e6", "icm": "#2f6ca3", "golden": "#e3b23c"}
NAMES = dict(LABEL_SETS) | {ZERO_SHOT: "zero-shot prompt (no demonstrations)"}
RESULTS_FILE = "bench.json"


# (column id, part of a seed's results, metric, table header, chart title)
COLUMNS = (
    ("pool", "pool_accuracy", "accuracy", "pool label accuracy", "label accuracy on the pool"),
    ("many_shot", "many_shot", "accuracy", "many-shot test acc.", "many-shot prompting (test)"),
    ("many_shot_rule", "many_shot", "accuracy_rule", "many-shot test acc., rule-decoded",
     "many-shot, rule-decoded (test)"),
    ("fine_tuned", "fine_tuned", "accuracy", "fine-tuned test acc.", "fine-tuning (test)"),
    ("fine_tuned_rule", "fine_tuned", "accuracy_rule", "fine-tuned test acc., rule-decoded",
     "fine-tuning, rule-decoded (test)"),
)


def summary(blob: dict[str, Any]) -> dict[str, dict[str, tuple[float, float, int] | None]]:
    """{row key: {column id: (mean, std, n seeds) or None}} over the seeds (population std)."""
    seeds = blob["seeds"]
    rows: dict[str, dict[str, tuple[float, float, int] | None]] = {}
    for key in (ZERO_SHOT, *(k for k, _ in LABEL_SETS)):
        row: dict[str, tuple[float, float, int] | None] = {}
        for column, part, metric, _, _ in COLUMNS:
            values = [s[part][key][metric] for s in seeds if metric in s.get(part, {}).get(key, {})]
            row[column] = (float(np.mean(values)), float(np.std(values)), len(values)) if values else None
        rows[key] = row
    return rows


def _cell(v: tuple[float, float, int] | None) -> str:
    if v is None:
        return "–"
    mean, std, n = v
    return f"{mean:.3f} ± {std:.3f}" if n > 1 else f"{mean:.3f}"


def markdown_table(blob: dict[str, Any]) -> str:
    """The results table: one row per label set; accuracy of the labels on the pool, and test accuracy of many-shot
    prompting and of fine-tuning, per claim and decoded under the task's rule."""
    lines = ["| labels | " + " | ".join(c[3] for c in COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for key, row in summary(blob).items():
        lines.append(f"| {NAMES[key]} | " + " | ".join(_cell(row[c[0]]) for c in COLUMNS) + " |")
    return "\n".join(lines) + "\n"


def markdown_report(blob: dict[str, Any]) -> str:
    """bench.md: what was run, the table, the chart, time per part."""
    s = blob["settings"]
    seeds = blob["seeds"]
    n = len(seeds)
    secs = {k: float(np.mean([r["seconds"].get(k, 0.0) for r in seeds])) for k in (seeds[0]["seconds"] if seeds else {})}
    ft = s["train"]
    via = {v.get("via") for r in seeds for v in r.get("fine_tuned", {}).values()}
    head = [
        f"# icm bench: {blob['task']}, {blob['model']}",
        "",
        f"Pool: {blob['n_pool']} examples (labelled by each method; gold only for scoring); test: {blob['n_test']} "
        f"held-out examples (lm-eval `icm_{blob['task']}` split). Consistency rule: `{blob['rule']}`. "
        f"Seeds: {n} ({', '.join(str(r['seed']) for r in seeds)}); cells are mean ± standard deviation over seeds.",
        f"ICM: {s['iterations'] or f'default ({ICMConfig.iterations_per_example} x pool, or fewer at a fixed point)'} steps, alpha {s['alpha'] or 50}. Bootstrap: at most "
        f"{s['bootstrap_rounds']} relabelling round(s). Golden: the gold labels of the examples ICM labelled "
        f"(lm-eval's `gold:RUN_DIR`). Many-shot: {seeds[0]['demonstrations'] if seeds else '?'} "
        f"demonstrations from the pool per test prompt. Fine-tuning: {ft['epochs']:g} epoch(s), "
        f"{'LoRA, ' if ft['lora'] else ''}lr {ft['learning_rate'] or ('5e-4' if ft['lora'] else '5e-5')}, "
        f"fine-tuned models scored via {' and '.join(sorted(v for v in via if v)) or '(not run)'}.",
        "",
        markdown_table(blob),
        "![icm bench](bench.png)",
        "",
        "Mean seconds per seed: " + ", ".join(f"{k} {v:.0f}" for k, v in secs.items()) +
        f"; zero-shot scoring of the pool {blob['zero_shot_seconds']:.0f}.",
        "",
    ]
    return "\n".join(head)


def plot_bench(blob: dict[str, Any], path: Path) -> Path:
    """bench.png: bars with spread over seeds for pool label accuracy, many-shot and fine-tuned test accuracy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    rows = summary(blob)
    panels = [(c[0], c[4]) for c in COLUMNS if any(rows[k][c[0]] for k in rows)]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 4.2), sharey=True, squeeze=False)
    for ax, (column, title) in zip(axes[0], panels, strict=True):
        keys = [k for k in rows if rows[k][column] is not None]
        means = [rows[k][column][0] * 100 for k in keys]
        stds = [rows[k][column][1] * 100 for k in keys]
        bars = ax.bar(range(len(keys)), means, yerr=stds, capsize=3, color=[COLORS[k] for k in keys],
                      edgecolor="black", linewidth=0.6)
        for bar, m, sd in zip(bars, means, stds, strict=True):
            ax.text(bar.get_x() + bar.get_width() / 2, m + sd + 1.5, f"{m:.0f}", ha="center", va="bottom", fontsize=8)
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_xlim(-0.6, max(len(keys), 4) - 0.4)  # narrow panels keep bar widths comparable
        ax.set_ylim(0, 105)
        ax.axhline(50, color="black", linewidth=0.5, linestyle=":")
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel("accuracy (%)")
    used = [k for k in rows if any(rows[k][c] is not None for c, _ in panels)]
    fig.legend(handles=[Patch(facecolor=COLORS[k], edgecolor="black", label=NAMES[k]) for k in used],
               loc="lower center", ncol=min(4, len(used)), fontsize=8, frameon=False)
    n = len(blob["seeds"])
    fig.suptitle(f"{blob['task']} · {blob['model']} · pool {blob['n_pool']}, test {blob['n_test']}, "
                 f"{n} seed{'s' if n != 1 else ''}", fontsize=11)
    fig.tight_layout(rect=(0, 0.14, 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
