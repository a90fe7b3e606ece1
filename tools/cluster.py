"""`make cluster` and `make cluster-stop`: the tests' single-node SLURM cluster (tests/helpers/slurm.py), started
for a user to try `hydra/launcher=slurm` on this machine. For trying things, not for production: the daemons run
as root, accounting is off, and there is one node.

    python -m tools.cluster start [FOLDER]    (FOLDER: /tmp/xent-lab-cluster; config, state and logs go there)
    python -m tools.cluster stop [FOLDER]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tests.helpers.slurm import ClusterUnavailable, LocalCluster

DEFAULT_FOLDER = Path("/tmp/xent-lab-cluster")
EXAMPLE = (
    "python -m xent_lab.train experiment=mnist_losses debug=quick loss=cce,focal seed=0,1 hydra/launcher=slurm "
    "hydra.launcher.cpus_per_task=1 hydra.launcher.gpus_per_node=0 hydra.launcher.mem_gb=4"
)


def start(folder: Path) -> int:
    cluster = LocalCluster.attach(folder)
    if cluster.running():
        print(f"the cluster in {cluster.folder} is already running")
    else:
        cluster.stop()  # what an earlier start left, if one of its daemons died since
        try:
            cluster.start()
        except ClusterUnavailable as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        print(
            f"SLURM cluster up: node {cluster.node} idle, partition debug; config, state and logs in {cluster.folder}"
        )
    print(
        f"\nIn each shell that submits to it:\n\n  export SLURM_CONF={cluster.conf}\n\n"
        f"then, for example:\n\n  {EXAMPLE}\n\n"
        "Job logs go to the sweep folder (multirun/.../.submitit/<job id>/); `squeue` lists the jobs. Accounting is "
        "off, so submitit warns 'Bypassing sacct error' while it waits (harmless: each job reports its own end; "
        "`export SUBMITIT_LOG_LEVEL=ERROR` hides these, and submitit's other warnings).\n"
        "For trying things only, not for production. Stop it with `make cluster-stop`."
    )
    return 0


def stop(folder: Path) -> int:
    cluster = LocalCluster.attach(folder)
    found = cluster.running()
    cluster.stop()
    print(f"stopped the cluster in {cluster.folder}" if found else f"no cluster was running in {cluster.folder}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.cluster", description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("start", "stop"))
    parser.add_argument("folder", nargs="?", type=Path, default=DEFAULT_FOLDER)
    args = parser.parse_args(argv)
    return (start if args.action == "start" else stop)(args.folder)


if __name__ == "__main__":
    sys.exit(main())
