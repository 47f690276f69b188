"""Writers' digests list runs without reading their segments, and say exactly what the
segments say: the runs view and ``telemetry runs`` agree with a full open, and a stale,
broken or missing digest falls back to the rows."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import torch
from torch import nn

from analysis import open_store
from collector import Collector
from store.digest import DIGEST_DIR, digest_path, read_digest
from store.scan import list_run
from telemetry.commands.runs import list_runs


def _train(root: Path, name: str, *, steps: int = 6, lr: float = 0.1, **kwargs: object) -> str:
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    with Collector(root, name=name, model=model, optimizer=opt, config={"lr": lr}, **kwargs) as c:
        for i in range(steps):
            opt.zero_grad()
            loss = model(torch.randn(8, 3)).pow(2).mean()
            loss.backward()
            opt.step()
            c.log({"loss": loss, "acc/val": 0.5 + i / 100})
        return c.run_id


def _same_listing(root: Path) -> None:
    full, fast = open_store(root), open_store(root, runs_only=True)
    order = "ORDER BY run_id"
    assert fast.sql(f"SELECT * FROM runs {order}").equals(full.sql(f"SELECT * FROM runs {order}"))
    assert list_runs(fast).equals(list_runs(full))


def test_finished_runs_are_listed_from_their_digests_alone(tmp_path: Path) -> None:
    ids = [_train(tmp_path, "a", lr=0.1), _train(tmp_path, "b", lr=0.01, steps=9)]
    _same_listing(tmp_path)
    fast = open_store(tmp_path, runs_only=True)
    for stream in ("events", "scalars", "tensors", "system"):
        assert fast.sql(f"SELECT count(*) AS n FROM raw_{stream}")["n"][0] == 0, stream
    assert sorted(fast.sql("SELECT run_id FROM _writers")["run_id"]) == sorted(ids)
    listing = list_runs(fast)
    assert listing["steps"].to_list() == [6, 9]
    assert listing["best_acc_val"].to_list() == pytest.approx([0.55, 0.58])
    with pytest.raises(Exception, match="tensors"):
        fast.sql("SELECT * FROM tensors")  # a runs-only store has no stream views


def test_a_digest_says_what_the_rows_say(tmp_path: Path) -> None:
    run_id = _train(tmp_path, "a")
    digest = read_digest(digest_path(tmp_path / run_id, 0, 0))
    store = open_store(tmp_path)
    seen = store.sql(
        "SELECT max(step) AS s, min(wall_time) AS lo, max(wall_time) AS hi FROM ("
        " SELECT step, wall_time FROM events UNION ALL SELECT step, wall_time FROM scalars"
        " UNION ALL SELECT step, wall_time FROM tensors"
        " UNION ALL SELECT step, wall_time FROM system)"
    )
    assert digest.max_step == seen["s"][0] == 6
    assert digest.first_us == int(seen["lo"][0].timestamp() * 1e6)
    assert digest.last_us == int(seen["hi"][0].timestamp() * 1e6)
    metrics = store.sql(
        "SELECT name, split, min(value) AS lo, max(value) AS hi FROM scalars GROUP BY ALL"
    )
    want = {(r["name"], r["split"]): (r["lo"], r["hi"]) for r in metrics.iter_rows(named=True)}
    assert {(m["name"], m["split"]): (m["min"], m["max"]) for m in digest.metrics} == want
    assert [e["kind"] for e in digest.lifecycle] == ["run_started", "run_finished"]
    on_disk = {p.parent.name: [] for p in (tmp_path / run_id).glob("*/*.parquet")}
    for p in (tmp_path / run_id).glob("*/*.parquet"):
        on_disk[p.parent.name].append(p.name)
    assert {k: v for k, v in digest.segments.items() if v} == on_disk


def test_a_segment_written_after_the_digest_makes_it_stale(tmp_path: Path) -> None:
    run_id = _train(tmp_path, "a")
    run_dir = tmp_path / run_id
    # One more scalars segment of the same writer, as if it kept writing after close.
    [seg] = (run_dir / "scalars").glob("*.parquet")
    table = pq.read_table(seg)  # with its schema metadata: a valid segment
    n = table.num_rows
    table = table.set_column(table.schema.get_field_index("value"), "value", pa.array([-7.0] * n))
    steps = pc.add(table["step"], 100)
    table = table.set_column(table.schema.get_field_index("step"), "step", steps)
    pq.write_table(table, run_dir / "scalars" / "0-0-000900.parquet")
    assert list_run(run_dir, trust_digests=True).digests == []
    _same_listing(tmp_path)
    listing = list_runs(open_store(tmp_path, runs_only=True))
    assert listing["steps"].to_list() == [106] and listing["best_loss"].to_list() == [-7.0]


@pytest.mark.parametrize("damage", ["garbage", "wrong version", "removed"])
def test_a_broken_or_missing_digest_falls_back_to_the_rows(tmp_path: Path, damage: str) -> None:
    run_id = _train(tmp_path, "a")
    _train(tmp_path, "b")
    path = digest_path(tmp_path / run_id, 0, 0)
    if damage == "garbage":
        path.write_bytes(b"\x00not json")
    elif damage == "wrong version":
        path.write_text(json.dumps(json.loads(path.read_text()) | {"version": 99}))
    else:
        shutil.rmtree(path.parent)
    _same_listing(tmp_path)
    fast = open_store(tmp_path, runs_only=True)
    assert fast.sql("SELECT count(DISTINCT run_id) AS n FROM raw_scalars")["n"][0] == 1
    named = [str(u.path) for u in fast.unreadable]
    assert named == ([] if damage == "removed" else [str(path)])
    assert open_store(tmp_path).unreadable == [], "a full open does not read digests at all"


def test_a_resumed_run_is_listed_from_its_rows(tmp_path: Path) -> None:
    run_id = _train(tmp_path, "a", steps=8)
    _train(tmp_path, "a", steps=3, resume=run_id, start_step=4)
    assert len(list((tmp_path / run_id / DIGEST_DIR).glob("*.json"))) == 2
    assert list_run(tmp_path / run_id, trust_digests=True).digests == []
    _same_listing(tmp_path)
    [row] = open_store(tmp_path, runs_only=True).sql("SELECT steps, attempts FROM runs").rows()
    assert row == (7, 2), "the latest attempt's steps"


def test_a_run_killed_before_close_has_no_digest_and_is_listed_from_its_rows(
    tmp_path: Path,
) -> None:
    _train(tmp_path, "done")
    model = nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    live = Collector(tmp_path, name="live", model=model, optimizer=opt)
    opt.zero_grad()
    model(torch.randn(2, 3)).sum().backward()
    opt.step()
    live.flush()
    assert not (tmp_path / live.run_id / DIGEST_DIR).exists()
    _same_listing(tmp_path)
    statuses = open_store(tmp_path, runs_only=True).sql(
        "SELECT name, status FROM runs ORDER BY name"
    )
    assert statuses.rows() == [("done", "finished"), ("live", "running")]
    live.close()
