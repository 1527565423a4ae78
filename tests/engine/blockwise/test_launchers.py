"""The executors: their submit lines, the cluster settings that reach them, and the
registry as the one list of executor names (config, CLI help, run spec, docs)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import get_args

import pytest

from engine.blockwise.launchers import EXECUTORS, cluster_command, executor_names, get_executor
from engine.blockwise.run import scheduling
from engine.blockwise.task import Cluster, WorkerSpec
from engine.contract import ResourcesAsked
from engine.errors import InputError
from engine.project import config as cfg
from engine.runs.resolve import resources

ROOT = Path(__file__).parents[3]


def test_cluster_command_lines() -> None:
    target = "engine.predict.predictor:x"
    command = ["python", "-m", "engine.blockwise", "/runs/r", "predict-a", target]
    slurm = WorkerSpec(
        "/runs/r", "predict-a", target, "slurm", (0, 1),
        Cluster("gpu", "02:00:00", "lab"),
    )  # fmt: skip
    line = cluster_command(slurm, 1, command, Path("/runs/r/workers/w.log"))
    assert line[:2] == ["sbatch", "--parsable"]
    for flag, value in [("--gres", "gpu:1"), ("--partition", "gpu"), ("--time", "02:00:00"),
                        ("--account", "lab"), ("--output", "/runs/r/workers/w.log")]:  # fmt: skip
        assert line[line.index(flag) + 1] == value
    assert line[-2:] == ["--wrap", " ".join(command)]
    lsf = WorkerSpec("/runs/r", "predict-a", target, "lsf", (0,), Cluster("gpu", "01:30:00", "lab"))
    line = cluster_command(lsf, 0, command, Path("/runs/r/workers/w.log"))
    assert line[:2] == ["bsub", "-K"]  # waits for the job, kills it when interrupted
    for flag, value in [("-gpu", "num=1"), ("-q", "gpu"), ("-W", "1:30"), ("-P", "lab")]:
        assert line[line.index(flag) + 1] == value
    assert line[-1] == " ".join(command)
    cpu = WorkerSpec("/runs/r", "predict-a", target, "slurm", (), Cluster(gpu=False))
    assert "--gres" not in cluster_command(cpu, 0, command, Path("/w.log"))


def test_cluster_settings_reach_predict_and_segment_jobs() -> None:
    config = cfg.from_preset(
        "tiny",
        {"predict": {"partition": "gpu", "time_limit": "01:00:00", "account": "lab",
                     "scheduler_host": "login1", "retries": 4}},
    )  # fmt: skip
    predict = scheduling(config, "slurm", gpu=config.predict.cluster_gpu)
    segment = scheduling(config, "slurm", gpu=False)
    for kwargs in (predict, segment):
        cluster = kwargs["cluster"]
        assert (cluster.partition, cluster.time_limit, cluster.account) == (
            "gpu", "01:00:00", "lab",
        )  # fmt: skip
        assert kwargs["host"] == "login1" and kwargs["retries"] == 4
    assert predict["cluster"].gpu and not segment["cluster"].gpu
    assert scheduling(config, "local", gpu=True)["host"] == "127.0.0.1"


def test_the_registry_is_the_one_list_of_executor_names() -> None:
    names = executor_names()
    assert names == ("local", "slurm", "lsf") == tuple(EXECUTORS)
    assert all(callable(get_executor(n).launch) for n in names)
    field = cfg.PredictConfig.model_fields["executor"]
    assert get_args(field.annotation) == names
    schema = cfg.ProjectConfig.model_json_schema()
    assert schema["$defs"]["PredictConfig"]["properties"]["executor"]["enum"] == list(names)
    # The run's resources cross to the daemon in the dependency-free contract, which cannot
    # import the registry: the resolver checks the name instead.
    config = cfg.from_preset("tiny", {})
    for name in names:
        assert resources(ResourcesAsked(executor=name), "predict", config).executor == name
    with pytest.raises(InputError, match="executor must be local, slurm or lsf, got 'pbs'"):
        resources(ResourcesAsked(executor="pbs"), "predict", config)
    assert field.description == (
        "Where workers run: local processes, Slurm (sbatch) or LSF (bsub)."
    )


def test_a_bad_executor_names_the_choices() -> None:
    with pytest.raises(InputError, match="executor: Input should be 'local', 'slurm' or 'lsf'"):
        cfg.from_preset("tiny", {"predict": {"executor": "pbs"}})
    with pytest.raises(InputError, match="unknown executor 'pbs': use local, slurm or lsf"):
        get_executor("pbs")


def test_the_cluster_docs_list_every_executor() -> None:
    row = next(
        line
        for line in (ROOT / "docs" / "cluster.md").read_text().splitlines()
        if line.startswith("| `predict.executor`")
    )
    assert re.findall(r"`([a-z]+)`", row.split("|")[2]) == list(executor_names())
