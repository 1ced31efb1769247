import os

import numpy as np
import pandas as pd
import pytest

from ukbmri.engine.cache import MIMIR_SHAPE, ImageCache
from ukbmri.engine.inputs import find_zips, group_by_participant
from ukbmri.engine.ledger import Ledger, failure_from_exception
from ukbmri.engine.runner import run_tasks
from ukbmri.engine.tables import read_table, upsert, write_table
from ukbmri.errors import InputError
from ukbmri.io.nifti import load_volume


def test_ledger_keeps_latest_outcome_per_input_and_stage(tmp_path):
    led = Ledger(tmp_path / "failures.csv")
    led.record(failure_from_exception("/d/1000001_20201_2_0.zip", "preprocess-body", InputError("bad", path="x.zip")))
    led.record(failure_from_exception("/d/1000002_20201_2_0.zip", "preprocess-body", KeyError("boom")))
    led.save()
    again = Ledger(tmp_path / "failures.csv")
    assert len(again) == 2
    f1, f2 = again.failures
    assert (f1.eid, f1.field, f1.instance, f1.error) == (1000001, 20201, 2, "InputError")
    assert f1.message == "x.zip: bad"
    assert f2.error == "KeyError" and f2.message.startswith("unexpected error")
    again.succeeded("/d/1000001_20201_2_0.zip", "preprocess-body")
    again.save()
    assert [f.eid for f in Ledger(tmp_path / "failures.csv").failures] == [1000002]


@pytest.mark.parametrize("workers", [1, 2])
def test_runner_records_failures_and_continues(workers):
    seen = []
    outs = list(run_tasks(int, ["1", "x", "3"], stage="parse", workers=workers, progress=seen.append))
    assert len(seen) == 3
    ok = sorted(o.value for o in outs if o.ok)
    bad = [o for o in outs if not o.ok]
    assert ok == [1, 3]
    assert len(bad) == 1 and bad[0].input == "x" and bad[0].failure.error == "ValueError"


def test_runner_survives_a_dying_worker():
    """A worker killed mid-task breaks the pool: in-flight tasks fail, the rest run in a fresh pool."""
    import functools
    import operator
    import os

    items = [functools.partial(int, str(i)) for i in range(8)]
    items[1] = functools.partial(os._exit, 3)
    labels = {id(it): str(i) for i, it in enumerate(items)}
    outs = list(run_tasks(operator.call, items, stage="parse", workers=2, label=lambda it: labels[id(it)]))
    assert sorted(o.input for o in outs) == [str(i) for i in range(8)]  # one outcome per item, none lost
    failed = {o.input: o.failure for o in outs if not o.ok}
    assert failed["1"].error == "WorkerDiedError" and "worker process died" in failed["1"].message
    assert len(failed) <= 4  # at most the tasks in flight when it died
    assert {o.input: o.value for o in outs if o.ok}["7"] == 7  # later items ran in the fresh pool


def test_runner_domain_error_message_kept(tmp_path):
    missing = str(tmp_path / "nope.nii.gz")
    (out,) = run_tasks(load_volume, [missing], stage="load")
    assert out.failure.error == "InputError" and "nope.nii.gz" in out.failure.message


def test_runner_dask_backend_local_cluster():
    pytest.importorskip("dask.distributed")
    outs = list(run_tasks(int, ["4", "y"], stage="parse", backend="dask", workers=1))
    assert sorted(o.value for o in outs if o.ok) == [4]
    assert [o.failure.error for o in outs if not o.ok] == ["ValueError"]


def test_image_cache_validates_input_identity_and_format(tmp_path):
    zip_path = tmp_path / "1000001_20201_2_0.zip"
    zip_path.write_bytes(b"first")
    cache = ImageCache(tmp_path / "cache")
    assert cache.lookup(zip_path) is None
    img = np.arange(np.prod(MIMIR_SHAPE), dtype=np.uint64).reshape(MIMIR_SHAPE).astype(np.uint8)
    cache.store(zip_path, img)
    assert cache.lookup(zip_path) == tmp_path / "cache" / "1000001_20201_2_0.npy"
    np.testing.assert_array_equal(cache.load("1000001_20201_2_0"), img)
    # the input changed: stale
    zip_path.write_bytes(b"second, longer")
    assert cache.lookup(zip_path) is None
    # a MIMIR cache (no sidecar) with the right format is trusted; a wrong one is not
    np.save(tmp_path / "cache" / "1000002_20201_2_0.npy", img)
    np.save(tmp_path / "cache" / "1000003_20201_2_0.npy", img[:2])
    assert cache.lookup(tmp_path / "1000002_20201_2_0.zip") is not None
    assert cache.lookup(tmp_path / "1000003_20201_2_0.zip") is None
    assert cache.stems() == ["1000001_20201_2_0", "1000002_20201_2_0"]
    # a run that died after the new sidecar but before the new image: the old image is stale
    cache.store(zip_path, img)
    np.save(tmp_path / "cache" / "1000001_20201_2_0.npy", 255 - img)
    assert cache.lookup(zip_path) is None
    # a temp file left by a killed writer is not an image
    np.save(tmp_path / "cache" / ".1000004_20201_2_0.npy.tmp1.npy", img)
    assert cache.stems() == ["1000001_20201_2_0", "1000002_20201_2_0"]


def test_tables_upsert_and_roundtrip(tmp_path):
    old = pd.DataFrame({"eid": [1, 2], "instance": [2, 2], "v": [1.0, 2.0]})
    new = pd.DataFrame({"eid": [2, 3], "instance": [2, 2], "v": [20.0, 30.0]})
    merged = upsert(old, new, ["eid", "instance"])
    assert merged["eid"].tolist() == [1, 2, 3] and merged["v"].tolist() == [1.0, 20.0, 30.0]
    write_table(merged, tmp_path / "t")
    assert sorted(os.listdir(tmp_path)) == ["t.csv", "t.parquet"]
    pd.testing.assert_frame_equal(read_table(tmp_path / "t"), merged)


def test_find_and_group_zips(tmp_path):
    for name in ["1000001_20201_2_0.zip", "1000001_20203_2_0.zip", "1000002_20254_3_0.zip", "odd.zip", "x.txt"]:
        (tmp_path / name).write_bytes(b"")
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "1000009_20201_2_0.zip").write_bytes(b"")
    zips = find_zips([tmp_path])
    assert [z.name for z in zips] == ["1000001_20201_2_0.zip", "1000001_20203_2_0.zip", "1000002_20254_3_0.zip", "odd.zip"]
    assert [z.name for z in find_zips([tmp_path], fields=[20203])] == ["1000001_20203_2_0.zip", "odd.zip"]
    groups = group_by_participant(zips)
    assert sorted(groups) == [(1000001, 2), (1000002, 3)] and sorted(groups[(1000001, 2)]) == [20201, 20203]
    with pytest.raises(InputError, match="no such file"):
        find_zips([tmp_path / "missing"])
