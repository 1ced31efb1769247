import os

import numpy as np
import pandas as pd
import pytest

from ukbmri.engine.cache import MIMIR_SHAPE, ImageCache
from ukbmri.engine.ledger import failure_from_exception
from ukbmri.engine.runner import run_tasks
from ukbmri.engine.tables import read_table, write_table
from ukbmri.errors import InputError
from ukbmri.io.nifti import load_volume


def test_failure_from_exception_keeps_domain_messages_and_locates_bugs():
    f1 = failure_from_exception("/d/1000001_20201_2_0.zip", "body", InputError("bad", path="x.zip"))
    f2 = failure_from_exception("/d/1000002_20201_2_0.zip", "body", KeyError("boom"))
    assert (f1.eid, f1.field, f1.instance, f1.error, f1.message) == (1000001, 20201, 2, "InputError", "x.zip: bad")
    assert f2.error == "KeyError" and f2.message.startswith("unexpected error")


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
    """A worker killed mid-task breaks the pool: the unfinished tasks run again one at a time, so only
    the task that kills its worker is recorded; the rest run in a fresh pool."""
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
    assert list(failed) == ["1"]  # the innocent tasks in flight (or queued) when it died were run again
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


def test_tables_roundtrip(tmp_path):
    df = pd.DataFrame({"eid": [1, 2], "instance": [2, 2], "v": [1.0, 20.0]})
    write_table(df, tmp_path / "t")
    assert sorted(os.listdir(tmp_path)) == ["t.csv", "t.parquet"]
    pd.testing.assert_frame_equal(read_table(tmp_path / "t"), df)


def test_body_prefetch_gives_the_same_rows_and_keeps_failures_in_place(cohort, random_module, tmp_path):
    """Reading the next visit while this one is inferred (GPU default) changes nothing in the results."""
    from dataclasses import replace

    from ukbmri.engine.stage import Job
    from ukbmri.engine.stages.body import BodyStage, ModuleRef

    zips = sorted(cohort.glob("*_20201_2_0.zip"))  # two good participants and one truncated zip
    jobs = [Job("body", int(z.name.split("_")[0]), 2, {20201: z}, "fp") for z in zips]
    stage = BodyStage((ModuleRef.of(random_module),), allow_demo=True, cache_dir=tmp_path / "cache")
    plain = stage.run(jobs, tmp_path)
    ahead = replace(stage, prefetch=2, cache_dir=tmp_path / "cache2").run(jobs, tmp_path)
    assert [r.cells for r in plain] == [r.cells for r in ahead] and [r.flags for r in plain] == [r.flags for r in ahead]
    assert plain[-1].cells is None and ahead[-1].failures[0].error == "TruncatedZipError"
    assert stage._prefetch_depth() == 0  # CPU: no background reader competing with inference


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no CPU affinity on this platform")
def test_cores_follow_the_affinity_mask_as_slurm_sets_it():
    import subprocess
    import sys

    from ukbmri.engine.execute import threads_per_worker

    assert threads_per_worker(2, cores=8) == 4 and threads_per_worker(3, cores=2) == 1
    one = min(os.sched_getaffinity(0))
    code = ("import os; os.sched_setaffinity(0, {%d}); from ukbmri.engine.runner import available_cores; "
            "from ukbmri.engine.execute import threads_per_worker; print(available_cores(), threads_per_worker(1))" % one)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["1", "1"]
