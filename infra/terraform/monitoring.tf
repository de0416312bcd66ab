# Alerts: per subscription (oldest unacked message, backlog), dead-letter
# rate, per function (5xx ratio, p99 latency); log-based metrics from the
# functions' structured JSON logs (shared/mailscore/logs.py: severity,
# message, tenant, message_id, label, score, model_version, latency_ms,
# reason). Every alert notifies var.notification_channels.

locals {
  # Subscriptions whose lag means email is not being scored or profiles not
  # updated. The dead-letter collector is left out on purpose: it is an
  # archive nobody drains, and the dead-letter rate alert covers it.
  monitored_subscriptions = merge(
    { for key, sub in google_pubsub_subscription.push : key => sub.name },
    var.batch_worker_enabled ? { batch = google_pubsub_subscription.batch[0].name } : {},
  )

  # Cloud Run service names of the functions (2nd gen functions are Cloud
  # Run services of the same name; their logs and metrics are filed there).
  function_services = { for key, fn in local.functions : key => fn.name }
  function_logs     = "resource.type=\"cloud_run_revision\" AND resource.labels.service_name=(${join(" OR ", [for name in values(local.function_services) : "\"${name}\""])})"

  alert_documentation = "mailscore: see the Deploy section of the README and infra/terraform/README.md (Alerts) for what each alert means and what to do."
}

# --- Log-based metrics ---------------------------------------------------------

# One count per verdict, by label and model version ("scored" log lines).
resource "google_logging_metric" "verdicts" {
  name   = "mailscore_verdicts"
  filter = "${local.function_logs} AND jsonPayload.message=\"scored\""

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "INT64"
    unit         = "1"
    display_name = "mailscore verdicts"

    labels {
      key         = "label"
      value_type  = "STRING"
      description = "safe, suspicious or phishing"
    }
    labels {
      key         = "model_version"
      value_type  = "STRING"
      description = "Model that produced the verdict"
    }
  }

  label_extractors = {
    label         = "EXTRACT(jsonPayload.label)"
    model_version = "EXTRACT(jsonPayload.model_version)"
  }
}

# One count per message a function dead-lettered itself, by reason
# (missing_tenant, data_not_base64, ...). Messages dead-lettered by a
# subscription after max delivery attempts are counted by Pub/Sub instead.
resource "google_logging_metric" "dead_lettered" {
  name   = "mailscore_dead_lettered"
  filter = "${local.function_logs} AND jsonPayload.message=\"dead-lettered\""

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "INT64"
    unit         = "1"
    display_name = "mailscore messages dead-lettered by the function"

    labels {
      key         = "reason"
      value_type  = "STRING"
      description = "Reason code of the rejection"
    }
  }

  label_extractors = {
    reason = "EXTRACT(jsonPayload.reason)"
  }
}

# In-function scoring time, from receipt to verdict published (latency_ms).
resource "google_logging_metric" "scoring_latency" {
  name   = "mailscore_scoring_latency"
  filter = "${local.function_logs} AND jsonPayload.message=\"scored\""

  value_extractor = "EXTRACT(jsonPayload.latency_ms)"

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "DISTRIBUTION"
    unit         = "ms"
    display_name = "mailscore in-function scoring latency"
  }

  bucket_options {
    exponential_buckets {
      num_finite_buckets = 40
      growth_factor      = 1.4
      scale              = 0.5
    }
  }
}

# Failures that make Pub/Sub redeliver (Bigtable or publish trouble, or an
# unexpected exception), by function.
resource "google_logging_metric" "redelivery_requested" {
  name   = "mailscore_redelivery_requested"
  filter = "${local.function_logs} AND severity>=WARNING AND jsonPayload.message=(\"transient failure, redelivery requested\" OR \"unexpected scoring failure\")"

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "INT64"
    unit         = "1"
    display_name = "mailscore failures answered with redelivery"

    labels {
      key         = "function"
      value_type  = "STRING"
      description = "Cloud Run service of the function"
    }
  }

  label_extractors = {
    function = "EXTRACT(resource.labels.service_name)"
  }
}

# --- Subscriptions --------------------------------------------------------------

resource "google_monitoring_alert_policy" "oldest_unacked" {
  for_each = local.monitored_subscriptions

  display_name          = "mailscore: ${each.value} oldest unacked message > ${var.alert_oldest_unacked_age_seconds}s"
  combiner              = "OR"
  notification_channels = var.notification_channels

  conditions {
    display_name = "oldest unacked message age of ${each.value}"
    condition_threshold {
      filter          = "resource.type=\"pubsub_subscription\" AND resource.labels.subscription_id=\"${each.value}\" AND metric.type=\"pubsub.googleapis.com/subscription/oldest_unacked_message_age\""
      comparison      = "COMPARISON_GT"
      threshold_value = var.alert_oldest_unacked_age_seconds
      duration        = "300s"
      aggregations {
        alignment_period   = "60s"
        per_series_aligner = "ALIGN_MAX"
      }
    }
  }

  documentation {
    content   = "${local.alert_documentation} Messages on ${each.value} wait longer than expected: the function is failing (see the dead-letter and error alerts), scaled out to max_instances, or Bigtable is slow."
    mime_type = "text/markdown"
  }

  alert_strategy {
    auto_close = "1800s"
  }
}

resource "google_monitoring_alert_policy" "backlog" {
  for_each = local.monitored_subscriptions

  display_name          = "mailscore: ${each.value} backlog > ${var.alert_backlog_messages} messages"
  combiner              = "OR"
  notification_channels = var.notification_channels

  conditions {
    display_name = "undelivered messages on ${each.value}"
    condition_threshold {
      filter          = "resource.type=\"pubsub_subscription\" AND resource.labels.subscription_id=\"${each.value}\" AND metric.type=\"pubsub.googleapis.com/subscription/num_undelivered_messages\""
      comparison      = "COMPARISON_GT"
      threshold_value = var.alert_backlog_messages
      duration        = "300s"
      aggregations {
        alignment_period   = "60s"
        per_series_aligner = "ALIGN_MEAN"
      }
    }
  }

  documentation {
    content   = "${local.alert_documentation} ${each.value} is not keeping up with its topic."
    mime_type = "text/markdown"
  }

  alert_strategy {
    auto_close = "1800s"
  }
}

# --- Dead letters --------------------------------------------------------------

resource "google_monitoring_alert_policy" "dead_letter_rate" {
  display_name          = "mailscore: dead letters > ${var.alert_dead_letter_per_second}/s"
  combiner              = "OR"
  notification_channels = var.notification_channels

  # Rejected by a function (bad envelope, no tenant, not an email).
  conditions {
    display_name = "messages dead-lettered by the functions"
    condition_threshold {
      filter          = "resource.type=\"cloud_run_revision\" AND metric.type=\"logging.googleapis.com/user/${google_logging_metric.dead_lettered.name}\""
      comparison      = "COMPARISON_GT"
      threshold_value = var.alert_dead_letter_per_second
      duration        = "0s"
      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_RATE"
        cross_series_reducer = "REDUCE_SUM"
      }
    }
  }

  # Forwarded by a subscription after max_delivery_attempts failures.
  conditions {
    display_name = "messages dead-lettered by the subscriptions"
    condition_threshold {
      filter          = "resource.type=\"pubsub_subscription\" AND metric.type=\"pubsub.googleapis.com/subscription/dead_letter_message_count\""
      comparison      = "COMPARISON_GT"
      threshold_value = var.alert_dead_letter_per_second
      duration        = "0s"
      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_RATE"
        cross_series_reducer = "REDUCE_SUM"
      }
    }
  }

  documentation {
    content   = "${local.alert_documentation} Read the dead letters: `gcloud pubsub subscriptions pull ${google_pubsub_subscription.dead_letter_collector.name} --limit=10` (attributes reason, stage, detail). Messages a subscription forwarded after max delivery attempts carry the original attributes and no reason: read the function's error logs and the metric mailscore_redelivery_requested."
    mime_type = "text/markdown"
  }

  alert_strategy {
    auto_close = "1800s"
  }
}

# --- Functions ---------------------------------------------------------------

resource "google_monitoring_alert_policy" "function_errors" {
  for_each = local.function_services

  display_name          = "mailscore: ${each.value} 5xx ratio > ${var.alert_error_ratio}"
  combiner              = "OR"
  notification_channels = var.notification_channels

  conditions {
    display_name = "share of ${each.value} requests answered 5xx"
    condition_threshold {
      filter             = "resource.type=\"cloud_run_revision\" AND resource.labels.service_name=\"${each.value}\" AND metric.type=\"run.googleapis.com/request_count\" AND metric.labels.response_code_class=\"5xx\""
      denominator_filter = "resource.type=\"cloud_run_revision\" AND resource.labels.service_name=\"${each.value}\" AND metric.type=\"run.googleapis.com/request_count\""
      comparison         = "COMPARISON_GT"
      threshold_value    = var.alert_error_ratio
      duration           = "300s"
      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_RATE"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["resource.labels.service_name"]
      }
      denominator_aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_RATE"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["resource.labels.service_name"]
      }
    }
  }

  documentation {
    content   = "${local.alert_documentation} ${each.value} raises on transient failures (Bigtable, publish) so Pub/Sub redelivers; a sustained ratio means a dependency is down or the code is failing. See the log-based metric ${google_logging_metric.redelivery_requested.name}."
    mime_type = "text/markdown"
  }

  alert_strategy {
    auto_close = "1800s"
  }
}

resource "google_monitoring_alert_policy" "function_latency" {
  for_each = local.function_services

  display_name          = "mailscore: ${each.value} p99 latency > ${var.alert_p99_latency_ms[each.key]} ms"
  combiner              = "OR"
  notification_channels = var.notification_channels

  conditions {
    display_name = "p99 request latency of ${each.value}"
    condition_threshold {
      filter          = "resource.type=\"cloud_run_revision\" AND resource.labels.service_name=\"${each.value}\" AND metric.type=\"run.googleapis.com/request_latencies\""
      comparison      = "COMPARISON_GT"
      threshold_value = var.alert_p99_latency_ms[each.key]
      duration        = "300s"
      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_PERCENTILE_99"
        group_by_fields      = ["resource.labels.service_name"]
      }
    }
  }

  documentation {
    content   = "${local.alert_documentation} Compare with ${google_logging_metric.scoring_latency.name} (time inside the function) to tell cold starts and queuing from slow scoring or Bigtable reads."
    mime_type = "text/markdown"
  }

  alert_strategy {
    auto_close = "1800s"
  }
}
