# Shared by create-cluster.sh and delete-cluster.sh: settings, dry-run, idempotence.
# Settings come from the environment; only PROJECT_ID is required.
set -euo pipefail

: "${PROJECT_ID:?set PROJECT_ID to your Google Cloud project}"
REGION="${REGION:-us-central1}"
ZONE="${ZONE:-${REGION}-a}"
CLUSTER="${CLUSTER:-feature-assets}"
NAMESPACE="${NAMESPACE:-dagster}"
BUCKET="${BUCKET:-${PROJECT_ID}-feature-assets}"
REPOSITORY="${REPOSITORY:-feature-assets}"
SQL_INSTANCE="${SQL_INSTANCE:-dagster-instance}"
SQL_MAX_CONNECTIONS="${SQL_MAX_CONNECTIONS:-200}"  # docs/gke.md: the connection budget
SYSTEM_MACHINE="${SYSTEM_MACHINE:-e2-standard-2}"
SPOT_MACHINE="${SPOT_MACHINE:-e2-standard-4}"
SPOT_MAX_NODES="${SPOT_MAX_NODES:-5}"  # `feature-assets plan` says how many a backfill uses
GSA="feature-assets@${PROJECT_ID}.iam.gserviceaccount.com"

DRY_RUN=0
for argument in "$@"; do
  case "$argument" in
    --dry-run) DRY_RUN=1 ;;
    *) [[ "$(type -t handle_option)" == function ]] && handle_option "$argument" && continue
       echo "unknown option: $argument" >&2; exit 2 ;;
  esac
done

# gcloud installed and logged in: only then can existence and quotas be read.
have_gcloud() {
  command -v gcloud >/dev/null 2>&1 &&
    [[ -n "$(gcloud auth list --filter status:ACTIVE --format 'value(account)' 2>/dev/null)" ]]
}

# Runs a command that changes something; with --dry-run prints it instead.
run() {
  if (( DRY_RUN )); then
    printf '+'; printf ' %q' "$@"; printf '\n'
  else
    "$@"
  fi
}

# A secret's value for a command; a dry run prints its name instead, never the value.
secret() {
  if (( DRY_RUN )); then printf '${%s}' "$1"; return; fi
  [[ -n "${!1:-}" ]] || { echo "set $1 (a secret, read from the environment)" >&2; exit 2; }
  printf '%s' "${!1}"
}

# True when a read-only command succeeds (the thing exists). In a dry run without a
# logged-in gcloud the answer is ASSUME_EXISTS (set by each script: create prints every
# creation, delete every deletion).
exists() {
  if (( DRY_RUN )) && ! have_gcloud; then return $(( 1 - ASSUME_EXISTS )); fi
  "$@" >/dev/null 2>&1
}
