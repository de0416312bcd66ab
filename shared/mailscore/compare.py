"""Live vs shadow: how far a candidate model's verdicts agree with the live ones.

Input is the verdict stream: JSON verdicts as published on the verdict topic,
or the records of ``verdicts.jsonl`` written by ``mailscore run`` (which
carry the same fields). Only verdicts with a ``shadow`` score are compared.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from mailscore.errors import MailscoreError

LABELS = ("safe", "suspicious", "phishing")


def read_verdicts(paths: Iterable[str | Path]) -> list[dict]:
    """Every JSON object per line in ``paths`` that is a verdict (has ``label`` and ``score``)."""
    records = []
    for path in paths:
        try:
            lines = Path(path).read_text().splitlines()
        except OSError as exc:
            raise MailscoreError(f"{path}: {exc.strerror or type(exc).__name__}") from None
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                raise MailscoreError(f"{path}:{number}: not a JSON line") from None
            if isinstance(record, dict) and "label" in record and "score" in record:
                records.append(record)
    return records


def agreement(verdicts: list[dict]) -> dict:
    """Label agreement, the live x shadow label confusion, and score correlation."""
    paired = [v for v in verdicts if isinstance(v.get("shadow"), dict) and "score" in v["shadow"]]
    errors = Counter(v["shadow"].get("error") for v in verdicts if isinstance(v.get("shadow"), dict) and "error" in v["shadow"])
    summary: dict = {
        "verdicts": len(verdicts),
        "with_shadow": len(paired),
        "shadow_errors": dict(errors),
        "live_models": dict(Counter(v.get("model_version") for v in verdicts)),
        "shadow_models": dict(Counter(v["shadow"].get("model_version") for v in paired)),
    }
    if not paired:
        return summary
    live = np.array([float(v["score"]) for v in paired])
    shadow = np.array([float(v["shadow"]["score"]) for v in paired])
    confusion = {a: {b: 0 for b in LABELS} for a in LABELS}
    for v in paired:
        confusion.setdefault(v["label"], {b: 0 for b in LABELS})
        confusion[v["label"]][v["shadow"]["label"]] = confusion[v["label"]].get(v["shadow"]["label"], 0) + 1
    agree = sum(v["label"] == v["shadow"]["label"] for v in paired)
    summary.update(
        label_agreement=round(agree / len(paired), 4),
        label_confusion=confusion,
        live_flagged_shadow_safe=sum(v["label"] != "safe" and v["shadow"]["label"] == "safe" for v in paired),
        live_safe_shadow_flagged=sum(v["label"] == "safe" and v["shadow"]["label"] != "safe" for v in paired),
        score_pearson=_corr(live, shadow),
        score_spearman=_corr(_ranks(live), _ranks(shadow)),
        score_mean_abs_diff=round(float(np.mean(np.abs(live - shadow))), 6),
        score_max_abs_diff=round(float(np.max(np.abs(live - shadow))), 6),
    )
    return summary


def _ranks(values: np.ndarray) -> np.ndarray:
    """Average ranks (ties share their mean rank)."""
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(len(values))
    ranks[order] = np.arange(len(values), dtype=float)
    for value in np.unique(values):
        tied = values == value
        ranks[tied] = ranks[tied].mean()
    return ranks


def _corr(a: np.ndarray, b: np.ndarray) -> float | None:
    if len(a) < 2 or np.std(a) == 0 or np.std(b) == 0:
        return None
    value = float(np.corrcoef(a, b)[0, 1])
    return None if math.isnan(value) else round(value, 4)


def format_agreement(summary: dict) -> str:
    lines = ["live vs shadow", "-" * 48, f"{'verdicts read':<30} {summary['verdicts']}",
             f"{'with a shadow score':<30} {summary['with_shadow']}"]
    if summary["shadow_errors"]:
        lines.append(f"{'shadow errors':<30} {summary['shadow_errors']}")
    lines.append(f"{'live model(s)':<30} {', '.join(map(str, summary['live_models']))}")
    if not summary["with_shadow"]:
        lines.append("no verdict carries a shadow score: set MAILSCORE_SHADOW_MODEL_DIR (make run SHADOW=dir)")
        return "\n".join(lines)
    lines += [
        f"{'shadow model(s)':<30} {', '.join(map(str, summary['shadow_models']))}",
        f"{'label agreement':<30} {summary['label_agreement']:.2%}",
        f"{'live flagged, shadow safe':<30} {summary['live_flagged_shadow_safe']}",
        f"{'live safe, shadow flagged':<30} {summary['live_safe_shadow_flagged']}",
        f"{'score correlation (Pearson)':<30} {summary['score_pearson']}",
        f"{'score correlation (Spearman)':<30} {summary['score_spearman']}",
        f"{'mean / max |score difference|':<30} {summary['score_mean_abs_diff']} / {summary['score_max_abs_diff']}",
        "",
        "labels: rows live, columns shadow",
        f"{'':<12}" + "".join(f"{b:>12}" for b in LABELS),
    ]
    for a in LABELS:
        lines.append(f"{a:<12}" + "".join(f"{summary['label_confusion'][a][b]:>12}" for b in LABELS))
    return "\n".join(lines)
