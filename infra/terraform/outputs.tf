# What a user, an operator or a local process needs from a deployment.

output "topics" {
  description = "Topic names."
  value = {
    inbound     = google_pubsub_topic.emails.name
    verdicts    = google_pubsub_topic.verdicts.name
    dead_letter = google_pubsub_topic.dead_letter.name
  }
}

output "subscriptions" {
  description = "Subscription names (batch is null unless batch_worker_enabled)."
  value = {
    score_email           = google_pubsub_subscription.push["score_email"].name
    update_profile        = google_pubsub_subscription.push["update_profile"].name
    batch                 = var.batch_worker_enabled ? google_pubsub_subscription.batch[0].name : null
    dead_letter_collector = google_pubsub_subscription.dead_letter_collector.name
  }
}

output "bigtable" {
  description = "Bigtable instance, profile table and its column families."
  value = {
    instance            = google_bigtable_instance.profiles.name
    table               = google_bigtable_table.profiles.name
    profile_family      = local.profile_family
    dedupe_family       = local.dedupe_family
    dedupe_ttl          = "${var.dedupe_ttl_seconds}s"
    deletion_protection = var.deletion_protection
  }
}

output "buckets" {
  description = "Bucket names."
  value = {
    models      = google_storage_bucket.models.name
    claim_check = google_storage_bucket.claim_check.name
    source      = google_storage_bucket.source.name
  }
}

output "function_urls" {
  description = "run.app URL of each function (internal ingress: reachable from Pub/Sub and the project's VPC only)."
  value       = { for key, fn in google_cloudfunctions2_function.fn : key => fn.service_config[0].uri }
}

output "function_service_accounts" {
  description = "Runtime service account of each function."
  value       = { for key, sa in google_service_account.function : key => sa.email }
}

output "push_service_accounts" {
  description = "Identity each push subscription presents to its function."
  value       = { for key, sa in google_service_account.push : key => sa.email }
}

output "batch_worker_service_account" {
  description = "Service account for the batched worker (null unless batch_worker_enabled)."
  value       = var.batch_worker_enabled ? google_service_account.batch_worker[0].email : null
}

output "build_service_account" {
  description = "Cloud Build identity of the function builds (null when the project default is used)."
  value       = var.dedicated_build_service_account ? google_service_account.build[0].email : null
}

output "function_sources" {
  description = "Source object (content-addressed) each function was built from."
  value       = { for key, obj in google_storage_bucket_object.source : key => "gs://${obj.bucket}/${obj.name}" }
}

output "local_env" {
  description = "MAILSCORE_* variables a local process needs to use this deployment (Settings reads each)."
  value       = local.local_env
}

output "local_env_exports" {
  description = "local_env as shell lines: eval \"$(terraform output -raw local_env_exports)\"."
  value       = join("\n", [for name in sort(keys(local.local_env)) : "export ${name}='${local.local_env[name]}'"])
}
