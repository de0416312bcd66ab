# Inputs of the mailscore deployment. terraform.tfvars.example shows every one.
#
# Names default to the defaults of shared/mailscore/settings.py (Settings) and
# shared/mailscore/topology.py, so a deployment and `make run` on the
# emulators use one naming scheme; tests/unit/test_terraform.py fails when a
# default here and the code disagree.

# --- Where --------------------------------------------------------------------

variable "project_id" {
  description = "Google Cloud project to deploy into (becomes MAILSCORE_PROJECT_ID)."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a Google Cloud project ID (6-30 lowercase letters, digits, hyphens)."
  }
}

variable "region" {
  description = "Region of the functions, the Artifact Registry repository, the buckets and the Bigtable cluster."
  type        = string
}

variable "bigtable_zone" {
  description = "Zone of the Bigtable cluster; null means \"<region>-b\"."
  type        = string
  default     = null
}

variable "labels" {
  description = "Labels added to every resource that takes labels (an `app = mailscore` label is always added)."
  type        = map(string)
  default     = {}
}

variable "enable_apis" {
  description = "Enable the Google APIs the deployment uses (never disabled on destroy). Set false if the project's APIs are managed elsewhere."
  type        = bool
  default     = true
}

# --- Pub/Sub ------------------------------------------------------------------

variable "inbound_topic" {
  description = "Topic the raw emails are published to (Settings.inbound_topic)."
  type        = string
  default     = "emails"
}

variable "verdict_topic" {
  description = "Topic the verdicts are published to (Settings.verdict_topic)."
  type        = string
  default     = "verdicts"
}

variable "dead_letter_topic" {
  description = "Topic for rejected input and exhausted deliveries (Settings.dead_letter_topic)."
  type        = string
  default     = "dead-letter"
}

variable "score_email_subscription" {
  description = "Push subscription on the inbound topic that delivers to score_email (topology.PUSH_SUBSCRIPTION)."
  type        = string
  default     = "score-email-push"
}

variable "update_subscription" {
  description = "Push subscription on the verdict topic that delivers to update_profile (Settings.update_subscription)."
  type        = string
  default     = "update-profile-push"
}

variable "batch_subscription" {
  description = "Pull subscription on the inbound topic for the micro-batched worker (Settings.batch_subscription)."
  type        = string
  default     = "score-email-batch"
}

variable "topic_message_retention" {
  description = "How long each topic keeps published messages, for seeking a subscription back (e.g. to replay after a bad model)."
  type        = string
  default     = "604800s"
}

variable "subscription_message_retention" {
  description = "How long a subscription keeps unacknowledged messages."
  type        = string
  default     = "604800s"
}

variable "ack_deadline_seconds" {
  description = "Ack deadline of every subscription; for push, how long Pub/Sub waits for the function to answer."
  type        = number
  default     = 60

  validation {
    condition     = var.ack_deadline_seconds >= 10 && var.ack_deadline_seconds <= 600
    error_message = "ack_deadline_seconds must be between 10 and 600."
  }
}

variable "max_delivery_attempts" {
  description = "Deliveries of one message before the subscription's dead-letter policy moves it to the dead-letter topic (topology.MAX_DELIVERY_ATTEMPTS)."
  type        = number
  default     = 5

  validation {
    condition     = var.max_delivery_attempts >= 5 && var.max_delivery_attempts <= 100
    error_message = "Pub/Sub accepts 5 to 100 delivery attempts."
  }
}

variable "retry_minimum_backoff_seconds" {
  description = "Shortest wait before a failed delivery is retried (topology.RETRY_MIN_BACKOFF_S)."
  type        = number
  default     = 1
}

variable "retry_maximum_backoff_seconds" {
  description = "Longest wait before a failed delivery is retried (topology.RETRY_MAX_BACKOFF_S)."
  type        = number
  default     = 10

  validation {
    condition     = var.retry_maximum_backoff_seconds <= 600
    error_message = "Pub/Sub's maximum backoff is at most 600 seconds."
  }
}

variable "batch_worker_enabled" {
  description = "Create the batched worker's pull subscription, service account and grants. Its runtime is not deployed by this module yet. While the push subscription also exists, every email is scored twice."
  type        = bool
  default     = false
}

# --- Bigtable -----------------------------------------------------------------

variable "bigtable_instance" {
  description = "Bigtable instance ID (Settings.bigtable_instance)."
  type        = string
  default     = "mailscore"
}

variable "bigtable_instance_kind" {
  description = "PRODUCTION: an autoscaled cluster. DEVELOPMENT: one fixed node, the functional equivalent of the retired DEVELOPMENT instance type, for test projects."
  type        = string
  default     = "PRODUCTION"

  validation {
    condition     = contains(["PRODUCTION", "DEVELOPMENT"], var.bigtable_instance_kind)
    error_message = "bigtable_instance_kind must be PRODUCTION or DEVELOPMENT."
  }
}

variable "bigtable_min_nodes" {
  description = "Autoscaling floor of the cluster (PRODUCTION)."
  type        = number
  default     = 1
}

variable "bigtable_max_nodes" {
  description = "Autoscaling ceiling of the cluster (PRODUCTION)."
  type        = number
  default     = 3
}

variable "bigtable_cpu_target" {
  description = "CPU utilisation, in percent, the autoscaler aims for (PRODUCTION; 10-80)."
  type        = number
  default     = 60

  validation {
    condition     = var.bigtable_cpu_target >= 10 && var.bigtable_cpu_target <= 80
    error_message = "bigtable_cpu_target must be between 10 and 80."
  }
}

variable "bigtable_storage_type" {
  description = "SSD (the profile reads sit on the scoring latency path) or HDD."
  type        = string
  default     = "SSD"

  validation {
    condition     = contains(["SSD", "HDD"], var.bigtable_storage_type)
    error_message = "bigtable_storage_type must be SSD or HDD."
  }
}

variable "profile_table" {
  description = "Sender profile table (Settings.profile_table)."
  type        = string
  default     = "sender_profiles"
}

variable "dedupe_ttl_seconds" {
  description = "How long update_profile remembers an applied message id: the max age of column family d and MAILSCORE_DEDUPE_TTL_SECONDS (Settings.dedupe_ttl_seconds)."
  type        = number
  default     = 604800

  validation {
    condition     = var.dedupe_ttl_seconds >= 3600
    error_message = "dedupe_ttl_seconds must be at least an hour: redeliveries arrive up to the subscription's retention later."
  }
}

variable "deletion_protection" {
  description = "Protect the Bigtable instance and table from deletion (set false, apply, then destroy, to tear down)."
  type        = bool
  default     = true
}

# --- Storage ------------------------------------------------------------------

variable "model_bucket_name" {
  description = "Bucket for model artifacts; null means \"<project_id>-mailscore-models\"."
  type        = string
  default     = null
}

variable "claim_check_bucket_name" {
  description = "Bucket for claim-check payloads (emails too large for a message); null means \"<project_id>-mailscore-claim-check\"."
  type        = string
  default     = null
}

variable "source_bucket_name" {
  description = "Bucket for the function source packages; null means \"<project_id>-mailscore-fn-source\"."
  type        = string
  default     = null
}

variable "claim_check_prefix" {
  description = "Object prefix of claim-check payloads inside their bucket (MAILSCORE_CLAIM_CHECK_LOCATION = gs://<bucket>/<prefix>)."
  type        = string
  default     = "payloads"
}

variable "claim_check_retention_days" {
  description = "Days after which claim-check payloads are deleted."
  type        = number
  default     = 3

  validation {
    condition     = var.claim_check_retention_days >= 1
    error_message = "claim_check_retention_days must be at least 1."
  }
}

variable "model_noncurrent_versions_kept" {
  description = "Older versions of each model artifact kept in the versioned model bucket for rollback."
  type        = number
  default     = 10
}

variable "force_destroy_buckets" {
  description = "Let `terraform destroy` delete buckets that still hold objects."
  type        = bool
  default     = false
}

# --- Functions ----------------------------------------------------------------

variable "package_dir" {
  description = "Directory holding <function>.zip built by `make package`; null means out/package at the repository root."
  type        = string
  default     = null
}

variable "function_runtime" {
  description = "Cloud Functions runtime of both functions."
  type        = string
  default     = "python311"
}

variable "artifact_repository" {
  description = "Artifact Registry repository (created here) the function images are built into."
  type        = string
  default     = "mailscore-functions"
}

variable "dedicated_build_service_account" {
  description = "Build the functions as a dedicated least-privilege service account. False uses the project's default Cloud Build identity, which this module does not manage."
  type        = bool
  default     = true
}

variable "score_email" {
  description = "Sizing of the score_email function. concurrency is requests per instance (needs cpu >= 1 above 1)."
  type = object({
    memory          = optional(string, "1Gi")
    cpu             = optional(string, "1")
    concurrency     = optional(number, 8)
    min_instances   = optional(number, 1)
    max_instances   = optional(number, 20)
    timeout_seconds = optional(number, 60)
  })
  default = {}
}

variable "update_profile" {
  description = "Sizing of the update_profile function."
  type = object({
    memory          = optional(string, "512Mi")
    cpu             = optional(string, "1")
    concurrency     = optional(number, 16)
    min_instances   = optional(number, 0)
    max_instances   = optional(number, 10)
    timeout_seconds = optional(number, 60)
  })
  default = {}
}

variable "log_level" {
  description = "MAILSCORE_LOG_LEVEL of both functions."
  type        = string
  default     = "INFO"

  validation {
    condition     = contains(["DEBUG", "INFO", "WARNING", "ERROR"], var.log_level)
    error_message = "log_level must be DEBUG, INFO, WARNING or ERROR."
  }
}

variable "trusted_authserv_ids" {
  description = "Authserv-ids of YOUR receiving MTAs, whose Authentication-Results are believed (MAILSCORE_TRUSTED_AUTHSERV_IDS). The default only matches the project's synthetic emails: set it."
  type        = list(string)
  default     = ["mx.mailscore.example"]

  validation {
    condition     = length(var.trusted_authserv_ids) > 0
    error_message = "Name at least one trusted authserv-id."
  }
}

variable "score_email_env" {
  description = "Further MAILSCORE_* settings for score_email (e.g. thresholds, parse limits); only names Settings reads are accepted."
  type        = map(string)
  default     = {}
}

variable "update_profile_env" {
  description = "Further MAILSCORE_* settings for update_profile; only names Settings reads are accepted."
  type        = map(string)
  default     = {}
}

# --- Monitoring ---------------------------------------------------------------

variable "notification_channels" {
  description = "Monitoring notification channel IDs (projects/<p>/notificationChannels/<id>) every alert notifies."
  type        = list(string)
  default     = []
}

variable "alert_oldest_unacked_age_seconds" {
  description = "Alert when a subscription's oldest unacknowledged message is older than this."
  type        = number
  default     = 300
}

variable "alert_backlog_messages" {
  description = "Alert when a subscription holds more undelivered messages than this."
  type        = number
  default     = 10000
}

variable "alert_dead_letter_per_second" {
  description = "Alert when messages reach the dead-letter topic faster than this (per second, averaged over 5 minutes)."
  type        = number
  default     = 0.05
}

variable "alert_error_ratio" {
  description = "Alert when this fraction of a function's requests fail (5xx) over 5 minutes."
  type        = number
  default     = 0.05
}

variable "alert_p99_latency_ms" {
  description = "Alert when a function's p99 request latency exceeds this, per function."
  type        = map(number)
  default = {
    score_email    = 1000
    update_profile = 2000
  }
}
