"""Honest evaluation: splits that cannot leak, metrics at target false-positive rates.

Two splits are used, both over *campaign groups*: messages that share a
sender address, a non-freemail sender domain, or a near-identical subject
are joined into one group (transitively), and a group is never split
between training and test.

* group k-fold cross-validation (the data is small): every message gets an
  out-of-fold score from a model that saw none of its group;
* a forward-in-time holdout: train on what arrived before a cutoff, test on
  what arrived after it, with every test group purged from training.

Sender history is replayed point-in-time from *training* messages only, so
a test message never sees a label of another test message.

Thresholds are chosen for target false-positive rates on the out-of-fold
scores of legitimate mail (``thresholds_for_targets``); ``train`` uses the
same cross-validation to write them into the model card.
"""

from __future__ import annotations

import csv
import logging
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from difflib import SequenceMatcher
from pathlib import Path

import numpy as np

from mailscore.errors import MailscoreError
from mailscore.features import FEATURE_INDEX, FEATURE_NAMES, History, extract, message_time, parse_sender
from mailscore.parse import ParsedEmail
from mailscore.profiles import Observation, replay_split
from mailscore.settings import Settings

log = logging.getLogger("mailscore.evaluation")

MANIFEST = "MANIFEST.tsv"
# Registrable domains shared by unrelated senders: grouping by them would
# join strangers, so only the full address groups these.
SHARED_DOMAINS = frozenset(
    {"gmail.com", "googlemail.com", "yahoo.com", "outlook.com", "hotmail.com", "live.com", "msn.com",
     "aol.com", "icloud.com", "me.com", "mail.ru", "gmx.com", "gmx.net", "gmx.de", "web.de", "yandex.ru",
     "proton.me", "protonmail.com", "zoho.com", "qq.com", "163.com", "126.com", "yahoo.co.uk",
     "yahoo.co.jp", "hotmail.co.uk", "example.com", "example.org", "example.net"}
)
SUBJECT_MIN_CHARS = 8  # shorter subjects ("hi", "test") do not define a campaign
SUBJECT_SIMILARITY = 0.9  # SequenceMatcher ratio at or above which two subjects are "near-identical"
PERIOD_BOUNDARY_YEAR = 2010


@dataclass
class Corpus:
    """Labelled messages with what the split and the per-source figures need."""

    files: list[Path]
    labels: np.ndarray
    sources: list[str]
    times: np.ndarray  # epoch seconds, NaN when unreadable
    senders: list[str | None]
    sender_domains: list[str | None]
    subject_keys: list[str]
    recipients: list[str | None]
    parsed: list[ParsedEmail]
    skipped: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.files)

    @property
    def periods(self) -> list[str]:
        return [period_of(t) for t in self.times]


def period_of(when: float) -> str:
    if math.isnan(when):
        return "unknown"
    year = datetime.fromtimestamp(when, timezone.utc).year
    return f"before {PERIOD_BOUNDARY_YEAR}" if year < PERIOD_BOUNDARY_YEAR else f"{PERIOD_BOUNDARY_YEAR} and later"


_SUBJECT_PREFIX = re.compile(r"^\s*(?:(?:re|fw|fwd|aw|wg|sv|tr|rv)\s*(?:\[\d+\])?\s*[:：]\s*|\[[^\]]{0,60}\]\s*)+", re.I)
_SUBJECT_NUMBERS = re.compile(r"[0-9]+(?:[.,:/-][0-9]+)*")
_SUBJECT_NOISE = re.compile(r"[\W_]+", re.UNICODE)


def subject_key(subject: str | None) -> str:
    """The subject with reply prefixes, list tags, numbers and punctuation normalised away."""
    text = _SUBJECT_PREFIX.sub("", subject or "").lower()
    text = _SUBJECT_NUMBERS.sub("#", text)
    return " ".join(_SUBJECT_NOISE.sub(" ", text).split())


def _manifest_sources(root: Path) -> dict[Path, str]:
    """``file`` -> ``source_group`` from a corpus MANIFEST.tsv, if the root has one."""
    manifest = root / MANIFEST
    if not manifest.is_file():
        return {}
    with open(manifest, newline="") as handle:
        rows = csv.DictReader(handle, delimiter="\t")
        if not rows.fieldnames or "file" not in rows.fieldnames or "source_group" not in rows.fieldnames:
            return {}
        return {(root / row["file"]).resolve(): row["source_group"] for row in rows if row.get("file")}


def load_corpus(paths: list[str | Path], settings: Settings) -> Corpus:
    """Parse every labelled email under ``paths``; the source is the manifest's group or the folder."""
    from mailscore.training import first_address, read_labelled

    sources_by_file: dict[Path, str] = {}
    for raw in paths:
        if Path(raw).is_dir():
            sources_by_file.update(_manifest_sources(Path(raw)))
    files, labels, parsed, skipped = read_labelled(paths, settings)
    sources = [sources_by_file.get(path.resolve()) or path.parent.name.lower() for path in files]
    senders = [parse_sender(msg.get("from")) for msg in parsed]
    times = [message_time(msg) for msg in parsed]
    return Corpus(
        files=files,
        labels=np.asarray(labels, dtype=np.int32),
        sources=sources,
        times=np.array([math.nan if t is None else t for t in times], dtype=np.float64),
        senders=[s.address for s in senders],
        sender_domains=[s.domain for s in senders],
        subject_keys=[subject_key(msg.get("subject")) for msg in parsed],
        recipients=[first_address(msg.get("to")) for msg in parsed],
        parsed=parsed,
        skipped=skipped,
    )


class _UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def near_identical_subject_pairs(keys: list[str]) -> list[tuple[int, int]]:
    """Pairs of distinct subject keys that are near-identical (hash-busting, small edits).

    Candidates share a word of at least four letters that is not common
    across the corpus, so this stays far from quadratic on real data.
    """
    index: dict[str, list[int]] = {}
    for i, key in enumerate(keys):
        if len(key) >= SUBJECT_MIN_CHARS:
            for word in set(key.split()):
                if len(word) >= 4:
                    index.setdefault(word, []).append(i)
    limit = max(20, len(keys) // 20)
    pairs: set[tuple[int, int]] = set()
    for members in index.values():
        if len(members) > limit:
            continue
        for a_pos, a in enumerate(members):
            for b in members[a_pos + 1 :]:
                if keys[a] == keys[b] or (a, b) in pairs:
                    continue
                if SequenceMatcher(None, keys[a], keys[b]).ratio() >= SUBJECT_SIMILARITY:
                    pairs.add((a, b))
    return sorted(pairs)


def campaign_groups(corpus: Corpus) -> np.ndarray:
    """A group id per message: same sender, same (non-shared) domain or near-identical subject."""
    n = len(corpus)
    uf = _UnionFind(n)
    first: dict[tuple[str, str], int] = {}
    for i in range(n):
        keys = []
        if corpus.senders[i]:
            keys.append(("sender", corpus.senders[i]))
        domain = corpus.sender_domains[i]
        if domain and domain not in SHARED_DOMAINS:
            keys.append(("domain", domain))
        if len(corpus.subject_keys[i]) >= SUBJECT_MIN_CHARS:
            keys.append(("subject", corpus.subject_keys[i]))
        for key in keys:
            if key in first:
                uf.union(first[key], i)
            else:
                first[key] = i
    for a, b in near_identical_subject_pairs(corpus.subject_keys):
        uf.union(a, b)
    roots = [uf.find(i) for i in range(n)]
    renumber = {root: g for g, root in enumerate(dict.fromkeys(roots))}
    return np.array([renumber[r] for r in roots], dtype=np.int64)


def assign_folds(groups: np.ndarray, strata: list[str], k: int) -> np.ndarray:
    """Whole groups to ``k`` folds, largest first, each to the fold with least of its main stratum."""
    members: dict[int, list[int]] = {}
    for i, g in enumerate(groups.tolist()):
        members.setdefault(g, []).append(i)
    order = sorted(members, key=lambda g: (-len(members[g]), min(members[g])))
    per_fold = [Counter() for _ in range(k)]
    sizes = [0] * k
    folds = np.empty(len(groups), dtype=np.int64)
    for g in order:
        main = Counter(strata[i] for i in members[g]).most_common(1)[0][0]
        fold = min(range(k), key=lambda f: (per_fold[f][main], sizes[f], f))
        for i in members[g]:
            folds[i] = fold
            per_fold[fold][strata[i]] += 1
        sizes[fold] += len(members[g])
    return folds


def leakage_checks(corpus: Corpus, groups: np.ndarray, train: np.ndarray, test: np.ndarray) -> dict:
    """What is shared between a training and a test side: zero is the requirement."""

    def shared(values: list, mask_a: np.ndarray, mask_b: np.ndarray, skip=frozenset()) -> int:
        a = {v for v, m in zip(values, mask_a) if m and v and v not in skip}
        b = {v for v, m in zip(values, mask_b) if m and v and v not in skip}
        return len(a & b)

    long_subjects = [k if len(k) >= SUBJECT_MIN_CHARS else None for k in corpus.subject_keys]
    near = sum(1 for a, b in near_identical_subject_pairs(corpus.subject_keys)
               if (train[a] and test[b]) or (train[b] and test[a]))
    return {
        "groups_on_both_sides": len(set(groups[train].tolist()) & set(groups[test].tolist())),
        "senders_on_both_sides": shared(corpus.senders, train, test),
        "sender_domains_on_both_sides": shared(corpus.sender_domains, train, test, SHARED_DOMAINS),
        "shared_freemail_domains": shared(corpus.sender_domains, train, test) -
                                   shared(corpus.sender_domains, train, test, SHARED_DOMAINS),
        "subjects_on_both_sides": shared(long_subjects, train, test),
        "near_identical_subject_pairs_across": near,
    }


# -- features per split ----------------------------------------------------------------------


class FeatureCache:
    """Feature rows per (message, history): history differs by split, the rest does not."""

    def __init__(self, corpus: Corpus, settings: Settings) -> None:
        self.corpus = corpus
        self.settings = settings
        self._rows: dict[tuple[int, History | None], np.ndarray] = {}

    def matrix(self, train: np.ndarray, tenant: str = "eval") -> np.ndarray:
        """All rows, with history replayed from the messages in ``train`` only."""
        c = self.corpus
        observations = [
            Observation(tenant, c.senders[i], 0.0 if math.isnan(c.times[i]) else float(c.times[i]),
                        bool(c.labels[i]), c.recipients[i])
            for i in range(len(c))
        ]
        histories = replay_split(observations, train.tolist())
        rows = []
        for i, history in enumerate(histories):
            key = (i, history)
            if key not in self._rows:
                when = observations[i].when or None
                self._rows[key] = extract(c.parsed[i], history, trusted_authserv_ids=self.settings.trusted_authserv_ids,
                                          limits=self.settings.limits, now=when)
            rows.append(self._rows[key])
        return np.vstack(rows) if rows else np.zeros((0, len(FEATURE_NAMES)), dtype=np.float32)


def neutralise(X: np.ndarray, names: list[str] | tuple[str, ...]) -> np.ndarray:
    """A copy of ``X`` with the named feature columns set to NaN (missing)."""
    out = np.array(X, dtype=np.float32, copy=True)
    for name in names:
        out[:, FEATURE_INDEX[name]] = np.nan
    return out


@dataclass
class CrossValidation:
    scores: np.ndarray  # out-of-fold probability for every message
    folds: np.ndarray
    groups: np.ndarray
    contributions: np.ndarray  # out-of-fold SHAP values (n, features + bias)
    gain: dict[str, float]  # mean gain importance over the fold models
    leakage: list[dict]


def cross_validate(corpus: Corpus, cache: FeatureCache, *, folds: int = 5, neutralised: tuple[str, ...] = ()) -> CrossValidation:
    """Group k-fold: out-of-fold scores and SHAP values for every message."""
    import xgboost as xgb

    from mailscore.training import fit

    if len(set(corpus.labels.tolist())) < 2:
        raise MailscoreError("evaluation needs both phishing and legitimate emails")
    groups = campaign_groups(corpus)
    k = max(2, min(folds, len(set(groups.tolist()))))
    fold_of = assign_folds(groups, [f"{l}:{s}" for l, s in zip(corpus.labels.tolist(), corpus.sources)], k)
    scores = np.full(len(corpus), np.nan)
    contribs = np.zeros((len(corpus), len(FEATURE_NAMES) + 1), dtype=np.float32)
    gain: Counter = Counter()
    leakage = []
    for f in range(k):
        test = fold_of == f
        train = ~test
        if len(set(corpus.labels[train].tolist())) < 2:
            raise MailscoreError(f"fold {f} has only one class to train on: the corpus is too small for {k} folds")
        X = neutralise(cache.matrix(train), neutralised)
        booster = fit(X[train], corpus.labels[train])
        matrix = xgb.DMatrix(X[test], feature_names=list(FEATURE_NAMES), missing=np.nan)
        scores[test] = booster.predict(matrix)
        contribs[test] = booster.predict(matrix, pred_contribs=True)
        for name, value in booster.get_score(importance_type="gain").items():
            gain[name] += value / k
        leakage.append(leakage_checks(corpus, groups, train, test))
    return CrossValidation(scores, fold_of, groups, contribs, dict(gain), leakage)


def time_holdout(corpus: Corpus, cache: FeatureCache, *, fraction: float = 0.2, neutralised: tuple[str, ...] = (),
                 min_per_class: int = 10) -> dict:
    """Train before a cutoff, test after it, with test groups purged from training."""
    import xgboost as xgb

    from mailscore.training import fit

    known = ~np.isnan(corpus.times)
    if known.sum() < 2 * min_per_class:
        return {"possible": False, "why": "too few messages with a readable time"}
    cutoff = float(np.quantile(corpus.times[known], 1.0 - fraction))
    # Move the cutoff back until the test side has enough of each class.
    candidates = np.sort(np.unique(corpus.times[known]))[::-1]
    for candidate in candidates:
        if candidate > cutoff:
            continue
        test = known & (corpus.times >= candidate)
        if min(int((corpus.labels[test] == c).sum()) for c in (0, 1)) >= min_per_class:
            cutoff = float(candidate)
            break
    else:
        return {"possible": False, "why": f"no cutoff leaves {min_per_class} of each class after it"}
    groups = campaign_groups(corpus)
    test = known & (corpus.times >= cutoff)
    test_groups = set(groups[test].tolist())
    train = known & (corpus.times < cutoff) & ~np.isin(groups, list(test_groups))
    purged = int((known & (corpus.times < cutoff)).sum() - train.sum())
    if len(set(corpus.labels[train].tolist())) < 2:
        return {"possible": False, "why": "the training side before the cutoff lacks a class"}
    X = neutralise(cache.matrix(train), neutralised)
    booster = fit(X[train], corpus.labels[train])
    scores = booster.predict(xgb.DMatrix(X[test], feature_names=list(FEATURE_NAMES), missing=np.nan)).astype(np.float64)
    y = corpus.labels[test]
    sources = [s for s, m in zip(corpus.sources, test) if m]
    return {
        "possible": True,
        "cutoff": datetime.fromtimestamp(cutoff, timezone.utc).isoformat(timespec="seconds"),
        "train_messages": int(train.sum()),
        "train_latest": datetime.fromtimestamp(float(corpus.times[train].max()), timezone.utc).isoformat(timespec="seconds"),
        "purged_from_training": purged,
        "test_messages": int(test.sum()),
        "test_phishing": int(y.sum()),
        "test_legitimate": int((y == 0).sum()),
        "test_sources": dict(Counter(sources)),
        "leakage": leakage_checks(corpus, groups, train, test),
        "metrics": summary_metrics(y, scores),
    }


def cross_period(corpus: Corpus, cache: FeatureCache, *, neutralised: tuple[str, ...] = ()) -> dict:
    """Train on every other period, test on one: features that only encode the era do not transfer.

    Groups that reach into the test period are purged from training, as in
    the time holdout.
    """
    import xgboost as xgb

    from mailscore.training import fit

    periods = np.array(corpus.periods)
    groups = campaign_groups(corpus)
    out = {}
    for period in sorted(set(periods.tolist()) - {"unknown"}):
        test = periods == period
        train = (periods != period) & (periods != "unknown") & ~np.isin(groups, list(set(groups[test].tolist())))
        if len(set(corpus.labels[test].tolist())) < 2 or len(set(corpus.labels[train].tolist())) < 2:
            continue
        X = neutralise(cache.matrix(train), neutralised)
        booster = fit(X[train], corpus.labels[train])
        scores = booster.predict(xgb.DMatrix(X[test], feature_names=list(FEATURE_NAMES), missing=np.nan)).astype(np.float64)
        out[f"test on {period}"] = {"train_messages": int(train.sum()), **summary_metrics(corpus.labels[test], scores)}
    return out


# -- metrics ------------------------------------------------------------------------------------


def roc_points(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds) for flagging ``score >= threshold``, from strictest to loosest."""
    labels = np.asarray(labels, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)
    order = np.argsort(-scores, kind="mergesort")
    s, l = scores[order], labels[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # last index of each distinct score
    tp = np.cumsum(l)[last]
    fp = np.cumsum(~l)[last]
    pos, neg = max(int(l.sum()), 1), max(int((~l).sum()), 1)
    return np.r_[0.0, fp / neg], np.r_[0.0, tp / pos], np.r_[np.inf, s[last]]


def average_precision(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the precision-recall curve as the step sum over distinct thresholds."""
    labels = np.asarray(labels, dtype=bool)
    if not labels.any():
        return math.nan
    _, tpr, thresholds = roc_points(labels, scores)
    scores = np.asarray(scores, dtype=np.float64)
    flagged = np.array([(scores >= t).sum() for t in thresholds[1:]], dtype=np.float64)
    precision = tpr[1:] * labels.sum() / flagged
    return float(np.sum(np.diff(tpr) * precision))


def threshold_at_fpr(negative_scores: np.ndarray, target: float) -> float:
    """The lowest threshold at which at most ``target`` of ``negative_scores`` are flagged.

    Flagging is ``score >= threshold``; the threshold sits just above the
    negative score that would be one false positive too many.
    """
    neg = np.sort(np.asarray(negative_scores, dtype=np.float64))[::-1]
    if len(neg) == 0:
        raise MailscoreError("no legitimate emails to choose a threshold on")
    allowed = int(math.floor(target * len(neg) + 1e-9))
    if allowed >= len(neg):
        return float(neg[-1])
    return float(np.nextafter(neg[allowed], np.inf))


def rate(flags: np.ndarray) -> float | None:
    return float(np.mean(flags)) if len(flags) else None


def at_threshold(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict:
    labels = np.asarray(labels, dtype=bool)
    flagged = np.asarray(scores, dtype=np.float64) >= threshold
    tp, fp = int((labels & flagged).sum()), int((~labels & flagged).sum())
    return {
        "threshold": round(threshold, 6),
        "recall": _r(rate(flagged[labels])),
        "fpr": _r(rate(flagged[~labels])),
        "precision": _r(tp / (tp + fp)) if tp + fp else None,
        "false_positives": fp,
    }


def summary_metrics(labels: np.ndarray, scores: np.ndarray, targets: tuple[float, ...] = (0.01, 0.001)) -> dict:
    """ROC AUC, PR AUC and recall at each target FPR (threshold from these negatives)."""
    from mailscore.model import auc

    labels = np.asarray(labels, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)
    out: dict = {"messages": int(len(labels)), "phishing": int(labels.sum()), "legitimate": int((~labels).sum()),
                 "roc_auc": _r(auc(labels, scores)), "pr_auc": _r(average_precision(labels, scores))}
    negatives = int((~labels).sum())
    if negatives and labels.any():
        out["fpr_resolution"] = _r(1.0 / negatives)
        for target in targets:
            out[f"at_fpr_{target:g}"] = at_threshold(labels, scores, threshold_at_fpr(np.asarray(scores)[~labels], target))
    return out


def confusion(labels: np.ndarray, scores: np.ndarray, thresholds: dict[str, float]) -> dict:
    """Counts of each verdict label per true class at the given thresholds."""
    out = {}
    for name, cls in (("phishing", 1), ("legitimate", 0)):
        s = np.asarray(scores)[np.asarray(labels) == cls]
        out[name] = {
            "safe": int((s < thresholds["suspicious"]).sum()),
            "suspicious": int(((s >= thresholds["suspicious"]) & (s < thresholds["phishing"])).sum()),
            "phishing": int((s >= thresholds["phishing"]).sum()),
        }
    return out


def thresholds_for_targets(labels: np.ndarray, scores: np.ndarray, *, suspicious_fpr: float, phishing_fpr: float) -> dict:
    """Thresholds chosen on held-out legitimate scores, with what they achieve there."""
    negatives = np.asarray(scores)[np.asarray(labels) == 0]
    n = max(1, len(negatives))
    # A target finer than the data resolves would be set by one or two messages (the
    # highest legitimate scores): widen it to what n held-out legitimate messages can
    # show (3 false positives for suspicious, 1 for phishing) and say so in the card.
    effective = {"suspicious_fpr": max(suspicious_fpr, 3.0 / n), "phishing_fpr": max(phishing_fpr, 1.0 / n)}
    suspicious = threshold_at_fpr(negatives, effective["suspicious_fpr"])
    phishing = max(threshold_at_fpr(negatives, effective["phishing_fpr"]), suspicious)
    return {
        "suspicious": suspicious,
        "phishing": phishing,
        "method": "lowest score whose false-positive rate on out-of-fold legitimate mail is within the target",
        "targets": {"suspicious_fpr": suspicious_fpr, "phishing_fpr": phishing_fpr},
        "effective_targets": {k: _r(v) for k, v in effective.items()},
        "legitimate_messages": int(len(negatives)),
        "fpr_resolution": _r(1.0 / len(negatives)) if len(negatives) else None,
        "achieved": {
            "suspicious": at_threshold(labels, scores, suspicious),
            "phishing": at_threshold(labels, scores, phishing),
        },
    }


def per_source(corpus: Corpus, scores: np.ndarray, thresholds: dict[str, float]) -> dict:
    """Each source against all of the other class, at the overall thresholds."""
    from mailscore.model import auc

    labels = corpus.labels
    out = {}
    for source in sorted(set(corpus.sources)):
        mask = np.array([s == source for s in corpus.sources])
        cls = Counter(labels[mask].tolist()).most_common(1)[0][0]
        others = mask | (labels != cls)
        s = scores[mask]
        entry = {
            "class": "phishing" if cls else "legitimate",
            "messages": int(mask.sum()),
            "median_score": _r(float(np.median(s))),
            "roc_auc_vs_other_class": _r(auc(labels[others], scores[others])),
            "labelled": {
                "safe": int((s < thresholds["suspicious"]).sum()),
                "suspicious": int(((s >= thresholds["suspicious"]) & (s < thresholds["phishing"])).sum()),
                "phishing": int((s >= thresholds["phishing"]).sum()),
            },
        }
        share = "recall" if cls else "fpr"
        entry[f"{share}_at_suspicious"] = _r(rate(s >= thresholds["suspicious"]))
        entry[f"{share}_at_phishing"] = _r(rate(s >= thresholds["phishing"]))
        out[source] = entry
    return out


def per_period(corpus: Corpus, scores: np.ndarray) -> dict:
    """Full metrics within each period, thresholds from that period's own legitimate mail."""
    periods = corpus.periods
    out = {}
    for period in sorted(set(periods)):
        mask = np.array([p == period for p in periods])
        if len(set(corpus.labels[mask].tolist())) == 2:
            out[period] = summary_metrics(corpus.labels[mask], scores[mask])
            out[period]["sources"] = dict(Counter(s for s, m in zip(corpus.sources, mask) if m))
    return out


def importance(cv: CrossValidation, top: int = 15) -> list[dict]:
    """Features by mean |SHAP| on out-of-fold rows, with mean gain of the fold models."""
    mean_abs = np.abs(cv.contributions[:, :-1]).mean(axis=0)
    order = np.argsort(-mean_abs)
    return [
        {"feature": FEATURE_NAMES[i], "mean_abs_shap": _r(float(mean_abs[i])), "gain": _r(cv.gain.get(FEATURE_NAMES[i], 0.0))}
        for i in order[:top] if mean_abs[i] > 0
    ]


def _r(value: float | None, digits: int = 4) -> float | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return round(float(value), digits)


def artefact_probe(corpus: Corpus, X: np.ndarray) -> list[dict]:
    """Per feature: how well it separates the classes pooled vs within each period, and the periods within a class.

    A feature whose pooled separation is much stronger than its separation
    inside a period, or that tells the periods apart within a class, is
    learning when or where mail was collected rather than what it is.
    """
    from mailscore.model import auc

    periods = np.array(corpus.periods)
    labels = corpus.labels
    named = [p for p in sorted(set(periods.tolist())) if p != "unknown"]
    out = []
    for j, name in enumerate(FEATURE_NAMES):
        col = np.nan_to_num(X[:, j].astype(np.float64), nan=-1.0)
        if np.all(col == col[0]):
            continue
        entry = {"feature": name, "class_auc_pooled": _r(auc(labels, col))}
        for p in named:
            m = periods == p
            entry[f"class_auc_{p}"] = _r(auc(labels[m], col[m]))
        if len(named) == 2:
            for cls, cname in ((1, "phishing"), (0, "legitimate")):
                m = (labels == cls) & np.isin(periods, named)
                entry[f"period_auc_within_{cname}"] = _r(auc(periods[m] == named[1], col[m]))
        out.append(entry)
    return out


# -- the report --------------------------------------------------------------------------------


@dataclass
class Variant:
    name: str
    neutralised: tuple[str, ...]
    cv: CrossValidation
    thresholds: dict
    report: dict


def run_variant(corpus: Corpus, cache: FeatureCache, settings: Settings, name: str, neutralised: tuple[str, ...], *,
                folds: int, time_fraction: float) -> Variant:
    cv = cross_validate(corpus, cache, folds=folds, neutralised=neutralised)
    targets = (settings.target_fpr_suspicious, settings.target_fpr_phishing)
    thresholds = thresholds_for_targets(corpus.labels, cv.scores, suspicious_fpr=targets[0], phishing_fpr=targets[1])
    report = {
        "neutralised_features": list(neutralised),
        "overall": summary_metrics(corpus.labels, cv.scores, targets),
        "thresholds": thresholds,
        "confusion_at_thresholds": confusion(corpus.labels, cv.scores, thresholds),
        "per_source": per_source(corpus, cv.scores, thresholds),
        "per_period": per_period(corpus, cv.scores),
        "feature_importance": importance(cv),
        "time_holdout": time_holdout(corpus, cache, fraction=time_fraction, neutralised=neutralised),
        "cross_period": cross_period(corpus, cache, neutralised=neutralised),
    }
    return Variant(name, neutralised, cv, thresholds, report)


def evaluate(paths: list[str | Path], out_dir: str | Path, settings: Settings, *, folds: int = 5,
             neutralised: tuple[str, ...] | None = None, time_fraction: float = 0.2, plots: bool = True) -> dict:
    """Evaluate with all features and with artefact features neutralised; write report.json/.md and plots."""
    from mailscore.training import ARTEFACT_FEATURES

    neutralised = tuple(ARTEFACT_FEATURES) if neutralised is None else tuple(neutralised)
    corpus = load_corpus(paths, settings)
    if len(corpus) == 0:
        raise MailscoreError("no labelled emails found: put them under phish/ and ham/ folders")
    cache = FeatureCache(corpus, settings)
    variants = [
        run_variant(corpus, cache, settings, "all_features", (), folds=folds, time_fraction=time_fraction),
        run_variant(corpus, cache, settings, "artefact_safe", neutralised, folds=folds, time_fraction=time_fraction),
    ]
    chosen = variants[-1]
    groups = chosen.cv.groups
    sizes = Counter(groups.tolist())
    report = {
        "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "corpus": {
            "paths": [str(p) for p in paths],
            "messages": len(corpus),
            "phishing": int(corpus.labels.sum()),
            "legitimate": int((corpus.labels == 0).sum()),
            "skipped": corpus.skipped,
            "sources": {s: {"class": "phishing" if corpus.labels[[i for i, x in enumerate(corpus.sources) if x == s]].mean() > 0.5
                            else "legitimate", "messages": n} for s, n in sorted(Counter(corpus.sources).items())},
            "periods": dict(Counter(corpus.periods)),
        },
        "split": {
            "method": f"group {int(chosen.cv.folds.max()) + 1}-fold cross-validation over campaign groups "
                      "(same sender address, same non-freemail sender domain, or near-identical subject), "
                      "folds balanced by class and source; sender history replayed from training folds only",
            "groups": len(sizes),
            "largest_groups": [n for _, n in sizes.most_common(5)],
            "fold_sizes": dict(Counter(chosen.cv.folds.tolist())),
            "leakage_checks_per_fold": chosen.cv.leakage,
        },
        "targets": {"suspicious_fpr": settings.target_fpr_suspicious, "phishing_fpr": settings.target_fpr_phishing},
        "chosen_variant": chosen.name,
        "variants": {v.name: v.report for v in variants},
        "artefact_probe": artefact_probe(corpus, cache.matrix(np.ones(len(corpus), dtype=bool))),
    }
    report["reasons_cost"] = reasons_cost(corpus, cache, chosen.neutralised)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if plots:
        report["plots"] = write_plots(out, corpus, variants)
    (out / "report.json").write_text(__import__("json").dumps(report, indent=2) + "\n")
    (out / "report.md").write_text(markdown_report(report))
    return report


def reasons_cost(corpus: Corpus, cache: FeatureCache, neutralised: tuple[str, ...], *, messages: int = 300) -> dict:
    """Per-message time of a prediction vs its tree SHAP reasons, one message at a time as the worker does.

    Measured on a model fitted to all rows, single-threaded like the served
    model; wall-clock figures on this machine, for comparison only.
    """
    import time

    from mailscore.model import Model
    from mailscore.training import fit

    everything = np.ones(len(corpus), dtype=bool)
    X = cache.matrix(everything)
    booster = fit(neutralise(X, neutralised), corpus.labels)
    booster.set_param({"nthread": 1})
    model = Model(booster, {"neutralised_features": {n: "" for n in neutralised}}, "eval")
    rows = [X[i : i + 1] for i in range(min(messages, len(X)))]
    model.predict(rows[0])
    model.contributions(rows[0])  # warm both paths
    predict_ms, explain_ms = [], []
    for row in rows:
        started = time.perf_counter()
        model.predict(row)
        predict_ms.append((time.perf_counter() - started) * 1000.0)
        started = time.perf_counter()
        model.contributions(row)
        explain_ms.append((time.perf_counter() - started) * 1000.0)
    p, e = np.array(predict_ms), np.array(explain_ms)
    return {
        "messages": len(rows),
        "predict_ms": {"p50": _r(np.percentile(p, 50)), "p95": _r(np.percentile(p, 95))},
        "explain_ms": {"p50": _r(np.percentile(e, 50)), "p95": _r(np.percentile(e, 95))},
        "explain_over_predict_p50": _r(float(np.percentile(e, 50) / max(np.percentile(p, 50), 1e-9)), 2),
    }


def write_plots(out: Path, corpus: Corpus, variants: list[Variant]) -> list[str]:
    """roc.png, pr.png, score_histograms.png and thresholds.png for the variants (the last is the chosen one)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    y = corpus.labels
    chosen = variants[-1]
    written = []

    fig, ax = plt.subplots(figsize=(6, 5))
    for v in variants:
        fpr, tpr, _ = roc_points(y, v.cv.scores)
        ax.step(np.maximum(fpr, 1e-4), tpr, where="post", label=f"{v.name} (AUC {v.report['overall']['roc_auc']})")
    for p in sorted(set(corpus.periods)):
        m = np.array([x == p for x in corpus.periods])
        if len(set(y[m].tolist())) == 2:
            fpr, tpr, _ = roc_points(y[m], chosen.cv.scores[m])
            ax.step(np.maximum(fpr, 1e-4), tpr, where="post", linestyle=":", label=f"{chosen.name}, {p}")
    for target in (chosen.report["thresholds"]["targets"].values()):
        ax.axvline(target, color="grey", linewidth=0.8, linestyle="--")
    ax.set(xscale="log", xlim=(1e-3, 1), ylim=(0, 1.01), xlabel="false-positive rate (log; held-out legitimate)",
           ylabel="recall (held-out phishing)", title="ROC, out-of-fold")
    ax.legend(fontsize=7, loc="lower right")
    written.append(_save(fig, out / "roc.png"))

    fig, ax = plt.subplots(figsize=(6, 5))
    for v in variants:
        _, tpr, thresholds = roc_points(y, v.cv.scores)
        flagged = np.array([(v.cv.scores >= t).sum() for t in thresholds[1:]], dtype=float)
        precision = tpr[1:] * y.sum() / flagged
        ax.step(tpr[1:], precision, where="post", label=f"{v.name} (PR AUC {v.report['overall']['pr_auc']})")
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="recall", ylabel="precision", title="Precision-recall, out-of-fold")
    ax.legend(fontsize=8, loc="lower left")
    written.append(_save(fig, out / "pr.png"))

    th = chosen.thresholds
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    bins = np.linspace(0, 1, 41)
    for cls, name in ((0, "legitimate"), (1, "phishing")):
        axes[0].hist(chosen.cv.scores[y == cls], bins=bins, alpha=0.6, label=name)
    sources = sorted(set(corpus.sources))
    for s in sources:
        m = np.array([x == s for x in corpus.sources])
        axes[1].hist(chosen.cv.scores[m], bins=bins, histtype="step", linewidth=1.4, label=s)
    for ax, title in zip(axes, ("by class", "by source")):
        for key, style in (("suspicious", "--"), ("phishing", "-")):
            ax.axvline(th[key], color="black", linestyle=style, linewidth=0.8)
        ax.set(yscale="log", xlabel="out-of-fold score", ylabel="messages", title=f"Scores {title} ({chosen.name})")
        ax.legend(fontsize=7)
    written.append(_save(fig, out / "score_histograms.png"))

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    grid = np.linspace(0, 1, 401)
    scores = chosen.cv.scores
    recall = np.array([(scores[y == 1] >= t).mean() for t in grid])
    fpr = np.array([(scores[y == 0] >= t).mean() for t in grid])
    flagged = np.array([(scores >= t).sum() for t in grid])
    precision = np.where(flagged > 0, np.array([((scores >= t) & (y == 1)).sum() for t in grid]) / np.maximum(flagged, 1), np.nan)
    axes[0].plot(grid, recall, label="recall")
    axes[0].plot(grid, precision, label="precision")
    axes[0].plot(grid, fpr, label="false-positive rate")
    lo = max(0.0, min(th["suspicious"], th["phishing"]) - 0.15)
    axes[0].set(xlim=(lo, 1.0), xlabel="threshold", title="Trade-off around the chosen thresholds")
    fpr_pts, tpr_pts, _ = roc_points(y, scores)
    axes[1].step(np.maximum(fpr_pts, 1e-4), tpr_pts, where="post", color="grey")
    for key, marker in (("suspicious", "o"), ("phishing", "s")):
        got = th["achieved"][key]
        axes[0].axvline(th[key], color="black", linestyle="--" if key == "suspicious" else "-", linewidth=0.8)
        axes[1].plot(max(got["fpr"] or 0.0, 1e-4), got["recall"], marker, markersize=8,
                     label=f"{key}: {th[key]:.4f} (FPR {got['fpr']}, recall {got['recall']})")
    axes[0].legend(fontsize=8)
    axes[1].set(xscale="log", xlim=(1e-4, 1), ylim=(0, 1.01), xlabel="false-positive rate (log)", ylabel="recall",
                title="Operating points")
    axes[1].legend(fontsize=7, loc="lower right")
    written.append(_save(fig, out / "thresholds.png"))
    return written


def _save(fig, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path.name


def _fmt(value) -> str:
    return "–" if value is None else (f"{value:.4f}" if isinstance(value, float) else str(value))


def markdown_report(report: dict) -> str:
    """The human report: what was split how, the figures, and what to make of them."""
    c = report["corpus"]
    lines = [
        "# mailscore evaluation",
        "",
        f"Generated {report['generated_at']} from {', '.join(c['paths'])}: {c['messages']} messages "
        f"({c['phishing']} phishing, {c['legitimate']} legitimate).",
        "",
        "## Split",
        "",
        report["split"]["method"][:1].upper() + report["split"]["method"][1:] + ".",
        f"{report['split']['groups']} groups; largest {report['split']['largest_groups']}; "
        f"fold sizes {report['split']['fold_sizes']}.",
        "",
        "Leakage checks (per fold, training side vs test side; all must be 0 except shared freemail domains, "
        "which only join by full address):",
        "",
        "| fold | groups | senders | sender domains | subjects | near-identical subjects | freemail domains |",
        "|---|---|---|---|---|---|---|",
    ]
    for i, lk in enumerate(report["split"]["leakage_checks_per_fold"]):
        lines.append(f"| {i} | {lk['groups_on_both_sides']} | {lk['senders_on_both_sides']} | "
                     f"{lk['sender_domains_on_both_sides']} | {lk['subjects_on_both_sides']} | "
                     f"{lk['near_identical_subject_pairs_across']} | {lk['shared_freemail_domains']} |")
    names = list(report["variants"])
    lines += ["", "## Overall (out-of-fold)", "", "| variant | ROC AUC | PR AUC | recall @1% FPR | recall @0.1% FPR | FPR resolution |",
              "|---|---|---|---|---|---|"]
    for name in names:
        o = report["variants"][name]["overall"]
        lines.append(f"| {name} | {_fmt(o['roc_auc'])} | {_fmt(o['pr_auc'])} | {_fmt(o['at_fpr_0.01']['recall'])} | "
                     f"{_fmt(o['at_fpr_0.001']['recall'])} | {_fmt(o['fpr_resolution'])} |")
    lines += ["", "With n legitimate messages the smallest measurable false-positive rate is 1/n: "
              "a target below it means \"no held-out legitimate message flagged\".", ""]
    for name in names:
        v = report["variants"][name]
        th = v["thresholds"]
        lines += [f"## {name}", "", f"Neutralised features: {', '.join(v['neutralised_features']) or 'none'}.", "",
                  f"Thresholds for targets {th['targets']}: suspicious {th['suspicious']:.6f}, "
                  f"phishing {th['phishing']:.6f}.", "",
                  "Confusion at these thresholds (rows: truth):", "", "| truth | safe | suspicious | phishing |", "|---|---|---|---|"]
        for truth, row in v["confusion_at_thresholds"].items():
            lines.append(f"| {truth} | {row['safe']} | {row['suspicious']} | {row['phishing']} |")
        lines += ["", "Per source (each against all held-out mail of the other class; recall for phishing "
                  "sources, false-positive rate for legitimate ones):", "",
                  "| source | class | n | ROC AUC | median score | at suspicious | at phishing |", "|---|---|---|---|---|---|---|"]
        for source, e in v["per_source"].items():
            key = "recall" if e["class"] == "phishing" else "fpr"
            lines.append(f"| {source} | {e['class']} | {e['messages']} | {_fmt(e['roc_auc_vs_other_class'])} | "
                         f"{_fmt(e['median_score'])} | {key} {_fmt(e[key + '_at_suspicious'])} | "
                         f"{key} {_fmt(e[key + '_at_phishing'])} |")
        lines += ["", "Per period (both classes from the same years; thresholds from that period's legitimate mail):", "",
                  "| period | n | ROC AUC | PR AUC | recall @1% FPR | recall @0.1% FPR |", "|---|---|---|---|---|---|"]
        for period, m in v["per_period"].items():
            lines.append(f"| {period} | {m['messages']} | {_fmt(m['roc_auc'])} | {_fmt(m['pr_auc'])} | "
                         f"{_fmt(m['at_fpr_0.01']['recall'])} | {_fmt(m['at_fpr_0.001']['recall'])} |")
        t = v["time_holdout"]
        if t.get("possible"):
            m = t["metrics"]
            lines += ["", f"Forward-in-time holdout: trained on {t['train_messages']} messages up to {t['train_latest']} "
                      f"({t['purged_from_training']} purged for sharing a group with the test side), tested on "
                      f"{t['test_messages']} from {t['cutoff']} ({t['test_phishing']} phishing, {t['test_legitimate']} "
                      f"legitimate): ROC AUC {_fmt(m['roc_auc'])}, PR AUC {_fmt(m['pr_auc'])}, recall @1% FPR "
                      f"{_fmt(m['at_fpr_0.01']['recall'])} (FPR resolution {_fmt(m['fpr_resolution'])}); "
                      f"leakage {t['leakage']}."]
        else:
            lines += ["", f"Forward-in-time holdout not possible: {t.get('why')}."]
        if v.get("cross_period"):
            lines += ["", "Cross-period transfer (trained only on the other period(s)):", "",
                      "| test period | trained on | ROC AUC | PR AUC | recall @1% FPR |", "|---|---|---|---|---|"]
            for name_p, m in v["cross_period"].items():
                lines.append(f"| {name_p} | {m['train_messages']} | {_fmt(m['roc_auc'])} | {_fmt(m['pr_auc'])} | "
                             f"{_fmt(m['at_fpr_0.01']['recall'])} |")
        lines += ["", "Feature importance (mean |SHAP| on out-of-fold rows, mean gain of the fold models):", "",
                  "| feature | mean abs SHAP | gain |", "|---|---|---|"]
        for e in v["feature_importance"]:
            lines.append(f"| {e['feature']} | {_fmt(e['mean_abs_shap'])} | {_fmt(e['gain'])} |")
        lines.append("")
    cost = report.get("reasons_cost")
    if cost:
        lines += ["## Cost of reasons", "",
                  f"One message at a time, single-threaded, {cost['messages']} messages: predict p50 "
                  f"{cost['predict_ms']['p50']} ms (p95 {cost['predict_ms']['p95']}), tree SHAP reasons p50 "
                  f"{cost['explain_ms']['p50']} ms (p95 {cost['explain_ms']['p95']}): "
                  f"{cost['explain_over_predict_p50']}x a prediction. "
                  "MAILSCORE_REASONS_FOR=flagged computes them for non-safe verdicts only.", ""]
    probe = report["artefact_probe"]
    if probe:
        cols = [k for k in probe[0] if k != "feature"]
        lines += ["## Artefact probe", "",
                  "ROC AUC of each raw feature for the class, pooled and within each period, and for the period within "
                  "each class (0.5 = no signal; far from 0.5 within a class = the feature tells the eras apart).", "",
                  "| feature | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
        for e in probe:
            lines.append(f"| {e['feature']} | " + " | ".join(_fmt(e.get(k)) for k in cols) + " |")
        lines.append("")
    if report.get("plots"):
        lines += ["## Plots", ""] + [f"![{p}]({p})" for p in report["plots"]] + [""]
    return "\n".join(lines)
