#!/usr/bin/env bash
# System packages the tests need, installed from Debian's registry when missing:
#   postgresql - server binaries (initdb, pg_ctl, postgres); the tests start
#                their own throw-away server from them, nothing is started here
#   faketime   - moves the clock of real processes (midnight and DST tests)
#   chromium, chromium-driver - headless Chromium and its WebDriver, to render the
#                Snakemake report page as a person sees it (tests/report/)
#   slurmctld, slurmd, slurm-client, munge - a single-node Slurm cluster that
#                tests/cluster/ starts itself (its own munged, slurmctld and
#                slurmd in a temporary folder); nothing is started here
set -euo pipefail
need=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 || need+=(postgresql)
command -v faketime >/dev/null 2>&1 || need+=(faketime)
[ -x /usr/bin/chromium ] || need+=(chromium)
[ -x /usr/bin/chromedriver ] || need+=(chromium-driver)
has() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; }
has slurmctld || need+=(slurmctld)
has slurmd || need+=(slurmd)
has sbatch || need+=(slurm-client)
has munged || need+=(munge)
[ ${#need[@]} -eq 0 ] && exit 0
echo "setup_system: installing ${need[*]} (Debian packages the tests need)" >&2
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
export DEBIAN_FRONTEND=noninteractive
# Quiet unless it fails: then apt's own words. No service is started (Debian's
# policy-rc.d in containers; the tests start their own daemons).
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"; } >"$log" 2>&1; then
    cat "$log" >&2
    echo "setup_system: apt-get could not install ${need[*]}" >&2
    exit 1
fi
