# silt agents: an autoscaling group of plain EC2 instances (systemd runs
# `silt agent`) spread over the private subnets, behind a network load
# balancer for Kafka bootstrap (and the HTTP API when enabled).

locals {
  bucket_url = "s3://${aws_s3_bucket.this.id}/${var.bucket_prefix}"
  rest_port  = 8082
  rest_flag  = var.enable_http_api ? "--rest 0.0.0.0:${local.rest_port}" : ""

  # A pinned image, or the latest Amazon Linux 2023 at each plan (a new
  # release then makes a new launch template version and rolls the agents).
  agent_ami_id = var.agent_ami_id != null ? var.agent_ami_id : data.aws_ssm_parameter.al2023_ami.value
}

resource "aws_cloudwatch_log_group" "agent" {
  # checkov:skip=CKV_AWS_338:Retention is a variable (30 days by default); silt's data is in the bucket, not the logs.
  # checkov:skip=CKV_AWS_158:Encrypted by CloudWatch Logs by default; with KMS when logs_kms_key_arn is set.
  name              = "/silt/${var.cluster_name}/agent"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.logs_kms_key_arn

  tags = local.tags
}

resource "aws_launch_template" "agent" {
  name_prefix            = "${local.name}-agent-"
  description            = "silt agent of cluster ${var.cluster_name}"
  image_id               = local.agent_ami_id
  instance_type          = var.agent_instance_type
  ebs_optimized          = true
  update_default_version = true
  vpc_security_group_ids = [aws_security_group.agent.id]

  iam_instance_profile {
    arn = aws_iam_instance_profile.agent.arn
  }

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
    instance_metadata_tags      = "disabled"
  }

  monitoring {
    enabled = true
  }

  block_device_mappings {
    device_name = "/dev/xvda"

    ebs {
      volume_type           = "gp3"
      volume_size           = var.agent_root_volume_size
      encrypted             = true
      kms_key_id            = var.ebs_kms_key_arn
      delete_on_termination = true
    }
  }

  user_data = base64encode(templatefile("${path.module}/templates/agent.sh.tftpl", {
    silt_artifact_url = var.silt_artifact_url
    region            = data.aws_region.current.name
    cluster           = var.cluster_name
    etcd_endpoints    = local.etcd_endpoints
    bucket_url        = local.bucket_url
    listen_host       = "0.0.0.0"
    kafka_port        = var.kafka_port
    http_port         = var.http_port
    rest_flag         = local.rest_flag
    log_group         = aws_cloudwatch_log_group.agent.name
    etcd_env          = local.agent_etcd_env
    etcd_ca_pem       = local.etcd_ca_cert_pem
    etcd_cert_pem     = local.etcd_client_cert_pem
    etcd_key_pem      = local.etcd_client_key_pem
  }))

  tag_specifications {
    resource_type = "instance"
    tags          = merge(local.tags, { Name = "${local.name}-agent" })
  }

  tag_specifications {
    resource_type = "volume"
    tags          = merge(local.tags, { Name = "${local.name}-agent" })
  }

  tags = local.tags
}

resource "aws_autoscaling_group" "agent" {
  name_prefix               = "${local.name}-agent-"
  vpc_zone_identifier       = local.private_subnet_ids
  min_size                  = var.agent_min_size
  max_size                  = var.agent_max_size
  desired_capacity          = var.agent_desired_capacity
  health_check_type         = "ELB"
  health_check_grace_period = 300
  default_instance_warmup   = 120
  target_group_arns = concat(
    [aws_lb_target_group.kafka.arn],
    aws_lb_target_group.rest[*].arn,
  )

  launch_template {
    id      = aws_launch_template.agent.id
    version = aws_launch_template.agent.latest_version
  }

  # A new launch template version (new silt_artifact_url, instance type,
  # image: agent_ami_id or, unpinned, a new Amazon Linux release; settings)
  # replaces the agents a few at a time.
  instance_refresh {
    strategy = "Rolling"

    preferences {
      min_healthy_percentage = 66
      instance_warmup        = 120
    }
  }

  dynamic "tag" {
    for_each = merge(local.tags, { Name = "${local.name}-agent" })

    content {
      key                 = tag.key
      value               = tag.value
      propagate_at_launch = true
    }
  }

  lifecycle {
    precondition {
      condition     = var.agent_min_size <= var.agent_desired_capacity && var.agent_desired_capacity <= var.agent_max_size
      error_message = "The agent sizes must satisfy agent_min_size <= agent_desired_capacity <= agent_max_size."
    }
  }

  # Agents need etcd to start; creating them after the members avoids a
  # round of restarts at first apply. They also need a route out (NAT, when
  # the module creates one) for the artifact, the S3 endpoint and their
  # role's policies from their first boot.
  depends_on = [
    aws_instance.etcd,
    aws_volume_attachment.etcd,
    aws_route_table_association.private,
    aws_route.private_nat,
    aws_vpc_endpoint.s3,
    aws_iam_role_policy.agent,
    aws_iam_role_policy_attachment.agent_ssm,
  ]
}

# --- Network load balancer ----------------------------------------------------

resource "aws_lb" "this" {
  # checkov:skip=CKV_AWS_91:Access logs of a TCP load balancer record connections only; silt logs requests itself. Enable with an operator-owned log bucket if needed.
  # checkov:skip=CKV_AWS_150:Deletion protection would block terraform destroy; the load balancer holds no state.
  name                             = local.name
  internal                         = var.nlb_internal
  load_balancer_type               = "network"
  subnets                          = local.nlb_subnet_ids
  security_groups                  = [aws_security_group.nlb.id]
  enable_cross_zone_load_balancing = true

  tags = local.tags

  lifecycle {
    precondition {
      condition     = var.nlb_internal || length(var.nlb_subnet_ids) > 0
      error_message = "An internet-facing load balancer (nlb_internal = false) needs public nlb_subnet_ids."
    }
  }
}

resource "aws_lb_target_group" "kafka" {
  name                 = "${local.name}-kafka"
  port                 = var.kafka_port
  protocol             = "TCP"
  vpc_id               = local.vpc_id
  target_type          = "instance"
  deregistration_delay = 30

  health_check {
    protocol            = "HTTP"
    port                = tostring(var.http_port)
    path                = "/health"
    interval            = 10
    healthy_threshold   = 2
    unhealthy_threshold = 3
  }

  tags = local.tags
}

resource "aws_lb_listener" "kafka" {
  load_balancer_arn = aws_lb.this.arn
  port              = var.kafka_port
  protocol          = "TCP"

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.kafka.arn
  }

  tags = local.tags
}

resource "aws_lb_target_group" "rest" {
  count                = var.enable_http_api ? 1 : 0
  name                 = "${local.name}-rest"
  port                 = local.rest_port
  protocol             = "TCP"
  vpc_id               = local.vpc_id
  target_type          = "instance"
  deregistration_delay = 30

  health_check {
    protocol            = "HTTP"
    port                = tostring(var.http_port)
    path                = "/health"
    interval            = 10
    healthy_threshold   = 2
    unhealthy_threshold = 3
  }

  tags = local.tags
}

resource "aws_lb_listener" "rest" {
  count             = var.enable_http_api ? 1 : 0
  load_balancer_arn = aws_lb.this.arn
  port              = local.rest_port
  protocol          = "TCP"

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.rest[0].arn
  }

  tags = local.tags
}
