#!/usr/bin/env bash
# Remove what deploy/deploy.sh created in a Google Cloud project, after a confirmation.
#
#   deploy/teardown.sh --project PROJECT_ID --region REGION [options]
#
# Options (use the same --prefix, --gateway-region and --ct-subscription-key as for deploy.sh):
#   --prefix NAME              prefix of every resource name (default ct-klaviyo)
#   --gateway-region REGION    API Gateway location (default: --region)
#   --ct-subscription-key KEY  commercetools subscription to delete (default klaviyo-connector)
#   --skip-ct-subscription     leave the commercetools subscription alone
#   --keep-firestore           keep the connector's Firestore database (<prefix>-bulk: bulk job
#                              history and locks); by default it is deleted with the rest
#   --build-dir DIR            the staging folder deploy.sh used (default deploy/build)
#   --yes                      do not ask for confirmation
#   --dry-run                  print every command instead of running it (needs no gcloud)
#   -h, --help                 print this help
#
# Removed: the commercetools subscription, the API Gateway (gateway, configs, API) and any API
# key, the three functions (and with them their Eventarc triggers and trigger subscriptions), the
# Pub/Sub topics and dead-letter subscriptions (with any dead letters still in them), the two
# secrets, the IAM bindings and the service accounts (the three runtime accounts, the trigger and
# gateway accounts, and the shared runtime account of earlier versions), the connector's Firestore
# database, and the local deploy/build folder.
# Kept: the enabled APIs and the project's (default) Firestore database, which earlier versions
# used (its bulk_* collections are the connector's; other apps may use the rest).
# Resources that are already gone are skipped, so a re-run finishes an interrupted teardown.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=deploy/lib.sh
source deploy/lib.sh

PROJECT="" REGION="" PREFIX="ct-klaviyo" GATEWAY_REGION="" CT_SUBSCRIPTION_KEY="klaviyo-connector"
SKIP_CT_SUBSCRIPTION=0 KEEP_FIRESTORE=0 YES=0 DRY_RUN=0 BUILD_DIR="deploy/build"

usage() {
  sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "$0"
  exit 0
}

while (($#)); do
  case $1 in
    --project=* | --region=* | --prefix=* | --gateway-region=* | --ct-subscription-key=* | \
      --build-dir=*)
      set -- "${1%%=*}" "${1#*=}" "${@:2}"
      continue
      ;;
    --project) PROJECT=${2:?--project needs a value}; shift ;;
    --region) REGION=${2:?--region needs a value}; shift ;;
    --prefix) PREFIX=${2:?--prefix needs a value}; shift ;;
    --gateway-region) GATEWAY_REGION=${2:?--gateway-region needs a value}; shift ;;
    --ct-subscription-key) CT_SUBSCRIPTION_KEY=${2:?--ct-subscription-key needs a value}; shift ;;
    --build-dir) BUILD_DIR=${2:?--build-dir needs a value}; shift ;;
    --skip-ct-subscription) SKIP_CT_SUBSCRIPTION=1 ;;
    --keep-firestore) KEEP_FIRESTORE=1 ;;
    --delete-firestore) ;;  # earlier versions' flag: deleting is now the default
    --yes) YES=1 ;;
    --dry-run) DRY_RUN=1 ;;
    -h | --help) usage ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
  shift
done
[[ -n $PROJECT ]] || die "--project is required (see --help)"
[[ -n $REGION ]] || die "--region is required (see --help)"
GATEWAY_REGION=${GATEWAY_REGION:-$REGION}
if ! ((DRY_RUN)); then
  command -v gcloud >/dev/null || die "gcloud is not installed (https://cloud.google.com/sdk/docs/install)"
fi

# The names deploy.sh uses.
TOPICS=("$PREFIX-ct-messages" "$PREFIX-bulk-tasks" "$PREFIX-ct-messages-dead-letter"
  "$PREFIX-bulk-tasks-dead-letter")
DEAD_SUBSCRIPTIONS=("$PREFIX-ct-messages-dead-letter" "$PREFIX-bulk-tasks-dead-letter")
FUNCTIONS=("$PREFIX-realtime" "$PREFIX-bulk-worker" "$PREFIX-bulk-api")
SECRETS=("$PREFIX-klaviyo-api-key" "$PREFIX-ctp-client-secret")
RUNTIME_ACCOUNTS=("$PREFIX-realtime@$PROJECT.iam.gserviceaccount.com"
  "$PREFIX-bulk-api@$PROJECT.iam.gserviceaccount.com"
  "$PREFIX-worker@$PROJECT.iam.gserviceaccount.com")
LEGACY_ACCOUNT="$PREFIX-runtime@$PROJECT.iam.gserviceaccount.com"
ACCOUNTS=("${RUNTIME_ACCOUNTS[@]}" "$LEGACY_ACCOUNT"
  "$PREFIX-trigger@$PROJECT.iam.gserviceaccount.com"
  "$PREFIX-gateway@$PROJECT.iam.gserviceaccount.com")
FIRESTORE_DB="$PREFIX-bulk"
API_ID="$PREFIX-bulk" GATEWAY_ID="$PREFIX-bulk" API_KEY_NAME="$PREFIX bulk API"
P=(--project="$PROJECT")
if [[ -x $ROOT/.venv/bin/python ]]; then PYTHON=${PYTHON:-$ROOT/.venv/bin/python}; else PYTHON=${PYTHON:-python3}; fi
export CLOUDSDK_CORE_DISABLE_PROMPTS=1

if ! ((YES || DRY_RUN)); then
  cat >&2 <<EOF
This deletes the connector "$PREFIX" from project $PROJECT ($REGION): the commercetools
subscription "$CT_SUBSCRIPTION_KEY", the functions, the bulk API gateway and its API key, the
Pub/Sub topics and dead-letter subscriptions (dead letters still in them are lost), the secrets and
the service accounts$( ((KEEP_FIRESTORE)) || printf ', and the Firestore database %s (bulk job history)' "$FIRESTORE_DB").
EOF
  answer=""
  ask answer "Type the project id to confirm: " || die "no terminal to confirm on; pass --yes"
  [[ $answer == "$PROJECT" ]] || die "not confirmed; nothing was deleted"
fi
if ((DRY_RUN)); then
  printf '# deploy/teardown.sh --dry-run: what a teardown of project %s, region %s executes.\n' "$PROJECT" "$REGION"
  printf 'export CLOUDSDK_CORE_DISABLE_PROMPTS=1\n'
fi

failed=0

heading "commercetools subscription"
if ((SKIP_CT_SUBSCRIPTION)); then
  echo "skipped (--skip-ct-subscription)"
else
  # First, so commercetools stops delivering to a topic that is about to go.
  ct_args=(-m deploy.subscriptions delete --key="$CT_SUBSCRIPTION_KEY")
  if ((DRY_RUN)); then
    show python "${ct_args[@]}"
  else
    if [[ -z ${CTP_CLIENT_SECRET:-} ]]; then
      CTP_CLIENT_SECRET=$(gcloud secrets versions access latest --secret="${SECRETS[1]}" "${P[@]}" 2>/dev/null || true)
      export CTP_CLIENT_SECRET
    fi
    printf '+ %s\n' "$(show python "${ct_args[@]}")"
    if ! "$PYTHON" "${ct_args[@]}"; then
      echo "warning: the commercetools subscription was not deleted (see above); continuing" >&2
      failed=1
    fi
  fi
fi

heading "API Gateway"
if present gcloud api-gateway gateways describe "$GATEWAY_ID" --location="$GATEWAY_REGION" "${P[@]}"; then
  run gcloud api-gateway gateways delete "$GATEWAY_ID" --location="$GATEWAY_REGION" --quiet "${P[@]}"
fi
if present gcloud api-gateway apis describe "$API_ID" "${P[@]}"; then
  list_names "<config>" gcloud api-gateway api-configs list --api="$API_ID" \
    --format='value(name.basename())' "${P[@]}"
  for config in ${NAMES[@]+"${NAMES[@]}"}; do
    run gcloud api-gateway api-configs delete "$config" --api="$API_ID" --quiet "${P[@]}"
  done
  run gcloud api-gateway apis delete "$API_ID" --quiet "${P[@]}"
fi
list_names "<api-key>" gcloud services api-keys list --filter="displayName=\"$API_KEY_NAME\"" \
  --format='value(name)' "${P[@]}"
for key in ${NAMES[@]+"${NAMES[@]}"}; do
  run gcloud services api-keys delete "$key" --quiet "${P[@]}"
done

heading "Functions"
for fn in "${FUNCTIONS[@]}"; do
  if present gcloud functions describe "$fn" --region="$REGION" "${P[@]}"; then
    run gcloud functions delete "$fn" --region="$REGION" --quiet "${P[@]}"
  fi
done

heading "Pub/Sub"
for sub in "${DEAD_SUBSCRIPTIONS[@]}"; do
  if present gcloud pubsub subscriptions describe "$sub" "${P[@]}"; then
    run gcloud pubsub subscriptions delete "$sub" --quiet "${P[@]}"
  fi
done
for topic in "${TOPICS[@]}"; do
  if present gcloud pubsub topics describe "$topic" "${P[@]}"; then
    run gcloud pubsub topics delete "$topic" --quiet "${P[@]}"
  fi
done

heading "Secrets"
for secret in "${SECRETS[@]}"; do
  if present gcloud secrets describe "$secret" "${P[@]}"; then
    run gcloud secrets delete "$secret" --quiet "${P[@]}"
  fi
done

heading "Service accounts"
# Project-level bindings outlive their account (as "deleted:..." members): remove them first.
CONDITION_TITLE="$FIRESTORE_DB-only"
CONDITION_EXPRESSION="resource.name==\"projects/$PROJECT/databases/$FIRESTORE_DB\""
for account in "${RUNTIME_ACCOUNTS[@]:1}"; do  # the bulk API and worker accounts
  _iam remove "serviceAccount:$account" roles/datastore.user gcloud projects -- "$PROJECT"
done
CONDITION_TITLE="" CONDITION_EXPRESSION=""
revoke "serviceAccount:$LEGACY_ACCOUNT" roles/datastore.user gcloud projects -- "$PROJECT"
for account in "${ACCOUNTS[@]}"; do
  if present gcloud iam service-accounts describe "$account" "${P[@]}"; then
    run gcloud iam service-accounts delete "$account" --quiet "${P[@]}"
  fi
done

heading "Firestore"
if ((KEEP_FIRESTORE)); then
  echo "kept: the $FIRESTORE_DB database (bulk job history and locks)"
elif present gcloud firestore databases describe --database="$FIRESTORE_DB" "${P[@]}"; then
  run gcloud firestore databases delete --database="$FIRESTORE_DB" --quiet "${P[@]}"
fi
echo "kept: the (default) database (earlier versions kept bulk_* collections there)"

heading "Local build folder"
run rm -rf "$BUILD_DIR"

if ((failed)); then
  echo "Done, except the commercetools subscription (see above)." >&2
  exit 3
fi
echo "Done."
