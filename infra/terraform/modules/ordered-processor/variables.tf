# The module's inputs: the function's package and handler, the sources it reads, and every
# mapping setting. Defaults are the ordered-processing ones (README, Infrastructure).

variable "name" {
  description = "Prefix of every resource's name."
  type        = string
}

variable "kinesis_stream_arns" {
  description = "Kinesis streams to read, by a name of your choice (it names the mapping, and the consumer when enhanced_fan_out is on)."
  type        = map(string)
  default     = {}
}

variable "dynamodb_stream_arns" {
  description = "DynamoDB table streams to read (the table's stream_arn), by a name of your choice; names must differ from kinesis_stream_arns'."
  type        = map(string)
  default     = {}
}

variable "enhanced_fan_out" {
  description = "Read each Kinesis stream through its own enhanced fan-out consumer (dedicated 2 MB/s per shard, pushed records) instead of sharing the stream's read throughput."
  type        = bool
  default     = false
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
  description = "Path of the function's deployment package (a zip holding your handler and the processor package)."
  type        = string
}

variable "handler" {
  description = "The function's handler, MODULE.FUNCTION inside the package (e.g. orders.handler.handler)."
  type        = string
}

variable "runtime" {
  description = "The function's Lambda runtime."
  type        = string
  default     = "python3.12"
}

variable "environment" {
  description = "More environment variables for the function (the module sets CHECKPOINT_TABLE, POISON_QUEUE_URL, MAX_ATTEMPTS and Powertools' own)."
  type        = map(string)
  default     = {}
}

variable "policy_statements" {
  description = "More IAM statements for the function's role, as in a policy document: what your handler itself touches (a table it writes, say)."
  type        = any
  default     = []
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
