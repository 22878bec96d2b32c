#!/usr/bin/env bash
# Tears down what create-cluster.sh made. By default only what costs money by the hour and
# holds no results: the cluster and its node pools. The features (bucket) and the Dagster
# instance (Cloud SQL: run history, partition status) stay, so a later cluster picks up
# where this one stopped.
#
#   PROJECT_ID=my-project deploy/gke/delete-cluster.sh --dry-run
#   PROJECT_ID=my-project deploy/gke/delete-cluster.sh            # cluster only
#   PROJECT_ID=my-project deploy/gke/delete-cluster.sh --all      # also Cloud SQL, bucket,
#                                                                 # image repository, account

ALL=0 ASSUME_EXISTS=1
handle_option() { [[ "$1" == --all ]] && ALL=1; }
source "$(dirname "$0")/common.sh"

exists gcloud container clusters describe "$CLUSTER" --zone "$ZONE" --project "$PROJECT_ID" &&
  run gcloud container clusters delete "$CLUSTER" --zone "$ZONE" --project "$PROJECT_ID" --quiet
if (( ALL )); then
  exists gcloud sql instances describe "$SQL_INSTANCE" --project "$PROJECT_ID" &&
    run gcloud sql instances delete "$SQL_INSTANCE" --project "$PROJECT_ID" --quiet
  exists gcloud storage buckets describe "gs://${BUCKET}" --project "$PROJECT_ID" &&
    run gcloud storage rm --recursive "gs://${BUCKET}" --project "$PROJECT_ID"
  exists gcloud artifacts repositories describe "$REPOSITORY" --location "$REGION" --project "$PROJECT_ID" &&
    run gcloud artifacts repositories delete "$REPOSITORY" --location "$REGION" --project "$PROJECT_ID" --quiet
  exists gcloud iam service-accounts describe "$GSA" --project "$PROJECT_ID" &&
    run gcloud iam service-accounts delete "$GSA" --project "$PROJECT_ID" --quiet
fi
echo "# done; kept: $( (( ALL )) && echo nothing || echo "gs://${BUCKET} and Cloud SQL ${SQL_INSTANCE}")"
