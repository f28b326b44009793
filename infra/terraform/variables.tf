variable "name" {
  description = "Prefix of every resource name (stream, tables, queues, function, role, alarms)."
  type        = string
  default     = "streamline"

  validation {
    condition     = can(regex("^[A-Za-z][A-Za-z0-9-]{0,31}$", var.name))
    error_message = "name: a letter, then up to 31 letters, digits or hyphens."
  }
}

variable "region" {
  description = "AWS region."
  type        = string
  default     = "us-east-1"
}

variable "tags" {
  description = "Tags added to every resource (the provider's default_tags)."
  type        = map(string)
  default     = {}
}

# --- endpoints -------------------------------------------------------------------------

variable "endpoint_url" {
  description = "One endpoint for every service (AWS_ENDPOINT_URL: LocalStack, moto). null: AWS."
  type        = string
  default     = null
}

variable "endpoints" {
  description = "Per-service endpoints, overriding endpoint_url: keys cloudwatch, dynamodb, iam, kinesis, lambda, logs, s3, sns, sqs, sts."
  type        = map(string)
  default     = {}

  validation {
    condition = alltrue([
      for service in keys(var.endpoints) :
      contains(["cloudwatch", "dynamodb", "iam", "kinesis", "lambda", "logs", "s3", "sns", "sqs", "sts"], service)
    ])
    error_message = "endpoints: keys must be among cloudwatch, dynamodb, iam, kinesis, lambda, logs, s3, sns, sqs, sts."
  }
}

variable "emulator" {
  description = "Skip the provider's credential, account and metadata checks (emulators only)."
  type        = bool
  default     = false
}

# --- Kinesis ---------------------------------------------------------------------------

variable "stream_mode" {
  description = "Kinesis capacity mode: PROVISIONED (shard_count shards) or ON_DEMAND."
  type        = string
  default     = "PROVISIONED"

  validation {
    condition     = contains(["PROVISIONED", "ON_DEMAND"], var.stream_mode)
    error_message = "stream_mode: PROVISIONED or ON_DEMAND."
  }
}

variable "shard_count" {
  description = "Shards of the Kinesis stream when stream_mode is PROVISIONED."
  type        = number
  default     = 2
}

variable "stream_retention_hours" {
  description = "Kinesis retention (24-8760 hours)."
  type        = number
  default     = 24
}

# --- event source mappings (both sources) ----------------------------------------------

variable "starting_position" {
  description = "Where a new mapping starts reading: TRIM_HORIZON or LATEST."
  type        = string
  default     = "TRIM_HORIZON"

  validation {
    condition     = contains(["TRIM_HORIZON", "LATEST"], var.starting_position)
    error_message = "starting_position: TRIM_HORIZON or LATEST."
  }
}

variable "batch_size" {
  description = "Records per invocation at most (1-10000)."
  type        = number
  default     = 100
}

variable "batching_window_s" {
  description = "MaximumBatchingWindowInSeconds: how long the mapping gathers records (0-300)."
  type        = number
  default     = 1
}

variable "maximum_retry_attempts" {
  description = "Retries of a failing batch before it goes to the on-failure queue (-1: until the record expires)."
  type        = number
  default     = 10
}

variable "maximum_record_age_s" {
  description = "Records older than this go to the on-failure queue unprocessed (-1: the stream's retention, else 60-604800)."
  type        = number
  default     = 21600
}

variable "parallelization_factor" {
  description = "Concurrent batches per shard (1-10); per-key order still holds."
  type        = number
  default     = 1
}

variable "bisect_batch_on_function_error" {
  description = "Split a batch in two and retry the halves when the function errors."
  type        = bool
  default     = true
}

variable "tumbling_window_in_seconds" {
  description = "TumblingWindowInSeconds: state-passing windows of this length (1-900); 0: off."
  type        = number
  default     = 0

  validation {
    condition     = var.tumbling_window_in_seconds == floor(var.tumbling_window_in_seconds) && var.tumbling_window_in_seconds >= 0 && var.tumbling_window_in_seconds <= 900
    error_message = "tumbling_window_in_seconds: a whole number, 0 (off) or 1-900."
  }
}

variable "filter_criteria" {
  description = "Event filter patterns (FilterCriteria): JSON strings or objects; a record matching none is dropped. []: every record."
  type        = any
  default     = []

  # Lambda refuses more than 5 filters per mapping (its default quota) and any pattern that is
  # not a JSON object. concat() takes lists and tuples only: a lone pattern is refused too.
  validation {
    condition = can(concat(var.filter_criteria, [])) && try(length(var.filter_criteria) <= 5 && alltrue([
      for pattern in var.filter_criteria : can(keys(try(jsondecode(pattern), pattern)))
    ]), false)
    error_message = "filter_criteria: a list of at most 5 patterns, each a JSON object or a string holding one."
  }
}

variable "enhanced_fan_out" {
  description = "Map the Kinesis stream through an enhanced fan-out consumer (aws_kinesis_stream_consumer) instead of reading it directly."
  type        = bool
  default     = false
}

variable "metrics_config" {
  description = "Turn on the mappings' EventCount metrics (MetricsConfig)."
  type        = bool
  default     = false
}

variable "on_failure_destination" {
  description = "Where exhausted batches go: sqs (the on-failure queue), sns (a topic) or s3 (a bucket); the topic or bucket is created when chosen."
  type        = string
  default     = "sqs"

  validation {
    condition     = contains(["sqs", "sns", "s3"], var.on_failure_destination)
    error_message = "on_failure_destination: sqs, sns or s3."
  }
}

# --- the function ----------------------------------------------------------------------

variable "lambda_zip" {
  description = "The deployment package (make build/lambda.zip)."
  type        = string
  default     = "../../build/lambda.zip"
}

variable "max_attempts" {
  description = "Failed attempts at one record before the processor parks it on the poison queue."
  type        = number
  default     = 3
}

variable "memory_mb" {
  description = "Lambda memory size in MB."
  type        = number
  default     = 256
}

variable "timeout_s" {
  description = "Lambda timeout in seconds."
  type        = number
  default     = 30
}

variable "log_level" {
  description = "POWERTOOLS_LOG_LEVEL of the function."
  type        = string
  default     = "INFO"
}

variable "log_retention_days" {
  description = "Retention of the function's CloudWatch log group."
  type        = number
  default     = 14
}

# --- alarms ----------------------------------------------------------------------------

variable "iterator_age_alarm_ms" {
  description = "Alarm when the oldest unprocessed record is older than this (IteratorAge, ms)."
  type        = number
  default     = 60000
}

variable "alarm_actions" {
  description = "ARNs notified when an alarm fires (an SNS topic, say)."
  type        = list(string)
  default     = []
}
