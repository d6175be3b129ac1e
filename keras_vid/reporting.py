"""The one place that writes reports, and the grid runner that resumes.

Every file is written beside its destination and then moved over it
(`os.replace`), so a run killed mid-write leaves the previous file whole,
never a truncated one. `run_grid` writes after every cell of a grid, so a
killed grid loses at most the cell in progress and a rerun picks up there.

- Files: `write_text`, `write_json`, `read_json`.
- Grids: `grid_cells`, `run_grid`, `previous_results`.
- Methods x N (the recipes' grids): `write_results`, with `summarise`,
  `markdown_table` and `plot_accuracy`.
- Pairs x methods x N (the generalisation suite): `write_suite_results`,
  with `suite_summary`, `suite_markdown` and `plot_suite`.
- A KerasTuner search: `write_trials`, with `trials_table` and `plot_trials`.

Example:

```python
cells = grid_cells(samples_per_class=[500, 100], seed=[0, 1], method=["kd", "vid_i"])
results = run_grid(cells, lambda cell: train(**cell), "runs/grid")
print(markdown_table(results))
```
"""

import contextlib
import csv
import io
import itertools
import json
import math
import numbers
import os
import textwrap

import numpy as np

# ------------------------------------------------------------------ files


@contextlib.contextmanager
def _replacing(path):
    # The temporary file sits in the destination's folder: os.replace is
    # atomic only within one file system.
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_text(path, text):
    """Replaces the file at `path` with `text` atomically; creates its folder.

    Example:

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     write_text(os.path.join(tmp, "out", "table.md"), "| a |\\n")
    ...     print(open(os.path.join(tmp, "out", "table.md")).read())
    | a |
    <BLANKLINE>
    """
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with _replacing(path) as tmp:
        with open(tmp, "w", newline="") as f:
            f.write(text)


def write_json(value, path, indent=2, default=None):
    """Replaces the file at `path` with `value` as JSON, atomically.

    `indent` and `default` are `json.dumps`'s.

    Example:

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     write_json({"cnn": 0.91}, os.path.join(tmp, "teachers.json"))
    ...     read_json(os.path.join(tmp, "teachers.json"))
    {'cnn': 0.91}
    """
    write_text(path, json.dumps(value, indent=indent, default=default))


def read_json(path, default=None):
    """The JSON value in the file at `path`, or `default` when there is none.

    Example:

    >>> read_json("/nonexistent/teachers.json", {})
    {}
    """
    if not os.path.exists(path):
        return default
    with open(path) as f:
        return json.load(f)


def _pyplot():
    import matplotlib

    # No display: the recipes run on servers and in tests.
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save_figure(fig, path, dpi):
    plt = _pyplot()
    try:
        with _replacing(path) as tmp:
            # The temporary name hides the format in `path`'s extension.
            fig.savefig(tmp, dpi=dpi, format=os.path.splitext(path)[1][1:] or "png")
    finally:
        plt.close(fig)


def _wrap(title):
    # A long title (a transfer run names both tasks) would be cut at the
    # figure's edges.
    return "\n".join(textwrap.wrap(title, 70))


# ------------------------------------------------------------------ grids

GRID_KEY = ("method", "samples_per_class", "seed")
"""The fields that name a cell of a methods x N x seeds grid."""


def grid_cells(**axes):
    """The cells of a grid, one dict per combination; the last axis varies fastest.

    Example:

    >>> grid_cells(samples_per_class=[500, 100], seed=[0], method=["kd", "vid_i"])
    ... # doctest: +NORMALIZE_WHITESPACE
    [{'samples_per_class': 500, 'seed': 0, 'method': 'kd'},
     {'samples_per_class': 500, 'seed': 0, 'method': 'vid_i'},
     {'samples_per_class': 100, 'seed': 0, 'method': 'kd'},
     {'samples_per_class': 100, 'seed': 0, 'method': 'vid_i'}]
    """
    names = list(axes)
    return [dict(zip(names, values)) for values in itertools.product(*axes.values())]


def run_grid(cells, run_cell, output_dir, write=None, previous=None, key=GRID_KEY):
    """Runs, in order, the cells of a grid that `output_dir` does not hold yet.

    After every cell the results and their reports are replaced atomically,
    so a killed grid keeps every finished cell, and rerunning the same call
    runs only the cells still missing.

    Args:
        cells: dicts of settings, such as `grid_cells(...)`'s; each has the
            `key` fields.
        run_cell: `run_cell(cell)` trains one cell and returns its result
            dict; the cell's `key` fields are copied into it.
        output_dir: where the results are written.
        write: `write(results, output_dir)` writes them (and the reports);
            defaults to `write_results`.
        previous: the results already there; defaults to
            `previous_results(output_dir)` (pass them to check the runs'
            settings first, with `previous_results`'s `**expected`).
        key: the fields that name a cell; a cell whose values a result
            already has is skipped.

    Returns:
        The previous results, then the new ones.

    Example:

    >>> import tempfile
    >>> tmp = tempfile.TemporaryDirectory()
    >>> cells = grid_cells(samples_per_class=[5], seed=[0], method=["kd", "vid_i"])
    >>> ran = []
    >>> def run_cell(cell):
    ...     ran.append(cell["method"])
    ...     return {"test_accuracy": 0.5}
    >>> len(run_grid(cells, run_cell, tmp.name)), ran
    (2, ['kd', 'vid_i'])
    >>> len(run_grid(cells, run_cell, tmp.name)), ran  # nothing left to run
    (2, ['kd', 'vid_i'])
    >>> tmp.cleanup()
    """
    write = write or write_results
    results = list(previous_results(output_dir) if previous is None else previous)
    done = {tuple(r.get(k) for k in key) for r in results}
    ran = False
    for cell in cells:
        name = tuple(cell[k] for k in key)
        if name in done:
            continue
        result = {**run_cell(cell), **{k: cell[k] for k in key}}
        results.append(result)
        done.add(name)
        ran = True
        write(results, output_dir)
    if results and not ran:
        # Rewrites reports a kill between two of the files left out of step.
        write(results, output_dir)
    return results


def previous_results(output_dir, **expected):
    """Loads an interrupted grid's `results.json` to resume it.

    Args:
        output_dir: the grid's output directory.
        **expected: settings every previous run must share with this one,
            such as `dataset="fashion_mnist", student="wrn-10-1", epochs=30`;
            results from other settings would mix into the table silently.

    Returns:
        The list of previous results, empty when there are none.

    Example:

    >>> previous_results("/nonexistent", epochs=30)
    []
    """
    path = os.path.join(output_dir, "results.json")
    try:
        results = read_json(path, [])
    except (OSError, ValueError) as e:
        raise ValueError(
            f"Cannot resume from {path!r}: it is not valid JSON ({e}). Move it "
            "away to start the grid afresh."
        ) from e
    for r in results:
        for key, value in expected.items():
            if key in r and r[key] != value:
                raise ValueError(
                    f"{path!r} holds a run with {key}={r[key]!r}, but this grid "
                    f"has {key}={value!r}. Use another --output_dir, or move "
                    "results.json away to start afresh."
                )
    return results


# ------------------------------------------------------------ methods x N

PAPER_CIFAR10 = {
    "student": {5000: 90.72, 1000: 84.67, 500: 79.63, 100: 58.84},
    "kd": {5000: 91.27, 1000: 86.11, 500: 82.23, 100: 64.24},
    "fitnet": {5000: 90.64, 1000: 84.78, 500: 80.73, 100: 68.90},
    "at": {5000: 91.60, 1000: 87.26, 500: 84.94, 100: 73.40},
    "vid_i": {5000: 91.85, 1000: 89.73, 500: 88.09, 100: 81.59},
}
"""The paper's CIFAR-10 table (WRN-40-2 -> WRN-16-1), test accuracy in %."""


def summarise(results):
    """Groups results by (method, N): mean and standard deviation in %.

    Example:

    >>> summarise([{"method": "kd", "samples_per_class": 100,
    ...             "test_accuracy": 0.5}])[("kd", 100)]["mean"]
    50.0
    """
    groups = {}
    for r in results:
        groups.setdefault((r["method"], r["samples_per_class"]), []).append(
            100.0 * r["test_accuracy"]
        )
    return {
        k: {
            "mean": float(np.mean(v)),
            "std": float(np.std(v, ddof=1)) if len(v) > 1 else 0.0,
            "n": len(v),
        }
        for k, v in groups.items()
    }


def markdown_table(results, paper=None):
    """Formats results in the paper's layout: methods x N, mean +- std.

    `paper` is a `{method: {N: accuracy}}` dict printed beside ours.

    Example:

    >>> print(markdown_table([{"method": "kd", "samples_per_class": 100,
    ...                        "test_accuracy": 0.5}]))
    | method | N=100 |
    |---|---|
    | kd | 50.00 |
    """
    stats = summarise(results)
    methods = list(dict.fromkeys(r["method"] for r in results))
    sizes = sorted(
        {r["samples_per_class"] for r in results},
        key=lambda n: -(n if n is not None else math.inf),
    )
    header = "| method | " + " | ".join(f"N={n or 'all'}" for n in sizes) + " |"
    lines = [header, "|---|" + "---|" * len(sizes)]
    for m in methods:
        cells = []
        for n in sizes:
            s = stats.get((m, n))
            if s is None:
                cells.append("")
                continue
            cell = f"{s['mean']:.2f}" + (f" ± {s['std']:.2f}" if s["n"] > 1 else "")
            if paper and m in paper and n in paper[m]:
                cell += f" (paper {paper[m][n]:.2f})"
            cells.append(cell)
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_results(results, output_dir, title="", paper=None):
    """Writes `results.json`, `results.csv`, `results.md` and `accuracy.png`.

    Each file is replaced atomically, so an interrupted grid keeps its last
    complete set of results (see `previous_results`). Returns the Markdown
    table.

    Example:

    ```python
    write_results(results, "runs/table", title="Fashion-MNIST")
    ```
    """
    write_json(results, os.path.join(output_dir, "results.json"))
    fields = ["method", "samples_per_class", "seed", "test_accuracy", "seconds"]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(results)
    write_text(os.path.join(output_dir, "results.csv"), buf.getvalue())
    table = markdown_table(results, paper)
    write_text(
        os.path.join(output_dir, "results.md"),
        (f"## {title}\n\n" if title else "") + table + "\n",
    )
    plot_accuracy(results, os.path.join(output_dir, "accuracy.png"), title)
    return table


def plot_accuracy(results, path, title=""):
    """Plots test accuracy per method, with the std over seeds as error bars.

    Several N give a line per method against N; a single N gives one bar per
    method (a line through one point per method says nothing).

    Example:

    ```python
    plot_accuracy(results, "runs/accuracy.png")
    ```
    """
    plt = _pyplot()
    stats = summarise(results)
    fig, ax = plt.subplots(figsize=(6, 4))
    sizes = sorted({n for (_, n) in stats if n is not None})
    methods = list(dict.fromkeys(r["method"] for r in results))
    if len(sizes) == 1:
        names = [m for m in methods if (m, sizes[0]) in stats]
        cells = [stats[(m, sizes[0])] for m in names]
        means = [s["mean"] for s in cells]
        ax.bar(
            range(len(names)),
            means,
            yerr=[s["std"] for s in cells],
            capsize=3,
            color=[f"C{i % 10}" for i in range(len(names))],
        )
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
        # From just under the lowest bar: the differences are a few points.
        low = min(means) - 2 * max(s["std"] or 1 for s in cells)
        ax.set_ylim(max(0.0, low), None)
        ax.set_ylabel(f"test accuracy (%), N={sizes[0]}")
        ax.grid(alpha=0.3, axis="y")
    else:
        for m in methods:
            ns = sorted(n for (mm, n) in stats if mm == m and n is not None)
            if not ns:
                continue
            ax.errorbar(
                ns,
                [stats[(m, n)]["mean"] for n in ns],
                yerr=[stats[(m, n)]["std"] for n in ns],
                marker="o",
                capsize=3,
                label=m,
            )
        ax.set_xscale("log")
        ax.set_xlabel("training images per class (N)")
        ax.set_ylabel("test accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend()
    ax.set_title(_wrap(title), fontsize=10)
    fig.tight_layout()
    _save_figure(fig, path, dpi=120)


# ------------------------------------------------ pairs x methods x N (suite)


def _mean_std(values):
    if not values:
        return ""
    mean = float(np.mean(values))
    if len(values) == 1:
        return f"{mean:.2f}"
    return f"{mean:.2f} ± {float(np.std(values, ddof=1)):.2f}"


def suite_summary(results):
    """Per (pair, method, N): test accuracies in % and divergence counts.

    Example:

    >>> suite_summary([{"pair": "a>b", "method": "kd", "samples_per_class": 100,
    ...                 "test_accuracy": 0.5, "split": "held_out"}])
    {('a>b', 'kd', 100): {'acc': [50.0], 'diverged': 0, 'split': 'held_out'}}
    """
    out = {}
    for r in results:
        cell = out.setdefault(
            (r["pair"], r["method"], r["samples_per_class"]),
            {"acc": [], "diverged": 0, "split": r.get("split")},
        )
        if r.get("test_accuracy") is None:
            cell["diverged"] += 1
        else:
            cell["acc"].append(100.0 * r["test_accuracy"])
    return out


def suite_markdown(results, teacher_accuracy=None):
    """The generalisation suite's tables: per pair, then the targets at each N.

    Example:

    >>> print(suite_markdown([{"pair": "a>b", "method": "kd", "seed": 0,
    ...     "samples_per_class": 100, "test_accuracy": 0.5, "split": "tuning"}]))
    ... # doctest: +ELLIPSIS
    ## tuning pairs...
    """
    stats = suite_summary(results)
    methods = list(dict.fromkeys(r["method"] for r in results))
    sizes = sorted({r["samples_per_class"] for r in results}, reverse=True)
    lines = []
    for split in ("tuning", "held_out"):
        pairs = list(
            dict.fromkeys(r["pair"] for r in results if r.get("split") == split)
        )
        if not pairs:
            continue
        lines += [f"## {split.replace('_', '-')} pairs", ""]
        header = "| pair | N | " + " | ".join(methods) + " |"
        lines += [header, "|---|---|" + "---|" * len(methods)]
        for pair in pairs:
            for n in sizes:
                cells = []
                for m in methods:
                    s = stats.get((pair, m, n))
                    cell = _mean_std(s["acc"]) if s else ""
                    if s and s["diverged"]:
                        cell += f" ({s['diverged']} diverged)"
                    cells.append(cell)
                if any(cells):
                    lines.append(f"| {pair} | {n} | " + " | ".join(cells) + " |")
        lines.append("")
        for vid in [m for m in methods if m.startswith("vid")]:
            lines += _targets(stats, pairs, sizes, vid)
    if teacher_accuracy:
        lines.append(
            "Teachers (test %): "
            + ", ".join(f"{k} {100 * v:.2f}" for k, v in teacher_accuracy.items())
        )
    return "\n".join(lines)


def _targets(stats, pairs, sizes, vid):
    """Leads of `vid` over the student and over the better KD, per pair."""
    lines = [
        f"`{vid}`: lead over the student / over the better of kd and keras_kd "
        "(points, means over seeds)",
        "",
        "| pair | " + " | ".join(f"N={n}" for n in sizes) + " |",
        "|---|" + "---|" * len(sizes),
    ]
    sums = {n: [[], []] for n in sizes}
    for pair in pairs:
        cells = []
        for n in sizes:
            v = stats.get((pair, vid, n))
            st = stats.get((pair, "student", n))
            kds = [
                float(np.mean(stats[(pair, k, n)]["acc"]))
                for k in ("kd", "keras_kd")
                if (pair, k, n) in stats and stats[(pair, k, n)]["acc"]
            ]
            if not v or not v["acc"]:
                cells.append("")
                continue
            mv = float(np.mean(v["acc"]))
            a = mv - float(np.mean(st["acc"])) if st and st["acc"] else None
            b = mv - max(kds) if kds else None
            if a is not None:
                sums[n][0].append(a)
            if b is not None:
                sums[n][1].append(b)
            cells.append(" / ".join("" if x is None else f"{x:+.2f}" for x in (a, b)))
        lines.append(f"| {pair} | " + " | ".join(cells) + " |")
    lines.append(
        "| **mean** | "
        + " | ".join(
            " / ".join(f"{np.mean(x):+.2f}" if x else "" for x in sums[n])
            for n in sizes
        )
        + " |"
    )
    return lines + [""]


def write_suite_results(results, output_dir, teacher_accuracy=None):
    """Writes the suite's `results.json`, `results.md` and `accuracy.png`.

    Each file is replaced atomically. Returns the Markdown text.

    Example:

    ```python
    write_suite_results(results, "runs/suite")
    ```
    """
    write_json(results, os.path.join(output_dir, "results.json"))
    text = suite_markdown(results, teacher_accuracy)
    write_text(os.path.join(output_dir, "results.md"), text + "\n")
    plot_suite(results, os.path.join(output_dir, "accuracy.png"))
    return text


def plot_suite(results, path):
    """Bars of mean test accuracy per pair and method, one panel per N.

    Example:

    ```python
    plot_suite(results, "runs/suite/accuracy.png")
    ```
    """
    plt = _pyplot()
    stats = suite_summary(results)
    pairs = list(dict.fromkeys(r["pair"] for r in results))
    methods = list(dict.fromkeys(r["method"] for r in results))
    sizes = sorted({r["samples_per_class"] for r in results}, reverse=True)
    fig, axes = plt.subplots(
        len(sizes), 1, figsize=(max(6, 1.3 * len(pairs)), 3.5 * len(sizes))
    )
    axes = np.atleast_1d(axes)
    width = 0.8 / max(1, len(methods))
    # tab10 repeats after ten methods; the suite compares more.
    colors = plt.get_cmap("tab20").colors
    for ax, n in zip(axes, sizes):
        for j, m in enumerate(methods):
            means, errs = [], []
            for pair in pairs:
                acc = stats.get((pair, m, n), {"acc": []})["acc"]
                means.append(np.mean(acc) if acc else np.nan)
                errs.append(np.std(acc, ddof=1) if len(acc) > 1 else 0.0)
            xs = np.arange(len(pairs)) + (j - (len(methods) - 1) / 2) * width
            color = colors[j % len(colors)]
            ax.bar(xs, means, width, yerr=errs, capsize=2, label=m, color=color)
        finite = [a for (p, m, nn), c in stats.items() if nn == n for a in c["acc"]]
        if finite:
            ax.set_ylim(min(finite) - 2, max(finite) + 1)
        ax.set_xticks(np.arange(len(pairs)))
        ax.set_xticklabels(pairs, rotation=20, ha="right", fontsize=8)
        ax.set_ylabel(f"test accuracy (%), N={n}")
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    _save_figure(fig, path, dpi=110)


# ------------------------------------------------------ a KerasTuner search


def trials_table(tuner):
    """Returns `(rows, columns)`: one dict per trial and the column names.

    A row holds the trial's id, status, every hyperparameter (`None` where
    inactive, e.g. `kd_weight` without KD) and, in a column named after it,
    the objective.

    Example:

    ```python
    rows, columns = keras_vid.reporting.trials_table(tuner)
    ```
    """
    objective = tuner.oracle.objective.name
    trials = sorted(tuner.oracle.trials.values(), key=lambda t: t.trial_id)
    declared = [h.name for h in tuner.oracle.get_space().space]
    seen = [n for t in trials for n in t.hyperparameters.values]
    # Hyperband's bookkeeping (tuner/epochs, ...) goes last.
    names = sorted(dict.fromkeys(declared + seen), key=lambda n: n.startswith("tuner/"))
    rows = [
        {"trial_id": t.trial_id, "status": t.status}
        | {n: t.hyperparameters.values.get(n) for n in names}
        | {objective: t.score}
        for t in trials
    ]
    return rows, ["trial_id", "status", *names, objective]


def _format(value):
    if value is None:
        return ""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def write_trials(tuner, output_dir, title=""):
    """Writes `trials.csv`, `trials.md` and `trials.png`; returns the table.

    Each file is replaced atomically; `title` heads the table and the plot.

    Example:

    ```python
    print(keras_vid.reporting.write_trials(tuner, "runs/tune"))
    ```
    """
    rows, columns = trials_table(tuner)
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    table = "\n".join(
        [
            "| " + " | ".join(columns) + " |",
            "|" + "---|" * len(columns),
            *("| " + " | ".join(_format(r[c]) for c in columns) + " |" for r in rows),
        ]
    )
    md = (f"## {title}\n\n" if title else "") + table + "\n"
    for name, content in (("trials.csv", text.getvalue()), ("trials.md", md)):
        write_text(os.path.join(output_dir, name), content)
    plot_trials(tuner, os.path.join(output_dir, "trials.png"), title)
    return table


def plot_trials(tuner, path, title=""):
    """Plots the objective against each searched hyperparameter; returns `path`.

    One panel per hyperparameter, the best trial starred.

    Example:

    ```python
    keras_vid.reporting.plot_trials(tuner, "runs/tune/trials.png")
    ```
    """
    # keras-tuner is an extra: only a search's report needs it.
    from keras_tuner.engine.hyperparameters import Boolean, Fixed
    from matplotlib import ticker

    plt = _pyplot()
    objective = tuner.oracle.objective
    score = objective.name
    done = [r for r in trials_table(tuner)[0] if r[score] is not None]
    space = [
        h
        for h in tuner.oracle.get_space().space
        if not isinstance(h, Fixed) and not h.name.startswith("tuner/")
    ]
    cols = min(3, max(1, len(space)))
    rows = max(1, math.ceil(len(space) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.2 * rows), squeeze=False)
    pick = min if objective.direction == "min" else max
    best = pick(done, key=lambda r: r[score]) if done else None
    for ax, h in zip(axes.flat, space):
        pts = [(r[h.name], r[score]) for r in done if r[h.name] is not None]
        numeric = all(
            isinstance(v, numbers.Real) and not isinstance(v, bool) for v, _ in pts
        )
        if numeric:
            xs = [v for v, _ in pts]
            if getattr(h, "sampling", None) in ("log", "reverse_log"):
                ax.set_xscale("log")
                # Minor labels of a short log axis overprint each other.
                ax.xaxis.set_minor_formatter(ticker.NullFormatter())
        else:
            # Every category of the space, so an unexplored one shows as empty.
            known = (
                [False, True] if isinstance(h, Boolean) else getattr(h, "values", [])
            )
            labels = [str(v) for v in known]
            labels += sorted({str(v) for v, _ in pts} - set(labels))
            xs = [labels.index(str(v)) for v, _ in pts]
            ax.set_xticks(range(len(labels)), labels)
            ax.set_xlim(-0.5, len(labels) - 0.5)
        ax.scatter(xs, [o for _, o in pts], color="tab:blue")
        if best is not None and best[h.name] is not None:
            bx = best[h.name] if numeric else labels.index(str(best[h.name]))
            ax.scatter([bx], [best[score]], color="tab:red", marker="*", s=150)
        ax.set(xlabel=h.name, ylabel=score)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(space) :]:
        ax.axis("off")
    fig.suptitle(title or f"{score} ({objective.direction}) per trial")
    fig.tight_layout()
    _save_figure(fig, path, dpi=110)
    return path
