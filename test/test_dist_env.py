"""Distributed environment: torchrun and Slurm variables, backend choice."""
import pytest

from usad2.errors import ConfigError
from usad2.utils import dist


def test_single_process_without_variables():
    env = dist.read_env({})
    assert (env.rank, env.local_rank, env.world_size, env.source) == (0, 0, 1, "single")
    assert env.is_main and not env.distributed


def test_torchrun_variables():
    env = dist.read_env({"RANK": "3", "LOCAL_RANK": "1", "WORLD_SIZE": "4"})
    assert (env.rank, env.local_rank, env.world_size, env.source) == (3, 1, 4, "torchrun")
    assert not env.is_main and env.distributed


def test_slurm_variables_are_translated():
    environ = {"SLURM_PROCID": "5", "SLURM_LOCALID": "1", "SLURM_NTASKS": "8", "SLURM_JOB_ID": "123456",
               "SLURM_JOB_NODELIST": "gpu[003-004,010]"}
    env = dist.read_env(environ)
    assert (env.rank, env.local_rank, env.world_size, env.source) == (5, 1, 8, "slurm")
    # torch's env:// rendezvous reads these, so they are filled in
    assert environ["RANK"] == "5" and environ["LOCAL_RANK"] == "1" and environ["WORLD_SIZE"] == "8"
    assert environ["MASTER_ADDR"] == "gpu003"
    assert environ["MASTER_PORT"] == str(20000 + 123456 % 20000)


def test_slurm_keeps_an_explicit_master_and_torchrun_wins():
    environ = {"SLURM_PROCID": "1", "SLURM_NTASKS": "2", "MASTER_ADDR": "head", "MASTER_PORT": "29500",
               "SLURM_NODELIST": "n1"}
    env = dist.read_env(environ)
    assert env.local_rank == 1 and environ["MASTER_ADDR"] == "head" and environ["MASTER_PORT"] == "29500"
    # torchrun inside a Slurm allocation: torchrun's own variables describe the process
    both = {"SLURM_PROCID": "0", "SLURM_NTASKS": "1", "RANK": "1", "LOCAL_RANK": "1", "WORLD_SIZE": "2"}
    assert dist.read_env(both) == dist.DistEnv(1, 1, 2, "torchrun")


def test_single_slurm_task_needs_no_rendezvous():
    environ = {"SLURM_PROCID": "0", "SLURM_NTASKS": "1"}
    env = dist.read_env(environ)
    assert env.world_size == 1 and "MASTER_ADDR" not in environ


@pytest.mark.parametrize("nodelist,host", [("node7", "node7"), ("a[1-3]", "a1"), ("gpu[010,012],cpu1", "gpu010"),
                                           ("x-y[08-09]", "x-y08")])
def test_first_slurm_host(nodelist, host):
    assert dist.first_slurm_host(nodelist) == host


@pytest.mark.parametrize("environ,match", [
    ({"RANK": "x", "WORLD_SIZE": "2"}, "RANK='x' is not an integer"),
    ({"RANK": "2", "WORLD_SIZE": "2"}, "rank 2"),
    ({"SLURM_PROCID": "4", "SLURM_NTASKS": "4"}, "slurm environment: rank 4"),
])
def test_bad_environments_are_errors(environ, match):
    with pytest.raises(ConfigError, match=match):
        dist.read_env(environ)


def test_backend_and_device():
    assert dist.backend_for("cuda:1") == "nccl" and dist.backend_for("cpu") == "gloo"
    assert dist.pick_device(dist.DistEnv(), "cpu") == "cpu"


def test_collectives_are_identities_without_a_process_group():
    import torch

    t = torch.tensor([1.0, 2.0])
    assert dist.all_reduce_sum(t) is t and t.tolist() == [1.0, 2.0]
    assert dist.gather_objects({"a": 1}) == [{"a": 1}]
    assert dist.broadcast_object(5) == 5


def test_which_launches_need_a_process_group():
    assert dist.DistEnv(0, 0, 1, "torchrun").needs_process_group  # torchrun --nproc-per-node 1: DDP too
    assert not dist.DistEnv(0, 0, 1, "slurm").needs_process_group  # a lone Slurm task has no rendezvous
    assert not dist.DistEnv().needs_process_group
    assert dist.DistEnv(1, 0, 2, "slurm").needs_process_group
