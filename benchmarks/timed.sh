# Sourced by the must-show scripts: `timed VAR CMD...` runs CMD (its failure tolerated: the summary reports what
# was written) and sets VAR to its wall time in seconds, one decimal.
timed() {
  local var=$1 start
  shift
  start=$(date +%s.%N)
  "$@" || true
  printf -v "$var" '%s' "$(python -c "print(f'{$(date +%s.%N)-$start:.1f}')")"
}
