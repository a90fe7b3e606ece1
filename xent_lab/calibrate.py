"""`python -m xent_lab.calibrate RUN_ID [--methods temperature,isotonic] [--tracking-uri URI] [--bootstrap N]`.

Refits recalibration methods on a finished run's logged validation logits and scores them on its logged test
logits, without retraining; logs test/recal/<method>/<metric> (with intervals) and each method's parameters to
that run. Loads neither TensorFlow nor Keras. Exit codes: 0 done, 2 a problem the message explains (no such
run, no validation predictions, a method that does not apply to the run's head).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Sequence
from functools import partial

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from xent_lab import calibration, cli
from xent_lab.calibration import Recalibrated
from xent_lab.errors import XentError
from xent_lab.tracking import RunLogger, redact, resolve_uri
from xent_lab.tracking import tags as T
from xent_lab.tracking.store import open_existing

CONNECT_TIMEOUT = 10.0


def _download(client: MlflowClient, run_id: str, artifact: str, folder: str) -> calibration.Predictions:
    listed = {item.path for item in client.list_artifacts(run_id, artifact.rpartition("/")[0])}
    if artifact not in listed:
        raise XentError(
            f"run {run_id} has no {artifact}: it was trained before validation predictions were logged; "
            "retrain it to recalibrate (python -m xent_lab.train with the same config)"
        )
    return calibration.load_predictions(client.download_artifacts(run_id, artifact, folder))


def recalibrate_run(
    client: MlflowClient,
    run_id: str,
    methods: Sequence[str],
    n_bins: int = 15,
    n_resamples: int = 1000,
    seed: int = 0,
    temperature_objective: str = "nll",
) -> dict[str, Recalibrated]:
    """Fit `methods` on the run's validation predictions, score them on its test predictions, log both to the run."""
    try:
        run = client.get_run(run_id)
    except MlflowException as exc:
        raise XentError(f"no run {run_id!r} in this tracking store ({exc.message.splitlines()[0]})") from None
    with tempfile.TemporaryDirectory() as folder:
        val = _download(client, run_id, T.VAL_PREDICTIONS_ARTIFACT, folder)
        test = _download(client, run_id, T.PREDICTIONS_ARTIFACT, folder)
    try:
        results = calibration.recalibrate(
            val.logits,
            val.labels,
            test.logits,
            test.labels,
            test.head,
            methods,
            n_bins,
            n_resamples,
            seed,
            temperature_objective,
        )
    except ValueError as exc:
        raise XentError(str(exc)) from None
    logger = RunLogger(client, run_id, run.info.experiment_id)
    step = int(run.data.metrics.get(T.EPOCHS_RUN, 0))  # beside the run's other final metrics
    for method, fitted in results.items():
        named = T.with_intervals(fitted.scores.values, fitted.scores.intervals, partial(T.recal_metric, method))
        logger.log_metrics(named, step)
        logger.log_text(json.dumps(fitted.params, indent=2), T.RECAL_PARAMS_ARTIFACT.format(method=method))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m xent_lab.calibrate", description="Refit recalibration methods on a finished run's logits."
    )
    parser.add_argument("run_id", help="the MLflow run id")
    parser.add_argument(
        "--methods", default="temperature", help=f"comma-separated, among {', '.join(calibration.RECALIBRATORS)}"
    )
    parser.add_argument("--tracking-uri", help="the store (default: $MLFLOW_TRACKING_URI, else ./mlflow.db)")
    parser.add_argument("--n-bins", type=int, default=15, help="bins of the binned metrics (default 15)")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples, 0 for none (default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap resamples (default 0)")
    parser.add_argument("--temperature-objective", choices=("nll", "ece"), default="nll")
    args = parser.parse_args(argv)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    uri = resolve_uri(args.tracking_uri)

    def calibrate() -> None:
        client = open_existing(uri, CONNECT_TIMEOUT)
        results = recalibrate_run(
            client, args.run_id, methods, args.n_bins, args.bootstrap, args.seed, args.temperature_objective
        )
        for method, fitted in results.items():
            print(f"{method}: ECE {fitted.scores.values['ece']:.4f}, NLL {fitted.scores.values['nll']:.4f}")
        print(f"logged to run {args.run_id} in {redact(uri)}")

    return cli.run(calibrate, uri)


if __name__ == "__main__":
    sys.exit(main())
