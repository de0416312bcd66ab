# Provider, project facts, shared locals and the APIs the deployment needs.

provider "google" {
  project        = var.project_id
  region         = var.region
  default_labels = merge({ app = "mailscore" }, var.labels)
}

data "google_project" "this" {
  project_id = var.project_id
}

locals {
  # Every environment variable Settings reads, in the order of ENV_VARS in
  # shared/mailscore/settings.py. tests/unit/test_terraform.py fails when the
  # two differ, and the functions refuse (precondition) any variable that is
  # not listed here, so a misspelt setting cannot be silently ignored.
  settings_env_vars = [
    "MAILSCORE_PROJECT_ID",
    "MAILSCORE_INBOUND_TOPIC",
    "MAILSCORE_VERDICT_TOPIC",
    "MAILSCORE_DEAD_LETTER_TOPIC",
    "MAILSCORE_BIGTABLE_INSTANCE",
    "MAILSCORE_PROFILE_TABLE",
    "MAILSCORE_MODEL_DIR",
    "MAILSCORE_THRESHOLD_SUSPICIOUS",
    "MAILSCORE_THRESHOLD_PHISHING",
    "MAILSCORE_TRUSTED_AUTHSERV_IDS",
    "MAILSCORE_BIGTABLE_ATTEMPT_TIMEOUT_SECONDS",
    "MAILSCORE_BIGTABLE_OPERATION_TIMEOUT_SECONDS",
    "MAILSCORE_PUBLISH_TIMEOUT_SECONDS",
    "MAILSCORE_TOP_REASONS",
    "MAILSCORE_LOG_LEVEL",
    "MAILSCORE_UPDATE_SUBSCRIPTION",
    "MAILSCORE_DEDUPE_TTL_SECONDS",
    "MAILSCORE_LATENCY_BUDGET_MS",
    "MAILSCORE_HISTORY_MIN_TIMEOUT_MS",
    "MAILSCORE_PROFILE_CACHE_MAX_ENTRIES",
    "MAILSCORE_PROFILE_CACHE_TTL_SECONDS",
    "MAILSCORE_BATCH_SUBSCRIPTION",
    "MAILSCORE_BATCH_MAX_MESSAGES",
    "MAILSCORE_CLAIM_CHECK_THRESHOLD_BYTES",
    "MAILSCORE_CLAIM_CHECK_LOCATION",
    "MAILSCORE_SHADOW_MODEL_DIR",
    "MAILSCORE_MODEL_CACHE_DIR",
    "MAILSCORE_TARGET_FPR_SUSPICIOUS",
    "MAILSCORE_TARGET_FPR_PHISHING",
    "MAILSCORE_REASONS_FOR",
    "MAILSCORE_MAX_HEADER_BYTES",
    "MAILSCORE_MAX_HEADER_VALUE_CHARS",
    "MAILSCORE_MAX_HEADERS",
    "MAILSCORE_MAX_MIME_PARTS",
    "MAILSCORE_MAX_MIME_DEPTH",
    "MAILSCORE_MAX_BODY_SCAN_BYTES",
    "MAILSCORE_MAX_MESSAGE_BYTES",
    "MAILSCORE_MAX_URLS",
  ]

  # Column families of the profile table: shared/mailscore/profiles.py FAMILY
  # (profile counters, one version) and DEDUPE_FAMILY (applied message ids of
  # update_profile, kept dedupe_ttl_seconds). Checked by the tests.
  profile_family = "p"
  dedupe_family  = "d"

  bigtable_zone      = coalesce(var.bigtable_zone, "${var.region}-b")
  model_bucket       = coalesce(var.model_bucket_name, "${var.project_id}-mailscore-models")
  claim_check_bucket = coalesce(var.claim_check_bucket_name, "${var.project_id}-mailscore-claim-check")
  source_bucket      = coalesce(var.source_bucket_name, "${var.project_id}-mailscore-fn-source")
  package_dir        = coalesce(var.package_dir, "${path.module}/../../out/package")

  claim_check_location = "gs://${local.claim_check_bucket}/${var.claim_check_prefix}"

  # The Pub/Sub service agent: it forwards exhausted messages to the
  # dead-letter topic and signs the push requests' OIDC tokens.
  pubsub_service_agent = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"

  # The two functions, keyed by their directory under functions/ (and zip
  # name under out/package). Each gets its own runtime service account, its
  # own push subscription and its own push identity.
  functions = {
    score_email = {
      name         = "score-email"
      entry_point  = "score_email"
      description  = "Scores one email per Pub/Sub message and publishes the verdict."
      topic        = google_pubsub_topic.emails.id
      subscription = var.score_email_subscription
      sizing       = var.score_email
    }
    update_profile = {
      name         = "update-profile"
      entry_point  = "update_profile"
      description  = "Applies each verdict to the sender's profile in Bigtable, once per message id."
      topic        = google_pubsub_topic.verdicts.id
      subscription = var.update_subscription
      sizing       = var.update_profile
    }
  }

  # Settings every function reads: where the topics and the table are.
  common_env = {
    MAILSCORE_PROJECT_ID        = var.project_id
    MAILSCORE_INBOUND_TOPIC     = var.inbound_topic
    MAILSCORE_VERDICT_TOPIC     = var.verdict_topic
    MAILSCORE_DEAD_LETTER_TOPIC = var.dead_letter_topic
    MAILSCORE_BIGTABLE_INSTANCE = var.bigtable_instance
    MAILSCORE_PROFILE_TABLE     = var.profile_table
    MAILSCORE_LOG_LEVEL         = var.log_level
  }

  # The model ships inside the score_email package (`make package` copies
  # models/active into it), so the path is relative to the function's root.
  score_email_env = {
    MAILSCORE_MODEL_DIR            = "models/active"
    MAILSCORE_TRUSTED_AUTHSERV_IDS = join(",", var.trusted_authserv_ids)
    MAILSCORE_CLAIM_CHECK_LOCATION = local.claim_check_location
  }

  update_profile_env = {
    MAILSCORE_UPDATE_SUBSCRIPTION = var.update_subscription
    MAILSCORE_DEDUPE_TTL_SECONDS  = tostring(var.dedupe_ttl_seconds)
  }

  function_env = {
    score_email    = merge(local.common_env, local.score_email_env, var.score_email_env)
    update_profile = merge(local.common_env, local.update_profile_env, var.update_profile_env)
  }

  # What a local process (the CLI, functions-framework on a laptop, the
  # batched worker) needs to address the deployed resources. The model stays
  # local: MAILSCORE_MODEL_DIR is not in here.
  local_env = merge(local.common_env, local.update_profile_env, {
    MAILSCORE_TRUSTED_AUTHSERV_IDS = join(",", var.trusted_authserv_ids)
    MAILSCORE_CLAIM_CHECK_LOCATION = local.claim_check_location
    MAILSCORE_BATCH_SUBSCRIPTION   = var.batch_subscription
  })

  apis = toset([
    "artifactregistry.googleapis.com",
    "bigtable.googleapis.com",
    "bigtableadmin.googleapis.com",
    "cloudbuild.googleapis.com",
    "cloudfunctions.googleapis.com",
    "cloudresourcemanager.googleapis.com",
    "iam.googleapis.com",
    "logging.googleapis.com",
    "monitoring.googleapis.com",
    "pubsub.googleapis.com",
    "run.googleapis.com",
    "storage.googleapis.com",
  ])
}

resource "google_project_service" "apis" {
  for_each = var.enable_apis ? local.apis : toset([])

  project            = var.project_id
  service            = each.value
  disable_on_destroy = false
}

# Both subscriptions on the inbound topic would each get every email.
check "single_scoring_path" {
  assert {
    condition     = !var.batch_worker_enabled
    error_message = "batch_worker_enabled: the push subscription ${var.score_email_subscription} and the pull subscription ${var.batch_subscription} both receive every email, so each email is scored twice while both exist."
  }
}
