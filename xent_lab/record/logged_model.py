"""The MLflow Model of a run (`tracking.log_model=true`, or `tracking.register_as=NAME`).

What is logged is the trained network ending in the class probabilities, in MLflow 3's Keras flavour,
with a signature and an input example: `mlflow.pyfunc.load_model("runs:/<run id>/model").predict(x)`
returns what `xent_lab.heads.probabilities` gives for the run's logits. It holds no loss and no
optimizer, only built-in layers, so it loads and serves (`mlflow models serve`) without this project's
code. The trained model itself, loss and optimizer included, is the raw checkpoint in the output folder.
"""

from __future__ import annotations

import contextlib
import io
import os
from types import SimpleNamespace

import keras
import mlflow.keras
import tensorflow as tf
from keras import layers
from mlflow.entities import LoggedModelOutput
from mlflow.models import Model, infer_signature
from omegaconf import DictConfig

from xent_lab.data import Dataset
from xent_lab.heads import Head
from xent_lab.tracking import RunLogger
from xent_lab.tracking import tags as T
from xent_lab.tracking.lineage import fluent_tracking_uri

INPUT_EXAMPLE_ROWS = 2


def _save_keras(path: str, **kwargs: object) -> None:
    os.makedirs(path, exist_ok=True)
    mlflow.keras.save_model(path=path, **kwargs)


# MLflow's Keras flavour, but the model folder made first: its save_model writes the input example before it
# creates the folder, and fails (mlflow/mlflow#16183, open in MLflow 3.17). Loading is MLflow's own.
_KERAS_FLAVOUR = SimpleNamespace(__name__=mlflow.keras.__name__, save_model=_save_keras)


def probability_model(logits_model: keras.Model, head: Head) -> keras.Model:
    """`logits_model` topped by the probabilities of `head`, computed as `heads.probabilities` does.

    float32 layers, whatever the precision policy, like the logits. sigmoid: [1 - p, p]; sigmoid_ovr: the
    sigmoids normalised to sum to one, which is softmax(log sigmoid(z)).
    """
    logits = logits_model.output
    if head == Head.SOFTMAX:
        probabilities = layers.Softmax(dtype="float32", name="class_probabilities")(logits)
    elif head == Head.SIGMOID:
        positive = layers.Activation("sigmoid", dtype="float32", name="positive_probability")(logits)
        negative = layers.Rescaling(-1.0, offset=1.0, dtype="float32", name="negative_probability")(positive)
        probabilities = layers.Concatenate(dtype="float32", name="class_probabilities")([negative, positive])
    else:
        log_sigmoids = layers.Activation("log_sigmoid", dtype="float32", name="log_sigmoids")(logits)
        probabilities = layers.Softmax(dtype="float32", name="class_probabilities")(log_sigmoids)
    return keras.Model(logits_model.inputs, probabilities, name=f"{logits_model.name}_probabilities")


def log_model(
    run: RunLogger,
    tracking: DictConfig,
    uri: str,
    logits_model: keras.Model,
    head: Head,
    dataset: Dataset,
    step: int,
    params: dict[str, str],
) -> str | None:
    """With `tracking.log_model` or `tracking.register_as`, log the probability model as the run's MLflow Model
    (registered as `register_as` if set) produced at `step` (the epochs run), with the run's `params`; returns
    its model id.

    None when not asked, or once the tracking server is lost: the run goes on, the checkpoint in the output
    folder keeps the model.
    """
    register_as = tracking.register_as
    if not (tracking.log_model or register_as):
        return None
    model = probability_model(logits_model, head)
    example = dataset.x_test[:INPUT_EXAMPLE_ROWS]
    signature = infer_signature(example, model.predict(example, verbose=0))

    def log() -> str:
        # Made here, not by Model.log: that puts it in the fluent API's experiment, not the run's, and copies
        # onto it every run metric logged at `step` (system metrics included); the final metrics come next.
        client = run.client
        created = client.create_logged_model(run.experiment_id, T.MODEL_ARTIFACT, run.run_id, params=params)
        # MLflow checks the input example with the pyfunc, whose predict draws a Keras progress bar on stdout.
        with fluent_tracking_uri(uri), contextlib.redirect_stdout(io.StringIO()):
            Model.log(
                None,
                flavor=_KERAS_FLAVOUR,
                name=T.MODEL_ARTIFACT,
                model=model,
                model_id=created.model_id,
                signature=signature,
                input_example=example,
                registered_model_name=register_as,
                # Given, not inferred: inferring them loads the model again in a new Python process.
                pip_requirements=[f"keras=={keras.__version__}", f"tensorflow=={tf.__version__}"],
            )
        client.log_outputs(run.run_id, [LoggedModelOutput(created.model_id, step)])
        return created.model_id

    return run.call(log)
