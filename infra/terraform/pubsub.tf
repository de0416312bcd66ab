# Topics and subscriptions: the same names, retry and dead-letter settings as
# shared/mailscore/topology.py creates on the emulator.
#
# The functions are not given an Eventarc trigger: Eventarc would create and
# own the push subscription, under a generated name, with its own retry
# policy and no dead-letter policy. Instead each function gets a push
# subscription managed here, delivering to its run.app URL with an OIDC
# token of a dedicated invoker service account (see iam.tf), which is what
# `make run` does locally against functions-framework.

resource "google_pubsub_topic" "emails" {
  #checkov:skip=CKV_GCP_83:Google-managed encryption; the deployment adds no KMS key to manage and rotate.
  name                       = var.inbound_topic
  message_retention_duration = var.topic_message_retention

  depends_on = [google_project_service.apis]
}

resource "google_pubsub_topic" "verdicts" {
  #checkov:skip=CKV_GCP_83:Google-managed encryption; the deployment adds no KMS key to manage and rotate.
  name                       = var.verdict_topic
  message_retention_duration = var.topic_message_retention

  depends_on = [google_project_service.apis]
}

resource "google_pubsub_topic" "dead_letter" {
  #checkov:skip=CKV_GCP_83:Google-managed encryption; the deployment adds no KMS key to manage and rotate.
  name                       = var.dead_letter_topic
  message_retention_duration = var.topic_message_retention

  depends_on = [google_project_service.apis]
}

# One push subscription per function: score-email-push on emails,
# update-profile-push on verdicts.
resource "google_pubsub_subscription" "push" {
  for_each = local.functions

  name                       = each.value.subscription
  topic                      = each.value.topic
  ack_deadline_seconds       = var.ack_deadline_seconds
  message_retention_duration = var.subscription_message_retention

  push_config {
    # The run.app URL: Pub/Sub counts as internal traffic there, so the
    # functions can keep ingress ALLOW_INTERNAL_ONLY.
    push_endpoint = google_cloudfunctions2_function.fn[each.key].service_config[0].uri

    oidc_token {
      service_account_email = google_service_account.push[each.key].email
      audience              = google_cloudfunctions2_function.fn[each.key].service_config[0].uri
    }
  }

  retry_policy {
    minimum_backoff = "${var.retry_minimum_backoff_seconds}s"
    maximum_backoff = "${var.retry_maximum_backoff_seconds}s"
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.dead_letter.id
    max_delivery_attempts = var.max_delivery_attempts
  }

  # Never expire for inactivity (the default is 31 days without deliveries).
  expiration_policy {
    ttl = ""
  }

  depends_on = [
    google_cloud_run_service_iam_member.push_invoker,
    google_pubsub_topic_iam_member.dead_letter_agent_publisher,
  ]
}

# The micro-batched worker's pull subscription (Settings.batch_subscription),
# created only with batch_worker_enabled: nothing in this module runs the
# worker yet, and an unread subscription would only pile up a backlog.
resource "google_pubsub_subscription" "batch" {
  count = var.batch_worker_enabled ? 1 : 0

  name                       = var.batch_subscription
  topic                      = google_pubsub_topic.emails.id
  ack_deadline_seconds       = var.ack_deadline_seconds
  message_retention_duration = var.subscription_message_retention

  retry_policy {
    minimum_backoff = "${var.retry_minimum_backoff_seconds}s"
    maximum_backoff = "${var.retry_maximum_backoff_seconds}s"
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.dead_letter.id
    max_delivery_attempts = var.max_delivery_attempts
  }

  expiration_policy {
    ttl = ""
  }

  depends_on = [google_pubsub_topic_iam_member.dead_letter_agent_publisher]
}

# A topic keeps nothing by itself: without a subscription, dead letters
# would be dropped. This one holds them (for the subscription's retention)
# for inspection and replay; same name as the emulator's collector.
resource "google_pubsub_subscription" "dead_letter_collector" {
  name                       = "${var.dead_letter_topic}-collector"
  topic                      = google_pubsub_topic.dead_letter.id
  ack_deadline_seconds       = var.ack_deadline_seconds
  message_retention_duration = var.subscription_message_retention

  expiration_policy {
    ttl = ""
  }
}
