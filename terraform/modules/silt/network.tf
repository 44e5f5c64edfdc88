# The module runs in an existing VPC (vpc_id + subnet_ids) or creates one over
# three availability zones with private subnets and an optional NAT gateway.

data "aws_region" "current" {}

data "aws_partition" "current" {}

data "aws_caller_identity" "current" {}

data "aws_availability_zones" "available" {
  # checkov:skip=CKV_AWS_394:Only read when availability_zones is empty, and only its first three names (sorted; a new zone sorts after them) are used; set availability_zones to pin them.
  count = length(var.availability_zones) > 0 ? 0 : 1
  state = "available"
}

locals {
  name       = "silt-${var.cluster_name}"
  create_vpc = var.vpc_id == null
  azs        = length(var.availability_zones) > 0 ? var.availability_zones : slice(data.aws_availability_zones.available[0].names, 0, 3)

  vpc_id             = local.create_vpc ? aws_vpc.this[0].id : var.vpc_id
  private_subnet_ids = local.create_vpc ? aws_subnet.private[*].id : var.subnet_ids
  route_table_ids    = local.create_vpc ? aws_route_table.private[*].id : var.private_route_table_ids
  nlb_subnet_ids     = length(var.nlb_subnet_ids) > 0 ? var.nlb_subnet_ids : local.private_subnet_ids

  # The etcd members sit in the first three private subnets, one per zone
  # (fewer only when subnet_ids is missing: a precondition on
  # data.aws_subnet.etcd then says so).
  etcd_subnet_ids = slice(local.private_subnet_ids, 0, min(3, length(local.private_subnet_ids)))

  tags = merge(var.tags, {
    "silt:cluster" = var.cluster_name
  })
}

resource "aws_vpc" "this" {
  # checkov:skip=CKV2_AWS_11:Flow logs are an account-wide operator choice (destination, retention, cost); silt's traffic is agents, etcd and S3 inside the VPC.
  count                = local.create_vpc ? 1 : 0
  cidr_block           = var.vpc_cidr
  enable_dns_support   = true
  enable_dns_hostnames = true

  tags = merge(local.tags, { Name = local.name })
}

# Lock down the default security group of the new VPC (nothing uses it).
resource "aws_default_security_group" "this" {
  count  = local.create_vpc ? 1 : 0
  vpc_id = aws_vpc.this[0].id

  tags = merge(local.tags, { Name = "${local.name}-default-unused" })
}

resource "aws_subnet" "private" {
  count             = local.create_vpc ? 3 : 0
  vpc_id            = aws_vpc.this[0].id
  availability_zone = local.azs[count.index]
  cidr_block        = cidrsubnet(var.vpc_cidr, 4, count.index)

  tags = merge(local.tags, { Name = "${local.name}-private-${local.azs[count.index]}" })
}

resource "aws_route_table" "private" {
  count  = local.create_vpc ? 3 : 0
  vpc_id = aws_vpc.this[0].id

  tags = merge(local.tags, { Name = "${local.name}-private-${local.azs[count.index]}" })
}

resource "aws_route_table_association" "private" {
  count          = local.create_vpc ? 3 : 0
  subnet_id      = aws_subnet.private[count.index].id
  route_table_id = aws_route_table.private[count.index].id
}

# --- Optional egress: public subnets, internet gateway, one NAT gateway -----

locals {
  create_nat = local.create_vpc && var.enable_nat_gateway
}

resource "aws_internet_gateway" "this" {
  count  = local.create_nat ? 1 : 0
  vpc_id = aws_vpc.this[0].id

  tags = merge(local.tags, { Name = local.name })
}

resource "aws_subnet" "public" {
  count                   = local.create_nat ? 3 : 0
  vpc_id                  = aws_vpc.this[0].id
  availability_zone       = local.azs[count.index]
  cidr_block              = cidrsubnet(var.vpc_cidr, 4, 8 + count.index)
  map_public_ip_on_launch = false

  tags = merge(local.tags, { Name = "${local.name}-public-${local.azs[count.index]}" })
}

resource "aws_route_table" "public" {
  count  = local.create_nat ? 1 : 0
  vpc_id = aws_vpc.this[0].id

  route {
    cidr_block = "0.0.0.0/0"
    gateway_id = aws_internet_gateway.this[0].id
  }

  tags = merge(local.tags, { Name = "${local.name}-public" })
}

resource "aws_route_table_association" "public" {
  count          = local.create_nat ? 3 : 0
  subnet_id      = aws_subnet.public[count.index].id
  route_table_id = aws_route_table.public[0].id
}

resource "aws_eip" "nat" {
  count  = local.create_nat ? 1 : 0
  domain = "vpc"

  tags = merge(local.tags, { Name = "${local.name}-nat" })
}

resource "aws_nat_gateway" "this" {
  count         = local.create_nat ? 1 : 0
  allocation_id = aws_eip.nat[0].id
  subnet_id     = aws_subnet.public[0].id

  tags = merge(local.tags, { Name = local.name })

  depends_on = [aws_internet_gateway.this]
}

resource "aws_route" "private_nat" {
  count                  = local.create_nat ? 3 : 0
  route_table_id         = aws_route_table.private[count.index].id
  destination_cidr_block = "0.0.0.0/0"
  nat_gateway_id         = aws_nat_gateway.this[0].id
}

# --- S3 gateway endpoint: bucket traffic stays off the NAT ----------------

resource "aws_vpc_endpoint" "s3" {
  count             = var.create_s3_gateway_endpoint ? 1 : 0
  vpc_id            = local.vpc_id
  service_name      = "com.amazonaws.${data.aws_region.current.name}.s3"
  vpc_endpoint_type = "Gateway"
  route_table_ids   = local.route_table_ids

  tags = merge(local.tags, { Name = "${local.name}-s3" })

  lifecycle {
    precondition {
      condition     = length(local.route_table_ids) > 0
      error_message = "With an existing VPC and create_s3_gateway_endpoint = true, private_route_table_ids must list the private subnets' route tables (or set create_s3_gateway_endpoint = false if they already have an S3 gateway endpoint)."
    }
  }
}

# --- Security groups --------------------------------------------------------
# Nothing is open to 0.0.0.0/0 except egress; Kafka and the HTTP API admit
# only var.allowed_cidrs; etcd admits only the agents, the Lambda functions
# and its own members.

resource "aws_security_group" "nlb" {
  name_prefix = "${local.name}-nlb-"
  description = "silt ${var.cluster_name} load balancer: Kafka and HTTP API from allowed_cidrs"
  vpc_id      = local.vpc_id

  tags = merge(local.tags, { Name = "${local.name}-nlb" })

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_security_group" "agent" {
  name_prefix = "${local.name}-agent-"
  description = "silt ${var.cluster_name} agents"
  vpc_id      = local.vpc_id

  tags = merge(local.tags, { Name = "${local.name}-agent" })

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_security_group" "lambda" {
  count       = var.enable_lambda ? 1 : 0
  name_prefix = "${local.name}-lambda-"
  description = "silt ${var.cluster_name} Lambda functions (no ingress)"
  vpc_id      = local.vpc_id

  tags = merge(local.tags, { Name = "${local.name}-lambda" })

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_security_group" "etcd" {
  name_prefix = "${local.name}-etcd-"
  description = "silt ${var.cluster_name} etcd members: 2379 from agents, functions and members, 2380 from members"
  vpc_id      = local.vpc_id

  tags = merge(local.tags, { Name = "${local.name}-etcd" })

  lifecycle {
    create_before_destroy = true
  }
}

# Load balancer: clients in, agents out.
resource "aws_security_group_rule" "nlb_kafka_in" {
  type              = "ingress"
  description       = "Kafka bootstrap from allowed_cidrs"
  security_group_id = aws_security_group.nlb.id
  protocol          = "tcp"
  from_port         = var.kafka_port
  to_port           = var.kafka_port
  cidr_blocks       = var.allowed_cidrs
}

resource "aws_security_group_rule" "nlb_rest_in" {
  count             = var.enable_http_api ? 1 : 0
  type              = "ingress"
  description       = "silt HTTP API from allowed_cidrs"
  security_group_id = aws_security_group.nlb.id
  protocol          = "tcp"
  from_port         = 8082
  to_port           = 8082
  cidr_blocks       = var.allowed_cidrs
}

resource "aws_security_group_rule" "nlb_to_agents" {
  for_each = toset(compact([
    tostring(var.kafka_port),
    tostring(var.http_port),
    var.enable_http_api ? "8082" : "",
  ]))
  type                     = "egress"
  description              = "to the agents on ${each.value}"
  security_group_id        = aws_security_group.nlb.id
  protocol                 = "tcp"
  from_port                = tonumber(each.value)
  to_port                  = tonumber(each.value)
  source_security_group_id = aws_security_group.agent.id
}

# Agents: Kafka from clients directly (clients connect to each agent's
# advertised private address after bootstrap) and through the NLB; health
# and the HTTP API only through the NLB.
resource "aws_security_group_rule" "agent_kafka_in" {
  type              = "ingress"
  description       = "Kafka from allowed_cidrs (advertised agent addresses)"
  security_group_id = aws_security_group.agent.id
  protocol          = "tcp"
  from_port         = var.kafka_port
  to_port           = var.kafka_port
  cidr_blocks       = var.allowed_cidrs
}

resource "aws_security_group_rule" "agent_from_nlb" {
  for_each = toset(compact([
    tostring(var.kafka_port),
    tostring(var.http_port),
    var.enable_http_api ? "8082" : "",
  ]))
  type                     = "ingress"
  description              = "from the load balancer on ${each.value}"
  security_group_id        = aws_security_group.agent.id
  protocol                 = "tcp"
  from_port                = tonumber(each.value)
  to_port                  = tonumber(each.value)
  source_security_group_id = aws_security_group.nlb.id
}

resource "aws_security_group_rule" "agent_egress" {
  # checkov:skip=CKV_AWS_382:Agents reach S3 (gateway endpoint prefix list), etcd, CloudWatch Logs and artifact downloads through the NAT; egress only.
  type              = "egress"
  description       = "S3, etcd, CloudWatch Logs, artifact downloads"
  security_group_id = aws_security_group.agent.id
  protocol          = "-1"
  from_port         = 0
  to_port           = 0
  cidr_blocks       = ["0.0.0.0/0"]
}

resource "aws_security_group_rule" "lambda_egress" {
  # checkov:skip=CKV_AWS_382:The functions reach S3 and etcd; egress only.
  count             = var.enable_lambda ? 1 : 0
  type              = "egress"
  description       = "S3 and etcd"
  security_group_id = aws_security_group.lambda[0].id
  protocol          = "-1"
  from_port         = 0
  to_port           = 0
  cidr_blocks       = ["0.0.0.0/0"]
}

# etcd: clients on 2379, peers on 2379/2380.
resource "aws_security_group_rule" "etcd_client_from_agents" {
  type                     = "ingress"
  description              = "etcd clients: silt agents"
  security_group_id        = aws_security_group.etcd.id
  protocol                 = "tcp"
  from_port                = 2379
  to_port                  = 2379
  source_security_group_id = aws_security_group.agent.id
}

resource "aws_security_group_rule" "etcd_client_from_lambda" {
  count                    = var.enable_lambda ? 1 : 0
  type                     = "ingress"
  description              = "etcd clients: silt Lambda functions"
  security_group_id        = aws_security_group.etcd.id
  protocol                 = "tcp"
  from_port                = 2379
  to_port                  = 2379
  source_security_group_id = aws_security_group.lambda[0].id
}

resource "aws_security_group_rule" "etcd_from_members" {
  type                     = "ingress"
  description              = "etcd members: client and peer ports"
  security_group_id        = aws_security_group.etcd.id
  protocol                 = "tcp"
  from_port                = 2379
  to_port                  = 2380
  source_security_group_id = aws_security_group.etcd.id
}

resource "aws_security_group_rule" "etcd_egress" {
  # checkov:skip=CKV_AWS_382:Members reach each other, S3 (snapshots), CloudWatch Logs and the etcd release download; egress only.
  type              = "egress"
  description       = "peers, S3 snapshots, CloudWatch Logs, release download"
  security_group_id = aws_security_group.etcd.id
  protocol          = "-1"
  from_port         = 0
  to_port           = 0
  cidr_blocks       = ["0.0.0.0/0"]
}
