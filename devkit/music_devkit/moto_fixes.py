"""Make the in-process moto server answer like real AWS where moto 5.2 differs.

Each fix corrects moto's *answers* (what real EC2 returns); the playbooks are not changed
to suit moto. The fixes patch moto's classes in this process, so they apply to the
ThreadedMotoServer that music_devkit/moto.py starts in the pytest process.

1. DescribeVolumes: real EC2 always returns MultiAttachEnabled (false by default); moto
   leaves it out unless it was set at creation, and amazon.aws.ec2_vol then fails with
   KeyError 'multi_attach_enabled' when it looks at an attached volume again.
2. CreateLaunchTemplate: real EC2 keeps the template's own tags (ResourceType=launch-template)
   out of the version's LaunchTemplateData; moto copies them in, so
   ec2_launch_template sees a difference and makes a new version on every run.
3. DescribeTags: real EC2 names the resource type of a NAT gateway "natgateway"; moto says
   "nat-gateway", so amazon.aws's tag check (filtered by resource type) finds no tags and
   re-tags the gateway on every run.
4. DescribeVolumes: real EC2 returns SnapshotId "" for a volume made blank; moto leaves the
   field out, and amazon.aws.ec2_vol_info fails with KeyError 'snapshot_id'.
"""
from __future__ import annotations

_applied = False


def apply() -> None:
    global _applied
    if _applied:
        return
    from moto.ec2 import utils as ec2_utils
    from moto.ec2.models import elastic_block_store
    from moto.ec2.responses import launch_templates

    # 1. and 4. MultiAttachEnabled defaults to False and SnapshotId to "", as on EC2.
    volume_cls = elastic_block_store.Volume
    original_init = volume_cls.__init__

    def volume_init(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        if self.multi_attach_enabled is None:
            self.multi_attach_enabled = False
        if self.snapshot_id is None:
            self.snapshot_id = ""

    volume_cls.__init__ = volume_init

    # 2. Template tags stay on the template, not in its data.
    responses_cls = launch_templates.LaunchTemplates
    original_create = responses_cls.create_launch_template

    def create_launch_template(self):
        parse = self._parse_tag_specification
        tag_spec = parse()
        data = self._get_param("LaunchTemplateData", {})
        own = set(tag_spec) - {
            spec.get("ResourceType") for spec in data.get("TagSpecifications", [])
        }
        if not own:
            return original_create(self)
        # Let moto tag the template itself, but hide the copy from the version data.
        backend_create = self.ec2_backend.create_launch_template

        def create(name, description, template_data, tags):
            specs = template_data.get("TagSpecifications", [])
            kept = [s for s in specs if s.get("ResourceType") not in own]
            template_data = dict(template_data)
            if kept:
                template_data["TagSpecifications"] = kept
            else:
                template_data.pop("TagSpecifications", None)
            return backend_create(name, description, template_data, tags)

        self.ec2_backend.create_launch_template = create
        try:
            return original_create(self)
        finally:
            del self.ec2_backend.create_launch_template

    responses_cls.create_launch_template = create_launch_template

    # 3. NAT gateways are of resource type "natgateway" in DescribeTags.
    ec2_utils.EC2_PREFIX_TO_RESOURCE["nat"] = "natgateway"

    _applied = True
