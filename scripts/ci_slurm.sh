#!/usr/bin/env bash
# Install the Debian Slurm packages for the test cluster (../shared/tools/slurm) when
# this machine allows it (root, apt-get). Never fails CI: without Slurm, the Slurm
# tests skip and say why.
set -uo pipefail
if command -v sbatch >/dev/null && command -v slurmctld >/dev/null; then exit 0; fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "ci_slurm: not root or no apt-get; Slurm tests will skip"; exit 0
fi
timeout 300 env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
  slurmctld slurmd slurm-client munge >/tmp/ci_slurm_apt.log 2>&1 \
  || echo "ci_slurm: apt-get failed (see /tmp/ci_slurm_apt.log); Slurm tests will skip"
exit 0
