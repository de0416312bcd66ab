# Identities and grants. Every grant is on the one resource it is used on;
# the only project-level bindings are the two the build needs (see below).
# No basic roles (owner/editor/viewer) anywhere: the static tests fail on one.
#
#   identity                   role                        on
#   ms-score-email             pubsub.publisher            verdicts topic, dead-letter topic
#                              bigtable.reader             sender_profiles table
#                              storage.objectViewer        model bucket, claim-check bucket
#   ms-update-profile          bigtable.user               sender_profiles table
#   ms-<fn>-push (x2)          run.invoker                 its own function's Cloud Run service
#   ms-score-email-batch (opt) pubsub.subscriber           score-email-batch subscription
#                              pubsub.publisher            verdicts topic, dead-letter topic
#                              bigtable.reader             sender_profiles table
#                              storage.objectViewer        model bucket, claim-check bucket
#   ms-functions-build (opt)   logging.logWriter           project (build logs)
#                              storage.objectViewer        project, conditioned to the gcf-v2-sources staging bucket
#                              storage.objectViewer        source bucket
#                              artifactregistry.writer     functions repository
#   Pub/Sub service agent      pubsub.publisher            dead-letter topic
#                              pubsub.subscriber           each subscription with a dead-letter policy
#                              iam.serviceAccountTokenCreator  each push service account

# --- Runtime identities of the functions (one each) ---------------------------

resource "google_service_account" "function" {
  for_each = local.functions

  account_id   = "ms-${each.value.name}"
  display_name = "mailscore ${each.key} runtime"
  description  = "Runs the ${each.key} function; holds only the grants that function uses."
}

# The functions receive their messages by push: they never call the
# subscription API, so they hold no pubsub.subscriber role.

# score_email publishes verdicts, and rejected input to the dead-letter topic.
resource "google_pubsub_topic_iam_member" "score_email_publishes_verdicts" {
  topic  = google_pubsub_topic.verdicts.id
  role   = "roles/pubsub.publisher"
  member = google_service_account.function["score_email"].member
}

resource "google_pubsub_topic_iam_member" "score_email_publishes_dead_letters" {
  topic  = google_pubsub_topic.dead_letter.id
  role   = "roles/pubsub.publisher"
  member = google_service_account.function["score_email"].member
}

# update_profile dead-letters verdicts it cannot read (shared/mailscore/updater.py).
resource "google_pubsub_topic_iam_member" "update_profile_publishes_dead_letters" {
  topic  = google_pubsub_topic.dead_letter.id
  role   = "roles/pubsub.publisher"
  member = google_service_account.function["update_profile"].member
}

# score_email reads sender profiles (ReadRows only).
resource "google_bigtable_table_iam_member" "score_email_reads_profiles" {
  instance_name = google_bigtable_instance.profiles.name
  table         = google_bigtable_table.profiles.name
  role          = "roles/bigtable.reader"
  member        = google_service_account.function["score_email"].member
}

# Model artifacts: the active model ships in the package today, so this read
# serves models named by gs:// path (MAILSCORE_SHADOW_MODEL_DIR, loading from
# the bucket) once the code reads them; it exposes nothing but models.
resource "google_storage_bucket_iam_member" "score_email_reads_models" {
  bucket = google_storage_bucket.models.name
  role   = "roles/storage.objectViewer"
  member = google_service_account.function["score_email"].member
}

# Claim-check payloads: score_email fetches an email sent by reference.
resource "google_storage_bucket_iam_member" "score_email_reads_claim_checks" {
  bucket = google_storage_bucket.claim_check.name
  role   = "roles/storage.objectViewer"
  member = google_service_account.function["score_email"].member
}

# update_profile reads and check-and-mutates sender profiles.
resource "google_bigtable_table_iam_member" "update_profile_writes_profiles" {
  instance_name = google_bigtable_instance.profiles.name
  table         = google_bigtable_table.profiles.name
  role          = "roles/bigtable.user"
  member        = google_service_account.function["update_profile"].member
}

# --- Push identities: who Pub/Sub presents itself as to each function ---------

resource "google_service_account" "push" {
  for_each = local.functions

  account_id   = "ms-${each.value.name}-push"
  display_name = "mailscore ${each.value.subscription} push"
  description  = "OIDC identity of the ${each.value.subscription} push subscription; may invoke ${each.key} only."
}

# A 2nd gen function is invoked through its Cloud Run service: run.invoker
# goes on that service (service_config.service names it).
resource "google_cloud_run_service_iam_member" "push_invoker" {
  for_each = local.functions

  project  = var.project_id
  location = var.region
  service  = google_cloudfunctions2_function.fn[each.key].service_config[0].service
  role     = "roles/run.invoker"
  member   = google_service_account.push[each.key].member
}

# The Pub/Sub service agent mints the push requests' OIDC tokens as the push
# service account; older projects need this grant for it, newer ones ignore it.
resource "google_service_account_iam_member" "pubsub_agent_signs_push_tokens" {
  for_each = local.functions

  service_account_id = google_service_account.push[each.key].name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.pubsub_service_agent
}

# --- Dead-lettering by the subscriptions --------------------------------------

# The service agent forwards messages that exhausted their delivery attempts
# to the dead-letter topic, and acknowledges them on the source subscription.
resource "google_pubsub_topic_iam_member" "dead_letter_agent_publisher" {
  topic  = google_pubsub_topic.dead_letter.id
  role   = "roles/pubsub.publisher"
  member = local.pubsub_service_agent
}

resource "google_pubsub_subscription_iam_member" "dead_letter_agent_subscriber" {
  for_each = local.functions

  subscription = google_pubsub_subscription.push[each.key].id
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_service_agent
}

resource "google_pubsub_subscription_iam_member" "batch_dead_letter_agent_subscriber" {
  count = var.batch_worker_enabled ? 1 : 0

  subscription = google_pubsub_subscription.batch[0].id
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_service_agent
}

# --- The micro-batched worker (optional) ---------------------------------------
#
# Its code is being written separately and nothing here deploys it yet: this
# is the identity it will run as (e.g. a Cloud Run service or job), with the
# same reach as score_email except that it pulls its own subscription.

resource "google_service_account" "batch_worker" {
  count = var.batch_worker_enabled ? 1 : 0

  account_id   = "ms-score-email-batch"
  display_name = "mailscore batched scorer"
  description  = "Pulls ${var.batch_subscription} and scores emails in micro-batches."
}

resource "google_pubsub_subscription_iam_member" "batch_worker_pulls" {
  count = var.batch_worker_enabled ? 1 : 0

  subscription = google_pubsub_subscription.batch[0].id
  role         = "roles/pubsub.subscriber"
  member       = google_service_account.batch_worker[0].member
}

resource "google_pubsub_topic_iam_member" "batch_worker_publishes_verdicts" {
  count = var.batch_worker_enabled ? 1 : 0

  topic  = google_pubsub_topic.verdicts.id
  role   = "roles/pubsub.publisher"
  member = google_service_account.batch_worker[0].member
}

resource "google_pubsub_topic_iam_member" "batch_worker_publishes_dead_letters" {
  count = var.batch_worker_enabled ? 1 : 0

  topic  = google_pubsub_topic.dead_letter.id
  role   = "roles/pubsub.publisher"
  member = google_service_account.batch_worker[0].member
}

resource "google_bigtable_table_iam_member" "batch_worker_reads_profiles" {
  count = var.batch_worker_enabled ? 1 : 0

  instance_name = google_bigtable_instance.profiles.name
  table         = google_bigtable_table.profiles.name
  role          = "roles/bigtable.reader"
  member        = google_service_account.batch_worker[0].member
}

resource "google_storage_bucket_iam_member" "batch_worker_reads_models" {
  count = var.batch_worker_enabled ? 1 : 0

  bucket = google_storage_bucket.models.name
  role   = "roles/storage.objectViewer"
  member = google_service_account.batch_worker[0].member
}

resource "google_storage_bucket_iam_member" "batch_worker_reads_claim_checks" {
  count = var.batch_worker_enabled ? 1 : 0

  bucket = google_storage_bucket.claim_check.name
  role   = "roles/storage.objectViewer"
  member = google_service_account.batch_worker[0].member
}

# --- The build identity (optional) ---------------------------------------------
#
# Cloud Build turns each package into an image. Without a dedicated account,
# new projects build as the Compute Engine default service account, which is
# often an Editor. This one can write build logs, read the packages and push
# to the functions repository, nothing else.

resource "google_service_account" "build" {
  count = var.dedicated_build_service_account ? 1 : 0

  account_id   = "ms-functions-build"
  display_name = "mailscore functions build"
  description  = "Cloud Build identity of the mailscore function builds."
}

# Build logs are written to the project; logging has no narrower scope.
resource "google_project_iam_member" "build_log_writer" {
  count = var.dedicated_build_service_account ? 1 : 0

  project = var.project_id
  role    = "roles/logging.logWriter"
  member  = google_service_account.build[0].member
}

# Cloud Functions copies each package into its own staging bucket,
# gcf-v2-sources-<project number>-<region>, and the build fetches it from
# there. That bucket is created by the service on first deploy, not by this
# module, so the read is granted on the project with a condition naming it.
resource "google_project_iam_member" "build_staged_source_reader" {
  count = var.dedicated_build_service_account ? 1 : 0

  project = var.project_id
  role    = "roles/storage.objectViewer"
  member  = google_service_account.build[0].member

  condition {
    title       = "gcf-v2-sources-only"
    description = "Only the Cloud Functions source staging bucket of this region."
    expression  = "resource.name.startsWith(\"projects/_/buckets/gcf-v2-sources-${data.google_project.this.number}-${var.region}\")"
  }
}

resource "google_storage_bucket_iam_member" "build_source_reader" {
  count = var.dedicated_build_service_account ? 1 : 0

  bucket = google_storage_bucket.source.name
  role   = "roles/storage.objectViewer"
  member = google_service_account.build[0].member
}

resource "google_artifact_registry_repository_iam_member" "build_image_writer" {
  count = var.dedicated_build_service_account ? 1 : 0

  project    = var.project_id
  location   = google_artifact_registry_repository.functions.location
  repository = google_artifact_registry_repository.functions.name
  role       = "roles/artifactregistry.writer"
  member     = google_service_account.build[0].member
}
