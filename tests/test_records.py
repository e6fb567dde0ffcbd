"""imgorigin.records: run identity, repair of cut-off lines, one line per path, kills, odd paths, non-finite numbers."""

from __future__ import annotations

import json
import logging
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from imgorigin import records
from imgorigin.errors import UsageError
from imgorigin.records import RecordWriter, differing_keys, dumps, read_done, read_identity, read_records

RUN = {"model": "zoo:dcgan", "weight_hash": "ab" * 32, "calibration_sha256": "cd" * 32, "alpha": 0.05}


def lines(path: Path) -> list[dict]:
    """Every line of a file as JSON; fails on any invalid line (the file must be valid UTF-8 throughout)."""
    return [json.loads(line) for line in path.read_bytes().decode("utf-8").splitlines()]


def write(path: Path, identity: dict | None, *written: dict, **options: bool) -> RecordWriter:
    """Open a writer, write records, close it; the closed writer is returned for its counters."""
    with RecordWriter(path, identity, **options) as writer:
        writer.write_all(written)
    return writer


# Run identity


def test_header_holds_the_identity_and_is_not_a_record(tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    write(out, RUN, {"path": "a.png", "score": 1.0})
    assert lines(out) == [{"imgorigin_run": RUN}, {"path": "a.png", "score": 1.0}]
    assert read_identity(out) == RUN
    assert read_records(out) == [{"path": "a.png", "score": 1.0}]
    assert read_identity(tmp_path / "missing.jsonl") is None and read_records(tmp_path / "missing.jsonl") == []


def test_same_identity_resumes(tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    write(out, RUN, {"path": "a.png", "score": 1.0}, {"path": "b.png", "error": "b.png: truncated"})
    with RecordWriter(out, dict(RUN, alpha=0.05)) as writer:
        assert writer.done == {"a.png"}  # the error is retried
        writer.write({"path": "b.png", "score": 2.0})
        assert writer.done == {"a.png", "b.png"}
    assert [r["path"] for r in read_records(out)] == ["a.png", "b.png"] and read_done(out) == {"a.png", "b.png"}


def test_another_run_is_refused_with_the_differing_keys(tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    write(out, RUN, {"path": "a.png", "score": 1.0})
    before = out.read_bytes()
    other = dict(RUN, model="zoo:vae", alpha=0.01)
    with pytest.raises(UsageError) as info:
        RecordWriter(out, other)
    message = str(info.value)
    assert str(out) in message and "--restart" in message and "new output" in message
    assert "alpha (file: 0.05, now: 0.01)" in message and 'model (file: "zoo:dcgan", now: "zoo:vae")' in message
    assert "weight_hash" not in message and out.read_bytes() == before  # nothing changed
    assert differing_keys(RUN, {**RUN, "extra": 1, "alpha": None}) == ["alpha", "extra"]


@pytest.mark.parametrize("options", [{"restart": True}, {"resume": False}])
def test_restart_starts_anew(tmp_path: Path, options: dict) -> None:
    out = tmp_path / "r.jsonl"
    write(out, RUN, {"path": "a.png", "score": 1.0})
    other = dict(RUN, model="zoo:vae")
    with RecordWriter(out, other, **options) as writer:
        assert writer.done == set()
        writer.write({"path": "z.png", "score": 0.5})
    assert lines(out) == [{"imgorigin_run": other}, {"path": "z.png", "score": 0.5}]
    write(tmp_path / "plain.jsonl", None, {"path": "a.png", "score": 1.0})
    write(tmp_path / "plain.jsonl", None, restart=True)
    assert (tmp_path / "plain.jsonl").read_bytes() == b""


def test_file_without_header(tmp_path: Path) -> None:
    out = tmp_path / "old.jsonl"
    out.write_text('{"path": "a.png", "score": 1.0}\n')
    with pytest.raises(UsageError, match=r"old\.jsonl: cannot resume: .*no run header.*--restart"):
        RecordWriter(out, RUN)
    assert write(out, None).done == {"a.png"}  # no identity given: resumed as before
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    write(empty, RUN, {"path": "a.png", "score": 1.0})  # no records: nothing to mix up
    assert read_identity(empty) == RUN
    assert write(out, RUN, restart=True).done == set() and read_identity(out) == RUN


def test_identity_is_compared_as_json(tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    write(out, {"shape": (1, 28, 28), "threshold": float("nan")})
    assert read_identity(out) == {"shape": [1, 28, 28], "threshold": None}
    write(out, {"shape": [1, 28, 28], "threshold": None})  # the same identity: resumes


# Repair and one line per path


def test_cut_off_last_line_is_removed_before_appending(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    out = tmp_path / "r.jsonl"
    write(out, RUN, {"path": "a.png", "score": 1.0})
    with out.open("a") as stream:
        stream.write('{"path": "b.png", "sco')  # a run killed mid-line
    with caplog.at_level(logging.WARNING, logger="imgorigin"):
        writer = write(out, RUN, {"path": "c.png", "score": 3.0})
    assert writer.done == {"a.png", "c.png"}
    assert lines(out) == [{"imgorigin_run": RUN}, {"path": "a.png", "score": 1.0}, {"path": "c.png", "score": 3.0}]
    assert "dropped 1 cut-off or invalid line" in caplog.text and str(out) in caplog.text


def test_whole_last_record_without_newline_is_kept_and_terminated(tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    out.write_bytes(b'{"path": "a.png", "score": 1.0}')  # killed between the record and its newline
    write(out, None, {"path": "b.png", "score": 2.0})
    assert lines(out) == [{"path": "a.png", "score": 1.0}, {"path": "b.png", "score": 2.0}]


def test_invalid_lines_anywhere_are_dropped(tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    out.write_bytes(
        b'{"path": "a.png", "score": 1.0}\n{"path": "b.png", "sco{"path": "c.png", "score": 3.0}\n'
        b'\xff\xfe\n[1, 2]\n{"no_path": 1}\n\n{"path": "d.png", "score": 4.0}'
    )
    assert write(out, None).done == {"a.png", "d.png"}
    assert lines(out) == [{"path": "a.png", "score": 1.0}, {"path": "d.png", "score": 4.0}]


def test_reruns_keep_one_line_per_path(tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    skip = {"path": "s.gif", "skipped": "unsupported_extension", "detail": "extension .gif is not an image type read"}
    for run in range(4):
        with RecordWriter(out, RUN) as writer:
            assert writer.done == ({"a.png"} if run else set())
            writer.write(skip)  # skip entries are written again each run
            for path in ["a.png", "b.png", "c.png"]:
                if path not in writer.done:
                    fixed = path == "c.png" and run == 3
                    writer.write(
                        {"path": path, "score": 1.0} if path == "a.png" or fixed else {"path": path, "error": "x"}
                    )
        assert (writer.errors, writer.skipped) == ((2, 1) if run < 3 else (1, 1))
        paths = [r["path"] for r in lines(out)[1:]]
        assert sorted(paths) == ["a.png", "b.png", "c.png", "s.gif"]
    assert read_done(out) == {"a.png", "c.png"}


def test_same_path_twice_in_one_run_is_compacted_on_close(tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    write(out, RUN, {"path": "a.png", "error": "x"}, {"path": "a.png", "score": 2.0})
    assert lines(out) == [{"imgorigin_run": RUN}, {"path": "a.png", "score": 2.0}]
    assert not (tmp_path / ".r.jsonl.compact.tmp").exists()


# Durability


def test_fsync_at_most_once_a_second(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real_fsync = os.fsync
    monkeypatch.setattr(records.os, "fsync", lambda fd: (calls.append(fd), real_fsync(fd)))
    start = time.monotonic()
    with RecordWriter(tmp_path / "r.jsonl", RUN) as writer:
        opened = len(calls)
        for i in range(1000):
            writer.write({"path": f"{i}.png", "score": i / 7})
        during = len(calls) - opened
    assert during <= 1 + (time.monotonic() - start) / records.FSYNC_INTERVAL
    assert len(calls) == opened + during + 1  # and once on close
    assert len(lines(tmp_path / "r.jsonl")) == 1001


CHILD = textwrap.dedent(
    """
    import itertools, sys
    from pathlib import Path
    from imgorigin.records import RecordWriter

    out = Path(sys.argv[1])
    print("ready", flush=True)
    for run in itertools.count():
        with RecordWriter(out, {"model": "m"}) as writer:
            for i in range(60):
                path = f"img{(i * 7 + run) % 40}\\udce9.png"
                error = (i + run) % 3 == 0
                writer.write({"path": path, "error": "bad"} if error else {"path": path, "pad": "é" * 3000})
    """
)


def test_sigkill_at_any_moment_leaves_whole_lines_and_a_repairable_tail(tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    rng = random.Random(0)
    for _ in range(8):
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(out)], stdout=subprocess.PIPE, text=True)
        assert child.stdout.readline() == "ready\n"
        time.sleep(rng.uniform(0.01, 0.25))
        child.send_signal(signal.SIGKILL)
        child.wait()
        data = out.read_bytes()
        assert all(json.loads(line.decode("utf-8")) for line in data.split(b"\n")[:-1])  # whole lines are valid
        if rng.random() < 0.5:  # also tear the last line at a random byte, as a kill inside a write() could
            start = data.rstrip(b"\n").rfind(b"\n") + 1
            out.write_bytes(data[: rng.randrange(start, len(data))])
        with RecordWriter(out, {"model": "m"}) as writer:
            assert writer.done <= {f"img{k}\udce9.png" for k in range(40)}
        repaired = lines(out)
        assert repaired[0] == {"imgorigin_run": {"model": "m"}}
        paths = [r["path"] for r in repaired[1:]]
        assert len(paths) == len(set(paths)) <= 40
        assert not (tmp_path / ".r.jsonl.compact.tmp").exists()


# Odd values


def test_non_finite_numbers_are_null() -> None:
    record = {"path": "a.png", "score": float("nan"), "p": [float("inf"), 1.5], "d": {"x": float("-inf")}}
    line = dumps(record)
    assert json.loads(line) == {"path": "a.png", "score": None, "p": [None, 1.5], "d": {"x": None}}
    assert "nan" not in line.lower() and "inf" not in line.lower()


def test_paths_that_are_not_utf8_round_trip(tmp_path: Path) -> None:
    name = os.fsdecode(b"caf\xe9.png")  # 'caf\udce9.png'
    out = tmp_path / "r.jsonl"
    write(out, RUN, {"path": name, "error": f"{name}: truncated"}, {"path": "café.png", "score": 1.0})
    text = out.read_bytes().decode("utf-8")  # valid UTF-8 throughout
    assert "\\udce9" in text and "café" in text
    record = read_records(out)[0]
    assert os.fsencode(record["path"]) == b"caf\xe9.png" and record["error"] == f"{name}: truncated"
    assert write(out, RUN, {"path": name, "score": 2.0}).done == {name, "café.png"}


def test_stdout_gets_records_without_header(capsys: pytest.CaptureFixture[str]) -> None:
    with RecordWriter(None, RUN) as writer:
        writer.write({"path": "a.png", "score": float("nan")})
    assert capsys.readouterr().out == '{"path": "a.png", "score": null}\n'
    assert writer.written == 1


def test_unwritable_output_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"cannot write the output file"):
        RecordWriter(tmp_path, RUN)
