# Buckets: model artifacts, claim-check payloads, function source packages.
# All three: uniform bucket-level access (IAM only, no ACLs) and public
# access prevention enforced.

# Model artifacts (model.ubj + model_card.json per version), versioned so a
# rollout can be rolled back. The active model is also packaged into the
# score_email source (see functions.tf), which is what a deployment runs.
resource "google_storage_bucket" "models" {
  #checkov:skip=CKV_GCP_62:No legacy usage-log bucket; audit access with Cloud Audit Logs Data Access for Cloud Storage (project setting, see README).
  name                        = local.model_bucket
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = var.force_destroy_buckets

  versioning {
    enabled = true
  }

  lifecycle_rule {
    condition {
      num_newer_versions = var.model_noncurrent_versions_kept
      with_state         = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.apis]
}

# Claim-check payloads: emails too large for a Pub/Sub message travel as a
# reference to an object here (MAILSCORE_CLAIM_CHECK_LOCATION). They are
# mail content, so they are deleted after a few days and not kept as
# noncurrent or soft-deleted copies.
resource "google_storage_bucket" "claim_check" {
  #checkov:skip=CKV_GCP_62:No legacy usage-log bucket; audit access with Cloud Audit Logs Data Access for Cloud Storage (project setting, see README).
  #checkov:skip=CKV_GCP_78:Payloads are written once and expire in days; older versions would only keep mail content longer.
  name                        = local.claim_check_bucket
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = var.force_destroy_buckets

  lifecycle_rule {
    condition {
      age = var.claim_check_retention_days
    }
    action {
      type = "Delete"
    }
  }

  soft_delete_policy {
    retention_duration_seconds = 0
  }

  depends_on = [google_project_service.apis]
}

# Function source packages, one object per content hash (functions.tf).
resource "google_storage_bucket" "source" {
  #checkov:skip=CKV_GCP_62:No legacy usage-log bucket; audit access with Cloud Audit Logs Data Access for Cloud Storage (project setting, see README).
  #checkov:skip=CKV_GCP_78:Objects are named by their content hash and never overwritten, so versioning would add nothing.
  name                        = local.source_bucket
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = var.force_destroy_buckets

  depends_on = [google_project_service.apis]
}
