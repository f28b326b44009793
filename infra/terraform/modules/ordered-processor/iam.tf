# The function's execution role: exactly the actions the processor and its mappings use, each
# on the ARN of the resource concerned, plus var.policy_statements for the handler's own needs. Lambda polls the sources and writes on-failure
# records with this role (sqs:SendMessage, sns:Publish or s3:PutObject, for the chosen
# destination only); the handler reads and writes checkpoints and parks poison records.
# https://docs.aws.amazon.com/lambda/latest/dg/with-kinesis.html#events-kinesis-permissions
# https://docs.aws.amazon.com/lambda/latest/dg/with-ddb.html#events-dynamodb-permissions
# Statements for a kind of source only when there is one: IAM refuses an empty Resource list.

resource "aws_iam_role" "processor" {
  name = "${var.name}-processor"

  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "lambda.amazonaws.com" }
      Action    = "sts:AssumeRole"
    }]
  })
}

resource "aws_iam_role_policy" "processor" {
  name = "${var.name}-processor"
  role = aws_iam_role.processor.id

  policy = jsonencode({
    Version = "2012-10-17"
    Statement = concat([
      {
        # processor/checkpoint.py: BatchGetItem to load a batch's positions, UpdateItem for
        # the conditional forward-only write, alone or as one item of TransactWriteItems
        # (authorised per item action).
        Sid      = "ReadWriteCheckpoints"
        Effect   = "Allow"
        Action   = ["dynamodb:BatchGetItem", "dynamodb:UpdateItem"]
        Resource = [aws_dynamodb_table.checkpoints.arn]
      },
      {
        # The handler parks poison records; Lambda itself sends on-failure records when the
        # on-failure destination is the queue.
        Sid    = "SendToQueues"
        Effect = "Allow"
        Action = ["sqs:SendMessage"]
        Resource = concat(
          [aws_sqs_queue.poison.arn],
          var.on_failure_destination == "sqs" ? [aws_sqs_queue.on_failure.arn] : [],
        )
      },
      {
        Sid      = "WriteOwnLogs"
        Effect   = "Allow"
        Action   = ["logs:CreateLogStream", "logs:PutLogEvents"]
        Resource = ["${aws_cloudwatch_log_group.processor.arn}:*"]
      },
      ], [
      for statement in [
        {
          Sid    = "ReadKinesisStreams"
          Effect = "Allow"
          Action = [
            "kinesis:DescribeStream",
            "kinesis:DescribeStreamSummary",
            "kinesis:GetRecords",
            "kinesis:GetShardIterator",
            "kinesis:ListShards",
          ]
          Resource = values(var.kinesis_stream_arns)
        },
        {
          # Through a consumer Lambda subscribes to each shard with the consumer's ARN.
          # https://docs.aws.amazon.com/lambda/latest/dg/with-kinesis-configure.html#services-kinesis-configure-efo
          Sid      = "ReadThroughConsumers"
          Effect   = "Allow"
          Action   = ["kinesis:DescribeStreamConsumer", "kinesis:SubscribeToShard"]
          Resource = [for consumer in aws_kinesis_stream_consumer.source : consumer.arn]
        },
        {
          Sid    = "ReadDynamoDBStreams"
          Effect = "Allow"
          Action = [
            "dynamodb:DescribeStream",
            "dynamodb:GetRecords",
            "dynamodb:GetShardIterator",
            "dynamodb:ListStreams",
          ]
          Resource = values(var.dynamodb_stream_arns)
        },
      ] : statement if length(statement.Resource) > 0
      ], [
      # The on-failure topic or bucket, when chosen (destinations.tf): what Lambda needs to
      # write the on-failure record there, on that resource only.
      # https://docs.aws.amazon.com/lambda/latest/dg/kinesis-on-failure-destination.html
      for statement in [
        {
          Sid      = "PublishOnFailure"
          Effect   = "Allow"
          Action   = ["sns:Publish"]
          Resource = aws_sns_topic.on_failure[*].arn
        },
        {
          Sid      = "ListOnFailureBucket"
          Effect   = "Allow"
          Action   = ["s3:ListBucket"]
          Resource = aws_s3_bucket.on_failure[*].arn
        },
        {
          Sid      = "PutOnFailureObjects"
          Effect   = "Allow"
          Action   = ["s3:PutObject"]
          Resource = [for arn in aws_s3_bucket.on_failure[*].arn : "${arn}/*"]
        },
      ] : statement if length(statement.Resource) > 0
    ], var.policy_statements)
  })
}
