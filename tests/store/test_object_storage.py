"""Stores on object storage: a Collector writes a run to an S3 endpoint (moto's server
on 127.0.0.1) and every verb reads it, with the same answers as from a local copy."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import torch
from click.testing import CliRunner

from analysis import StoreError, open_store
from collector import Collector
from store import location
from store.claims import claim_attempt, claim_run_dir, last_recorded_step, store_dir
from store.compaction import compact_run
from store.errors import StoreError as WriteError
from store.layout import SegmentName
from store.location import RemotePath, store_path
from store.records import Rows, build_table
from store.scan import list_store
from store.schema import Stream
from store.segments import write_segment
from telemetry.cli import main
from tests.s3server import download

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _train(root: str | Path, *, steps: int = 40, name: str = "s3-run") -> str:
    """A small regression run with a val split; its run id."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    with Collector(root, name=name, model=model, optimizer=opt, config={"lr": 0.05}) as tel:
        for step in range(steps):
            x = torch.randn(32, 4)
            loss = torch.nn.functional.mse_loss(model(x), x.sum(1, keepdim=True))
            opt.zero_grad()
            loss.backward()
            opt.step()
            tel.log({"loss": loss}, split="train")
            if step % 10 == 9:
                tel.log({"loss": loss.item() * 1.1}, split="val", epoch=step // 10)
        return tel.run_id


def _objects(root: str) -> list[str]:
    remote = store_path(root)
    assert isinstance(remote, RemotePath)
    return sorted(remote.find())


def _cli(*args: str) -> Any:
    result = CliRunner().invoke(main, list(args))
    return result


def test_a_collector_writes_to_s3_and_every_verb_reads_it(s3_root: str, tmp_path: Path) -> None:
    run_id = _train(s3_root)
    objects = _objects(s3_root)
    # one object per segment, no temporary object left; compacted on close, with its digest
    assert not [o for o in objects if o.rpartition("/")[2].startswith(".") and ".attempts" not in o]
    assert f"{run_id}/digests/0-0.json" in objects
    assert any(o.startswith(f"{run_id}/tensors/0-0-") for o in objects)
    local = download(s3_root, tmp_path / "copy")

    runs = _cli("runs", s3_root, "--format", "json")
    assert runs.exit_code == 0, runs.output
    listed = json.loads(runs.output)
    assert [(r["run_id"], r["status"], r["steps"]) for r in listed] == [(run_id, "finished", 40)]
    assert listed == json.loads(_cli("runs", str(local), "--format", "json").output)

    remote_json = _cli("analyze", s3_root, "--format", "json", "--no-cache")
    assert remote_json.exit_code == 0, remote_json.output
    local_json = _cli("analyze", str(local), "--format", "json", "--no-cache")
    assert json.loads(remote_json.output) == json.loads(local_json.output)
    # again, through the findings cache the first analysis left in the bucket
    first = _cli("analyze", s3_root, "--format", "json")
    assert ".cache/findings.parquet" in _objects(s3_root)
    assert json.loads(_cli("analyze", s3_root, "--format", "json").output) == json.loads(
        first.output
    )
    assert json.loads(first.output)["findings"] == json.loads(local_json.output)["findings"]

    sql = (
        "SELECT name, split, count(*) AS n, sum(value) AS s FROM scalars GROUP BY ALL ORDER BY ALL"
    )
    remote_rows = _cli("query", s3_root, sql, "--format", "json")
    assert remote_rows.exit_code == 0, remote_rows.output
    assert json.loads(remote_rows.output) == json.loads(
        _cli("query", str(local), sql, "--format", "json").output
    )
    assert {r["name"] for r in json.loads(remote_rows.output)} >= {"loss", "lr"}

    page = tmp_path / "report.html"
    report = _cli("report", s3_root, "-o", str(page))
    assert report.exit_code == 0, report.output
    html = page.read_text()
    assert run_id in html and len(html) > 100_000


def test_query_on_s3_reads_only_the_stores_files(s3_root: str) -> None:
    _train(s3_root, steps=12)
    other = s3_root.rpartition("/")[0] + "/elsewhere/x.parquet"
    store_path(other).write_bytes(b"not for you")  # type: ignore[union-attr]
    for sql in (
        f"SELECT * FROM read_parquet('{other}')",
        "SELECT * FROM read_csv('/etc/passwd')",
    ):
        result = _cli("query", s3_root, sql)
        assert result.exit_code != 0
        assert "read-only" in result.output or "Permission" in result.output


def test_a_failing_upload_is_retried_then_counted_as_dropped(
    s3_root: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(location, "RETRY_WAIT_S", 0.0)
    remote = store_dir(s3_root)
    assert isinstance(remote, RemotePath)
    real = remote.fs.pipe_file
    calls = {"n": 0, "fail": set()}

    def flaky(path: str, data: bytes, **kw: Any) -> Any:
        calls["n"] += 1
        if "/scalars/" in path and calls["fail"]:
            failing = calls["fail"]
            if "once" in failing:
                failing.discard("once")
                raise ConnectionError("reset by peer")
            if "always" in failing:
                raise ConnectionError("endpoint down")
        return real(path, data, **kw)

    monkeypatch.setattr(remote.fs, "pipe_file", flaky)
    model = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with caplog.at_level(logging.WARNING), Collector(remote, model=model, optimizer=opt) as tel:
        calls["fail"] = {"once"}  # a transient failure: retried, nothing lost
        for _ in range(5):
            loss = model(torch.ones(1, 2)).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
            tel.log({"loss": loss})
        assert tel.flush()
        calls["fail"] = {"always"}  # every try fails: counted, training goes on
        for _ in range(3):
            tel.log({"loss": 1.0})
        tel.flush()
        calls["fail"] = set()
        run_id = tel.run_id
    with open_store(s3_root) as store:
        losses = store.sql("SELECT count(*) AS n FROM scalars WHERE name = 'loss'")["n"][0]
        dropped = store.sql("SELECT payload FROM events WHERE kind = 'dropped'")["payload"]
        status = store.sql("SELECT status FROM runs")["status"].to_list()
    assert losses == 5  # the first five; the three written while the endpoint was down are not
    assert status == ["finished"]
    assert [json.loads(p)["reasons"] for p in dropped] == [{"ConnectionError": 3}]
    assert any("could not write" in r.message and run_id in r.message for r in caplog.records)


def _rows(run_id: str, first_seq: int, steps: list[int]) -> pa.Table:
    rows = [
        Rows(
            Stream.SCALARS,
            step=s,
            epoch=None,
            wall_time=1.7e9 + s,
            columns={"name": ["loss"], "split": ["train"], "value": [float(s)]},
        )
        for s in steps
    ]
    return build_table(Stream.SCALARS, rows, run_id=run_id, rank=0, attempt=0, first_seq=first_seq)


def test_compaction_on_s3_puts_the_merged_object_before_deleting(s3_root: str) -> None:
    root = store_dir(s3_root)
    run_id = claim_run_dir(root, "compact")
    assert claim_attempt(root / run_id, 0) == 0
    directory = root / run_id / "scalars"
    for i in range(3):
        write_segment(_rows(run_id, i, [i]), directory, SegmentName(0, 0, i, i).filename())
    # a crash after the merged object was put, before the covered ones were deleted
    merged = pa.concat_tables([_rows(run_id, i, [i]) for i in range(2)])
    write_segment(merged, directory, SegmentName(0, 0, 0, 1).filename())
    listing = list_store(root)
    assert [p.name for p in listing.runs[0].segments[Stream.SCALARS]] == [
        "0-0-000000_000001.parquet",
        "0-0-000002.parquet",
    ]
    result = compact_run(root / run_id)
    assert result.files_removed == 4  # the two leftovers, then the two it merged now
    assert [o.rpartition("/")[2] for o in _objects(s3_root) if "/scalars/" in o] == [
        "0-0-000000_000002.parquet"
    ]
    with open_store(s3_root) as store:
        assert store.sql("SELECT list(step ORDER BY step) AS s FROM scalars")["s"][0].to_list() == [
            0,
            1,
            2,
        ]
    assert last_recorded_step(root / run_id, 0) == 2


def test_claims_on_s3_are_exclusive_and_a_resumed_run_appends(s3_root: str) -> None:
    root = store_dir(s3_root)
    run_id = claim_run_dir(root, "claims")
    attempts = [claim_attempt(root / run_id, 0) for _ in range(3)]
    assert attempts == [0, 1, 2]  # each a conditional PUT that the next one cannot repeat
    assert claim_attempt(root / run_id, 1) == 0  # per rank

    first = _train(s3_root, steps=10, name="resumed")
    model = torch.nn.Linear(4, 1)
    with Collector(s3_root, resume=first, model=model) as tel:
        assert tel.run_id == first
        tel.log({"loss": 0.5})
    with open_store(s3_root) as store:
        row = store.sql(f"SELECT attempts, steps FROM runs WHERE run_id = '{first}'").row(0)
    assert row == (2, 10)


def test_clear_errors_for_what_is_not_there(s3_endpoint: str, s3_root: str) -> None:
    with pytest.raises(WriteError, match="no bucket 'no-such-bucket-here'"):
        store_dir("s3://no-such-bucket-here/runs")
    with pytest.raises(StoreError, match="nothing is stored under that prefix"):
        open_store(s3_root + "/empty")
    result = _cli("runs", s3_root + "/empty")
    assert result.exit_code == 3 and "no store at" in result.output
    with pytest.raises(WriteError, match="no filesystem serves"):
        store_path("nosuchscheme://x/y")
    with pytest.raises(StoreError, match="no filesystem serves"):
        open_store("nosuchscheme://x/y")
    result = _cli("analyze", "nosuchscheme://x/y")
    assert result.exit_code == 2 and "no filesystem serves nosuchscheme://" in result.output


def test_remote_paths_behave_like_the_paths_the_store_uses() -> None:
    p = store_path("memory://bucket/runs")
    assert isinstance(p, RemotePath)
    run = p / "r1" / "scalars" / "0-0-000000.parquet"
    assert str(run) == "memory://bucket/runs/r1/scalars/0-0-000000.parquet"
    assert run.name == "0-0-000000.parquet"
    assert run.parent.parent.name == "r1"
    assert run.with_name("x") == p / "r1" / "scalars" / "x"
    assert run.resolve() is run
    assert store_path("file:///tmp/x") == Path("/tmp/x")
    assert store_path("runs") == Path("runs")
    assert not location.is_url("C:\\runs") and location.is_url("s3://b")
    run.write_bytes(b"abc")
    assert run.read_bytes() == b"abc" and run.stat().st_size == 3
    with pytest.raises(FileExistsError):
        run.write_bytes(b"again", exclusive=True)
    with pytest.raises(OSError, match="over 2 bytes"):
        run.read_bytes(2, what="a digest")
    assert [e.name for e in (p / "r1").scandir()] == ["scalars"]
    run.unlink()
    run.unlink(missing_ok=True)
    assert not run.exists()


def test_spark_analyses_a_store_on_s3_as_duckdb_does(s3_root: str, spark: Any) -> None:
    from analysis import diagnose

    for name in ("a", "b"):
        _train(s3_root, steps=20, name=name)
    with open_store(s3_root, runs_only=True) as store:
        on_spark = diagnose(store, engine="spark", spark=spark, cache=False)
    with open_store(s3_root, runs_only=True) as store:
        local = diagnose(store, cache=False)
    assert on_spark.findings == local.findings
    assert on_spark.not_evaluated == local.not_evaluated
    assert len({n.run_id for n in local.not_evaluated}) == 2


def test_a_put_whose_answer_is_lost_counts_as_written(
    s3_root: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The PUT lands, then the connection drops: a segment is not counted as dropped,
    and a claim is still this process's own (not the next attempt number)."""
    monkeypatch.setattr(location, "RETRY_WAIT_S", 0.0)
    root = store_dir(s3_root)
    assert isinstance(root, RemotePath)
    real = root.fs.pipe_file

    def lands_then_fails(path: str, data: bytes, **kw: Any) -> Any:
        try:
            real(path, data, **kw)
        except FileExistsError:
            raise FileExistsError(path) from None  # what the retry of a landed claim sees
        raise ConnectionError("connection reset after the upload")

    monkeypatch.setattr(root.fs, "pipe_file", lands_then_fails)
    run_id = claim_run_dir(root, "lost")
    assert claim_attempt(root / run_id, 0) == 0
    assert [o for o in _objects(s3_root) if ".attempts" in o] == [f"{run_id}/.attempts/0-0"]
    directory = root / run_id / "scalars"
    write_segment(_rows(run_id, 0, [1]), directory, "0-0-000000.parquet")  # no error
    with open_store(s3_root) as store:
        assert store.sql("SELECT count(*) AS n FROM scalars")["n"][0] == 1


def test_folder_markers_and_client_errors(s3_root: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _train(s3_root, steps=5)
    root = store_path(s3_root)
    assert isinstance(root, RemotePath)
    # what the S3 console's "Create folder" and Hadoop's S3A leave: a key ending in "/"
    root.fs.pipe_file(root.key + "/", b"")
    with open_store(s3_root) as store:
        assert store.unreadable == []
        assert len(store.run_ids()) == 1
    segment = next(root / n for n in root.find() if n.endswith(".parquet"))

    class EndpointDown(Exception):  # botocore's errors are no OSError
        pass

    def down(*args: Any, **kwargs: Any) -> Any:
        raise EndpointDown("Could not connect to the endpoint URL")

    monkeypatch.setattr(root.fs, "open", down)
    with pytest.raises(OSError, match="EndpointDown") as raised:
        location.read_metadata(segment)
    assert not isinstance(
        raised.value, FileNotFoundError
    )  # not "missing": a resume must not restart


def test_import_tensorboard_into_a_fresh_s3_prefix(s3_root: str, tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    from tests.telemetry.test_import import write_logs

    write_logs(tmp_path / "tb")
    result = _cli("import", "tensorboard", str(tmp_path / "tb"), "--root", s3_root)
    assert result.exit_code == 0, result.output
    again = _cli("import", "tensorboard", str(tmp_path / "tb"), "--root", s3_root)
    assert "imported before, skipped" in again.output
    runs = json.loads(_cli("runs", s3_root, "--format", "json").output)
    assert len(runs) == 2
