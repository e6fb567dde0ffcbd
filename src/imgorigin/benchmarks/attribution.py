"""The open-set attribution benchmark: rotating unknown sources x shots x layers x classifiers x rejections.

Sources are the sub-folders of a data root (at most ``max_per_source`` images each, a seeded subset). Each split
holds ``n_unknown`` sources out as unknown, a consecutive run of the candidate sources (those not always known),
rotating and wrapping, so that every candidate is unknown once when there are enough splits. In each split every
known source's images are shuffled (seeded by the split), ``test_fraction`` of them are kept for testing and the
rest is the training pool, whose first n images are the n-shot training set (nested across n). Features are
embedded once per image for all layers (cached on disk); every classifier chooses its hyper-parameters and
threshold on its training images only, and is scored on the test images of the known sources and all images of
the unknown ones. With bindings, each split also gets a features row and a two-stage row (timed) for the first
layer, classifier and rejection trained on the whole pool.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from imgorigin.attribution import fusion
from imgorigin.attribution.attributor import Attributor, class_folders
from imgorigin.attribution.evaluation import feature_answers, summary, timed, two_stage_answers
from imgorigin.attribution.features import DEFAULT_BACKBONE, Backbone, create_backbone, embed_paths_layers
from imgorigin.attribution.features.cache import EmbeddedLayers
from imgorigin.attribution.openset import CLASSIFIERS, REJECTIONS
from imgorigin.errors import UsageError
from imgorigin.metrics import open_set_summary
from imgorigin.runtime import default_cache_dir, resolve_device
from imgorigin.twostage import Binding, Bindings, TwoStageAttributor

SHOTS: tuple[int | None, ...] = (1, 5, 10, 50, None)


class Split(NamedTuple):
    """One split's known sources, their shuffled training pools, and the test rows of known and unknown sources."""

    known: list[str]
    pools: list[np.ndarray]
    test_known: np.ndarray
    test_unknown: np.ndarray


def rotating_splits(candidates: Sequence[str], n_unknown: int, n_splits: int) -> list[list[str]]:
    """Unknown sources of each split: consecutive runs of ``n_unknown`` candidates, rotating (wrapping)."""
    return [[candidates[(i * n_unknown + j) % len(candidates)] for j in range(n_unknown)] for i in range(n_splits)]


def split(source_of: np.ndarray, index: int, unknown: Sequence[str], test_fraction: float, seed: int) -> Split:
    """Split ``index``: each known source's rows shuffled (seed, index), the first ``test_fraction`` (at least one)
    for testing and the rest its training pool; every row of the unknown sources is a test row."""
    rng = np.random.default_rng([seed, index])
    known = [name for name in dict.fromkeys(source_of.tolist()) if name not in unknown]
    pools, tests = [], []
    for name in known:
        members = rng.permutation(np.flatnonzero(source_of == name))
        n_test = max(1, round(test_fraction * len(members)))
        tests.append(members[:n_test])
        pools.append(members[n_test:])  # shuffled: the first n are the n-shot training set, nested across n
    return Split(known, pools, np.concatenate(tests), np.flatnonzero(np.isin(source_of, unknown)))


def mean_std(values: Sequence[float]) -> str:
    """ "mean ± std" in percent (std over splits; none for a single split)."""
    mean = 100 * float(np.mean(values))
    return f"{mean:.1f}" if len(values) == 1 else f"{mean:.1f} ± {100 * float(np.std(values)):.1f}"


def markdown(
    rows: Sequence[dict[str, Any]],
    keys: tuple[str, ...] = ("layer", "classifier", "rejection", "shots"),
    timed: bool = False,
) -> str:
    """One table line per combination of the key columns, metrics (and seconds per image) averaged over splits."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(row[key] for key in keys), []).append(row)
    columns = [*keys, "splits", "accuracy", "AUROC", "OSCR", "TPR@5%FPR", *(["s/image"] if timed else [])]
    lines = [f"| {' | '.join(columns)} |", "|---" * len(columns) + "|"]
    for values, group in groups.items():
        cells = [mean_std([r[key] for r in group]) for key in ("closed_set_accuracy", "auroc", "oscr", "tpr_at_5_fpr")]
        if timed:
            cells.append(f"{np.mean([r['seconds_per_image'] for r in group]):.3g}")
        lines.append(f"| {' | '.join(map(str, values))} | {len(group)} | {' | '.join(cells)} |")
    return "\n".join(lines) + "\n"


def split_rows(
    features: Mapping[str, np.ndarray],
    source_of: np.ndarray,
    index: int,
    unknown: list[str],
    shots: Sequence[int | None],
    classifiers: Sequence[str],
    rejections: Sequence[str],
    test_fraction: float,
    seed: int,
    log: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """Result rows of one split: every (shots, layer, classifier, rejection) fitted and scored."""
    parts = split(source_of, index, unknown, test_fraction, seed)
    test_known, test_unknown = parts.test_known, parts.test_unknown
    smallest = min(len(pool) for pool in parts.pools)
    rows = []
    for n_shots in shots:
        if n_shots is not None and n_shots > smallest:
            log(f"split {index}: skipping {n_shots} shots (smallest training pool: {smallest})")
            continue
        train = np.concatenate([pool[:n_shots] for pool in parts.pools])
        log(f"split {index} (unknown: {', '.join(unknown)}): {n_shots or 'all'} shots, {len(train)} training images")
        for layer, x in features.items():
            for kind in classifiers:
                for rejection in rejections:
                    model = CLASSIFIERS[kind](rejection=rejection, random_state=seed).fit(x[train], source_of[train])
                    rows.append(
                        {
                            "split": index,
                            "unknown": unknown,
                            "known": parts.known,
                            "layer": layer,
                            "classifier": kind,
                            "rejection": rejection,
                            "shots": n_shots or "all",
                            "n_train": len(train),
                            "n_test_known": len(test_known),
                            "n_test_unknown": len(test_unknown),
                            "selection": model.selection_,
                            **open_set_summary(
                                source_of[test_known],
                                model.predict_closed_set(x[test_known]),
                                model.score_samples(x[test_known]),
                                model.score_samples(x[test_unknown]),
                                model.threshold_,
                            ),
                        }
                    )
    return rows


def two_stage_rows(
    x: np.ndarray,
    paths: Sequence[str],
    source_of: np.ndarray,
    index: int,
    unknown: list[str],
    setting: tuple[str, str, str],
    make_two_stage: Callable[[Attributor], TwoStageAttributor],
    test_fraction: float,
    seed: int,
    progress: bool = False,
    log: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """A split's features row and two-stage row for one (layer, classifier, rejection) on the whole pool."""
    parts = split(source_of, index, unknown, test_fraction, seed)
    layer, kind, rejection = setting
    train, test = np.concatenate(parts.pools), np.concatenate([parts.test_known, parts.test_unknown])
    model = CLASSIFIERS[kind](rejection=rejection, random_state=seed).fit(x[train], source_of[train])
    two_stage = make_two_stage(Attributor(model))
    features, features_seconds = timed(lambda: feature_answers(model, x[test]))
    records, seconds = timed(lambda: two_stage.attribute(x[test], [paths[i] for i in test], progress=progress))
    n_known, rows = len(parts.test_known), []
    for mode, answers, spent in (
        ("features", features, features_seconds),
        ("two-stage", two_stage_answers(records), seconds),
    ):
        rows.append(
            {
                "split": index,
                "unknown": unknown,
                "known": parts.known,
                "mode": mode,
                "layer": layer,
                "classifier": kind,
                "rejection": rejection,
                "shots": "all",
                "n_train": len(train),
                "n_test_known": n_known,
                "n_test_unknown": len(parts.test_unknown),
                **summary(
                    source_of[parts.test_known], answers.part(slice(n_known)), answers.part(slice(n_known, None))
                ),
                "seconds_per_image": spent / len(test),
            }
        )
    rows[-1]["rules"] = dict(sorted(Counter(r["rule"] for r in records).items()))
    log(
        f"split {index} (unknown: {', '.join(unknown)}): two-stage accuracy "
        f"{rows[-1]['closed_set_accuracy']:.3f}, AUROC {rows[-1]['auroc']:.3f}, "
        f"{rows[-1]['seconds_per_image']:.3g} s/image"
    )
    return rows


def _layers(backbone: Backbone, layers: str | Sequence[str], others: dict[str, Backbone] | None = None) -> list[str]:
    """'default', 'all', or layer names (aliases and indices allowed) as canonical layer names.

    A fused layer (``3.mean+6``, ``6+spectrum@grid``: see imgorigin.attribution.fusion) has each part resolved;
    the other backbones it names are created into ``others``.
    """
    if layers == "default":
        return [backbone.default_layer]
    if layers == "all":
        return list(backbone.layers)
    others = {} if others is None else others
    names = []
    for name in layers:
        if not fusion.is_fused(name):
            names.append(backbone.resolve_layer(name))
            continue
        resolved = []
        for part in fusion.parts(name):
            owner = backbone
            if part.backbone is not None:
                if part.backbone not in others:
                    others[part.backbone] = create_backbone(part.backbone, device=backbone.device)
                owner = others[part.backbone]
            resolved.append(fusion.Part(part.backbone, owner.resolve_layer(part.layer)))
        names.append(fusion.spec(resolved))
    return names


def _embed_fused(
    extractor: Backbone,
    others: Mapping[str, Backbone],
    paths: list[str],
    layer_names: Sequence[str],
    **embed: Any,
) -> EmbeddedLayers:
    """Features of every (fused) layer, each part embedded once through the cache; images unreadable by any
    backbone are dropped, with their errors."""
    wanted: dict[str | None, list[str]] = {}
    for name in layer_names:
        for part in fusion.parts(name):
            wanted.setdefault(part.backbone, []).append(part.layer)
    main = embed_paths_layers(extractor, paths, list(dict.fromkeys(wanted.pop(None, []))), **embed)
    kept, errors = main.paths, list(main.errors)
    per_part = {(None, layer): x for layer, x in main.features.items()}
    for name, layers in wanted.items():
        other = embed_paths_layers(others[name], kept, list(dict.fromkeys(layers)), **embed)
        errors += other.errors
        rows = {path: i for i, path in enumerate(other.paths)}
        keep = [i for i, path in enumerate(kept) if path in rows]
        kept = [kept[i] for i in keep]
        per_part = {key: x[keep] for key, x in per_part.items()}
        per_part |= {(name, layer): x[[rows[p] for p in kept]] for layer, x in other.features.items()}
    features = {
        name: fusion.fused_features(name, per_part) if fusion.is_fused(name) else per_part[(None, name)]
        for name in layer_names
    }
    return EmbeddedLayers(features, kept, errors)


def run(
    data_root: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    backbone: str = DEFAULT_BACKBONE,
    layers: str | Sequence[str] = "default",
    classifiers: Sequence[str] = tuple(CLASSIFIERS),
    rejections: Sequence[str] = REJECTIONS,
    shots: Sequence[int | None] = SHOTS,
    n_unknown: int = 2,
    splits: int = 0,
    always_known: Sequence[str] = ("real",),
    test_fraction: float = 0.3,
    max_per_source: int = 4000,
    seed: int = 0,
    bindings: Mapping[str, Binding] | None = None,
    top_k: int | None = None,
    min_probability: float = 0.0,
    alpha: float = 0.05,
    batch_size: int = 64,
    cache_dir: str | os.PathLike[str] | None = None,
    device: str | torch.device | None = "auto",
    progress: bool = False,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the benchmark on a data root; write results.json (every run) and results.md (means ± std over splits).

    ``layers``: 'default', 'all' or layer names; ``shots`` None: the whole training pool; ``splits`` 0: enough
    for every candidate source to be unknown once. With ``bindings`` (labels are source folders), two-stage rows
    are added (results.json 'two_stage_rows'); in the splits where a bound source is unknown its binding is unused.
    """
    data_root, out_dir = Path(data_root), Path(out_dir)
    sources = class_folders(data_root)
    bindings = Bindings((bindings or {}).values())
    if strangers := sorted(set(bindings) - set(sources)):
        raise UsageError(f"--bind: {', '.join(strangers)} is not a source folder of {data_root}")
    candidates = [s for s in sources if s not in set(always_known)]
    if len(candidates) < n_unknown or len(sources) - n_unknown < 2:
        raise UsageError(
            f"{len(sources)} sources ({', '.join(sources)}): need {n_unknown} unknown (not in --always-known) "
            "and at least 2 known in each split"
        )
    split_list = rotating_splits(candidates, n_unknown, splits or -(-len(candidates) // n_unknown))
    rng = np.random.default_rng(seed)
    source_by_path = {
        str(found[i]): name
        for name, found in sources.items()
        for i in np.sort(rng.choice(len(found), min(len(found), max_per_source), replace=False))
    }
    extractor = create_backbone(backbone, device=resolve_device(device))
    others: dict[str, Backbone] = {}
    layer_names = _layers(extractor, layers, others)
    embedded = _embed_fused(
        extractor,
        others,
        list(source_by_path),
        layer_names,
        cache_dir=cache_dir,
        batch_size=batch_size,
        progress=progress,
    )
    for path, message in embedded.errors:
        log(f"warning: skipped {path}: {message}")
    source_of = np.array([source_by_path[path] for path in embedded.paths])

    made: list[TwoStageAttributor] = []

    def make_two_stage(attributor: Attributor) -> TwoStageAttributor:
        """A split's two-stage attributor, every bound model loaded before the split's sweep."""
        two_stage = TwoStageAttributor(
            attributor,
            bindings,
            alpha=alpha,
            top_k=top_k,
            min_probability=min_probability,
            device=device,
            cache_dir=cache_dir or default_cache_dir(),
        )
        two_stage.load_verifiers()
        made.append(two_stage)
        return two_stage

    rows, confirmed = [], []
    setting = (layer_names[0], classifiers[0], rejections[0])
    for index, unknown in enumerate(split_list):
        if bindings:  # first, so that a model that cannot be loaded stops the run before the sweep
            x = embedded.features[setting[0]]
            confirmed += two_stage_rows(
                x,
                embedded.paths,
                source_of,
                index,
                unknown,
                setting,
                make_two_stage,
                test_fraction,
                seed,
                progress,
                log,
            )
        rows += split_rows(
            embedded.features, source_of, index, unknown, shots, classifiers, rejections, test_fraction, seed, log
        )
    config = {
        "data_root": str(data_root),
        "backbone": extractor.id,
        "layers": layer_names,
        "splits": split_list,
        "test_fraction": test_fraction,
        "max_per_source": max_per_source,
        "seed": seed,
        "images": {name: int((source_of == name).sum()) for name in sources},
        "errors": [{"path": p, "error": m} for p, m in embedded.errors],
    }
    results: dict[str, Any] = {"config": config, "rows": rows}
    table = markdown(rows)
    if bindings:
        results["two_stage_rows"] = confirmed
        config["two_stage"] = made[-1].settings()
        table += "\n" + markdown(confirmed, ("mode", "layer", "classifier", "rejection", "shots"), timed=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (out_dir / "results.md").write_text(
        f"Backbone {extractor.id}, {len(split_list)} splits of {data_root}; "
        f"metrics in %, mean ± std over splits.\n\n{table}"
    )
    log(table)
    return results
