# shellcheck shell=bash disable=SC2034
# Which job launcher this recipe uses; sourced by usad2.sh after the options are parsed.
# Both launchers share one interface (utils/launch_local.sh --help describes it):
#   ${extract_cmd} JOB=1:N LOGDIR/name.JOB.log command args-with-JOB
# local (default): parallel processes on this machine; resource options are ignored.
# slurm: sbatch --array ... --wait; resource options (--mem, --gpu, ...) are mapped to sbatch
#        options by conf/slurm.conf. Select it with `cmd_backend=slurm ./run.sh` or edit below.
cmd_backend=${cmd_backend:-local}
case "${cmd_backend}" in
    local)
        train_cmd="utils/launch_local.sh"
        extract_cmd="utils/launch_local.sh" ;;
    slurm)
        train_cmd="utils/launch_slurm.sh --config conf/slurm.conf --gpu 1 --mem 32G"
        extract_cmd="utils/launch_slurm.sh --config conf/slurm.conf --mem 8G" ;;
    *)
        echo "cmd.sh: cmd_backend must be local or slurm, got '${cmd_backend}'" >&2
        return 1 ;;
esac
