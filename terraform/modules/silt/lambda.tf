# The two functions of lambda/: silt-http behind a function URL with IAM
# auth, silt-jobs on an EventBridge schedule. Both run in the private subnets
# with a security group etcd admits on 2379, and reach the bucket through
# the S3 gateway endpoint.

locals {
  silt_http_name = "silt-http-${var.cluster_name}"
  silt_jobs_name = "silt-jobs-${var.cluster_name}"

  # s3://bucket/key -> [bucket, key]
  silt_http_zip = var.silt_http_zip_url == null ? ["", ""] : regex("^s3://([^/]+)/(.+)$", var.silt_http_zip_url)
  silt_jobs_zip = var.silt_jobs_zip_url == null ? ["", ""] : regex("^s3://([^/]+)/(.+)$", var.silt_jobs_zip_url)

  lambda_environment = merge(var.lambda_environment, local.lambda_etcd_env, {
    SILT_ETCD    = local.etcd_endpoints
    SILT_BUCKET  = local.bucket_url
    SILT_CLUSTER = var.cluster_name
  })
}

resource "aws_cloudwatch_log_group" "silt_http" {
  # checkov:skip=CKV_AWS_338:Retention is a variable (30 days by default).
  # checkov:skip=CKV_AWS_158:Encrypted by CloudWatch Logs by default; with KMS when logs_kms_key_arn is set.
  count             = var.enable_lambda ? 1 : 0
  name              = "/aws/lambda/${local.silt_http_name}"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.logs_kms_key_arn

  tags = local.tags
}

resource "aws_cloudwatch_log_group" "silt_jobs" {
  # checkov:skip=CKV_AWS_338:Retention is a variable (30 days by default).
  # checkov:skip=CKV_AWS_158:Encrypted by CloudWatch Logs by default; with KMS when logs_kms_key_arn is set.
  count             = var.enable_lambda ? 1 : 0
  name              = "/aws/lambda/${local.silt_jobs_name}"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.logs_kms_key_arn

  tags = local.tags
}

resource "aws_lambda_function" "silt_http" {
  # checkov:skip=CKV_AWS_115:No reserved concurrency: reserving would take from the account's pool (as low as 10 in new accounts); set it in the console or a wrapper if needed.
  # checkov:skip=CKV_AWS_116:Invoked synchronously through its function URL; a dead-letter queue only applies to asynchronous invocations.
  # checkov:skip=CKV_AWS_173:Lambda encrypts the environment at rest with its own key; it holds the etcd client key (as the Terraform state does), readable only by principals allowed lambda:GetFunctionConfiguration.
  # checkov:skip=CKV_AWS_272:Code signing needs a signing profile the operator owns; the artifact comes from an S3 location the operator controls.
  count         = var.enable_lambda ? 1 : 0
  function_name = local.silt_http_name
  description   = "silt HTTP API of cluster ${var.cluster_name}"
  role          = aws_iam_role.silt_http[0].arn
  runtime       = "provided.al2023"
  handler       = "bootstrap"
  architectures = ["arm64"]
  s3_bucket     = local.silt_http_zip[0]
  s3_key        = local.silt_http_zip[1]
  memory_size   = var.silt_http_memory_mb
  timeout       = 60

  environment {
    variables = merge(local.lambda_environment, {
      SILT_REST_MAX_REQUEST_BYTES = "6MB"
      SILT_REST_FETCH_MAX_BYTES   = "3MB"
    })
  }

  vpc_config {
    subnet_ids         = local.private_subnet_ids
    security_group_ids = [aws_security_group.lambda[0].id]
  }

  tracing_config {
    mode = "PassThrough"
  }

  tags = local.tags

  lifecycle {
    precondition {
      condition     = var.silt_http_zip_url != null
      error_message = "enable_lambda needs silt_http_zip_url and silt_jobs_zip_url (s3://bucket/key.zip), or set enable_lambda = false."
    }
  }

  depends_on = [
    aws_cloudwatch_log_group.silt_http,
    aws_iam_role_policy.silt_http,
    aws_iam_role_policy_attachment.silt_http_vpc,
    aws_vpc_endpoint.s3,
  ]
}

resource "aws_lambda_function_url" "silt_http" {
  count              = var.enable_lambda ? 1 : 0
  function_name      = aws_lambda_function.silt_http[0].function_name
  authorization_type = "AWS_IAM"
}

resource "aws_lambda_function" "silt_jobs" {
  # checkov:skip=CKV_AWS_115:Reserved concurrency is jobs_reserved_concurrency (none by default): reserving takes from the account's pool, which cannot go below 10 unreserved; the passes take etcd locks, so overlapping runs are safe.
  # checkov:skip=CKV_AWS_116:A failed pass is retried by the next scheduled run (the jobs are idempotent under etcd locks); nothing to dead-letter.
  # checkov:skip=CKV_AWS_173:Lambda encrypts the environment at rest with its own key; it holds the etcd client key (as the Terraform state does), readable only by principals allowed lambda:GetFunctionConfiguration.
  # checkov:skip=CKV_AWS_272:Code signing needs a signing profile the operator owns; the artifact comes from an S3 location the operator controls.
  count                          = var.enable_lambda ? 1 : 0
  function_name                  = local.silt_jobs_name
  description                    = "silt retention, compaction, cleaner, table export and object GC of cluster ${var.cluster_name}"
  role                           = aws_iam_role.silt_jobs[0].arn
  runtime                        = "provided.al2023"
  handler                        = "bootstrap"
  architectures                  = ["arm64"]
  s3_bucket                      = local.silt_jobs_zip[0]
  s3_key                         = local.silt_jobs_zip[1]
  memory_size                    = var.silt_jobs_memory_mb
  timeout                        = var.silt_jobs_timeout_seconds
  reserved_concurrent_executions = var.jobs_reserved_concurrency

  environment {
    variables = local.lambda_environment
  }

  vpc_config {
    subnet_ids         = local.private_subnet_ids
    security_group_ids = [aws_security_group.lambda[0].id]
  }

  tracing_config {
    mode = "PassThrough"
  }

  tags = local.tags

  lifecycle {
    precondition {
      condition     = var.silt_jobs_zip_url != null
      error_message = "enable_lambda needs silt_http_zip_url and silt_jobs_zip_url (s3://bucket/key.zip), or set enable_lambda = false."
    }
  }

  depends_on = [
    aws_cloudwatch_log_group.silt_jobs,
    aws_iam_role_policy.silt_jobs,
    aws_iam_role_policy_attachment.silt_jobs_vpc,
    aws_vpc_endpoint.s3,
  ]
}

resource "aws_cloudwatch_event_rule" "silt_jobs" {
  count               = var.enable_lambda ? 1 : 0
  name                = local.silt_jobs_name
  description         = "Runs silt-jobs of cluster ${var.cluster_name}"
  schedule_expression = var.jobs_schedule

  tags = local.tags
}

resource "aws_cloudwatch_event_target" "silt_jobs" {
  count = var.enable_lambda ? 1 : 0
  rule  = aws_cloudwatch_event_rule.silt_jobs[0].name
  arn   = aws_lambda_function.silt_jobs[0].arn
}

resource "aws_lambda_permission" "silt_jobs_schedule" {
  count         = var.enable_lambda ? 1 : 0
  statement_id  = "AllowEventBridgeSchedule"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.silt_jobs[0].function_name
  principal     = "events.amazonaws.com"
  source_arn    = aws_cloudwatch_event_rule.silt_jobs[0].arn
}
