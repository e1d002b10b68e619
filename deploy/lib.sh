# Helpers shared by deploy.sh and teardown.sh (sourced, never executed).
# shellcheck shell=bash
#
# Every gcloud call goes through one of these, so that --dry-run prints the whole sequence without
# running anything (and without gcloud installed). In a dry run every "does it exist?" check
# answers "no" and every value read from the cloud is a <placeholder>, so the output is the
# complete, deterministic list of what a first run on an empty project would do.

DRY_RUN=${DRY_RUN:-0}

# quote WORD: WORD as a shell word, unchanged when it needs no quoting (--flag='value' when only
# the value does).
quote() {
  local word=$1 escaped="'\\''" safe='^[A-Za-z0-9_@%+=:,./-]+$'
  if [[ -n $word && $word =~ $safe ]]; then
    printf '%s' "$word"
  elif [[ $word =~ ^(--[A-Za-z0-9-]+=)(.+)$ ]]; then
    printf "%s'%s'" "${BASH_REMATCH[1]}" "${BASH_REMATCH[2]//\'/$escaped}"
  else
    printf "'%s'" "${word//\'/$escaped}"
  fi
}

# show COMMAND...: print COMMAND as one shell line.
show() {
  local line="" word
  for word in "$@"; do
    line+="$(quote "$word") "
  done
  printf '%s\n' "${line% }"
}

# run COMMAND...: run it (printed first with a "+ " prefix); in a dry run only print it.
run() {
  if ((DRY_RUN)); then
    show "$@"
  else
    printf '+ %s\n' "$(show "$@")"
    "$@"
  fi
}

# run_quiet COMMAND...: like run, but the command's standard output is discarded (IAM policies).
run_quiet() {
  if ((DRY_RUN)); then
    show "$@"
  else
    printf '+ %s\n' "$(show "$@")"
    "$@" >/dev/null
  fi
}

# absent DESCRIBE-COMMAND...: true when the described resource does not exist.
absent() {
  if ((DRY_RUN)); then
    printf '# if absent: %s\n' "$(show "$@")"
    return 0
  fi
  ! "$@" >/dev/null 2>&1
}

# present DESCRIBE-COMMAND...: true when the described resource exists.
present() {
  if ((DRY_RUN)); then
    printf '# if present: %s\n' "$(show "$@")"
    return 0
  fi
  "$@" >/dev/null 2>&1
}

# empty COMMAND...: true when COMMAND prints nothing (e.g. a list with a filter).
empty() {
  if ((DRY_RUN)); then
    printf '# if nothing from: %s\n' "$(show "$@")"
    return 0
  fi
  local out
  if ! out=$("$@"); then  # a failed lookup must not pass for "nothing there"
    printf 'error: failed: %s\n' "$(show "$@")" >&2
    exit 1
  fi
  [[ -z $out ]]
}

# nonempty COMMAND...: true when COMMAND prints something.
nonempty() {
  if ((DRY_RUN)); then
    printf '# if anything from: %s\n' "$(show "$@")"
    return 0
  fi
  ! empty "$@"
}

# differs EXPECTED COMMAND...: true unless COMMAND prints exactly EXPECTED.
differs() {
  local expected=$1
  shift
  if ((DRY_RUN)); then
    printf '# unless %s prints %s\n' "$(show "$@")" "$(quote "$expected")"
    return 0
  fi
  [[ "$("$@" 2>/dev/null || true)" != "$expected" ]]
}

# capture VAR PLACEHOLDER COMMAND...: VAR=$(COMMAND); in a dry run VAR=PLACEHOLDER.
capture() {
  local var=$1 placeholder=$2 value
  shift 2
  if ((DRY_RUN)); then
    # shellcheck disable=SC2016 # a literal $(...) in the printed line
    printf '%s=$(%s)\n' "$var" "$(show "$@")"
    value=$placeholder
  else
    value=$("$@")
    if [[ -z $value ]]; then
      printf 'error: no value from: %s\n' "$(show "$@")" >&2
      return 1
    fi
  fi
  printf -v "$var" '%s' "$value"
}

# list_names PLACEHOLDER COMMAND...: NAMES=(one per line COMMAND prints); dry run: (PLACEHOLDER).
NAMES=()
list_names() {
  local placeholder=$1 out line
  shift
  NAMES=()
  if ((DRY_RUN)); then
    printf '# for each name printed by: %s\n' "$(show "$@")"
    NAMES=("$placeholder")
    return 0
  fi
  if ! out=$("$@"); then
    printf 'error: failed: %s\n' "$(show "$@")" >&2
    exit 1
  fi
  while IFS= read -r line; do
    if [[ -n $line ]]; then NAMES+=("$line"); fi
  done <<<"$out"
}

# grant MEMBER ROLE GCLOUD-GROUP... -- RESOURCE [FLAGS...]
#   e.g. grant serviceAccount:x@p.iam.gserviceaccount.com roles/pubsub.publisher \
#          gcloud pubsub topics -- my-topic --project=p
# Adds the IAM binding on the resource unless it is already there. With CONDITION_TITLE and
# CONDITION_EXPRESSION set (project policies only), the binding carries that IAM condition.
grant() {
  _iam add "$@"
}

# revoke MEMBER ROLE GCLOUD-GROUP... -- RESOURCE [FLAGS...]: removes the (unconditional) binding
# if it is there.
revoke() {
  _iam remove "$@"
}

_iam() {
  local verb=$1 member=$2 role=$3 group=()
  shift 3
  while [[ $1 != -- ]]; do
    group+=("$1")
    shift
  done
  shift
  local title=${CONDITION_TITLE:-} filter="bindings.role=\"$role\" AND bindings.members=\"$member\""
  local extra=()
  if [[ -n $title ]]; then
    filter+=" AND bindings.condition.title=\"$title\""
    extra=("--condition=expression=$CONDITION_EXPRESSION,title=$title")
  elif [[ ${group[*]} == "gcloud projects" ]]; then
    # A project policy with conditional bindings needs an explicit choice.
    extra=(--condition=None)
  fi
  local check=("${group[@]}" get-iam-policy "$@" --flatten=bindings[].members
    "--filter=$filter" --format=value\(bindings.role\))
  if ((DRY_RUN)); then
    if [[ $verb == add ]]; then
      printf '# unless bound: %s\n' "$(show "${check[@]}")"
    else
      printf '# if bound: %s\n' "$(show "${check[@]}")"
    fi
  else
    local bound
    bound=$("${check[@]}" 2>/dev/null || true)
    if [[ $verb == add && -n $bound ]] || [[ $verb == remove && -z $bound ]]; then
      return 0
    fi
  fi
  run_quiet "${group[@]}" "$verb-iam-policy-binding" "$@" --member="$member" --role="$role" \
    ${extra[@]+"${extra[@]}"}
}

# ask VAR PROMPT [-s]: read VAR from the terminal (-s: silently); false when there is none.
ask() {
  local var=$1 prompt=$2 silent=${3:-}
  if ! { exec 3</dev/tty; } 2>/dev/null; then
    return 1
  fi
  if [[ $silent == -s ]]; then
    read -r -s -p "$prompt" "${var?}" <&3
    printf '\n' >&2
  else
    read -r -p "$prompt" "${var?}" <&3
  fi
  exec 3<&-
}

# heading TEXT: a section title in the output.
heading() {
  printf '\n## %s\n' "$1"
}

# die MESSAGE: print to stderr and exit 2.
die() {
  printf 'error: %s\n' "$1" >&2
  exit 2
}
