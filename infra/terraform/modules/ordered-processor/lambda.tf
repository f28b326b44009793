locals {
  function_name = "${var.name}-processor"
}

# Created before the function so that Lambda never creates it without a retention.
resource "aws_cloudwatch_log_group" "processor" {
  name              = "/aws/lambda/${local.function_name}"
  retention_in_days = var.log_retention_days
}

resource "aws_lambda_function" "processor" {
  function_name    = local.function_name
  role             = aws_iam_role.processor.arn
  runtime          = var.runtime
  handler          = var.handler
  filename         = var.lambda_zip
  source_code_hash = filebase64sha256(var.lambda_zip)
  memory_size      = var.memory_mb
  timeout          = var.timeout_s

  environment {
    variables = merge(var.environment, {
      CHECKPOINT_TABLE             = aws_dynamodb_table.checkpoints.name
      POISON_QUEUE_URL             = aws_sqs_queue.poison.id
      MAX_ATTEMPTS                 = tostring(var.max_attempts)
      POWERTOOLS_SERVICE_NAME      = var.name
      POWERTOOLS_METRICS_NAMESPACE = "streamline"
      POWERTOOLS_LOG_LEVEL         = var.log_level
    })
  }

  depends_on = [aws_cloudwatch_log_group.processor, aws_iam_role_policy.processor]
}
