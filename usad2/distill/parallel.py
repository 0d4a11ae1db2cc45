"""DDP / FSDP around the student + heads, and full (unsharded) state dicts for checkpoints.

Without a process group the model runs as it is. With one, DDP by default (unused parameters are
searched only when some student layers feed no head), or FSDP2 (`fully_shard` per encoder block,
then the whole model) with `--fsdp true`. Checkpoints always hold full CPU state dicts, so a run
resumes under either wrapper and at any world size.
"""
import torch

from usad2.utils import dist


def wrap(model, fsdp, device):
    """The module the training step calls: `model` itself, DDP around it, or `model` sharded in place."""
    if fsdp:
        from torch.distributed.fsdp import fully_shard

        if dist.is_initialized():
            for block in model.student.encoder.layers:
                fully_shard(block)
            fully_shard(model)
            # SUM then divide by the world size: gloo's reduce-scatter ignores ReduceOp.AVG
            # (gradients came out world_size times too large on CPU), nccl is fine either way
            for module in model.modules():
                if hasattr(module, "set_force_sum_reduction_for_comms"):
                    module.set_force_sum_reduction_for_comms(True)
        return model
    if dist.is_initialized():
        from torch.nn.parallel import DistributedDataParallel

        ids = [torch.device(device).index] if str(device).startswith("cuda") else None
        return DistributedDataParallel(model, device_ids=ids, find_unused_parameters=not model.uses_every_layer)
    return model


def full_state(model, raw_model, optimizer, fsdp):
    """(model state, optimizer state), full and on CPU; a collective under FSDP."""
    if fsdp and dist.is_initialized():
        from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict,
                                                             get_optimizer_state_dict)

        opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
        return get_model_state_dict(model, options=opts), get_optimizer_state_dict(model, optimizer, options=opts)
    return {k: v.detach().cpu() for k, v in raw_model.state_dict().items()}, optimizer.state_dict()


def load_optimizer_state(model, optimizer, state, fsdp):
    """Load a full optimizer state (from `full_state`) into the optimizer, sharding it under FSDP."""
    if fsdp and dist.is_initialized():
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

        set_optimizer_state_dict(model, optimizer, state, options=StateDictOptions(full_state_dict=True))
    else:
        optimizer.load_state_dict(state)
