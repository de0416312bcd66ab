#!/usr/bin/env bash
# `make plan` / `make deploy`: run terraform plan/apply on infra/terraform,
# after checking, without any network access, that it can work at all:
# terraform installed, inputs written, credentials present, packages built.
# Each missing piece stops here with what to do, not with a stack trace.
#
# Usage: infra/scripts/terraform.sh plan|apply
# Environment: PACKAGE_DIR (default out/package), TFVARS (default
# infra/terraform/terraform.tfvars), AUTO_APPROVE=1 (apply without the
# prompt), ASSUME_GCP_CREDENTIALS=1 (skip the credentials check, e.g. on a
# Google Cloud VM or with workload identity, where credentials come from
# the metadata server, which this script deliberately never queries).
set -euo pipefail

cd "$(dirname "$0")/../.."
root="$(pwd)"
tf_dir="infra/terraform"
action="${1:-}"
package_dir="$(cd "$root" && realpath -m "${PACKAGE_DIR:-out/package}")"
tfvars="$(realpath -m "${TFVARS:-$tf_dir/terraform.tfvars}")"

fail() {
  echo "$action: $*" >&2
  exit 1
}

case "$action" in
  plan | apply) ;;
  *) echo "usage: $0 plan|apply" >&2; exit 2 ;;
esac

command -v terraform >/dev/null 2>&1 \
  || fail "terraform is not installed: install Terraform >= 1.5 (https://developer.hashicorp.com/terraform/install)."

[ -f "$tfvars" ] \
  || fail "no inputs at $tfvars: cp $tf_dir/terraform.tfvars.example $tf_dir/terraform.tfvars and set project_id and region (or set TFVARS=path)."

# Credentials, looked for where the google provider finds them, locally only.
has_credentials() {
  [ "${ASSUME_GCP_CREDENTIALS:-}" = "1" ] && return 0
  [ -n "${GOOGLE_OAUTH_ACCESS_TOKEN:-}" ] && return 0
  for var in GOOGLE_APPLICATION_CREDENTIALS GOOGLE_CREDENTIALS GOOGLE_CLOUD_KEYFILE_JSON; do
    value="${!var:-}"
    [ -n "$value" ] && { [ -f "$value" ] || [ "${value#\{}" != "$value" ]; } && return 0
  done
  local config="${CLOUDSDK_CONFIG:-${HOME:-/nonexistent}/.config/gcloud}"
  [ -f "$config/application_default_credentials.json" ]
}
has_credentials || fail "no Google Cloud credentials found: run \`gcloud auth application-default login\` \
(or set GOOGLE_APPLICATION_CREDENTIALS to a key file; ASSUME_GCP_CREDENTIALS=1 on a VM with an attached service account). Nothing was contacted."

# Every function Terraform deploys needs its package.
missing=()
for fn in score_email update_profile; do
  [ -f "$package_dir/$fn.zip" ] || missing+=("$fn")
done
if [ "${#missing[@]}" -gt 0 ]; then
  for fn in "${missing[@]}"; do
    [ -f "functions/$fn/main.py" ] || fail "functions/$fn/main.py does not exist, so $fn cannot be packaged or deployed yet."
  done
  fail "no package for ${missing[*]} in $package_dir: run \`make package\` first."
fi

# Providers: installed by `terraform init`, which needs registry.terraform.io.
if [ ! -d "$tf_dir/.terraform/providers" ]; then
  echo "$action: installing the google provider (terraform init)..."
  terraform -chdir="$tf_dir" init -input=false >/dev/null \
    || fail "terraform init could not install the providers (it needs registry.terraform.io and releases.hashicorp.com); run \`terraform -chdir=$tf_dir init\` where they are reachable, then retry."
fi

args=("-var-file=$tfvars" "-var=package_dir=$package_dir")
if [ "$action" = "plan" ]; then
  exec terraform -chdir="$tf_dir" plan -input=false "${args[@]}"
fi
if [ "${AUTO_APPROVE:-}" = "1" ]; then
  exec terraform -chdir="$tf_dir" apply -input=false -auto-approve "${args[@]}"
fi
# Shows the plan and asks for "yes" before changing anything.
exec terraform -chdir="$tf_dir" apply "${args[@]}"
