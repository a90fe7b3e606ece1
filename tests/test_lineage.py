"""A run's MLflow 3 lineage: its datasets (inputs), its logged model, its system metrics; relog keeps the inputs.

Two 1-epoch runs on the same data, in one store, serve every end-to-end check (module-scoped).
"""

from __future__ import annotations

import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from tests.helpers.e2e import QUICK, Trained, compose_config, store_uri, train_here
from xent_lab import calibration, heads
from xent_lab.data import DataSettings
from xent_lab.heads import Head
from xent_lab.tracking import RunLogger
from xent_lab.tracking import tags as T
from xent_lab.tracking.lineage import dataset_digest, fluent_tracking_uri
from xent_lab.tracking.record import LocalRecord, RunInfo
from xent_lab.tracking.relog import relog

REGISTERED = "xent-lab-test-model"


@pytest.fixture(scope="module")
def runs(tmp_path_factory, cache_dir) -> tuple[Trained, Trained]:
    """A run with the model logged and registered and system metrics on; then a plain run, another seed."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "1")  # a 1-epoch run is shorter than MLflow's 10 s
        full = train_here(
            tmp_path_factory.mktemp("full"),
            cache_dir,
            QUICK,
            f"tracking.register_as={REGISTERED}",
            "tracking.system_metrics=true",
        )
    plain = train_here(tmp_path_factory.mktemp("plain"), cache_dir, QUICK, "seed=1")
    return full, plain


def store_of(trained: Trained) -> str:
    return store_uri(trained.output_dir.parent)


def inputs_of(trained: Trained) -> dict[str, tuple[str, str]]:
    """Context -> (dataset name, digest) of a run's inputs."""
    found = {}
    for entry in trained.run.inputs.dataset_inputs:
        context = {tag.key: tag.value for tag in entry.tags}[T.DATASET_CONTEXT]
        found[context] = (entry.dataset.name, entry.dataset.digest)
    return found


@pytest.mark.slow
def test_a_run_logs_its_three_datasets_with_digests_of_its_data(runs, tmp_path, cache_dir):
    full, plain = runs
    settings = DataSettings.from_mapping(dict(compose_config(tmp_path, cache_dir, QUICK).dataset))
    checksums = {
        key.removeprefix(T.DATA_SHA256_PREFIX): value
        for key, value in full.run.data.tags.items()
        if key.startswith(T.DATA_SHA256_PREFIX)
    }
    expected = {
        context: (f"mnist-{split}", dataset_digest(checksums, settings.shaping(), split))
        for split, context in T.SPLIT_CONTEXTS.items()
    }
    assert inputs_of(full) == expected
    assert len({digest for _, digest in expected.values()}) == 3
    # Another seed, the same data: the same datasets, so the UI groups the two runs.
    assert inputs_of(plain) == expected
    source = next(iter(full.run.inputs.dataset_inputs)).dataset.source
    assert all(digest in source for digest in checksums.values())


def test_the_digest_follows_the_settings_that_shape_the_arrays():
    files = {"train.gz": "ab" * 32}
    shaping = {"name": "mnist", "val_size": 1000, "limit_train": 2000}
    assert dataset_digest(files, shaping, "train") == dataset_digest(dict(files), dict(shaping), "train")
    assert dataset_digest(files, {**shaping, "limit_train": 3000}, "train") != dataset_digest(files, shaping, "train")
    assert dataset_digest({"train.gz": "cd" * 32}, shaping, "train") != dataset_digest(files, shaping, "train")


@pytest.mark.slow
def test_the_logged_model_predicts_the_probabilities_the_run_logged(runs, tmp_path, cache_dir):
    from xent_lab.training.pipeline import load_data

    full, _ = runs
    client = MlflowClient(store_of(full))
    predictions = calibration.load_predictions(
        client.download_artifacts(full.run.info.run_id, T.PREDICTIONS_ARTIFACT, str(tmp_path))
    )
    x_test = load_data(compose_config(tmp_path, cache_dir, QUICK)).x_test
    with fluent_tracking_uri(store_of(full)):
        model = mlflow.pyfunc.load_model(f"runs:/{full.run.info.run_id}/{T.MODEL_ARTIFACT}")
    assert model.metadata.signature is not None and model.metadata.saved_input_example_info is not None
    predicted = model.predict(x_test[:200])
    np.testing.assert_allclose(predicted, heads.probabilities(predictions.logits[:200], predictions.head), atol=1e-5)


@pytest.mark.slow
def test_the_models_tab_lists_the_model_with_test_metrics_on_the_test_dataset(runs):
    full, plain = runs
    client = MlflowClient(store_of(full))
    (output,) = full.run.outputs.model_outputs
    model = client.get_logged_model(output.model_id)
    assert model.source_run_id == full.run.info.run_id and model.experiment_id == full.run.info.experiment_id
    metrics = {metric.key: metric for metric in model.metrics}
    test_name, test_digest = inputs_of(full)["testing"]
    for key in (T.TEST_ACCURACY, T.TEST_ECE):
        assert metrics[key].value == pytest.approx(full.results[key])
        assert (metrics[key].dataset_name, metrics[key].dataset_digest) == (test_name, test_digest)
    assert metrics[T.TRAIN_SECONDS].dataset_name is None
    (version,) = client.search_model_versions(f"name = '{REGISTERED}'")
    assert version.source == f"models:/{model.model_id}"
    assert not plain.run.outputs.model_outputs  # log_model is off by default


@pytest.mark.slow
def test_system_metrics_are_logged_when_turned_on(runs):
    full, plain = runs
    assert f"{T.SYSTEM_PREFIX}cpu_utilization_percentage" in full.run.data.metrics
    assert not any(key.startswith(T.SYSTEM_PREFIX) for key in plain.run.data.metrics)


@pytest.mark.slow
def test_relog_logs_the_recorded_inputs_again(runs, tmp_path):
    full, _ = runs
    new_run_id = relog(full.output_dir, f"sqlite:///{tmp_path / 'elsewhere.db'}", force=True)
    relogged = MlflowClient(f"sqlite:///{tmp_path / 'elsewhere.db'}").get_run(new_run_id)
    assert {(d.dataset.name, d.dataset.digest) for d in relogged.inputs.dataset_inputs} == set(inputs_of(full).values())


def test_a_lost_server_skips_inputs_and_model_calls_and_keeps_the_inputs_in_the_record(tmp_path):
    class DeadClient:
        def __getattr__(self, name):
            def dead(*args, **kwargs):
                raise ConnectionError("server gone")

            return dead

    record = LocalRecord(tmp_path, RunInfo("exp", "job"))
    run = RunLogger(DeadClient(), "run-id", "0", record)
    entry = {"name": "mnist-test", "digest": "0" * 16, "source_type": "local", "source": "{}", "context": "testing"}
    run.log_inputs([entry])
    assert run.lost == "ConnectionError: server gone"
    assert run.call(lambda: "never called") is None
    assert (tmp_path / "mlflow_run" / "inputs.json").exists()


@pytest.mark.parametrize("head,units", [(Head.SOFTMAX, 3), (Head.SIGMOID, 1), (Head.SIGMOID_OVR, 3)])
def test_the_probability_model_computes_what_heads_computes(head, units):
    import keras

    from xent_lab.record.logged_model import probability_model

    inputs = keras.Input((4,))
    logits_model = keras.Model(inputs, keras.layers.Dense(units, name="logits")(inputs))
    x = np.random.default_rng(0).normal(size=(16, 4)).astype("float32") * 3
    expected = heads.probabilities(logits_model.predict(x, verbose=0), head)
    np.testing.assert_allclose(probability_model(logits_model, head).predict(x, verbose=0), expected, atol=1e-6)
