#!/usr/bin/env bash
# Creates (or completes) everything the GKE deployment needs, step by step, idempotently:
# APIs, CPU-quota preflight, Artifact Registry, bucket, Cloud SQL (PostgreSQL) for the
# Dagster instance, a zonal cluster on a release channel whose minor and node upgrades are
# held off by a maintenance exclusion until the version's end of support, a small on-demand
# system pool, a Spot pool for runs that scales from zero, Workload Identity with read-write
# access to the bucket, the namespace and its secrets.
#
#   PROJECT_ID=my-project deploy/gke/create-cluster.sh --dry-run   # print, change nothing
#   PROJECT_ID=my-project deploy/gke/create-cluster.sh
#
# Options: --dry-run; --ignore-quota (create even if the quota is short).
# Secrets, read from the environment when the secrets are created (never printed):
#   FEATURE_ASSETS_SOURCE_URL (mysql://user:password@host:3306/db), DAGSTER_PG_PASSWORD,
#   SLACK_BOT_TOKEN (optional).
# Other settings and their defaults: deploy/gke/common.sh. docs/gke.md.

IGNORE_QUOTA=0 ASSUME_EXISTS=0
handle_option() { [[ "$1" == --ignore-quota ]] && IGNORE_QUOTA=1; }
source "$(dirname "$0")/common.sh"

RELEASE_CHANNEL="${RELEASE_CHANNEL:-stable}"
EXCLUSION="no-minor-or-node-upgrades"  # the maintenance exclusion that keeps backfills whole

preflight_quota() {
  local machine_vcpus needed available
  machine_vcpus="$(sed -E 's/.*-([0-9]+)$/\1/' <<<"$SPOT_MACHINE")"
  needed=$(( SPOT_MAX_NODES * machine_vcpus + 2 ))  # Spot pool at its maximum + system node
  if (( DRY_RUN )) && ! have_gcloud; then
    echo "# quota not checked (no logged-in gcloud): the plan needs ${needed} vCPUs in ${REGION}"
    return
  fi
  local region
  region="$(gcloud compute regions describe "$REGION" --project "$PROJECT_ID" --format json)" || {
    echo "cannot read the CPU quota of ${REGION} (gcloud above); log in: gcloud auth login" >&2
    exit 1
  }
  available="$(python3 <<<"$region" -c '
import json, sys
quotas = {q["metric"]: q for q in json.load(sys.stdin)["quotas"]}
# Spot VMs count against PREEMPTIBLE_CPUS when the region has that quota, else CPUS
quota = quotas.get("PREEMPTIBLE_CPUS") or quotas["CPUS"]
if quota["limit"] == 0 and "CPUS" in quotas:
    quota = quotas["CPUS"]
print(quota["metric"], int(quota["limit"] - quota["usage"]))')"
  local metric=${available% *} free=${available#* }
  echo "# quota ${metric} in ${REGION}: ${free} vCPUs free, the plan needs ${needed}"
  # the project-wide cap counts too: a new project's CPUS_ALL_REGIONS is often below its regions'
  local global
  global="$(gcloud compute project-info describe --project "$PROJECT_ID" --format json |
    python3 -c 'import json, sys
q = {q["metric"]: q for q in json.load(sys.stdin)["quotas"]}.get("CPUS_ALL_REGIONS")
print(int(q["limit"] - q["usage"]) if q else 10**9)')" || {
    echo "cannot read the project's CPUS_ALL_REGIONS quota (gcloud above)" >&2; exit 1; }
  echo "# quota CPUS_ALL_REGIONS: ${global} vCPUs free"
  if (( global < free )); then metric=CPUS_ALL_REGIONS free=$global; fi
  if (( free < needed )); then
    echo "The Spot pool could only reach $(( (free - 2) / machine_vcpus )) of ${SPOT_MAX_NODES} nodes." >&2
    echo "Request ${metric} >= ${needed}$([[ $metric == CPUS_ALL_REGIONS ]] || echo " in ${REGION}"):" \
      "https://console.cloud.google.com/iam-admin/quotas?project=${PROJECT_ID}" \
      "(or lower SPOT_MAX_NODES; feature-assets plan --vcpu-quota ${free} shows the cost in time)." >&2
    (( IGNORE_QUOTA )) || exit 1
  fi
}

echo "# project ${PROJECT_ID}, zone ${ZONE}, cluster ${CLUSTER}, bucket gs://${BUCKET}"
run gcloud services enable container.googleapis.com sqladmin.googleapis.com \
  artifactregistry.googleapis.com servicenetworking.googleapis.com --project "$PROJECT_ID"
preflight_quota

exists gcloud artifacts repositories describe "$REPOSITORY" --location "$REGION" --project "$PROJECT_ID" ||
  run gcloud artifacts repositories create "$REPOSITORY" --repository-format docker \
    --location "$REGION" --project "$PROJECT_ID"

# The nodes pull the image as the Compute Engine default service account; projects made
# since May 2024 no longer grant it Artifact Registry access on their own (ImagePullBackOff).
project_number() {
  if (( DRY_RUN )) && ! have_gcloud; then echo PROJECT_NUMBER; return; fi
  gcloud projects describe "$PROJECT_ID" --format 'value(projectNumber)'
}
run gcloud artifacts repositories add-iam-policy-binding "$REPOSITORY" --location "$REGION" \
  --project "$PROJECT_ID" --role roles/artifactregistry.reader \
  --member "serviceAccount:$(project_number)-compute@developer.gserviceaccount.com"

exists gcloud storage buckets describe "gs://${BUCKET}" --project "$PROJECT_ID" ||
  run gcloud storage buckets create "gs://${BUCKET}" --location "$REGION" \
    --uniform-bucket-level-access --project "$PROJECT_ID"

# Cloud SQL on a private IP in the default network (peering made once per network).
exists gcloud compute addresses describe google-managed-services-default --global --project "$PROJECT_ID" ||
  run gcloud compute addresses create google-managed-services-default --global \
    --purpose VPC_PEERING --prefix-length 16 --network default --project "$PROJECT_ID"
peered() {  # asked apart from the address: a run that failed between the two re-peers
  (( DRY_RUN )) && ! have_gcloud && return 1
  gcloud services vpc-peerings list --network default --project "$PROJECT_ID" \
    --format 'value(service)' 2>/dev/null | grep -q servicenetworking.googleapis.com
}
peered ||
  run gcloud services vpc-peerings connect --service servicenetworking.googleapis.com \
    --ranges google-managed-services-default --network default --project "$PROJECT_ID"
NEW_SQL=0
exists gcloud sql instances describe "$SQL_INSTANCE" --project "$PROJECT_ID" || {
  run gcloud sql instances create "$SQL_INSTANCE" --database-version POSTGRES_15 \
    --tier db-custom-1-3840 --region "$REGION" --network default --no-assign-ip --project "$PROJECT_ID" \
    --database-flags "max_connections=${SQL_MAX_CONNECTIONS}"
  run gcloud sql databases create dagster --instance "$SQL_INSTANCE" --project "$PROJECT_ID"
  run gcloud sql users create dagster --instance "$SQL_INSTANCE" --project "$PROJECT_ID" \
    --password "$(secret DAGSTER_PG_PASSWORD)"
  NEW_SQL=1
}
# An instance made before (or changed by hand) gets max_connections too: the connection
# budget of docs/gke.md counts on it. `patch --database-flags` replaces every flag, so the
# instance's other flags are passed along unchanged. Changing the flag restarts the instance
# (about a minute without the run storage): done only when the value differs, and said.
sql_flags() {  # "<current max_connections or unset> <every flag, max_connections set>"
  gcloud sql instances describe "$SQL_INSTANCE" --project "$PROJECT_ID" --format json |
    python3 -c 'import json, sys
flags = {f["name"]: f["value"] for f in json.load(sys.stdin).get("settings", {}).get("databaseFlags", [])}
current = flags.get("max_connections", "unset")
flags["max_connections"] = sys.argv[1]
print(current, ",".join(f"{name}={value}" for name, value in sorted(flags.items())))' "$SQL_MAX_CONNECTIONS"
}
if (( ! NEW_SQL )); then
  if (( DRY_RUN )) && ! have_gcloud; then
    echo "# max_connections of ${SQL_INSTANCE} not checked (no logged-in gcloud)"
  else
    read -r current_connections all_flags < <(sql_flags) || {
      echo "cannot read the flags of Cloud SQL ${SQL_INSTANCE} (gcloud above)" >&2; exit 1; }
    if [[ "$current_connections" != "$SQL_MAX_CONNECTIONS" ]]; then
      echo "# Cloud SQL ${SQL_INSTANCE}: max_connections ${current_connections} -> ${SQL_MAX_CONNECTIONS} (the instance restarts)"
      run gcloud sql instances patch "$SQL_INSTANCE" --project "$PROJECT_ID" \
        --database-flags "$all_flags" --quiet
    fi
  fi
fi
# the Optuna studies (feature-assets tune) live beside the instance, in a database of their own
exists gcloud sql databases describe optuna --instance "$SQL_INSTANCE" --project "$PROJECT_ID" ||
  run gcloud sql databases create optuna --instance "$SQL_INSTANCE" --project "$PROJECT_ID"

# A release channel (GKE's way now; "no channel" loses its last controls in 2027) with a
# "no minor or node upgrades" maintenance exclusion: nodes are not upgraded or recreated
# under a running backfill, and the control plane takes only patches (a zonal control plane
# is briefly unreachable then; runs already started go on). gcloud takes exclusions only on
# an existing cluster, with an end date: EXCLUSION_DAYS from today (GKE refuses an end past
# the version's end of support: lower it then). A re-run renews it when less than 30 days
# are left. Only GA flags here (tests/test_gke_scripts.py runs every command line through
# the real gcloud's parser).
# The cluster is made with a one-node default pool (a cluster needs a pool to exist), then
# the `system` pool that the Helm values' nodeSelector asks for replaces it.
NEW_CLUSTER=0
exists gcloud container clusters describe "$CLUSTER" --zone "$ZONE" --project "$PROJECT_ID" || {
  run gcloud container clusters create "$CLUSTER" --zone "$ZONE" --project "$PROJECT_ID" \
    --release-channel "$RELEASE_CHANNEL" \
    --workload-pool "${PROJECT_ID}.svc.id.goog" \
    --machine-type "$SYSTEM_MACHINE" --num-nodes 1
  NEW_CLUSTER=1
}
exists gcloud container node-pools describe system --cluster "$CLUSTER" --zone "$ZONE" --project "$PROJECT_ID" ||
  run gcloud container node-pools create system --cluster "$CLUSTER" --zone "$ZONE" \
    --project "$PROJECT_ID" --machine-type "$SYSTEM_MACHINE" --num-nodes 1 \
    --workload-metadata GKE_METADATA
if (( NEW_CLUSTER )) ||
  exists gcloud container node-pools describe default-pool --cluster "$CLUSTER" --zone "$ZONE" --project "$PROJECT_ID"; then
  run gcloud container node-pools delete default-pool --cluster "$CLUSTER" --zone "$ZONE" \
    --project "$PROJECT_ID" --quiet
fi
exclusions() {
  (( DRY_RUN )) && ! have_gcloud && return
  gcloud container clusters describe "$CLUSTER" --zone "$ZONE" --project "$PROJECT_ID" \
    --format 'value(maintenancePolicy.window.maintenanceExclusions)' 2>/dev/null || true
}
day_in() { python3 -c "import datetime as d, sys; print(d.date.today() + d.timedelta(days=int(sys.argv[1])))" "$1"; }
held_until="$( (grep -oE "${EXCLUSION}-until-[0-9]{4}-[0-9]{2}-[0-9]{2}" <<<"$(exclusions)" || true) |
  sed "s/${EXCLUSION}-until-//" | sort | tail -n 1)"
if [[ -z "$held_until" || "$held_until" < "$(day_in 30)" ]]; then
  end="$(day_in "${EXCLUSION_DAYS:-90}")"
  run gcloud container clusters update "$CLUSTER" --zone "$ZONE" --project "$PROJECT_ID" \
    --add-maintenance-exclusion-name "${EXCLUSION}-until-${end}" \
    --add-maintenance-exclusion-start "$(day_in 0)T00:00:00Z" \
    --add-maintenance-exclusion-end "${end}T00:00:00Z" \
    --add-maintenance-exclusion-scope no_minor_or_node_upgrades
fi

exists gcloud container node-pools describe spot-runs --cluster "$CLUSTER" --zone "$ZONE" --project "$PROJECT_ID" ||
  run gcloud container node-pools create spot-runs --cluster "$CLUSTER" --zone "$ZONE" \
    --project "$PROJECT_ID" --spot --machine-type "$SPOT_MACHINE" \
    --enable-autoscaling --num-nodes 0 --min-nodes 0 --max-nodes "$SPOT_MAX_NODES" \
    --workload-metadata GKE_METADATA \
    --node-taints cloud.google.com/gke-spot=true:NoSchedule

# Workload Identity: the pods' Kubernetes service account acts as a Google one that may
# read, write and delete the bucket's objects (objectAdmin: every call a run makes, as
# tests/test_gcs.py records them) and read the bucket's own metadata (legacyBucketReader:
# storage.buckets.get, which pyarrow's GCS filesystem asks for when it makes or inspects a
# "directory", as code beside ours may). Nothing project-wide; no key file exists.
exists gcloud iam service-accounts describe "$GSA" --project "$PROJECT_ID" ||
  run gcloud iam service-accounts create feature-assets --project "$PROJECT_ID" \
    --display-name "feature_assets runs"
for role in roles/storage.objectAdmin roles/storage.legacyBucketReader; do
  run gcloud storage buckets add-iam-policy-binding "gs://${BUCKET}" \
    --member "serviceAccount:${GSA}" --role "$role" --project "$PROJECT_ID"
done
run gcloud iam service-accounts add-iam-policy-binding "$GSA" --project "$PROJECT_ID" \
  --role roles/iam.workloadIdentityUser \
  --member "serviceAccount:${PROJECT_ID}.svc.id.goog[${NAMESPACE}/dagster]"

run gcloud container clusters get-credentials "$CLUSTER" --zone "$ZONE" --project "$PROJECT_ID"
if (( DRY_RUN )); then
  echo "+ kubectl create namespace ${NAMESPACE} (if missing) and apply secrets" \
    "feature-assets-source (FEATURE_ASSETS_SOURCE_URL, FEATURE_ASSETS_OPTUNA_URL," \
    "SLACK_BOT_TOKEN) and" \
    "dagster-postgresql-secret (postgresql-password) from the environment"
else
  : "${FEATURE_ASSETS_SOURCE_URL:?set FEATURE_ASSETS_SOURCE_URL for the secret}"
  : "${DAGSTER_PG_PASSWORD:?set DAGSTER_PG_PASSWORD for the secret}"
  # postgresql://dagster:PASSWORD@CLOUD_SQL_PRIVATE_IP:5432/optuna (docs/gke.md)
  : "${FEATURE_ASSETS_OPTUNA_URL:?set FEATURE_ASSETS_OPTUNA_URL for the secret}"
  kubectl get namespace "$NAMESPACE" >/dev/null 2>&1 || kubectl create namespace "$NAMESPACE"
  kubectl -n "$NAMESPACE" create secret generic feature-assets-source \
    --from-literal "FEATURE_ASSETS_SOURCE_URL=${FEATURE_ASSETS_SOURCE_URL}" \
    --from-literal "FEATURE_ASSETS_OPTUNA_URL=${FEATURE_ASSETS_OPTUNA_URL}" \
    ${SLACK_BOT_TOKEN:+--from-literal "SLACK_BOT_TOKEN=${SLACK_BOT_TOKEN}"} \
    --dry-run=client -o yaml | kubectl apply -f - >/dev/null
  kubectl -n "$NAMESPACE" create secret generic dagster-postgresql-secret \
    --from-literal "postgresql-password=${DAGSTER_PG_PASSWORD}" \
    --dry-run=client -o yaml | kubectl apply -f - >/dev/null
  echo "secrets applied in namespace ${NAMESPACE}"
fi
echo "# next: build and push the image, then helm upgrade --install (docs/gke.md)"
