"""provision.yml against a local moto server: what it creates, idempotence, check mode."""
from __future__ import annotations

import base64
import json

import pytest

from music_devkit import aws as h

# Both modules reset the shared moto server at their start: keep them on one xdist worker
# (pytest -n N --dist loadgroup); without xdist they run one after the other anyway.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("moto_aws_pipeline")]

PROJECT = "music"
ACCOUNT = "123456789012"
SOURCES_BUCKET = f"{PROJECT}-sources-{ACCOUNT}"
SSM_BUCKET = f"{PROJECT}-ssm-{ACCOUNT}"
RSYNC_CIDRS = ["203.0.113.7/32", "198.51.100.0/24"]
ADMIN_CIDRS = ["192.0.2.10/32"]


@pytest.fixture(scope="module")
def provisioned(moto_server):
    """Provision from an empty account, run again, then run in check mode."""
    moto_server.reset()
    extra = ["-e", json.dumps({"music_rsync_allowed_cidrs": RSYNC_CIDRS, "music_admin_cidrs": ADMIN_CIDRS})]
    first = h.playbook(moto_server, "provision.yml", *extra)
    assert first.rc == 0, h.summary(first)
    second = h.playbook(moto_server, "provision.yml", *extra)
    check = h.playbook(moto_server, "provision.yml", *extra, check=True)
    return {"first": first, "second": second, "check": check, "moto": moto_server}


@pytest.fixture(scope="module")
def ec2(provisioned):
    return provisioned["moto"].client("ec2")


def test_first_run_creates_and_second_run_changes_nothing(provisioned):
    assert provisioned["first"].changed > 10
    second = provisioned["second"]
    assert second.rc == 0, h.summary(second)
    changed = [t["task"]["name"] for p in second.plays for t in p["tasks"]
               if t["hosts"].get("localhost", {}).get("changed")]
    assert second.changed == 0, f"second run changed: {changed}"


def test_check_mode_reports_and_changes_nothing(provisioned, ec2):
    check = provisioned["check"]
    assert check.rc == 0, h.summary(check)
    assert check.changed == 0
    # Still exactly one VPC and one version per launch template after the check run.
    vpcs = ec2.describe_vpcs(Filters=[{"Name": "tag:Project", "Values": [PROJECT]}])["Vpcs"]
    assert len(vpcs) == 1
    for lt in ec2.describe_launch_templates()["LaunchTemplates"]:
        if lt["LaunchTemplateName"].startswith(f"{PROJECT}-"):
            assert lt["LatestVersionNumber"] == 1, lt


def test_network_is_tagged_and_complete(ec2):
    vpcs = ec2.describe_vpcs(Filters=[{"Name": "tag:Project", "Values": [PROJECT]}])["Vpcs"]
    assert len(vpcs) == 1
    vpc_id = vpcs[0]["VpcId"]
    assert h.tags(vpcs[0])["Role"] == "network"
    subnets = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])["Subnets"]
    tiers = {h.tags(s)["Tier"]: s for s in subnets}
    assert set(tiers) == {"public", "private"}
    assert all(h.tags(s)["Project"] == PROJECT for s in subnets)
    assert not tiers["public"]["MapPublicIpOnLaunch"]
    igws = ec2.describe_internet_gateways(
        Filters=[{"Name": "attachment.vpc-id", "Values": [vpc_id]}])["InternetGateways"]
    assert len(igws) == 1 and h.tags(igws[0])["Project"] == PROJECT
    tables = ec2.describe_route_tables(Filters=[{"Name": "vpc-id", "Values": [vpc_id]},
                                                {"Name": "tag:Project", "Values": [PROJECT]}])["RouteTables"]
    by_name = {h.tags(t)["Name"]: t for t in tables}
    public_routes = {r.get("DestinationCidrBlock"): r for r in by_name[f"{PROJECT}-public"]["Routes"]}
    assert public_routes["0.0.0.0/0"]["GatewayId"] == igws[0]["InternetGatewayId"]
    private_routes = {r.get("DestinationCidrBlock"): r for r in by_name[f"{PROJECT}-private"]["Routes"]}
    assert private_routes["0.0.0.0/0"].get("NatGatewayId", "").startswith("nat-")
    assert {a.get("SubnetId") for a in by_name[f"{PROJECT}-private"]["Associations"]} >= {tiers["private"]["SubnetId"]}
    endpoints = ec2.describe_vpc_endpoints(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])["VpcEndpoints"]
    assert len(endpoints) == 1
    assert endpoints[0]["ServiceName"] == "com.amazonaws.eu-west-1.s3"
    assert endpoints[0]["VpcEndpointType"] == "Gateway"
    assert set(endpoints[0]["RouteTableIds"]) == {t["RouteTableId"] for t in tables}


def test_security_groups_open_only_configured_cidrs(ec2):
    groups = {g["GroupName"]: g for g in ec2.describe_security_groups(
        Filters=[{"Name": "tag:Project", "Values": [PROJECT]}])["SecurityGroups"]}
    server = groups[f"{PROJECT}-server"]
    rules = {(p["FromPort"], p["ToPort"], r["CidrIp"]) for p in server["IpPermissions"] for r in p["IpRanges"]}
    assert rules == {(873, 873, c) for c in RSYNC_CIDRS} | {(22, 22, c) for c in ADMIN_CIDRS}
    assert all(not p.get("Ipv6Ranges") and not p.get("UserIdGroupPairs") for p in server["IpPermissions"])
    private = groups[f"{PROJECT}-private"]
    assert private["IpPermissions"] == []


def test_buckets_encrypted_versioned_private(provisioned):
    s3 = provisioned["moto"].client("s3")
    for name, versioned in ((SOURCES_BUCKET, True), (SSM_BUCKET, False)):
        enc = s3.get_bucket_encryption(Bucket=name)["ServerSideEncryptionConfiguration"]
        assert enc["Rules"][0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
        status = s3.get_bucket_versioning(Bucket=name).get("Status")
        assert (status == "Enabled") is versioned
        block = s3.get_public_access_block(Bucket=name)["PublicAccessBlockConfiguration"]
        assert block == {"BlockPublicAcls": True, "IgnorePublicAcls": True,
                         "BlockPublicPolicy": True, "RestrictPublicBuckets": True}
        policy = json.loads(s3.get_bucket_policy(Bucket=name)["Policy"])
        deny = [s for s in policy["Statement"] if s["Effect"] == "Deny"]
        assert deny and deny[0]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
        assert not [s for s in policy["Statement"] if s["Effect"] == "Allow"], "bucket policy grants access"
        tagset = {t["Key"]: t["Value"] for t in s3.get_bucket_tagging(Bucket=name)["TagSet"]}
        assert tagset["Project"] == PROJECT
    rules = s3.get_bucket_lifecycle_configuration(Bucket=SSM_BUCKET)["Rules"]
    assert rules[0]["Expiration"]["Days"] == 1


def _role_policies(iam, role):
    return {name: h.policy_doc(iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"])
            for name in iam.list_role_policies(RoleName=role)["PolicyNames"]}


def test_iam_least_privilege_per_host_role(provisioned):
    iam = provisioned["moto"].client("iam")
    for kind in ("volmgr", "worker", "server"):
        role = iam.get_role(RoleName=f"{PROJECT}-{kind}")["Role"]
        trust = h.policy_doc(role["AssumeRolePolicyDocument"])
        assert trust["Statement"][0]["Principal"] == {"Service": "ec2.amazonaws.com"}
        assert {t["Key"]: t["Value"] for t in role.get("Tags", [])}["Project"] == PROJECT
        profile = iam.get_instance_profile(InstanceProfileName=f"{PROJECT}-{kind}")["InstanceProfile"]
        assert [r["RoleName"] for r in profile["Roles"]] == [f"{PROJECT}-{kind}"]
        assert iam.list_attached_role_policies(RoleName=f"{PROJECT}-{kind}")["AttachedPolicies"] == []

    volmgr = _role_policies(iam, f"{PROJECT}-volmgr")
    worker = _role_policies(iam, f"{PROJECT}-worker")
    server = _role_policies(iam, f"{PROJECT}-server")
    assert set(volmgr) == {"session-manager", "read-sources"}
    assert set(worker) == {"session-manager", "read-profiles"}
    assert set(server) == {"session-manager"}
    # volmgr: list and read the sources bucket, nothing else on S3 besides the transfer bucket.
    actions = {(a if isinstance(s["Action"], str) else tuple(s["Action"])): s["Resource"]
               for s in volmgr["read-sources"]["Statement"] for a in [s["Action"]]}
    assert actions == {"s3:ListBucket": f"arn:aws:s3:::{SOURCES_BUCKET}",
                       "s3:GetObject": f"arn:aws:s3:::{SOURCES_BUCKET}/*"}
    # worker: read only its project's profile parameters.
    stmt = worker["read-profiles"]["Statement"]
    assert len(stmt) == 1 and all(a.startswith("ssm:Get") for a in stmt[0]["Action"])
    assert all(f":parameter/{PROJECT}/profiles" in r for r in stmt[0]["Resource"])
    # No host role may write to S3 outside the transfer bucket, or touch EC2.
    for doc in (*volmgr.values(), *worker.values(), *server.values()):
        for s in doc["Statement"]:
            acts = [s["Action"]] if isinstance(s["Action"], str) else s["Action"]
            assert not any(a.startswith("ec2:") or a == "*" or a.endswith(":*") for a in acts), s
            if any(a in ("s3:PutObject", "s3:DeleteObject") for a in acts):
                assert s["Resource"] == f"arn:aws:s3:::{SSM_BUCKET}/*"


def test_operator_policy_scopes_snapshots_and_changes_by_project_tag(provisioned):
    iam = provisioned["moto"].client("iam")
    pol = [p for p in iam.list_policies(Scope="Local")["Policies"] if p["PolicyName"] == f"{PROJECT}-operator"]
    assert len(pol) == 1
    version = iam.get_policy_version(PolicyArn=pol[0]["Arn"], VersionId=pol[0]["DefaultVersionId"])
    doc = h.policy_doc(version["PolicyVersion"]["Document"])
    by_sid = {s["Sid"]: s for s in doc["Statement"]}
    snap = by_sid["SnapshotOnlyProjectVolumes"]
    assert snap["Action"] == "ec2:CreateSnapshot"
    assert snap["Condition"] == {"StringEquals": {"aws:ResourceTag/Project": PROJECT}}
    assert by_sid["NewSnapshotsCarryTheProjectTag"]["Condition"] == {"StringEquals": {"aws:RequestTag/Project": PROJECT}}
    manage = by_sid["ManageOnlyProjectResources"]
    assert {"ec2:TerminateInstances", "ec2:DeleteSnapshot", "ec2:DeleteVolume"} <= set(manage["Action"])
    assert manage["Condition"] == {"StringEquals": {"aws:ResourceTag/Project": PROJECT}}
    # Every EC2 statement that changes something is conditioned, except launching from
    # images/subnets/templates (which RunInstances needs and cannot tag).
    for s in doc["Statement"]:
        acts = [s["Action"]] if isinstance(s["Action"], str) else s["Action"]
        mutating = [a for a in acts if a.startswith("ec2:") and not a.startswith("ec2:Describe")]
        if mutating and s["Sid"] != "LaunchFromProjectTemplates":
            assert "Condition" in s, s
    assert by_sid["PassOnlyProjectHostRoles"]["Resource"].endswith(f":role/{PROJECT}-*")


def test_ssm_parameters_hold_the_profile_module_output(provisioned):
    ssm = provisioned["moto"].client("ssm")
    params = {}
    for page in ssm.get_paginator("get_parameters_by_path").paginate(Path=f"/{PROJECT}/profiles", Recursive=True):
        params.update({p["Name"]: p["Value"] for p in page["Parameters"]})
    first = provisioned["first"]
    rendered = {r["item"]["key"]: r["config"] for res in first.task_results("Validate and render")
                for r in res["results"]}
    assert set(rendered) == {"flac", "phone", "car"}
    assert params == {f"/{PROJECT}/profiles/{name}/config": text for name, text in rendered.items()}
    assert "CONFIG_" in params[f"/{PROJECT}/profiles/phone/config"]
    tagged = ssm.list_tags_for_resource(ResourceType="Parameter", ResourceId=f"/{PROJECT}/profiles/car/config")
    assert {t["Key"]: t["Value"] for t in tagged["TagList"]}["Project"] == PROJECT


def test_launch_templates_require_imdsv2_and_encrypt(provisioned, ec2):
    templates = {lt["LaunchTemplateName"]: lt for lt in ec2.describe_launch_templates()["LaunchTemplates"]
                 if lt["LaunchTemplateName"].startswith(f"{PROJECT}-")}
    assert set(templates) == {f"{PROJECT}-volmgr", f"{PROJECT}-worker", f"{PROJECT}-server"}
    groups = {g["GroupName"]: g["GroupId"] for g in ec2.describe_security_groups(
        Filters=[{"Name": "tag:Project", "Values": [PROJECT]}])["SecurityGroups"]}
    subnets = {h.tags(s)["Tier"]: s["SubnetId"] for s in ec2.describe_subnets(
        Filters=[{"Name": "tag:Project", "Values": [PROJECT]}])["Subnets"]}
    for kind in ("volmgr", "worker", "server"):
        lt = templates[f"{PROJECT}-{kind}"]
        assert {t["Key"]: t["Value"] for t in lt.get("Tags", [])}["Project"] == PROJECT
        data = ec2.describe_launch_template_versions(LaunchTemplateName=f"{PROJECT}-{kind}")[
            "LaunchTemplateVersions"][0]["LaunchTemplateData"]
        assert data["MetadataOptions"]["HttpTokens"] == "required"
        assert data["MetadataOptions"]["HttpPutResponseHopLimit"] == 1
        assert all(b["Ebs"]["Encrypted"] for b in data["BlockDeviceMappings"])
        profile = data["IamInstanceProfile"]
        assert profile.get("Name") == f"{PROJECT}-{kind}" or profile.get("Arn", "").endswith(
            f":instance-profile/{PROJECT}-{kind}"), profile
        nic = data["NetworkInterfaces"][0]
        tier = "public" if kind == "server" else "private"
        assert nic["SubnetId"] == subnets[tier]
        assert nic["Groups"] == [groups[f"{PROJECT}-server" if kind == "server" else f"{PROJECT}-private"]]
        assert nic["AssociatePublicIpAddress"] is (kind == "server")
        spec_tags = {s["ResourceType"]: {t["Key"]: t["Value"] for t in s["Tags"]} for s in data["TagSpecifications"]}
        assert spec_tags["instance"]["Role"] == kind and spec_tags["volume"]["Project"] == PROJECT
        user_data = base64.b64decode(data["UserData"]).decode()
        if kind == "server":
            assert data["InstanceInitiatedShutdownBehavior"] == "stop"
            assert "music-time-limit" not in user_data
        else:
            assert data["InstanceInitiatedShutdownBehavior"] == "terminate"
            assert "--on-boot=240min" in user_data and "music-time-limit" in user_data
            assert spec_tags["instance"]["TimeLimitMinutes"] == "240"
    assert "InstanceMarketOptions" not in ec2.describe_launch_template_versions(
        LaunchTemplateName=f"{PROJECT}-worker")["LaunchTemplateVersions"][0]["LaunchTemplateData"]


def test_defaults_open_nothing_and_spot_is_a_template_option(moto_server):
    """A second project with the default CIDRs (none) and a spot worker with a 90 min limit."""
    run = h.playbook(moto_server, "provision.yml", "-e", "music_project=spotty", "-e", "music_nat_gateway=false",
                     "-e", "music_vpc_cidr=10.43.0.0/16", "-e", "music_public_subnet_cidr=10.43.0.0/24",
                     "-e", "music_private_subnet_cidr=10.43.1.0/24",
                     "-e", "music_worker_spot=true", "-e", "music_worker_time_limit_minutes=90")
    assert run.rc == 0, h.summary(run)
    ec2 = moto_server.client("ec2")
    groups = ec2.describe_security_groups(Filters=[{"Name": "tag:Project", "Values": ["spotty"]}])["SecurityGroups"]
    assert {g["GroupName"] for g in groups} == {"spotty-server", "spotty-private"}
    assert all(g["IpPermissions"] == [] for g in groups)
    nats = ec2.describe_nat_gateways()["NatGateways"]
    assert [n for n in nats if h.tags(n).get("Project") == "spotty"] == []
    data = ec2.describe_launch_template_versions(LaunchTemplateName="spotty-worker")[
        "LaunchTemplateVersions"][0]["LaunchTemplateData"]
    assert data["InstanceMarketOptions"]["MarketType"] == "spot"
    assert "--on-boot=90min" in base64.b64decode(data["UserData"]).decode()


def test_invalid_profile_creates_nothing(moto_server):
    bad = {"car": {"codec": "mp3", "quality": 2}, "broken": {"codec": "mp3", "bitrate": 33}}
    run = h.playbook(moto_server, "provision.yml", "-e", "music_project=badprofile",
                     "-e", json.dumps({"music_profiles": bad}))
    assert run.rc != 0
    msg = run.failure_messages()
    assert "broken" in msg and "bitrate" in msg, msg
    ec2 = moto_server.client("ec2")
    flt = [{"Name": "tag:Project", "Values": ["badprofile"]}]
    assert ec2.describe_vpcs(Filters=flt)["Vpcs"] == []
    assert ec2.describe_security_groups(Filters=flt)["SecurityGroups"] == []
    assert not [lt for lt in ec2.describe_launch_templates()["LaunchTemplates"]
                if lt["LaunchTemplateName"].startswith("badprofile-")]
    buckets = [b["Name"] for b in moto_server.client("s3").list_buckets()["Buckets"]]
    assert not [b for b in buckets if b.startswith("badprofile-")]
    roles = [r["RoleName"] for r in moto_server.client("iam").list_roles()["Roles"]]
    assert not [r for r in roles if r.startswith("badprofile-")]
    params = moto_server.client("ssm").get_parameters_by_path(Path="/badprofile", Recursive=True)["Parameters"]
    assert params == []
