"""A fuzz corpus through scan_inputs, load_images and RecordWriter: one outcome per input, no hang, bounded memory."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from imgorigin.images import SKIP_REASONS

CHILD = textwrap.dedent(
    """
    import json, resource, sys
    from pathlib import Path

    sys.path.insert(0, sys.argv[1])
    from fuzz_corpus import make_corpus
    from imgorigin.images import load_images, scan_inputs
    from imgorigin.records import RecordWriter, dumps

    folder, out, n = Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4])
    made = make_corpus(folder, n=n, seed=0)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    images, skipped = scan_inputs([folder])
    with RecordWriter(out, {"test": "fuzz"}) as writer:
        writer.write_all(skipped)
        for start in range(0, len(images), 64):
            loaded, errors = load_images(images[start : start + 64], 1, (28, 28))
            for image in loaded:
                writer.write({"path": image.path, "sha256": image.sha256, "reasons": list(image.reasons)})
            for path, message in errors:
                writer.write({"path": path, "error": f"{path}: {message}"})
    extra_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    print(dumps({"made": [str(path) for path in made], "images": len(images), "extra_mb": extra_mb}))
    """
)


def test_every_input_of_a_fuzz_corpus_gets_one_outcome(tmp_path: Path) -> None:
    folder, out = tmp_path / "corpus", tmp_path / "records.jsonl"
    arguments = [str(Path(__file__).parent), str(folder), str(out), "200"]
    run = subprocess.run([sys.executable, "-c", CHILD, *arguments], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    summary = json.loads(run.stdout.splitlines()[-1])
    lines = [json.loads(line) for line in out.read_bytes().decode("utf-8").splitlines()]  # all valid UTF-8 JSON
    assert lines[0] == {"imgorigin_run": {"test": "fuzz"}}
    outcomes = {record["path"]: record for record in lines[1:]}
    assert len(outcomes) == len(lines) - 1  # one line per path
    results = [r for r in outcomes.values() if "error" not in r and "skipped" not in r]
    errors = [r for r in outcomes.values() if "error" in r]
    skipped = [r for r in outcomes.values() if "skipped" in r]
    assert len(results) + len(errors) == summary["images"] and len(results) >= 20 and len(errors) >= 50
    assert {r["skipped"] for r in skipped} == set(SKIP_REASONS) - {"unreadable"}
    made = [Path(path) for path in summary["made"]]
    assert len(made) >= 200
    for path in made:
        assert _accounted(path, outcomes), f"no outcome for {path!r}"
    assert summary["extra_mb"] < 300


def _accounted(path: Path, outcomes: dict[str, dict]) -> bool:
    """Whether an input has its own outcome, sits in a skipped folder, or is a folder whose contents have some."""
    if str(path) in outcomes:
        return True
    if any("skipped" in outcomes.get(str(parent), {}) for parent in path.parents):
        return True
    return any(Path(other).is_relative_to(path) for other in outcomes)
