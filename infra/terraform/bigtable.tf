# Sender profiles: the instance, the table and its column families, laid out
# as shared/mailscore/profiles.py reads and writes them.

resource "google_bigtable_instance" "profiles" {
  #checkov:skip=CKV_GCP_85:Google-managed encryption; the deployment adds no KMS key to manage and rotate.
  name                = var.bigtable_instance
  display_name        = "mailscore sender profiles"
  deletion_protection = var.deletion_protection

  # No instance_type: the provider deprecates it (every instance becomes
  # PRODUCTION). DEVELOPMENT here means what a development instance was: one
  # fixed node, no autoscaling.
  cluster {
    cluster_id   = "${var.bigtable_instance}-c1"
    zone         = local.bigtable_zone
    storage_type = var.bigtable_storage_type
    num_nodes    = var.bigtable_instance_kind == "DEVELOPMENT" ? 1 : null

    dynamic "autoscaling_config" {
      for_each = var.bigtable_instance_kind == "PRODUCTION" ? [1] : []
      content {
        min_nodes  = var.bigtable_min_nodes
        max_nodes  = var.bigtable_max_nodes
        cpu_target = var.bigtable_cpu_target
      }
    }
  }

  depends_on = [google_project_service.apis]

  lifecycle {
    precondition {
      condition     = var.bigtable_min_nodes >= 1 && var.bigtable_min_nodes <= var.bigtable_max_nodes
      error_message = "Bigtable autoscaling needs 1 <= bigtable_min_nodes <= bigtable_max_nodes."
    }
  }
}

resource "google_bigtable_table" "profiles" {
  name                = var.profile_table
  instance_name       = google_bigtable_instance.profiles.name
  deletion_protection = var.deletion_protection ? "PROTECTED" : "UNPROTECTED"

  # p: one cell per profile counter (msg_count, first_seen, last_seen,
  # flagged_count, recipients), a current state rather than a time series.
  column_family {
    family = local.profile_family
  }

  # d: one marker per message id update_profile has applied, so a
  # redelivered verdict is not counted twice; forgotten after the dedupe TTL.
  column_family {
    family = local.dedupe_family
  }
}

resource "google_bigtable_gc_policy" "profile_latest_only" {
  instance_name   = google_bigtable_instance.profiles.name
  table           = google_bigtable_table.profiles.name
  column_family   = local.profile_family
  deletion_policy = "ABANDON"

  max_version {
    number = 1
  }
}

resource "google_bigtable_gc_policy" "dedupe_ttl" {
  instance_name   = google_bigtable_instance.profiles.name
  table           = google_bigtable_table.profiles.name
  column_family   = local.dedupe_family
  deletion_policy = "ABANDON"

  max_age {
    duration = "${var.dedupe_ttl_seconds}s"
  }
}
