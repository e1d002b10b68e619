#!/usr/bin/env bash
# Deploy the commercetools -> Klaviyo connector to one Google Cloud project. Idempotent: every
# resource is looked up before it is created, and a re-run changes nothing that is already right.
#
#   deploy/deploy.sh --project PROJECT_ID --region REGION [options]
#
# Options:
#   --prefix NAME              prefix of every resource name (default ct-klaviyo)
#   --gateway-region REGION    API Gateway location (default: --region); API Gateway runs in a
#                              few regions only (e.g. europe-west1, us-central1, asia-northeast1)
#   --firestore-location LOC   location of the connector's Firestore database (default: --region)
#   --max-delivery-attempts N  deliveries before a message is dead-lettered, 5-100 (default 100)
#   --ct-subscription-key KEY  key of the commercetools subscription (default klaviyo-connector)
#   --skip-ct-subscription     do not create/update the commercetools subscription
#   --build-service-account SA service account (email) Cloud Build uses to build the functions,
#                              for projects whose default build account lacks the permissions
#   --api-key                  also accept an API key (x-api-key header) at the gateway, for tools
#                              that cannot send Google ID tokens: the weaker option (anonymous
#                              callers; no deleteAll then); without it an existing key is deleted
#   --allow-test-urls          deploy local or test-double URLs (CTP_API_URL=http://127.0.0.1:...,
#                              a KLAVIYO_BASE_URL other than Klaviyo's), which are refused otherwise
#   --force                    redeploy the functions even when source and settings are unchanged
#   --build-dir DIR            where function sources are staged (default deploy/build)
#   --stage-only               stage the function sources into --build-dir and stop
#   --dry-run                  print every command instead of running it (needs no gcloud)
#   -h, --help                 print this help
#
# Configuration: the connector's settings (CTP_*, KLAVIYO_BASE_URL, BULK_CALLERS, BULK_ADMINS,
# DISABLED_PROCESSORS, ...) are read from the environment or .env and deployed as the functions'
# environment variables. The two secrets, KLAVIYO_API_KEY and CTP_CLIENT_SECRET, are read from the
# environment or .env, else prompted for (never echoed), and stored in Secret Manager; the
# functions that use them read them from there. Everything the run needs is checked before
# anything is created. BULK_CALLERS / BULK_ADMINS name who may call the bulk API and who may also
# use deleteAll (service account or user emails, or *@domain).
#
# Environment: SA_PROPAGATION_SECONDS (default 15) is how long to wait after creating service
# accounts before granting them roles (IAM is eventually consistent).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=deploy/lib.sh
source deploy/lib.sh

PROJECT="" REGION="" PREFIX="ct-klaviyo" GATEWAY_REGION="" FIRESTORE_LOCATION=""
MAX_DELIVERY_ATTEMPTS=100 CT_SUBSCRIPTION_KEY="klaviyo-connector" SKIP_CT_SUBSCRIPTION=0
FORCE=0 BUILD_DIR="deploy/build" STAGE_ONLY=0 DRY_RUN=0 BUILD_SERVICE_ACCOUNT=""
API_KEY=0 ALLOW_TEST_URLS=0

usage() {
  sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "$0"
  exit 0
}

while (($#)); do
  case $1 in
    --project=* | --region=* | --prefix=* | --gateway-region=* | --firestore-location=* | \
      --max-delivery-attempts=* | --ct-subscription-key=* | --build-dir=* | --build-service-account=*)
      set -- "${1%%=*}" "${1#*=}" "${@:2}"
      continue
      ;;
    --project) PROJECT=${2:?--project needs a value}; shift ;;
    --region) REGION=${2:?--region needs a value}; shift ;;
    --prefix) PREFIX=${2:?--prefix needs a value}; shift ;;
    --gateway-region) GATEWAY_REGION=${2:?--gateway-region needs a value}; shift ;;
    --firestore-location) FIRESTORE_LOCATION=${2:?--firestore-location needs a value}; shift ;;
    --max-delivery-attempts) MAX_DELIVERY_ATTEMPTS=${2:?--max-delivery-attempts needs a value}; shift ;;
    --ct-subscription-key) CT_SUBSCRIPTION_KEY=${2:?--ct-subscription-key needs a value}; shift ;;
    --build-dir) BUILD_DIR=${2:?--build-dir needs a value}; shift ;;
    --build-service-account) BUILD_SERVICE_ACCOUNT=${2:?--build-service-account needs a value}; shift ;;
    --skip-ct-subscription) SKIP_CT_SUBSCRIPTION=1 ;;
    --api-key) API_KEY=1 ;;
    --allow-test-urls) ALLOW_TEST_URLS=1 ;;
    --force) FORCE=1 ;;
    --stage-only) STAGE_ONLY=1 ;;
    --dry-run) DRY_RUN=1 ;;
    -h | --help) usage ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
  shift
done

# ---- names ------------------------------------------------------------------------------------

if ! [[ $PREFIX =~ ^[a-z][a-z0-9-]{1,18}[a-z0-9]$ ]]; then
  die "--prefix must be 3-20 lowercase letters, digits or hyphens (it starts service account ids)"
fi

TOPIC_CT="$PREFIX-ct-messages"         # commercetools publishes here
TOPIC_TASKS="$PREFIX-bulk-tasks"       # bulk page tasks
TOPIC_CT_DEAD="$PREFIX-ct-messages-dead-letter"
TOPIC_TASKS_DEAD="$PREFIX-bulk-tasks-dead-letter"
SUB_CT_DEAD="$TOPIC_CT_DEAD"           # pull subscriptions that keep the dead letters
SUB_TASKS_DEAD="$TOPIC_TASKS_DEAD"
FN_REALTIME="$PREFIX-realtime"
FN_API="$PREFIX-bulk-api"
FN_WORKER="$PREFIX-bulk-worker"
FIRESTORE_DB="$PREFIX-bulk"            # the connector's own database: the bulk job state only
SECRET_KLAVIYO="$PREFIX-klaviyo-api-key"
SECRET_CT="$PREFIX-ctp-client-secret"
API_ID="$PREFIX-bulk"
GATEWAY_ID="$PREFIX-bulk"
API_KEY_NAME="$PREFIX bulk API"
CT_PUBLISHER="serviceAccount:subscriptions@commercetools-platform.iam.gserviceaccount.com"
RUNTIME=python311
# The trigger subscriptions' redelivery policy. 100 attempts with backoff 10 s doubling to 600 s
# keep a message for about 16 hours of failures (a sale above Klaviyo's account limits, a
# rotated key) before it is dead-lettered: a peak's 429s alone never dead-letter anything.
RETRY_MIN=10s RETRY_MAX=600s ACK_DEADLINE=600
DEAD_LETTER_RETENTION=7d

STAGE_REALTIME="$BUILD_DIR/realtime"
STAGE_BULK="$BUILD_DIR/bulk"
ENV_FILE="$BUILD_DIR/env.yaml"
API_ENV_FILE="$BUILD_DIR/env-bulk-api.yaml"
# Settings require both secrets; the bulk API only queues tasks and reads job state.
API_SECRET_PLACEHOLDERS='CTP_CLIENT_SECRET: "not-available-to-the-bulk-api"
KLAVIYO_API_KEY: "not-available-to-the-bulk-api"'
SPEC_FILE="$BUILD_DIR/openapi.yaml"

if [[ -x $ROOT/.venv/bin/python ]]; then PYTHON=${PYTHON:-$ROOT/.venv/bin/python}; else PYTHON=${PYTHON:-python3}; fi

# ---- staging ----------------------------------------------------------------------------------

# sha256: digest of standard input (GNU coreutils or macOS).
sha256() {
  if command -v sha256sum >/dev/null; then sha256sum; else shasum -a 256; fi | cut -c1-64
}

# stage FOLDER DEST: FOLDER/main.py + shared/ + requirements.txt, nothing else (what Cloud
# Functions builds: main.py at the root, its imports beside it, the pinned dependencies).
stage() {
  local folder=$1 dest=$2
  rm -rf "$dest"
  mkdir -p "$dest"
  cp "$folder/main.py" "$dest/main.py"
  COPYFILE_DISABLE=1 tar -cf - --exclude=__pycache__ --exclude='*.pyc' shared | (cd "$dest" && tar -xf -)
  cp requirements.txt "$dest/requirements.txt"
  printf '%s\n' '# staged by deploy/deploy.sh' '__pycache__/' '*.pyc' >"$dest/.gcloudignore"
}

# tree_hash DIR: a digest of the files' paths and contents (not their timestamps).
tree_hash() {
  (cd "$1" && find . -type f | LC_ALL=C sort | while IFS= read -r file; do
    printf '%s %s\n' "$(sha256 <"$file")" "$file"
  done) | sha256 | cut -c1-32
}

if ((STAGE_ONLY)); then
  stage realtime "$STAGE_REALTIME"
  stage bulk "$STAGE_BULK"
  printf 'staged %s and %s\n' "$STAGE_REALTIME" "$STAGE_BULK"
  exit 0
fi

[[ -n $PROJECT ]] || die "--project is required (see --help)"
[[ -n $REGION ]] || die "--region is required (see --help)"
GATEWAY_REGION=${GATEWAY_REGION:-$REGION}
FIRESTORE_LOCATION=${FIRESTORE_LOCATION:-$REGION}
if ! [[ $MAX_DELIVERY_ATTEMPTS =~ ^[0-9]+$ ]] || ((MAX_DELIVERY_ATTEMPTS < 5 || MAX_DELIVERY_ATTEMPTS > 100)); then
  die "--max-delivery-attempts must be between 5 and 100"
fi
if ! ((DRY_RUN)); then
  command -v gcloud >/dev/null || die "gcloud is not installed (https://cloud.google.com/sdk/docs/install)"
fi

# One identity per function, each with only what it uses (see the README's threat model).
SA_REALTIME="$PREFIX-realtime@$PROJECT.iam.gserviceaccount.com"  # realtime: its two secrets
SA_API="$PREFIX-bulk-api@$PROJECT.iam.gserviceaccount.com"       # bulk API: job state, tasks topic
SA_WORKER="$PREFIX-worker@$PROJECT.iam.gserviceaccount.com"      # bulk worker: the same + secrets
SA_TRIGGER="$PREFIX-trigger@$PROJECT.iam.gserviceaccount.com"    # Pub/Sub -> event functions
SA_GATEWAY="$PREFIX-gateway@$PROJECT.iam.gserviceaccount.com"    # API Gateway -> bulk API
SA_LEGACY="$PREFIX-runtime@$PROJECT.iam.gserviceaccount.com"     # earlier versions: all functions
AUDIENCE="$PREFIX-bulk-api/$PROJECT"  # the aud of the ID tokens the gateway accepts
P=(--project="$PROJECT")
BULK_AUTH=id-token
if ((API_KEY)); then BULK_AUTH=id-token-or-api-key; fi

# ---- 0. checks: everything the run needs, before anything is created -------------------------

# The functions' environment: the settings that are set here, validated before anything is
# created (a bad value fails now, naming the variable, not at every cold start).
envvars_args=(--set GOOGLE_CLOUD_PROJECT="$PROJECT" --set BULK_BACKEND=gcp
  --set BULK_TASKS_TOPIC="$TOPIC_TASKS" --set BULK_FIRESTORE_DATABASE="$FIRESTORE_DB"
  --set BULK_AUTH="$BULK_AUTH")
if ((ALLOW_TEST_URLS)); then envvars_args+=(--allow-test-urls); fi
env_yaml=$("$PYTHON" -m deploy.envvars "${envvars_args[@]}") ||
  die "fix the settings above (environment or .env) and run again"
if ! grep -q '^BULK_CALLERS: \|^BULK_ADMINS: ' <<<"$env_yaml"; then
  echo "warning: neither BULK_CALLERS nor BULK_ADMINS is set: the bulk API will refuse every" \
    "caller with an ID token until you set them (see the README) and re-run" >&2
fi
if ! ((DRY_RUN)); then
  # step 1 needs `gcloud beta`; without prompts gcloud may install the component itself here
  CLOUDSDK_CORE_DISABLE_PROMPTS=1 gcloud beta --help </dev/null >/dev/null 2>&1 ||
    die "the gcloud beta component is missing: gcloud components install beta"
fi

# The secrets: the environment, then .env; else the one already in Secret Manager; else asked
# for now, before anything is created (no terminal: stop here).
resolve_secret() {
  local var=$1 name=$2 prompt=$3 value
  value=$("$PYTHON" -m deploy.envvars --secret "$var") || die "could not read $var"
  if [[ -n $value ]]; then
    printf -v "$var" '%s' "$value"
    export "${var?}"
    return 0
  fi
  if ((DRY_RUN)); then
    return 0
  fi
  if gcloud secrets describe "$name" "${P[@]}" >/dev/null 2>&1; then
    return 0  # kept as it is
  fi
  ask "$var" "$prompt: " -s ||
    die "$var is not set (environment or .env) and there is no terminal to ask for it; nothing was created"
  [[ -n ${!var} ]] || die "$var must not be empty; nothing was created"
  export "${var?}"
}
resolve_secret KLAVIYO_API_KEY "$SECRET_KLAVIYO" "Klaviyo private API key"
resolve_secret CTP_CLIENT_SECRET "$SECRET_CT" "commercetools API client secret"

# Commands must never stop at a prompt (the script asks its own questions).
export CLOUDSDK_CORE_DISABLE_PROMPTS=1
if ((DRY_RUN)); then
  printf '# deploy/deploy.sh --dry-run: what a first run on project %s, region %s executes.\n' "$PROJECT" "$REGION"
  printf '# "# if absent/unless" lines are the checks that make a re-run skip what is already right;\n'
  printf '# <...> stands for a value read from the cloud by an earlier command.\n'
  printf 'export CLOUDSDK_CORE_DISABLE_PROMPTS=1\n'
fi

# ---- 1. APIs ----------------------------------------------------------------------------------

heading "APIs"
run gcloud services enable apigateway.googleapis.com apikeys.googleapis.com \
  artifactregistry.googleapis.com cloudbuild.googleapis.com cloudfunctions.googleapis.com \
  cloudresourcemanager.googleapis.com eventarc.googleapis.com firestore.googleapis.com \
  iam.googleapis.com logging.googleapis.com pubsub.googleapis.com run.googleapis.com \
  secretmanager.googleapis.com servicecontrol.googleapis.com servicemanagement.googleapis.com "${P[@]}"

capture PROJECT_NUMBER "<project-number>" \
  gcloud projects describe "$PROJECT" --format='value(projectNumber)'
# The Pub/Sub service agent moves failed messages to the dead-letter topics and signs the push
# requests of the function triggers; make sure it exists before granting it anything.
run_quiet gcloud beta services identity create --service=pubsub.googleapis.com "${P[@]}"
PUBSUB_AGENT="serviceAccount:service-$PROJECT_NUMBER@gcp-sa-pubsub.iam.gserviceaccount.com"

# ---- 2. service accounts ----------------------------------------------------------------------

heading "Service accounts"
created_accounts=0
ensure_account() {
  local email=$1 title=$2
  if absent gcloud iam service-accounts describe "$email" "${P[@]}"; then
    run gcloud iam service-accounts create "${email%%@*}" --display-name="$title" "${P[@]}"
    created_accounts=1
  fi
}
ensure_account "$SA_REALTIME" "$PREFIX realtime function"
ensure_account "$SA_API" "$PREFIX bulk API function"
ensure_account "$SA_WORKER" "$PREFIX bulk worker function"
ensure_account "$SA_TRIGGER" "$PREFIX Pub/Sub triggers (invoker)"
ensure_account "$SA_GATEWAY" "$PREFIX API Gateway (invoker)"
if ((created_accounts && !DRY_RUN)); then
  wait_seconds=${SA_PROPAGATION_SECONDS:-15}
  echo "waiting ${wait_seconds}s for the new service accounts to propagate"
  sleep "$wait_seconds"
fi
# Pub/Sub mints the trigger account's OIDC tokens for the push requests (needed on projects
# whose Pub/Sub agent predates April 2021; harmless otherwise). Scoped to that account only.
grant "$PUBSUB_AGENT" roles/iam.serviceAccountTokenCreator \
  gcloud iam service-accounts -- "$SA_TRIGGER" "${P[@]}"

# ---- 3. Pub/Sub -------------------------------------------------------------------------------

heading "Pub/Sub topics and dead-letter subscriptions"
for topic in "$TOPIC_CT" "$TOPIC_TASKS" "$TOPIC_CT_DEAD" "$TOPIC_TASKS_DEAD"; do
  if absent gcloud pubsub topics describe "$topic" "${P[@]}"; then
    run gcloud pubsub topics create "$topic" "${P[@]}"
  fi
done
for dead in "$TOPIC_CT_DEAD" "$TOPIC_TASKS_DEAD"; do
  # A dead letter published to a topic without subscriptions is lost: keep them, 7 days, in a
  # pull subscription that never expires (read by `python -m deploy.deadletters`).
  if absent gcloud pubsub subscriptions describe "$dead" "${P[@]}"; then
    run gcloud pubsub subscriptions create "$dead" --topic="$dead" \
      --message-retention-duration="$DEAD_LETTER_RETENTION" --expiration-period=never \
      --ack-deadline=60 "${P[@]}"
  fi
  grant "$PUBSUB_AGENT" roles/pubsub.publisher gcloud pubsub topics -- "$dead" "${P[@]}"
done
# commercetools delivers with its own service account.
grant "$CT_PUBLISHER" roles/pubsub.publisher gcloud pubsub topics -- "$TOPIC_CT" "${P[@]}"
# The bulk functions enqueue the next page task (this topic only).
for account in "$SA_API" "$SA_WORKER"; do
  grant "serviceAccount:$account" roles/pubsub.publisher gcloud pubsub topics -- "$TOPIC_TASKS" "${P[@]}"
done

# ---- 4. Firestore -----------------------------------------------------------------------------

heading "Firestore (bulk job state and locks)"
# A database of the connector's own, so its access can be limited to it: datastore.user with an
# IAM condition on the database's name (not every document of every app in the project).
if absent gcloud firestore databases describe --database="$FIRESTORE_DB" "${P[@]}"; then
  run gcloud firestore databases create --database="$FIRESTORE_DB" --location="$FIRESTORE_LOCATION" \
    --type=firestore-native "${P[@]}"
fi
CONDITION_TITLE="$FIRESTORE_DB-only"
CONDITION_EXPRESSION="resource.name==\"projects/$PROJECT/databases/$FIRESTORE_DB\""
for account in "$SA_API" "$SA_WORKER"; do
  grant "serviceAccount:$account" roles/datastore.user gcloud projects -- "$PROJECT"
done
CONDITION_TITLE="" CONDITION_EXPRESSION=""

# ---- 5. secrets -------------------------------------------------------------------------------

heading "Secret Manager"
# ensure_secret NAME VAR READER...: the secret exists, its latest version holds $VAR when given
# (checked above), and only the READER accounts may read it.
ensure_secret() {
  local name=$1 var=$2 current reader
  shift 2
  if absent gcloud secrets describe "$name" "${P[@]}"; then
    local create=(gcloud secrets create "$name" --replication-policy=automatic --data-file=- "${P[@]}")
    if ((DRY_RUN)); then
      printf '%s | %s\n' "printf '%s' \"\$$var\"" "$(show "${create[@]}")"
    else
      printf '+ %s | %s\n' "printf '%s' \"\$$var\"" "$(show "${create[@]}")"
      printf '%s' "${!var}" | "${create[@]}"
    fi
  elif [[ -n ${!var:-} ]]; then
    current=$(gcloud secrets versions access latest --secret="$name" "${P[@]}" 2>/dev/null || true)
    if [[ $current != "${!var}" ]]; then
      local add=(gcloud secrets versions add "$name" --data-file=- "${P[@]}")
      printf '+ %s | %s\n' "printf '%s' \"\$$var\"" "$(show "${add[@]}")"
      printf '%s' "${!var}" | "${add[@]}"
    fi
  fi
  for reader in "$@"; do
    grant "serviceAccount:$reader" roles/secretmanager.secretAccessor \
      gcloud secrets -- "$name" "${P[@]}"
  done
}
# The bulk API never calls Klaviyo or commercetools (the worker does): it reads neither secret.
ensure_secret "$SECRET_KLAVIYO" KLAVIYO_API_KEY "$SA_REALTIME" "$SA_WORKER"
ensure_secret "$SECRET_CT" CTP_CLIENT_SECRET "$SA_REALTIME" "$SA_WORKER"
# The functions pin the secrets' current version numbers: a rotated secret changes the deploy
# settings, so the next run redeploys the functions with it.
capture KLAVIYO_VERSION "<klaviyo-key-version>" gcloud secrets versions describe latest \
  --secret="$SECRET_KLAVIYO" --format='value(name.basename())' "${P[@]}"
capture CT_VERSION "<ct-secret-version>" gcloud secrets versions describe latest \
  --secret="$SECRET_CT" --format='value(name.basename())' "${P[@]}"
SECRETS="CTP_CLIENT_SECRET=$SECRET_CT:$CT_VERSION,KLAVIYO_API_KEY=$SECRET_KLAVIYO:$KLAVIYO_VERSION"

# ---- 6. functions -----------------------------------------------------------------------------

heading "Functions (gen2, $RUNTIME)"
if ((DRY_RUN)); then
  printf '# stage realtime/ + shared/ + requirements.txt -> %s\n' "$STAGE_REALTIME"
  printf '# stage bulk/ + shared/ + requirements.txt -> %s\n' "$STAGE_BULK"
  printf '# write %s (the functions'"'"' environment, from the settings that are set):\n' "$ENV_FILE"
  printf '%s\n' "$env_yaml" | sed 's/^/#   /'
  printf '# write %s: the same, plus the two secrets as placeholders (the bulk API reads neither)\n' "$API_ENV_FILE"
else
  stage realtime "$STAGE_REALTIME"
  stage bulk "$STAGE_BULK"
  printf '%s\n' "$env_yaml" >"$ENV_FILE"
  printf '%s\n%s\n' "$env_yaml" "$API_SECRET_PLACEHOLDERS" >"$API_ENV_FILE"
fi

# deploy_function NAME SOURCE ENTRY-POINT ACCOUNT ENV-FILE SECRETS FLAGS...: deploy unless the
# same source and settings are already deployed (the digest is kept in the deploy_hash label).
deploy_function() {
  local name=$1 source=$2 entry=$3 account=$4 env_file=$5 secrets=$6
  shift 6
  local args=(gcloud functions deploy "$name" --gen2 --runtime="$RUNTIME" --region="$REGION"
    --source="$source" --entry-point="$entry" --service-account="$account"
    --env-vars-file="$env_file")
  if [[ -n $secrets ]]; then
    args+=(--set-secrets="$secrets")
  else
    args+=(--clear-secrets)
  fi
  args+=("$@" "${P[@]}")
  if [[ -n $BUILD_SERVICE_ACCOUNT ]]; then
    args+=(--build-service-account="projects/$PROJECT/serviceAccounts/$BUILD_SERVICE_ACCOUNT")
  fi
  local digest="<deploy-hash>"
  if ! ((DRY_RUN)); then
    digest=$({ tree_hash "$source"; cat "$env_file"; printf '%s\n' "${args[@]}"; } | sha256 | cut -c1-32)
  fi
  if ((FORCE)) || differs "$digest" gcloud functions describe "$name" --v2 --region="$REGION" \
    --format='value(labels.deploy_hash)' "${P[@]}"; then
    run "${args[@]}" --update-labels="deploy_hash=$digest"
  else
    printf '%s: unchanged, not redeployed (--force redeploys)\n' "$name"
  fi
}

# configure_trigger NAME DEAD-LETTER-TOPIC: retry and dead-letter policy on the Pub/Sub
# subscription Eventarc created for the function's trigger (recreated with the trigger, so this
# runs after every deploy).
configure_trigger() {
  local name=$1 dead=$2 trigger subscription
  capture trigger "<$name-trigger>" gcloud functions describe "$name" --v2 --region="$REGION" \
    --format='value(eventTrigger.trigger)' "${P[@]}"
  capture subscription "<$name-trigger-subscription>" gcloud eventarc triggers describe "$trigger" \
    --location="$REGION" --format='value(transport.pubsub.subscription)' "${P[@]}"
  if differs "projects/$PROJECT/topics/$dead,$MAX_DELIVERY_ATTEMPTS,$RETRY_MIN,$RETRY_MAX,$ACK_DEADLINE" \
    gcloud pubsub subscriptions describe "$subscription" "${P[@]}" \
    --format='value[separator=","](deadLetterPolicy.deadLetterTopic,deadLetterPolicy.maxDeliveryAttempts,retryPolicy.minimumBackoff,retryPolicy.maximumBackoff,ackDeadlineSeconds)'; then
    run_quiet gcloud pubsub subscriptions update "$subscription" --dead-letter-topic="$dead" \
      --max-delivery-attempts="$MAX_DELIVERY_ATTEMPTS" --min-retry-delay="$RETRY_MIN" \
      --max-retry-delay="$RETRY_MAX" --ack-deadline="$ACK_DEADLINE" "${P[@]}"
  fi
  # dead-lettering acknowledges the message on the source subscription
  grant "$PUBSUB_AGENT" roles/pubsub.subscriber gcloud pubsub subscriptions -- "$subscription" "${P[@]}"
  grant "serviceAccount:$SA_TRIGGER" roles/run.invoker gcloud run services -- "$name" \
    --region="$REGION" "${P[@]}"
}

# Event functions take only internal traffic (their Pub/Sub pushes); the bulk API takes the
# gateway's requests, which come from outside the project (it stays private: IAM below).
# Realtime: one commercetools delivery per invocation; raising on a retryable failure makes
# Pub/Sub redeliver (--retry), and after MAX_DELIVERY_ATTEMPTS it is dead-lettered.
deploy_function "$FN_REALTIME" "$STAGE_REALTIME" handle_ct_message "$SA_REALTIME" "$ENV_FILE" \
  "$SECRETS" --trigger-topic="$TOPIC_CT" --retry --trigger-service-account="$SA_TRIGGER" \
  --ingress-settings=internal-only --cpu=1 --memory=512Mi --concurrency=4 --timeout=60s \
  --max-instances=20
configure_trigger "$FN_REALTIME" "$TOPIC_CT_DEAD"

# Bulk page-task worker: one batch per task, bounded by BULK_BATCH_DEADLINE_SECONDS (< timeout).
deploy_function "$FN_WORKER" "$STAGE_BULK" run_page_task "$SA_WORKER" "$ENV_FILE" "$SECRETS" \
  --trigger-topic="$TOPIC_TASKS" --retry --trigger-service-account="$SA_TRIGGER" \
  --ingress-settings=internal-only --cpu=1 --memory=1Gi --concurrency=1 --timeout=540s \
  --max-instances=4
configure_trigger "$FN_WORKER" "$TOPIC_TASKS_DEAD"

# Bulk HTTP API: private; only the API Gateway's service account may invoke it.
deploy_function "$FN_API" "$STAGE_BULK" sync_api "$SA_API" "$API_ENV_FILE" "" \
  --trigger-http --no-allow-unauthenticated --ingress-settings=all \
  --cpu=1 --memory=512Mi --concurrency=4 --timeout=60s --max-instances=5
grant "serviceAccount:$SA_GATEWAY" roles/run.invoker gcloud run services -- "$FN_API" \
  --region="$REGION" "${P[@]}"

# ---- migration: earlier versions ran every function as one shared account -------------------

heading "Migration from the shared runtime account"
# The functions above already run as their own accounts (each deploy shifts traffic to the new
# revision once it is ready: no delivery is dropped); now the old account loses what it held.
if present gcloud iam service-accounts describe "$SA_LEGACY" "${P[@]}"; then
  revoke "serviceAccount:$SA_LEGACY" roles/datastore.user gcloud projects -- "$PROJECT"
  revoke "serviceAccount:$SA_LEGACY" roles/pubsub.publisher gcloud pubsub topics -- "$TOPIC_TASKS" "${P[@]}"
  for secret in "$SECRET_KLAVIYO" "$SECRET_CT"; do
    revoke "serviceAccount:$SA_LEGACY" roles/secretmanager.secretAccessor \
      gcloud secrets -- "$secret" "${P[@]}"
  done
  run gcloud iam service-accounts delete "$SA_LEGACY" --quiet "${P[@]}"
else
  echo "nothing to migrate"
fi

# ---- 7. API Gateway ---------------------------------------------------------------------------

heading "API Gateway"
capture API_URL "<bulk-api-url>" gcloud functions describe "$FN_API" --v2 --region="$REGION" \
  --format='value(serviceConfig.uri)' "${P[@]}"
render_spec() {
  local keep_key='/API_KEY_OPTION/d'
  if ((API_KEY)); then keep_key='s/  # API_KEY_OPTION.*$//'; fi
  sed -e "s|https://BULK_API_URL_PLACEHOLDER|$API_URL|g" \
    -e "s|BULK_API_AUDIENCE_PLACEHOLDER|$AUDIENCE|g" -e "$keep_key" deploy/openapi.yaml
}
# API configs are immutable: a changed spec (or backend URL) is a new config, named by digest.
CONFIG_ID="$API_ID-$(render_spec | sha256 | cut -c1-12)"
if ((DRY_RUN)); then
  printf '# write %s: deploy/openapi.yaml with the backend address %s and the audience %s;\n' \
    "$SPEC_FILE" "$API_URL" "$AUDIENCE"
  printf '# its security part (the API key alternative only with --api-key):\n'
  render_spec | sed -n '/^securityDefinitions:/,/^$/p' | sed 's/^/#  | /'
else
  render_spec >"$SPEC_FILE"
fi
if absent gcloud api-gateway apis describe "$API_ID" "${P[@]}"; then
  run gcloud api-gateway apis create "$API_ID" --display-name="$PREFIX bulk sync API" "${P[@]}"
fi
if absent gcloud api-gateway api-configs describe "$CONFIG_ID" --api="$API_ID" "${P[@]}"; then
  run gcloud api-gateway api-configs create "$CONFIG_ID" --api="$API_ID" \
    --openapi-spec="$SPEC_FILE" --backend-auth-service-account="$SA_GATEWAY" "${P[@]}"
fi
if absent gcloud api-gateway gateways describe "$GATEWAY_ID" --location="$GATEWAY_REGION" "${P[@]}"; then
  run gcloud api-gateway gateways create "$GATEWAY_ID" --api="$API_ID" --api-config="$CONFIG_ID" \
    --location="$GATEWAY_REGION" "${P[@]}"
elif differs "$CONFIG_ID" gcloud api-gateway gateways describe "$GATEWAY_ID" \
  --location="$GATEWAY_REGION" --format='value(apiConfig.basename())' "${P[@]}"; then
  run gcloud api-gateway gateways update "$GATEWAY_ID" --api="$API_ID" --api-config="$CONFIG_ID" \
    --location="$GATEWAY_REGION" "${P[@]}"
fi
# The API's managed service must be enabled for the gateway to serve it (and check API keys).
capture MANAGED_SERVICE "<managed-service>" gcloud api-gateway apis describe "$API_ID" \
  --format='value(managedService)' "${P[@]}"
run gcloud services enable "$MANAGED_SERVICE" "${P[@]}"
if ((API_KEY)); then
  if empty gcloud services api-keys list --filter="displayName=\"$API_KEY_NAME\"" \
    --format='value(name)' --limit=1 "${P[@]}"; then
    # --format=none: the create result carries the key string, which must not end up in logs.
    run_quiet gcloud services api-keys create --display-name="$API_KEY_NAME" \
      --api-target=service="$MANAGED_SERVICE" --format=none "${P[@]}"
  fi
else
  # The gateway takes ID tokens only: a key left from an earlier deployment opens nothing, and
  # is removed rather than left lying around.
  list_names "<api-key>" gcloud services api-keys list --filter="displayName=\"$API_KEY_NAME\"" \
    --format='value(name)' "${P[@]}"
  for key in ${NAMES[@]+"${NAMES[@]}"}; do
    run gcloud services api-keys delete "$key" --quiet "${P[@]}"
  done
fi
capture GATEWAY_HOST "<gateway-hostname>" gcloud api-gateway gateways describe "$GATEWAY_ID" \
  --location="$GATEWAY_REGION" --format='value(defaultHostname)' "${P[@]}"

# ---- 8. commercetools subscription -----------------------------------------------------------

heading "commercetools subscription"
ct_status=0
if ((SKIP_CT_SUBSCRIPTION)); then
  echo "skipped (--skip-ct-subscription)"
else
  ct_args=(-m deploy.subscriptions create --key="$CT_SUBSCRIPTION_KEY" --project="$PROJECT"
    --topic="$TOPIC_CT")
  if ((DRY_RUN)); then
    show python "${ct_args[@]}"
  else
    if [[ -z ${CTP_CLIENT_SECRET:-} ]]; then  # not typed in this run: read back what is stored
      CTP_CLIENT_SECRET=$(gcloud secrets versions access latest --secret="$SECRET_CT" "${P[@]}")
      export CTP_CLIENT_SECRET
    fi
    printf '+ %s\n' "$(show python "${ct_args[@]}")"
    "$PYTHON" "${ct_args[@]}" || ct_status=$?
  fi
fi

# ---- done -------------------------------------------------------------------------------------

heading "Done"
callers=$(sed -n 's/^BULK_\(CALLERS\|ADMINS\): "\(.*\)"$/BULK_\1=\2/p' <<<"$env_yaml" | paste -sd' ' -)
cat <<EOF
Bulk API:        https://$GATEWAY_HOST/sync/{customers,orders,categories,products}
Audience:        $AUDIENCE
Who may call:    ${callers:-nobody yet: set BULK_CALLERS / BULK_ADMINS (environment or .env) and re-run}
ID token:        as a service account listed there (you need roles/iam.serviceAccountOpenIdTokenCreator on it):
                 TOKEN=\$(gcloud auth print-identity-token --impersonate-service-account=SA_EMAIL --audiences='$AUDIENCE' --include-email)
Verify:          curl -sS -H "Authorization: Bearer \$TOKEN" https://$GATEWAY_HOST/sync/customers
                 (200 with the latest job, or 404 "no customers sync has run yet"; 401/403 say why not)
EOF
if ((API_KEY)); then
  cat <<EOF
API key:         gcloud services api-keys list --filter='displayName="$API_KEY_NAME"' --format='value(name)' --project=$PROJECT
                 then: gcloud services api-keys get-key-string <name>   (send it in the x-api-key header only)
EOF
fi
cat <<EOF
Operator tools:  need the venv (make install) and: gcloud auth application-default login
Dead letters:    .venv/bin/python -m deploy.deadletters list --project=$PROJECT --subscription=$SUB_CT_DEAD
                 (bulk page tasks that kept failing: $SUB_TASKS_DEAD)
Bulk locks:      .venv/bin/python -m deploy.locks show --project=$PROJECT --database=$FIRESTORE_DB
Subscription:    .venv/bin/python -m deploy.subscriptions show --key=$CT_SUBSCRIPTION_KEY --project=$PROJECT --topic=$TOPIC_CT
Logs:            gcloud logging read 'resource.type="cloud_run_revision" AND resource.labels.service_name="$FN_REALTIME"' --project=$PROJECT --limit=50
Audit trail:     gcloud logging read 'jsonPayload.message="bulk audit"' --project=$PROJECT --limit=50
EOF
if ((ct_status)); then
  printf '\nThe commercetools subscription step failed (above); everything else is deployed.\n' >&2
  printf 'Fix it and re-run this script, or run: python %s\n' "${ct_args[*]}" >&2
  exit 3
fi
