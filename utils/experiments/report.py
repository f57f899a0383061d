"""Results of many runs in one table: mean +- sample standard deviation, best and worst, per config.

A run folder (scripts/train.py, scripts/sweep.py) gives these metrics:

- ``dev_eer_percent``, ``dev_min_tdcf``: the selected (best dev) epoch, from ``metric_log.txt``;
- ``<corpus>_<figure>``: ``evaluation/best_<corpus>.json`` (the best-dev model scored by scripts/evaluate.py),
  e.g. ``asvspoof2019_la_eer_percent``, ``asvspoof2021_df_min_tdcf``, ``in_the_wild_eer_percent``;
- ``swa_<corpus>_<figure>``: the same for the weight average (``evaluation/swa_<corpus>.json``);
- ``<corpus>_eer_percent[<attack>]`` (and ``swa_...``): EER per attack (2019) or per attack pooled over
  conditions (the other corpora's tables).

Every figure is an error (lower is better), so a metric's "best" is its minimum. Runs are grouped by
their config's hash (utils/experiments/provenance.py): two runs are averaged only if their configs are equal.
"""
import contextlib
import csv
import io
import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from utils.errors import InputError
from utils.io import printable_path, read_json
from utils.experiments.provenance import COMPARED, MODELS, RUN_INFO, read_run_info

FIGURES = ("eer_percent", "min_tdcf", "min_dcf", "act_dcf", "cllr_bits", "a_dcf", "t_eer_percent")
LABELS = {"eer_percent": "EER (%)", "min_tdcf": "min t-DCF", "min_dcf": "minDCF", "act_dcf": "actDCF",
          "cllr_bits": "Cllr (bits)", "a_dcf": "a-DCF", "t_eer_percent": "t-EER (%)"}
FORMATS = ("markdown", "csv", "latex", "json")


@dataclass
class RunResult:
    run_dir: Path
    seed: int
    config_name: str
    config_sha256: str
    sessions: list
    finished: bool
    metrics: dict = field(default_factory=dict)  # metric name -> float


def find_runs(paths: list[Path]) -> list[Path]:
    """Run folders among `paths`: each is a run folder (holds run_info.json) or a folder of them (a sweep)."""
    runs = []
    for path in paths:
        if (path / RUN_INFO).is_file():
            runs.append(path)
        elif path.is_dir():
            found = sorted(p.parent for p in path.glob(f"*/{RUN_INFO}"))
            if not found:
                raise InputError(f"{path} holds no run (no {RUN_INFO} in it or in its sub-folders)")
            runs += found
        else:
            raise InputError(f"run folder not found: {path}")
    return runs


def read_run(run_dir: Path) -> RunResult:
    """A run's provenance and every metric its files give. A damaged file (run_info.json, metric_log.txt, an
    evaluation JSON) is an InputError naming it and the line or key: a table that left the run out, or read
    a wrong number from it, would pass for the sweep's result."""
    info = read_run_info(run_dir)
    if info is None:
        raise InputError(f"run folder {run_dir} has no {RUN_INFO}")
    result = RunResult(run_dir, info["seed"], info["config_name"], info["config_sha256"], info["sessions"],
                       bool(info["finished"]))
    result.metrics.update(dev_metrics(run_dir / "metric_log.txt"))
    for path in sorted((run_dir / "evaluation").glob("*.json")):
        model, _, corpus = path.stem.partition("_")
        if model in MODELS and corpus:
            prefix = "" if model == "best" else "swa_"
            result.metrics.update(evaluation_metrics(path, prefix + corpus))
    return result


def dev_metrics(metric_log: Path) -> dict:
    """Dev EER and min t-DCF of the selected epoch: the last with the lowest dev EER (ties count, as in training)."""
    if not metric_log.is_file():
        return {}
    shown = printable_path(metric_log)
    try:
        text = metric_log.read_bytes().decode("utf-8")
    except OSError as e:
        raise InputError(f"cannot read {shown}: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise InputError(f"{shown}: not UTF-8 text (byte {e.start}); not a metric log of scripts/train.py") from None
    rows = list(csv.DictReader(text.splitlines(), delimiter="\t"))
    if not rows:
        return {}
    if "dev_eer_percent" not in rows[0]:
        raise InputError(f"{shown}: not a metric log (no column dev_eer_percent)")
    eers, tdcfs = [], []
    for line, row in enumerate(rows, start=2):  # line 1 is the header
        eers.append(_finite(row["dev_eer_percent"], f"{shown}, line {line}: dev_eer_percent"))
        tdcf = row.get("dev_min_tdcf") or "-"
        tdcfs.append(None if tdcf == "-" else _finite(tdcf, f"{shown}, line {line}: dev_min_tdcf"))
    best = max(i for i, e in enumerate(eers) if e == min(eers))
    out = {"dev_eer_percent": eers[best]}
    if tdcfs[best] is not None:
        out["dev_min_tdcf"] = tdcfs[best]
    return out


def _finite(value, what: str) -> float:
    """A finite number from a file (text or JSON), or an InputError naming `what`."""
    number = None
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            number = float(value)
    elif type(value) in (int, float):
        number = float(value)
    if number is None or not math.isfinite(number):
        raise InputError(f"{what} is {str(value)[:40]!r}, not a finite number")
    return number


def evaluation_metrics(path: Path, name: str) -> dict:
    """The figures of one evaluate.py --json file, named ``<name>_<figure>``, with per-attack EERs."""
    data = read_json(path, "metrics JSON", expect=dict)
    shown = printable_path(path)
    out = {f"{name}_{f}": _finite(data[f], f"{shown}: {f}") for f in FIGURES if data.get(f) is not None}
    per_attack = data.get("per_attack_eer_percent")  # 2019 LA
    tables = data.get("tables", {})
    if per_attack is None and isinstance(tables, dict) and "eer_percent" in tables:  # the other corpora
        per_attack = _pooled_column(tables["eer_percent"], f"{shown}: tables.eer_percent")
    if not isinstance(per_attack, (dict, type(None))):
        raise InputError(f"{shown}: per_attack_eer_percent must be an object of attack: EER")
    for attack, value in (per_attack or {}).items():
        if value is not None:
            out[f"{name}_eer_percent[{attack}]"] = _finite(value, f"{shown}: EER of {attack}")
    return out


def _pooled_column(table, what: str) -> dict:
    """A corpus table's "pooled" column as {row: value}, without its pooled row; {} without such a column."""
    if not (isinstance(table, dict) and all(isinstance(table.get(k), list) for k in ("rows", "columns", "values"))
            and len(table["values"]) == len(table["rows"])
            and all(isinstance(v, list) and len(v) == len(table["columns"]) for v in table["values"])):
        raise InputError(f"{what} must be an object of rows, columns and a row of values per row")
    pooled = [i for i, c in enumerate(table["columns"]) if str(c).lower() == "pooled"]
    if not pooled:
        return {}
    return {str(r): v[pooled[0]] for r, v in zip(table["rows"], table["values"]) if str(r).lower() != "pooled"}


def summary(values: list[float]) -> dict:
    """mean, sample standard deviation (None for one value), min, max and the values themselves."""
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else None,
            "min": min(values), "max": max(values), "values": values}


def group_runs(runs: list[RunResult]) -> list[dict]:
    """One group per config hash (in order of first appearance): its runs, metrics and warnings."""
    groups: dict[str, list[RunResult]] = {}
    for run in runs:
        groups.setdefault(run.config_sha256, []).append(run)
    names = [g[0].config_name for g in groups.values()]
    out = []
    for sha, members in groups.items():
        name = members[0].config_name
        if names.count(name) > 1:
            name = f"{name} ({sha[:8]})"  # two different configs of one file name
        metrics = {}
        for metric in _metric_order({m for r in members for m in r.metrics}):
            pairs = [(r.metrics[metric], r.seed) for r in members if metric in r.metrics]
            values, seeds = [v for v, _ in pairs], [s for _, s in pairs]
            metrics[metric] = {**summary(values), "seeds": seeds, "best_seed": seeds[values.index(min(values))]}
        environment = environment_summary(members)
        out.append({"config": name, "config_sha256": sha, "n": len(members), "seeds": [r.seed for r in members],
                    "runs": [str(r.run_dir) for r in members], "metrics": metrics, "environment": environment,
                    "warnings": group_warnings(members, metrics, environment)})
    return out


def environment_summary(runs: list[RunResult]) -> dict:
    """Each compared field's distinct values over every session of the runs."""
    return {key: sorted({json.dumps(s.get(key)) for r in runs for s in r.sessions}) for key in COMPARED}


def group_warnings(runs: list[RunResult], metrics: dict, environment: dict) -> list[str]:
    warnings = []
    for key, values in environment.items():
        if len(values) > 1:
            warnings.append(f"runs averaged here differ in {key}: {', '.join(values)}")
    seeds = [r.seed for r in runs]
    if len(set(seeds)) < len(seeds):
        warnings.append(f"repeated seeds: {sorted(seeds)}")
    unfinished = [r.run_dir.name for r in runs if not r.finished]
    if unfinished:
        warnings.append(f"unfinished runs: {', '.join(unfinished)}")
    incomplete = [m for m, s in metrics.items() if len(s["values"]) < len(runs) and "[" not in m]
    if incomplete:
        warnings.append(f"metrics missing from some runs: {', '.join(incomplete)}")
    return warnings


def parse_metric(name: str) -> tuple[bool, str, str | None, str]:
    """`swa_asvspoof2021_la_eer_percent[A07]` -> (weight average?, corpus, figure or None, attack or "")."""
    base, _, attack = name.partition("[")
    figure = next((f for f in FIGURES if base.endswith("_" + f)), None)
    corpus = base[: -len(figure) - 1] if figure else base
    return corpus.startswith("swa_"), corpus.removeprefix("swa_"), figure, attack.rstrip("]")


def _metric_order(names: set[str]) -> list[str]:
    """dev first, then each corpus's best-dev figures, the weight average's, and the per-attack EERs last."""
    def key(name: str):
        swa, corpus, figure, attack = parse_metric(name)
        return (bool(attack), corpus != "dev", swa, corpus, FIGURES.index(figure) if figure else 99, name)
    return sorted(names, key=key)


# --- formats -------------------------------------------------------------------------------------

def label(metric: str) -> str:
    """`swa_asvspoof2021_la_eer_percent[A07]` -> `asvspoof2021_la EER (%) A07, weight average`."""
    swa, corpus, figure, attack = parse_metric(metric)
    if figure is None:
        return metric
    return f"{corpus} {LABELS[figure]}" + (f" {attack}" if attack else "") + (", weight average" if swa else "")


def _num(value, digits: int) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _digits(metric: str) -> int:
    return 3 if "percent" in metric else 4


def _rows(group: dict) -> list[tuple]:
    """(label, mean +- std, best (seed), worst, n) per metric, as text."""
    rows = []
    for metric, s in group["metrics"].items():
        d = _digits(metric)
        spread = f"{_num(s['mean'], d)} ± {_num(s['std'], d)}"
        rows.append((label(metric), spread, f"{_num(s['min'], d)} (seed {s['best_seed']})", _num(s["max"], d),
                     str(len(s["values"]))))
    return rows


def format_markdown(groups: list[dict]) -> str:
    out = []
    for g in groups:
        out += [f"### {g['config']} (n = {g['n']}, seeds {', '.join(map(str, g['seeds']))})", "",
                "| metric | mean ± std | best (seed) | worst | n |", "|---|---:|---:|---:|---:|"]
        out += [f"| {' | '.join(r)} |" for r in _rows(g)]
        out += ["", *environment_lines(g), ""]
    return "\n".join(out).rstrip() + "\n"


def format_latex(groups: list[dict]) -> str:
    out = []
    for g in groups:
        out += [f"% {g['config']} (n = {g['n']}, seeds {', '.join(map(str, g['seeds']))})",
                r"\begin{tabular}{lrrrr}", r"\toprule",
                r"Metric & Mean $\pm$ std & Best (seed) & Worst & $n$ \\", r"\midrule"]
        for r in _rows(g):
            cells = [_latex_escape(r[0]), r[1].replace("±", r"$\pm$"), *r[2:]]
            out.append(" & ".join(cells) + r" \\")
        out += [r"\bottomrule", r"\end{tabular}", *(f"% {line}" for line in environment_lines(g)), ""]
    return "\n".join(out)


def format_csv(groups: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["config", "config_sha256", "metric", "mean", "std", "min", "max", "n", "best_seed", "values"])
    for g in groups:
        for metric, s in g["metrics"].items():
            writer.writerow([g["config"], g["config_sha256"], metric, repr(s["mean"]),
                             "" if s["std"] is None else repr(s["std"]), repr(s["min"]), repr(s["max"]),
                             len(s["values"]), s["best_seed"],
                             " ".join(repr(v) for v in s["values"])])
    return buffer.getvalue()


def format_json(groups: list[dict]) -> str:
    return json.dumps({"groups": groups}, indent=2, allow_nan=False) + "\n"


def environment_lines(group: dict) -> list[str]:
    """What produced the numbers, under the table; a warning line for each difference between runs."""
    env = group["environment"]

    def one(key: str, width: int | None = None) -> str:  # the distinct values, " / " between them
        return " / ".join(str(json.loads(v))[:width] for v in env[key])
    lines = [f"Produced by: git {one('git_commit', 12)}{' (with changes)' if 'true' in env['git_dirty'] else ''}; "
             f"Python {one('python')}, PyTorch {one('torch')}, CUDA {one('cuda')}, cuDNN {one('cudnn')}, "
             f"NumPy {one('numpy')}; {one('device')}, processes {one('processes')}; precision {one('precision')}, "
             f"compile {one('compile')}, CUDA graphs {one('cuda_graphs')}, channels-last {one('channels_last')}, "
             f"gradient checkpointing {one('gradient_checkpointing')}; "
             f"config sha256 {group['config_sha256'][:16]}."]
    return lines + [f"WARNING: {w}" for w in group["warnings"]]


def _latex_escape(text: str) -> str:
    return text.replace("\\", r"\textbackslash{}").replace("_", r"\_").replace("%", r"\%").replace("&", r"\&")


FORMATTERS = {"markdown": format_markdown, "csv": format_csv, "latex": format_latex, "json": format_json}
