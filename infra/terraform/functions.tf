# The two Cloud Functions (2nd gen): score_email and update_profile.
#
# `make package` builds out/package/<function>.zip deterministically
# (functions/<function>/ + the shared mailscore package, and for score_email
# the model in models/active): the same source always gives the same bytes.
# The object name carries the zip's SHA-256, so a code or model change is a
# new object, which changes build_config and redeploys the function; an
# unchanged tree plans no change at all.

locals {
  package_path = { for key, _ in local.functions : key => "${local.package_dir}/${key}.zip" }
}

# Images built from the packages. Cloud Run keeps serving a revision after
# its image is cleaned up here; the newest images stay for rollbacks.
resource "google_artifact_registry_repository" "functions" {
  #checkov:skip=CKV_GCP_84:Google-managed encryption; the images hold only this repository's code and model, no mail.
  repository_id          = var.artifact_repository
  location               = var.region
  format                 = "DOCKER"
  description            = "Images of the mailscore functions"
  cleanup_policy_dry_run = false

  cleanup_policies {
    id     = "keep-recent"
    action = "KEEP"
    most_recent_versions {
      keep_count = 10
    }
  }

  cleanup_policies {
    id     = "delete-older-than-30-days"
    action = "DELETE"
    condition {
      older_than = "2592000s"
    }
  }

  depends_on = [google_project_service.apis]
}

resource "google_storage_bucket_object" "source" {
  for_each = local.functions

  name         = "${each.key}/${filesha256(local.package_path[each.key])}.zip"
  bucket       = google_storage_bucket.source.name
  source       = local.package_path[each.key]
  content_type = "application/zip"

  # The function keeps pointing at the old object until the new one exists.
  lifecycle {
    create_before_destroy = true
  }
}

resource "google_cloudfunctions2_function" "fn" {
  for_each = local.functions

  name        = each.value.name
  location    = var.region
  description = each.value.description

  build_config {
    runtime           = var.function_runtime
    entry_point       = each.value.entry_point
    docker_repository = google_artifact_registry_repository.functions.id
    service_account   = var.dedicated_build_service_account ? google_service_account.build[0].id : null

    source {
      storage_source {
        bucket = google_storage_bucket.source.name
        object = google_storage_bucket_object.source[each.key].name
      }
    }
  }

  service_config {
    available_memory                 = each.value.sizing.memory
    available_cpu                    = each.value.sizing.cpu
    max_instance_request_concurrency = each.value.sizing.concurrency
    min_instance_count               = each.value.sizing.min_instances
    max_instance_count               = each.value.sizing.max_instances
    timeout_seconds                  = each.value.sizing.timeout_seconds
    environment_variables            = local.function_env[each.key]
    # Only Pub/Sub (same project) and VPC traffic reach the function, and
    # only with a token of its push service account (iam.tf).
    ingress_settings               = "ALLOW_INTERNAL_ONLY"
    all_traffic_on_latest_revision = true
    service_account_email          = google_service_account.function[each.key].email
  }

  depends_on = [
    google_project_service.apis,
    google_project_iam_member.build_log_writer,
    google_project_iam_member.build_staged_source_reader,
    google_artifact_registry_repository_iam_member.build_image_writer,
    google_storage_bucket_iam_member.build_source_reader,
  ]

  lifecycle {
    precondition {
      condition     = alltrue([for name in keys(local.function_env[each.key]) : contains(local.settings_env_vars, name)])
      error_message = "${each.key}: environment variables ${join(", ", [for name in keys(local.function_env[each.key]) : name if !contains(local.settings_env_vars, name)])} are not settings mailscore reads (shared/mailscore/settings.py ENV_VARS)."
    }
    precondition {
      condition     = each.value.sizing.concurrency == 1 || tonumber(each.value.sizing.cpu) >= 1
      error_message = "${each.key}: a concurrency above 1 needs cpu of at least 1."
    }
    precondition {
      condition     = each.value.sizing.min_instances <= each.value.sizing.max_instances
      error_message = "${each.key}: min_instances must not exceed max_instances."
    }
  }
}
