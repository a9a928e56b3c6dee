"""Hostile stores and results files (issue 19): attributes of the wrong size
or class, datasets of an unread type or shape, a scalar ledger. Each store is
made here with h5py; dinv must refuse it with a message naming the file and
the object, never crash (the 512-value schema_version overwrote the stack,
exceptions thrown through H5Ovisit crashed HDF5 at exit)."""
import h5py
import numpy as np

from hostile_util import dinv, refused


def make_store(path, schema_version=1):
    with h5py.File(path, "w") as f:
        f.attrs["schema_version"] = schema_version
        f.attrs["dinv_version"] = "0.1.0+test"
        f.attrs["created"] = "2023-11-14T22:13:20Z"
        f.attrs["config"] = "[run]\n"
        f.create_group("samples")
    return path


def test_schema_version_with_many_values_is_refused(tmp_path):
    store = make_store(tmp_path / "s.h5", schema_version=np.arange(4096, dtype=np.int64))
    refused(dinv("info", f"--store.path={store}"), 1, "s.h5", "schema_version", "4096 values")


def test_schema_version_of_the_wrong_class_is_refused(tmp_path):
    store = make_store(tmp_path / "s.h5", schema_version="one")
    refused(dinv("info", f"--store.path={store}"), 1, "s.h5", "schema_version", "not an integer")


def test_info_on_a_dataset_of_an_unread_type_and_a_scalar_ledger(tmp_path):
    store = make_store(tmp_path / "s.h5")
    with h5py.File(store, "a") as f:
        f["weird/half"] = np.zeros(3, np.float16)
        f["embeddings/done"] = np.uint8(1)  # a scalar, not [units]
    r = dinv("info", f"--store.path={store}")
    assert r.returncode == 0, r.stderr
    assert "/weird/half  (a type dinv does not read)[3]" in r.stdout
    assert "/embeddings/done" in r.stdout and "not a ledger" in r.stdout


def test_info_error_inside_the_walk_is_reported_not_a_crash(tmp_path):
    # A ledger with a type dinv reads but of rank 2: the walk's callback
    # describes it; a link to a missing object makes the walk itself fail.
    store = make_store(tmp_path / "s.h5")
    with h5py.File(store, "a") as f:
        f["embeddings/done"] = np.zeros((2, 2), np.uint8)
        f["broken"] = h5py.ExternalLink("nowhere.h5", "/x")
    r = dinv("info", f"--store.path={store}")
    assert r.returncode >= 0, f"crashed with signal {-r.returncode}: {r.stderr[-2000:]}"


def test_results_file_whose_complete_is_an_array(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    with h5py.File(results / "run.h5", "w") as f:
        f.attrs["complete"] = np.ones(4096, np.int64)
        f.attrs["schema"] = "dinv-train-results/1"
    # Not complete (so the run is attempted), and the missing data is what fails.
    refused(dinv("train", f"--train.results_dir={results}", "--train.run_name=run",
                 f"--data.root={tmp_path}/nodata", "--run.threads=1"), 1, "nodata")


def store_samples(tmp_path, images, label):
    store = tmp_path / "samples.h5"
    with h5py.File(store, "w") as f:
        f.create_group("source").attrs["class_names"] = ["a", "b"]
        g = f.create_group("samples/t")
        g["images"], g["label"] = images, label
    return store


def export(tmp_path, store):
    return dinv("data", "export", "--out", tmp_path / "x", "--data.format=store", f"--data.root={store}",
                "--data.tags=t")


def test_sample_images_of_the_wrong_shape_or_dtype(tmp_path):
    refused(export(tmp_path, store_samples(tmp_path, np.zeros((2, 8, 8), np.uint8), np.zeros(2, np.int64))), 1,
            "samples.h5", "/samples/t/images", "[2, 8, 8]", "expected Byte")
    refused(export(tmp_path, store_samples(tmp_path, np.zeros((2, 8, 8, 3), np.float32), np.zeros(2, np.int64))), 1,
            "samples.h5", "/samples/t/images", "Float")
    refused(export(tmp_path, store_samples(tmp_path, np.zeros((2, 8, 8, 3), np.uint8), np.zeros((2, 2), np.int64))), 1,
            "samples.h5", "/samples/t/label")
    refused(export(tmp_path, store_samples(tmp_path, np.zeros((2, 8, 8, 3), np.uint8), np.int64(0))), 1,
            "samples.h5", "/samples/t/label")


def test_a_missing_or_folder_store_is_one_sentence_not_an_hdf5_stack(tmp_path):
    (tmp_path / "folder.h5").mkdir()
    for name, cause in [("none.h5", "does not exist"), ("folder.h5", "it is a folder")]:
        for args in (["info", f"--store.path={tmp_path / name}"],
                     ["data", "export", "--out", tmp_path / "x", "--data.format=store", f"--data.root={tmp_path / name}",
                      "--data.tags=t"]):
            err = refused(dinv(*args), 1, name, cause)
            assert "HDF5 error stack" not in err, err
